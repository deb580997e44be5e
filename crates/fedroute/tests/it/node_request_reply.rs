//! Request/reply through the controller and a handler actor, over real TLS.

use crate::node_support;

use std::time::Duration;

use fedroute::node::{Broadcast, IsConnected, LinkState, NodeError, PollMode, SendReply, Status};
use node_support::*;

async fn ping_round_trip(streaming_server: bool, mode: PollMode, expect_mode: PollMode) {
    let mut researcher = MiniResearcher::start(0, None, streaming_server);
    let mut config = fast_config();
    config.polling.mode = mode;
    let (controller, mut seen) =
        start_node("NODE_rr", vec![endpoint_of(&researcher)], config, true);
    for i in 0..20 {
        let request_id = format!("req-{i}");
        researcher.send_task(&ping_request(&researcher.researcher_id, &request_id));
        let task = within("a task at the handler", seen.recv()).await.unwrap();
        assert_eq!(task.researcher_id, researcher.researcher_id);
        assert_eq!(task.message.request_id(), Some(request_id.as_str()));
        let reply = researcher.next_reply().await;
        assert_eq!(reply.class(), "PingReply");
        assert_eq!(reply.request_id(), Some(request_id.as_str()));
        assert_eq!(reply.node_id(), Some("NODE_rr"));
    }
    let status = within("status", controller.send(Status)).await.unwrap();
    assert_eq!(status[0].poll_mode, expect_mode);
    assert_eq!(status[0].messages_received, 20);
}

#[actix_rt::test]
async fn request_reply_in_streaming_mode() {
    ping_round_trip(true, PollMode::Streaming, PollMode::Streaming).await;
}

#[actix_rt::test]
async fn request_reply_auto_mode_uses_streaming() {
    ping_round_trip(true, PollMode::Auto, PollMode::Streaming).await;
}

#[actix_rt::test]
async fn request_reply_falls_back_to_unary() {
    ping_round_trip(false, PollMode::Auto, PollMode::Unary).await;
}

#[actix_rt::test]
async fn request_reply_in_unary_mode() {
    ping_round_trip(true, PollMode::Unary, PollMode::Unary).await;
}

#[actix_rt::test]
async fn send_to_an_unknown_researcher_is_an_error() {
    let mut researcher = MiniResearcher::start(0, None, true);
    let (controller, _seen) = start_node(
        "NODE_u",
        vec![endpoint_of(&researcher)],
        fast_config(),
        false,
    );
    researcher.next_poll().await;
    let r = within(
        "send",
        controller.send(SendReply(ping_reply(
            &ping_request("RESEARCHER_nobody", "r1"),
            "NODE_u",
        ))),
    )
    .await
    .unwrap();
    assert!(
        matches!(r, Err(NodeError::UnknownResearcher { ref researcher_id }) if researcher_id == "RESEARCHER_nobody"),
        "{r:?}"
    );
    // The known one works.
    let r = within(
        "send",
        controller.send(SendReply(ping_reply(
            &ping_request(&researcher.researcher_id, "r2"),
            "NODE_u",
        ))),
    )
    .await
    .unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(researcher.next_reply().await.request_id(), Some("r2"));
}

#[actix_rt::test]
async fn broadcast_reaches_three_researchers() {
    let mut researchers: Vec<MiniResearcher> = (0..3)
        .map(|_| MiniResearcher::start(0, None, true))
        .collect();
    let endpoints = researchers.iter().map(endpoint_of).collect();
    let (controller, _seen) = start_node("NODE_b", endpoints, fast_config(), false);
    for r in researchers.iter_mut() {
        r.next_poll().await;
    }
    wait_until("connected", || {
        let c = controller.clone();
        async move { c.send(IsConnected).await.unwrap() }
    })
    .await;
    let message = ping_reply(&ping_request("<unknown>", "b1"), "NODE_b");
    let results = within("broadcast", controller.send(Broadcast(message)))
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    for r in researchers.iter_mut() {
        let reply = r.next_reply().await;
        assert_eq!(reply.request_id(), Some("b1"));
    }
}

#[actix_rt::test]
async fn is_connected_follows_the_researcher() {
    let port = free_port();
    let endpoint = fedroute::node::ResearcherEndpoint::trust_on_first_use("127.0.0.1", port);
    let (controller, _seen) = start_node("NODE_c", vec![endpoint], fast_config(), false);
    assert!(!within("is connected", controller.send(IsConnected))
        .await
        .unwrap());
    let status = within("status", controller.send(Status)).await.unwrap();
    assert_ne!(status[0].state, LinkState::Connected);

    let mut researcher = MiniResearcher::start(port, None, true);
    researcher.next_poll().await;
    wait_until("connected", || {
        let c = controller.clone();
        async move { c.send(IsConnected).await.unwrap() }
    })
    .await;

    researcher.stop();
    wait_until("disconnected", || {
        let c = controller.clone();
        async move { !c.send(IsConnected).await.unwrap() }
    })
    .await;
}

#[actix_rt::test]
async fn status_moves_as_traffic_flows() {
    let mut researcher = MiniResearcher::start(0, None, true);
    let (controller, mut seen) = start_node(
        "NODE_s",
        vec![endpoint_of(&researcher)],
        fast_config(),
        true,
    );
    researcher.next_poll().await;
    let before = within("status", controller.send(Status))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(before.endpoint, format!("127.0.0.1:{}", researcher.port()));
    assert_eq!(
        before.researcher_id.as_deref(),
        Some(researcher.researcher_id.as_str())
    );
    assert_eq!(before.messages_received, 0);
    assert_eq!(before.messages_sent, 0);
    for i in 0..3 {
        researcher.send_task(&ping_request(&researcher.researcher_id, &format!("s{i}")));
        within("task", seen.recv()).await.unwrap();
        researcher.next_reply().await;
    }
    wait_until("sent counters", || {
        let c = controller.clone();
        async move { c.send(Status).await.unwrap()[0].messages_sent == 3 }
    })
    .await;
    let after = within("status", controller.send(Status))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(after.state, LinkState::Connected);
    assert!(after.polling);
    assert_eq!(after.messages_received, 3);
    assert!(after.bytes_received > 0 && after.bytes_sent > 0);
    assert_eq!(after.queue_depth, 0);
    assert_eq!(after.reconnects, 0);
    assert!(after.last_poll.is_some());
    assert!(after.last_poll >= before.last_poll);
    let _ = Duration::ZERO;
}

#[actix_rt::test]
async fn polls_are_opened_again_at_their_deadline() {
    for (mode, streaming) in [(PollMode::Unary, false), (PollMode::Streaming, true)] {
        let mut researcher = MiniResearcher::start(0, None, streaming);
        let mut config = fast_config();
        config.polling.mode = mode;
        config.polling.deadline = Duration::from_millis(100);
        // One poll event per stream opened.
        config.polling.credits = 1;
        let (controller, mut seen) =
            start_node("NODE_dl", vec![endpoint_of(&researcher)], config, true);
        // Five polls in a row, each ended by the node's deadline.
        for _ in 0..5 {
            researcher.next_poll().await;
        }
        let status = within("status", controller.send(Status))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(status.reconnects, 0, "{status:?}");
        assert_eq!(status.state, LinkState::Connected);
        researcher.send_task(&ping_request(&researcher.researcher_id, "late"));
        let task = within("a task after idle polls", seen.recv())
            .await
            .unwrap();
        assert_eq!(task.message.request_id(), Some("late"));
        assert_eq!(researcher.next_reply().await.request_id(), Some("late"));
    }
}
