//! Property tests of the msgpack codec: any value tree survives encode then
//! decode, and arbitrary bytes never make the decoder panic.

use bytes::Bytes;
use fedroute::wire::{decode_value, encode_to_bytes, encoded_len, Envelope, Value};
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_value_round_trips(v in tree()) {
        let bytes = encode_to_bytes(&v);
        prop_assert_eq!(bytes.len(), encoded_len(&v));
        let back = decode_value(&bytes).unwrap();
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(encode_to_bytes(&back), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let b = Bytes::from(bytes);
        let _ = decode_value(&b);
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
