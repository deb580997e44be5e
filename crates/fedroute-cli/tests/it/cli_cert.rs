//! `fedroute cert new`: a node certificate that a researcher started with
//! `--trusted-nodes` accepts once its `.pem` is copied in, and that the node
//! presents with `--cert/--key`; existing files are never overwritten, and a
//! node refuses a certificate made for another node id.

use crate::cli_support;

use std::io::{BufRead, BufReader};

use cli_support::*;

/// Runs `fedroute cert new --id ID --out DIR`; its status and output.
fn cert_new(id: &str, out: &std::path::Path) -> (bool, String, String) {
    let child = fedroute(
        &["cert", "new", "--id", id, "--out", out.to_str().unwrap()],
        "info",
    )
    .spawn()
    .unwrap();
    let (status, stdout, stderr) = output_bounded(child, PROCESS_BOUND);
    (status.success(), stdout, stderr)
}

#[test]
fn a_node_certificate_from_cert_new_registered_in_trusted_nodes_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("node");
    let trusted = dir.path().join("trusted");
    std::fs::create_dir(&certs).unwrap();
    std::fs::create_dir(&trusted).unwrap();
    let (ok, stdout, stderr) = cert_new("NODE_c", &certs);
    assert!(ok, "{stdout}{stderr}");
    let pem = certs.join("NODE_c.pem");
    let key = certs.join("NODE_c.key");
    assert!(stdout.contains(pem.to_str().unwrap()), "{stdout}");
    assert!(stdout.contains("--trusted-nodes"), "{stdout}");
    std::fs::copy(&pem, trusted.join("NODE_c.pem")).unwrap();

    // Never overwritten.
    let before = std::fs::read(&pem).unwrap();
    let (ok, _, stderr) = cert_new("NODE_c", &certs);
    assert!(!ok && stderr.contains("refusing to overwrite"), "{stderr}");
    assert_eq!(std::fs::read(&pem).unwrap(), before);

    let researcher_pem = dir.path().join("researcher.pem");
    let mut researcher = fedroute(
        &[
            "researcher",
            "--listen",
            "127.0.0.1:0",
            "--trusted-nodes",
            trusted.to_str().unwrap(),
            "--cert-out",
            researcher_pem.to_str().unwrap(),
            "--ping",
            "3",
        ],
        "info",
    )
    .spawn()
    .unwrap();
    let mut first = String::new();
    BufReader::new(researcher.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    let node_args = |id: &'static str| {
        vec![
            "node".to_string(),
            "--researcher".into(),
            addr.clone(),
            "--id".into(),
            id.into(),
            "--pin".into(),
            researcher_pem.to_str().unwrap().into(),
            "--cert".into(),
            pem.to_str().unwrap().into(),
            "--key".into(),
            key.to_str().unwrap().into(),
            "--exit-after".into(),
            "60".into(),
        ]
    };

    // A certificate made for another node is refused by the node itself.
    let args = node_args("NODE_other");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let wrong = fedroute(&args, "info").spawn().unwrap();
    let (status, stdout, stderr) = output_bounded(wrong, PROCESS_BOUND);
    assert!(!status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("is for node NODE_c, not for --id NODE_other"),
        "{stderr}"
    );

    let args = node_args("NODE_c");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut node = fedroute(&args, "info").spawn().unwrap();
    let (status, stdout, stderr) = output_bounded(researcher, PROCESS_BOUND);
    let _ = node.kill();
    let _ = node.wait();
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    assert!(stderr.contains("(mutual TLS)"), "{stderr}");
    assert!(stdout.contains("3 replies, 0 lost"), "{stdout}");
}
