//! `fedroute inspect FILE`: print a captured msgpack payload as JSON
//! (binary values as their length and a short hex prefix).

use std::path::PathBuf;

use bytes::Bytes;
use clap::Args;

use fedroute::wire::{Envelope, Value};

/// Arguments of `fedroute inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The file holding one msgpack payload (e.g. a reassembled message).
    pub(crate) file: PathBuf,
}

/// Prints the payload as JSON, preceded by a summary line on stderr when it
/// is a Fed-BioMed message.
pub(crate) fn run(args: &InspectArgs) -> Result<(), String> {
    let raw = std::fs::read(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    let raw = Bytes::from(raw);
    let value = Value::decode(&raw)
        .map_err(|e| format!("{} is not a msgpack payload: {e}", args.file.display()))?;
    match Envelope::from_value(value.clone()) {
        Ok(env) => eprintln!(
            "{}: {} message, {} bytes, protocol version {}",
            args.file.display(),
            env.class(),
            raw.len(),
            env.protocol_version().unwrap_or("(none)")
        ),
        Err(e) => eprintln!(
            "{}: {} bytes, not a Fed-BioMed message ({e})",
            args.file.display(),
            raw.len()
        ),
    }
    println!("{}", value.to_json_pretty());
    Ok(())
}
