//! `fedroute trust list|forget`: the node's trust store, for operators.
//! Forgetting an endpoint is how a changed researcher certificate is
//! accepted; a running node reads the change at its next connection.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use fedroute::tls::{Acceptance, TrustStore, TrustedResearcher};
use fedroute::ErrorChain;

use super::state::state_dir;

/// Arguments of `fedroute trust`.
#[derive(Debug, Args)]
pub(crate) struct TrustArgs {
    #[command(subcommand)]
    pub(crate) command: TrustCommand,
}

/// What to do with the trust store.
#[derive(Debug, Subcommand)]
pub(crate) enum TrustCommand {
    /// List the researcher endpoints the node trusts, with the certificate
    /// each was trusted with.
    List {
        /// The node's state directory [default: as `fedroute node`].
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Forget an endpoint, so that the next certificate it presents is
    /// trusted as on first contact (how a changed certificate is accepted).
    Forget {
        /// The endpoint, as HOST:PORT (as `fedroute node --researcher` and
        /// the node's logs write it).
        endpoint: String,
        /// The node's state directory [default: as `fedroute node`].
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
}

/// Runs `fedroute trust`.
pub(crate) fn run(args: &TrustArgs) -> Result<(), String> {
    match &args.command {
        TrustCommand::List { state_dir: dir } => {
            let store = open(dir.as_ref())?;
            let path = store
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            if store.entries().next().is_none() {
                println!("{path}: no researcher endpoint trusted yet");
                return Ok(());
            }
            println!("{path}:");
            for (endpoint, entry) in store.entries() {
                println!("{}", describe(endpoint, entry));
            }
            Ok(())
        }
        TrustCommand::Forget {
            endpoint,
            state_dir: dir,
        } => {
            let mut store = open(dir.as_ref())?;
            let path = store
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let Some(entry) = store.get(endpoint).cloned() else {
                let known: Vec<&str> = store.entries().map(|(e, _)| e).collect();
                return Err(format!(
                    "{path} has no record for {endpoint} (known: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            };
            store
                .forget(endpoint)
                .map_err(|e| format!("cannot update the trust store: {}", ErrorChain(&e)))?;
            println!(
                "forgot {endpoint} (researcher {}, SHA-256 {}): the next certificate it presents is trusted as on first contact",
                entry.researcher_id.as_deref().unwrap_or("?"),
                entry.fingerprint
            );
            Ok(())
        }
    }
}

fn open(dir: Option<&PathBuf>) -> Result<TrustStore, String> {
    let dir = state_dir(dir, "node")?;
    TrustStore::open(&dir.join(TrustStore::FILE_NAME))
        .map_err(|e| format!("cannot read the trust store: {}", ErrorChain(&e)))
}

fn describe(endpoint: &str, e: &TrustedResearcher) -> String {
    let how = match e.accepted {
        Acceptance::FirstUse => "first use",
        Acceptance::RotationProof => "rotation proof",
        Acceptance::SameResearcherId => "same researcher id",
        _ => "other",
    };
    format!(
        "  {endpoint}\n    researcher  {}\n    SHA-256     {}\n    accepted by {how}\n    first seen  {}\n    last seen   {}",
        e.researcher_id.as_deref().unwrap_or("(none in the certificate)"),
        e.fingerprint,
        day_time(e.first_seen),
        day_time(e.last_seen),
    )
}

fn day_time(t: std::time::SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        t.date(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
