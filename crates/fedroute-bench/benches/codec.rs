//! Codec throughput: encode + chunk, and reassemble + decode, of a
//! TrainRequest carrying a 1 MiB and a 100 MiB ndarray.
//!
//! Run with `cargo bench --bench codec` (add `-- --quick` for a fast pass).
//! Throughput is reported in bytes of wire payload per second. Sending as
//! the researcher and the node do (`encode_chunk_shared`: `to_payload`, the
//! model's buffer shared, only the two frames at its edges joined) copies
//! almost nothing; the contiguous encoding (`encode_chunk`, `to_bytes`)
//! copies the payload once; the receiver copies it once, into a fresh buffer
//! (`reassemble_decode`) or a kept one (`reassemble_decode_reuse`, what
//! `receive_buffers` does). `tests/wire_copies.rs` checks the copies with a
//! counting allocator and pointer checks.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fedroute::wire::{
    BufferPool, Envelope, Frame, NdArray, Reassembler, TrainRequest, Value, CHUNK_SIZE,
};

fn train_request(len: usize) -> TrainRequest {
    let data = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let params = Value::map([("w", NdArray::u8(data).to_value())]);
    TrainRequest::new("RESEARCHER_bench", "exp", "ds", params)
}

fn encode_and_chunk(req: &TrainRequest) -> Vec<Frame> {
    let env = Envelope::from_typed(req).expect("a TrainRequest always encodes");
    Frame::split(env.to_bytes()).collect()
}

/// Encoding into shared pieces, as the researcher and the node send.
fn encode_and_chunk_shared(req: &TrainRequest) -> Vec<Frame> {
    let env = Envelope::from_typed(req).expect("a TrainRequest always encodes");
    Frame::split(env.to_payload()).collect()
}

/// Encoding into a buffer kept across messages.
fn encode_and_chunk_reusing(req: &TrainRequest, buf: &mut BytesMut) -> Vec<Frame> {
    let env = Envelope::from_typed(req).expect("a TrainRequest always encodes");
    Frame::split(env.to_bytes_in(buf)).collect()
}

fn reassemble_and_decode(frames: &[Frame]) -> usize {
    reassemble_and_decode_with(&mut Reassembler::default(), frames)
}

fn reassemble_and_decode_with(r: &mut Reassembler, frames: &[Frame]) -> usize {
    let mut payload = None;
    for f in frames {
        payload = r
            .push(f.size, f.iteration, f.bytes.clone())
            .expect("frames are well formed");
    }
    let env = Envelope::decode(payload.expect("last frame completes")).expect("decodes");
    let req: TrainRequest = env.to_typed().expect("typed");
    let arr = NdArray::from_value(req.params.get("w").expect("w")).expect("ndarray");
    arr.data.len()
}

fn codec(c: &mut Criterion) {
    for (name, len) in [("1MiB", 1 << 20), ("100MiB", 100 << 20)] {
        let req = train_request(len);
        let frames = encode_and_chunk(&req);
        let wire_len: usize = frames.iter().map(|f| f.bytes.len()).sum();
        assert!(frames.len() == wire_len.div_ceil(CHUNK_SIZE).max(1));

        let mut g = c.benchmark_group("codec");
        g.throughput(Throughput::Bytes(wire_len as u64));
        if len > 10 << 20 {
            g.sample_size(10);
        }
        g.bench_with_input(BenchmarkId::new("encode_chunk", name), &req, |b, req| {
            b.iter(|| black_box(encode_and_chunk(req)))
        });
        g.bench_with_input(
            BenchmarkId::new("encode_chunk_shared", name),
            &req,
            |b, req| b.iter(|| black_box(encode_and_chunk_shared(req))),
        );
        g.bench_with_input(
            BenchmarkId::new("reassemble_decode", name),
            &frames,
            |b, frames| b.iter(|| black_box(reassemble_and_decode(frames))),
        );
        // Long-lived sender / receiver keeping their buffers between messages.
        let mut buf = BytesMut::new();
        g.bench_with_input(
            BenchmarkId::new("encode_chunk_reuse", name),
            &req,
            |b, req| b.iter(|| black_box(encode_and_chunk_reusing(req, &mut buf))),
        );
        let mut r = Reassembler::default().with_pool(BufferPool::new(len * 2));
        g.bench_with_input(
            BenchmarkId::new("reassemble_decode_reuse", name),
            &frames,
            |b, frames| b.iter(|| black_box(reassemble_and_decode_with(&mut r, frames))),
        );
        // The floor both sides are measured against: one fresh allocation of
        // the wire size and one copy into it (what "copied once" costs here).
        let wire: Vec<u8> = frames
            .iter()
            .flat_map(|f| f.bytes.iter().copied())
            .collect();
        g.bench_with_input(
            BenchmarkId::new("baseline_alloc_copy", name),
            &wire,
            |b, wire| b.iter(|| black_box(Bytes::copy_from_slice(wire))),
        );
        // The same copy into a buffer reused across iterations (no page faults).
        let mut dst = vec![0u8; wire.len()];
        g.bench_with_input(
            BenchmarkId::new("baseline_copy_warm", name),
            &wire,
            |b, wire| {
                b.iter(|| {
                    dst.copy_from_slice(wire);
                    black_box(dst.as_ptr());
                })
            },
        );
        g.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
