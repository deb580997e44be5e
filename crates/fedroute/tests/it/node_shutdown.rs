//! Shutdown flushes or reports the outgoing queues; links are added and
//! removed at run time.

use crate::node_support;

use std::time::Duration;

use actix::prelude::*;
use fedroute::node::{
    AddResearcher, Controller, FinishReason, Finished, IsConnected, NodeError, RemoveResearcher,
    SendReply, Shutdown, ShutdownReport, Status,
};
use node_support::*;
use tokio::sync::mpsc;

fn node_with_finish(
    endpoints: Vec<fedroute::node::ResearcherEndpoint>,
) -> (Addr<Controller>, mpsc::UnboundedReceiver<Finished>) {
    let (controller, _seen, fin) = start_node_with_finish("NODE_sd", endpoints, fast_config());
    (controller, fin)
}

/// Queues `n` ping replies to researcher `id`, request ids `prefix0`...
async fn queue_replies(controller: &Addr<Controller>, id: &str, prefix: &str, n: usize) {
    for i in 0..n {
        let reply = ping_reply(&ping_request(id, &format!("{prefix}{i}")), "NODE_sd");
        within("send", controller.send(SendReply(reply)))
            .await
            .unwrap()
            .unwrap();
    }
}

/// Shuts `controller` down with `deadline` and returns its report.
async fn shutdown(controller: &Addr<Controller>, deadline: Duration) -> ShutdownReport {
    within("shutdown", controller.send(Shutdown { deadline }))
        .await
        .unwrap()
}

#[actix_rt::test]
async fn shutdown_flushes_queued_replies() {
    let mut researcher = MiniResearcher::start(0, None, true);
    let id = researcher.researcher_id.clone();
    let (controller, mut fin) = node_with_finish(vec![endpoint_of(&researcher)]);
    researcher.next_poll().await;
    queue_replies(&controller, &id, "f", 5).await;
    let report = shutdown(&controller, Duration::from_secs(5)).await;
    assert_eq!(report.undelivered(), 0, "{report:?}");
    for i in 0..5 {
        assert_eq!(
            researcher.next_reply().await.request_id(),
            Some(format!("f{i}").as_str())
        );
    }
    let finished = within("on-finish", fin.recv()).await.unwrap();
    assert_eq!(finished.reason, FinishReason::Shutdown);
    assert_eq!(finished.unsent, 0);
    // A shut-down controller refuses work with a typed error.
    let reply = ping_reply(&ping_request(&id, "late"), "NODE_sd");
    let r = within("send", controller.send(SendReply(reply)))
        .await
        .unwrap();
    assert!(matches!(r, Err(NodeError::ShutDown)), "{r:?}");
    assert!(!within("is connected", controller.send(IsConnected))
        .await
        .unwrap());
}

#[actix_rt::test]
async fn shutdown_reports_what_could_not_be_sent() {
    let mut researcher = MiniResearcher::start(0, None, true);
    let id = researcher.researcher_id.clone();
    let (controller, mut fin) = node_with_finish(vec![endpoint_of(&researcher)]);
    researcher.next_poll().await;
    researcher.stop();
    queue_replies(&controller, &id, "u", 3).await;
    let report = shutdown(&controller, Duration::from_millis(300)).await;
    // Whether a send was tried on the dying connection is a race: the
    // split may differ, the queue order and the total may not.
    let mut left = ids(&report.unacknowledged);
    left.extend(ids(&report.unsent));
    assert_eq!(left, ["u0", "u1", "u2"]);
    assert_eq!(report.undelivered(), 3);
    let finished = within("on-finish", fin.recv()).await.unwrap();
    assert_eq!(finished.unsent, 3);
}

fn ids(envelopes: &[fedroute::wire::Envelope]) -> Vec<String> {
    envelopes
        .iter()
        .map(|e| e.request_id().unwrap().to_string())
        .collect()
}

#[actix_rt::test]
async fn shutdown_tells_replies_the_researcher_may_have_from_those_never_sent() {
    let mut evil = fedroute_testkit::faults::EvilResearcher::start(false).await;
    evil.hold_replies(true);
    let mut config = fast_config();
    config.polling.mode = fedroute::node::PollMode::Unary;
    config.replies.stream = fedroute::node::ReplyStreamMode::PerBatch;
    let endpoint =
        fedroute::node::ResearcherEndpoint::trust_on_first_use("127.0.0.1", evil.addr.port());
    let (controller, _seen) = start_node("NODE_ack", vec![endpoint], config, false);
    within("a poll", evil.polls.recv()).await.unwrap();
    let reply = |id: &str| ping_reply(&ping_request(&evil.researcher_id, id), "NODE_ack");
    within("send a", controller.send(SendReply(reply("a"))))
        .await
        .unwrap()
        .unwrap();
    // The researcher read it (and will never acknowledge it) ...
    let got = within("a read", evil.replies.recv()).await.unwrap();
    assert_eq!(got.request_id(), Some("a"));
    // ... so the send pump is busy: b is never written.
    within("send b", controller.send(SendReply(reply("b"))))
        .await
        .unwrap()
        .unwrap();
    let report = shutdown(&controller, Duration::from_millis(300)).await;
    assert_eq!(ids(&report.unacknowledged), ["a"]);
    assert_eq!(ids(&report.unsent), ["b"]);
}

#[actix_rt::test]
async fn researchers_are_added_and_removed_at_run_time() {
    let mut first = MiniResearcher::start(0, None, true);
    let (controller, _fin) = node_with_finish(vec![endpoint_of(&first)]);
    first.next_poll().await;

    let mut second = MiniResearcher::start(0, None, true);
    within("add", controller.send(AddResearcher(endpoint_of(&second))))
        .await
        .unwrap()
        .unwrap();
    second.next_poll().await;
    let dup = within(
        "add again",
        controller.send(AddResearcher(endpoint_of(&second))),
    )
    .await
    .unwrap();
    assert!(
        matches!(dup, Err(NodeError::DuplicateEndpoint { .. })),
        "{dup:?}"
    );
    let reply = ping_reply(&ping_request(&second.researcher_id, "to-second"), "NODE_sd");
    within("send", controller.send(SendReply(reply)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.next_reply().await.request_id(), Some("to-second"));
    assert_eq!(
        within("status", controller.send(Status))
            .await
            .unwrap()
            .len(),
        2
    );

    // The reply reached the researcher; wait for its acknowledgement to reach the node.
    wait_until("the reply acknowledged", || {
        let c = controller.clone();
        async move {
            c.send(Status)
                .await
                .unwrap()
                .iter()
                .all(|s| s.queue_depth == 0)
        }
    })
    .await;
    let left = within(
        "remove",
        controller.send(RemoveResearcher::endpoint(&endpoint_of(&second))),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(left.undelivered(), 0, "{left:?}");
    assert_eq!(
        within("status", controller.send(Status))
            .await
            .unwrap()
            .len(),
        1
    );
    let reply = ping_reply(&ping_request(&second.researcher_id, "gone"), "NODE_sd");
    let r = within("send", controller.send(SendReply(reply)))
        .await
        .unwrap();
    assert!(
        matches!(r, Err(NodeError::UnknownResearcher { .. })),
        "{r:?}"
    );
    let r = within(
        "remove again",
        controller.send(RemoveResearcher {
            host: "127.0.0.1".into(),
            port: second.port(),
        }),
    )
    .await
    .unwrap();
    assert!(matches!(r, Err(NodeError::UnknownEndpoint { .. })), "{r:?}");
}

#[actix_rt::test]
async fn a_message_without_researcher_id_is_an_error() {
    let mut researcher = MiniResearcher::start(0, None, true);
    let (controller, _fin) = node_with_finish(vec![endpoint_of(&researcher)]);
    researcher.next_poll().await;
    let mut reply = ping_reply(&ping_request("x", "r"), "NODE_sd");
    let v = reply.value().clone();
    if let fedroute::wire::Value::Map(entries) = v {
        let kept: Vec<_> = entries
            .into_iter()
            .filter(|(k, _)| k.as_str() != Some("researcher_id"))
            .collect();
        reply = fedroute::wire::Envelope::from_value(fedroute::wire::Value::Map(kept)).unwrap();
    }
    let r = within("send", controller.send(SendReply(reply)))
        .await
        .unwrap();
    assert!(
        matches!(r, Err(NodeError::MissingResearcherId { .. })),
        "{r:?}"
    );
}
