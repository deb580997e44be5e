//! Every bad input gets its precise gRPC status, and the researcher keeps
//! serving good traffic afterwards.

use crate::researcher_support;

use bytes::Bytes;
use fedroute::proto::feedback_message::{FeedbackType, Log};
use fedroute::proto::{FeedbackMessage, TaskRequest, TaskResult};
use fedroute::researcher::{PendingCount, Request, ResearcherEvent};
use fedroute::wire::{self, Value};
use researcher_support::*;
use tonic::Code;

const NODE: &str = "NODE_bad";

/// A full request/reply round, proving the server still serves.
async fn good_round(handle: &fedroute::researcher::ResearcherHandle, client: &mut Client) {
    let request = ping(handle);
    let ask = tokio::spawn(handle.addr.send(Request {
        node_id: NODE.into(),
        message: request.clone(),
        timeout: T,
    }));
    let task = poll(client, NODE).await.unwrap();
    reply(client, &[pong(&task, NODE)]).await.unwrap();
    let answer = bounded("request", ask).await.unwrap().unwrap().unwrap();
    assert_eq!(answer.request_id(), request.request_id());
}

fn one_frame(bytes: &'static [u8]) -> Vec<TaskResult> {
    vec![TaskResult {
        size: 1,
        iteration: 1,
        bytes: Bytes::from_static(bytes),
    }]
}

#[actix_rt::test]
async fn bad_replies_get_precise_statuses() {
    let (handle, mut events) = start(config()).await;
    let mut client = client(&handle).await;
    register(&handle, &mut events, &client, NODE).await;
    good_round(&handle, &mut client).await;

    let request = ping(&handle);
    let cases: Vec<(&str, Vec<TaskResult>, Code)> = vec![
        (
            "reply from a node that never polled",
            frames(pong(&request, "NODE_stranger").to_bytes()),
            Code::NotFound,
        ),
        (
            "garbage msgpack",
            one_frame(b"\xc1\xc1\xc1"),
            Code::InvalidArgument,
        ),
        (
            "msgpack without __type_message__",
            one_frame(b"\x81\xa1a\x01"),
            Code::InvalidArgument,
        ),
        (
            "frame 2 of 2 first",
            vec![TaskResult {
                size: 2,
                iteration: 2,
                bytes: Bytes::from_static(b"x"),
            }],
            Code::InvalidArgument,
        ),
        (
            "frame count changes",
            vec![
                TaskResult {
                    size: 3,
                    iteration: 1,
                    bytes: Bytes::from_static(b"x"),
                },
                TaskResult {
                    size: 2,
                    iteration: 2,
                    bytes: Bytes::from_static(b"x"),
                },
            ],
            Code::InvalidArgument,
        ),
        (
            "zero frames announced",
            vec![TaskResult {
                size: 0,
                iteration: 0,
                bytes: Bytes::new(),
            }],
            Code::InvalidArgument,
        ),
        (
            "stream ends mid-message",
            vec![TaskResult {
                size: 2,
                iteration: 1,
                bytes: Bytes::from_static(b"x"),
            }],
            Code::InvalidArgument,
        ),
        (
            "reply without node_id",
            frames(
                message(
                    "PingReply",
                    vec![
                        (
                            "protocol_version",
                            Value::Str(wire::PROTOCOL_VERSION.into()),
                        ),
                        ("request_id", Value::Str("r".into())),
                    ],
                )
                .to_bytes(),
            ),
            Code::InvalidArgument,
        ),
        (
            "newer major protocol version",
            {
                let mut reply = pong(&request, NODE);
                reply.set("protocol_version", Value::Str("8".into()));
                frames(reply.to_bytes())
            },
            Code::FailedPrecondition,
        ),
        (
            "newer minor protocol version",
            {
                let mut reply = pong(&request, NODE);
                reply.set("protocol_version", Value::Str("7.1".into()));
                frames(reply.to_bytes())
            },
            Code::FailedPrecondition,
        ),
    ];
    for (what, frames, code) in cases {
        let status = reply_frames(&mut client, frames).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        good_round(&handle, &mut client).await;
    }
    assert_eq!(
        bounded("count", handle.addr.send(PendingCount))
            .await
            .unwrap(),
        0
    );
}

#[actix_rt::test]
async fn unknown_and_repeated_replies_are_dropped_with_ok() {
    let (handle, mut events) = start(config()).await;
    let mut client = client(&handle).await;
    register(&handle, &mut events, &client, NODE).await;

    let never_asked = pong(&ping(&handle), NODE);
    reply(&mut client, std::slice::from_ref(&never_asked))
        .await
        .unwrap();
    match events
        .wait_for("unmatched", |e| {
            matches!(e, ResearcherEvent::UnmatchedReply(_))
        })
        .await
    {
        ResearcherEvent::UnmatchedReply(env) => {
            assert_eq!(env.request_id(), never_asked.request_id())
        }
        _ => unreachable!(),
    }
    // A good message after a dropped one in the same stream still counts.
    let request = ping(&handle);
    let ask = tokio::spawn(handle.addr.send(Request {
        node_id: NODE.into(),
        message: request.clone(),
        timeout: T,
    }));
    let task = poll(&mut client, NODE).await.unwrap();
    reply(
        &mut client,
        &[never_asked, pong(&task, NODE), pong(&task, NODE)],
    )
    .await
    .unwrap();
    bounded("request", ask).await.unwrap().unwrap().unwrap();
    good_round(&handle, &mut client).await;
}

#[actix_rt::test]
async fn bad_polls_and_feedback_get_precise_statuses() {
    let (handle, mut events) = start(config()).await;
    let mut client = client(&handle).await;
    register(&handle, &mut events, &client, NODE).await;

    let status = bounded(
        "poll",
        client.get_task_unary(TaskRequest {
            node: String::new(),
            protocol_version: "7".into(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let status = bounded(
        "poll",
        client.get_task_unary(TaskRequest {
            node: NODE.into(),
            protocol_version: "8".into(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);

    let status = bounded("GetTask", client.get_task(tokio_stream::empty()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let log = |version: &str| FeedbackMessage {
        protocol_version: version.into(),
        researcher_id: Some(handle.researcher_id.clone()),
        feedback_type: Some(FeedbackType::Log(Log {
            node_id: NODE.into(),
            level: "INFO".into(),
            msg: "hello".into(),
        })),
    };
    let status = bounded("feedback", client.feedback(log("8")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let status = bounded(
        "feedback",
        client.feedback(FeedbackMessage {
            protocol_version: "7".into(),
            researcher_id: None,
            feedback_type: None,
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    bounded("feedback", client.feedback(log("7")))
        .await
        .unwrap();
    events
        .wait_for("feedback", |e| matches!(e, ResearcherEvent::Feedback(_)))
        .await;
    good_round(&handle, &mut client).await;
}

#[actix_rt::test]
async fn limits_refuse_with_errors_not_growth() {
    use fedroute::researcher::{ResearcherError, SendToNode};
    let mut cfg = config();
    cfg.limits.max_nodes = 1;
    cfg.nodes.queue_capacity = 2;
    let (handle, mut events) = start(cfg).await;
    let mut client = client(&handle).await;
    register(&handle, &mut events, &client, NODE).await;

    // One node too many.
    let status = bounded("poll", client.get_task_unary(task_request("NODE_more")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // A full queue refuses sends and requests; nothing stays pending.
    for _ in 0..2 {
        bounded(
            "send",
            handle.addr.send(SendToNode {
                node_id: NODE.into(),
                message: ping(&handle),
            }),
        )
        .await
        .unwrap()
        .unwrap();
    }
    let refused = bounded(
        "send",
        handle.addr.send(SendToNode {
            node_id: NODE.into(),
            message: ping(&handle),
        }),
    )
    .await
    .unwrap();
    assert!(matches!(
        refused,
        Err(ResearcherError::QueueFull { capacity: 2, .. })
    ));
    let refused = bounded(
        "request",
        handle.addr.send(Request {
            node_id: NODE.into(),
            message: ping(&handle),
            timeout: T,
        }),
    )
    .await
    .unwrap();
    assert!(
        matches!(refused, Err(ResearcherError::QueueFull { .. })),
        "{refused:?}"
    );
    assert_eq!(
        bounded("count", handle.addr.send(PendingCount))
            .await
            .unwrap(),
        0
    );
    // The queued ones are still delivered.
    for _ in 0..2 {
        poll(&mut client, NODE).await.unwrap();
    }
}
