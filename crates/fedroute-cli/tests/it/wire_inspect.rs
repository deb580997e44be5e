//! `fedroute inspect FILE` prints a payload as JSON, and fails with a
//! one-line error (no panic, no backtrace) on a bad file.

use assert_cmd::Command;
use predicates::prelude::*;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fedroute/tests/fixtures")
        .join(name)
}

#[test]
fn inspect_prints_a_fixture_as_json() {
    let out = Command::cargo_bin("fedroute")
        .unwrap()
        .args(["inspect"])
        .arg(fixture("07_request_TrainRequest.msgpack"))
        .assert()
        .success()
        .stderr(predicate::str::contains("TrainRequest message, 483 bytes"))
        .get_output()
        .stdout
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["__type_message__"]["class"], "TrainRequest");
    let blob = &json["params"]["blob"]["value"][0];
    assert_eq!(blob["$len"], 16);
    assert_eq!(blob["$bytes_hex"], "03030303030303030303030303030303");
}

fn assert_one_line_failure(cmd: &mut Command) {
    let out = cmd
        .env("RUST_BACKTRACE", "1")
        .assert()
        .failure()
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("fedroute: "), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn inspect_fails_with_one_line_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.msgpack");
    let raw = std::fs::read(fixture("02_reply_PingReply.msgpack")).unwrap();
    std::fs::write(&truncated, &raw[..raw.len() / 2]).unwrap();
    assert_one_line_failure(
        Command::cargo_bin("fedroute")
            .unwrap()
            .arg("inspect")
            .arg(&truncated),
    );

    let deep = dir.path().join("deep.msgpack");
    std::fs::write(&deep, vec![0x91u8; 100_000]).unwrap();
    assert_one_line_failure(
        Command::cargo_bin("fedroute")
            .unwrap()
            .arg("inspect")
            .arg(&deep),
    );

    assert_one_line_failure(
        Command::cargo_bin("fedroute")
            .unwrap()
            .arg("inspect")
            .arg(dir.path().join("missing")),
    );
    assert_one_line_failure(
        Command::cargo_bin("fedroute")
            .unwrap()
            .arg("inspect")
            .arg(fixture("00_TaskRequest.pb")),
    );
}
