//! Bad flags, unreachable peers and missing or bad certificate files: each
//! gives a one-line error (`fedroute: ...`), no panic, and a non-zero exit.

use crate::cli_support;

use std::time::Duration;

use cli_support::*;

/// Runs `fedroute args` and returns its one error line.
fn one_line_failure(args: &[&str]) -> String {
    let child = fedroute(args, "off").spawn().unwrap();
    let (status, stdout, stderr) = output_bounded(child, Duration::from_secs(30));
    assert!(!status.success(), "{args:?} succeeded: {stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
    assert!(lines[0].starts_with("fedroute: "), "{stderr}");
    lines[0].to_string()
}

fn bad_pem() -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), "not a certificate\n").unwrap();
    f
}

#[test]
fn bad_listen_address() {
    let e = one_line_failure(&["researcher", "--listen", "nowhere"]);
    assert!(e.contains("--listen"), "{e}");
}

#[test]
fn listen_address_not_on_this_machine() {
    let e = one_line_failure(&["researcher", "--listen", "192.0.2.1:50051"]);
    assert!(e.contains("cannot listen on 192.0.2.1:50051"), "{e}");
    // The cause (the library's error returns it as its source) is printed too.
    assert!(e.contains("os error"), "{e}");
}

#[test]
fn bad_researcher_address() {
    let e = one_line_failure(&["node", "--researcher", "localhost", "--id", "N"]);
    assert!(e.contains("HOST:PORT"), "{e}");
}

#[test]
fn missing_required_flag() {
    let e = one_line_failure(&["node", "--id", "N"]);
    assert!(e.contains("--researcher"), "{e}");
}

#[test]
fn unknown_flag() {
    let e = one_line_failure(&["demo", "--frobnicate"]);
    assert!(e.contains("--frobnicate"), "{e}");
}

#[test]
fn missing_researcher_certificate_file() {
    let e = one_line_failure(&[
        "researcher",
        "--listen",
        "127.0.0.1:0",
        "--cert",
        "/nonexistent/cert.pem",
        "--key",
        "/nonexistent/key.pem",
    ]);
    assert!(e.contains("/nonexistent/cert.pem"), "{e}");
    // The whole chain: the researcher's error, the TLS error, the OS error.
    assert!(e.contains("TLS set-up failed: could not read"), "{e}");
    assert!(e.contains("os error"), "{e}");
}

#[test]
fn bad_researcher_certificate_file() {
    let pem = bad_pem();
    let path = pem.path().to_str().unwrap();
    let e = one_line_failure(&[
        "researcher",
        "--listen",
        "127.0.0.1:0",
        "--cert",
        path,
        "--key",
        path,
    ]);
    assert!(e.contains("certificate"), "{e}");
}

#[test]
fn missing_pinned_certificate_file() {
    let e = one_line_failure(&[
        "node",
        "--researcher",
        "127.0.0.1:50051",
        "--id",
        "N",
        "--pin",
        "/nonexistent/researcher.pem",
    ]);
    assert!(e.contains("/nonexistent/researcher.pem"), "{e}");
}

#[test]
fn bad_ca_bundle() {
    let pem = bad_pem();
    let e = one_line_failure(&[
        "node",
        "--researcher",
        "127.0.0.1:50051",
        "--id",
        "N",
        "--ca",
        pem.path().to_str().unwrap(),
    ]);
    assert!(e.contains("certificate"), "{e}");
}

#[test]
fn missing_node_certificate_file() {
    let e = one_line_failure(&[
        "node",
        "--researcher",
        "127.0.0.1:50051",
        "--id",
        "N",
        "--cert",
        "/nonexistent/node.pem",
        "--key",
        "/nonexistent/node.key",
    ]);
    assert!(e.contains("/nonexistent/node.pem"), "{e}");
}

#[test]
fn unreachable_researcher_with_a_short_connect_timeout() {
    let port = free_port(); // nobody listens there
    let addr = format!("127.0.0.1:{port}");
    let e = one_line_failure(&[
        "node",
        "--researcher",
        &addr,
        "--id",
        "N",
        "--connect-timeout",
        "1",
    ]);
    assert!(
        e.contains(&format!("cannot reach researcher {addr}")),
        "{e}"
    );
}

#[test]
fn node_insecure_conflicts_with_tls_flags() {
    let e = one_line_failure(&[
        "node",
        "--researcher",
        "127.0.0.1:1",
        "--id",
        "N",
        "--insecure",
        "--pin",
        "cert.pem",
    ]);
    assert!(e.contains("--insecure") && e.contains("--pin"), "{e}");
}

#[test]
fn ping_without_nodes_times_out() {
    let e = one_line_failure(&[
        "researcher",
        "--listen",
        "127.0.0.1:0",
        "--ping",
        "1",
        "--wait-timeout",
        "0.5",
    ]);
    assert!(e.contains("only 0 of 1 node(s) connected"), "{e}");
}

#[test]
fn bad_model_size() {
    let e = one_line_failure(&["demo", "--model-size", "3TB"]);
    assert!(e.contains("--model-size"), "{e}");
}
