//! Hostile input, class 5: floods of bad input cost a few log lines, and
//! running out of file descriptors does not spin a core. The targets are
//! the `fedroute node` and `fedroute researcher` processes.
//!
//! - 80,000 malformed tasks from one researcher: the node logs a handful of
//!   warnings, then one line with the count of those held back, and keeps
//!   answering the other researcher.
//! - 10,000 malformed replies from one client: the researcher likewise.
//! - The researcher limited to 64 file descriptors and sent 100
//!   connections: its accept loop waits instead of retrying at once (CPU
//!   stays near idle), and a node connects once they are gone.

use crate::cli_support;
use crate::hostile_support;
use crate::node_support;
use crate::researcher_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use fedroute::proto::TaskResult;
use hostile_support::*;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// The counts of the "N more ... lines were held back" lines in `tail`.
fn held_back(tail: &str) -> u64 {
    tail.lines()
        .filter(|l| l.contains("lines were held back"))
        .filter_map(|l| {
            let (_, rest) = l.split_once(": ")?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

#[actix_rt::test]
async fn a_flood_of_malformed_tasks_costs_the_node_a_few_log_lines() {
    let _serial = SERIAL.lock().await;
    let (honest, mut events) = researcher_support::start(researcher_support::config()).await;
    let hostile = HostileResearcher::start(Replies::Read);
    let mut node = node_between(&hostile, honest.local_addr.port(), &[]).await;
    events.connected("NODE_target").await;
    let before = node.lines();
    let bad = 80_000;
    let garbage = Bytes::from_static(b"\xc1");
    hostile.script(Script::Frames(
        (0..bad).map(|_| (1, 1, garbage.clone())).collect(),
    ));
    let monitor = PingMonitor::start(&honest, "NODE_target");
    let started = Instant::now();
    // The count of the lines held back comes with the next window.
    bounded("the held-back count", async {
        while held_back(&node.tail()) + 5 < bad {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let stats = monitor.stop().await;
    let lines = node.lines() - before;
    eprintln!(
        "hostile_logs: {bad} bad tasks cost the node {lines} log lines in {:?} ({} held back); honest pings {} (longest gap {:?})",
        started.elapsed(),
        held_back(&node.tail()),
        stats.count,
        stats.max_gap
    );
    assert!(node.alive(), "{}", node.tail());
    assert!(lines <= 20, "{lines} lines:\n{}", node.tail());
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert!(stats.max_gap < Duration::from_millis(500), "{stats:?}");
    honest.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_flood_of_malformed_replies_costs_the_researcher_a_few_log_lines() {
    let _serial = SERIAL.lock().await;
    let port = node_support::free_port();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("researcher.pem");
    let mut researcher = Process::start(
        &[
            "researcher",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--cert-out",
            cert.to_str().unwrap(),
        ],
        "info",
    );
    researcher.wait_line("listening on").await;
    let pem = std::fs::read_to_string(&cert).unwrap();
    let der = cert_der_of(&pem);
    let before = researcher.lines();
    let bad = 10_000;
    let codes = finished(attacker(move || async move {
        let client = raw_client(port, der).await;
        let calls = (0..bad).map(|_| {
            let mut client = client.clone();
            async move {
                let frame = TaskResult {
                    size: 1,
                    iteration: 1,
                    bytes: Bytes::from_static(b"\xc1"),
                };
                client
                    .reply_task(tokio_stream::iter(vec![frame]))
                    .await
                    .err()
                    .map(|s| s.code())
            }
        });
        use futures::StreamExt;
        futures::stream::iter(calls)
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
    }))
    .await;
    assert!(codes
        .iter()
        .all(|c| *c == Some(tonic::Code::InvalidArgument)));
    bounded("the held-back count", async {
        while held_back(&researcher.tail()) + 5 < bad {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let lines = researcher.lines() - before;
    eprintln!(
        "hostile_logs: {bad} bad replies cost the researcher {lines} log lines ({} held back)",
        held_back(&researcher.tail())
    );
    assert!(researcher.alive(), "{}", researcher.tail());
    assert!(lines <= 20, "{lines} lines:\n{}", researcher.tail());
}

/// The DER of the first certificate in `pem`.
fn cert_der_of(pem: &str) -> fedroute::tls::CertificateDer<'static> {
    use rustls_pki_types::pem::PemObject;
    fedroute::tls::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

#[actix_rt::test]
async fn running_out_of_file_descriptors_does_not_spin_the_accept_loop() {
    let _serial = SERIAL.lock().await;
    let port = node_support::free_port();
    let script = format!(
        "ulimit -n 64 && exec '{}' researcher --listen 127.0.0.1:{port}",
        cli_support::fedroute_bin().display()
    );
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", &script])
        .env(cli_support::STATE_DIR_ENV, cli_support::test_state_dir());
    let mut researcher = Process::start_command(cmd, "info");
    researcher.wait_line("listening on").await;
    // More connections than descriptors: accepting fails with EMFILE.
    let mut conns = Vec::new();
    for _ in 0..100 {
        conns.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    researcher.wait_line("cannot accept connections").await;
    let cpu_before = cpu_seconds(researcher.pid());
    let window = Duration::from_secs(3);
    tokio::time::sleep(window).await;
    let cpu = cpu_seconds(researcher.pid()) - cpu_before;
    eprintln!(
        "hostile_logs: out of descriptors for {window:?}, the researcher used {cpu:.2} s of CPU"
    );
    assert!(researcher.alive(), "{}", researcher.tail());
    assert!(
        cpu < 0.5,
        "the accept loop used {cpu:.2} s of CPU in {window:?}"
    );
    // Once the connections are gone, a node connects.
    drop(conns);
    let node = Process::start(
        &[
            "node",
            "--id",
            "NODE_after",
            "--researcher",
            &format!("127.0.0.1:{port}"),
        ],
        "info",
    );
    researcher.wait_line("node NODE_after connected").await;
    researcher.wait_line("accepting connections again").await;
    drop(node);
}
