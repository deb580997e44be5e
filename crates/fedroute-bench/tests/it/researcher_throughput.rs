//! Round-trip rates through a real researcher over TLS, one process, raw
//! tonic clients as nodes. Ignored by default (timing, not behaviour); run
//! with `cargo test --release --test researcher_throughput -- --ignored
//! --nocapture`. Each prints ping round trips per second.

use crate::researcher_support;

use std::time::{Duration, Instant};

use fedroute::researcher::{PendingCount, Request};
use fedroute::wire::Envelope;
use futures::StreamExt;
use researcher_support::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const ROUNDS: usize = 20_000;

async fn drive(
    handle: &fedroute::researcher::ResearcherHandle,
    nodes: &[String],
    window: usize,
) -> f64 {
    let started = Instant::now();
    let rounds = futures::stream::iter(0..ROUNDS)
        .map(|i| {
            handle.addr.send(Request {
                node_id: nodes[i % nodes.len()].clone(),
                message: ping(handle),
                timeout: T,
            })
        })
        .buffer_unordered(window)
        .collect::<Vec<_>>();
    for r in bounded("rounds", rounds).await {
        r.unwrap().unwrap();
    }
    let rate = ROUNDS as f64 / started.elapsed().as_secs_f64();
    assert_eq!(
        bounded("count", handle.addr.send(PendingCount))
            .await
            .unwrap(),
        0
    );
    rate
}

async fn unary(nodes: usize) {
    let (handle, mut events) = start(config()).await;
    let client = client(&handle).await;
    let ids: Vec<String> = (0..nodes).map(|i| format!("NODE_u{i}")).collect();
    let mut workers = Vec::new();
    for id in &ids {
        workers.push(spawn_ping_node(&client, id));
        events.connected(id).await;
    }
    let rate = drive(&handle, &ids, 4 * nodes).await;
    println!("unary GetTaskUnary, {nodes} node(s): {rate:.0} round trips/s");
    for w in workers {
        w.abort();
    }
}

#[actix_rt::test]
#[ignore]
async fn unary_round_trips_one_node() {
    unary(1).await;
}

#[actix_rt::test]
#[ignore]
async fn unary_round_trips_four_nodes() {
    unary(4).await;
}

/// A node in streaming mode: `window` credits outstanding, one long
/// ReplyTask stream for all its replies.
fn spawn_streaming_node(client: &Client, node: &str, window: usize) -> tokio::task::JoinHandle<()> {
    let mut client = client.clone();
    let node = node.to_string();
    tokio::spawn(async move {
        let (credit_tx, credit_rx) = mpsc::channel(window + 1);
        for _ in 0..window {
            credit_tx.send(task_request(&node)).await.unwrap();
        }
        let mut tasks = client
            .get_task(ReceiverStream::new(credit_rx))
            .await
            .unwrap()
            .into_inner();
        let (reply_tx, reply_rx) = mpsc::channel(window + 1);
        let mut reply_client = client.clone();
        let replies =
            tokio::spawn(
                async move { reply_client.reply_task(ReceiverStream::new(reply_rx)).await },
            );
        while let Ok(Some(frame)) = tasks.message().await {
            // Pings are one frame each.
            let task = Envelope::decode(frame.bytes).unwrap();
            for f in frames(pong(&task, &node).to_bytes()) {
                if reply_tx.send(f).await.is_err() {
                    return;
                }
            }
            if credit_tx.send(task_request(&node)).await.is_err() {
                return;
            }
        }
        drop(reply_tx);
        let _ = replies.await;
    })
}

#[actix_rt::test]
#[ignore]
async fn streaming_round_trips_one_node() {
    let (handle, mut events) = start(config()).await;
    let client = client(&handle).await;
    let ids = vec!["NODE_s0".to_string()];
    let worker = spawn_streaming_node(&client, &ids[0], 64);
    events.connected(&ids[0]).await;
    // Warm-up, then measure.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {}).await;
    let rate = drive(&handle, &ids, 64).await;
    println!("streaming GetTask, 1 node, window 64: {rate:.0} round trips/s");
    worker.abort();
}
