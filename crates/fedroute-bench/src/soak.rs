//! The soak test (issue 7): 10 nodes (half unary, half streaming), requests
//! of random sizes (ping, or a `TrainRequest` echo of 0-2 MiB, one echo in
//! 20 a multi-frame model of 4-12 MiB), and the
//! researcher restarted at random moments (every 1-4 s, same port and
//! certificate), for a given time.
//!
//! Counts:
//! - `sent`: requests the researcher accepted (`Request` queued);
//! - `delivered`: requests answered with their reply;
//! - `duplicates`: tasks the node handlers saw more than once (same
//!   `request_id`), i.e. duplicates delivered to the application;
//! - `lost`: requests that neither got their reply nor an explicit error
//!   within the request timeout (a silent loss);
//! - requests failed explicitly by a restart (`ShuttingDown`, reported to
//!   the caller, not lost silently) are counted apart, in `failed_by_restart`.
//!
//! Connection cuts by a proxy are not part of this soak yet.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use rand::Rng;

use super::rig::{BenchNodeHandle, BenchResearcher, TrainReplySize, CONNECT_TIMEOUT};
use super::{BenchError, SoakReport};
use fedroute::node::PollMode;
use fedroute::researcher::ResearcherError;

const NODES: usize = 10;
const MAX_PAYLOAD: usize = 2 << 20;
/// Sizes of the occasional multi-frame models (frames are about 4 MB).
const LARGE_PAYLOAD: std::ops::RangeInclusive<usize> = (4 << 20)..=(12 << 20);
/// Share of echoes that carry a multi-frame model.
const LARGE_SHARE: f64 = 0.05;
const SOAK_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Counts {
    sent: u64,
    delivered: u64,
    lost: u64,
    failed_by_restart: u64,
}

/// Request ids each node's handler has seen, shared with the handlers.
pub type SeenIds = Arc<Mutex<(HashSet<String>, u64)>>;

/// Runs the soak for `duration`; the counts are returned whatever they are
/// ([`super::run`] turns losses or duplicates into an error).
pub async fn soak(duration: Duration) -> Result<SoakReport, BenchError> {
    let started = Instant::now();
    let blob = Bytes::from(vec![0x3cu8; *LARGE_PAYLOAD.end()]);
    let mut researcher = BenchResearcher::start().await?;
    let endpoint = researcher.endpoint();
    let seen: SeenIds = Arc::new(Mutex::new((HashSet::new(), 0)));
    let mut nodes = Vec::new();
    let mut ids = Vec::new();
    for i in 0..NODES {
        let mode = if i % 2 == 0 {
            PollMode::Unary
        } else {
            PollMode::Streaming
        };
        let id = format!("NODE_soak_{i:02}_{mode}");
        nodes.push(
            BenchNodeHandle::start_tracked(
                id.clone(),
                endpoint.clone(),
                mode,
                blob.clone(),
                Some(seen.clone()),
                fedroute::config::ReceiveLimits::DEFAULT_BUFFER_BYTES,
            )
            .await?,
        );
        ids.push(id);
    }
    researcher.wait_connected(&ids, CONNECT_TIMEOUT).await?;

    let current = Rc::new(RefCell::new(Rc::new(researcher)));
    let counts = Rc::new(RefCell::new(Counts::default()));
    let stop_at = tokio::time::Instant::now() + duration;
    let mut restarts = 0u64;

    let restarting = Rc::new(std::cell::Cell::new(false));
    let workers = ids.iter().map(|id| {
        let restarting = restarting.clone();
        let current = current.clone();
        let counts = counts.clone();
        let blob = blob.clone();
        async move {
            while tokio::time::Instant::now() < stop_at {
                if restarting.get() {
                    // No new requests to a researcher being shut down.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let r = current.borrow().clone();
                let (down, reply) = {
                    let mut rng = rand::rng();
                    if rng.random_bool(0.5) {
                        (0, None)
                    } else {
                        let size = if rng.random_bool(LARGE_SHARE) {
                            rng.random_range(LARGE_PAYLOAD)
                        } else {
                            rng.random_range(0..=MAX_PAYLOAD)
                        };
                        (size, Some(TrainReplySize::Echo))
                    }
                };
                let result = match reply {
                    None => r.ping_within(id, SOAK_REQUEST_TIMEOUT).await,
                    Some(reply) => {
                        r.train_within(id, &blob, down, reply, SOAK_REQUEST_TIMEOUT)
                            .await
                    }
                };
                let mut c = counts.borrow_mut();
                match result {
                    Ok(_) => {
                        c.sent += 1;
                        c.delivered += 1;
                    }
                    Err(BenchError::Researcher(ResearcherError::NodeUnknown { .. })) => {
                        // Not sent: the node has not polled the new researcher yet.
                        drop(c);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(BenchError::Researcher(ResearcherError::ShuttingDown))
                    | Err(BenchError::Mailbox(_)) => {
                        c.sent += 1;
                        c.failed_by_restart += 1;
                    }
                    Err(BenchError::Researcher(ResearcherError::Timeout { .. })) => {
                        c.sent += 1;
                        c.lost += 1;
                    }
                    Err(e) => {
                        log::warn!("soak: request failed: {}", fedroute::ErrorChain(&e));
                        c.sent += 1;
                        c.failed_by_restart += 1;
                    }
                }
            }
        }
    });
    let restarter = async {
        loop {
            let wait = Duration::from_millis(rand::rng().random_range(1_000..4_000));
            if tokio::time::Instant::now() + wait >= stop_at {
                break;
            }
            tokio::time::sleep(wait).await;
            restarting.set(true);
            let old = current.borrow().clone();
            let restarted = old.restart_shared().await;
            restarting.set(false);
            let (r, _) = restarted?;
            *current.borrow_mut() = Rc::new(r);
            restarts += 1;
        }
        Ok::<(), BenchError>(())
    };
    let (_, restarted) = futures::join!(join_all(workers), restarter);
    restarted?;
    for n in &nodes {
        n.shutdown().await;
    }
    let r = current.borrow().clone();
    r.handle.shutdown().await?;
    let c = counts.borrow();
    let duplicates = seen
        .lock()
        .map(|s| s.1)
        .unwrap_or_else(|p| p.into_inner().1);
    Ok(SoakReport {
        seconds: started.elapsed().as_secs_f64(),
        sent: c.sent,
        delivered: c.delivered,
        duplicates,
        lost: c.lost,
        restarts,
        failed_by_restart: c.failed_by_restart,
    })
}
