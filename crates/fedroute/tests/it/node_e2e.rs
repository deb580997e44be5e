//! End to end against the real fedroute researcher (`fedroute::researcher`)
//! over TLS on 127.0.0.1: request/reply in both poll modes, broadcast to
//! three researchers, routing errors, connectivity and status, a researcher
//! restart on the same port (a rotated certificate, same id), and an
//! impostor.

use crate::node_support;

use std::time::{Duration, Instant};

use fedroute::node::{
    Broadcast, ControllerConfig, IsConnected, LinkState, NodeError, PollMode, SendReply, Status,
};
use fedroute::wire::{Envelope, PingRequest};
use node_support::real::RealResearcher;
use node_support::*;

fn ping(researcher: &RealResearcher) -> Envelope {
    Envelope::from_typed(&PingRequest::new(researcher.id())).unwrap()
}

async fn request_reply(mode: PollMode) {
    let mut researcher = RealResearcher::start(0, None).await;
    let mut config = fast_config();
    config.polling.mode = mode;
    let (controller, mut seen) = start_node("NODE_e2e", vec![researcher.endpoint()], config, true);
    researcher.connected("NODE_e2e").await;
    for _ in 0..20 {
        let request = ping(&researcher);
        let reply = researcher.request("NODE_e2e", request.clone()).await;
        assert_eq!(reply.class(), "PingReply");
        assert_eq!(reply.request_id(), request.request_id());
        assert_eq!(reply.node_id(), Some("NODE_e2e"));
        let task = within("the task at the handler", seen.recv())
            .await
            .unwrap();
        assert_eq!(task.researcher_id, researcher.id());
    }
    let status = within("status", controller.send(Status))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(status.poll_mode, mode);
    assert_eq!(status.messages_received, 20);
    researcher.shutdown().await;
}

#[actix_rt::test]
async fn request_reply_with_the_real_researcher_streaming() {
    request_reply(PollMode::Streaming).await;
}

#[actix_rt::test]
async fn request_reply_with_the_real_researcher_unary() {
    request_reply(PollMode::Unary).await;
}

#[actix_rt::test]
async fn broadcast_reaches_three_real_researchers() {
    let mut researchers = Vec::new();
    for _ in 0..3 {
        researchers.push(RealResearcher::start(0, None).await);
    }
    let endpoints = researchers.iter().map(RealResearcher::endpoint).collect();
    let (controller, _seen) = start_node("NODE_bc", endpoints, fast_config(), false);
    for r in researchers.iter_mut() {
        r.connected("NODE_bc").await;
    }
    wait_until("connected", || {
        let c = controller.clone();
        async move { c.send(IsConnected).await.unwrap() }
    })
    .await;
    // A node-wide message (as Fed-BioMed broadcasts errors).
    let message = ping_reply(&ping_request("<unknown>", "bc-1"), "NODE_bc");
    let results = within("broadcast", controller.send(Broadcast(message)))
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    for r in researchers.iter_mut() {
        let reply = r.unmatched_reply().await;
        assert_eq!(reply.request_id(), Some("bc-1"));
        assert_eq!(reply.node_id(), Some("NODE_bc"));
    }
    // Sending by id reaches exactly the named researcher.
    let target = researchers[1].id();
    let message = ping_reply(&ping_request(&target, "to-1"), "NODE_bc");
    within("send", controller.send(SendReply(message)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        researchers[1].unmatched_reply().await.request_id(),
        Some("to-1")
    );
    for r in &researchers {
        r.shutdown().await;
    }
}

#[actix_rt::test]
async fn send_to_an_unknown_researcher_is_an_error_real() {
    let mut researcher = RealResearcher::start(0, None).await;
    let (controller, _seen) =
        start_node("NODE_un", vec![researcher.endpoint()], fast_config(), false);
    researcher.connected("NODE_un").await;
    let message = ping_reply(&ping_request("RESEARCHER_nobody", "x"), "NODE_un");
    let r = within("send", controller.send(SendReply(message)))
        .await
        .unwrap();
    assert!(
        matches!(r, Err(NodeError::UnknownResearcher { ref researcher_id }) if researcher_id == "RESEARCHER_nobody"),
        "{r:?}"
    );
    researcher.shutdown().await;
}

#[actix_rt::test]
async fn is_connected_and_status_follow_the_real_researcher() {
    let port = free_port();
    let endpoint = fedroute::node::ResearcherEndpoint::trust_on_first_use("127.0.0.1", port);
    let (controller, mut seen) = start_node("NODE_ic", vec![endpoint], fast_config(), true);
    assert!(!within("is connected", controller.send(IsConnected))
        .await
        .unwrap());
    let s = within("status", controller.send(Status))
        .await
        .unwrap()
        .remove(0);
    assert!(
        matches!(s.state, LinkState::Connecting | LinkState::BackingOff),
        "{s:?}"
    );
    assert!(s.researcher_id.is_none());

    let mut researcher = RealResearcher::start(port, None).await;
    researcher.connected("NODE_ic").await;
    wait_until("connected", || {
        let c = controller.clone();
        async move { c.send(IsConnected).await.unwrap() }
    })
    .await;
    let before = within("status", controller.send(Status))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        before.researcher_id.as_deref(),
        Some(researcher.id().as_str())
    );
    assert_eq!(before.state, LinkState::Connected);

    for _ in 0..3 {
        researcher.request("NODE_ic", ping(&researcher)).await;
        within("task", seen.recv()).await.unwrap();
    }
    wait_until("the replies acknowledged", || {
        let c = controller.clone();
        async move {
            let s = c.send(Status).await.unwrap().remove(0);
            s.messages_sent == 3 && s.queue_depth == 0
        }
    })
    .await;
    let after = within("status", controller.send(Status))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(after.messages_received, before.messages_received + 3);
    assert!(after.bytes_received > before.bytes_received);
    assert!(after.bytes_sent > before.bytes_sent);
    assert!(after.last_poll >= before.last_poll);

    researcher.shutdown().await;
    wait_until("disconnected", || {
        let c = controller.clone();
        async move { !c.send(IsConnected).await.unwrap() }
    })
    .await;
}

#[actix_rt::test]
async fn replies_survive_a_real_researcher_restart() {
    let state = tempfile::tempdir().unwrap();
    let mut researcher = RealResearcher::start_in(0, state.path()).await;
    let port = researcher.port();
    let id = researcher.id();
    let first_cert = researcher.handle.cert_der.clone();
    // Default backoff: first retry within 50 ms, cap 2 s.
    let (controller, _seen) = start_node(
        "NODE_rs",
        vec![researcher.endpoint()],
        ControllerConfig::default(),
        false,
    );
    researcher.connected("NODE_rs").await;
    researcher.shutdown().await;
    drop(researcher);
    wait_until("the link to notice", || {
        let c = controller.clone();
        async move { !c.send(IsConnected).await.unwrap() }
    })
    .await;
    for i in 0..10 {
        let reply = ping_reply(&ping_request(&id, &format!("q{i}")), "NODE_rs");
        within("send", controller.send(SendReply(reply)))
            .await
            .unwrap()
            .unwrap();
    }

    // The researcher comes back with a rotated certificate: a new key,
    // with a proof signed by the old one.
    fedroute::tls::IdentityDir::new(state.path())
        .rotate(&["127.0.0.1"])
        .unwrap();
    let restarted_at = Instant::now();
    let mut researcher = RealResearcher::start_in(port, state.path()).await;
    assert_ne!(researcher.handle.cert_der, first_cert, "a new certificate");
    assert_eq!(researcher.id(), id);
    researcher.connected("NODE_rs").await;
    println!(
        "real researcher restart: {:?} from restart to the node's next poll",
        restarted_at.elapsed()
    );
    for i in 0..10 {
        let reply = researcher.unmatched_reply().await;
        assert_eq!(reply.request_id(), Some(format!("q{i}").as_str()));
    }
    let marker = ping_reply(&ping_request(&id, "marker"), "NODE_rs");
    within("send", controller.send(SendReply(marker)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        researcher.unmatched_reply().await.request_id(),
        Some("marker")
    );
    let status = within("status", controller.send(Status))
        .await
        .unwrap()
        .remove(0);
    assert!(status.reconnects >= 1, "{status:?}");
    assert_eq!(
        status.certificate_accepted,
        Some(fedroute::tls::Acceptance::RotationProof),
        "{status:?}"
    );
    researcher.shutdown().await;
}

#[actix_rt::test]
async fn a_real_researcher_back_with_another_id_is_refused() {
    let mut researcher = RealResearcher::start(0, None).await;
    let port = researcher.port();
    let (controller, _seen) =
        start_node("NODE_im", vec![researcher.endpoint()], fast_config(), false);
    researcher.connected("NODE_im").await;
    researcher.shutdown().await;
    drop(researcher);

    let impostor = RealResearcher::start(port, None).await;
    wait_until("the link to fail", || {
        let c = controller.clone();
        async move { c.send(Status).await.unwrap()[0].is_terminal() }
    })
    .await;
    let status = within("status", controller.send(Status))
        .await
        .unwrap()
        .remove(0);
    match &status.state {
        LinkState::Failed(reason) => {
            assert!(reason.contains("security"), "{reason}");
            assert!(reason.contains(&impostor.id()), "{reason}");
        }
        other => panic!("expected a failed link, got {other}"),
    }
    assert!(!within("is connected", controller.send(IsConnected))
        .await
        .unwrap());
    impostor.shutdown().await;
    let _ = Duration::ZERO;
}

#[actix_rt::test]
async fn scalar_feedback_reaches_the_real_researcher() {
    use fedroute::node::SendFeedback;
    use fedroute::wire::{Feedback, FeedbackMessage, Scalar};
    let mut researcher = RealResearcher::start(0, None).await;
    let (controller, _seen) =
        start_node("NODE_fb", vec![researcher.endpoint()], fast_config(), false);
    researcher.connected("NODE_fb").await;
    let scalar = Scalar {
        node_id: "NODE_fb".into(),
        experiment_id: "exp-1".into(),
        train: true,
        test: false,
        test_on_local_updates: false,
        test_on_global_updates: false,
        metric: [("loss".to_string(), 0.25f32)].into_iter().collect(),
        epoch: Some(2),
        total_samples: 100,
        batch_samples: 10,
        num_batches: 10,
        num_samples_trained: Some(20),
        iteration: 3,
        node_name: "fb node".into(),
    };
    let feedback = FeedbackMessage::scalar(Some(researcher.id()), scalar.clone());
    within("send feedback", controller.send(SendFeedback(feedback)))
        .await
        .unwrap()
        .unwrap();
    let got = researcher.feedback().await;
    assert_eq!(got.feedback, Feedback::Scalar(scalar));
    // Feedback for an unknown researcher is refused.
    let stray = FeedbackMessage::log(Some("RESEARCHER_nobody".into()), "NODE_fb", "INFO", "x");
    let r = within("send feedback", controller.send(SendFeedback(stray)))
        .await
        .unwrap();
    assert!(
        matches!(r, Err(NodeError::UnknownResearcher { .. })),
        "{r:?}"
    );
    researcher.shutdown().await;
}

/// Polls with a 40 ms deadline and requests sent at every moment of a poll's
/// life: a task the researcher hands out just before a poll's deadline still
/// reaches the node (the node reads past the deadline it announced until the
/// researcher ends the poll), so every request is answered, well within its
/// timeout.
async fn tasks_handed_out_at_a_poll_deadline_arrive(mode: PollMode, node: &str) {
    let mut researcher = RealResearcher::start(0, None).await;
    let deadline = Duration::from_millis(40);
    let mut config = fast_config();
    config.polling.mode = mode;
    config.polling.deadline = deadline;
    let (_controller, _seen) = start_node(node, vec![researcher.endpoint()], config, true);
    researcher.connected(node).await;
    for i in 0..200u64 {
        // Spread the sends over the polls' lives (a prime step through 40 ms).
        tokio::time::sleep(Duration::from_micros((i * 7_919) % 40_000)).await;
        let request = ping(&researcher);
        let reply = within(
            "a reply",
            researcher.handle.addr.send(fedroute::researcher::Request {
                node_id: node.to_string(),
                message: request.clone(),
                timeout: Duration::from_secs(2),
            }),
        )
        .await
        .expect("mailbox")
        .unwrap_or_else(|e| panic!("request {i} in {mode:?} mode: {e}"));
        assert_eq!(reply.request_id(), request.request_id());
    }
    researcher.shutdown().await;
}

#[actix_rt::test]
async fn tasks_handed_out_at_a_poll_deadline_arrive_unary() {
    tasks_handed_out_at_a_poll_deadline_arrive(PollMode::Unary, "NODE_edge_u").await;
}

#[actix_rt::test]
async fn tasks_handed_out_at_a_poll_deadline_arrive_streaming() {
    tasks_handed_out_at_a_poll_deadline_arrive(PollMode::Streaming, "NODE_edge_s").await;
}
