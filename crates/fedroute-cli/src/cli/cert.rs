//! `fedroute cert`: node certificates for mutual TLS, one sub-command per
//! action.
//!
//! - `cert new --id NODE_x --out DIR`: a self-signed node certificate and
//!   its key ([`fedroute::tls::generate_node_identity`]), to register with
//!   researchers (copy the `.pem` into their `--trusted-nodes` directory)
//!   and to give the node (`fedroute node --cert --key`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use fedroute::tls;
use fedroute::ErrorChain;

/// Arguments of `fedroute cert`.
#[derive(Debug, Args)]
pub(crate) struct CertArgs {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: CertCommand,
}

/// The sub-commands of `fedroute cert`.
#[derive(Debug, Subcommand)]
pub(crate) enum CertCommand {
    /// Write a new self-signed node certificate (O=CN=the node id, client
    /// authentication, ECDSA P-256, valid 5 years) and its key into a
    /// directory, as <ID>.pem and <ID>.key (mode 0600); existing files are
    /// never overwritten.
    New(NewArgs),
}

/// Arguments of `fedroute cert new`.
#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// The node id the certificate names (ASCII letters, digits and
    /// _ - . : @ +), as the node's --id.
    #[arg(long, value_name = "NODE_ID")]
    pub(crate) id: String,
    /// The directory to write <ID>.pem and <ID>.key into (it must exist).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
}

/// Runs a `cert` sub-command.
pub(crate) fn run(args: &CertArgs) -> Result<(), String> {
    match &args.command {
        CertCommand::New(new) => run_new(new),
    }
}

fn run_new(args: &NewArgs) -> Result<(), String> {
    if !args.out.is_dir() {
        return Err(format!("{} is not a directory", args.out.display()));
    }
    let node = tls::generate_node_identity(&args.id)
        .map_err(|e| format!("cannot make the certificate: {}", ErrorChain(&e)))?;
    let (cert, key) = node
        .write_new(&args.out)
        .map_err(|e| format!("cannot write the certificate: {}", ErrorChain(&e)))?;
    println!("node certificate: {}", cert.display());
    println!(
        "private key:      {} (keep it on the node only)",
        key.display()
    );
    println!();
    println!(
        "To register node {} with a researcher, copy the certificate into",
        node.node_id
    );
    println!("the researcher's --trusted-nodes directory (no restart needed):");
    println!("  cp {} <researcher's trusted-nodes DIR>/", cert.display());
    println!("Then run the node with it:");
    println!(
        "  fedroute node --id {} --cert {} --key {} --researcher HOST:PORT",
        node.node_id,
        cert.display(),
        key.display()
    );
    Ok(())
}
