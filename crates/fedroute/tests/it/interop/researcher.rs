//! Scenario 2 of the Fed-BioMed interop suite (tests/interop/run.sh): a
//! fedroute researcher (the library) drives a Fed-BioMed node made of
//! Fed-BioMed 6.4.1's real `GrpcController` (tests/interop/fbm_node.py),
//! which this test starts and restarts as a child process.
//!
//! Checks, each printed as `PASS name` / `FAIL name: why` on stderr:
//! the node polls; PingRequest -> PingReply; SearchRequest -> SearchReply
//! naming the declared dataset; a 16 MiB ndarray in a TrainRequest comes back
//! byte for byte in the TrainReply (16 MiB each way); the node's log records
//! arrive as Feedback events in Fed-BioMed's JSON form; the node process is
//! killed and started again, and a PingRequest is answered by the new process.
//!
//! ```text
//! FEDROUTE_INTEROP_PYTHON=tests/interop/.venv/bin/python \
//! FEDROUTE_INTEROP_NODE=tests/interop/fbm_node.py FEDROUTE_INTEROP_LOGS=/tmp/logs \
//! PYTHONPATH=tests/interop/stubs \
//!   cargo test --release --test interop -- --ignored --exact fedroute_researcher_drives_fedbiomed_node
//! ```
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use fedroute::researcher::{self, Request, ResearcherConfig, ResearcherEvent, ResearcherHandle};
use fedroute::wire::{
    Envelope, Feedback, NdArray, PingReply, PingRequest, SearchReply, SearchRequest, TrainReply,
    TrainRequest, Value, PROTOCOL_VERSION,
};
use tokio::sync::mpsc;

const NODE: &str = "NODE_fbm_interop";
const PAYLOAD_BYTES: usize = 16 << 20;
/// The bound on every wait of this test.
const T: Duration = Duration::from_secs(90);
/// The researcher's node disconnection timeout in this test.
const DISCONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

struct EventSink {
    tx: mpsc::UnboundedSender<ResearcherEvent>,
}

impl Actor for EventSink {
    type Context = Context<Self>;
}

impl Handler<ResearcherEvent> for EventSink {
    type Result = ();
    fn handle(&mut self, ev: ResearcherEvent, _: &mut Self::Context) {
        let _ = self.tx.send(ev);
    }
}

/// A Fed-BioMed node process; killed when dropped.
struct PyNode {
    child: Child,
}

impl PyNode {
    fn spawn(port: u16, run: u32) -> PyNode {
        let python = std::env::var("FEDROUTE_INTEROP_PYTHON").expect("FEDROUTE_INTEROP_PYTHON");
        let script = std::env::var("FEDROUTE_INTEROP_NODE").expect("FEDROUTE_INTEROP_NODE");
        let logs =
            PathBuf::from(std::env::var("FEDROUTE_INTEROP_LOGS").unwrap_or_else(|_| ".".into()));
        let out =
            std::fs::File::create(logs.join(format!("fbm-node-{run}.out"))).expect("log file");
        let err =
            std::fs::File::create(logs.join(format!("fbm-node-{run}.err"))).expect("log file");
        let child = Command::new(python)
            .arg(script)
            .args(["--researcher", &format!("127.0.0.1:{port}"), "--id", NODE])
            .args([
                "--dataset",
                "cohort:#a,#b",
                "--dataset",
                "other:#c",
                "--timeout",
                "240",
                "--verbose",
            ])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start fbm_node.py");
        PyNode { child }
    }
}

impl Drop for PyNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Checks {
    failed: Vec<String>,
    passed: usize,
}

impl Checks {
    fn check(&mut self, name: &str, result: Result<String, String>) {
        match result {
            Ok(detail) => {
                eprintln!("PASS {name} {detail}");
                self.passed += 1;
            }
            Err(why) => {
                eprintln!("FAIL {name}: {why}");
                self.failed.push(format!("{name}: {why}"));
            }
        }
    }
}

async fn bounded<F: Future>(what: &str, fut: F) -> Result<F::Output, String> {
    tokio::time::timeout(T, fut)
        .await
        .map_err(|_| format!("timed out after {T:?}: {what}"))
}

async fn request(
    h: &ResearcherHandle,
    message: Envelope,
    timeout: Duration,
) -> Result<(Envelope, Duration), String> {
    let t0 = Instant::now();
    let reply = bounded(
        "request",
        h.addr.send(Request {
            node_id: NODE.into(),
            message,
            timeout,
        }),
    )
    .await?
    .map_err(|e| format!("mailbox: {e}"))?
    .map_err(|e| format!("request failed: {e}"))?;
    Ok((reply, t0.elapsed()))
}

async fn ping(h: &ResearcherHandle) -> Result<String, String> {
    let req = Envelope::from_typed(&PingRequest::new(h.researcher_id.clone()))
        .map_err(|e| e.to_string())?;
    let (reply, rtt) = request(h, req.clone(), Duration::from_secs(60)).await?;
    let r: PingReply = reply
        .to_typed()
        .map_err(|e| format!("not a PingReply ({}): {e}", reply.class()))?;
    if r.node_id != NODE
        || r.request_id.as_deref() != req.request_id()
        || r.researcher_id != h.researcher_id
    {
        return Err(format!("wrong ids in {r:?}"));
    }
    Ok(format!("rtt {rtt:?}"))
}

async fn search(h: &ResearcherHandle) -> Result<String, String> {
    let req = Envelope::from_typed(&SearchRequest::new(
        h.researcher_id.clone(),
        vec!["#a".into()],
    ))
    .map_err(|e| e.to_string())?;
    let (reply, rtt) = request(h, req.clone(), Duration::from_secs(30)).await?;
    let r: SearchReply = reply
        .to_typed()
        .map_err(|e| format!("not a SearchReply ({}): {e}", reply.class()))?;
    let names: Vec<String> = r
        .databases
        .as_array()
        .unwrap_or_default()
        .iter()
        .filter_map(|d| d.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    if r.request_id.as_deref() != req.request_id() || names != ["cohort"] || r.count != 1 {
        return Err(format!("datasets {names:?}, count {}", r.count));
    }
    Ok(format!("datasets {names:?}, rtt {rtt:?}"))
}

async fn train_echo(h: &ResearcherHandle) -> Result<String, String> {
    let blob: Bytes = (0..PAYLOAD_BYTES)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let req = TrainRequest {
        protocol_version: PROTOCOL_VERSION.to_owned(),
        request_id: Some(fedroute::wire::new_request_id()),
        researcher_id: h.researcher_id.clone(),
        experiment_id: "interop-exp".into(),
        state_id: None,
        training_args: Value::map([("epochs", Value::UInt(1))]),
        dataset_id: "dataset_cohort".into(),
        training: true,
        model_args: Value::map(Vec::<(&str, Value)>::new()),
        params: Value::map([("blob", NdArray::u8(blob.clone()).to_value())]),
        training_plan: "# none".into(),
        training_plan_class: "InteropTP".into(),
        round: 0,
        aggregator_args: Value::map(Vec::<(&str, Value)>::new()),
        secagg_arguments: None,
        optim_aux_var: None,
    };
    let req = Envelope::from_typed(&req).map_err(|e| e.to_string())?;
    let (reply, rtt) = request(h, req.clone(), Duration::from_secs(60)).await?;
    let r: TrainReply = reply
        .to_typed()
        .map_err(|e| format!("not a TrainReply ({}): {e}", reply.class()))?;
    let back = r
        .params
        .as_ref()
        .and_then(|p| p.get("blob"))
        .ok_or("no params.blob in the TrainReply")?;
    let back = NdArray::from_value(back).map_err(|e| e.to_string())?;
    if r.request_id.as_deref() != req.request_id() || back.data != blob || back.dtype != "uint8" {
        return Err(format!(
            "echo differs: {} bytes of {}",
            back.data.len(),
            back.dtype
        ));
    }
    Ok(format!("{} bytes each way, rtt {rtt:?}", blob.len()))
}

/// Waits for `n` Feedback logs from the node; each `msg` must be Fed-BioMed's JSON.
async fn logs(
    rx: &mut mpsc::UnboundedReceiver<ResearcherEvent>,
    n: usize,
) -> Result<String, String> {
    let mut got = Vec::new();
    bounded("feedback logs", async {
        while got.len() < n {
            match rx.recv().await {
                Some(ResearcherEvent::Feedback(fb)) => {
                    if let Feedback::Log(log) = fb.feedback {
                        if log.node_id == NODE {
                            got.push(log);
                        }
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
    })
    .await?;
    if got.len() < n {
        return Err(format!("{} logs", got.len()));
    }
    for log in &got {
        let v: serde_json::Value = serde_json::from_str(&log.msg)
            .map_err(|e| format!("msg is not JSON ({e}): {}", log.msg))?;
        if v.get("message").and_then(|m| m.as_str()).is_none() {
            return Err(format!("no \"message\" in {}", log.msg));
        }
    }
    Ok(format!(
        "{} logs, e.g. {} {}",
        got.len(),
        got[0].level,
        got[0].msg
    ))
}

async fn wait_connected(
    rx: &mut mpsc::UnboundedReceiver<ResearcherEvent>,
) -> Result<String, String> {
    let t0 = Instant::now();
    bounded("node connected", async {
        loop {
            match rx.recv().await {
                Some(ResearcherEvent::NodeConnected { node_id }) if node_id == NODE => {
                    return Ok(())
                }
                Some(_) => {}
                None => return Err("event sink gone".to_owned()),
            }
        }
    })
    .await??;
    Ok(format!("after {:?}", t0.elapsed()))
}

async fn wait_disconnected(
    rx: &mut mpsc::UnboundedReceiver<ResearcherEvent>,
) -> Result<String, String> {
    let t0 = Instant::now();
    bounded("node disconnected", async {
        loop {
            match rx.recv().await {
                Some(ResearcherEvent::NodeDisconnected { node_id }) if node_id == NODE => {
                    return Ok(())
                }
                Some(_) => {}
                None => return Err("event sink gone".to_owned()),
            }
        }
    })
    .await??;
    Ok(format!("after {:?}", t0.elapsed()))
}

#[actix_rt::test]
#[ignore = "run by tests/interop/run.sh (needs the Fed-BioMed venv)"]
async fn fedroute_researcher_drives_fedbiomed_node() {
    let _ = env_logger::builder().is_test(true).try_init();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sink = EventSink { tx }.start();
    // A short disconnection timeout: the restart below waits for the
    // researcher to see the killed node go (an event) before starting the new
    // process. A task handed to a poll whose connection is dying when it is
    // written is lost, as with Fed-BioMed's own server (a unary poll has no
    // delivery acknowledgement): the application's request timeout covers it.
    let mut config = ResearcherConfig::default();
    config.nodes.disconnection_timeout = DISCONNECTION_TIMEOUT;
    config.listen.address = "127.0.0.1:0".parse().expect("address");
    config.listen.host = Some("127.0.0.1".into());
    let handle = researcher::start(config, Some(sink.recipient()))
        .await
        .expect("researcher starts");
    let port = handle.local_addr.port();
    eprintln!("researcher {} on 127.0.0.1:{port}", handle.researcher_id);

    let mut checks = Checks::default();
    let node = PyNode::spawn(port, 1);
    checks.check("Fed-BioMed node polls", wait_connected(&mut rx).await);
    checks.check("PingRequest -> PingReply", ping(&handle).await);
    checks.check(
        "SearchRequest -> SearchReply with the declared dataset",
        search(&handle).await,
    );
    checks.check(
        "16 MiB TrainRequest echoed in a TrainReply",
        train_echo(&handle).await,
    );
    checks.check(
        "node logs arrive as Feedback (Fed-BioMed JSON)",
        logs(&mut rx, 3).await,
    );

    drop(node); // SIGKILL, like a crash
    checks.check(
        "killed node seen disconnected",
        wait_disconnected(&mut rx).await,
    );
    let t0 = Instant::now();
    let _node = PyNode::spawn(port, 2);
    checks.check("restarted node polls again", wait_connected(&mut rx).await);
    let after = ping(&handle)
        .await
        .map(|d| format!("{d}, {:?} after the restart", t0.elapsed()));
    checks.check("restarted node: PingRequest -> PingReply", after);

    let _ = handle.shutdown().await;
    eprintln!("{} passed, {} failed", checks.passed, checks.failed.len());
    assert!(checks.failed.is_empty(), "{}", checks.failed.join("\n"));
}
