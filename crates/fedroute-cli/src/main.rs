//! The `fedroute` binary: a thin clap shell over the library (see `src/cli/`).
//!
//! Errors, including bad flags, are printed as one line
//! (`fedroute: <what went wrong>`) and give a non-zero exit code; `--help`
//! and `--version` print as usual.

mod cli;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

/// Exit code of a command that ran and failed.
const EXIT_FAILURE: u8 = 1;
/// Exit code of a command line that could not be parsed (as clap uses).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            eprintln!("fedroute: {}", usage_error_line(&e));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("fedroute: {msg}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// clap's error as one line: its first paragraph joined (without the
/// `error: ` prefix), plus a pointer to `--help`.
fn usage_error_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let paragraph: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    let line = paragraph.join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    if line.is_empty() {
        "invalid command line (see --help)".to_string()
    } else {
        format!("{line} (see --help)")
    }
}
