//! The `fedroute` command line: one module per sub-command.

pub mod inspect;

use clap::{Parser, Subcommand};

/// fedroute: a message router speaking Fed-BioMed's gRPC/TLS wire protocol.
#[derive(Debug, Parser)]
#[command(name = "fedroute", version, about)]
pub struct Cli {
    /// The sub-command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// fedroute's sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a captured msgpack payload (a Fed-BioMed message) as JSON.
    Inspect(inspect::InspectArgs),
}

impl Cli {
    /// Runs the chosen sub-command; the error is a one-line message for the user.
    pub fn run(self) -> Result<(), String> {
        match self.command {
            Command::Inspect(args) => inspect::run(&args),
        }
    }
}
