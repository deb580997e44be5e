//! Fuzzes the msgpack decoder (`wire::Value::decode`) and the message decoder
//! (`wire::Envelope::decode`), then everything a receiver does with a decoded
//! message: accessors, version check, typed conversion.
//!
//! Oracles: no panic; decoding allocates no more than the decode limits'
//! tree budget for the input's size (a counting allocator); a decoded
//! value re-encodes to bytes that decode to the same encoding (encode is a
//! fixed point after one round); an unmodified envelope gives back exactly
//! its input bytes.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use fedroute::wire::{DecodeLimits, ApprovalReply, ApprovalRequest, Envelope, ErrorMessage, ListReply, ListRequest, NdArray, OverlayMessage, PingReply, PingRequest, SearchReply, SearchRequest, TrainReply, TrainRequest, Value};
use libfuzzer_sys::fuzz_target;

struct Counting;
static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = NOW.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        NOW.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Decoding may allocate this much besides the tree (errors, bookkeeping).
const OVERHEAD: usize = 16 << 10;

fuzz_target!(|data: &[u8]| {
    let raw = Bytes::copy_from_slice(data);
    let start = NOW.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let decoded = Value::decode(&raw);
    let peak = PEAK.load(Ordering::Relaxed) - start;
    let budget = DecodeLimits::default().tree_budget(raw.len());
    assert!(
        peak <= budget + OVERHEAD,
        "decoding {} bytes allocated {peak}, more than the budget {budget}",
        raw.len()
    );
    if let Ok(v) = decoded {
        let once = v.to_bytes();
        let again = Value::decode(&once).expect("an encoding of a decoded value must decode");
        let twice = again.to_bytes();
        assert_eq!(once, twice, "encoding is not stable");
        let _ = NdArray::from_value(&v);
    }
    let Ok(env) = Envelope::decode(raw.clone()) else {
        return;
    };
    assert_eq!(env.to_bytes(), raw, "unmodified envelope lost its bytes");
    let _ = env.class();
    let _ = env.protocol_version();
    let _ = env.researcher_id();
    let _ = env.request_id();
    let _ = env.node_id();
    let _ = env.dest_node_id();
    let _ = env.check_version();
    let _ = env.to_typed::<PingRequest>();
    let _ = env.to_typed::<PingReply>();
    let _ = env.to_typed::<ListRequest>();
    let _ = env.to_typed::<ListReply>();
    let _ = env.to_typed::<SearchRequest>();
    let _ = env.to_typed::<SearchReply>();
    let _ = env.to_typed::<ErrorMessage>();
    let _ = env.to_typed::<ApprovalRequest>();
    let _ = env.to_typed::<ApprovalReply>();
    let _ = env.to_typed::<TrainRequest>();
    let _ = env.to_typed::<TrainReply>();
    let _ = env.to_typed::<OverlayMessage>();
    let mut modified = env.clone();
    modified.set("node_id", fedroute::wire::Value::Str("NODE_fuzz".into()));
    let re = Envelope::decode(modified.to_bytes()).expect("a modified envelope must decode");
    assert_eq!(re.node_id(), Some("NODE_fuzz"));
});
