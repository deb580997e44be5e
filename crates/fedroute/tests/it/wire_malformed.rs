//! Malformed input: every violation is its own error value, never a panic.

use bytes::Bytes;
use fedroute::wire::{
    DecodeLimits, Envelope, FrameProblem, PingRequest, Reassembler, TrainRequest, Value, WireError,
};

fn fixture(name: &str) -> Bytes {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    Bytes::from(std::fs::read(p).unwrap())
}

fn decode(bytes: &[u8]) -> Result<Value, WireError> {
    Value::decode(&Bytes::copy_from_slice(bytes))
}

#[test]
fn every_truncation_of_a_message_is_a_truncated_error() {
    let raw = fixture("07_request_TrainRequest.msgpack");
    for len in 0..raw.len() {
        let r = Value::decode(&raw.slice(..len));
        assert!(
            matches!(r, Err(WireError::Truncated { .. })),
            "prefix {len}: {r:?}"
        );
        assert!(matches!(
            Envelope::decode(raw.slice(..len)),
            Err(WireError::Truncated { .. })
        ));
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut raw = fixture("01_request_PingRequest.msgpack").to_vec();
    raw.push(0xc0);
    assert!(matches!(
        decode(&raw),
        Err(WireError::TrailingBytes {
            trailing: 1,
            offset: 200
        })
    ));
}

#[test]
fn reserved_marker_and_bad_utf8_are_refused() {
    assert!(matches!(
        decode(&[0x91, 0xc1]),
        Err(WireError::ReservedMarker {
            byte: 0xc1,
            offset: 1
        })
    ));
    assert!(matches!(
        decode(&[0xa2, 0xff, 0xfe]),
        Err(WireError::InvalidUtf8 { offset: 1, len: 2 })
    ));
}

#[test]
fn deep_nesting_is_refused_by_the_depth_limit() {
    // a million nested arrays: refused at the limit, no stack overflow
    let deep = vec![0x91u8; 1_000_000];
    assert!(matches!(
        decode(&deep),
        Err(WireError::TooDeep {
            limit: DecodeLimits::DEFAULT_MAX_DEPTH,
            ..
        })
    ));
    let mut maps = Vec::new();
    for _ in 0..10_000 {
        maps.extend_from_slice(&[0x81, 0xa1, b'k']);
    }
    assert!(matches!(decode(&maps), Err(WireError::TooDeep { .. })));
    // just under the limit is fine
    let mut ok = vec![0x91u8; DecodeLimits::DEFAULT_MAX_DEPTH - 1];
    ok.push(0xc0);
    assert!(decode(&ok).is_ok());
}

#[test]
fn huge_length_claims_do_not_allocate() {
    // array32 / map32 / bin32 / str32 claiming 4 G items with no data behind them
    for marker in [0xdd, 0xdf, 0xc6, 0xdb, 0xc9] {
        let r = decode(&[marker, 0xff, 0xff, 0xff, 0xff]);
        assert!(
            matches!(r, Err(WireError::Truncated { .. })),
            "{marker:#x}: {r:?}"
        );
    }
}

#[test]
fn a_message_must_be_a_map_with_a_type_message_class() {
    let enc = |v: &Value| Value::to_bytes(v);
    assert!(matches!(
        Envelope::decode(enc(&Value::Array(vec![]))),
        Err(WireError::NotAMap { found: "array" })
    ));
    let no_type = Value::map([("protocol_version", Value::from("7"))]);
    assert!(matches!(
        Envelope::decode(enc(&no_type)),
        Err(WireError::MissingTypeMessage)
    ));
    let bad_type = Value::map([("__type_message__", Value::from("PingRequest"))]);
    assert!(matches!(
        Envelope::decode(enc(&bad_type)),
        Err(WireError::BadTypeMessage { .. })
    ));
    let no_class = Value::map([(
        "__type_message__",
        Value::map([("module", Value::from("m"))]),
    )]);
    assert!(matches!(
        Envelope::decode(enc(&no_class)),
        Err(WireError::BadTypeMessage { .. })
    ));
    let int_class = Value::map([("__type_message__", Value::map([("class", Value::UInt(3))]))]);
    assert!(matches!(
        Envelope::decode(enc(&int_class)),
        Err(WireError::BadTypeMessage { .. })
    ));
}

#[test]
fn wrong_value_types_name_the_field() {
    let mut env =
        Envelope::from_typed(&TrainRequest::new("R", "e", "d", Value::Map(vec![]))).unwrap();
    env.set("round", Value::from("three"));
    let r = env.to_typed::<TrainRequest>();
    assert!(
        matches!(r, Err(WireError::WrongType { ref field, ref expected, ref found }) if field == "round" && expected == "u64" && found.contains("three")),
        "{r:?}"
    );
    let mut env = Envelope::from_typed(&PingRequest::new("R")).unwrap();
    env.set("researcher_id", Value::UInt(5));
    assert!(
        matches!(env.to_typed::<PingRequest>(), Err(WireError::WrongType { ref field, .. }) if field == "researcher_id")
    );
}

#[test]
fn bad_protocol_versions_are_refused_with_both_versions() {
    let mut env = Envelope::from_typed(&PingRequest::new("R")).unwrap();
    for v in ["8", "7.1", "7.0.1", "6"] {
        env.set("protocol_version", Value::from(v));
        let r = env.check_version();
        assert!(
            matches!(r, Err(WireError::IncompatibleVersion { ref theirs, ref ours }) if theirs == v && ours == "7"),
            "{v}: {r:?}"
        );
    }
    env.set("protocol_version", Value::from("seven"));
    assert!(matches!(
        env.check_version(),
        Err(WireError::UnparsableVersion { .. })
    ));
    env.set("protocol_version", Value::UInt(7));
    assert!(matches!(
        env.check_version(),
        Err(WireError::MissingProtocolVersion { .. })
    ));
    env.set("protocol_version", Value::from("7.0"));
    assert!(env.check_version().is_ok());
}

#[test]
fn frame_violations_are_specific_errors() {
    let x = || Bytes::from_static(b"x");
    let mut r = Reassembler::default();
    assert!(matches!(
        r.push(0, 1, x()),
        Err(WireError::BadFrame {
            size: 0,
            iteration: 1,
            problem: FrameProblem::SizeNotPositive
        })
    ));
    assert!(matches!(
        r.push(-1, 1, x()),
        Err(WireError::BadFrame {
            size: -1,
            problem: FrameProblem::SizeNotPositive,
            ..
        })
    ));
    assert!(matches!(
        r.push(3, 2, x()),
        Err(WireError::BadFrame {
            iteration: 2,
            problem: FrameProblem::OutOfOrder { expected: 1 },
            ..
        })
    ));
    assert!(matches!(
        r.push(3, 4, x()),
        Err(WireError::BadFrame {
            iteration: 4,
            size: 3,
            problem: FrameProblem::IterationOutOfRange
        })
    ));

    r.push(3, 1, x()).unwrap();
    r.push(3, 2, x()).unwrap();
    assert!(matches!(
        r.push(3, 2, x()),
        Err(WireError::BadFrame {
            iteration: 2,
            problem: FrameProblem::Repeated { expected: 3 },
            ..
        })
    ));
    assert!(!r.in_progress(), "an error resets the reassembler");

    r.push(5, 1, x()).unwrap();
    assert!(matches!(
        r.push(5, 3, x()),
        Err(WireError::BadFrame {
            iteration: 3,
            problem: FrameProblem::Missing { expected: 2 },
            ..
        })
    ));

    r.push(5, 1, x()).unwrap();
    r.push(5, 2, x()).unwrap();
    r.push(5, 3, x()).unwrap();
    assert!(matches!(
        r.push(5, 2, x()),
        Err(WireError::BadFrame {
            iteration: 2,
            problem: FrameProblem::OutOfOrder { expected: 4 },
            ..
        })
    ));

    r.push(3, 1, x()).unwrap();
    assert!(matches!(
        r.push(4, 2, x()),
        Err(WireError::BadFrame {
            size: 4,
            iteration: 2,
            problem: FrameProblem::SizeChanged { expected: 3 }
        })
    ));

    r.push(3, 1, x()).unwrap();
    r.push(3, 2, x()).unwrap();
    assert!(matches!(
        r.push(1, 1, x()),
        Err(WireError::BadFrame {
            problem: FrameProblem::PreviousIncomplete {
                received: 2,
                previous_size: 3
            },
            ..
        })
    ));

    r.push(2, 1, x()).unwrap();
    assert!(matches!(
        r.finish(),
        Err(WireError::StreamEndedMidMessage {
            received: 1,
            size: 2
        })
    ));

    // after every error, a good message still goes through
    assert_eq!(r.push(1, 1, x()).unwrap(), Some(x()));
}

#[test]
fn oversize_messages_are_refused_before_allocation() {
    let mut r = Reassembler::new(1000);
    let frame = Bytes::from(vec![0u8; 400]);
    assert!(matches!(
        r.push(3, 1, frame.clone()),
        Err(WireError::MessageTooLarge {
            claimed: 1200,
            size: 3,
            limit: 1000
        })
    ));
    assert!(matches!(
        r.push(1, 1, Bytes::from(vec![0u8; 1001])),
        Err(WireError::MessageTooLarge { .. })
    ));
    // a claim of i32::MAX frames of 4 MB with the default 2 GiB limit
    let mut r = Reassembler::default();
    assert!(matches!(
        r.push(i32::MAX, 1, Bytes::from(vec![0u8; 4_000_000])),
        Err(WireError::MessageTooLarge { .. })
    ));
    assert!(!r.in_progress());
}

#[test]
fn errors_read_as_sentences_with_the_values() {
    let e = WireError::BadFrame {
        iteration: 5,
        size: 9,
        problem: FrameProblem::Missing { expected: 3 },
    };
    assert_eq!(
        e.to_string(),
        "frame 5 of 9: frames are missing (frame 3 was expected)"
    );
    let e = WireError::IncompatibleVersion {
        theirs: "8".into(),
        ours: "7".into(),
    };
    assert!(e.to_string().contains('8') && e.to_string().contains('7'));
}
