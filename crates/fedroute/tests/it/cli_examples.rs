//! The examples run end to end (each against the other side in process),
//! bounded in time. `cargo test` builds them next to the test binaries.

use crate::cli_support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use cli_support::*;

fn example(name: &str) -> Option<PathBuf> {
    // target/debug/deps/cli_examples-<hash> -> target/debug/examples/<name>
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join(name);
    path.exists().then_some(path)
}

fn run_example(name: &str) -> String {
    let Some(path) = example(name) else {
        eprintln!(
            "example {name} not built (run `cargo test` or `cargo build --examples`); skipped"
        );
        return String::new();
    };
    let child = Command::new(path)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, stdout, stderr) = output_bounded(child, Duration::from_secs(60));
    assert!(status.success(), "{name}: {status}\n{stdout}\n{stderr}");
    stdout
}

#[test]
fn embedded_node_answers_a_ping() {
    let out = run_example("embedded_node");
    if !out.is_empty() {
        assert!(
            out.contains("researcher: PingReply from NODE_embedded"),
            "{out}"
        );
    }
}

#[test]
fn embedded_researcher_gets_its_replies() {
    let out = run_example("embedded_researcher");
    if !out.is_empty() {
        assert!(out.contains("PingRequest -> PingReply"), "{out}");
        assert!(out.contains("SearchRequest -> SearchReply"), "{out}");
    }
}
