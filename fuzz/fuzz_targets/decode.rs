//! Fuzzes the msgpack decoder (`wire::decode_value`) and the message decoder
//! (`wire::Envelope::decode`), then everything a receiver does with a decoded
//! message: accessors, version check, typed conversion.
//!
//! Oracles: no panic; a decoded value re-encodes to bytes that decode to the
//! same encoding (encode is a fixed point after one round); an unmodified
//! envelope gives back exactly its input bytes.
#![no_main]

use bytes::Bytes;
use fedroute::wire::{
    decode_value, encode_to_bytes, ApprovalReply, ApprovalRequest, Envelope, ErrorMessage,
    ListReply, ListRequest, NdArray, OverlayMessage, PingReply, PingRequest, SearchReply,
    SearchRequest, TrainReply, TrainRequest,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = Bytes::copy_from_slice(data);
    if let Ok(v) = decode_value(&raw) {
        let once = encode_to_bytes(&v);
        let again = decode_value(&once).expect("an encoding of a decoded value must decode");
        let twice = encode_to_bytes(&again);
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
