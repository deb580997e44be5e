//! Hostile input, class 3: a flood of made-up node ids locks nobody out.
//!
//! - Polls from ten times as many distinct node ids as the node table
//!   holds: while they come, some are refused (RESOURCE_EXHAUSTED), the
//!   honest node (always polling) keeps its agent and its round trips, and
//!   once the flood stops a new node joins within seconds (agents that are
//!   DISCONNECTED with nothing pending make room), not never.
//! - Such agents are forgotten after `forget_after`.
//! - Node ids of a megabyte, or with characters outside the rules, are
//!   refused with INVALID_ARGUMENT and a status that quotes a few dozen
//!   characters of them.
//!
//! The flood comes from a process of its own (this test binary running the
//! ignored role test).

use crate::hostile_support;
use crate::node_support;
use crate::researcher_support;

use std::time::{Duration, Instant};

use fedroute::proto::TaskRequest;
use fedroute::researcher::{Nodes, ResearcherConfig, ResearcherHandle};
use hostile_support::*;
use tokio::sync::Mutex;
use tonic::Code;

/// The node table's size in these tests.
const MAX_NODES: usize = 500;
/// Distinct node ids of the flood.
const FLOOD: usize = 5_000;
/// How long a node may go without a poll before it is DISCONNECTED.
const DISCONNECTION: Duration = Duration::from_secs(1);

static SERIAL: Mutex<()> = Mutex::const_new(());

fn flood_config() -> ResearcherConfig {
    let mut config = researcher_support::config();
    config.limits.max_nodes = MAX_NODES;
    config.nodes.disconnection_timeout = DISCONNECTION;
    config
}

async fn start_with_honest_node(
    config: ResearcherConfig,
) -> (ResearcherHandle, researcher_support::Events) {
    let (handle, mut events) = researcher_support::start(config).await;
    let (_c, _s) = node_support::start_answering_node("NODE_honest", handle.local_addr.port());
    events.connected("NODE_honest").await;
    (handle, events)
}

/// Runs the flood role against `handle` with `count` ids; the status codes
/// of the polls.
async fn flood(handle: &ResearcherHandle, count: usize) -> Vec<String> {
    role_results(spawn_role(
        "hostile_flood::role_poll_flood",
        handle,
        &[("HOSTILE_COUNT", count.to_string())],
    ))
    .await
}

#[actix_rt::test]
async fn a_poll_flood_of_made_up_node_ids_locks_no_new_node_out() {
    // It measures this process's memory: alone, so that no other test adds to it.
    if fedroute_testkit::process::rerun_alone(
        "hostile_flood::a_poll_flood_of_made_up_node_ids_locks_no_new_node_out",
    ) {
        return;
    }
    let _serial = SERIAL.lock().await;
    let (handle, mut events) = start_with_honest_node(flood_config()).await;
    let idle = mem_of(None).unwrap();
    let peak = PeakMemory::start(None);
    let monitor = PingMonitor::start(&handle, "NODE_honest");
    let started = Instant::now();
    let codes = flood(&handle, FLOOD).await;
    let took = started.elapsed();
    let stats = monitor.stop().await;
    let count = |c: &str| codes.iter().filter(|r| r.as_str() == c).count();
    let (opened, refused) = (count("Ok"), count("ResourceExhausted"));
    eprintln!(
        "hostile_flood: {FLOOD} node ids polled in {took:?}: {opened} polls opened, {refused} refused; pings {} (longest gap {:?})",
        stats.count, stats.max_gap
    );
    assert_eq!(opened + refused, FLOOD, "{codes:?}");
    assert!(refused > 0, "the table of {MAX_NODES} never filled");
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert!(stats.max_gap < Duration::from_millis(500), "{stats:?}");
    let known = handle.addr.send(Nodes).await.unwrap();
    assert!(known.len() <= MAX_NODES, "{} agents", known.len());
    assert!(known.iter().any(|n| n.node_id == "NODE_honest"));

    // After the flood a new node joins.
    let stopped = Instant::now();
    let (_c, _s) = node_support::start_answering_node("NODE_fresh", handle.local_addr.port());
    events.connected("NODE_fresh").await;
    let joined = stopped.elapsed();
    let grown = peak.stop().rss_mib - idle.rss_mib;
    eprintln!("hostile_flood: a new node joined {joined:?} after the flood; VmRSS +{grown:.0} MiB");
    assert!(
        joined < Duration::from_secs(60),
        "joined only after {joined:?}"
    );
    assert!(
        grown < 256.0,
        "VmRSS grew by {grown:.0} MiB for {MAX_NODES} agents"
    );
    let fresh = ping_n(&handle, "NODE_fresh", 10).await;
    assert!(fresh.count == 10 && fresh.errors.is_empty(), "{fresh:?}");
    handle.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn agents_of_nodes_gone_with_nothing_pending_are_forgotten() {
    let _serial = SERIAL.lock().await;
    let forget_after = Duration::from_secs(2);
    let mut config = flood_config();
    config.nodes.forget_after = forget_after;
    let (handle, _events) = start_with_honest_node(config).await;
    let codes = flood(&handle, 200).await;
    assert!(codes.iter().all(|c| c == "Ok"), "{codes:?}");
    let after_flood = handle.addr.send(Nodes).await.unwrap().len();
    assert_eq!(after_flood, 201);
    // DISCONNECTED after 1 s, forgotten 2 s later (swept every second).
    let started = Instant::now();
    bounded("the flood's agents forgotten", async {
        loop {
            let known = handle.addr.send(Nodes).await.unwrap();
            if known.len() == 1 {
                assert_eq!(known[0].node_id, "NODE_honest");
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    eprintln!(
        "hostile_flood: 200 idle agents forgotten {:?} after the flood",
        started.elapsed()
    );
    handle.shutdown().await.unwrap();
}

/// The flood: `HOSTILE_COUNT` polls from distinct node ids over 8
/// connections, each dropped as soon as the researcher accepted it; prints
/// each poll's status code.
#[test]
#[ignore = "an attacker role: run in a child process by the hostile tests"]
fn role_poll_flood() {
    if !playing("hostile_flood::role_poll_flood") {
        return;
    }
    let count: usize = std::env::var("HOSTILE_COUNT").unwrap().parse().unwrap();
    attack_with(8, |clients| async move {
        let polls = (0..count).map(|i| {
            let mut client = clients[i % clients.len()].clone();
            async move {
                let request = TaskRequest {
                    node: format!("NODE_flood_{i}_{}", uuid::Uuid::new_v4()),
                    protocol_version: "7".into(),
                };
                let poll = client.get_task_unary(request);
                match tokio::time::timeout(Duration::from_secs(30), poll).await {
                    // Accepted: drop the call at once.
                    Ok(Ok(_stream)) => "Ok".to_string(),
                    Ok(Err(status)) => format!("{:?}", status.code()),
                    Err(_) => "no answer in 30 s".to_string(),
                }
            }
        });
        use futures::StreamExt;
        let codes: Vec<String> = futures::stream::iter(polls)
            .buffer_unordered(64)
            .collect()
            .await;
        for code in codes {
            println!("RESULT {code}");
        }
    });
}

#[actix_rt::test]
async fn node_ids_of_a_megabyte_or_odd_characters_are_refused_with_a_short_status() {
    let _serial = SERIAL.lock().await;
    let (handle, _events) = researcher_support::start(flood_config()).await;
    let mut client = researcher_support::client(&handle).await;
    let huge = "N".repeat(1 << 20);
    for node in [huge.as_str(), "NODE 1", "NODE\n1", "NODE\"1", ""] {
        let request = TaskRequest {
            node: node.to_string(),
            protocol_version: "7".into(),
        };
        let status = bounded("a bad poll", client.get_task_unary(request))
            .await
            .expect_err("a bad node id was accepted");
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{node:.20?}: {status:?}"
        );
        assert!(
            status.message().len() < 300,
            "the status quotes {} bytes",
            status.message().len()
        );
    }
    // A reply naming such a node, or such a request id.
    let mut reply = stray_reply("NODE_x");
    reply.set("node_id", fedroute::wire::Value::Str(huge.clone()));
    let status = researcher_support::reply(&mut client, &[reply])
        .await
        .expect_err("a reply from a 1 MB node id was accepted");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().len() < 300, "{}", status.message().len());
    let mut reply = stray_reply("NODE_x");
    reply.set("request_id", fedroute::wire::Value::Str(huge));
    let status = researcher_support::reply(&mut client, &[reply])
        .await
        .expect_err("a reply with a 1 MB request id was accepted");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().len() < 300, "{}", status.message().len());
    // A protocol version of a megabyte.
    let request = TaskRequest {
        node: "NODE_x".into(),
        protocol_version: format!("7.{}", "1".repeat(1 << 20)),
    };
    let status = bounded("a poll", client.get_task_unary(request))
        .await
        .expect_err("a 1 MB version was accepted");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().len() < 300, "{}", status.message().len());
    handle.shutdown().await.unwrap();
}
