//! Researcher crashes and outages: the researcher's runtime is dropped (its
//! server task aborted, every connection cut, no polite shutdown) and a new
//! one started on the same port with the same id; a node controller shut
//! down with replies queued; a researcher unreachable for a while.

use crate::faults_support;

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use faults_support::Crashable;
use fedroute::node::{
    Controller, ControllerConfig, IsConnected, ResearcherEndpoint, SendReply, Shutdown, Status,
};
use fedroute::researcher::{ResearcherConfig, ResearcherEvent};
use fedroute::wire::{Envelope, Value};

const RID: &str = "RESEARCHER_restart-test";

use faults_support::within;

/// A handler that ignores tasks.
struct Quiet;
impl Actor for Quiet {
    type Context = Context<Self>;
}
impl Handler<fedroute::node::TaskReceived> for Quiet {
    type Result = ();
    fn handle(&mut self, _: fedroute::node::TaskReceived, _: &mut Context<Self>) {}
}

/// A researcher on `port` keeping its identity in `state`, so that a
/// restarted researcher is the one the node trusted.
fn config(port: u16, state: &std::path::Path) -> ResearcherConfig {
    let mut config = ResearcherConfig::default();
    config.state_dir = Some(state.to_path_buf());
    config.listen.address = SocketAddr::from(([127, 0, 0, 1], port));
    config.listen.researcher_id = Some(RID.to_string());
    config
}

fn fast() -> ControllerConfig {
    let mut config = ControllerConfig::default();
    config.reconnect.backoff_first = Duration::from_millis(10);
    config.reconnect.backoff_max = Duration::from_millis(200);
    config.channel.connect_timeout = Duration::from_secs(2);
    config
}

fn node(id: &str, port: u16, config: ControllerConfig) -> Addr<Controller> {
    Controller::builder(id)
        .name(format!("{id} name"))
        .researchers(vec![ResearcherEndpoint::trust_on_first_use(
            "127.0.0.1",
            port,
        )])
        .config(config)
        .build(Quiet.start().recipient())
        .expect("the controller starts")
        .start()
}

/// An unsolicited reply from `node` numbered `seq`.
fn numbered(node: &str, seq: usize) -> Envelope {
    let tm = Value::map([
        ("module", Value::Str("fedbiomed.common.message".into())),
        ("class", Value::Str("SeqReply".into())),
    ]);
    Envelope::from_value(Value::map([
        ("protocol_version", Value::Str("7".into())),
        ("researcher_id", Value::Str(RID.into())),
        ("request_id", Value::Str(format!("{node}-{seq}"))),
        ("node_id", Value::Str(node.into())),
        ("node_name", Value::Str(node.into())),
        ("seq", Value::UInt(seq as u64)),
        ("__type_message__", tm),
    ]))
    .unwrap()
}

async fn wait_connected(c: &Addr<Controller>, want: bool) {
    within("IsConnected", async {
        loop {
            if c.send(IsConnected).await.unwrap() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[actix_rt::test]
async fn replies_queued_during_a_researcher_crash_all_arrive_after_restart() {
    let _ = env_logger::builder().is_test(true).try_init();
    let state = tempfile::tempdir().unwrap();
    let mut r = Crashable::start(config(0, state.path()));
    let port = r.addr.port();
    let names = ["NODE_r1", "NODE_r2", "NODE_r3"];
    let nodes: Vec<_> = names.iter().map(|n| node(n, port, fast())).collect();
    for n in names {
        r.connected(n).await;
    }
    r.kill();
    for c in &nodes {
        wait_connected(c, false).await;
    }
    let per_node = 50;
    for (c, n) in nodes.iter().zip(names) {
        for i in 0..per_node {
            within("Send", c.send(SendReply(numbered(n, i))))
                .await
                .unwrap()
                .expect("a reply is queued while the researcher is down");
        }
    }
    let mut r = Crashable::start(config(port, state.path()));
    let got = r.unmatched(per_node * names.len()).await;
    for n in names {
        let seqs: Vec<u64> = got
            .iter()
            .filter(|e| e.node_id() == Some(n))
            .map(|e| e.get("seq").and_then(Value::as_u64).unwrap())
            .collect();
        assert_eq!(
            seqs,
            (0..per_node as u64).collect::<Vec<_>>(),
            "{n}: replies lost, repeated or out of order"
        );
    }
    for c in &nodes {
        let report = within(
            "shutdown",
            c.send(Shutdown {
                deadline: Duration::from_secs(2),
            }),
        )
        .await
        .unwrap();
        assert_eq!(report.undelivered(), 0, "{report:?}");
    }
    // Nothing more arrives (no duplicates).
    while let Ok(ev) = r.events.try_recv() {
        assert!(
            !matches!(ev, ResearcherEvent::UnmatchedReply(_)),
            "a reply arrived twice: {ev:?}"
        );
    }
}

/// In streaming poll mode a reply queued while the researcher was down
/// goes only once the restarted researcher has accepted the node's new
/// poll: sent earlier, it is refused (the node is unknown until it polls)
/// and waits a back-off of tens of milliseconds, behind which every other
/// reply waits too (issue 19).
#[actix_rt::test]
async fn a_reply_queued_during_an_outage_is_not_refused_after_the_restart() {
    let _ = env_logger::builder().is_test(true).try_init();
    for round in 0..3 {
        let state = tempfile::tempdir().unwrap();
        let mut r = Crashable::start(config(0, state.path()));
        let port = r.addr.port();
        let id = "NODE_settled";
        let mut streaming = fast();
        streaming.polling.mode = fedroute::node::PollMode::Streaming;
        let c = node(id, port, streaming);
        r.connected(id).await;
        r.kill();
        wait_connected(&c, false).await;
        within("Send", c.send(SendReply(numbered(id, 0))))
            .await
            .unwrap()
            .expect("a reply is queued while the researcher is down");
        let mut r = Crashable::start(config(port, state.path()));
        let got = r.unmatched(1).await;
        assert_eq!(got[0].get("seq").and_then(Value::as_u64), Some(0));
        let status = within("Status", c.send(Status)).await.unwrap();
        // A refusal is recorded before the send that delivered the reply.
        assert_eq!(
            status[0].last_error, None,
            "round {round}: the reply was refused before the poll was accepted"
        );
        within(
            "shutdown",
            c.send(Shutdown {
                deadline: Duration::from_secs(2),
            }),
        )
        .await
        .unwrap();
    }
}

#[actix_rt::test]
async fn shutdown_sends_queued_replies_or_reports_them_unsent() {
    let _ = env_logger::builder().is_test(true).try_init();
    // Researcher up: everything queued is sent before the deadline.
    let state = tempfile::tempdir().unwrap();
    let mut r = Crashable::start(config(0, state.path()));
    let port = r.addr.port();
    let c = node("NODE_s1", port, fast());
    r.connected("NODE_s1").await;
    for i in 0..20 {
        c.send(SendReply(numbered("NODE_s1", i)))
            .await
            .unwrap()
            .unwrap();
    }
    let report = within(
        "shutdown",
        c.send(Shutdown {
            deadline: Duration::from_secs(10),
        }),
    )
    .await
    .unwrap();
    assert_eq!(report.undelivered(), 0, "{report:?}");
    let got = r.unmatched(20).await;
    let seqs: Vec<u64> = got
        .iter()
        .map(|e| e.get("seq").and_then(Value::as_u64).unwrap())
        .collect();
    assert_eq!(seqs, (0..20).collect::<Vec<_>>());

    // Researcher down: what cannot be sent by the deadline is reported, in order.
    let c = node("NODE_s2", port, fast());
    r.connected("NODE_s2").await;
    r.kill();
    wait_connected(&c, false).await;
    for i in 0..20 {
        c.send(SendReply(numbered("NODE_s2", i)))
            .await
            .unwrap()
            .unwrap();
    }
    let report = within(
        "shutdown",
        c.send(Shutdown {
            deadline: Duration::from_millis(300),
        }),
    )
    .await
    .unwrap();
    let unsent: Vec<u64> = report
        .unacknowledged
        .iter()
        .chain(&report.unsent)
        .map(|e| e.get("seq").and_then(Value::as_u64).unwrap())
        .collect();
    assert_eq!(
        unsent,
        (0..20).collect::<Vec<_>>(),
        "queued replies neither sent nor reported"
    );
}

#[actix_rt::test]
async fn an_unreachable_researcher_is_retried_with_backoff_and_flat_memory() {
    // It measures this process's memory: alone, so that no other test adds to it.
    if fedroute_testkit::process::rerun_alone(
        "faults_restart::an_unreachable_researcher_is_retried_with_backoff_and_flat_memory",
    ) {
        return;
    }
    let _ = env_logger::builder().is_test(true).try_init();
    let state = tempfile::tempdir().unwrap();
    let mut r = Crashable::start(config(0, state.path()));
    let port = r.addr.port();
    let c = node("NODE_u", port, fast());
    r.connected("NODE_u").await;
    r.kill();
    wait_connected(&c, false).await;
    // While down, a listener on the port accepts and drops every connection:
    // each accept is one connection attempt of the node.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = {
        let attempts = attempts.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(sock);
            }
        })
    };
    let rss_before = faults_support::vm_rss_kib();
    // Down for 3 s with a 200 ms backoff cap: the outage of a minute, scaled.
    let outage = Duration::from_secs(3);
    let mut queued = 0;
    let start = tokio::time::Instant::now();
    while start.elapsed() < outage {
        c.send(SendReply(numbered("NODE_u", queued)))
            .await
            .unwrap()
            .unwrap();
        queued += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    counter.abort();
    let _ = counter.await;
    let attempts = attempts.load(std::sync::atomic::Ordering::SeqCst);
    let status = within("status", c.send(Status)).await.unwrap();
    let rss_after = faults_support::vm_rss_kib();
    eprintln!(
        "faults_restart: {attempts} connection attempts in {outage:?}; state {:?}; queue {}; VmRSS {} -> {} KiB",
        status[0].state, status[0].queue_depth, rss_before, rss_after
    );
    // Without backoff (10 ms) it would be ~300; capped exponential backoff
    // at 200 ms gives about 15 to 25.
    assert!(attempts >= 3, "only {attempts} attempts: the link gave up");
    assert!(
        attempts <= 60,
        "{attempts} attempts in {outage:?}: no backoff"
    );
    assert!(
        rss_after.saturating_sub(rss_before) < 16 * 1024,
        "memory grew by {} KiB while the researcher was down",
        rss_after - rss_before
    );
    let mut r = Crashable::start(config(port, state.path()));
    wait_connected(&c, true).await;
    let got = r.unmatched(queued).await;
    let seqs: Vec<u64> = got
        .iter()
        .map(|e| e.get("seq").and_then(Value::as_u64).unwrap())
        .collect();
    assert_eq!(seqs, (0..queued as u64).collect::<Vec<_>>());
    let _ = within(
        "shutdown",
        c.send(Shutdown {
            deadline: Duration::from_secs(2),
        }),
    )
    .await;
}
