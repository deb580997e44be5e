//! Golden tests over the payloads captured from Fed-BioMed 6.4.1
//! (`tests/fixtures/`, copied from shared/wire/samples): decode, compare with
//! the `.json` view (values and key order), re-encode to identical bytes, and
//! round-trip through the typed messages.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use fedroute::proto;
use fedroute::wire::{
    Envelope, NdArray, PingReply, PingRequest, SearchReply, SearchRequest, TrainRequest, Typed,
    Value,
};
use prost::Message;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn msgpack_fixtures() -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "msgpack"))
        .collect();
    v.sort();
    v
}

fn read(name: &str) -> Bytes {
    Bytes::from(std::fs::read(fixture_dir().join(name)).unwrap())
}

fn view_of(path: &Path) -> String {
    let mut p = path.as_os_str().to_owned();
    p.push(".json");
    std::fs::read_to_string(PathBuf::from(p)).unwrap()
}

#[test]
fn there_are_fixtures_for_requests_and_replies() {
    let names: Vec<String> = msgpack_fixtures()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.len() >= 5, "{names:?}");
}

#[test]
fn every_fixture_re_encodes_to_identical_bytes() {
    for f in msgpack_fixtures() {
        let raw = Bytes::from(std::fs::read(&f).unwrap());
        let v = Value::decode(&raw).unwrap();
        assert_eq!(v.to_bytes(), raw, "{}", f.display());
        // an envelope that was not modified hands back the very same buffer
        let env = Envelope::decode(raw.clone()).unwrap();
        assert_eq!(env.to_bytes().as_ptr(), raw.as_ptr());
        // one that is rebuilt from its value encodes to the same bytes too
        let rebuilt = Envelope::from_value(env.value().clone()).unwrap();
        assert_eq!(rebuilt.to_bytes(), raw, "{}", f.display());
        rebuilt.check_version().unwrap();
    }
}

/// The `.json` view is `json.dumps({"msgpack_len", "first_bytes_hex", "decoded"}, indent=2)`:
/// rebuilding it from our decoding checks every value and the key order.
#[test]
fn every_fixture_matches_its_json_view_including_key_order() {
    for f in msgpack_fixtures() {
        let raw = Bytes::from(std::fs::read(&f).unwrap());
        let v = Value::decode(&raw).unwrap();
        let hex: String = raw.iter().take(16).map(|b| format!("{b:02x}")).collect();
        let wrapper = Value::map([
            ("msgpack_len", Value::UInt(raw.len() as u64)),
            ("first_bytes_hex", Value::Str(hex)),
            ("decoded", v.clone()),
        ]);
        let expected = view_of(&f);
        assert_eq!(
            wrapper.to_json_pretty(),
            expected.trim_end(),
            "{}",
            f.display()
        );
        let parsed: serde_json::Value = serde_json::from_str(&expected).unwrap();
        assert_eq!(v.to_json(), parsed["decoded"]);
    }
}

#[test]
fn envelope_accessors_read_the_fixture_fields() {
    let ping = Envelope::decode(read("01_request_PingRequest.msgpack")).unwrap();
    assert_eq!(ping.class(), "PingRequest");
    assert_eq!(ping.protocol_version(), Some("7"));
    assert_eq!(
        ping.request_id(),
        Some("c1c51a24-600a-4c71-a2fb-46ddc9f60818")
    );
    assert_eq!(
        ping.researcher_id(),
        Some("RESEARCHER_1ab5d899-22f0-46b3-872f-f1347af2b316")
    );
    assert_eq!(ping.node_id(), None);

    let reply = Envelope::decode(read("02_reply_PingReply.msgpack")).unwrap();
    assert_eq!(reply.class(), "PingReply");
    assert_eq!(reply.node_id(), Some("NODE_anchor-0001"));
    assert_eq!(
        reply.get("node_name").and_then(Value::as_str),
        Some("anchor-node")
    );
    assert_eq!(reply.request_id(), ping.request_id());

    let train = Envelope::decode(read("07_request_TrainRequest.msgpack")).unwrap();
    let blob = train.get("params").and_then(|p| p.get("blob")).unwrap();
    let arr = NdArray::from_value(blob).unwrap();
    assert_eq!(arr.dtype, "uint8");
    assert_eq!(arr.shape, [16]);
    assert_eq!(&arr.data[..], &[3u8; 16]);
    assert_eq!(arr.to_value(), *blob);
}

/// decode -> typed -> envelope -> bytes gives back the captured bytes.
fn typed_round_trip<T: Typed + PartialEq + std::fmt::Debug>(name: &str) -> T {
    let raw = read(name);
    let typed: T = Envelope::decode(raw.clone()).unwrap().to_typed().unwrap();
    let env = Envelope::from_typed(&typed).unwrap();
    assert_eq!(env.to_bytes(), raw, "{name}");
    let keys: Vec<&str> = env
        .value()
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert_eq!(&keys[..keys.len() - 1], T::FIELDS, "{name}");
    assert_eq!(keys.last(), Some(&"__type_message__"));
    typed
}

#[test]
fn typed_messages_round_trip_to_the_captured_bytes() {
    let p: PingRequest = typed_round_trip("01_request_PingRequest.msgpack");
    assert_eq!(
        p.request_id.as_deref(),
        Some("c1c51a24-600a-4c71-a2fb-46ddc9f60818")
    );
    let r: PingReply = typed_round_trip("02_reply_PingReply.msgpack");
    assert_eq!(r.node_name, "anchor-node");
    let s: SearchRequest = typed_round_trip("05_request_SearchRequest.msgpack");
    assert_eq!(s.tags, ["#anchor"]);
    let s: SearchReply = typed_round_trip("06_reply_SearchReply.msgpack");
    assert_eq!(s.count, 1);
    assert_eq!(
        s.databases.as_array().unwrap()[0]
            .get("name")
            .and_then(Value::as_str),
        Some("anchor")
    );
    let t: TrainRequest = typed_round_trip("07_request_TrainRequest.msgpack");
    assert_eq!(t.training_args.get("reply_bytes"), Some(&Value::Int(-1)));
    assert_eq!(t.state_id, None);
    assert!(t.training);
}

#[test]
fn typed_train_request_keeps_the_ndarray_bytes_in_the_input_buffer() {
    let raw = read("07_request_TrainRequest.msgpack");
    let t: TrainRequest = Envelope::decode(raw.clone()).unwrap().to_typed().unwrap();
    let arr = NdArray::from_value(t.params.get("blob").unwrap()).unwrap();
    let range = raw.as_ptr() as usize..raw.as_ptr() as usize + raw.len();
    assert!(range.contains(&(arr.data.as_ptr() as usize)));
}

#[test]
fn task_request_protobuf_fixture_decodes_and_re_encodes() {
    let raw = read("00_TaskRequest.pb");
    let req = proto::TaskRequest::decode(raw.clone()).unwrap();
    let view: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("00_TaskRequest.pb.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(req.node, view["fields"]["node"].as_str().unwrap());
    assert_eq!(
        req.protocol_version,
        view["fields"]["protocol_version"].as_str().unwrap()
    );
    assert_eq!(req.encode_to_vec(), raw);
}
