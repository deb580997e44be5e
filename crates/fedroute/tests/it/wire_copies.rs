//! The payload bytes are copied at most once per side, checked with a
//! counting allocator: the shared-piece encoding (`Envelope::to_payload`,
//! what the researcher and the node send) copies nothing of the model and
//! its frames are slices of the model except the two that straddle its
//! edges; the contiguous encoding (`to_bytes`) allocates the wire buffer
//! once at its final size and chunking it allocates nothing; reassembly
//! grows the message buffer as frames arrive (doubling, up to the claimed
//! size: never more than twice what arrived), and decoding (envelope and typed)
//! allocates only small bookkeeping; the decoded ndarray points into the
//! reassembled buffer.

use bytes::{Bytes, BytesMut};
use fedroute::wire::{
    BufferPool, Envelope, Frame, NdArray, Reassembler, TrainRequest, Value, CHUNK_SIZE,
};

/// (result, bytes allocated, large allocations) of `f` on this thread.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let (out, seen) = fedroute_testkit::alloc::measure(f);
    (out, seen.bytes, seen.large)
}

const SMALL: usize = 64 * 1024;

fn within(range: &Bytes, ptr: *const u8) -> bool {
    let start = range.as_ptr() as usize;
    (start..start + range.len()).contains(&(ptr as usize))
}

/// One test function; the counters are per thread ([`fedroute_testkit::alloc`]).
#[test]
fn payload_bytes_are_copied_at_most_once_per_side() {
    for len in [CHUNK_SIZE / 2, 10 * 1024 * 1024] {
        let data = Bytes::from(vec![7u8; len]);
        let params = Value::map([("w", NdArray::u8(data.clone()).to_value())]);
        let req = TrainRequest::new("R", "exp", "ds", params);

        // sending side
        let (env, bytes, large) = measure(|| Envelope::from_typed(&req).unwrap());
        assert!(
            bytes < SMALL && large == 0,
            "from_typed allocated {bytes} bytes"
        );
        let (pieces, bytes, large) = measure(|| env.to_payload());
        assert!(
            bytes < SMALL && large == 0,
            "the shared-piece encoding allocated {bytes} bytes"
        );
        let (piece_frames, bytes, large) =
            measure(|| Frame::split(pieces.clone()).collect::<Vec<_>>());
        assert!(
            bytes < 2 * CHUNK_SIZE + SMALL && large <= 2,
            "chunking the pieces allocated {bytes} bytes in {large} large blocks"
        );
        if piece_frames.len() > 2 {
            let interior = &piece_frames[1..piece_frames.len() - 1];
            assert!(
                interior.iter().all(|f| within(&data, f.bytes.as_ptr())),
                "the frames inside the model are slices of it"
            );
        }
        let joined: Vec<u8> = piece_frames
            .iter()
            .flat_map(|f| f.bytes.iter().copied())
            .collect();

        let (wire, bytes, large) = measure(|| env.to_bytes());
        assert_eq!(joined, wire, "both encodings give the same bytes");
        assert!(
            bytes < len + SMALL && large == 1,
            "encoding allocated {bytes} bytes in {large} large blocks"
        );
        let (frames, bytes, large) = measure(|| Frame::split(wire.clone()).collect::<Vec<_>>());
        assert!(
            bytes < SMALL && large == 0,
            "chunking allocated {bytes} bytes"
        );
        // every frame is a slice of the one wire buffer
        assert!(frames.iter().all(|f| within(&wire, f.bytes.as_ptr())));

        // receiving side
        let frame_total = frames.len() * CHUNK_SIZE;
        let (payload, bytes, large) = measure(|| {
            let mut r = Reassembler::default();
            let mut out = None;
            for f in frames {
                out = r.push(f.size, f.iteration, f.bytes).unwrap();
            }
            out.unwrap()
        });
        if len > CHUNK_SIZE {
            // 3 frames: the buffer grows from one frame to two, then to the
            // upper bound the first frame gives (size x frame length).
            assert!(
                bytes < 6 * CHUNK_SIZE + SMALL && large == 3,
                "reassembly allocated {bytes} bytes in {large} large blocks"
            );
            assert_eq!(frame_total, 3 * CHUNK_SIZE);
        } else {
            assert_eq!(
                payload.as_ptr(),
                wire.as_ptr(),
                "a one-frame message is not copied"
            );
            assert!(bytes < SMALL && large == 0);
        }
        assert_eq!(payload, wire);
        let (typed, bytes, large) = measure(|| {
            let env = Envelope::decode(payload.clone()).unwrap();
            env.to_typed::<TrainRequest>().unwrap()
        });
        assert!(
            bytes < SMALL && large == 0,
            "decoding allocated {bytes} bytes"
        );
        let arr = NdArray::from_value(typed.params.get("w").unwrap()).unwrap();
        assert_eq!(arr.data.len(), len);
        assert!(
            within(&payload, arr.data.as_ptr()),
            "the ndarray is a slice of the reassembled buffer"
        );
    }

    // Long-lived sender and receiver: from the second message on, neither
    // side allocates a large buffer (the payload is still copied once per side).
    let len = 10 * 1024 * 1024;
    let params = Value::map([("w", NdArray::u8(Bytes::from(vec![1u8; len])).to_value())]);
    let env = Envelope::from_typed(&TrainRequest::new("R", "e", "d", params)).unwrap();
    let mut send_buf = BytesMut::new();
    let mut r = Reassembler::default().with_pool(BufferPool::new(2 * len));
    for round in 0..3 {
        let ((), bytes, large) = measure(|| {
            let frames: Vec<_> = Frame::split(env.to_bytes_in(&mut send_buf)).collect();
            let mut out = None;
            for f in frames {
                out = r.push(f.size, f.iteration, f.bytes).unwrap();
            }
            let msg = Envelope::decode(out.unwrap()).unwrap();
            assert_eq!(msg.to_typed::<TrainRequest>().unwrap().researcher_id, "R");
        });
        if round > 0 {
            assert!(
                large == 0 && bytes < SMALL,
                "round {round}: {bytes} bytes in {large} large blocks"
            );
        }
    }
}
