//! Scenario 3 of the Fed-BioMed interop suite (tests/interop/run.sh): fedroute's
//! typed messages against Fed-BioMed's own codec, through files.
//!
//! Both tests are `#[ignore]`d: run.sh runs them with the directories set.
//!
//! - `fedroute_writes_typed_messages`: writes one message per typed class
//!   (`<Class>.msgpack`) and two FeedbackMessage protobufs
//!   (`FeedbackMessage_log.pb`, `FeedbackMessage_scalar.pb`) into
//!   `$FEDROUTE_INTEROP_OUT`; `fbm_bytes.py check` then runs Fed-BioMed's
//!   `Message.from_dict` on each and requires Fed-BioMed to re-encode the same bytes.
//! - `fedroute_reads_fedbiomed_messages`: reads every `*.msgpack` and `*.pb`
//!   file Fed-BioMed wrote (`fbm_bytes.py write`) in `$FEDROUTE_INTEROP_IN`,
//!   decodes each into its typed struct and requires the typed struct to encode
//!   back to the same bytes.
//!
//! ```text
//! FEDROUTE_INTEROP_OUT=/tmp/out cargo test --release --test interop_bytes -- --ignored
//! ```
use std::path::{Path, PathBuf};

use bytes::Bytes;
use fedroute::proto;
use fedroute::wire::{
    ApprovalReply, ApprovalRequest, Envelope, ErrorMessage, FeedbackMessage, ListReply,
    ListRequest, Log, NdArray, OverlayMessage, PingReply, PingRequest, Scalar, SearchReply,
    SearchRequest, TrainReply, TrainRequest, Typed, Value, PROTOCOL_VERSION,
};
use prost::Message as _;

const RESEARCHER_ID: &str = "RESEARCHER_2f6c1b5e-0c7e-4d8e-9a57-3f1f0d6a1c11";
const NODE_ID: &str = "NODE_interop-0001";
const NODE_NAME: &str = "interop-node";
const REQUEST_ID: &str = "6c2a7d41-5b8e-4f0a-9d3c-1e2f3a4b5c6d";

/// The classes fedroute types; each must be present in both directions.
const TYPED: [&str; 12] = [
    "PingRequest",
    "PingReply",
    "ListRequest",
    "ListReply",
    "SearchRequest",
    "SearchReply",
    "ErrorMessage",
    "ApprovalRequest",
    "ApprovalReply",
    "TrainRequest",
    "TrainReply",
    "OverlayMessage",
];

fn dir_from_env(var: &str) -> PathBuf {
    let dir = std::env::var_os(var).unwrap_or_else(|| {
        panic!("set {var} to a directory (this test is run by tests/interop/run.sh)")
    });
    PathBuf::from(dir)
}

fn s(x: &str) -> String {
    x.to_owned()
}

fn v(x: &str) -> Value {
    Value::Str(x.to_owned())
}

fn databases() -> Value {
    Value::Array(vec![Value::map([
        ("name", v("cohort")),
        ("data_type", v("csv")),
        ("tags", Value::Array(vec![v("#a"), v("#b")])),
        ("description", v("d")),
        (
            "shape",
            Value::Array(vec![Value::UInt(100), Value::UInt(4)]),
        ),
        ("dataset_id", v("dataset_cohort")),
        ("dtypes", Value::Array(vec![v("float64")])),
    ])])
}

fn params() -> Value {
    let coef: Vec<u8> = (0..12).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let bias: Vec<u8> = [0.5f64, -1.25]
        .iter()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    let blob: Vec<u8> = (0..4).flat_map(|_| 0..=255u8).collect();
    Value::map([
        (
            "coef",
            NdArray {
                dtype: s("float32"),
                shape: vec![3, 4],
                data: Bytes::from(coef),
            }
            .to_value(),
        ),
        (
            "bias",
            NdArray {
                dtype: s("float64"),
                shape: vec![2],
                data: Bytes::from(bias),
            }
            .to_value(),
        ),
        ("blob", NdArray::u8(Bytes::from(blob)).to_value()),
    ])
}

fn typed_envelopes() -> Vec<(&'static str, Envelope)> {
    fn env<T: Typed>(t: T) -> (&'static str, Envelope) {
        (
            T::CLASS,
            Envelope::from_typed(&t).expect("typed message encodes"),
        )
    }
    let pv = || s(PROTOCOL_VERSION);
    let rq = || Some(s(REQUEST_ID));
    vec![
        env(PingRequest {
            protocol_version: pv(),
            request_id: rq(),
            researcher_id: s(RESEARCHER_ID),
        }),
        env(PingReply {
            protocol_version: pv(),
            request_id: rq(),
            researcher_id: s(RESEARCHER_ID),
            node_id: s(NODE_ID),
            node_name: s(NODE_NAME),
        }),
        env(ListRequest {
            protocol_version: pv(),
            request_id: rq(),
            researcher_id: s(RESEARCHER_ID),
        }),
        env(ListReply {
            protocol_version: pv(),
            request_id: rq(),
            researcher_id: s(RESEARCHER_ID),
            success: true,
            databases: databases(),
            node_id: s(NODE_ID),
            node_name: s(NODE_NAME),
            count: 1,
        }),
        env(SearchRequest {
            protocol_version: pv(),
            request_id: rq(),
            researcher_id: s(RESEARCHER_ID),
            tags: vec![s("#a"), s("#b")],
        }),
        env(SearchReply {
            protocol_version: pv(),
            request_id: rq(),
            researcher_id: s(RESEARCHER_ID),
            databases: databases(),
            node_id: s(NODE_ID),
            node_name: s(NODE_NAME),
            count: 1,
        }),
        env(ErrorMessage {
            protocol_version: pv(),
            request_id: rq(),
            researcher_id: s(RESEARCHER_ID),
            node_id: s(NODE_ID),
            node_name: s(NODE_NAME),
            extra_msg: s("fedroute interop: not handled"),
            errnum: Some(s("FB300")),
        }),
        env(ApprovalRequest {
            protocol_version: pv(),
            request_id: rq(),
            researcher_id: s(RESEARCHER_ID),
            description: s("approve me"),
            training_plan: s("class TP:\n    pass\n"),
        }),
        env(ApprovalReply {
            protocol_version: pv(),
            request_id: rq(),
            researcher_id: s(RESEARCHER_ID),
            training_plan_id: None,
            message: s(""),
            node_id: s(NODE_ID),
            node_name: s(NODE_NAME),
            status: 0,
            success: true,
        }),
        env(TrainRequest {
            protocol_version: pv(),
            request_id: rq(),
            researcher_id: s(RESEARCHER_ID),
            experiment_id: s("exp-1"),
            state_id: None,
            training_args: Value::map([
                ("epochs", Value::UInt(2)),
                ("lr", Value::F64(0.01)),
                ("loader_args", Value::map([("batch_size", Value::UInt(8))])),
            ]),
            dataset_id: s("dataset_cohort"),
            training: true,
            model_args: Value::map([("n_features", Value::UInt(4))]),
            params: params(),
            training_plan: s("class InteropTP:\n    pass\n"),
            training_plan_class: s("InteropTP"),
            round: 3,
            aggregator_args: Value::map(Vec::<(&str, Value)>::new()),
            secagg_arguments: None,
            optim_aux_var: None,
        }),
        env(TrainReply {
            protocol_version: pv(),
            request_id: rq(),
            researcher_id: s(RESEARCHER_ID),
            experiment_id: s("exp-1"),
            success: true,
            node_id: s(NODE_ID),
            node_name: s(NODE_NAME),
            dataset_id: s("dataset_cohort"),
            timing: Value::map([
                ("rtime_training", Value::F64(1.5)),
                ("ptime_training", Value::F64(1.25)),
            ]),
            msg: s(""),
            state_id: Some(s("state-1")),
            sample_size: Some(100),
            encrypted: false,
            params: Some(params()),
            optimizer_args: Some(Value::map([("lr", Value::F64(0.01))])),
            optim_aux_var: None,
            encryption_factor: None,
        }),
        env(OverlayMessage {
            protocol_version: pv(),
            researcher_id: s(RESEARCHER_ID),
            node_id: s(NODE_ID),
            dest_node_id: s("NODE_interop-0002"),
            overlay: Bytes::from((0..64u8).collect::<Vec<u8>>()),
            setup: true,
            salt: Bytes::from(vec![0u8; 16]),
            nonce: Bytes::from((0..12u8).collect::<Vec<u8>>()),
        }),
    ]
}

fn feedbacks() -> Vec<(&'static str, FeedbackMessage)> {
    let log_msg = format!(
        r#"{{"asctime": "2026-01-01 00:00:00,000", "node_id": "{NODE_ID}", "name": "fedroute", "level": "INFO", "message": "interop log line"}}"#
    );
    let scalar = Scalar {
        node_id: s(NODE_ID),
        experiment_id: s("exp-1"),
        train: true,
        test: false,
        test_on_local_updates: false,
        test_on_global_updates: false,
        metric: [(s("loss"), 0.25f32)].into_iter().collect(),
        epoch: Some(1),
        total_samples: 100,
        batch_samples: 8,
        num_batches: 13,
        num_samples_trained: Some(16),
        iteration: 2,
        node_name: s(NODE_NAME),
    };
    vec![
        (
            "log",
            FeedbackMessage::with_log(
                Some(s(RESEARCHER_ID)),
                Log {
                    node_id: s(NODE_ID),
                    level: s("INFO"),
                    msg: log_msg,
                },
            ),
        ),
        (
            "scalar",
            FeedbackMessage::scalar(Some(s(RESEARCHER_ID)), scalar),
        ),
    ]
}

#[test]
#[ignore = "run by tests/interop/run.sh with FEDROUTE_INTEROP_OUT set"]
fn fedroute_writes_typed_messages() {
    let out = dir_from_env("FEDROUTE_INTEROP_OUT");
    std::fs::create_dir_all(&out).expect("create FEDROUTE_INTEROP_OUT");
    for (class, env) in typed_envelopes() {
        std::fs::write(out.join(format!("{class}.msgpack")), env.to_bytes()).expect("write");
    }
    for (kind, fb) in feedbacks() {
        let p: proto::FeedbackMessage = fb.into();
        std::fs::write(
            out.join(format!("FeedbackMessage_{kind}.pb")),
            p.encode_to_vec(),
        )
        .expect("write");
    }
}

/// Decodes into `T` and encodes back; `Err` says what differed.
fn typed_round_trip<T: Typed>(raw: &Bytes, env: &Envelope) -> Result<(), String> {
    let t: T = env
        .to_typed()
        .map_err(|e| format!("to_typed::<{}>: {e}", T::CLASS))?;
    let again = Envelope::from_typed(&t)
        .map_err(|e| format!("from_typed: {e}"))?
        .to_bytes();
    if again != *raw {
        return Err(format!(
            "typed {} re-encodes to other bytes ({} vs {} bytes)",
            T::CLASS,
            again.len(),
            raw.len()
        ));
    }
    Ok(())
}

fn check_msgpack(path: &Path) -> Result<String, String> {
    let raw = Bytes::from(std::fs::read(path).map_err(|e| e.to_string())?);
    let env = Envelope::decode(raw.clone()).map_err(|e| format!("Envelope::decode: {e}"))?;
    env.check_version()
        .map_err(|e| format!("check_version: {e}"))?;
    if env.to_bytes() != raw {
        return Err("Envelope::to_bytes differs from the input".to_owned());
    }
    let class = env.class().to_owned();
    match class.as_str() {
        "PingRequest" => typed_round_trip::<PingRequest>(&raw, &env),
        "PingReply" => typed_round_trip::<PingReply>(&raw, &env),
        "ListRequest" => typed_round_trip::<ListRequest>(&raw, &env),
        "ListReply" => typed_round_trip::<ListReply>(&raw, &env),
        "SearchRequest" => typed_round_trip::<SearchRequest>(&raw, &env),
        "SearchReply" => typed_round_trip::<SearchReply>(&raw, &env),
        "ErrorMessage" => typed_round_trip::<ErrorMessage>(&raw, &env),
        "ApprovalRequest" => typed_round_trip::<ApprovalRequest>(&raw, &env),
        "ApprovalReply" => typed_round_trip::<ApprovalReply>(&raw, &env),
        "TrainRequest" => typed_round_trip::<TrainRequest>(&raw, &env),
        "TrainReply" => typed_round_trip::<TrainReply>(&raw, &env),
        "OverlayMessage" => typed_round_trip::<OverlayMessage>(&raw, &env),
        other => Err(format!("class {other} is not typed by fedroute")),
    }?;
    Ok(class)
}

fn check_proto(path: &Path) -> Result<String, String> {
    let raw = std::fs::read(path).map_err(|e| e.to_string())?;
    let p = proto::FeedbackMessage::decode(raw.as_slice()).map_err(|e| format!("prost: {e}"))?;
    let fb = FeedbackMessage::try_from(p).map_err(|e| format!("FeedbackMessage: {e}"))?;
    fb.check_version()
        .map_err(|e| format!("check_version: {e}"))?;
    let back: proto::FeedbackMessage = fb.into();
    if back.encode_to_vec() != raw {
        return Err("FeedbackMessage re-encodes to other bytes".to_owned());
    }
    Ok("FeedbackMessage".to_owned())
}

#[test]
#[ignore = "run by tests/interop/run.sh with FEDROUTE_INTEROP_IN set"]
fn fedroute_reads_fedbiomed_messages() {
    let dir = dir_from_env("FEDROUTE_INTEROP_IN");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read FEDROUTE_INTEROP_IN")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "msgpack" || e == "pb"))
        .collect();
    files.sort();
    let mut seen = Vec::new();
    let mut failures = Vec::new();
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let res = if name.ends_with(".pb") {
            check_proto(f)
        } else {
            check_msgpack(f)
        };
        match res {
            Ok(class) => {
                eprintln!("PASS {name} {class}");
                seen.push(class);
            }
            Err(e) => {
                eprintln!("FAIL {name}: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    for class in TYPED.iter().chain(["FeedbackMessage"].iter()) {
        if !seen.iter().any(|c| c == class) {
            failures.push(format!("no Fed-BioMed file of class {class} decoded"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
