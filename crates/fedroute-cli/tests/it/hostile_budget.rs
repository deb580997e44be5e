//! Hostile input, class 2: half-received messages and idle connections.
//!
//! - 200 `ReplyTask` streams each start a message claiming the configured
//!   maximum size (two frames of 1 MiB of 256) and stall: together they
//!   would hold 600 MiB, but they hold no more than the receive
//!   budget (resident and virtual memory), the streams past it are refused
//!   with RESOURCE_EXHAUSTED at once, the others are cancelled after the
//!   stall timeout, and then the budget is free for a large reply again.
//! - Connections that never finish TLS, never start HTTP/2 or never open a
//!   stream are closed after the handshake and idle timeouts, while an
//!   honest node's connection (always polling) stays.
//! - A researcher that stalls in the middle of a task is dropped by the
//!   `fedroute node` process, and a task the honest researcher sends while
//!   the budget is taken arrives once it is free.
//!
//! The attacker of the first test is a process of its own (this test binary
//! running the ignored role test), so the researcher's memory is measured
//! alone.

use crate::hostile_support;
use crate::node_support;
use crate::researcher_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use fedroute::researcher::{Request, ResearcherConfig, ResearcherHandle};
use fedroute::wire::CHUNK_SIZE;
use hostile_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

/// The researcher's maximum message size: the stalled messages claim it.
const MAX: usize = 128 << 20;
/// The node's maximum message size: the stalled task is 60 of its frames.
const NODE_MAX: usize = 256 << 20;
/// The researcher's receive budget.
const BUDGET: usize = 256 << 20;
/// The frames of the stalled messages: 256 of them claim [`MAX`].
const STALLED_FRAME: usize = 1 << 20;
/// The stall timeout of the targets.
const STALL: Duration = Duration::from_secs(2);
/// The idle and handshake timeouts of the researcher.
const IDLE: Duration = Duration::from_secs(1);
/// Stalled streams opened by the attacker.
const STREAMS: usize = 200;
/// Memory the researcher may grow by besides its budget.
const SLACK_MIB: f64 = 128.0;
/// Address space it may grow by besides its budget: each thread that
/// allocates reserves a 64 MiB malloc arena (the test's own helper threads
/// too). The attack without a budget reserved 64 MiB per stream: 12.5 GiB.
const VM_SLACK_MIB: f64 = 512.0;

static SERIAL: Mutex<()> = Mutex::const_new(());

fn researcher_config() -> ResearcherConfig {
    let mut config = researcher_support::config();
    config.receive.max_message_bytes = MAX;
    config.receive.budget_bytes = BUDGET;
    config.receive.stall_timeout = STALL;
    config.timeouts.idle = IDLE;
    config.timeouts.handshake = IDLE;
    config
}

async fn with_honest_node(
    config: ResearcherConfig,
) -> (
    ResearcherHandle,
    researcher_support::Events,
    actix::Addr<fedroute::node::Controller>,
) {
    let (handle, mut events) = researcher_support::start(config).await;
    let (controller, _seen) =
        node_support::start_answering_node("NODE_honest", handle.local_addr.port());
    events.connected("NODE_honest").await;
    (handle, events, controller)
}

#[actix_rt::test]
async fn stalled_partial_replies_hold_at_most_the_budget_and_are_cancelled() {
    // It measures this process's memory: alone, so that no other test adds to it.
    if fedroute_testkit::process::rerun_alone(
        "hostile_budget::stalled_partial_replies_hold_at_most_the_budget_and_are_cancelled",
    ) {
        return;
    }
    let _serial = SERIAL.lock().await;
    let (handle, mut events, _node) = with_honest_node(researcher_config()).await;
    let idle = mem_of(None).unwrap();
    let peak = PeakMemory::start(None);
    let monitor = PingMonitor::start(&handle, "NODE_honest");

    let started = Instant::now();
    let child = spawn_role("hostile_budget::role_stalled_streams", &handle, &[]);
    let results = role_results(child).await;
    let took = started.elapsed();
    let stats = monitor.stop().await;
    let peak = peak.stop();
    let count = |code: &str| results.iter().filter(|r| r.as_str() == code).count();
    let (refused, cancelled) = (count("ResourceExhausted"), count("DeadlineExceeded"));
    let (rss, vm) = (peak.rss_mib - idle.rss_mib, peak.vm_mib - idle.vm_mib);
    eprintln!(
        "hostile_budget: {STREAMS} stalled streams claiming {} MiB each: {refused} refused, {cancelled} cancelled after the stall, in {took:?}; VmRSS +{rss:.0} MiB, VmSize +{vm:.0} MiB; pings {} (longest gap {:?})",
        MAX >> 20,
        stats.count,
        stats.max_gap
    );
    let mut codes = std::collections::BTreeMap::new();
    for r in &results {
        *codes.entry(r.as_str()).or_insert(0) += 1;
    }
    eprintln!("hostile_budget: the stalled streams ended with {codes:?}");
    assert_eq!(results.len(), STREAMS, "{results:?}");
    assert!(refused > 0, "no stream was refused: {results:?}");
    assert!(cancelled > 0, "no stream was cancelled: {results:?}");
    assert_eq!(refused + cancelled, STREAMS, "{results:?}");
    let budget_mib = (BUDGET >> 20) as f64;
    assert!(rss < budget_mib + SLACK_MIB, "VmRSS grew by {rss:.0} MiB");
    assert!(vm < budget_mib + VM_SLACK_MIB, "VmSize grew by {vm:.0} MiB");
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert!(stats.max_gap < Duration::from_millis(500), "{stats:?}");

    // The budget is free again: a reply of a quarter of it goes through.
    let (port, der) = (handle.local_addr.port(), handle.cert_der.clone());
    let big = stray_reply("NODE_honest");
    let mut big = big;
    big.set(
        "blob",
        fedroute::wire::Value::Bin(Bytes::from(vec![1u8; BUDGET / 4])),
    );
    let frames: Vec<_> = fedroute::wire::Frame::split(big.to_bytes())
        .map(|f| (f.size, f.iteration, f.bytes))
        .collect();
    let sent = finished(attacker(move || async move {
        let mut client = raw_client(port, der).await;
        client.reply_task(reply_stream(frames, None)).await
    }))
    .await;
    assert!(sent.is_ok(), "{sent:?}");

    // A fresh node joins.
    let (_c, _s) = node_support::start_answering_node("NODE_fresh", handle.local_addr.port());
    events.connected("NODE_fresh").await;
    handle.shutdown().await.unwrap();
}

/// The attacker of the test above: [`STREAMS`] streams over 4 connections,
/// each sending two frames of [`STALLED_FRAME`] bytes of a message of
/// [`MAX`] bytes and then nothing, without ending; prints each call's
/// status code.
#[test]
#[ignore = "an attacker role: run in a child process by the hostile tests"]
fn role_stalled_streams() {
    if !playing("hostile_budget::role_stalled_streams") {
        return;
    }
    attack_with(4, |clients| async move {
        let (_hold, hold_rx) = tokio::sync::watch::channel(false);
        let size = (MAX / STALLED_FRAME) as i32;
        let mut frame = vec![0xc0; STALLED_FRAME];
        frame[0] = 0x80;
        let frame = Bytes::from(frame);
        let calls = (0..STREAMS).map(|i| {
            let mut client = clients[i % clients.len()].clone();
            let frames = lazy_frames(frame.clone(), frame.clone(), size, 2);
            let stream = reply_stream(frames, Some(hold_rx.clone()));
            async move {
                match tokio::time::timeout(Duration::from_secs(60), client.reply_task(stream)).await
                {
                    Ok(Err(status)) => format!("{:?}", status.code()),
                    Ok(Ok(_)) => "Ok".to_string(),
                    Err(_) => "still open after 60 s".to_string(),
                }
            }
        });
        for result in futures::future::join_all(calls).await {
            println!("RESULT {result}");
        }
    });
}

/// Reads from `io` until it closes; how long that took (`None`: still open
/// after `bound`).
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    io: &mut S,
    bound: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(bound, read_all)
        .await
        .ok()
        .map(|()| started.elapsed())
}

/// A TLS connection to the researcher (ALPN h2) that sends nothing.
async fn tls_to(
    handle: &ResearcherHandle,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut config =
        (*fedroute::tls::pinned_client_config(handle.cert_der.clone(), None).unwrap()).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(handle.local_addr)
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    bounded("TLS handshake", connector.connect(name, tcp))
        .await
        .unwrap()
}

#[actix_rt::test]
async fn connections_that_never_open_a_stream_are_closed_and_polling_ones_stay() {
    let _serial = SERIAL.lock().await;
    let (handle, _events, node) = with_honest_node(researcher_config()).await;
    let bound = IDLE * 4;
    // Plain TCP, no TLS handshake.
    let mut tcp = Vec::new();
    for _ in 0..20 {
        tcp.push(
            tokio::net::TcpStream::connect(handle.local_addr)
                .await
                .unwrap(),
        );
    }
    // TLS done, no HTTP/2 preface.
    let mut tls = Vec::new();
    for _ in 0..20 {
        tls.push(tls_to(&handle).await);
    }
    // HTTP/2 preface and SETTINGS, no stream.
    let mut h2 = Vec::new();
    for _ in 0..20 {
        let mut io = tls_to(&handle).await;
        io.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        h2.push(io);
    }
    let mut slowest = Duration::ZERO;
    for io in &mut tcp {
        let t = closed_within(io, bound)
            .await
            .expect("a silent TCP connection stays open");
        slowest = slowest.max(t);
    }
    for io in &mut tls {
        let t = closed_within(io, bound)
            .await
            .expect("a TLS connection without HTTP/2 stays open");
        slowest = slowest.max(t);
    }
    for io in &mut h2 {
        let t = closed_within(io, bound)
            .await
            .expect("an HTTP/2 connection without a stream stays open");
        slowest = slowest.max(t);
    }
    eprintln!("hostile_budget: 60 idle connections closed, the last after {slowest:?}");
    // The honest node's connection (a poll always open) outlived them all.
    let status = node.send(fedroute::node::Status).await.unwrap();
    assert_eq!(status[0].reconnects, 0, "{status:?}");
    assert!(status[0].is_live(), "{status:?}");
    let stats = ping_n(&handle, "NODE_honest", 10).await;
    assert!(stats.count == 10 && stats.errors.is_empty(), "{stats:?}");
    handle.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_researcher_stalling_mid_task_is_dropped_and_the_other_ones_task_still_arrives() {
    let _serial = SERIAL.lock().await;
    let (honest, mut events) = researcher_support::start(researcher_support::config()).await;
    let hostile = HostileResearcher::start(Replies::Read);
    // Room for the hostile task in progress but not for the honest one too.
    let budget = format!("{}MiB", (NODE_MAX >> 20) + 64);
    let mut node = node_between(
        &hostile,
        honest.local_addr.port(),
        &[
            "--max-message",
            &format!("{}MiB", NODE_MAX >> 20),
            "--receive-budget",
            &budget,
            "--stall-timeout",
            &STALL.as_secs().to_string(),
        ],
    )
    .await;
    events.connected("NODE_target").await;
    let idle = mem_of(Some(node.pid())).unwrap();
    let peak = PeakMemory::start(Some(node.pid()));

    // 60 of 67 frames of a maximum-size task, then silence.
    let frames = (NODE_MAX / CHUNK_SIZE) as i32;
    let frame = full_frame(&[0x80], 0xc0);
    hostile.script(Script::FramesThenStall(lazy_frames(
        frame.clone(),
        frame,
        frames,
        60,
    )));
    hostile.until_served(1).await;
    // The node holds the stalled frames (240 MB) once its memory shows them.
    let pid = node.pid();
    bounded("the node holding the stalled frames", async {
        while mem_of(Some(pid)).map_or(0.0, |m| m.rss_mib - idle.rss_mib) < 200.0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Now the honest researcher sends a 128 MiB task: it does not fit the
    // budget until the stalled one is dropped; the node waits for room (the
    // researcher is held back by flow control), and then it arrives.
    let blob = researcher_support::blob_request(&honest, Bytes::from(vec![7u8; 128 << 20]));
    let started = Instant::now();
    let answer = bounded(
        "the honest task's answer",
        honest.addr.send(Request {
            node_id: "NODE_target".into(),
            message: blob,
            timeout: Duration::from_secs(60),
        }),
    )
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("the honest task is not answered: {e}\n{}", node.tail()));
    let took = started.elapsed();
    node.wait_line("sent part of a task and then nothing").await;
    let peak = peak.stop();
    let grown = peak.rss_mib - idle.rss_mib;
    eprintln!(
        "hostile_budget: node with a stalled {} MiB task: answered the honest 128 MiB task in {took:?} ({}); VmRSS +{grown:.0} MiB",
        NODE_MAX >> 20,
        answer.class()
    );
    assert_eq!(
        answer.class(),
        "ErrorMessage",
        "the reference node's answer"
    );
    assert!(node.alive(), "{}", node.tail());
    let budget_mib = ((NODE_MAX >> 20) + 64) as f64;
    assert!(
        grown < budget_mib + SLACK_MIB,
        "the node's VmRSS grew by {grown:.0} MiB"
    );
    // The hostile link polls again after dropping the stalled task.
    hostile.script(Script::Message(
        node_support::ping_request(&hostile.researcher_id, "after-stall").to_bytes(),
    ));
    hostile.until_served(2).await;
    honest.shutdown().await.unwrap();
}
