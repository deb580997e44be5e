//! Researcher restarts: replies queued while it is down arrive exactly once
//! and in order; a researcher that comes back with another id is refused.

use crate::node_support;

use std::time::{Duration, Instant};

use fedroute::node::{
    ControllerConfig, FinishReason, IsConnected, LinkState, NodeError, PollMode, SendReply, Status,
};
use node_support::*;

async fn replies_survive_restart(mode: PollMode, outage: Duration) {
    let mut researcher = MiniResearcher::start(0, None, true);
    let port = researcher.port();
    let id = researcher.researcher_id.clone();
    let identity = researcher.identity.clone();
    // Default backoff (first retry within 50 ms, cap 2 s): the measured time is the real one.
    let mut config = ControllerConfig::default();
    config.polling.mode = mode;
    let (controller, _seen, _fin) =
        start_node_with_finish("NODE_r", vec![endpoint_of(&researcher)], config);
    researcher.next_poll().await;
    researcher.stop();
    wait_until("the link to notice", || {
        let c = controller.clone();
        async move { !c.send(IsConnected).await.unwrap() }
    })
    .await;

    // Replies queued while the researcher is down.
    for i in 0..10 {
        let reply = ping_reply(&ping_request(&id, &format!("q{i}")), "NODE_r");
        within("send", controller.send(SendReply(reply)))
            .await
            .unwrap()
            .unwrap();
    }
    let depth = within("status", controller.send(Status)).await.unwrap()[0].queue_depth;
    assert_eq!(depth, 10);

    // The outage itself (not a synchronisation): how long the researcher stays down.
    tokio::time::sleep(outage).await;
    let restarted_at = Instant::now();
    let mut researcher = MiniResearcher::start_as(port, identity, true);
    let polled_at = researcher.next_poll().await;
    println!(
        "reconnect ({mode}, outage {outage:?}): {:?} from researcher restart to the next poll",
        polled_at - restarted_at
    );
    for i in 0..10 {
        let reply = researcher.next_reply().await;
        assert_eq!(reply.request_id(), Some(format!("q{i}").as_str()));
    }
    // Nothing was duplicated: the next reply is a fresh marker.
    let marker = ping_reply(&ping_request(&id, "marker"), "NODE_r");
    within("send", controller.send(SendReply(marker)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(researcher.next_reply().await.request_id(), Some("marker"));

    // The researcher saw the marker; its acknowledgement reaches the node just after.
    wait_until("the marker acknowledged", || {
        let c = controller.clone();
        async move { c.send(Status).await.unwrap()[0].queue_depth == 0 }
    })
    .await;
    let status = within("status", controller.send(Status))
        .await
        .unwrap()
        .remove(0);
    assert!(status.reconnects >= 1, "{status:?}");
    assert_eq!(status.messages_sent, 11);
}

#[actix_rt::test]
async fn replies_survive_researcher_restart_streaming() {
    replies_survive_restart(PollMode::Streaming, Duration::ZERO).await;
}

#[actix_rt::test]
async fn replies_survive_researcher_restart_unary() {
    replies_survive_restart(PollMode::Unary, Duration::ZERO).await;
}

/// With the default backoff (cap 2 s) after a longer outage; slow, so ignored
/// by default: `cargo test --test node_reconnect -- --ignored --nocapture`.
#[actix_rt::test]
#[ignore]
async fn replies_survive_a_three_second_outage() {
    replies_survive_restart(PollMode::Streaming, Duration::from_secs(3)).await;
}

#[actix_rt::test]
async fn researcher_back_with_another_id_is_refused() {
    let mut researcher = MiniResearcher::start(0, None, true);
    let port = researcher.port();
    let first_id = researcher.researcher_id.clone();
    let (controller, _seen, mut fin) =
        start_node_with_finish("NODE_r", vec![endpoint_of(&researcher)], fast_config());
    researcher.next_poll().await;
    researcher.stop();

    let mut impostor = MiniResearcher::start(port, None, true);
    assert_ne!(impostor.researcher_id, first_id);
    let finished = within("on-finish", fin.recv()).await.unwrap();
    assert_eq!(finished.reason, FinishReason::AllLinksFailed);

    let status = within("status", controller.send(Status))
        .await
        .unwrap()
        .remove(0);
    match &status.state {
        LinkState::Failed(reason) => {
            assert!(reason.contains("security"), "{reason}");
            assert!(reason.contains(&impostor.researcher_id), "{reason}");
        }
        other => panic!("expected a failed link, got {other}"),
    }
    assert!(!within("is connected", controller.send(IsConnected))
        .await
        .unwrap());
    // The impostor never got a poll.
    assert!(impostor.polls.try_recv().is_err());
    // Sends to the first researcher are refused, not silently queued.
    let reply = ping_reply(&ping_request(&first_id, "x"), "NODE_r");
    let r = within("send", controller.send(SendReply(reply)))
        .await
        .unwrap();
    assert!(matches!(r, Err(NodeError::LinkFailed { .. })), "{r:?}");
}

#[actix_rt::test]
async fn task_with_another_researcher_id_stops_the_link() {
    let mut researcher = MiniResearcher::start(0, None, true);
    let (controller, mut seen, mut fin) =
        start_node_with_finish("NODE_r", vec![endpoint_of(&researcher)], fast_config());
    researcher.next_poll().await;
    researcher.send_task(&ping_request("RESEARCHER_someone_else", "evil"));
    let finished = within("on-finish", fin.recv()).await.unwrap();
    assert_eq!(finished.reason, FinishReason::AllLinksFailed);
    assert!(
        seen.try_recv().is_err(),
        "the task must not reach the handler"
    );
    let status = within("status", controller.send(Status))
        .await
        .unwrap()
        .remove(0);
    assert!(matches!(status.state, LinkState::Failed(_)), "{status:?}");
}

#[actix_rt::test]
async fn bad_tasks_are_dropped_and_polling_goes_on() {
    let mut researcher = MiniResearcher::start(0, None, true);
    let (controller, mut seen, _fin) =
        start_node_with_finish("NODE_r", vec![endpoint_of(&researcher)], fast_config());
    researcher.next_poll().await;
    let id = researcher.researcher_id.clone();
    // Not msgpack.
    researcher.send_raw(bytes::Bytes::from_static(b"\xc1\xc1 not msgpack"));
    // A newer major protocol version.
    let mut future = ping_request(&id, "v8");
    future.set("protocol_version", fedroute::wire::Value::Str("8".into()));
    researcher.send_task(&future);
    // A good one still gets through.
    researcher.send_task(&ping_request(&id, "good"));
    let task = within("the good task", seen.recv()).await.unwrap();
    assert_eq!(task.message.request_id(), Some("good"));
    let status = within("status", controller.send(Status))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(status.bad_tasks, 2);
    assert_eq!(status.state, LinkState::Connected);
}
