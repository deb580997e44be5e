//! `fedroute demo` (also what runs without a sub-command): an embedded
//! researcher and a few reference nodes on 127.0.0.1, with generated
//! certificates and real TLS.
//!
//! It runs ping rounds, a dataset search and model-sized
//! `TrainRequest`/`TrainReply` rounds (the parameters are an ndarray that
//! travels down and back up), stops the researcher half-way and restarts it
//! on the same port with the same id (and a new certificate), shows the
//! nodes reconnect, and ends with a summary table. It exits with success only
//! when every request got its expected reply.

use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use clap::Args;
use futures::future::join_all;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use fedroute::node::{Controller, ControllerConfig, ResearcherEndpoint, Shutdown, Status};
use fedroute::researcher::{self, Request, Researcher, ResearcherConfig, ResearcherEvent};
use fedroute::tls;
use fedroute::wire::{Envelope, NdArray, PingRequest, SearchRequest, TrainRequest, Value};
use fedroute::ErrorChain;

use super::args::{model_size, secs, DatasetSpec, Seconds, Size};
use super::node::{ReferenceNode, Responder};
use super::researcher::{EventTap, EVENT_QUEUE};
use super::runtime;
use super::stats::{self, RoundTrips};

/// Default number of nodes.
pub(crate) const DEFAULT_NODES: usize = 3;
/// Default pings per node (half before the restart, half after).
pub(crate) const DEFAULT_PINGS: u32 = 100;
/// Default training rounds (the researcher restarts after half of them).
pub(crate) const DEFAULT_ROUNDS: u32 = 4;
/// Default model size: the ndarray each TrainRequest carries down and each
/// TrainReply carries back.
pub(crate) const DEFAULT_MODEL_BYTES: usize = 16 << 20;
/// Default longest wait for one reply.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the nodes to connect (at start and after the restart).
const CONNECT_WAIT: Duration = Duration::from_secs(30);
/// Time the nodes get to flush their queues at the end.
const NODE_SHUTDOWN: Duration = Duration::from_secs(5);
/// The tag every demo dataset carries (the search looks for it).
const DEMO_TAG: &str = "demo";

/// Arguments of `fedroute demo`.
#[derive(Debug, Args, Clone)]
pub(crate) struct DemoArgs {
    /// Number of nodes.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_NODES, value_parser = node_count)]
    pub(crate) nodes: usize,
    /// Pings per node (half before the researcher restart, half after).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PINGS)]
    pub(crate) pings: u32,
    /// Training rounds; the researcher is restarted after half of them.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ROUNDS)]
    pub(crate) rounds: u32,
    /// Size of the model parameters sent down in each TrainRequest and back
    /// up in each TrainReply (B, KiB, MiB; at most 1 GiB).
    #[arg(long, value_name = "SIZE", value_parser = model_size,
          default_value_t = Size(DEFAULT_MODEL_BYTES))]
    pub(crate) model_size: Size,
    /// Longest wait for one reply, in seconds.
    #[arg(long, value_name = "SECONDS", value_parser = secs,
          default_value_t = Seconds(DEFAULT_TIMEOUT))]
    pub(crate) timeout: Seconds,
}

/// Parses the number of nodes (1 to 100).
fn node_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=100).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a number of nodes from 1 to 100")),
    }
}

impl Default for DemoArgs {
    fn default() -> DemoArgs {
        DemoArgs {
            nodes: DEFAULT_NODES,
            pings: DEFAULT_PINGS,
            rounds: DEFAULT_ROUNDS,
            model_size: Size(DEFAULT_MODEL_BYTES),
            timeout: Seconds(DEFAULT_TIMEOUT),
        }
    }
}

/// Runs the demo; an error when any request went without its reply.
pub(crate) fn run(args: &DemoArgs) -> Result<(), String> {
    runtime::init_logging("error");
    runtime::block_on(async {
        tokio::select! {
            r = demo(args) => r,
            _ = runtime::ctrl_c() => Err("interrupted".to_string()),
        }
    })
}

/// Counts of one kind of request.
#[derive(Debug, Default)]
struct Phase {
    requests: u64,
    replies: u64,
    bytes: u64,
    rtts: RoundTrips,
    errors: Vec<String>,
}

impl Phase {
    fn record(&mut self, outcome: Result<(Duration, u64), String>) {
        self.requests += 1;
        match outcome {
            Ok((rtt, bytes)) => {
                self.replies += 1;
                self.bytes += bytes;
                self.rtts.record(rtt);
            }
            Err(e) => self.errors.push(e),
        }
    }

    fn merge(&mut self, other: Phase) {
        self.requests += other.requests;
        self.replies += other.replies;
        self.bytes += other.bytes;
        self.rtts.extend(&other.rtts);
        self.errors.extend(other.errors);
    }
}

/// Prints a line above the progress bar (or plainly when it is hidden).
fn say(pb: &ProgressBar, line: String) {
    pb.suspend(|| println!("{line}"));
}

struct Run<'a> {
    args: &'a DemoArgs,
    researcher: Addr<Researcher>,
    researcher_id: String,
    nodes: Vec<String>,
    pb: ProgressBar,
}

impl Run<'_> {
    /// Sends `message` to `node` and checks the reply's class; the round
    /// trip and the bytes of both messages.
    async fn request(
        &self,
        node: &str,
        message: Envelope,
        expected: &str,
    ) -> Result<(Duration, u64, Envelope), String> {
        let request_bytes = message.value().encoded_len() as u64;
        let sent = Instant::now();
        let reply = self
            .researcher
            .send(Request {
                node_id: node.to_string(),
                message,
                timeout: self.args.timeout.0,
            })
            .await
            .map_err(|e| format!("the researcher is gone: {e}"))?
            .map_err(|e| ErrorChain(&e).to_string())?;
        let rtt = sent.elapsed();
        self.pb.inc(1);
        if reply.class() != expected {
            let why = reply.get("extra_msg").and_then(Value::as_str).unwrap_or("");
            return Err(format!("{node} answered with a {} {why}", reply.class()));
        }
        let bytes = request_bytes + reply.value().encoded_len() as u64;
        Ok((rtt, bytes, reply))
    }

    async fn pings(&self, count: u32) -> Phase {
        let per_node = self.nodes.iter().map(|node| async move {
            let mut phase = Phase::default();
            for _ in 0..count {
                let outcome = match Envelope::from_typed(&PingRequest::new(&self.researcher_id)) {
                    Ok(m) => self
                        .request(node, m, "PingReply")
                        .await
                        .map(|(rtt, bytes, _)| (rtt, bytes)),
                    Err(e) => Err(e.to_string()),
                };
                phase.record(outcome);
            }
            phase
        });
        let mut total = Phase::default();
        for p in join_all(per_node).await {
            total.merge(p);
        }
        total
    }

    async fn search(&self) -> (Phase, u64) {
        let per_node = self.nodes.iter().map(|node| async move {
            let search = SearchRequest::new(&self.researcher_id, vec![DEMO_TAG.to_string()]);
            let message = Envelope::from_typed(&search).map_err(|e| e.to_string())?;
            let (rtt, bytes, reply) = self.request(node, message, "SearchReply").await?;
            let found = reply.get("count").and_then(Value::as_u64).unwrap_or(0);
            Ok((rtt, bytes, found))
        });
        let mut phase = Phase::default();
        let mut found = 0;
        for r in join_all(per_node).await {
            phase.record(r.map(|(rtt, bytes, n)| {
                found += n;
                (rtt, bytes)
            }));
        }
        (phase, found)
    }

    async fn train_round(&self, round: u32, params: &Value) -> Phase {
        let per_node = self.nodes.iter().map(|node| async move {
            let mut train = TrainRequest::new(
                &self.researcher_id,
                "demo_experiment",
                format!("dataset_demo-data-{node}"),
                params.clone(),
            );
            train.round = u64::from(round);
            let message = Envelope::from_typed(&train).map_err(|e| e.to_string())?;
            let (rtt, bytes, _) = self.request(node, message, "TrainReply").await?;
            Ok((rtt, bytes))
        });
        let mut phase = Phase::default();
        for r in join_all(per_node).await {
            phase.record(r);
        }
        phase
    }
}

/// Waits until `count` distinct nodes announced themselves (bounded).
async fn wait_nodes(
    events: &mut mpsc::Receiver<ResearcherEvent>,
    count: usize,
) -> Result<Vec<String>, String> {
    let mut nodes: Vec<String> = Vec::new();
    let wait = async {
        while nodes.len() < count {
            match events.recv().await {
                Some(ResearcherEvent::NodeConnected { node_id }) if !nodes.contains(&node_id) => {
                    nodes.push(node_id)
                }
                Some(_) => {}
                None => return,
            }
        }
    };
    match tokio::time::timeout(CONNECT_WAIT, wait).await {
        Ok(()) if nodes.len() == count => {
            nodes.sort();
            Ok(nodes)
        }
        _ => Err(format!(
            "only {} of {count} nodes connected within {}",
            nodes.len(),
            stats::duration(CONNECT_WAIT)
        )),
    }
}

fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {msg:32} [{bar:30}] {pos}/{len} replies {elapsed}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

/// The demo researcher's state directory, removed when the demo ends.
struct DemoState(std::path::PathBuf);

impl DemoState {
    fn create() -> Result<DemoState, String> {
        let dir = std::env::temp_dir().join(format!("fedroute-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(DemoState(dir))
    }
}

impl Drop for DemoState {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn demo(args: &DemoArgs) -> Result<(), String> {
    tls::install_crypto_provider();
    let researcher_id = tls::new_researcher_id();
    let mut config = ResearcherConfig::default();
    config.listen.address = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    config.listen.researcher_id = Some(researcher_id.clone());
    // The researcher keeps its identity here, to rotate it at the restart.
    let state = DemoState::create()?;
    config.state_dir = Some(state.0.clone());
    let (tx, mut events) = mpsc::channel(EVENT_QUEUE);
    let tap = EventTap::new(tx).start();
    let started = Instant::now();
    let handle = researcher::start(config.clone(), Some(tap.clone().recipient()))
        .await
        .map_err(|e| format!("cannot start the researcher: {}", ErrorChain(&e)))?;
    let addr = handle.local_addr;
    println!(
        "fedroute demo: researcher {researcher_id} on {addr} (TLS, generated certificate), {} nodes",
        args.nodes
    );

    let mut controllers: Vec<Addr<Controller>> = Vec::new();
    for i in 1..=args.nodes {
        let responder = Responder {
            node_id: format!("NODE_demo_{i}"),
            node_name: format!("demo node {i}"),
            datasets: vec![DatasetSpec {
                name: format!("demo-data-{i}"),
                tags: vec![DEMO_TAG.to_string(), format!("site{i}")],
            }],
            echo_train: true,
            reply_delay: std::time::Duration::ZERO,
        };
        let endpoint = ResearcherEndpoint::trust_on_first_use(addr.ip().to_string(), addr.port());
        let (controller, _handler) =
            ReferenceNode::start(responder, vec![endpoint], ControllerConfig::default(), None)
                .map_err(|e| format!("cannot start a demo node: {}", ErrorChain(&e)))?;
        controllers.push(controller);
    }
    let nodes = wait_nodes(&mut events, args.nodes).await?;
    println!(
        "  {} nodes connected in {} (trust on first use)",
        nodes.len(),
        stats::duration(started.elapsed())
    );

    let n = nodes.len() as u64;
    let pings_before = args.pings.div_ceil(2);
    let pings_after = args.pings - pings_before;
    let rounds_before = args.rounds.div_ceil(2);
    let total = n * (u64::from(args.pings) + 1 + u64::from(args.rounds));
    let mut run = Run {
        args,
        researcher: handle.addr.clone(),
        researcher_id: researcher_id.clone(),
        nodes,
        pb: progress_bar(total),
    };
    let model = Bytes::from(
        (0..args.model_size.0)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let params = Value::map([("weights", NdArray::u8(model).to_value())]);

    let mut ping = Phase::default();
    let mut train = Phase::default();
    let mut train_time = Duration::ZERO;

    run.pb.set_message("ping");
    let p = run.pings(pings_before).await;
    say(
        &run.pb,
        format!(
            "  ping: {} round trips, {}",
            p.replies,
            p.rtts.clone().summary()
        ),
    );
    ping.merge(p);

    run.pb.set_message("search");
    let (search, found) = run.search().await;
    say(
        &run.pb,
        format!("  search {DEMO_TAG:?}: {found} datasets found on {n} nodes"),
    );

    let round_line = |round: u32, phase: &Phase, took: Duration| {
        format!(
            "  train round {round}/{}: {n} x {} down and up, {}/{n} replies in {}",
            args.rounds,
            stats::bytes(args.model_size.0 as u64),
            phase.replies,
            stats::duration(took)
        )
    };
    for round in 1..=rounds_before {
        run.pb.set_message(format!("train round {round}"));
        let t = Instant::now();
        let p = run.train_round(round, &params).await;
        train_time += t.elapsed();
        say(&run.pb, round_line(round, &p, t.elapsed()));
        train.merge(p);
    }

    // Restart the researcher: same port, same id, a rotated certificate
    // (a new key, with a proof by the old one that the nodes check).
    run.pb.set_message("researcher restart");
    handle
        .shutdown()
        .await
        .map_err(|e| format!("cannot stop the researcher: {}", ErrorChain(&e)))?;
    tls::IdentityDir::new(&state.0)
        .rotate(&[&config.listen.certificate_host()])
        .map_err(|e| {
            format!(
                "cannot rotate the researcher certificate: {}",
                ErrorChain(&e)
            )
        })?;
    while events.try_recv().is_ok() {}
    say(
        &run.pb,
        format!("  researcher stopped; restarting it on {addr}"),
    );
    config.listen.address = addr;
    let handle2 = researcher::start(config.clone(), Some(tap.recipient()))
        .await
        .map_err(|e| {
            format!(
                "cannot restart the researcher on {addr}: {}",
                ErrorChain(&e)
            )
        })?;
    let listening = Instant::now();
    let back = wait_nodes(&mut events, args.nodes).await?;
    let reconnect = listening.elapsed();
    let new_cert = handle2.cert_der != handle.cert_der;
    let mut by_proof = 0;
    for c in &controllers {
        if let Ok(links) = c.send(Status).await {
            by_proof += links
                .iter()
                .filter(|l| l.certificate_accepted == Some(tls::Acceptance::RotationProof))
                .count();
        }
    }
    say(
        &run.pb,
        format!(
            "  researcher {} back on {} ({}); {}/{} nodes reconnected in {}",
            handle2.researcher_id,
            handle2.local_addr,
            if new_cert {
                "rotated certificate"
            } else {
                "same certificate"
            },
            back.len(),
            args.nodes,
            stats::duration(reconnect)
        ),
    );
    run.researcher = handle2.addr.clone();

    for round in rounds_before + 1..=args.rounds {
        run.pb.set_message(format!("train round {round}"));
        let t = Instant::now();
        let p = run.train_round(round, &params).await;
        train_time += t.elapsed();
        say(&run.pb, round_line(round, &p, t.elapsed()));
        train.merge(p);
    }
    run.pb.set_message("ping");
    let p = run.pings(pings_after).await;
    say(
        &run.pb,
        format!(
            "  ping: {} round trips, {}",
            p.replies,
            p.rtts.clone().summary()
        ),
    );
    ping.merge(p);
    run.pb.finish_and_clear();

    for c in &controllers {
        let _ = c
            .send(Shutdown {
                deadline: NODE_SHUTDOWN,
            })
            .await;
    }
    let _ = handle2.shutdown().await;

    let mut all = Phase::default();
    let train_bytes = train.bytes;
    let mut rows = vec![
        ("ping".to_string(), ping),
        ("search".to_string(), search),
        (
            format!("train ({})", stats::bytes(args.model_size.0 as u64)),
            train,
        ),
    ];
    println!();
    println!(
        "{:<18} {:>8} {:>8} {:>12} {:>10} {:>10}",
        "phase", "requests", "replies", "bytes", "p50", "p99"
    );
    let mut errors = Vec::new();
    for (name, phase) in rows.iter_mut() {
        println!("{}", row(name, phase));
        errors.extend(phase.errors.iter().cloned());
    }
    for (_, phase) in rows {
        all.merge(phase);
    }
    println!("{}", row("total", &mut all));
    println!(
        "researcher restart: {}/{} nodes reconnected in {} (same id, {}; {by_proof}/{} nodes accepted the rotated certificate by its proof)",
        back.len(),
        args.nodes,
        stats::duration(reconnect),
        if new_cert {
            "new certificate"
        } else {
            "same certificate"
        },
        args.nodes
    );
    if !train_time.is_zero() {
        println!(
            "model transfer: {} in {}, {:.1} MB/s (both directions, {} nodes at once)",
            stats::bytes(train_bytes),
            stats::duration(train_time),
            train_bytes as f64 / 1e6 / train_time.as_secs_f64(),
            args.nodes
        );
    }
    let lost = all.requests - all.replies;
    println!("{lost} lost");
    for e in errors.iter().take(5) {
        println!("  {e}");
    }
    if lost == 0 {
        Ok(())
    } else {
        Err(format!(
            "{lost} of {} requests got no (expected) reply",
            all.requests
        ))
    }
}

fn row(name: &str, phase: &mut Phase) -> String {
    let p = |rt: &mut RoundTrips, q| rt.percentile(q).map_or("-".to_string(), stats::duration);
    format!(
        "{:<18} {:>8} {:>8} {:>12} {:>10} {:>10}",
        name,
        phase.requests,
        phase.replies,
        stats::bytes(phase.bytes),
        p(&mut phase.rtts, 50.0),
        p(&mut phase.rtts, 99.0)
    )
}
