//! Requests and replies through a real researcher over TLS: small and
//! 100 MiB payloads, chunk boundaries, several replies in one stream,
//! streaming mode, SendToNode, Broadcast and overlay relaying.

use crate::researcher_support;

use std::time::Duration;

use bytes::Bytes;
use fedroute::proto::TaskRequest;
use fedroute::researcher::{Broadcast, PendingCount, Request, ResearcherEvent, SendToNode};
use fedroute::wire::{self, Envelope, OverlayMessage, PingReply, CHUNK_SIZE};
use researcher_support::*;

const NODE: &str = "NODE_a";

#[actix_rt::test]
async fn ping_request_gets_its_reply() {
    let (handle, mut events) = start(config()).await;
    let mut client = client(&handle).await;
    let first_poll = spawn_poll(&client, NODE);
    events.connected(NODE).await;

    let request = ping(&handle);
    let ask = handle.addr.send(Request {
        node_id: NODE.into(),
        message: request.clone(),
        timeout: T,
    });
    let node = async {
        let task = bounded("poll", first_poll).await.unwrap().unwrap();
        assert_eq!(task.class(), "PingRequest");
        assert_eq!(task.request_id(), request.request_id());
        assert_eq!(task.researcher_id(), Some(handle.researcher_id.as_str()));
        reply(&mut client, &[pong(&task, NODE)]).await.unwrap();
    };
    let (answer, ()) = bounded("request", futures::future::join(ask, node)).await;
    let answer = answer.unwrap().unwrap();
    let reply: PingReply = answer.to_typed().unwrap();
    assert_eq!(reply.node_id, NODE);
    assert_eq!(reply.request_id.as_deref(), request.request_id());
    assert_eq!(
        bounded("count", handle.addr.send(PendingCount))
            .await
            .unwrap(),
        0
    );
}

async fn blob_round_trip(request_len: usize, reply_len: usize) -> (usize, usize) {
    let (handle, mut events) = start(config()).await;
    let mut client = client(&handle).await;
    let mut node_client = client.clone();
    let poller = tokio::spawn(async move { poll_raw(&mut node_client, NODE).await });
    events.connected(NODE).await;

    let request = blob_request(&handle, pattern(request_len));
    let encoded_len = request.to_bytes().len();
    let ask = handle.addr.send(Request {
        node_id: NODE.into(),
        message: request,
        timeout: T,
    });
    let node = async {
        let (payload, task_frames) = bounded("poll", poller).await.unwrap().unwrap();
        assert_eq!(payload.len(), encoded_len);
        assert_eq!(task_frames, wire::Frame::count_for(encoded_len));
        let task = Envelope::decode(payload).unwrap();
        match task.get("blob") {
            Some(wire::Value::Bin(b)) => assert!(*b == pattern(request_len)),
            other => panic!("blob missing: {other:?}"),
        }
        let answer = blob_reply(&task, NODE, pattern(reply_len));
        let reply_frames = wire::Frame::count_for(answer.to_bytes().len());
        reply(&mut client, &[answer]).await.unwrap();
        (task_frames, reply_frames)
    };
    let (answer, counts) = bounded("request", futures::future::join(ask, node)).await;
    let answer = answer.unwrap().unwrap();
    match answer.get("blob") {
        Some(wire::Value::Bin(b)) => assert!(*b == pattern(reply_len)),
        other => panic!("reply blob missing: {other:?}"),
    }
    counts
}

#[actix_rt::test]
async fn hundred_mib_request_and_reply() {
    let (task_frames, reply_frames) = blob_round_trip(100 << 20, 100 << 20).await;
    assert_eq!(task_frames, 27);
    assert_eq!(reply_frames, 27);
}

#[actix_rt::test]
async fn chunk_boundaries_give_exact_frame_counts() {
    let (handle, mut events) = start(config()).await;
    let mut client = client(&handle).await;
    register(&handle, &mut events, &client, NODE).await;

    // Encoded sizes exactly CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1 and
    // 2 * CHUNK_SIZE: tune the blob so the whole message hits them.
    let overhead = blob_request(&handle, Bytes::new()).to_bytes().len();
    for target in [CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE] {
        let mut blob_len = target - overhead;
        // The bin header grows with the length: adjust until exact.
        while blob_request(&handle, pattern(blob_len)).to_bytes().len() > target {
            blob_len -= 1;
        }
        let request = blob_request(&handle, pattern(blob_len));
        assert_eq!(request.to_bytes().len(), target, "tuned size");
        let ask = handle.addr.send(Request {
            node_id: NODE.into(),
            message: request,
            timeout: T,
        });
        let node = async {
            let (payload, n) = poll_raw(&mut client, NODE).await.unwrap();
            assert_eq!(payload.len(), target);
            assert_eq!(
                n,
                wire::Frame::count_for(target),
                "frames for {target} bytes"
            );
            let task = Envelope::decode(payload).unwrap();
            // Reply with the same size to cross the boundary on the way back.
            let answer = blob_reply(&task, NODE, pattern(blob_len));
            reply(&mut client, &[answer]).await.unwrap();
            n
        };
        let (answer, n) = bounded("request", futures::future::join(ask, node)).await;
        answer.unwrap().unwrap();
        let expected = if target <= CHUNK_SIZE { 1 } else { 2 };
        assert_eq!(n, expected, "{target} bytes");
    }
}

#[actix_rt::test]
async fn several_replies_in_one_reply_stream() {
    let (handle, mut events) = start(config()).await;
    let mut client = client(&handle).await;
    register(&handle, &mut events, &client, NODE).await;

    let requests: Vec<Envelope> = (0..5).map(|_| ping(&handle)).collect();
    let asks: Vec<_> = requests
        .iter()
        .map(|r| {
            handle.addr.send(Request {
                node_id: NODE.into(),
                message: r.clone(),
                timeout: T,
            })
        })
        .collect();
    let node = async {
        let mut answers = Vec::new();
        for _ in 0..5 {
            let task = poll(&mut client, NODE).await.unwrap();
            answers.push(pong(&task, NODE));
        }
        // One big reply mixed with the pings, all in one stream.
        reply(&mut client, &answers).await.unwrap();
    };
    let (results, ()) = bounded(
        "requests",
        futures::future::join(futures::future::join_all(asks), node),
    )
    .await;
    for (r, request) in results.into_iter().zip(&requests) {
        let answer = r.unwrap().unwrap();
        assert_eq!(answer.request_id(), request.request_id());
    }
    assert_eq!(
        bounded("count", handle.addr.send(PendingCount))
            .await
            .unwrap(),
        0
    );
}

#[actix_rt::test]
async fn streaming_poll_delivers_one_task_per_credit() {
    let (handle, mut events) = start(config()).await;
    let mut client = client(&handle).await;
    let (credit_tx, credit_rx) = tokio::sync::mpsc::channel::<TaskRequest>(16);
    bounded("credit", credit_tx.send(task_request(NODE)))
        .await
        .unwrap();
    let mut stream = bounded(
        "GetTask",
        client.get_task(tokio_stream::wrappers::ReceiverStream::new(credit_rx)),
    )
    .await
    .unwrap()
    .into_inner();
    events.connected(NODE).await;

    let requests: Vec<Envelope> = (0..3).map(|_| ping(&handle)).collect();
    let asks: Vec<_> = requests
        .iter()
        .map(|r| {
            handle.addr.send(Request {
                node_id: NODE.into(),
                message: r.clone(),
                timeout: T,
            })
        })
        .collect();
    let asks = tokio::spawn(futures::future::join_all(asks));

    // One credit: exactly one task arrives; the rest stay queued.
    let frame = bounded("first task", stream.message())
        .await
        .unwrap()
        .unwrap();
    let first = Envelope::decode(frame.bytes).unwrap();
    until_node(&handle, NODE, "2 queued", |n| n.queue_depth == 2).await;
    let mut answers = vec![pong(&first, NODE)];
    for _ in 0..2 {
        bounded("credit", credit_tx.send(task_request(NODE)))
            .await
            .unwrap();
        let frame = bounded("next task", stream.message())
            .await
            .unwrap()
            .unwrap();
        answers.push(pong(&Envelope::decode(frame.bytes).unwrap(), NODE));
    }
    reply(&mut client, &answers).await.unwrap();
    let results = bounded("requests", asks).await.unwrap();
    assert!(results.into_iter().all(|r| r.unwrap().is_ok()));
}

#[actix_rt::test]
async fn send_to_node_and_broadcast_queue_for_known_nodes() {
    let (handle, mut events) = start(config()).await;
    let mut client = client(&handle).await;
    for node in ["NODE_b", "NODE_c"] {
        register(&handle, &mut events, &client, node).await;
    }
    let unknown = bounded(
        "send",
        handle.addr.send(SendToNode {
            node_id: "NODE_x".into(),
            message: ping(&handle),
        }),
    )
    .await
    .unwrap();
    assert!(unknown.is_err(), "unknown node refused");

    let message = ping(&handle);
    bounded(
        "send",
        handle.addr.send(SendToNode {
            node_id: "NODE_b".into(),
            message: message.clone(),
        }),
    )
    .await
    .unwrap()
    .unwrap();
    let got = poll(&mut client, "NODE_b").await.unwrap();
    assert_eq!(got.request_id(), message.request_id());

    let message = ping(&handle);
    let queued = bounded(
        "broadcast",
        handle.addr.send(Broadcast {
            message: message.clone(),
        }),
    )
    .await
    .unwrap();
    assert_eq!(queued, vec!["NODE_b".to_string(), "NODE_c".to_string()]);
    for node in ["NODE_b", "NODE_c"] {
        let got = poll(&mut client, node).await.unwrap();
        assert_eq!(got.request_id(), message.request_id());
    }
}

#[actix_rt::test]
async fn overlay_messages_are_relayed_unchanged() {
    let (handle, mut events) = start(config()).await;
    let mut client = client(&handle).await;
    for node in ["NODE_src", "NODE_dst"] {
        register(&handle, &mut events, &client, node).await;
    }
    let overlay = Envelope::from_typed(&OverlayMessage::new(
        handle.researcher_id.clone(),
        "NODE_src",
        "NODE_dst",
        Bytes::from_static(b"secret overlay"),
        true,
        Bytes::from_static(b"salt"),
        Bytes::from_static(b"nonce"),
    ))
    .unwrap();
    let sent = overlay.to_bytes();
    reply(&mut client, &[overlay]).await.unwrap();
    let (payload, _) = poll_raw(&mut client, "NODE_dst").await.unwrap();
    assert_eq!(payload, sent, "relayed byte for byte");

    // To a node that never polled: NOT_FOUND, reported to the sender.
    let lost = Envelope::from_typed(&OverlayMessage::new(
        handle.researcher_id.clone(),
        "NODE_src",
        "NODE_nobody",
        Bytes::new(),
        false,
        Bytes::new(),
        Bytes::new(),
    ))
    .unwrap();
    let status = reply(&mut client, &[lost]).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert!(events
        .drain()
        .iter()
        .all(|e| !matches!(e, ResearcherEvent::UnmatchedReply(_))));
}

#[actix_rt::test]
async fn plaintext_mode_serves_with_a_warning() {
    let mut cfg = config();
    cfg.listen.insecure = true;
    let (handle, mut events) = start(cfg).await;
    let channel = bounded(
        "connect",
        tonic::transport::Endpoint::from_shared(format!("http://{}", handle.local_addr))
            .unwrap()
            .connect(),
    )
    .await
    .unwrap();
    let mut client =
        fedroute::proto::researcher_service_client::ResearcherServiceClient::new(channel);
    let poller = spawn_poll(&client, NODE);
    events.connected(NODE).await;
    let request = ping(&handle);
    let ask = handle.addr.send(Request {
        node_id: NODE.into(),
        message: request,
        timeout: Duration::from_secs(30),
    });
    let node = async {
        let task = bounded("poll", poller).await.unwrap().unwrap();
        reply(&mut client, &[pong(&task, NODE)]).await.unwrap();
    };
    let (answer, ()) = bounded("request", futures::future::join(ask, node)).await;
    answer.unwrap().unwrap();
}
