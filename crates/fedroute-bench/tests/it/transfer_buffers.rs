//! Large messages end to end, a real researcher and node over TLS on
//! 127.0.0.1: the model's bytes are not copied to be sent (the researcher's
//! request and the node's echoed reply are cut into frames that are slices
//! of the model's own buffer), and each side reassembles into one buffer
//! that grows as the frames arrive, kept for the next message while it fits
//! `receive_buffer_bytes` (default 256 MiB).
//!
//! Checked with a counting allocator: the only allocations of at least
//! [`LARGE`] bytes are the reassembly buffer's growth steps (for 9 frames of
//! 4 MB: 16, 32 and 36 MB; smaller steps are under [`LARGE`]), three per side
//! per message, and none at all from the second message on when buffers are
//! kept.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fedroute::node::{PollMode, Status};
use fedroute_bench::rig::{BenchNodeHandle, BenchResearcher, TrainReplySize};

struct Counting;

static LARGE_ALLOCS: AtomicUsize = AtomicUsize::new(0);

/// Well above a frame (4 MB) and the buffers tonic, h2 and rustls use per
/// frame, well below a reassembly buffer of [`MODEL`].
const LARGE: usize = 12 << 20;
/// The model sent down and echoed back: 9 frames.
const MODEL: usize = 32 << 20;
/// Bound on each awaited step.
const STEP: Duration = Duration::from_secs(60);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.size() >= LARGE {
            LARGE_ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new >= LARGE {
            LARGE_ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Large allocations during three echoes of [`MODEL`] bytes, per round,
/// researcher and node keeping `receive_buffer_bytes` of buffers.
async fn echo_rounds(receive_buffer_bytes: usize) -> Vec<usize> {
    let researcher = BenchResearcher::start_buffers(receive_buffer_bytes)
        .await
        .unwrap();
    let node_id = format!("NODE_buffers_{receive_buffer_bytes}");
    let node = BenchNodeHandle::start_tracked(
        node_id.clone(),
        researcher.endpoint(),
        PollMode::Streaming,
        Bytes::new(),
        None,
        receive_buffer_bytes,
    )
    .await
    .unwrap();
    let mut researcher = researcher;
    researcher
        .wait_connected(std::slice::from_ref(&node_id), STEP)
        .await
        .unwrap();
    let model = Bytes::from(vec![0x5au8; MODEL]);
    let mut per_round = Vec::new();
    for _ in 0..3 {
        // The node's reply shares the request's buffer until the researcher
        // acknowledged it; only then can the buffer take the next request.
        let deadline = Instant::now() + STEP;
        loop {
            let status = node.controller.send(Status).await.unwrap();
            if status.iter().all(|s| s.queue_depth == 0) {
                break;
            }
            assert!(Instant::now() < deadline, "the node's reply stays queued");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let before = LARGE_ALLOCS.load(Ordering::SeqCst);
        researcher
            .train_within(&node_id, &model, MODEL, TrainReplySize::Echo, STEP)
            .await
            .unwrap();
        per_round.push(LARGE_ALLOCS.load(Ordering::SeqCst) - before);
    }
    node.shutdown().await;
    researcher.handle.shutdown().await.unwrap();
    per_round
}

/// One test function: the counter is global, so the two set-ups run in turn.
#[actix_rt::test]
async fn models_are_sent_without_copies_and_received_into_kept_buffers() {
    // Without kept buffers: a reassembly buffer per side per message, in
    // three large growth steps, and nothing else of the model's size (no
    // encoding copy on either side).
    assert_eq!(echo_rounds(0).await, [6, 6, 6]);
    // Kept buffers too small for the model: as without.
    assert_eq!(echo_rounds(MODEL / 2).await, [6, 6, 6]);
    // With the default: the first message grows a buffer per side, the
    // next ones reuse them.
    assert_eq!(
        echo_rounds(fedroute::config::ReceiveLimits::DEFAULT_BUFFER_BYTES).await,
        [6, 0, 0]
    );
}
