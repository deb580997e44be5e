//! Hostile input, class 1: one message must not kill either side.
//!
//! A message whose msgpack header claims billions of elements, sent at the
//! configured maximum message size, is refused before anything is reserved
//! for the claim; arrays whose value tree would cost 40 times their size
//! are refused; a large message that is expensive to decode is decoded off
//! the event loop. Throughout, an honest node's ping round trips go on, the
//! target's memory stays within its idle size plus the configured budget,
//! and a fresh node joins afterwards. The researcher runs in this process
//! (the attacker on its own thread, sending shared frames: a few MiB of its
//! own); the node is the `fedroute node` process.

use crate::hostile_support;
use crate::node_support;
use crate::researcher_support;

use std::time::Duration;

use bytes::Bytes;
use fedroute::researcher::{ResearcherEvent, ResearcherHandle};
use fedroute::wire::{Value, CHUNK_SIZE};
use hostile_support::*;
use tokio::sync::Mutex;
use tonic::Code;

/// The configured maximum message size of the targets: attacks go up to it.
const MAX: usize = 256 << 20;
/// The receive budget: the largest message plus room for honest traffic.
const BUDGET: usize = MAX + (64 << 20);
/// Memory a target may grow by besides its budget (TLS and HTTP/2 buffers,
/// the allocator's slack).
const SLACK_MIB: f64 = 96.0;
/// The longest an honest round trip may take during an attack.
const MAX_ROUND_TRIP: Duration = Duration::from_millis(500);
/// The longest an honest round trip may take while a heavy reply is
/// decoded: a quarter of what decoding it takes (measured in the test; about
/// 0.9 s in a debug build, 0.2 s in release), at most 250 ms.
const DECODE_ROUND_TRIP: Duration = Duration::from_millis(250);
/// 32-bit integers in the heavy reply: 40 MB, a 320 MB tree.
const INTEGERS: usize = 8_000_000;

/// The tests measure this process's memory: one at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// A researcher with the test limits and an honest node pinging it.
async fn researcher_with_honest_node() -> (ResearcherHandle, researcher_support::Events) {
    let mut config = researcher_support::config();
    config.receive.max_message_bytes = MAX;
    config.receive.budget_bytes = BUDGET;
    let (handle, mut events) = researcher_support::start(config).await;
    let (_controller, _seen) =
        node_support::start_answering_node("NODE_honest", handle.local_addr.port());
    events.connected("NODE_honest").await;
    (handle, events)
}

/// A fresh node connects and answers a ping.
async fn fresh_node_joins(handle: &ResearcherHandle, events: &mut researcher_support::Events) {
    let (_c, _s) = node_support::start_answering_node("NODE_fresh", handle.local_addr.port());
    events.connected("NODE_fresh").await;
    let stats = ping_n(handle, "NODE_fresh", 10).await;
    assert!(stats.count == 10 && stats.errors.is_empty(), "{stats:?}");
}

/// Sends one `ReplyTask` call of `frames` from the attacker's thread.
async fn attack_reply(handle: &ResearcherHandle, frames: Vec<(i32, i32, Bytes)>) -> tonic::Status {
    let (port, cert) = (handle.local_addr.port(), handle.cert_der.clone());
    let result = finished(attacker(move || async move {
        let mut client = raw_client(port, cert).await;
        client.reply_task(reply_stream(frames, None)).await
    }))
    .await;
    result.expect_err("the hostile reply was accepted")
}

/// Pings to the honest side kept being answered during an attack: no
/// errors, more than 10, none waited for longer than [`MAX_ROUND_TRIP`].
fn assert_pings_kept_up(stats: &PingStats) {
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert!(
        stats.count > 10,
        "only {} pings during the attack",
        stats.count
    );
    assert!(
        stats.max_gap < MAX_ROUND_TRIP,
        "no ping answered for {:?}",
        stats.max_gap
    );
}

#[actix_rt::test]
async fn a_reply_claiming_billions_of_elements_at_the_size_limit_is_refused_while_pings_go_on() {
    // It measures this process's memory: alone, so that no other test adds to it.
    if fedroute_testkit::process::rerun_alone("hostile_decode::a_reply_claiming_billions_of_elements_at_the_size_limit_is_refused_while_pings_go_on") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let (handle, mut events) = researcher_with_honest_node().await;
    let frames = (MAX / CHUNK_SIZE) as i32;
    let total = frames as usize * CHUNK_SIZE;
    let nils = full_frame(&[], 0xc0);
    let idle = mem_of(None).unwrap();
    let peak = PeakMemory::start(None);
    let monitor = PingMonitor::start(&handle, "NODE_honest");

    // 4 billion elements claimed, 268 million bytes of nils sent.
    let claim_all = full_frame(&array_header(u32::MAX), 0xc0);
    let status = attack_reply(
        &handle,
        lazy_frames(claim_all, nils.clone(), frames, frames),
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("truncated"), "{status:?}");
    // As many elements claimed as there are nils: the input backs the
    // claim, but as a tree it would be 40 times the message.
    let backed = full_frame(&array_header((total - 5) as u32), 0xc0);
    let status = attack_reply(&handle, lazy_frames(backed, nils, frames, frames)).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("memory"), "{status:?}");

    let stats = monitor.stop().await;
    let peak = peak.stop();
    let grown = peak.rss_mib - idle.rss_mib;
    eprintln!(
        "hostile_decode: 2 x {} MiB replies claiming billions of elements: VmRSS {:.0} -> peak {:.0} MiB (+{grown:.0}), pings {} (longest gap {:?})",
        total >> 20,
        idle.rss_mib,
        peak.rss_mib,
        stats.count,
        stats.max_gap
    );
    assert!(
        grown < (BUDGET >> 20) as f64 + SLACK_MIB,
        "VmRSS grew by {grown:.0} MiB, more than the receive budget"
    );
    assert_pings_kept_up(&stats);
    fresh_node_joins(&handle, &mut events).await;
    handle.shutdown().await.unwrap();
}

/// A valid reply from `node` with a field holding `n` 32-bit integers
/// (5 bytes each on the wire, 40 as a tree: within the default 8x).
fn reply_with_integers(node: &str, n: usize) -> Bytes {
    let ints = Value::Array((0..n).map(|i| Value::UInt(70_000 + i as u64)).collect());
    let mut reply = stray_reply(node);
    reply.set("ints", ints);
    reply.to_bytes()
}

#[actix_rt::test]
async fn trees_dearer_than_the_limit_are_refused_and_heavy_replies_decode_off_the_loop() {
    // It measures this process's memory: alone, so that no other test adds to it.
    if fedroute_testkit::process::rerun_alone("hostile_decode::trees_dearer_than_the_limit_are_refused_and_heavy_replies_decode_off_the_loop") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let (handle, mut events) = researcher_with_honest_node().await;
    let idle = mem_of(None).unwrap();

    // 20 MB of nils (the attack that cost 780 MiB): refused at its header.
    let mut nils = array_header(20_000_000);
    nils.resize(5 + 20_000_000, 0xc0);
    let peak = PeakMemory::start(None);
    let monitor = PingMonitor::start(&handle, "NODE_honest");
    let status = attack_reply(
        &handle,
        researcher_support::frames(Bytes::from(nils))
            .into_iter()
            .map(|f| (f.size, f.iteration, f.bytes))
            .collect(),
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("memory"), "{status:?}");
    let stats = monitor.stop().await;
    let grown = peak.stop().rss_mib - idle.rss_mib;
    eprintln!(
        "hostile_decode: 20 MB of nils: VmRSS +{grown:.0} MiB, pings {} (max {:?})",
        stats.count, stats.max
    );
    assert!(
        grown < 20.0 * 2.0 + SLACK_MIB,
        "VmRSS grew by {grown:.0} MiB for 20 MB of nils"
    );
    assert!(
        stats.errors.is_empty() && stats.max_gap < MAX_ROUND_TRIP,
        "{stats:?}"
    );

    // 8 million 32-bit integers in a valid reply (40 MB, a 320 MB tree):
    // accepted, and decoded while the honest node's pings go on.
    let heavy = reply_with_integers("NODE_honest", INTEGERS);
    // What decoding it takes, here and now: a stall of that length on the
    // event loop is what the honest node must not see.
    let started = std::time::Instant::now();
    drop(fedroute::wire::Envelope::decode(heavy.clone()).unwrap());
    let decoding = started.elapsed();
    let allowed = DECODE_ROUND_TRIP.min(decoding / 4);
    let frames: Vec<_> = researcher_support::frames(heavy)
        .into_iter()
        .map(|f| (f.size, f.iteration, f.bytes))
        .collect();
    let monitor = PingMonitor::start(&handle, "NODE_honest");
    let (port, cert) = (handle.local_addr.port(), handle.cert_der.clone());
    let sent = finished(attacker(move || async move {
        let mut client = raw_client(port, cert).await;
        client.reply_task(reply_stream(frames, None)).await
    }))
    .await;
    assert!(sent.is_ok(), "{sent:?}");
    let event = events
        .wait_for(
            "the heavy reply",
            |e| matches!(e, ResearcherEvent::UnmatchedReply(env) if env.get("ints").is_some()),
        )
        .await;
    let stats = monitor.stop().await;
    let ResearcherEvent::UnmatchedReply(env) = event else {
        unreachable!()
    };
    assert_eq!(
        env.get("ints").and_then(Value::as_array).map(|a| a.len()),
        Some(INTEGERS)
    );
    eprintln!(
        "hostile_decode: {INTEGERS} integers ({decoding:?} to decode) decoded off the loop: pings {} (max {:?}, longest gap {:?})",
        stats.count, stats.max, stats.max_gap
    );
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert!(
        stats.max_gap < allowed,
        "no ping was answered for {:?} while a reply was decoded (decoding takes {decoding:?})",
        stats.max_gap
    );
    drop(env);
    fresh_node_joins(&handle, &mut events).await;
    handle.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_task_claiming_billions_of_elements_at_the_size_limit_leaves_the_node_serving() {
    let _serial = SERIAL.lock().await;
    let (honest, mut events) = researcher_support::start(researcher_support::config()).await;
    let hostile = HostileResearcher::start(Replies::Read);
    let (max, budget) = (format!("{}MiB", MAX >> 20), format!("{}MiB", BUDGET >> 20));
    let mut node = node_between(
        &hostile,
        honest.local_addr.port(),
        &["--max-message", &max, "--receive-budget", &budget],
    )
    .await;
    events.connected("NODE_target").await;
    let idle = mem_of(Some(node.pid())).unwrap();
    let peak = PeakMemory::start(Some(node.pid()));
    let monitor = PingMonitor::start(&honest, "NODE_target");

    let frames = (MAX / CHUNK_SIZE) as i32;
    let total = frames as usize * CHUNK_SIZE;
    let nils = full_frame(&[], 0xc0);
    hostile.script(Script::Frames(lazy_frames(
        full_frame(&array_header(u32::MAX), 0xc0),
        nils.clone(),
        frames,
        frames,
    )));
    hostile.script(Script::Frames(lazy_frames(
        full_frame(&array_header((total - 5) as u32), 0xc0),
        nils,
        frames,
        frames,
    )));
    node.wait_lines("dropped a bad task", 2).await;

    let stats = monitor.stop().await;
    let peak = peak.stop();
    let grown = peak.rss_mib - idle.rss_mib;
    eprintln!(
        "hostile_decode: node got 2 x {} MiB tasks claiming billions of elements: VmRSS {:.0} -> peak {:.0} MiB (+{grown:.0}), pings {} (longest gap {:?})",
        total >> 20,
        idle.rss_mib,
        peak.rss_mib,
        stats.count,
        stats.max_gap
    );
    assert!(node.alive(), "the node died:\n{}", node.tail());
    assert!(node.tail().contains("truncated"), "{}", node.tail());
    assert!(node.tail().contains("memory"), "{}", node.tail());
    assert!(
        grown < (BUDGET >> 20) as f64 + SLACK_MIB,
        "the node's VmRSS grew by {grown:.0} MiB, more than its receive budget"
    );
    assert_pings_kept_up(&stats);
    // Still serving afterwards.
    let after = ping_n(&honest, "NODE_target", 10).await;
    assert!(after.count == 10 && after.errors.is_empty(), "{after:?}");
    honest.shutdown().await.unwrap();
}
