//! Durable requests on the researcher (issue 15): with a state directory,
//! requests accepted before a restart are offered again to their node, in
//! order, and their replies reach the application as `Reply` events; their
//! deadlines keep counting across the restart. (The kill tests with real
//! processes and SIGKILL are in the CLI crate and the crash soak.)

use crate::researcher_support::{self as support, bounded, client, poll, pong, Events};

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use fedroute::researcher::{
    RecoveredRequest, RecoveredRequests, Request, ResearcherEvent, ResearcherHandle, Shutdown,
    StoreStatus, Submit,
};
use fedroute::wire::{Envelope, PingRequest};

const NODE: &str = "NODE_durable";

async fn start_in(dir: &std::path::Path, port: u16) -> (ResearcherHandle, Events) {
    let mut config = support::config();
    config.listen.address = SocketAddr::from(([127, 0, 0, 1], port));
    config.state_dir = Some(dir.to_path_buf());
    support::start(config).await
}

fn ping_with_id(handle: &ResearcherHandle, id: &str) -> Envelope {
    let mut ping = PingRequest::new(handle.researcher_id.clone());
    ping.request_id = Some(id.to_string());
    Envelope::from_typed(&ping).unwrap()
}

/// Starts a researcher on `dir` and `port` again: it recovers no request.
async fn assert_a_restart_recovers_nothing(dir: &std::path::Path, port: u16) {
    let (r, _events) = start_in(dir, port).await;
    let left = bounded("recovered", r.addr.send(RecoveredRequests))
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    bounded("shutdown", r.addr.send(Shutdown)).await.unwrap();
}

async fn replies(events: &mut Events, n: usize) -> Vec<(String, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let ev = events
            .wait_for("a Reply event", |e| {
                matches!(e, ResearcherEvent::Reply { .. })
            })
            .await;
        if let ResearcherEvent::Reply {
            node_id,
            request_id,
            message,
        } = ev
        {
            assert_eq!(message.request_id(), Some(request_id.as_str()));
            got.push((node_id, request_id));
        }
    }
    got
}

#[actix_rt::test]
async fn requests_accepted_before_a_restart_are_offered_again_and_their_replies_reach_the_application(
) {
    let state = tempfile::tempdir().unwrap();
    let (r1, mut events) = start_in(state.path(), 0).await;
    let port = r1.local_addr.port();
    let mut node = client(&r1).await;
    support::register(&r1, &mut events, &node, NODE).await;

    // One request handed to the node (awaiting its reply), two queued, and
    // a `Request` whose future will be gone.
    for id in ["a", "b", "c"] {
        let submit = Submit {
            node_id: NODE.to_string(),
            message: ping_with_id(&r1, id),
            timeout: Duration::from_secs(60),
        };
        bounded("submit", r1.addr.send(submit))
            .await
            .unwrap()
            .unwrap();
    }
    let request = r1.addr.send(Request {
        node_id: NODE.to_string(),
        message: ping_with_id(&r1, "d"),
        timeout: Duration::from_secs(60),
    });
    let pending = tokio::spawn(request);
    let first = poll(&mut node, NODE).await.unwrap();
    assert_eq!(first.request_id(), Some("a"));
    let stats = bounded("stats", r1.addr.send(StoreStatus)).await.unwrap();
    // The three submits were on disk when they returned (the request may
    // still be on its way).
    assert!(stats.is_some_and(|s| s.items >= 3), "{stats:?}");

    bounded("shutdown", r1.addr.send(Shutdown)).await.unwrap();
    let told = bounded("the request's future", pending)
        .await
        .unwrap()
        .unwrap();
    assert!(told.is_err(), "the future ends with the shutdown: {told:?}");
    drop(node);

    let (r2, mut events) = start_in(state.path(), port).await;
    assert_eq!(r2.researcher_id, r1.researcher_id, "same identity");
    let mut recovered = bounded("recovered", r2.addr.send(RecoveredRequests))
        .await
        .unwrap();
    recovered.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    let ids: Vec<&str> = recovered.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    let RecoveredRequest { deadline, .. } = &recovered[0];
    let left = deadline.duration_since(SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(30) && left <= Duration::from_secs(60),
        "the deadline keeps counting: {left:?} left"
    );

    // The node polls again: every unanswered task comes, in order.
    let mut node = client(&r2).await;
    let mut offered = Vec::new();
    for _ in 0..4 {
        let task = poll(&mut node, NODE).await.unwrap();
        offered.push(task.request_id().unwrap().to_string());
        support::reply(&mut node, &[pong(&task, NODE)])
            .await
            .unwrap();
    }
    assert_eq!(offered, ["a", "b", "c", "d"]);
    let mut got = replies(&mut events, 4).await;
    got.sort();
    let want: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| (NODE.to_string(), id.to_string()))
        .collect();
    assert_eq!(got, want);

    // Answered requests are gone from the store: a third start recovers
    // nothing.
    bounded("shutdown", r2.addr.send(Shutdown)).await.unwrap();
    assert_a_restart_recovers_nothing(state.path(), port).await;
}

#[actix_rt::test]
async fn a_recovered_request_whose_deadline_passes_is_told_as_no_reply() {
    let state = tempfile::tempdir().unwrap();
    let (r1, mut events) = start_in(state.path(), 0).await;
    let port = r1.local_addr.port();
    let node = client(&r1).await;
    support::register(&r1, &mut events, &node, NODE).await;
    let submit = Submit {
        node_id: NODE.to_string(),
        message: ping_with_id(&r1, "late"),
        timeout: Duration::from_secs(2),
    };
    bounded("submit", r1.addr.send(submit))
        .await
        .unwrap()
        .unwrap();
    bounded("shutdown", r1.addr.send(Shutdown)).await.unwrap();

    let (r2, mut events) = start_in(state.path(), port).await;
    let ev = events
        .wait_for("NoReply", |e| matches!(e, ResearcherEvent::NoReply { .. }))
        .await;
    let ResearcherEvent::NoReply {
        node_id,
        request_id,
        ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!((node_id.as_str(), request_id.as_str()), (NODE, "late"));
    bounded("shutdown", r2.addr.send(Shutdown)).await.unwrap();
    // Given up: not recovered again.
    assert_a_restart_recovers_nothing(state.path(), port).await;
}

#[actix_rt::test]
async fn submit_without_an_event_recipient_is_refused_with_a_clear_error() {
    let handle = bounded(
        "start",
        fedroute::researcher::start(support::config(), None),
    )
    .await
    .unwrap();
    let submit = Submit {
        node_id: NODE.to_string(),
        message: ping_with_id(&handle, "nowhere"),
        timeout: Duration::from_secs(5),
    };
    let refused = bounded("submit", handle.addr.send(submit)).await.unwrap();
    assert!(
        matches!(
            refused,
            Err(fedroute::researcher::ResearcherError::NoEventRecipient)
        ),
        "{refused:?}"
    );
    bounded("shutdown", handle.addr.send(Shutdown))
        .await
        .unwrap();
}
