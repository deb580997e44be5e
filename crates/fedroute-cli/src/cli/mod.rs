//! The `fedroute` command line: one module per sub-command, plus the pieces
//! they share.
//!
//! - [`demo`]: an embedded researcher and three nodes, real TLS (the default).
//! - [`researcher`]: serve nodes; optionally ping them and print statistics.
//! - [`node`]: the reference node ([`node::ReferenceNode`]).
//! - [`cert`]: node certificates for mutual TLS (`cert new`).
//! - [`bench`]: the benchmark workloads (the library's `bench` module).
//! - [`inspect`]: print a captured payload as JSON.
//! - [`runtime`]: logging set-up, the actix `System` and Ctrl-C.
//! - [`stats`]: round-trip statistics (p50/p99) and human-readable sizes.
//! - [`args`]: value parsers shared by the sub-commands.

pub(crate) mod args;
pub(crate) mod bench;
pub(crate) mod cert;
pub(crate) mod demo;
pub(crate) mod inspect;
pub(crate) mod node;
pub(crate) mod researcher;
pub(crate) mod runtime;
pub(crate) mod state;
pub(crate) mod stats;
pub(crate) mod trust;

use clap::{Parser, Subcommand};

/// fedroute: a message router speaking Fed-BioMed's gRPC/TLS wire protocol.
///
/// Without a sub-command, runs `demo` with its defaults (default: demo).
/// Log levels follow RUST_LOG (e.g. RUST_LOG=debug, RUST_LOG=fedroute=trace).
#[derive(Debug, Parser)]
#[command(name = "fedroute", version)]
pub(crate) struct Cli {
    /// The sub-command to run (default: demo).
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// fedroute's sub-commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run an embedded researcher and 3 nodes on 127.0.0.1 with real TLS:
    /// pings, a search, model-sized training rounds and a researcher restart,
    /// then a summary (the default sub-command).
    Demo(demo::DemoArgs),
    /// Serve nodes as a researcher; log nodes coming and going and their
    /// feedback; with --ping, ping the nodes and print round-trip statistics.
    Researcher(researcher::ResearcherArgs),
    /// Run the reference node: answers pings, dataset lists and searches,
    /// and any other request with an ErrorMessage.
    Node(node::NodeArgs),
    /// Node certificates for mutual TLS: `cert new` writes a self-signed one
    /// to register with researchers (--trusted-nodes).
    Cert(cert::CertArgs),
    /// Run the benchmark workloads in process and print a table.
    Bench(bench::BenchArgs),
    /// Print a captured msgpack payload (a Fed-BioMed message) as JSON.
    Inspect(inspect::InspectArgs),
    /// List or forget the researcher certificates a node trusts (its trust
    /// store, in its state directory).
    Trust(trust::TrustArgs),
}

impl Cli {
    /// Runs the chosen sub-command; the error is a one-line message for the user.
    pub(crate) fn run(self) -> Result<(), String> {
        match self.command {
            None => demo::run(&demo::DemoArgs::default()),
            Some(Command::Demo(args)) => demo::run(&args),
            Some(Command::Researcher(args)) => researcher::run(&args),
            Some(Command::Node(args)) => node::run(&args),
            Some(Command::Cert(args)) => cert::run(&args),
            Some(Command::Bench(args)) => bench::run(&args),
            Some(Command::Inspect(args)) => inspect::run(&args),
            Some(Command::Trust(args)) => trust::run(&args),
        }
    }
}
