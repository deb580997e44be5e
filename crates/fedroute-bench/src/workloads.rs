//! The workloads of [`super::run`], each producing [`BenchRow`]s.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;

use super::child::{NodeChild, ResearcherChild};
use super::mem;
use super::rig::{BenchNodeHandle, BenchResearcher, TrainReplySize};
use super::stats::{mb_per_s, median, per_s, percentile};
use super::wire_limit::WireRig;
use super::{BenchError, BenchOptions, BenchRow, SoakReport};
use fedroute::node::{PollMode, ResearcherEndpoint};
use fedroute::tls::TrustPolicy;
use fedroute::ErrorChain;

const MIB: usize = 1 << 20;
/// How long a ping right after a researcher restart may take.
const AFTER_RESTART_TIMEOUT: Duration = Duration::from_secs(5);

/// How much each workload does (from [`BenchOptions`]).
#[derive(Debug, Clone)]
pub struct Plan {
    /// Runs of each figure (the median is reported).
    pub runs: usize,
    /// Runs of each 100 MiB figure.
    pub big_runs: usize,
    /// Unary RPCs per wire-limit run.
    pub unary_calls: u64,
    /// Ping-pongs per wire-limit run.
    pub ping_pongs: u64,
    /// Round trips per sequential-ping run, unary mode.
    pub pings_unary: u64,
    /// Round trips per sequential-ping run, streaming mode.
    pub pings_streaming: u64,
    /// Round trips per durable sequential-ping run (both state
    /// directories on: every round trip waits for disk twice).
    pub pings_durable: u64,
    /// Requests per in-flight run.
    pub in_flight_requests: u64,
    /// Transfer sizes in MiB.
    pub sizes_mib: Vec<usize>,
    /// Rounds of the 100 MiB memory drift check.
    pub memory_rounds: usize,
    /// Nodes of the fan-out.
    pub fan_out_nodes: usize,
    /// Researcher outages of workload 5 (kill, wait this long, restart).
    pub outages: Vec<Duration>,
    /// Runs of each outage length.
    pub reconnects: usize,
    /// Workloads to run (1-6).
    pub only: Vec<u8>,
    /// Bytes of receive buffers kept by the researcher and the nodes of workload 3.
    pub receive_buffer_bytes: usize,
}

impl Plan {
    /// The plan for `opts` (quick or default).
    pub fn new(opts: &BenchOptions) -> Plan {
        let receive_buffer_bytes = opts
            .receive_buffer_bytes
            .unwrap_or(fedroute::config::ReceiveLimits::DEFAULT_BUFFER_BYTES);
        if opts.quick {
            Plan {
                runs: 3,
                big_runs: 2,
                unary_calls: 500,
                ping_pongs: 2_000,
                pings_unary: 300,
                pings_streaming: 1_000,
                pings_durable: 100,
                in_flight_requests: 300,
                sizes_mib: vec![1, 16, 100],
                memory_rounds: 3,
                fan_out_nodes: 200,
                outages: vec![Duration::from_millis(500), Duration::from_secs(2)],
                reconnects: 1,
                only: opts.only.clone(),
                receive_buffer_bytes,
            }
        } else {
            Plan {
                runs: 5,
                big_runs: 5,
                unary_calls: 2_000,
                ping_pongs: 10_000,
                pings_unary: 2_000,
                pings_streaming: 5_000,
                pings_durable: 500,
                in_flight_requests: 2_000,
                sizes_mib: vec![1, 16, 100],
                memory_rounds: 10,
                fan_out_nodes: 1_000,
                outages: vec![
                    Duration::from_millis(500),
                    Duration::from_secs(2),
                    Duration::from_secs(10),
                ],
                reconnects: 5,
                only: opts.only.clone(),
                receive_buffer_bytes,
            }
        }
    }

    fn wants(&self, n: u8) -> bool {
        self.only.is_empty() || self.only.contains(&n)
    }

    fn max_bytes(&self) -> usize {
        self.sizes_mib.iter().copied().max().unwrap_or(1) * MIB
    }
}

/// The wire limits of one run (workload 6).
#[derive(Debug, Clone, Default)]
pub(crate) struct WireLimits {
    /// Plain unary RPCs per second.
    pub unary_rate: f64,
    /// Ping-pongs per second on one bidirectional stream.
    pub ping_pong_rate: f64,
    /// MB/s down, per size in MiB.
    pub down: Vec<(usize, f64)>,
    /// MB/s up, per size in MiB.
    pub up: Vec<(usize, f64)>,
}

impl WireLimits {
    fn down_of(&self, mib: usize) -> Option<f64> {
        self.down.iter().find(|(m, _)| *m == mib).map(|(_, r)| *r)
    }
    fn up_of(&self, mib: usize) -> Option<f64> {
        self.up.iter().find(|(m, _)| *m == mib).map(|(_, r)| *r)
    }
    /// MB/s of `mib` down then `mib` up, both directions counted.
    fn echo_of(&self, mib: usize) -> Option<f64> {
        let bytes = (mib * MIB) as f64 / 1e6;
        let (d, u) = (self.down_of(mib)?, self.up_of(mib)?);
        Some(2.0 * bytes / (bytes / d + bytes / u))
    }
}

type Output = (Vec<BenchRow>, Vec<String>, Option<SoakReport>);

fn row(workload: &str, mode: &str, metric: &str, unit: &str, runs: Vec<f64>) -> BenchRow {
    BenchRow {
        workload: workload.to_owned(),
        mode: mode.to_owned(),
        metric: metric.to_owned(),
        unit: unit.to_owned(),
        median: median(&runs),
        runs,
        detail: String::new(),
        wire_limit: None,
        ratio: None,
        target: None,
        met: None,
    }
}

impl BenchRow {
    fn against(mut self, limit: Option<f64>) -> BenchRow {
        if let Some(l) = limit.filter(|l| *l > 0.0) {
            self.wire_limit = Some(l);
            self.ratio = Some(self.median / l);
        }
        self
    }
    fn target(mut self, text: &str, met: bool) -> BenchRow {
        self.target = Some(text.to_owned());
        self.met = Some(met);
        self
    }
    fn detail(mut self, text: String) -> BenchRow {
        self.detail = text;
        self
    }
}

/// All workloads of `plan`.
pub(crate) async fn all(plan: Plan) -> Result<Output, BenchError> {
    let mut rows = Vec::new();
    let mut notes = vec![
        "one process, one actix System (current-thread tokio runtime): researcher, nodes and \
         bare probes share one core"
            .to_owned(),
        "MB/s are 10^6 bytes per second; echo counts both directions; ratios are to the wire \
         limits (workload 6) measured in this same run"
            .to_owned(),
    ];
    let blob = Bytes::from(vec![0xa5u8; plan.max_bytes()]);

    let wire = wire_limits(&plan, &mut rows).await?;

    for mode in [PollMode::Unary, PollMode::Streaming] {
        if plan.wants(1) || plan.wants(2) || plan.wants(3) {
            let r = one_mode(&plan, mode, &blob, &wire, &mut rows, &mut notes).await;
            failed(&mut notes, &format!("workloads 1-3 ({})", mode.as_str()), r);
        }
    }
    if plan.wants(1) || plan.wants(3) {
        let r = durable(&plan, &blob, &mut rows, &mut notes).await;
        failed(&mut notes, "durable workloads 1 and 3", r);
    }
    if plan.wants(3) && super::child::can_spawn() {
        let r = memory_separate(&plan, &blob, &mut notes).await;
        failed(&mut notes, "memory (workload 3)", r.map(|r| rows.extend(r)));
    }
    if plan.wants(4) {
        let r = fan_out(&plan, &mut notes).await;
        failed(&mut notes, "workload 4", r.map(|r| rows.extend(r)));
    }
    if plan.wants(5) {
        let r = if super::child::can_spawn() {
            outages(&plan, &blob, &mut rows).await
        } else {
            notes.push(
                "reconnect: this executable cannot be re-run as a researcher process, so the \
                 researcher was restarted in this process (an outage of milliseconds)"
                    .to_owned(),
            );
            reconnect(&plan, &blob, &mut rows).await
        };
        failed(&mut notes, "workload 5", r);
    }
    Ok((rows, notes, None))
}

/// Records a failed workload in the notes (the others still run).
fn failed(notes: &mut Vec<String>, what: &str, r: Result<(), BenchError>) {
    if let Err(e) = r {
        let e = ErrorChain(&e);
        log::error!("bench: {what} failed: {e}");
        notes.push(format!("FAILED: {what}: {e}"));
    }
}

/// Workloads 1-3 in one poll mode, on one researcher and one node.
async fn one_mode(
    plan: &Plan,
    mode: PollMode,
    blob: &Bytes,
    wire: &WireLimits,
    rows: &mut Vec<BenchRow>,
    notes: &mut Vec<String>,
) -> Result<(), BenchError> {
    let mut researcher = BenchResearcher::start_buffers(plan.receive_buffer_bytes).await?;
    let node_id = format!("NODE_bench_{}", mode.as_str());
    let node = BenchNodeHandle::start_tracked(
        node_id.clone(),
        researcher.endpoint(),
        mode,
        blob.clone(),
        None,
        plan.receive_buffer_bytes,
    )
    .await?;
    researcher
        .wait_connected(std::slice::from_ref(&node_id), super::rig::CONNECT_TIMEOUT)
        .await?;
    // Warm up.
    for _ in 0..50 {
        researcher.ping(&node_id).await?;
    }
    let result = async {
        if plan.wants(1) {
            rows.push(sequential_ping(plan, &researcher, &node_id, mode, wire).await?);
        }
        if plan.wants(2) {
            rows.extend(in_flight(plan, &researcher, &node_id, mode, wire).await?);
        }
        if plan.wants(3) {
            rows.extend(transfer(plan, &researcher, &node_id, mode, blob, wire).await?);
            if mode == PollMode::Streaming && !super::child::can_spawn() {
                rows.extend(memory(plan, &researcher, &node_id, blob, notes).await?);
            }
        }
        Ok(())
    }
    .await;
    node.shutdown().await;
    researcher.handle.shutdown().await?;
    result
}

/// Workloads 1 and 3 with both state directories on (the researcher's
/// durable requests, made with `Submit`, and the node's durable outbox):
/// sequential pings and the largest echo, in streaming mode, with the
/// fsyncs they cost (store commits per reply on each side).
async fn durable(
    plan: &Plan,
    blob: &Bytes,
    rows: &mut Vec<BenchRow>,
    notes: &mut Vec<String>,
) -> Result<(), BenchError> {
    let dir = super::temp_dir::TempDir::new("fedroute-bench-durable")?;
    let mode = PollMode::Streaming;
    let mut researcher =
        BenchResearcher::start_durable(dir.path().join("researcher"), plan.receive_buffer_bytes)
            .await?;
    let node_id = "NODE_bench_durable".to_owned();
    let node = BenchNodeHandle::start_durable(
        node_id.clone(),
        researcher.endpoint(),
        mode,
        blob.clone(),
        dir.path().join("node"),
        plan.receive_buffer_bytes,
    )
    .await?;
    researcher
        .wait_connected(std::slice::from_ref(&node_id), super::rig::CONNECT_TIMEOUT)
        .await?;
    let result = async {
        // Warm up (and check both stores are on).
        for _ in 0..20 {
            researcher.ping_submitted(&node_id).await?;
        }
        let fsyncs = Fsyncs::start(&researcher, &node).await?;
        if plan.wants(1) {
            let n = plan.pings_durable;
            let mut runs = Vec::new();
            let mut latencies = Vec::with_capacity(n as usize * plan.runs);
            let before = fsyncs.now(&researcher, &node).await?;
            for _ in 0..plan.runs {
                let start = Instant::now();
                for _ in 0..n {
                    latencies.push(researcher.ping_submitted(&node_id).await?);
                }
                runs.push(per_s(n, start.elapsed()));
            }
            let after = fsyncs.now(&researcher, &node).await?;
            let r = row(
                "1 sequential ping durable",
                mode.as_str(),
                "round trips/s",
                "1/s",
                runs,
            );
            let versus = versus_memory(rows, "1 sequential ping", mode, "round trips/s", r.median);
            rows.push(r.detail(format!(
                "p50 {:.3} ms, p99 {:.3} ms; {versus}; {}",
                percentile(&latencies, 50.0).as_secs_f64() * 1e3,
                percentile(&latencies, 99.0).as_secs_f64() * 1e3,
                Fsyncs::per_reply(&before, &after, n * plan.runs as u64)
            )));
        }
        if plan.wants(3) {
            let bytes = plan.max_bytes();
            let mut runs = Vec::new();
            let before = fsyncs.now(&researcher, &node).await?;
            for _ in 0..plan.big_runs {
                let t = researcher
                    .train_submitted(&node_id, blob, bytes, TrainReplySize::Echo)
                    .await?;
                runs.push(mb_per_s(2 * bytes as u64, t));
            }
            let after = fsyncs.now(&researcher, &node).await?;
            let metric = format!("{} MiB echo MB/s", bytes / MIB);
            let r = row("3 transfer durable", mode.as_str(), &metric, "MB/s", runs);
            let versus = versus_memory(rows, "3 transfer", mode, &metric, r.median);
            rows.push(r.detail(format!(
                "{versus}; {}",
                Fsyncs::per_reply(&before, &after, plan.big_runs as u64)
            )));
        }
        Ok::<(), BenchError>(())
    }
    .await;
    node.shutdown().await;
    researcher.handle.shutdown().await?;
    notes.push(
        "durable: researcher (Submit, ResearcherConfig::state_dir) and node \
         (ControllerConfig::state_dir) stores in a temporary directory on this machine's disk; \
         a commit is one redb transaction (one fsync, shared by what waits at that moment); \
         payloads of 64 KiB and more also get a file of their own (written and fsynced apart); \
         their detail compares with the in-memory figure of this run (same mode)"
            .to_owned(),
    );
    result
}

/// `x% of in memory (N)`: `median` against the row `workload` / `mode` /
/// `metric` measured earlier in this run, if any.
fn versus_memory(
    rows: &[BenchRow],
    workload: &str,
    mode: PollMode,
    metric: &str,
    median: f64,
) -> String {
    rows.iter()
        .find(|r| r.workload == workload && r.mode == mode.as_str() && r.metric == metric)
        .filter(|r| r.median > 0.0)
        .map(|r| {
            format!(
                "{:.1}% of in memory ({})",
                100.0 * median / r.median,
                super::fmt_num(r.median)
            )
        })
        .unwrap_or_else(|| "in-memory figure not measured".to_owned())
}

/// Store commits and items on both sides, to count fsyncs per reply.
#[derive(Debug, Clone, Copy, Default)]
struct StoreCounts {
    researcher: Option<fedroute::StoreStats>,
    node: Option<fedroute::StoreStats>,
}

/// Reads [`StoreCounts`]; fails when a side has no store (the durable
/// figures would then say nothing).
struct Fsyncs;

impl Fsyncs {
    async fn start(
        researcher: &BenchResearcher,
        node: &BenchNodeHandle,
    ) -> Result<Fsyncs, BenchError> {
        let c = Fsyncs.now(researcher, node).await?;
        match (c.researcher, c.node) {
            (Some(_), Some(_)) => Ok(Fsyncs),
            (r, n) => Err(BenchError::Setup {
                what: format!(
                    "durable mode without a store: researcher store {}, node store {}",
                    if r.is_some() { "on" } else { "off" },
                    if n.is_some() { "on" } else { "off" }
                ),
            }),
        }
    }

    async fn now(
        &self,
        researcher: &BenchResearcher,
        node: &BenchNodeHandle,
    ) -> Result<StoreCounts, BenchError> {
        Ok(StoreCounts {
            researcher: researcher.store_stats().await?,
            node: node.store_stats().await?,
        })
    }

    /// `researcher: C commits for I items (x per reply); node: ...`.
    fn per_reply(before: &StoreCounts, after: &StoreCounts, replies: u64) -> String {
        let side = |name: &str,
                    b: Option<fedroute::StoreStats>,
                    a: Option<fedroute::StoreStats>| match (b, a) {
            (Some(b), Some(a)) => {
                let commits = a.commits.saturating_sub(b.commits);
                let items = a.items.saturating_sub(b.items);
                let removals = a.removals.saturating_sub(b.removals);
                format!(
                    "{name} store {commits} commits for {items} items + {removals} removals \
                         ({:.2} commits per reply)",
                    commits as f64 / replies.max(1) as f64
                )
            }
            _ => format!("{name} store off"),
        };
        format!(
            "{}; {}",
            side("researcher", before.researcher, after.researcher),
            side("node", before.node, after.node)
        )
    }
}

/// Workload 6.
async fn wire_limits(plan: &Plan, rows: &mut Vec<BenchRow>) -> Result<WireLimits, BenchError> {
    let name = "6 wire limit";
    let rig = WireRig::start(plan.max_bytes()).await?;
    // Warm up.
    rig.unary(100).await?;
    rig.ping_pong(100).await?;
    rig.down(MIB).await?;
    rig.up(MIB).await?;
    let mut limits = WireLimits::default();

    let mut runs = Vec::new();
    for _ in 0..plan.runs {
        runs.push(per_s(plan.unary_calls, rig.unary(plan.unary_calls).await?));
    }
    let r = row(name, "-", "unary RPCs/s", "1/s", runs);
    limits.unary_rate = r.median;
    rows.push(r);

    let mut runs = Vec::new();
    for _ in 0..plan.runs {
        runs.push(per_s(
            plan.ping_pongs,
            rig.ping_pong(plan.ping_pongs).await?,
        ));
    }
    let r = row(name, "-", "bidi ping-pongs/s", "1/s", runs);
    limits.ping_pong_rate = r.median;
    rows.push(r);

    for &mib in &plan.sizes_mib {
        let n = if mib >= 100 { plan.big_runs } else { plan.runs };
        let mut down = Vec::new();
        let mut up = Vec::new();
        for _ in 0..n {
            down.push(mb_per_s((mib * MIB) as u64, rig.down(mib * MIB).await?));
            up.push(mb_per_s((mib * MIB) as u64, rig.up(mib * MIB).await?));
        }
        let d = row(name, "-", &format!("{mib} MiB down MB/s"), "MB/s", down);
        let u = row(name, "-", &format!("{mib} MiB up MB/s"), "MB/s", up);
        limits.down.push((mib, d.median));
        limits.up.push((mib, u.median));
        rows.push(d);
        rows.push(u);
    }
    Ok(limits)
}

/// Workload 1.
async fn sequential_ping(
    plan: &Plan,
    researcher: &BenchResearcher,
    node_id: &str,
    mode: PollMode,
    wire: &WireLimits,
) -> Result<BenchRow, BenchError> {
    let n = match mode {
        PollMode::Unary => plan.pings_unary,
        _ => plan.pings_streaming,
    };
    let mut runs = Vec::new();
    let mut latencies = Vec::with_capacity(n as usize * plan.runs);
    for _ in 0..plan.runs {
        let start = Instant::now();
        for _ in 0..n {
            latencies.push(researcher.ping(node_id).await?);
        }
        runs.push(per_s(n, start.elapsed()));
    }
    let r = row(
        "1 sequential ping",
        mode.as_str(),
        "round trips/s",
        "1/s",
        runs,
    )
    .detail(format!(
        "p50 {:.3} ms, p99 {:.3} ms",
        percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        percentile(&latencies, 99.0).as_secs_f64() * 1e3
    ));
    Ok(match mode {
        PollMode::Unary => {
            let r = r.against(Some(wire.unary_rate / 2.0));
            let met = r.median >= 2500.0 && r.ratio.unwrap_or(0.0) >= 0.55;
            r.target(">= 2500/s and >= 55% of half the unary RPC rate", met)
        }
        _ => {
            let r = r.against(Some(wire.ping_pong_rate));
            let met = r.median >= 12_000.0 && r.ratio.unwrap_or(0.0) >= 0.40;
            r.target(">= 12000/s and >= 40% of the ping-pong rate", met)
        }
    })
}

/// Workload 2.
async fn in_flight(
    plan: &Plan,
    researcher: &BenchResearcher,
    node_id: &str,
    mode: PollMode,
    wire: &WireLimits,
) -> Result<Vec<BenchRow>, BenchError> {
    let mut rows = Vec::new();
    for k in [4u64, 16, 64] {
        let per_worker = (plan.in_flight_requests / k).max(1);
        let mut runs = Vec::new();
        for _ in 0..plan.runs {
            let start = Instant::now();
            let workers = (0..k).map(|_| async {
                for _ in 0..per_worker {
                    researcher.ping(node_id).await?;
                }
                Ok::<(), BenchError>(())
            });
            for r in join_all(workers).await {
                r?;
            }
            runs.push(per_s(per_worker * k, start.elapsed()));
        }
        let limit = match mode {
            PollMode::Unary => wire.unary_rate / 2.0,
            _ => wire.ping_pong_rate,
        };
        rows.push(
            row(
                &format!("2 in flight K={k}"),
                mode.as_str(),
                "requests/s",
                "1/s",
                runs,
            )
            .against(Some(limit)),
        );
    }
    Ok(rows)
}

/// Workload 3: transfers.
async fn transfer(
    plan: &Plan,
    researcher: &BenchResearcher,
    node_id: &str,
    mode: PollMode,
    blob: &Bytes,
    wire: &WireLimits,
) -> Result<Vec<BenchRow>, BenchError> {
    let mut rows = Vec::new();
    for &mib in &plan.sizes_mib {
        let bytes = mib * MIB;
        let n = if mib >= 100 { plan.big_runs } else { plan.runs };
        for (what, down, reply, counted) in [
            ("down", bytes, TrainReplySize::Empty, bytes),
            ("up", 0, TrainReplySize::Bytes(bytes), bytes),
            ("echo", bytes, TrainReplySize::Echo, 2 * bytes),
        ] {
            let mut runs = Vec::new();
            for _ in 0..n {
                let t = researcher.train(node_id, blob, down, reply).await?;
                runs.push(mb_per_s(counted as u64, t));
            }
            let limit = match what {
                "down" => wire.down_of(mib),
                "up" => wire.up_of(mib),
                _ => wire.echo_of(mib),
            };
            let mut r = row(
                "3 transfer",
                mode.as_str(),
                &format!("{mib} MiB {what} MB/s"),
                "MB/s",
                runs,
            )
            .against(limit);
            if what == "echo" && mib >= 100 {
                let met = r.ratio.unwrap_or(0.0) >= 0.70;
                r = r.target(">= 70% of the wire limit", met);
            }
            rows.push(r);
        }
    }
    Ok(rows)
}

/// Workload 3: memory during the 100 MiB echo (both sides in this process).
async fn memory(
    plan: &Plan,
    researcher: &BenchResearcher,
    node_id: &str,
    blob: &Bytes,
    notes: &mut Vec<String>,
) -> Result<Vec<BenchRow>, BenchError> {
    let bytes = plan.max_bytes();
    let Some(baseline) = mem::rss_bytes() else {
        notes.push("memory not measured: /proc/self/status unavailable".to_owned());
        return Ok(Vec::new());
    };
    let can_reset = mem::reset_peak();
    let baseline_peak = mem::peak_rss_bytes().unwrap_or(baseline);
    let mut after = Vec::new();
    let mut peaks = Vec::new();
    for _ in 0..plan.memory_rounds {
        if can_reset {
            mem::reset_peak();
        }
        researcher
            .train(node_id, blob, bytes, TrainReplySize::Echo)
            .await?;
        let peak = mem::peak_rss_bytes().unwrap_or(0);
        peaks.push(peak.saturating_sub(baseline) as f64 / bytes as f64);
        after.push(mem::rss_bytes().unwrap_or(0));
    }
    let name = format!("3 memory {} MiB echo", bytes / MIB);
    let first_peak = peaks.first().copied().unwrap_or(0.0);
    let mut rows = vec![row(
        &name,
        "streaming",
        "peak RSS above start, both sides",
        "x payload",
        peaks,
    )
    .detail(format!(
        "baseline {:.1} MiB (payload buffer of the bench included); first round {:.2} x",
        mem::mib(baseline),
        first_peak
    ))
    .target(
        "<= 1.5 x per side (both sides here: <= 3.0 x)",
        first_peak <= 3.0,
    )];
    if !can_reset {
        notes.push(format!(
            "VmHWM could not be reset; peaks are since process start (start peak {:.1} MiB)",
            mem::mib(baseline_peak)
        ));
    }
    if let (Some(first), Some(last)) = (after.first(), after.last()) {
        let drift = (*last as f64 - *first as f64) / *first as f64;
        rows.push(
            row(
                &name,
                "streaming",
                &format!("RSS after round {} vs after round 1", after.len()),
                "%",
                vec![drift * 100.0],
            )
            .detail(format!(
                "after round 1 {:.1} MiB, after round {} {:.1} MiB",
                mem::mib(*first),
                after.len(),
                mem::mib(*last)
            ))
            .target("within 10%", drift.abs() <= 0.10),
        );
    }
    notes.push(
        "memory: VmRSS/VmHWM of this one process (researcher and node together), peak reset \
         with /proc/self/clear_refs before each round"
            .to_owned(),
    );
    Ok(rows)
}

/// Workload 3: memory during the 100 MiB echo, node in a child process.
async fn memory_separate(
    plan: &Plan,
    blob: &Bytes,
    notes: &mut Vec<String>,
) -> Result<Vec<BenchRow>, BenchError> {
    let bytes = plan.max_bytes();
    let mut researcher = BenchResearcher::start_buffers(plan.receive_buffer_bytes).await?;
    let node_id = "NODE_bench_memory".to_owned();
    let mut child = NodeChild::spawn(
        researcher.handle.local_addr.port(),
        researcher.cert_path(),
        PollMode::Streaming,
        &node_id,
        plan.receive_buffer_bytes,
    )
    .await?;
    researcher
        .wait_connected(std::slice::from_ref(&node_id), super::rig::CONNECT_TIMEOUT)
        .await?;
    for _ in 0..20 {
        researcher.ping(&node_id).await?;
    }
    let (node_idle, _) = child.memory().await?;
    let researcher_idle = mem::rss_bytes().unwrap_or(0);
    let mut node_peaks = Vec::new();
    let mut researcher_peaks = Vec::new();
    let mut node_after = Vec::new();
    let mut researcher_after = Vec::new();
    // Peaks are measured from the idle baseline before the first round (not
    // from each round's start): what a side keeps between rounds, such as its
    // receive buffer, counts in every round.
    for _ in 0..plan.memory_rounds {
        child.reset_peak().await?;
        mem::reset_peak();
        researcher
            .train(&node_id, blob, bytes, TrainReplySize::Echo)
            .await?;
        let (node_rss, node_hwm) = child.memory().await?;
        let researcher_hwm = mem::peak_rss_bytes().unwrap_or(0);
        node_peaks.push(node_hwm.saturating_sub(node_idle) as f64 / bytes as f64);
        researcher_peaks.push(researcher_hwm.saturating_sub(researcher_idle) as f64 / bytes as f64);
        node_after.push(node_rss);
        researcher_after.push(mem::rss_bytes().unwrap_or(0));
    }
    child.stop().await;
    researcher.handle.shutdown().await?;

    let name = format!("3 memory {} MiB echo", bytes / MIB);
    let mut rows = Vec::new();
    for (side, peaks, idle, after) in [
        ("node", node_peaks, node_idle, node_after),
        (
            "researcher",
            researcher_peaks,
            researcher_idle,
            researcher_after,
        ),
    ] {
        let worst = peaks.iter().copied().fold(0.0, f64::max);
        rows.push(
            row(
                &name,
                "streaming",
                &format!("{side} peak RSS above its idle"),
                "x payload",
                peaks,
            )
            .detail(format!(
                "{side} process idle RSS {:.1} MiB before round 1; worst round {worst:.2} x; \
                 receive buffers kept: up to {:.0} MiB",
                mem::mib(idle),
                mem::mib(plan.receive_buffer_bytes as u64)
            ))
            .target("<= 1.5 x", worst <= 1.5),
        );
        if let (Some(first), Some(last)) = (after.first(), after.last()) {
            let drift = (*last as f64 - *first as f64) / (*first).max(1) as f64;
            rows.push(
                row(
                    &name,
                    "streaming",
                    &format!("{side} RSS after round {} vs round 1", after.len()),
                    "%",
                    vec![drift * 100.0],
                )
                .detail(format!(
                    "{:.1} MiB after round 1, {:.1} MiB after round {}",
                    mem::mib(*first),
                    mem::mib(*last),
                    after.len()
                ))
                .target("within 10%", drift.abs() <= 0.10),
            );
        }
    }
    rows.push(
        row(
            "3 memory idle node",
            "streaming",
            "node process RSS, connected and idle",
            "MiB",
            vec![mem::mib(node_idle)],
        )
        .target("< 20 MiB", mem::mib(node_idle) < 20.0),
    );
    notes.push(
        "memory: the node runs in a child process (the same fedroute binary, one actix \
         System); the researcher side is this process, whose idle figure includes the 100 MiB \
         request the application encodes; each round's peak is VmHWM (reset with \
         /proc/self/clear_refs before the round) minus the idle RSS before round 1, so a \
         kept receive buffer counts in every round"
            .to_owned(),
    );
    Ok(rows)
}

/// Workload 4.
async fn fan_out(plan: &Plan, notes: &mut Vec<String>) -> Result<Vec<BenchRow>, BenchError> {
    let n = plan.fan_out_nodes;
    let rss_before = mem::rss_bytes();
    let mut researcher = BenchResearcher::start().await?;
    let ids: Vec<String> = (0..n).map(|i| format!("NODE_fan_{i:05}")).collect();
    let connect_start = Instant::now();
    let mut nodes = Vec::with_capacity(n);
    for id in &ids {
        nodes.push(
            BenchNodeHandle::start(
                id.clone(),
                researcher.endpoint(),
                PollMode::Streaming,
                Bytes::new(),
            )
            .await?,
        );
    }
    researcher
        .wait_connected(&ids, super::rig::CONNECT_TIMEOUT)
        .await?;
    let connect = connect_start.elapsed();
    let mut runs = Vec::new();
    let mut peak = 0u64;
    mem::reset_peak();
    for _ in 0..plan.runs {
        let start = Instant::now();
        let pings = ids.iter().map(|id| researcher.ping(id));
        for r in join_all(pings).await {
            r?;
        }
        runs.push(start.elapsed().as_secs_f64());
    }
    if let Some(p) = mem::peak_rss_bytes() {
        peak = p;
    }
    let rss_after = mem::rss_bytes();
    for node in &nodes {
        node.shutdown().await;
    }
    researcher.handle.shutdown().await?;
    let all_in = median(&runs);
    let mem_text = match (rss_before, rss_after) {
        (Some(b), Some(a)) => format!(
            "process RSS {:.1} MiB -> {:.1} MiB with researcher + {n} nodes (peak {:.1} MiB)",
            mem::mib(b),
            mem::mib(a),
            mem::mib(peak)
        ),
        _ => "memory unknown".to_owned(),
    };
    notes.push(format!(
        "fan-out: {n} nodes in this process, connected in {:.2} s; one Request per node sent \
         at once; memory is the whole process (researcher AND nodes), an upper bound of the \
         researcher's",
        connect.as_secs_f64()
    ));
    let mut rows = vec![row(
        &format!("4 fan-out {n} nodes"),
        "streaming",
        "time until all replies",
        "s",
        runs,
    )
    .detail(mem_text)
    .target("<= 2 s", all_in <= 2.0)];
    if let Some(a) = rss_after {
        let mib = mem::mib(peak.max(a));
        rows.push(
            row(
                &format!("4 fan-out {n} nodes"),
                "streaming",
                "process peak RSS (upper bound of researcher's)",
                "MiB",
                vec![mib],
            )
            .target("researcher < 300 MiB", mib < 300.0),
        );
    }
    Ok(rows)
}

/// Workload 5 with real outages: the researcher in a child process,
/// killed (SIGKILL) and started again on the same port with the same
/// identity after each outage of [`Plan::outages`].
async fn outages(plan: &Plan, blob: &Bytes, rows: &mut Vec<BenchRow>) -> Result<(), BenchError> {
    for mode in [PollMode::Unary, PollMode::Streaming] {
        let files = super::rig::IdentityFiles::generate()?;
        let node_id = format!("NODE_reconnect_{}", mode.as_str());
        let mut researcher = ResearcherChild::spawn(0, &files, &node_id).await?;
        let port = researcher.port;
        let endpoint = ResearcherEndpoint {
            host: "127.0.0.1".to_owned(),
            port,
            trust: TrustPolicy::PinnedCertificate(files.cert.clone()),
            proxy: None,
        };
        let node = BenchNodeHandle::start(node_id.clone(), endpoint, mode, blob.clone()).await?;
        researcher.back_after().await?;
        for outage in &plan.outages {
            let mut polled = Vec::new();
            let mut answered = Vec::new();
            for _ in 0..plan.reconnects {
                researcher.kill();
                tokio::time::sleep(*outage).await;
                researcher = ResearcherChild::spawn(port, &files, &node_id).await?;
                let back = researcher.back_after().await?;
                polled.push(back.polled.as_secs_f64() * 1e3);
                answered.push(back.answered.as_secs_f64() * 1e3);
            }
            let workload = format!("5 reconnect, outage {} s", outage.as_secs_f64());
            let answered_max = answered.iter().copied().fold(0.0, f64::max);
            let polled_max = polled.iter().copied().fold(0.0, f64::max);
            let met = median(&polled) <= 200.0 && polled_max <= 200.0;
            rows.push(
                row(
                    &workload,
                    mode.as_str(),
                    "listening -> first poll",
                    "ms",
                    polled,
                )
                .detail(format!("max {polled_max:.0} ms"))
                .target("<= 200 ms (median and max)", met),
            );
            rows.push(
                row(
                    &workload,
                    mode.as_str(),
                    "listening -> first answered ping",
                    "ms",
                    answered,
                )
                .detail(format!(
                    "max {answered_max:.0} ms; the researcher pings right after the first poll"
                )),
            );
        }
        node.shutdown().await;
        researcher.stop().await;
    }
    Ok(())
}

/// Workload 5 in one process: the researcher shut down and started again
/// at once (where no child process can be started).
async fn reconnect(plan: &Plan, blob: &Bytes, rows: &mut Vec<BenchRow>) -> Result<(), BenchError> {
    for mode in [PollMode::Unary, PollMode::Streaming] {
        let mut researcher = BenchResearcher::start().await?;
        let node_id = format!("NODE_reconnect_{}", mode.as_str());
        let node =
            BenchNodeHandle::start(node_id.clone(), researcher.endpoint(), mode, blob.clone())
                .await?;
        let ids = [node_id.clone()];
        researcher
            .wait_connected(&ids, super::rig::CONNECT_TIMEOUT)
            .await?;
        researcher.ping(&node_id).await?;
        let mut runs = Vec::new();
        let mut answered = 0usize;
        let mut lost = Vec::new();
        for _ in 0..plan.reconnects {
            let (mut r, listening) = researcher.restart().await?;
            let polled = r.wait_connected(&ids, Duration::from_secs(30)).await?;
            runs.push(polled.saturating_duration_since(listening).as_secs_f64() * 1e3);
            // Is the link usable right after the poll? A request sent now
            // must be answered.
            match r.ping_within(&node_id, AFTER_RESTART_TIMEOUT).await {
                Ok(_) => answered += 1,
                Err(e) => {
                    let e = ErrorChain(&e).to_string();
                    log::warn!("bench: ping right after the restart failed: {e}");
                    lost.push(e);
                    // Let the link settle before the next restart.
                    r.ping_within(&node_id, AFTER_RESTART_TIMEOUT).await?;
                }
            }
            researcher = r;
        }
        let mut detail = format!(
            "a ping sent right after the node's poll was answered {answered}/{} times",
            plan.reconnects
        );
        if let Some(e) = lost.first() {
            detail.push_str(&format!("; failed: {e}"));
        }
        let ms = median(&runs);
        rows.push(
            row(
                "5 reconnect",
                mode.as_str(),
                "listening -> next poll",
                "ms",
                runs,
            )
            .detail(detail)
            .target(
                "<= 100 ms (and the link works)",
                ms <= 100.0 && answered == plan.reconnects,
            ),
        );
        node.shutdown().await;
        researcher.handle.shutdown().await?;
    }
    Ok(())
}

/// The soak test (issue 7), see [`super::soak`].
pub(crate) async fn soak(duration: Duration) -> Result<Output, BenchError> {
    let report = super::soak::soak(duration).await?;
    let notes = vec![
        "soak: 10 nodes (5 unary, 5 streaming), pings and 0-2 MiB echoes (1 in 20: 4-12 MiB), \
         researcher restarted every 1-4 s on the same port; lost = no reply and no error within \
         10 s; duplicates = a task seen twice by a node handler"
            .to_owned(),
    ];
    Ok((Vec::new(), notes, Some(report)))
}
