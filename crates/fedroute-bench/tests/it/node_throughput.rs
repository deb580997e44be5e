//! Rough throughput probes (ignored by default; the benchmarks stream has
//! the real numbers): `cargo test --release --test node_throughput -- --ignored --nocapture`.

use crate::node_support;

use std::time::{Duration, Instant};

use fedroute::node::PollMode;
use node_support::*;

async fn ping_pong(mode: PollMode, streaming_server: bool, rounds: usize) {
    let mut researcher = MiniResearcher::start(0, None, streaming_server);
    let mut config = fast_config();
    config.polling.mode = mode;
    let (_controller, mut seen) =
        start_node("NODE_tp", vec![endpoint_of(&researcher)], config, true);
    let id = researcher.researcher_id.clone();
    // Warm up.
    researcher.send_task(&ping_request(&id, "warm"));
    researcher.next_reply().await;
    let start = Instant::now();
    for i in 0..rounds {
        researcher.send_task(&ping_request(&id, &i.to_string()));
        let reply = researcher.next_reply().await;
        assert_eq!(reply.request_id(), Some(i.to_string().as_str()));
    }
    let elapsed = start.elapsed();
    while seen.try_recv().is_ok() {}
    println!(
        "ping-pong {mode}: {rounds} round trips in {elapsed:?} = {:.0}/s",
        rounds as f64 / elapsed.as_secs_f64()
    );
}

#[actix_rt::test]
#[ignore]
async fn ping_pong_streaming() {
    ping_pong(PollMode::Streaming, true, 5000).await;
}

#[actix_rt::test]
#[ignore]
async fn ping_pong_unary() {
    ping_pong(PollMode::Unary, true, 2000).await;
}

#[actix_rt::test]
#[ignore]
async fn echo_100_mib() {
    let mut researcher = MiniResearcher::start(0, None, true);
    let (_controller, _seen) = start_node(
        "NODE_big",
        vec![endpoint_of(&researcher)],
        fast_config(),
        false,
    );
    let id = researcher.researcher_id.clone();
    researcher.next_poll().await;
    let payload = bytes::Bytes::from(vec![42u8; 100 << 20]);
    let start = Instant::now();
    let message = blob(&id, "big", "PingReply", payload);
    _controller
        .send(fedroute::node::SendReply(message))
        .await
        .unwrap()
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(120), researcher.replies.recv())
        .await
        .unwrap()
        .unwrap();
    println!("100 MiB node -> researcher in {:?}", start.elapsed());
    assert_eq!(reply.request_id(), Some("big"));
}

/// Round trips driven by the real researcher: `in_flight` requests at a time.
async fn real_round_trips(
    mode: PollMode,
    reply_stream: fedroute::node::ReplyStreamMode,
    rounds: usize,
    in_flight: usize,
) {
    use fedroute::wire::{Envelope, PingRequest};
    let mut researcher = node_support::real::RealResearcher::start(0, None).await;
    let mut config = fast_config();
    config.polling.mode = mode;
    config.replies.stream = reply_stream;
    let (_controller, mut seen) = start_node("NODE_rt", vec![researcher.endpoint()], config, true);
    researcher.connected("NODE_rt").await;
    let addr = researcher.handle.addr.clone();
    let id = researcher.id();
    let drain = actix_rt::spawn(async move { while seen.recv().await.is_some() {} });
    let start = Instant::now();
    let mut left = rounds;
    while left > 0 {
        let n = left.min(in_flight);
        left -= n;
        let batch = (0..n).map(|_| {
            let request = Envelope::from_typed(&PingRequest::new(id.clone())).unwrap();
            addr.send(fedroute::researcher::Request {
                node_id: "NODE_rt".into(),
                message: request,
                timeout: Duration::from_secs(30),
            })
        });
        for r in futures::future::join_all(batch).await {
            r.unwrap().unwrap();
        }
    }
    let elapsed = start.elapsed();
    println!(
        "real researcher, {mode}, replies {reply_stream:?}, {in_flight} in flight: {rounds} round trips in {elapsed:?} = {:.0}/s",
        rounds as f64 / elapsed.as_secs_f64()
    );
    researcher.shutdown().await;
    drain.abort();
}

#[actix_rt::test]
#[ignore]
async fn real_researcher_round_trips() {
    use fedroute::node::ReplyStreamMode::{Auto, PerBatch};
    real_round_trips(PollMode::Streaming, Auto, 5000, 1).await;
    real_round_trips(PollMode::Streaming, Auto, 20000, 64).await;
    real_round_trips(PollMode::Streaming, PerBatch, 5000, 1).await;
    real_round_trips(PollMode::Streaming, PerBatch, 20000, 64).await;
    real_round_trips(PollMode::Unary, Auto, 2000, 1).await;
    real_round_trips(PollMode::Unary, Auto, 5000, 64).await;
}
