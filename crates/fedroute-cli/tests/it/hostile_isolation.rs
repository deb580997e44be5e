//! Hostile input, class 4: one researcher's misbehaviour affects its own
//! link only. The target is the `fedroute node` process serving a hostile
//! researcher (a scripted tonic server) and an honest one (fedroute's).
//!
//! - A task with a foreign researcher id, sent before the other link is up,
//!   fails the hostile link for good; the node goes on and serves the
//!   honest researcher when it appears.
//! - A researcher that floods tasks and never reads its `ReplyTask`
//!   streams leaves the other researcher's round trips at their normal
//!   rate (within a factor), with the node's memory bounded.

use crate::hostile_support;
use crate::node_support;
use crate::researcher_support;

use std::time::Duration;

use fedroute::researcher::ResearcherConfig;
use hostile_support::*;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

#[actix_rt::test]
async fn a_foreign_researcher_id_before_the_other_link_is_up_leaves_the_node_serving() {
    let _serial = SERIAL.lock().await;
    let hostile = HostileResearcher::start(Replies::Read);
    hostile.script(Script::Message(
        node_support::ping_request("RESEARCHER_someone_else", "foreign").to_bytes(),
    ));
    // The honest researcher's port, not listening yet.
    let port = node_support::free_port();
    let mut node = start_node_between(&hostile, port, &[]);
    node.wait_line("the link stops for good").await;
    // The node says it goes on with the other link (and does not exit).
    node.wait_line("serving the others").await;
    assert!(node.alive(), "the node exited:\n{}", node.tail());

    let mut config = ResearcherConfig::default();
    config.listen.address = format!("127.0.0.1:{port}").parse().unwrap();
    let (honest, mut events) = researcher_support::start(config).await;
    events.connected("NODE_target").await;
    let stats = ping_n(&honest, "NODE_target", 50).await;
    eprintln!(
        "hostile_isolation: after a foreign researcher id the node serves the other researcher: {} pings",
        stats.count
    );
    assert!(stats.count == 50 && stats.errors.is_empty(), "{stats:?}");
    assert!(node.alive(), "{}", node.tail());
    assert!(
        node.tail().contains("RESEARCHER_someone_else"),
        "{}",
        node.tail()
    );
    honest.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_researcher_that_floods_tasks_and_never_reads_replies_leaves_the_other_at_full_speed() {
    let _serial = SERIAL.lock().await;
    let (honest, mut events) = researcher_support::start(researcher_support::config()).await;
    let hostile = HostileResearcher::start(Replies::NeverRead);
    let mut node = node_between(&hostile, honest.local_addr.port(), &[]).await;
    events.connected("NODE_target").await;

    // The honest round-trip rate alone.
    let monitor = PingMonitor::start(&honest, "NODE_target");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let alone = monitor.stop().await;

    // The flood: more tasks than the node's outgoing queue holds, all
    // answered into a reply stream nobody reads.
    let flood = 10_000;
    for batch in 0..flood / 100 {
        hostile.script(Script::Messages(
            (0..100)
                .map(|i| {
                    let id = format!("flood-{batch}-{i}");
                    node_support::ping_request(&hostile.researcher_id, &id).to_bytes()
                })
                .collect(),
        ));
    }
    let idle = mem_of(Some(node.pid())).unwrap();
    let peak = PeakMemory::start(Some(node.pid()));
    let lines_before = node.lines();
    let monitor = PingMonitor::start(&honest, "NODE_target");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = monitor.stop().await;
    let served = hostile.served();
    let lines = node.lines() - lines_before;
    let grown = peak.stop().rss_mib - idle.rss_mib;
    eprintln!(
        "hostile_isolation: honest pings {:.0}/s alone, {:.0}/s while the other researcher flooded {} tasks and read no reply (longest gap {:?}); node VmRSS +{grown:.0} MiB, {lines} log lines",
        alone.rate(),
        during.rate(),
        served * 100,
        during.max_gap
    );
    assert!(node.alive(), "{}", node.tail());
    assert!(
        served * 100 > 5_000,
        "the flood was only {served} polls of 100 tasks"
    );
    assert!(during.errors.is_empty(), "{:?}", during.errors);
    assert!(
        during.rate() > alone.rate() * 0.25,
        "honest round trips fell from {:.0}/s to {:.0}/s",
        alone.rate(),
        during.rate()
    );
    assert!(during.max_gap < Duration::from_millis(500), "{during:?}");
    assert!(
        lines < 100,
        "{lines} log lines during the flood:\n{}",
        node.tail()
    );
    assert!(grown < 256.0, "the node's VmRSS grew by {grown:.0} MiB");
    honest.shutdown().await.unwrap();
}
