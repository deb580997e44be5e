//! Typed messages: constructors, replies built from requests, round trips
//! through bytes, field order, and envelope editing.

use bytes::Bytes;
use fedroute::wire::{
    ApprovalReply, ApprovalRequest, Envelope, ErrorMessage, ListReply, ListRequest, NdArray,
    OverlayMessage, PingReply, PingRequest, SearchReply, SearchRequest, TrainReply, TrainRequest,
    Typed, Value, WireError, PROTOCOL_VERSION,
};

/// typed -> bytes -> typed, checking the wire key order.
fn round_trip<T: Typed + PartialEq + std::fmt::Debug>(t: &T) -> Envelope {
    let env = Envelope::from_typed(t).unwrap();
    assert_eq!(env.class(), T::CLASS);
    let keys: Vec<&str> = env
        .value()
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert_eq!(&keys[..keys.len() - 1], T::FIELDS);
    assert_eq!(keys.last(), Some(&"__type_message__"));
    let decoded = Envelope::decode(env.to_bytes()).unwrap();
    decoded.check_version().unwrap();
    assert_eq!(&decoded.to_typed::<T>().unwrap(), t);
    decoded
}

fn uuid4(s: Option<&str>) -> bool {
    s.and_then(|s| uuid::Uuid::parse_str(s).ok())
        .is_some_and(|u| u.get_version_num() == 4)
}

#[test]
fn requests_get_a_fresh_uuid4_and_the_protocol_version() {
    let a = PingRequest::new("R");
    let b = PingRequest::new("R");
    assert_eq!(a.protocol_version, PROTOCOL_VERSION);
    assert!(uuid4(a.request_id.as_deref()));
    assert_ne!(a.request_id, b.request_id);
    assert!(uuid4(ListRequest::new("R").request_id.as_deref()));
    assert!(uuid4(SearchRequest::new("R", vec![]).request_id.as_deref()));
    assert!(uuid4(
        ApprovalRequest::new("R", "d", "p").request_id.as_deref()
    ));
    assert!(uuid4(
        TrainRequest::new("R", "e", "d", Value::Map(vec![]))
            .request_id
            .as_deref()
    ));
}

#[test]
fn ping_request_and_reply_round_trip() {
    let req = round_trip(&PingRequest::new("RESEARCHER_1"));
    let reply = PingReply::answer(&req, "NODE_1", "node one");
    assert_eq!(reply.researcher_id, "RESEARCHER_1");
    assert_eq!(reply.request_id.as_deref(), req.request_id());
    let env = round_trip(&reply);
    assert_eq!(env.node_id(), Some("NODE_1"));
}

#[test]
fn list_and_search_round_trip() {
    let req = round_trip(&ListRequest::new("R"));
    let db = Value::map([
        ("name", Value::from("ds")),
        ("tags", Value::Array(vec![Value::from("#t")])),
    ]);
    let reply = ListReply::answer(&req, "N", "n", vec![db.clone()]);
    assert_eq!(reply.count, 1);
    assert!(reply.success);
    round_trip(&reply);

    let req = round_trip(&SearchRequest::new("R", vec!["#t".into()]));
    let reply = SearchReply::answer(&req, "N", "n", vec![db]);
    assert_eq!(reply.request_id.as_deref(), req.request_id());
    round_trip(&reply);
}

#[test]
fn error_and_approval_round_trip() {
    let req = round_trip(&ApprovalRequest::new("R", "a plan", "class P: pass"));
    let reply = ApprovalReply::answer(&req, "N", "n", Some("TP_1".into()), true);
    let env = round_trip(&reply);
    assert_eq!(env.get("status"), Some(&Value::UInt(0)));
    let err = ErrorMessage::answer(&req, "N", "n", "boom", Some("FB300".into()));
    round_trip(&err);
    let err = ErrorMessage::answer(&req, "N", "n", "boom", None);
    let env = round_trip(&err);
    assert_eq!(env.get("errnum"), Some(&Value::Nil));
}

#[test]
fn overlay_round_trips_with_bin_fields_and_no_request_id() {
    let m = OverlayMessage::new(
        "R",
        "NODE_A",
        "NODE_B",
        Bytes::from_static(b"\x00\x01secret"),
        true,
        Bytes::from_static(b"salt"),
        Bytes::from_static(b"nonce"),
    );
    let env = round_trip(&m);
    assert_eq!(env.dest_node_id(), Some("NODE_B"));
    assert_eq!(env.request_id(), None);
    assert!(matches!(env.get("overlay"), Some(Value::Bin(_))));
}

#[test]
fn train_request_and_reply_keep_params_whole() {
    let data = Bytes::from(vec![5u8; 4096]);
    let params = Value::map([
        ("w", NdArray::u8(data.clone()).to_value()),
        (
            "odd",
            Value::map([
                ("__type__", Value::from("VectorSpec")),
                ("value", Value::Ext(3, Bytes::from_static(b"x"))),
            ]),
        ),
        ("f", Value::F32(0.25)),
    ]);
    let req = TrainRequest::new("R", "exp", "ds", params.clone());
    let env = Envelope::from_typed(&req).unwrap();
    // building the envelope does not copy the parameter bytes
    let w = env.get("params").unwrap().get("w").unwrap();
    assert_eq!(NdArray::from_value(w).unwrap().data.as_ptr(), data.as_ptr());
    let req_env = round_trip(&req);

    let reply = TrainReply::answer(&req_env, "N", "n", params.clone());
    assert_eq!(reply.experiment_id, "exp");
    assert_eq!(reply.dataset_id, "ds");
    let env = round_trip(&reply);
    assert_eq!(env.get("params"), Some(&params));
}

#[test]
fn to_typed_refuses_another_class_and_names_missing_fields() {
    let env = Envelope::from_typed(&PingRequest::new("R")).unwrap();
    assert!(matches!(
        env.to_typed::<PingReply>(),
        Err(WireError::WrongClass { expected: "PingReply", ref found }) if found == "PingRequest"
    ));
    let mut v = env.value().clone();
    if let Value::Map(m) = &mut v {
        m.retain(|(k, _)| k.as_str() != Some("researcher_id"));
    }
    let env = Envelope::from_value(v).unwrap();
    assert!(matches!(
        env.to_typed::<PingRequest>(),
        Err(WireError::MissingField {
            field: "researcher_id",
            ..
        })
    ));
}

#[test]
fn unknown_classes_and_fields_pass_through_unchanged() {
    let v = Value::map([
        ("protocol_version", Value::from("7")),
        (
            "mystery",
            Value::Array(vec![
                Value::F32(1.5),
                Value::Ext(-7, Bytes::from_static(b"abc")),
            ]),
        ),
        (
            "__type_message__",
            Value::map([
                ("module", Value::from("x")),
                ("class", Value::from("FutureMessage")),
            ]),
        ),
    ]);
    let bytes = Envelope::from_value(v.clone()).unwrap().to_bytes();
    let env = Envelope::decode(bytes.clone()).unwrap();
    assert_eq!(env.class(), "FutureMessage");
    assert_eq!(env.value(), &v);
    assert_eq!(env.to_bytes(), bytes);
}

#[test]
fn set_keeps_key_order_and_re_encodes() {
    let mut env = Envelope::decode(
        Envelope::from_typed(&PingRequest::new("R"))
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    let before = env.to_bytes();
    env.set("researcher_id", Value::from("R2"));
    env.set("extra", Value::UInt(1));
    let keys: Vec<&str> = env
        .value()
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "protocol_version",
            "request_id",
            "researcher_id",
            "extra",
            "__type_message__"
        ]
    );
    assert_ne!(env.to_bytes(), before);
    let again = Envelope::decode(env.to_bytes()).unwrap();
    assert_eq!(again.researcher_id(), Some("R2"));
}
