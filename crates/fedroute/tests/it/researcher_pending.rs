//! The pending-request table does not grow: replies, timeouts and late
//! replies all leave it empty.

use crate::researcher_support;

use std::time::Duration;

use fedroute::researcher::{PendingCount, Request, ResearcherError, ResearcherEvent};
use futures::StreamExt;
use researcher_support::*;

const NODE: &str = "NODE_p";

#[actix_rt::test]
async fn pending_table_is_empty_after_replies_and_timeouts() {
    let (handle, mut events) = start(config()).await;
    let client = client(&handle).await;
    register(&handle, &mut events, &client, NODE).await;

    // 100 requests nobody answers: each times out, and its queued task is
    // withdrawn.
    let timed_out = futures::stream::iter(0..100)
        .map(|_| {
            handle.addr.send(Request {
                node_id: NODE.into(),
                message: ping(&handle),
                timeout: Duration::from_millis(50),
            })
        })
        .buffer_unordered(100)
        .collect::<Vec<_>>();
    for r in bounded("timeouts", timed_out).await {
        assert!(matches!(r.unwrap(), Err(ResearcherError::Timeout { .. })));
    }
    assert_eq!(
        bounded("count", handle.addr.send(PendingCount))
            .await
            .unwrap(),
        0
    );
    until_node(&handle, NODE, "queue emptied", |n| n.queue_depth == 0).await;

    // 1,000 answered rounds, 16 at a time, against one polling node.
    let node = spawn_ping_node(&client, NODE);
    let rounds = futures::stream::iter(0..1000)
        .map(|_| {
            let request = ping(&handle);
            let id = request.request_id().map(str::to_owned);
            let ask = handle.addr.send(Request {
                node_id: NODE.into(),
                message: request,
                timeout: T,
            });
            async move { (id, ask.await) }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>();
    for (id, r) in bounded("rounds", rounds).await {
        assert_eq!(r.unwrap().unwrap().request_id().map(str::to_owned), id);
    }
    node.abort();
    assert_eq!(
        bounded("count", handle.addr.send(PendingCount))
            .await
            .unwrap(),
        0
    );
    assert!(events
        .drain()
        .iter()
        .all(|e| !matches!(e, ResearcherEvent::UnmatchedReply(_))));
}

#[actix_rt::test]
async fn a_late_reply_is_unmatched_and_leaves_nothing() {
    let (handle, mut events) = start(config()).await;
    let mut client = client(&handle).await;
    let poller = spawn_poll(&client, NODE);
    events.connected(NODE).await;

    let request = ping(&handle);
    let result = bounded(
        "request",
        handle.addr.send(Request {
            node_id: NODE.into(),
            message: request.clone(),
            timeout: Duration::from_millis(100),
        }),
    )
    .await
    .unwrap();
    assert!(matches!(result, Err(ResearcherError::Timeout { .. })));
    // The node got the task (its poll was open) but answers too late.
    let task = bounded("poll", poller).await.unwrap().unwrap();
    assert_eq!(task.request_id(), request.request_id());
    reply(&mut client, &[pong(&task, NODE)]).await.unwrap();
    events
        .wait_for("unmatched", |e| {
            matches!(e, ResearcherEvent::UnmatchedReply(_))
        })
        .await;
    assert_eq!(
        bounded("count", handle.addr.send(PendingCount))
            .await
            .unwrap(),
        0
    );
}
