//! Scenario 1 through the node library (a preview of what `fedroute node`
//! does): a fedroute `Controller` with a small reference handler serves a
//! Fed-BioMed researcher made of Fed-BioMed 6.4.1's real `GrpcServer`
//! (tests/interop/fbm_researcher.py, started here as a child process, which
//! also restarts itself with a fresh certificate and the same id).
//!
//! run.sh uses the `fedroute node` binary for scenario 1; this test is its
//! library-level twin (`run.sh node-lib`), useful while the CLI is missing
//! and to tell a CLI problem from a library one.
//!
//! ```text
//! FEDROUTE_INTEROP_PYTHON=tests/interop/.venv/bin/python \
//! FEDROUTE_INTEROP_RESEARCHER=tests/interop/fbm_researcher.py FEDROUTE_INTEROP_LOGS=/tmp/logs \
//! PYTHONPATH=tests/interop/stubs \
//!   cargo test --release --test interop -- --ignored --exact node::fedroute_node_library_serves_fedbiomed_researcher
//! ```
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use actix::prelude::*;
use fedroute::node::{log_forward, Controller, ControllerConfig, ResearcherEndpoint, TaskReceived};
use fedroute::wire::{Envelope, ErrorMessage, ListReply, PingReply, SearchReply, Typed, Value};

const NODE: &str = "NODE_fedroute_lib";

fn dataset(name: &str, tags: &[&str]) -> Value {
    Value::map([
        ("name", Value::Str(name.into())),
        ("data_type", Value::Str("csv".into())),
        (
            "tags",
            Value::Array(tags.iter().map(|t| Value::Str((*t).into())).collect()),
        ),
        ("description", Value::Str(format!("interop dataset {name}"))),
        ("shape", Value::Array(vec![Value::UInt(1), Value::UInt(1)])),
        ("dataset_id", Value::Str(format!("dataset_{name}"))),
    ])
}

fn tags_of(d: &Value) -> Vec<String> {
    d.get("tags")
        .and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect()
}

/// The reference handler: Ping, Search, List answered; anything else an ErrorMessage.
struct RefNode {
    datasets: Vec<Value>,
}

impl Actor for RefNode {
    type Context = Context<Self>;
}

fn envelope<T: Typed>(t: &T) -> Envelope {
    Envelope::from_typed(t).expect("typed reply encodes")
}

impl Handler<TaskReceived> for RefNode {
    type Result = ();
    fn handle(&mut self, task: TaskReceived, ctx: &mut Self::Context) {
        let m = &task.message;
        let reply = match m.class() {
            "PingRequest" => envelope(&PingReply::answer(m, NODE, "fedroute-lib")),
            "SearchRequest" => {
                let wanted: Vec<String> = m
                    .get("tags")
                    .and_then(Value::as_array)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect();
                let found = self
                    .datasets
                    .iter()
                    .filter(|d| wanted.iter().all(|w| tags_of(d).contains(w)))
                    .cloned()
                    .collect();
                envelope(&SearchReply::answer(m, NODE, "fedroute-lib", found))
            }
            "ListRequest" => envelope(&ListReply::answer(
                m,
                NODE,
                "fedroute-lib",
                self.datasets.clone(),
            )),
            other => envelope(&ErrorMessage::answer(
                m,
                NODE,
                "fedroute-lib",
                format!("fedroute reference node does not handle {other}"),
                Some("FB300".into()),
            )),
        };
        log::info!(target: "interop_node", researcher_id = task.researcher_id.as_str();
            "handled {} {}", m.class(), m.request_id().unwrap_or(""));
        let sent = task.reply.send(reply);
        ctx.spawn(
            async move {
                if let Err(e) = sent.await {
                    log::error!(target: "interop_node", "reply not queued: {e}");
                }
            }
            .into_actor(self),
        );
    }
}

#[actix_rt::test]
#[ignore = "run by tests/interop/run.sh node-lib (needs the Fed-BioMed venv)"]
async fn fedroute_node_library_serves_fedbiomed_researcher() {
    let mut builder = env_logger::Builder::from_default_env();
    builder.is_test(true);
    let forwarding =
        log_forward::install(builder, log::LevelFilter::Info).expect("install the logger");

    let python = std::env::var("FEDROUTE_INTEROP_PYTHON").expect("FEDROUTE_INTEROP_PYTHON");
    let script = std::env::var("FEDROUTE_INTEROP_RESEARCHER").expect("FEDROUTE_INTEROP_RESEARCHER");
    let logs = PathBuf::from(std::env::var("FEDROUTE_INTEROP_LOGS").unwrap_or_else(|_| ".".into()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let out = std::fs::File::create(logs.join("fbm-researcher.out")).expect("log file");
    let err = std::fs::File::create(logs.join("fbm-researcher.err")).expect("log file");
    let mut researcher = Command::new(python)
        .arg(script)
        .args(["--port", &port.to_string(), "--node-id", NODE])
        .args(["--expect-dataset", "cohort", "--search-tag", "#a"])
        .args([
            "--train-expect",
            "error",
            "--restart-cert",
            "same",
            "--timeout",
            "280",
        ])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start fbm_researcher.py");

    let handler = RefNode {
        datasets: vec![dataset("cohort", &["#a", "#b"]), dataset("other", &["#c"])],
    }
    .start();
    let controller = Controller::builder(NODE)
        .name("fedroute-lib")
        .researchers(vec![ResearcherEndpoint::trust_on_first_use(
            "127.0.0.1",
            port,
        )])
        .config(ControllerConfig::default())
        .start(handler.recipient())
        .expect("the controller starts");
    forwarding.attach(controller.clone().recipient());

    // The researcher process drives the scenario and exits with its verdict.
    let status = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::task::spawn_blocking(move || researcher.wait()),
    )
    .await
    .expect("fbm_researcher.py exits within 300 s")
    .expect("join")
    .expect("wait");
    forwarding.detach();
    let result = std::fs::read_to_string(logs.join("fbm-researcher.out")).unwrap_or_default();
    let last = result.lines().rfind(|l| l.starts_with('{')).unwrap_or("{}");
    let v: serde_json::Value = serde_json::from_str(last).unwrap_or_default();
    for phase in v["phases"].as_array().cloned().unwrap_or_default() {
        for c in phase["checks"].as_array().cloned().unwrap_or_default() {
            let ok = c["ok"].as_bool().unwrap_or(false);
            eprintln!(
                "{} {}",
                if ok { "PASS" } else { "FAIL" },
                c["check"].as_str().unwrap_or("?")
            );
        }
    }
    assert!(
        status.success() && v["ok"].as_bool() == Some(true),
        "Fed-BioMed researcher verdict: {last}"
    );
}
