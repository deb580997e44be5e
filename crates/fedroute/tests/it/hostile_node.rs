//! Hostile input against a node: a malicious researcher (real TLS) sends bad
//! tasks (bad frames, gigabyte claims, garbage msgpack, deep nesting, wrong
//! versions, no researcher id, truncated messages), each followed by a good
//! one. The node logs and drops each bad task, keeps polling, and its handler
//! sees exactly the good tasks, once each, in order. Unary and streaming polls.

use crate::faults_support;
use crate::node_support;

use bytes::Bytes;
use faults_support::{script_of, EvilResearcher, Script};
use fedroute::node::{PollMode, ResearcherEndpoint, Status as LinkStatusMsg};
use fedroute::proto::TaskResponse;
use fedroute::wire::{Envelope, Value, CHUNK_SIZE};

fn tr(size: i32, iteration: i32, bytes: Bytes) -> TaskResponse {
    TaskResponse {
        size,
        iteration,
        bytes,
    }
}

fn type_message(class: &str) -> Value {
    Value::map([
        ("module", Value::Str("fedbiomed.common.message".into())),
        ("class", Value::Str(class.into())),
    ])
}

fn task(fields: Vec<(&str, Value)>, class: &str) -> Bytes {
    let mut all: Vec<(&str, Value)> = fields;
    all.push(("__type_message__", type_message(class)));
    Envelope::from_value(Value::map(all)).unwrap().to_bytes()
}

/// The bad tasks, each with a name.
fn bad_scripts(researcher_id: &str) -> Vec<(&'static str, Script)> {
    let rid = || Value::Str(researcher_id.to_string());
    let small = Bytes::from_static(b"\x80");
    let mut deep = vec![0x91u8; 100_000];
    deep.push(0xc0);
    vec![
        ("size 0", vec![tr(0, 1, small.clone())]),
        ("negative size", vec![tr(-3, 1, small.clone())]),
        ("first frame 2 of 2", vec![tr(2, 2, small.clone())]),
        ("iteration above size", vec![tr(2, 5, small.clone())]),
        (
            "claims 2 TB",
            vec![tr(i32::MAX, 1, Bytes::from(vec![0u8; 1024]))],
        ),
        (
            "claims 4 GB with a full frame",
            vec![tr(1_000, 1, Bytes::from(vec![0u8; CHUNK_SIZE]))],
        ),
        (
            "garbage msgpack",
            vec![tr(1, 1, Bytes::from_static(b"\xc1\xc1"))],
        ),
        ("empty payload", vec![tr(1, 1, Bytes::new())]),
        (
            "a map without class",
            script_of(Bytes::from_static(b"\x81\xa1a\x01")),
        ),
        ("nesting 100,000 deep", script_of(Bytes::from(deep))),
        (
            "protocol version 8",
            script_of(task(
                vec![
                    ("protocol_version", Value::Str("8".into())),
                    ("researcher_id", rid()),
                    ("request_id", Value::Str("bad".into())),
                ],
                "PingRequest",
            )),
        ),
        (
            "protocol version 7.1",
            script_of(task(
                vec![
                    ("protocol_version", Value::Str("7.1".into())),
                    ("researcher_id", rid()),
                    ("request_id", Value::Str("bad".into())),
                ],
                "PingRequest",
            )),
        ),
        (
            "no protocol version",
            script_of(task(
                vec![
                    ("researcher_id", rid()),
                    ("request_id", Value::Str("bad".into())),
                ],
                "PingRequest",
            )),
        ),
        (
            "no researcher id",
            script_of(task(
                vec![
                    ("protocol_version", Value::Str("7".into())),
                    ("request_id", Value::Str("bad".into())),
                ],
                "PingRequest",
            )),
        ),
        (
            "truncated (2 of 3 frames)",
            vec![tr(3, 1, small.clone()), tr(3, 2, small.clone())],
        ),
        (
            "frame repeated",
            vec![
                tr(2, 1, small.clone()),
                tr(2, 1, small.clone()),
                tr(2, 2, small.clone()),
            ],
        ),
    ]
}

fn good(researcher_id: &str, n: usize) -> Script {
    script_of(task(
        vec![
            ("protocol_version", Value::Str("7".into())),
            ("researcher_id", Value::Str(researcher_id.into())),
            ("request_id", Value::Str(format!("good-{n}"))),
        ],
        "PingRequest",
    ))
}

async fn bad_tasks_are_dropped(mode: PollMode, streaming_server: bool) {
    let _ = env_logger::builder().is_test(true).try_init();
    let evil = EvilResearcher::start(streaming_server).await;
    let mut config = node_support::fast_config();
    config.polling.mode = mode;
    let endpoint = ResearcherEndpoint::trust_on_first_use("127.0.0.1", evil.addr.port());
    let (controller, mut seen) =
        node_support::start_node("NODE_target", vec![endpoint], config, false);

    let rounds = 3;
    let bad = bad_scripts(&evil.researcher_id);
    let n_bad = bad.len() * rounds;
    let mut n_good = 0;
    for _ in 0..rounds {
        for (_, script) in bad_scripts(&evil.researcher_id) {
            evil.send(script);
            evil.send(good(&evil.researcher_id, n_good));
            n_good += 1;
        }
    }

    for i in 0..n_good {
        let task = node_support::within(&format!("good task {i}"), seen.recv())
            .await
            .expect("handler channel open");
        assert_eq!(task.message.class(), "PingRequest");
        assert_eq!(
            task.message.request_id(),
            Some(format!("good-{i}").as_str()),
            "the handler got a task out of order, twice, or a bad one"
        );
        assert_eq!(task.researcher_id, evil.researcher_id);
    }
    // One more good task proves the node still polls; nothing else reached the handler.
    evil.send(good(&evil.researcher_id, n_good));
    let last = node_support::within("last good task", seen.recv())
        .await
        .unwrap();
    assert_eq!(
        last.message.request_id(),
        Some(format!("good-{n_good}").as_str())
    );
    assert!(
        seen.try_recv().is_err(),
        "an extra task reached the handler"
    );

    let status = node_support::within("status", controller.send(LinkStatusMsg))
        .await
        .unwrap();
    assert_eq!(status.len(), 1);
    eprintln!(
        "hostile_node ({mode}): {} bad tasks counted of {n_bad} sent; state {:?}",
        status[0].bad_tasks, status[0].state
    );
    assert!(
        status[0].bad_tasks as usize >= n_bad,
        "bad tasks counted: {} < {n_bad}",
        status[0].bad_tasks
    );
    let _ = node_support::within(
        "shutdown",
        controller.send(fedroute::node::Shutdown {
            deadline: std::time::Duration::from_secs(1),
        }),
    )
    .await;
    let _ = bad;
}

#[actix_rt::test]
async fn unary_node_drops_bad_tasks_and_keeps_polling() {
    bad_tasks_are_dropped(PollMode::Unary, false).await;
}

#[actix_rt::test]
async fn streaming_node_drops_bad_tasks_and_keeps_polling() {
    bad_tasks_are_dropped(PollMode::Streaming, true).await;
}
