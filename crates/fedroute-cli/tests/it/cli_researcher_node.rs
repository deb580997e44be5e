//! `fedroute researcher --ping` against `fedroute node` processes: the
//! researcher waits for the nodes, pings each, prints statistics and exits
//! with success; the nodes' logs reach the researcher as feedback. Ctrl-C
//! stops both cleanly.

use crate::cli_support;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use cli_support::*;

#[test]
fn researcher_pings_two_node_processes() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let researcher = fedroute(
        &[
            "researcher",
            "--listen",
            &addr,
            "--ping",
            "10",
            "--wait-nodes",
            "2",
            "--wait-timeout",
            "30",
        ],
        "info",
    )
    .spawn()
    .unwrap();
    let nodes: Vec<_> = ["NODE_p1", "NODE_p2"]
        .iter()
        .map(|id| {
            fedroute(
                &[
                    "node",
                    "--researcher",
                    &addr,
                    "--id",
                    id,
                    "--dataset",
                    "mnist:images,digits",
                    "--connect-timeout",
                    "30",
                    "--exit-after",
                    "60",
                ],
                "info",
            )
            .spawn()
            .unwrap()
        })
        .collect();
    let (status, stdout, stderr) = output_bounded(researcher, PROCESS_BOUND);
    for mut node in nodes {
        let _ = node.kill();
        let _ = node.wait();
    }
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("20 pings to 2 node(s): 20 replies, 0 lost"),
        "{stdout}"
    );
    assert!(stdout.contains("NODE_p1: 10/10 replies"), "{stdout}");
    assert!(stdout.contains("NODE_p2: 10/10 replies"), "{stdout}");
    // The nodes' own log records arrived as feedback.
    assert!(stderr.contains("feedback from NODE_p1"), "{stderr}");
}

#[test]
fn ctrl_c_stops_researcher_and_node_cleanly() {
    let mut researcher = fedroute(&["researcher", "--listen", "127.0.0.1:0"], "info")
        .spawn()
        .unwrap();
    // The researcher prints its bound address first.
    let addr = bound_address(&mut researcher);
    let mut node = fedroute(&["node", "--researcher", &addr, "--id", "NODE_c"], "info")
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(node.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "node ended early");
        if line.contains("connected to researcher") {
            break;
        }
    }
    interrupt(&node);
    let status = wait_bounded(&mut node, Duration::from_secs(20));
    assert!(status.success(), "node: {status}");
    interrupt(&researcher);
    let status = wait_bounded(&mut researcher, Duration::from_secs(20));
    assert!(status.success(), "researcher: {status}");
}

/// Reads the researcher's first stdout line and returns the address in it.
fn bound_address(researcher: &mut std::process::Child) -> String {
    let mut first = String::new();
    BufReader::new(researcher.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    first
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string()
}

#[test]
fn mutual_tls_with_a_pinned_researcher_certificate() {
    use fedroute_testkit::ca::CertificateAuthority;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let ca = CertificateAuthority::generate("cli test CA").unwrap();
    ca.write_cert_pem(dir.path().join("ca.pem").as_path())
        .unwrap();
    ca.issue_node_identity("NODE_m")
        .unwrap()
        .write_pem(
            dir.path().join("node.pem").as_path(),
            dir.path().join("node.key").as_path(),
        )
        .unwrap();

    let mut researcher = fedroute(
        &[
            "researcher",
            "--listen",
            "127.0.0.1:0",
            "--client-ca",
            &path("ca.pem"),
            "--cert-out",
            &path("researcher.pem"),
            "--ping",
            "3",
        ],
        "info",
    )
    .spawn()
    .unwrap();
    let addr = bound_address(&mut researcher);
    let mut node = fedroute(
        &[
            "node",
            "--researcher",
            &addr,
            "--id",
            "NODE_m",
            "--pin",
            &path("researcher.pem"),
            "--cert",
            &path("node.pem"),
            "--key",
            &path("node.key"),
            "--exit-after",
            "60",
        ],
        "info",
    )
    .spawn()
    .unwrap();
    let (status, stdout, stderr) = output_bounded(researcher, PROCESS_BOUND);
    let _ = node.kill();
    let _ = node.wait();
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    assert!(stderr.contains("(mutual TLS)"), "{stderr}");
    assert!(stdout.contains("3 replies, 0 lost"), "{stdout}");
}

#[test]
fn plaintext_only_when_both_sides_say_insecure_and_with_a_warning() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let researcher = fedroute(
        &[
            "researcher",
            "--listen",
            &addr,
            "--insecure",
            "--ping",
            "3",
            "--wait-nodes",
            "1",
            "--wait-timeout",
            "30",
        ],
        "info",
    )
    .spawn()
    .unwrap();
    let mut node = fedroute(
        &[
            "node",
            "--researcher",
            &addr,
            "--id",
            "NODE_plain",
            "--insecure",
            "--connect-timeout",
            "30",
            "--exit-after",
            "60",
        ],
        "info",
    )
    .spawn()
    .unwrap();
    let (status, stdout, stderr) = output_bounded(researcher, PROCESS_BOUND);
    let _ = node.kill();
    let node_out = node.wait_with_output().unwrap();
    let node_err = String::from_utf8_lossy(&node_out.stderr);
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    assert!(stdout.contains("NODE_plain: 3/3 replies"), "{stdout}");
    assert!(
        stderr.to_lowercase().contains("insecure") || stderr.to_lowercase().contains("plaintext"),
        "the researcher warns: {stderr}"
    );
    assert!(
        node_err.contains("WITHOUT TLS"),
        "the node warns: {node_err}"
    );
}
