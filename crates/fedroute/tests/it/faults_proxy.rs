//! Connection cuts between a node and a researcher, through the test proxy
//! (TLS passes through it): during a 100 MiB reply upload, during a task
//! download, and 100 times during a stream of 1,000 small replies. After
//! each, every reply reaches the researcher exactly once and in order, and
//! every task reaches the node handler exactly once.

use crate::faults_support;
use crate::researcher_support;

use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use faults_support::{Dir, Proxy};
use fedroute::node::{Controller, ControllerConfig, ResearcherEndpoint};
use fedroute::researcher::{PendingCount, Request, ResearcherEvent, ResearcherHandle};
use fedroute::wire::{Envelope, Value};
use researcher_support::{blob_reply, blob_request, bounded, pattern, pong, Events};
use tokio::sync::mpsc;

const NODE: &str = "NODE_cut";
const MIB: usize = 1 << 20;

/// The node's application: records every task (request id) and answers
/// pings with a pong and blob requests with a blob of `reply_bytes` bytes.
struct App {
    seen: mpsc::UnboundedSender<String>,
}

impl Actor for App {
    type Context = Context<Self>;
}

impl Handler<fedroute::node::TaskReceived> for App {
    type Result = ResponseFuture<()>;
    fn handle(
        &mut self,
        task: fedroute::node::TaskReceived,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let m = &task.message;
        let _ = self
            .seen
            .send(m.request_id().unwrap_or_default().to_string());
        let reply = match m.class() {
            "PingRequest" => pong(m, NODE),
            _ => {
                let n = m.get("reply_bytes").and_then(Value::as_u64).unwrap_or(0) as usize;
                blob_reply(m, NODE, pattern(n))
            }
        };
        let sent = task.reply.send(reply);
        Box::pin(async move {
            let _ = sent.await;
        })
    }
}

struct Setup {
    handle: ResearcherHandle,
    events: Events,
    proxy: Proxy,
    controller: Addr<Controller>,
    seen: mpsc::UnboundedReceiver<String>,
}

async fn setup() -> Setup {
    setup_with(fedroute::node::PollMode::Auto).await
}

async fn setup_with(poll_mode: fedroute::node::PollMode) -> Setup {
    let (handle, mut events) = researcher_support::start(researcher_support::config()).await;
    let proxy = Proxy::start(handle.local_addr).await;
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let app = App { seen: seen_tx }.start();
    let mut config = ControllerConfig::default();
    config.polling.mode = poll_mode;
    config.reconnect.backoff_first = Duration::from_millis(10);
    config.reconnect.backoff_max = Duration::from_millis(100);
    config.channel.connect_timeout = Duration::from_secs(5);
    let controller = Controller::builder(NODE)
        .name("cut node")
        .researchers(vec![ResearcherEndpoint::trust_on_first_use(
            "127.0.0.1",
            proxy.addr.port(),
        )])
        .config(config)
        .start(app.recipient())
        .expect("the controller starts");
    events.connected(NODE).await;
    Setup {
        handle,
        events,
        proxy,
        controller,
        seen,
    }
}

fn blob_task(handle: &ResearcherHandle, task_bytes: usize, reply_bytes: usize) -> Envelope {
    let mut e = blob_request(handle, pattern(task_bytes));
    e.set("reply_bytes", Value::UInt(reply_bytes as u64));
    e
}

/// Replies that matched no request (duplicates would show here).
fn unmatched(events: &mut Events) -> usize {
    events
        .drain()
        .iter()
        .filter(|e| matches!(e, ResearcherEvent::UnmatchedReply(_)))
        .count()
}

async fn stop(s: Setup) {
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        s.controller.send(fedroute::node::Shutdown {
            deadline: Duration::from_secs(2),
        }),
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(10), s.handle.shutdown()).await;
}

/// The request is answered once, and a following ping proves no duplicate
/// task reached the handler in between.
async fn no_duplicate_task(s: &mut Setup, request_id: &str) {
    let seen = bounded("task", s.seen.recv()).await.unwrap();
    assert_eq!(seen, request_id);
    let ping = researcher_support::ping(&s.handle);
    let answer = bounded(
        "ping after",
        s.handle.addr.send(Request {
            node_id: NODE.into(),
            message: ping.clone(),
            timeout: researcher_support::T,
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(answer.request_id(), ping.request_id());
    let next = bounded("ping task", s.seen.recv()).await.unwrap();
    assert_eq!(
        Some(next.as_str()),
        ping.request_id(),
        "the handler saw a task twice"
    );
}

#[actix_rt::test]
async fn cut_during_a_100_mib_reply_upload() {
    let mut s = setup().await;
    let request = blob_task(&s.handle, 16, 100 * MIB);
    // Cut once 30 MiB of the reply went up.
    s.proxy.cut_after(Dir::Up, 30 * MIB as u64);
    let ask = s.handle.addr.send(Request {
        node_id: NODE.into(),
        message: request.clone(),
        timeout: Duration::from_secs(120),
    });
    let reply = bounded("100 MiB reply", ask).await.unwrap().unwrap();
    assert!(s.proxy.cuts() >= 1, "the upload was never cut");
    assert_eq!(reply.request_id(), request.request_id());
    let blob = reply.get("blob").and_then(Value::as_bin).unwrap();
    assert_eq!(blob.len(), 100 * MIB);
    assert!(*blob == pattern(100 * MIB), "the reply arrived corrupted");
    no_duplicate_task(&mut s, request.request_id().unwrap()).await;
    let dups = unmatched(&mut s.events);
    eprintln!(
        "faults_proxy: 100 MiB upload cut at 30 MiB; {} bytes up in all; {dups} extra copies dropped by the researcher",
        s.proxy.bytes(Dir::Up)
    );
    assert_eq!(
        bounded("pending", s.handle.addr.send(PendingCount))
            .await
            .unwrap(),
        0
    );
    stop(s).await;
}

#[actix_rt::test]
async fn cut_during_a_task_download() {
    let mut s = setup().await;
    let request = blob_task(&s.handle, 24 * MIB, 8);
    s.proxy.cut_after(Dir::Down, 10 * MIB as u64);
    let ask = s.handle.addr.send(Request {
        node_id: NODE.into(),
        message: request.clone(),
        timeout: Duration::from_secs(60),
    });
    let reply = bounded("reply to the big task", ask)
        .await
        .unwrap()
        .unwrap();
    assert!(s.proxy.cuts() >= 1, "the download was never cut");
    assert_eq!(reply.request_id(), request.request_id());
    no_duplicate_task(&mut s, request.request_id().unwrap()).await;
    assert_eq!(unmatched(&mut s.events), 0);
    stop(s).await;
}

/// Was lost before the researcher kept written tasks until their reply
/// (measured then: 970 of 1,000 tasks delivered with 97 cuts).
#[actix_rt::test]
async fn a_hundred_cuts_during_a_thousand_small_replies() {
    hundred_cuts(fedroute::node::PollMode::Auto).await;
}

/// The same with Fed-BioMed's unary polls.
#[actix_rt::test]
async fn a_hundred_cuts_during_a_thousand_small_replies_unary() {
    hundred_cuts(fedroute::node::PollMode::Unary).await;
}

async fn hundred_cuts(mode: fedroute::node::PollMode) {
    let mut s = setup_with(mode).await;
    let n = 1_000;
    let requests: Vec<Envelope> = (0..n)
        .map(|_| researcher_support::ping(&s.handle))
        .collect();
    // Queue them all at once, in order (the researcher's mailbox holds them).
    let (done_tx, mut done) = mpsc::unbounded_channel();
    for (i, r) in requests.iter().enumerate() {
        let ask = s.handle.addr.send(Request {
            node_id: NODE.into(),
            message: r.clone(),
            timeout: Duration::from_secs(100),
        });
        let done_tx = done_tx.clone();
        tokio::spawn(async move {
            let got = ask.await;
            let _ = done_tx.send((i, got));
        });
    }
    drop(done_tx);
    // Cut every 10 replies.
    let mut order = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), done.recv()).await;
        while let Ok(id) = s.seen.try_recv() {
            tasks.push(id);
        }
        let Ok(next) = next else {
            let nodes = s.handle.addr.send(fedroute::researcher::Nodes).await;
            let links = s.controller.send(fedroute::node::Status).await;
            panic!(
                "stalled after {} replies, {} tasks seen, {} cuts: researcher {nodes:?}; node {links:?}",
                order.len(),
                tasks.len(),
                s.proxy.cuts()
            );
        };
        let Some((i, got)) = next else { break };
        let reply = got
            .expect("researcher mailbox")
            .unwrap_or_else(|e| panic!("request {i} failed: {e}"));
        assert_eq!(reply.request_id(), requests[i].request_id());
        assert_eq!(reply.node_id(), Some(NODE));
        order.push(i);
        if order.len() % 10 == 0 && s.proxy.cuts() < 100 {
            s.proxy.cut();
        }
    }
    assert_eq!(order.len(), n);
    let cuts = s.proxy.cuts();
    assert!(cuts >= 99, "only {cuts} cuts");
    // Every task reached the handler exactly once, in the order queued.
    while let Ok(id) = s.seen.try_recv() {
        tasks.push(id);
    }
    let expected: Vec<String> = requests
        .iter()
        .map(|r| r.request_id().unwrap().to_string())
        .collect();
    let mut sorted = tasks.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        tasks.len(),
        "{} tasks reached the handler twice",
        tasks.len() - sorted.len()
    );
    assert_eq!(tasks, expected, "tasks reached the handler out of order");
    // Replies resolved the requests in order.
    let out_of_order = order.windows(2).filter(|w| w[0] > w[1]).count();
    let dups = unmatched(&mut s.events);
    eprintln!(
        "faults_proxy: {n} replies, {cuts} cuts, {} connections, {dups} extra copies dropped by the researcher, {out_of_order} out of order",
        s.proxy.accepted()
    );
    assert_eq!(out_of_order, 0, "replies arrived out of order: {order:?}");
    assert_eq!(
        bounded("pending", s.handle.addr.send(PendingCount))
            .await
            .unwrap(),
        0
    );
    let _ = Bytes::new();
    stop(s).await;
}

#[actix_rt::test]
async fn bytes_dropped_mid_download_break_tls_and_the_task_arrives_once() {
    let mut s = setup().await;
    // Let 2 MiB of the task through, then lose 1,000 bytes: the TLS record
    // fails to authenticate, the node drops the connection and reconnects.
    let request = blob_task(&s.handle, 12 * MIB, 8);
    s.proxy.drop_bytes_after(Dir::Down, 2 * MIB as u64, 1_000);
    let ask = s.handle.addr.send(Request {
        node_id: NODE.into(),
        message: request.clone(),
        timeout: Duration::from_secs(60),
    });
    let reply = bounded("reply after a corrupted download", ask)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.request_id(), request.request_id());
    assert!(s.proxy.accepted() >= 2, "the node never reconnected");
    no_duplicate_task(&mut s, request.request_id().unwrap()).await;
    stop(s).await;
}

#[actix_rt::test]
async fn a_stalled_connection_resumes_without_loss() {
    let mut s = setup().await;
    s.proxy.stall(true);
    let request = researcher_support::ping(&s.handle);
    let ask = tokio::spawn(s.handle.addr.send(Request {
        node_id: NODE.into(),
        message: request.clone(),
        timeout: Duration::from_secs(30),
    }));
    // Nothing moves while stalled.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), s.seen.recv())
            .await
            .is_err(),
        "a task went through a stalled proxy"
    );
    s.proxy.stall(false);
    let reply = bounded("reply after the stall", ask)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply.request_id(), request.request_id());
    no_duplicate_task(&mut s, request.request_id().unwrap()).await;
    stop(s).await;
}
