//! Shutdown: open polls end with UNAVAILABLE, waiting requests fail, queued
//! messages are reported undelivered, and no call is served afterwards.

use crate::researcher_support;

use fedroute::researcher::{PendingCount, Request, ResearcherError, ResearcherEvent, SendToNode};
use researcher_support::*;
use tonic::Code;

#[actix_rt::test]
async fn shutdown_ends_polls_and_reports_what_was_left() {
    let (handle, mut events) = start(config()).await;
    let mut client = client(&handle).await;
    register(&handle, &mut events, &client, "NODE_away").await;
    let open_poll = spawn_poll(&client, "NODE_here");
    events.connected("NODE_here").await;

    // Queued for a node that is away: a request and a plain send.
    let ask = tokio::spawn(handle.addr.send(Request {
        node_id: "NODE_away".into(),
        message: ping(&handle),
        timeout: T,
    }));
    let message = ping(&handle);
    bounded(
        "send",
        handle.addr.send(SendToNode {
            node_id: "NODE_away".into(),
            message: message.clone(),
        }),
    )
    .await
    .unwrap()
    .unwrap();
    until_node(&handle, "NODE_away", "2 queued", |n| n.queue_depth == 2).await;

    bounded("shutdown", handle.shutdown()).await.unwrap();

    let status = bounded("open poll", open_poll).await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(matches!(
        bounded("request", ask).await.unwrap().unwrap(),
        Err(ResearcherError::ShuttingDown)
    ));
    match events
        .wait_for("undelivered", |e| {
            matches!(e, ResearcherEvent::Undelivered { .. })
        })
        .await
    {
        ResearcherEvent::Undelivered { request_id, .. } => {
            assert_eq!(request_id.as_deref(), message.request_id())
        }
        _ => unreachable!(),
    }
    assert_eq!(
        bounded("count", handle.addr.send(PendingCount))
            .await
            .unwrap(),
        0
    );
    // No more service.
    let refused = tokio::time::timeout(T, poll(&mut client, "NODE_here")).await;
    assert!(matches!(refused, Ok(Err(_))), "{refused:?}");
    assert!(matches!(
        bounded(
            "send after shutdown",
            handle.addr.send(SendToNode {
                node_id: "NODE_away".into(),
                message: ping(&handle),
            })
        )
        .await
        .unwrap(),
        Err(ResearcherError::ShuttingDown)
    ));
}

#[actix_rt::test]
async fn shutdown_does_not_hang_on_a_held_reply_stream() {
    let (handle, mut events) = start(config()).await;
    let mut client = client(&handle).await;
    register(&handle, &mut events, &client, "NODE_held").await;
    // A node holding a ReplyTask stream open without sending.
    let (_frames_tx, frames_rx) = tokio::sync::mpsc::channel(1);
    let held = tokio::spawn(async move {
        client
            .reply_task(tokio_stream::wrappers::ReceiverStream::new(frames_rx))
            .await
    });
    until_node(&handle, "NODE_held", "registered", |_| true).await;
    let started = std::time::Instant::now();
    bounded("shutdown", handle.shutdown()).await.unwrap();
    // Within twice the 5 s grace the researcher gives calls still busy.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let ended = bounded("held stream", held).await.unwrap();
    assert!(ended.is_err(), "the held call was cut: {ended:?}");
}
