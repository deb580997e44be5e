//! Property tests of the msgpack codec: any value tree survives encode then
//! decode, arbitrary bytes never make the decoder panic, and the shared-piece
//! encoding (`encode_payload`) and its frames give exactly the contiguous
//! encoding's bytes.

use bytes::Bytes;
use fedroute::wire::{Envelope, Frame, Payload, Reassembler, Value};
use proptest::prelude::*;

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Bool),
        (i64::MIN..0i64).prop_map(Value::Int),
        any::<u64>().prop_map(Value::UInt),
        any::<f32>()
            .prop_filter("NaN != NaN", |f| !f.is_nan())
            .prop_map(Value::F32),
        any::<f64>()
            .prop_filter("NaN != NaN", |f| !f.is_nan())
            .prop_map(Value::F64),
        ".{0,40}".prop_map(Value::Str),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|v| Value::Bin(Bytes::from(v))),
        (any::<i8>(), prop::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(t, v)| Value::Ext(t, Bytes::from(v))),
    ]
}

fn tree() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 20, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..20).prop_map(Value::Array),
            prop::collection::vec((inner.clone(), inner), 0..20).prop_map(Value::Map),
        ]
    })
}

/// A `bin` or `ext` around the sharing threshold (patterned bytes).
fn large_leaf() -> impl Strategy<Value = Value> {
    (
        any::<bool>(),
        any::<i8>(),
        Payload::SHARED_MIN_BYTES - 2..Payload::SHARED_MIN_BYTES + 70_000,
        any::<u8>(),
    )
        .prop_map(|(bin, tag, n, seed)| {
            let data: Bytes = (0..n).map(|i| (i as u8).wrapping_mul(seed)).collect();
            if bin {
                Value::Bin(data)
            } else {
                Value::Ext(tag, data)
            }
        })
}

/// Trees mixing small leaves and a few large ones.
fn tree_with_large() -> impl Strategy<Value = Value> {
    prop_oneof![4 => leaf(), 1 => large_leaf()].prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((inner.clone(), inner), 0..6).prop_map(Value::Map),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn shared_pieces_give_the_contiguous_bytes(v in tree_with_large(), chunk in 1_000usize..100_000) {
        let contiguous = v.to_bytes();
        let payload = v.to_payload();
        prop_assert_eq!(payload.len(), contiguous.len());
        prop_assert_eq!(payload.to_bytes(), contiguous.clone());
        let mut r = Reassembler::default();
        let mut out = None;
        for f in Frame::split_by(payload, chunk) {
            prop_assert!(out.is_none());
            out = r.push(f.size, f.iteration, f.bytes).unwrap();
        }
        prop_assert_eq!(out.unwrap(), contiguous);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_value_round_trips(v in tree()) {
        let bytes = v.to_bytes();
        prop_assert_eq!(bytes.len(), v.encoded_len());
        let back = Value::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(back.to_bytes(), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let b = Bytes::from(bytes);
        let _ = Value::decode(&b);
        let _ = Envelope::decode(b);
    }

    #[test]
    fn corrupted_messages_never_panic(pos in 0usize..483, byte in any::<u8>()) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/07_request_TrainRequest.msgpack");
        let mut raw = std::fs::read(path).unwrap();
        raw[pos] = byte;
        if let Ok(env) = Envelope::decode(Bytes::from(raw)) {
            let _ = env.check_version();
            let _ = env.to_typed::<fedroute::wire::TrainRequest>();
        }
    }
}
