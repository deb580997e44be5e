//! Chunking then reassembling gives the payload back, for every size that
//! matters: 0 bytes, 1 byte, exact multiples of CHUNK_SIZE and one byte either
//! side, and random sizes up to about three frames.

use std::sync::OnceLock;

use bytes::Bytes;
use fedroute::wire::{Frame, Reassembler, CHUNK_SIZE};
use proptest::prelude::*;

const MAX_LEN: usize = 3 * CHUNK_SIZE + 1;

/// One patterned buffer; payloads are cheap slices of it.
fn pattern() -> &'static Bytes {
    static P: OnceLock<Bytes> = OnceLock::new();
    P.get_or_init(|| Bytes::from((0..MAX_LEN).map(|i| (i % 251) as u8).collect::<Vec<u8>>()))
}

fn payload(len: usize, offset: usize) -> Bytes {
    let offset = offset.min(MAX_LEN - len);
    pattern().slice(offset..offset + len)
}

fn reassemble(payload: &Bytes, frames: impl Iterator<Item = fedroute::wire::Frame>) -> Bytes {
    let mut r = Reassembler::default();
    let mut out = None;
    for f in frames {
        assert!(out.is_none(), "a frame after the message completed");
        out = r.push(f.size, f.iteration, f.bytes).unwrap();
    }
    assert!(!r.in_progress());
    let out = out.expect("the last frame completes the message");
    assert_eq!(out.len(), payload.len());
    out
}

fn check(len: usize, offset: usize) {
    let p = payload(len, offset);
    let frames = Frame::split(p.clone());
    assert_eq!(frames.len(), Frame::count_for(len));
    assert_eq!(frames.len(), len.div_ceil(CHUNK_SIZE).max(1));
    let collected: Vec<_> = frames.collect();
    for (i, f) in collected.iter().enumerate() {
        assert_eq!(f.iteration as usize, i + 1);
        assert_eq!(f.size as usize, collected.len());
        assert!(f.bytes.len() <= CHUNK_SIZE);
        if i + 1 < collected.len() {
            assert_eq!(f.bytes.len(), CHUNK_SIZE);
        }
    }
    let out = reassemble(&p, collected.into_iter());
    assert!(out == p, "payload of {len} bytes changed");
    if Frame::count_for(len) == 1 {
        assert_eq!(
            out.as_ptr(),
            p.as_ptr(),
            "a one-frame message is not copied"
        );
    }
}

#[test]
fn boundary_sizes_round_trip() {
    for len in [
        0,
        1,
        2,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        2 * CHUNK_SIZE - 1,
        2 * CHUNK_SIZE,
        2 * CHUNK_SIZE + 1,
        3 * CHUNK_SIZE - 1,
        3 * CHUNK_SIZE,
        3 * CHUNK_SIZE + 1,
    ] {
        check(len, 7);
    }
}

#[test]
fn one_byte_chunks_round_trip() {
    // Fed-BioMed accepts replies cut into 1-byte chunks.
    let p = payload(300, 0);
    let out = reassemble(&p, Frame::split_by(p.clone(), 1));
    assert_eq!(out, p);
}

fn interesting_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1usize),
        (1usize..=3, -1i64..=1)
            .prop_map(|(k, d)| (k * CHUNK_SIZE) as i64 + d)
            .prop_map(|l| l as usize),
        0usize..=MAX_LEN,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn chunk_then_reassemble_gives_the_input_back(len in interesting_len(), offset in 0usize..1000) {
        check(len, offset);
    }

    #[test]
    fn any_chunk_size_round_trips(len in 0usize..5000, chunk in 1usize..600, offset in 0usize..1000) {
        let p = payload(len, offset);
        let out = reassemble(&p, Frame::split_by(p.clone(), chunk));
        prop_assert_eq!(out, p);
    }
}
