//! Hostile input against a live researcher over TLS: more than 1,000
//! malformed requests from a raw tonic client (bad frames, sizes claiming
//! gigabytes, garbage msgpack, wrong versions, replies from node ids that
//! never polled, replies posing as another node, deep msgpack nesting). Each
//! gets its precise gRPC status, nothing panics, memory stays bounded, and a
//! normal node served alongside loses nothing.

use crate::researcher_support;

use std::time::Duration;

use bytes::Bytes;
use fedroute::proto::feedback_message::{FeedbackType, Log};
use fedroute::proto::{FeedbackMessage, TaskRequest, TaskResult};
use fedroute::researcher::{PendingCount, Request, ResearcherEvent};
use fedroute::wire::{self, Envelope, Value, CHUNK_SIZE};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use researcher_support::*;
use tonic::Code;

const GOOD: &str = "NODE_good";
const MALLORY: &str = "NODE_mallory";
const VICTIM: &str = "NODE_victim";

/// Resident memory of this process (researcher and clients), in KiB.
fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

fn frame(size: i32, iteration: i32, bytes: Bytes) -> TaskResult {
    TaskResult {
        size,
        iteration,
        bytes,
    }
}

fn random_bytes(rng: &mut StdRng, n: usize) -> Bytes {
    Bytes::from((0..n).map(|_| rng.random::<u8>()).collect::<Vec<u8>>())
}

/// A reply from `node` to no pending request, with `protocol_version` replaced.
fn reply_with_version(node: &str, version: Option<Value>) -> Bytes {
    let mut fields = Vec::new();
    if let Some(v) = version {
        fields.push(("protocol_version", v));
    }
    fields.push(("researcher_id", Value::Str("RESEARCHER_x".into())));
    fields.push(("request_id", Value::Str(uuid::Uuid::new_v4().to_string())));
    fields.push(("node_id", Value::Str(node.into())));
    fields.push(("node_name", Value::Str(node.into())));
    message("PingReply", fields).to_bytes()
}

/// msgpack nesting `depth` deep: arrays or maps, around a nil.
fn nested(depth: usize, maps: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(depth * 2 + 1);
    for _ in 0..depth {
        if maps {
            out.extend_from_slice(&[0x81, 0xa1, b'k']);
        } else {
            out.push(0x91);
        }
    }
    out.push(0xc0);
    out
}

/// A reply from `node` whose `payload` field is `raw` msgpack (spliced in).
fn envelope_around(node: &str, raw: &[u8]) -> Bytes {
    // Encode a reply with a placeholder nil, then replace the nil by `raw`.
    let env = message(
        "PingReply",
        vec![
            ("payload", Value::Nil),
            ("protocol_version", Value::Str("7".into())),
            ("researcher_id", Value::Str("RESEARCHER_x".into())),
            ("request_id", Value::Str("r".into())),
            ("node_id", Value::Str(node.into())),
            ("node_name", Value::Str(node.into())),
        ],
    )
    .to_bytes();
    // fixmap header, then fixstr "payload" (0xa7 + 7 bytes), then the nil.
    let at = 1 + 1 + "payload".len();
    assert_eq!(env[at], 0xc0);
    let mut out = env[..at].to_vec();
    out.extend_from_slice(raw);
    out.extend_from_slice(&env[at + 1..]);
    Bytes::from(out)
}

struct Case {
    what: String,
    frames: Vec<TaskResult>,
    expect: Code,
}

fn case(what: impl Into<String>, frames: Vec<TaskResult>, expect: Code) -> Case {
    Case {
        what: what.into(),
        frames,
        expect,
    }
}

/// The malformed `ReplyTask` streams, with the status each must get.
fn hostile_replies(rng: &mut StdRng) -> Vec<Case> {
    let mut cases = Vec::new();
    let valid = pong(&ping_for("RESEARCHER_x"), GOOD).to_bytes();

    // Bad frames.
    for i in 0..40 {
        let b = random_bytes(rng, i);
        for size in [0, -1, i32::MIN, -(i as i32) - 2] {
            cases.push(case(
                format!("size {size}"),
                vec![frame(size, 1, b.clone())],
                Code::InvalidArgument,
            ));
        }
        for iteration in [0, -1, 4, i32::MAX, i32::MIN] {
            cases.push(case(
                format!("iteration {iteration} of 3"),
                vec![frame(3, iteration, b.clone())],
                Code::InvalidArgument,
            ));
        }
        cases.push(case(
            "first frame is 2 of 3",
            vec![frame(3, 2, b.clone())],
            Code::InvalidArgument,
        ));
        cases.push(case(
            "frame 3 after 1",
            vec![frame(3, 1, b.clone()), frame(3, 3, b.clone())],
            Code::InvalidArgument,
        ));
        cases.push(case(
            "size changes mid-message",
            vec![frame(3, 1, b.clone()), frame(4, 2, b.clone())],
            Code::InvalidArgument,
        ));
        cases.push(case(
            "frame repeated",
            vec![frame(3, 1, b.clone()), frame(3, 1, b.clone())],
            Code::InvalidArgument,
        ));
        cases.push(case(
            "stream ends mid-message",
            vec![frame(3, 1, b.clone()), frame(3, 2, b.clone())],
            Code::InvalidArgument,
        ));
    }

    // Sizes claiming gigabytes: refused at the first frame, before allocating.
    for i in 0..100 {
        let len = 1 + rng.random_range(0..2048);
        let size = if i % 2 == 0 {
            i32::MAX
        } else {
            rng.random_range(1_100_000..i32::MAX)
        };
        cases.push(case(
            format!("{len} bytes x {size} frames"),
            vec![frame(size, 1, random_bytes(rng, len))],
            Code::InvalidArgument,
        ));
    }
    for size in [600, 10_000, i32::MAX] {
        // A full-size first frame: size x 4 MB is gigabytes to terabytes.
        cases.push(case(
            format!("{CHUNK_SIZE} bytes x {size} frames"),
            vec![frame(size, 1, Bytes::from(vec![0x55; CHUNK_SIZE]))],
            Code::InvalidArgument,
        ));
    }

    // Garbage msgpack.
    for i in 0..200 {
        let n = rng.random_range(0..300);
        let mut b = random_bytes(rng, n).to_vec();
        // Never a valid top-level map: start with a reserved byte or a non-map type.
        if i % 2 == 0 {
            b.insert(0, 0xc1);
        } else {
            b.insert(0, 0x91 + (i % 10) as u8);
        }
        cases.push(case(
            "random bytes",
            vec![frame(1, 1, Bytes::from(b))],
            Code::InvalidArgument,
        ));
    }
    for cut in 0..valid.len() {
        // Every proper prefix of a valid reply is truncated msgpack.
        cases.push(case(
            format!("valid reply cut at {cut}"),
            vec![frame(1, 1, valid.slice(..cut))],
            Code::InvalidArgument,
        ));
    }
    let mut trailing = valid.to_vec();
    trailing.push(0xc0);
    let no_class = {
        let mut v = vec![0x82];
        v.extend_from_slice(&wire::Value::to_bytes(&Value::Str("node_id".into())));
        v.extend_from_slice(&wire::Value::to_bytes(&Value::Str(GOOD.into())));
        v.extend_from_slice(&wire::Value::to_bytes(&Value::Str(
            "__type_message__".into(),
        )));
        v.extend_from_slice(&wire::Value::to_bytes(&Value::map([(
            "module",
            Value::Str("x".into()),
        )])));
        v
    };
    let fixed: Vec<(&str, Vec<u8>)> = vec![
        ("empty payload", vec![]),
        ("trailing bytes after a valid reply", trailing),
        ("an integer", vec![0x07]),
        ("an array", vec![0x92, 0x01, 0x02]),
        ("a map without __type_message__", b"\x81\xa1a\x01".to_vec()),
        ("__type_message__ without class", no_class),
        (
            "a string claiming 4 GiB",
            vec![0xdb, 0xff, 0xff, 0xff, 0xff, b'a'],
        ),
        (
            "a bin claiming 4 GiB",
            vec![0xc6, 0xff, 0xff, 0xff, 0xff, 0x00],
        ),
        (
            "an array claiming 4 G entries",
            vec![0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0],
        ),
        (
            "a map claiming 4 G entries",
            vec![0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0],
        ),
        ("invalid utf-8 key", b"\x81\xa2\xff\xfe\x01".to_vec()),
    ];
    for (what, b) in fixed {
        for _ in 0..5 {
            cases.push(case(
                what,
                vec![frame(1, 1, Bytes::from(b.clone()))],
                Code::InvalidArgument,
            ));
        }
    }
    for _ in 0..20 {
        let no_node = message(
            "PingReply",
            vec![
                ("protocol_version", Value::Str("7".into())),
                ("request_id", Value::Str("r".into())),
            ],
        );
        cases.push(case(
            "a reply without node_id",
            frames(no_node.to_bytes()),
            Code::InvalidArgument,
        ));
    }

    // Deep nesting, bare or inside a valid reply.
    for depth in [
        wire::DecodeLimits::DEFAULT_MAX_DEPTH + 1,
        wire::DecodeLimits::DEFAULT_MAX_DEPTH + 2,
        1_000,
        100_000,
        1_000_000,
    ] {
        for maps in [false, true] {
            for _ in 0..4 {
                cases.push(case(
                    format!("bare nesting {depth} (maps: {maps})"),
                    vec![frame(1, 1, Bytes::from(nested(depth, maps)))],
                    Code::InvalidArgument,
                ));
                cases.push(case(
                    format!("nesting {depth} in a reply (maps: {maps})"),
                    wire::Frame::split(envelope_around(GOOD, &nested(depth, maps)))
                        .map(|f| frame(f.size, f.iteration, f.bytes))
                        .collect(),
                    Code::InvalidArgument,
                ));
            }
        }
    }

    // Wrong protocol versions (from a node that did poll).
    let versions: Vec<Option<Value>> = vec![
        Some(Value::Str("8".into())),
        Some(Value::Str("6".into())),
        Some(Value::Str("6.9".into())),
        Some(Value::Str("7.1".into())),
        Some(Value::Str("7.0.1".into())),
        Some(Value::Str("".into())),
        Some(Value::Str("seven".into())),
        Some(Value::Str("7.x".into())),
        Some(Value::Str("7.0.0.0".into())),
        Some(Value::Str("99999999999999999999999".into())),
        Some(Value::UInt(7)),
        Some(Value::Nil),
        None,
    ];
    for _ in 0..8 {
        for v in &versions {
            cases.push(case(
                format!("protocol_version {v:?}"),
                frames(reply_with_version(GOOD, v.clone())),
                Code::FailedPrecondition,
            ));
        }
    }

    // Replies from node ids that never polled.
    for i in 0..150 {
        let stranger = format!("NODE_stranger_{i}");
        cases.push(case(
            format!("reply from {stranger}"),
            frames(reply_with_version(&stranger, Some(Value::Str("7".into())))),
            Code::NotFound,
        ));
    }
    // A valid message first, then a bad one in the same stream: the bad one decides.
    for _ in 0..20 {
        let mut fs = frames(reply_with_version(GOOD, Some(Value::Str("7".into()))));
        fs.push(frame(1, 1, Bytes::from_static(b"\xc1")));
        cases.push(case(
            "good then garbage in one stream",
            fs,
            Code::InvalidArgument,
        ));
    }
    cases
}

fn ping_for(researcher_id: &str) -> Envelope {
    Envelope::from_typed(&wire::PingRequest::new(researcher_id.to_string())).unwrap()
}

/// Sends every case on its own `ReplyTask` call (8 at a time) and checks
/// its status; returns how many were sent.
async fn storm(client: &Client, cases: Vec<Case>) -> usize {
    let n = cases.len();
    let results = futures::stream::iter(cases.into_iter().map(|c| {
        let mut client = client.clone();
        async move {
            let got = reply_frames(&mut client, c.frames).await;
            (c.what, c.expect, got)
        }
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await;
    let mut wrong = Vec::new();
    for (what, expect, got) in results {
        let code = match &got {
            Ok(()) => Code::Ok,
            Err(s) => s.code(),
        };
        if code != expect {
            wrong.push(format!("{what}: expected {expect:?}, got {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {n} hostile replies got the wrong status:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    n
}

/// Requests answered by the normal node while the storm runs; all must resolve.
async fn good_traffic(
    handle: fedroute::researcher::ResearcherHandle,
    rounds: usize,
) -> Result<usize, String> {
    for i in 0..rounds {
        let request = ping(&handle);
        let answer = handle
            .addr
            .send(Request {
                node_id: GOOD.into(),
                message: request.clone(),
                timeout: T,
            })
            .await
            .map_err(|e| format!("round {i}: mailbox {e}"))?
            .map_err(|e| format!("round {i}: {e}"))?;
        if answer.request_id() != request.request_id() || answer.node_id() != Some(GOOD) {
            return Err(format!("round {i}: wrong answer {answer:?}"));
        }
    }
    Ok(rounds)
}

#[actix_rt::test]
async fn a_thousand_malformed_requests_get_precise_statuses_and_good_traffic_flows() {
    // It measures this process's memory: alone, so that no other test adds to it.
    if fedroute_testkit::process::rerun_alone("hostile_researcher::a_thousand_malformed_requests_get_precise_statuses_and_good_traffic_flows") {
        return;
    }
    let (handle, mut events) = start(config()).await;
    let client = client(&handle).await;
    let good_client = researcher_support::client(&handle).await;
    let good_node = spawn_ping_node(&good_client, GOOD);
    events.connected(GOOD).await;
    register(&handle, &mut events, &client, MALLORY).await;

    // Warm up, then take the memory baseline.
    good_traffic(handle.clone(), 5).await.unwrap();
    let rss_before = vm_rss_kib();

    let mut rng = StdRng::seed_from_u64(0xfed_b10);
    let cases = hostile_replies(&mut rng);
    let good = tokio::spawn(good_traffic(handle.clone(), 100));
    let sent = bounded("hostile replies", storm(&client, cases)).await;

    // Bad polls and feedback.
    let mut bad_calls = 0;
    for (node, version, expect) in [
        ("", "7", Code::InvalidArgument),
        ("NODE_x", "8", Code::FailedPrecondition),
        ("NODE_x", "7.1", Code::FailedPrecondition),
        ("NODE_x", "seven", Code::FailedPrecondition),
    ] {
        for _ in 0..10 {
            let mut c = client.clone();
            let got = bounded(
                "bad poll",
                c.get_task_unary(TaskRequest {
                    node: node.into(),
                    protocol_version: version.into(),
                }),
            )
            .await;
            let Err(status) = got else {
                panic!("a bad poll ({node:?}, {version:?}) was accepted");
            };
            assert_eq!(
                status.code(),
                expect,
                "poll {node:?} {version:?}: {status:?}"
            );
            bad_calls += 1;
        }
    }
    for (version, feedback_type, expect) in [
        ("7", None, Code::InvalidArgument),
        (
            "8",
            Some(FeedbackType::Log(Log {
                node_id: GOOD.into(),
                level: "INFO".into(),
                msg: "x".into(),
            })),
            Code::FailedPrecondition,
        ),
    ] {
        for _ in 0..10 {
            let mut c = client.clone();
            let got = bounded(
                "bad feedback",
                c.feedback(FeedbackMessage {
                    protocol_version: version.into(),
                    researcher_id: None,
                    feedback_type: feedback_type.clone(),
                }),
            )
            .await;
            assert_eq!(got.unwrap_err().code(), expect);
            bad_calls += 1;
        }
    }

    // Replies posing as another node: mallory answers the victim's request
    // under its own id. Accepted as a call (OK), never matched.
    let mut victim_client = researcher_support::client(&handle).await;
    let victim_poll = spawn_poll(&victim_client, VICTIM);
    events.connected(VICTIM).await;
    let request = ping(&handle);
    let ask = tokio::spawn(handle.addr.send(Request {
        node_id: VICTIM.into(),
        message: request.clone(),
        timeout: T,
    }));
    let task = bounded("victim poll", victim_poll).await.unwrap().unwrap();
    let mut mallory = client.clone();
    let posing = 50;
    for _ in 0..posing {
        reply(&mut mallory, &[pong(&task, MALLORY)]).await.unwrap();
    }
    for _ in 0..posing {
        let ev = events
            .wait_for("mallory's reply unmatched", |e| {
                matches!(e, ResearcherEvent::UnmatchedReply(env) if env.node_id() == Some(MALLORY))
            })
            .await;
        let ResearcherEvent::UnmatchedReply(env) = ev else {
            unreachable!()
        };
        assert_eq!(env.node_id(), Some(MALLORY));
    }
    assert!(
        !ask.is_finished(),
        "a reply from mallory answered the victim's request"
    );
    reply(&mut victim_client, &[pong(&task, VICTIM)])
        .await
        .unwrap();
    let answer = bounded("victim request", ask)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(answer.node_id(), Some(VICTIM));

    let total = sent + bad_calls + posing;
    assert!(total >= 1_000, "only {total} hostile calls");

    // The normal node lost nothing.
    let rounds = bounded("good traffic", good)
        .await
        .unwrap()
        .expect("the normal node's requests all resolve");
    assert_eq!(rounds, 100);
    assert_eq!(
        bounded("pending", handle.addr.send(PendingCount))
            .await
            .unwrap(),
        0
    );

    // Memory: gigabyte claims were refused before allocating.
    let rss_after = vm_rss_kib();
    let grown_mib = rss_after.saturating_sub(rss_before) / 1024;
    eprintln!(
        "hostile_researcher: {total} hostile calls; VmRSS {} MiB -> {} MiB",
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(
        grown_mib < 256,
        "VmRSS grew by {grown_mib} MiB during the hostile calls"
    );

    good_node.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), good_node).await;
}

/// Virtual memory of this process, in KiB.
fn vm_size_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize in /proc/self/status")
}

/// Eight streams each send one full frame claiming 536 frames (2.14 GB,
/// just under the default 2 GiB limit) and stay open. Nothing is reserved
/// on the claim: each holds its frame, and virtual memory stays far from
/// the claims.
///
/// First a positive signal that the researcher did take the eight frames:
/// its receive budget holds them. Without that signal the memory check
/// would also pass for a researcher that never read the frames.
#[actix_rt::test]
async fn claims_under_the_limit_reserve_no_memory_up_front() {
    // It measures this process's memory: alone, so that no other test adds to it.
    if fedroute_testkit::process::rerun_alone(
        "hostile_researcher::claims_under_the_limit_reserve_no_memory_up_front",
    ) {
        return;
    }
    let (handle, _events) = start(config()).await;
    let client = client(&handle).await;
    let before = vm_size_kib();
    let rss_before = vm_rss_kib();
    let mut senders = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..8 {
        let (tx, rx) = tokio::sync::mpsc::channel::<TaskResult>(2);
        tx.send(frame(536, 1, Bytes::from(vec![0x55; CHUNK_SIZE])))
            .await
            .unwrap();
        senders.push(tx);
        let mut c = client.clone();
        calls.push(tokio::spawn(async move {
            c.reply_task(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        }));
    }
    let held_by_eight = 8 * CHUNK_SIZE;
    bounded("the eight frames held", async {
        while handle.receive_budget_in_use() < held_by_eight {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let held = handle.receive_budget_in_use();
    let grown = vm_size_kib().saturating_sub(before) / 1024;
    let rss_grown = vm_rss_kib().saturating_sub(rss_before) / 1024;
    drop(senders);
    for c in calls {
        let status = bounded("call", c).await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
    eprintln!(
        "hostile_researcher: 8 claims of 2.14 GB held ({} MiB of budget): VmSize +{grown} MiB, VmRSS +{rss_grown} MiB",
        held >> 20
    );
    assert!(
        held < 2 * held_by_eight,
        "the eight claims hold {held} bytes of budget"
    );
    assert!(rss_grown < 256, "VmRSS grew by {rss_grown} MiB");
    assert!(
        grown < 1024,
        "VmSize grew by {grown} MiB: memory reserved for data never sent"
    );
}
