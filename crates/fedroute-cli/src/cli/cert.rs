//! `fedroute cert`: node certificates for mutual TLS, one sub-command per
//! action.
//!
//! - `cert new --id NODE_x --out DIR`: a self-signed node certificate and
//!   its key ([`fedroute::tls::generate_node_identity`]), to register with
//!   researchers (copy the `.pem` into their `--trusted-nodes` directory)
//!   and to give the node (`fedroute node --cert --key`).
//! - `cert show FILE [--previous PEM]`: what a certificate says, for
//!   operators comparing fingerprints and checking a rotation proof.

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
    /// Show what a certificate says: its id (O=), CN, SHA-256 fingerprint,
    /// validity, and whether it carries a rotation proof (checked against
    /// --previous when given).
    Show(ShowArgs),
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
        CertCommand::Show(show) => run_show(show),
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

/// Arguments of `fedroute cert show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The certificate (PEM; the first certificate of the file is shown).
    pub(crate) file: PathBuf,
    /// The certificate it replaces: checks the rotation proof against it
    /// [default: the proof's presence is shown, not checked].
    #[arg(long, value_name = "PEM")]
    pub(crate) previous: Option<PathBuf>,
}

fn first_certificate(path: &std::path::Path) -> Result<tls::CertificateDer<'static>, String> {
    use rustls_pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    tls::CertificateDer::pem_slice_iter(&bytes)
        .next()
        .ok_or_else(|| format!("{} holds no PEM certificate", path.display()))?
        .map_err(|e| format!("{} is not a usable PEM certificate: {e}", path.display()))
}

fn run_show(args: &ShowArgs) -> Result<(), String> {
    let der = first_certificate(&args.file)?;
    let info = tls::CertificateInfo::read(&der)
        .map_err(|e| format!("cannot read {}: {}", args.file.display(), ErrorChain(&e)))?;
    let day = |t: time::OffsetDateTime| t.date().to_string();
    println!("{}", args.file.display());
    println!(
        "  id (O=)        {}",
        info.organization.as_deref().unwrap_or("(none)")
    );
    println!(
        "  CN=            {}",
        info.common_name.as_deref().unwrap_or("(none)")
    );
    println!("  SHA-256        {}", info.fingerprint);
    println!(
        "  valid          {} to {} ({})",
        day(info.not_before),
        day(info.not_after),
        info.validity
    );
    let proof = match (&info.rotation_proof_by, &args.previous) {
        (None, _) => "none".to_string(),
        (Some(Err(e)), _) => format!("present but unreadable: {e}"),
        (Some(Ok(by)), None) => {
            format!("present, signed by the key of certificate {by} (give --previous to check it)")
        }
        (Some(Ok(_)), Some(prev)) => {
            let previous = first_certificate(prev)?;
            match info.verify_rotation_from(&previous) {
                Ok(()) => format!("valid: signed by the key of {}", prev.display()),
                Err(e) => format!("NOT valid against {}: {e}", prev.display()),
            }
        }
    };
    println!("  rotation proof {proof}");
    Ok(())
}
