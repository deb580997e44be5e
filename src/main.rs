//! The `fedroute` binary: a thin clap shell over the library (see `src/cli/`).

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli.run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("fedroute: {msg}");
            std::process::ExitCode::FAILURE
        }
    }
}
