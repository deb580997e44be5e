//! Node status and the fate of queued tasks: ACTIVE -> WAITING ->
//! DISCONNECTED and back; tasks for an absent node wait for it; expired
//! tasks are reported; a poll cut mid-stream redelivers exactly once.

use crate::researcher_support;

use std::time::Duration;

use fedroute::researcher::{
    NodeStatus, PendingCount, Request, ResearcherError, ResearcherEvent, SendToNode,
};
use fedroute::wire::{self, Envelope};
use researcher_support::*;

const NODE: &str = "NODE_s";

#[actix_rt::test]
async fn active_waiting_disconnected_and_back() {
    let mut cfg = config();
    cfg.nodes.disconnection_timeout = Duration::from_secs(2);
    let (handle, mut events) = start(cfg).await;
    let client = client(&handle).await;

    let poller = spawn_poll(&client, NODE);
    events.connected(NODE).await;
    let info = until_status(&handle, NODE, NodeStatus::Active).await;
    assert!(info.last_poll.is_some());

    poller.abort();
    let _ = bounded("aborted poll", poller).await;
    until_status(&handle, NODE, NodeStatus::Waiting).await;

    events
        .wait_for(
            "disconnected",
            |e| matches!(e, ResearcherEvent::NodeDisconnected { node_id } if node_id == NODE),
        )
        .await;
    assert_eq!(
        node_info(&handle, NODE).await.unwrap().status,
        NodeStatus::Disconnected
    );

    // Back: connected again, ACTIVE.
    let poller = spawn_poll(&client, NODE);
    events.connected(NODE).await;
    until_status(&handle, NODE, NodeStatus::Active).await;
    poller.abort();
}

#[actix_rt::test]
async fn queued_task_is_delivered_when_the_node_polls_again() {
    let mut cfg = config();
    cfg.nodes.disconnection_timeout = Duration::from_secs(2);
    let (handle, mut events) = start(cfg).await;
    let mut client = client(&handle).await;
    register(&handle, &mut events, &client, NODE).await;
    events
        .wait_for("disconnected", |e| {
            matches!(e, ResearcherEvent::NodeDisconnected { .. })
        })
        .await;

    let request = ping(&handle);
    let ask = tokio::spawn(handle.addr.send(Request {
        node_id: NODE.into(),
        message: request.clone(),
        timeout: T,
    }));
    let info = until_node(&handle, NODE, "task queued", |n| n.queue_depth == 1).await;
    assert_eq!(info.status, NodeStatus::Disconnected);

    let task = poll(&mut client, NODE).await.unwrap();
    assert_eq!(task.request_id(), request.request_id());
    reply(&mut client, &[pong(&task, NODE)]).await.unwrap();
    let answer = bounded("request", ask).await.unwrap().unwrap().unwrap();
    assert_eq!(answer.request_id(), request.request_id());
}

#[actix_rt::test]
async fn expired_tasks_are_reported_to_their_senders() {
    let mut cfg = config();
    cfg.nodes.task_ttl = Duration::from_millis(300);
    let (handle, mut events) = start(cfg).await;
    let mut client = client(&handle).await;
    register(&handle, &mut events, &client, NODE).await;

    // A request: resolves with Expired.
    let request = ping(&handle);
    let result = bounded(
        "request",
        handle.addr.send(Request {
            node_id: NODE.into(),
            message: request.clone(),
            timeout: T,
        }),
    )
    .await
    .unwrap();
    match result {
        Err(ResearcherError::Expired {
            node_id,
            request_id,
            ..
        }) => {
            assert_eq!(node_id, NODE);
            assert_eq!(request_id.as_deref(), request.request_id());
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    assert_eq!(
        bounded("count", handle.addr.send(PendingCount))
            .await
            .unwrap(),
        0
    );

    // A plain send: an Undelivered event.
    let message = ping(&handle);
    bounded(
        "send",
        handle.addr.send(SendToNode {
            node_id: NODE.into(),
            message: message.clone(),
        }),
    )
    .await
    .unwrap()
    .unwrap();
    let event = events
        .wait_for("undelivered", |e| {
            matches!(e, ResearcherEvent::Undelivered { .. })
        })
        .await;
    match event {
        ResearcherEvent::Undelivered {
            node_id,
            request_id,
            reason,
        } => {
            assert_eq!(node_id, NODE);
            assert_eq!(request_id.as_deref(), message.request_id());
            assert!(reason.contains("expired"), "{reason}");
        }
        _ => unreachable!(),
    }
    assert_eq!(node_info(&handle, NODE).await.unwrap().queue_depth, 0);

    // Nothing left to deliver: a fresh task is the next one the node sees.
    let request = ping(&handle);
    let ask = tokio::spawn(handle.addr.send(Request {
        node_id: NODE.into(),
        message: request.clone(),
        timeout: T,
    }));
    let task = poll(&mut client, NODE).await.unwrap();
    assert_eq!(task.request_id(), request.request_id());
    reply(&mut client, &[pong(&task, NODE)]).await.unwrap();
    bounded("request", ask).await.unwrap().unwrap().unwrap();
}

/// Opens a poll, reads the first chunk of the task, then cuts the stream.
async fn cut_after_first_chunk(client: &Client) -> usize {
    let mut client = client.clone();
    let mut stream = bounded("poll", client.get_task_unary(task_request(NODE)))
        .await
        .unwrap()
        .into_inner();
    let first = bounded("first chunk", stream.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.iteration, 1);
    assert!(first.size > 1);
    first.size as usize
    // `stream` and the client drop here: the call is cancelled.
}

#[actix_rt::test]
async fn poll_cut_mid_stream_is_redelivered_exactly_once() {
    let (handle, mut events) = start(config()).await;
    let mut client = client(&handle).await;
    register(&handle, &mut events, &client, NODE).await;

    // Ten chunks: the stream is cut long before the last one is written.
    let request = blob_request(&handle, pattern(10 * wire::CHUNK_SIZE));
    let ask = tokio::spawn(handle.addr.send(Request {
        node_id: NODE.into(),
        message: request.clone(),
        timeout: T,
    }));
    let size = cut_after_first_chunk(&client).await;
    assert_eq!(size, 11);

    // The researcher notices the cut and queues the task again.
    until_node(&handle, NODE, "task requeued", |n| {
        n.queue_depth == 1 && n.in_flight == 0 && n.status == NodeStatus::Waiting
    })
    .await;
    let (payload, frames) = poll_raw(&mut client, NODE).await.unwrap();
    assert_eq!(frames, 11);
    assert_eq!(payload, request.to_bytes());
    let task = Envelope::decode(payload).unwrap();
    let answer = blob_reply(&task, NODE, bytes::Bytes::from_static(b"ok"));
    // The node answers twice (as a confused node might): the first answer
    // resolves the request, the second is reported as unmatched.
    reply(&mut client, std::slice::from_ref(&answer))
        .await
        .unwrap();
    let result = bounded("request", ask).await.unwrap().unwrap().unwrap();
    assert_eq!(result.request_id(), request.request_id());
    reply(&mut client, &[answer]).await.unwrap();
    events
        .wait_for("duplicate reply", |e| {
            matches!(e, ResearcherEvent::UnmatchedReply(_))
        })
        .await;
    let info = node_info(&handle, NODE).await.unwrap();
    assert_eq!((info.queue_depth, info.in_flight), (0, 0));
}

#[actix_rt::test]
async fn a_task_cut_too_often_fails_its_request() {
    let mut cfg = config();
    cfg.nodes.max_task_retries = 2;
    let (handle, mut events) = start(cfg).await;
    let client = client(&handle).await;
    register(&handle, &mut events, &client, NODE).await;

    let request = blob_request(&handle, pattern(10 * wire::CHUNK_SIZE));
    let ask = tokio::spawn(handle.addr.send(Request {
        node_id: NODE.into(),
        message: request,
        timeout: T,
    }));
    for _ in 0..3 {
        cut_after_first_chunk(&client).await;
        until_node(&handle, NODE, "cut noticed", |n| n.in_flight == 0).await;
    }
    match bounded("request", ask).await.unwrap().unwrap() {
        Err(ResearcherError::RetriesExhausted { attempts, .. }) => assert_eq!(attempts, 3),
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    assert_eq!(node_info(&handle, NODE).await.unwrap().queue_depth, 0);
}

#[actix_rt::test]
async fn a_poll_ends_at_the_client_deadline_without_losing_tasks() {
    let (handle, mut events) = start(config()).await;
    let mut client = client(&handle).await;
    let mut request = tonic::Request::new(task_request(NODE));
    request.set_timeout(Duration::from_millis(300));
    let mut stream = bounded("poll", client.get_task_unary(request))
        .await
        .unwrap()
        .into_inner();
    events.connected(NODE).await;
    let status = bounded("deadline", stream.message()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    drop(stream);
    until_status(&handle, NODE, NodeStatus::Waiting).await;

    // Work queued after the expired poll goes to the next one.
    let request = ping(&handle);
    let ask = tokio::spawn(handle.addr.send(Request {
        node_id: NODE.into(),
        message: request.clone(),
        timeout: T,
    }));
    let task = poll(&mut client, NODE).await.unwrap();
    assert_eq!(task.request_id(), request.request_id());
    reply(&mut client, &[pong(&task, NODE)]).await.unwrap();
    bounded("request", ask).await.unwrap().unwrap().unwrap();
}
