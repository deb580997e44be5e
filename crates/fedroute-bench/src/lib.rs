//! Benchmarks of fedroute's transport (issue 6), behind `fedroute bench`
//! and the criterion benches in `benches/transport.rs`.
//!
//! [`run`] measures, in one process and one actix `System` (a
//! current-thread tokio runtime: the researcher, the nodes and the bare
//! tonic probes share one core, as the wire limits in the issue were
//! measured):
//! 1. sequential ping round trips (unary and streaming poll modes);
//! 2. K requests in flight to one node (K = 4, 16, 64);
//! 3. model transfer: `TrainRequest`/`TrainReply` with 1, 16 and 100 MiB of
//!    uint8 params down, up and both ways (echo), plus peak memory during
//!    the 100 MiB echo and its drift over repeated rounds;
//! 4. fan-out: one ping to each of 1,000 nodes at once;
//! 5. reconnect: the researcher, in a child process, killed (SIGKILL) and
//!    started again on the same port with the same certificate after
//!    outages of 0.5, 2 and 10 s: time from listening to the node's first
//!    poll and to its answer to a ping sent right after;
//! 6. wire limits: plain tonic with the same TLS set-up and no fedroute
//!    logic (the ceilings 1-3 are compared with), see [`wire_limit`].
//!
//! Workloads 1 and 3 also have a durable variant (rows `1 sequential ping
//! durable` and `3 transfer durable`): the researcher and the node each
//! with a state directory, requests made with `Submit`, so every round
//! trip waits for both delivery stores; their detail gives the store
//! commits (fsyncs) per reply on each side.
//!
//! [`run_crash_soak`] runs the crash soak (issue 15, see [`crash_soak`]):
//! a researcher and three nodes as processes, killed with SIGKILL at
//! random and restarted on their state directories.
//!
//! Every figure is the median of several runs; the report keeps every run.
//!
//! ```no_run
//! let report = fedroute_bench::run(&fedroute_bench::BenchOptions {
//!     quick: true,
//!     ..Default::default()
//! })
//! .unwrap();
//! println!("{}", report.to_table());
//! ```
// The harness's types hold child processes, runtimes and sockets; nothing
// prints them, and their fields would say little.
#![allow(missing_debug_implementations)]

pub mod child;
mod crash_child;
pub mod crash_soak;
pub mod crash_tally;
pub mod mem;
pub mod rig;
pub mod soak;
pub mod stats;
pub mod temp_dir;
pub mod wire_limit;
mod workloads;

use std::time::Duration;

use serde::Serialize;

pub use workloads::Plan;

/// What [`run`] measures and how long it may take.
#[derive(Debug, Clone, Default)]
pub struct BenchOptions {
    /// Fewer runs and smaller fan-out: the whole run stays under 30 s
    /// (the default run stays under 3 minutes).
    pub quick: bool,
    /// Run the soak test (issue 7) for this long instead of the workloads.
    pub soak: Option<Duration>,
    /// Workload numbers to run (1-6); empty runs all (workload 6 always
    /// runs: the ratios need it).
    pub only: Vec<u8>,
    /// Bytes of receive buffers kept by the researcher and by each node of
    /// workload 3, the one with multi-frame messages (`receive.buffer_bytes`
    /// of `ResearcherConfig` and `ControllerConfig`); `None` keeps the
    /// library's default (256 MiB). `Some(0)` measures without buffer reuse.
    pub receive_buffer_bytes: Option<usize>,
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// Workload number and name, e.g. `"1 sequential ping"`.
    pub workload: String,
    /// `"unary"`, `"streaming"` or `"-"`.
    pub mode: String,
    /// What was measured, e.g. `"round trips/s"`.
    pub metric: String,
    /// Unit of `median` and `runs`.
    pub unit: String,
    /// The median of `runs`.
    pub median: f64,
    /// Every run.
    pub runs: Vec<f64>,
    /// Extra figures (latency percentiles, memory).
    pub detail: String,
    /// The wire limit this figure is compared with (same unit), if any.
    pub wire_limit: Option<f64>,
    /// `median / wire_limit`.
    pub ratio: Option<f64>,
    /// The issue's target, in words.
    pub target: Option<String>,
    /// Whether the target is met.
    pub met: Option<bool>,
}

/// The machine and its load while measuring.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available.
    pub cpus: usize,
    /// 1, 5 and 15 minute load averages before the run.
    pub load_before: Option<[f64; 3]>,
    /// 1, 5 and 15 minute load averages after the run.
    pub load_after: Option<[f64; 3]>,
    /// The CPU model name, when known.
    pub cpu_model: Option<String>,
    /// Kernel release, when known.
    pub kernel: Option<String>,
}

/// The soak test's counts (issue 7).
#[derive(Debug, Clone, Serialize, Default)]
pub struct SoakReport {
    /// Seconds it ran.
    pub seconds: f64,
    /// Requests sent.
    pub sent: u64,
    /// Distinct replies delivered.
    pub delivered: u64,
    /// Replies (or tasks) delivered to the application more than once.
    pub duplicates: u64,
    /// Requests with no reply.
    pub lost: u64,
    /// Researcher restarts done.
    pub restarts: u64,
    /// Requests failed explicitly by a restart (the caller got an error:
    /// reported, not lost).
    pub failed_by_restart: u64,
}

/// Everything [`run`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The figures, in workload order.
    pub rows: Vec<BenchRow>,
    /// The machine.
    pub machine: Machine,
    /// Whether this was a `--quick` run.
    pub quick: bool,
    /// How long the run took, in seconds.
    pub elapsed_s: f64,
    /// How the figures were taken (runtime, processes, memory method).
    pub notes: Vec<String>,
    /// The soak counts, when a soak ran.
    pub soak: Option<SoakReport>,
}

/// Why a benchmark could not run or failed. A cause is returned by
/// `source()`, not repeated in the message: print it with
/// [`fedroute::ErrorChain`].
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Setting up a benchmark failed.
    #[error("benchmark set-up failed: {what}")]
    Setup {
        /// What failed.
        what: String,
    },
    /// A benchmark step failed.
    #[error("benchmark failed: {what}")]
    Failed {
        /// What failed.
        what: String,
    },
    /// A step took too long.
    #[error("benchmark timed out waiting for {what} after {after:?}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The bound.
        after: Duration,
    },
    /// A TLS step failed.
    #[error("benchmark TLS set-up failed")]
    Tls(#[from] fedroute::tls::TlsError),
    /// The researcher failed.
    #[error("the researcher failed")]
    Researcher(#[from] fedroute::researcher::ResearcherError),
    /// A message could not be built or read.
    #[error("a benchmark message could not be encoded or decoded")]
    Wire(#[from] fedroute::wire::WireError),
    /// An actor was unreachable.
    #[error("an actor of the benchmark stopped")]
    Mailbox(#[from] actix::MailboxError),
    /// A bare gRPC probe failed.
    #[error("a wire-limit RPC failed")]
    Rpc(#[from] Box<tonic::Status>),
    /// The runtime could not be created or the process failed.
    #[error("benchmark runtime error")]
    Io(#[from] std::io::Error),
    /// The soak test lost or duplicated messages.
    #[error(
        "soak failed: sent {sent} / delivered {delivered} / duplicates {duplicates} / lost {lost} \
         ({restarts} researcher restarts in {seconds:.0} s)"
    )]
    SoakFailed {
        /// Requests sent.
        sent: u64,
        /// Requests answered.
        delivered: u64,
        /// Requests with no reply.
        lost: u64,
        /// Duplicate deliveries.
        duplicates: u64,
        /// Restarts done.
        restarts: u64,
        /// Seconds it ran.
        seconds: f64,
    },
    /// The requested benchmark is not implemented.
    #[error("{what} is not implemented yet")]
    NotImplemented {
        /// What.
        what: String,
    },
}

impl From<tonic::Status> for BenchError {
    fn from(s: tonic::Status) -> Self {
        BenchError::Rpc(Box::new(s))
    }
}

/// Runs the benchmarks (or the soak, when `opts.soak` is set) and returns
/// the report. Blocking: it creates its own actix `System` on the calling
/// thread, so it must not be called from inside a runtime.
///
/// In a process started by [`child::NodeChild::spawn`] (environment
/// variable [`child::CHILD_ENV`] set), it runs the bench node instead and
/// exits the process when the parent is done with it.
pub fn run(opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    child::run_child_if_asked();
    let started = std::time::Instant::now();
    let load_before = load_average();
    let plan = Plan::new(opts);
    let system = actix::System::new();
    let result = if let Some(duration) = opts.soak {
        system.block_on(workloads::soak(duration))
    } else {
        system.block_on(workloads::all(plan))
    };
    let (rows, notes, soak) = result?;
    let report = BenchReport {
        rows,
        machine: Machine {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            load_before,
            load_after: load_average(),
            cpu_model: cpu_model(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_owned()),
        },
        quick: opts.quick,
        elapsed_s: started.elapsed().as_secs_f64(),
        notes,
        soak,
    };
    if let Some(s) = &report.soak {
        if s.lost != 0 || s.duplicates != 0 {
            return Err(BenchError::SoakFailed {
                sent: s.sent,
                delivered: s.delivered,
                lost: s.lost,
                duplicates: s.duplicates,
                restarts: s.restarts,
                seconds: s.seconds,
            });
        }
    }
    Ok(report)
}

/// Runs the crash soak (issue 15, see [`crash_soak`]) and returns its
/// report, whatever the counts (see [`crash_soak::CrashSoakReport::passed`]).
/// Blocking, outside any runtime.
///
/// The soak's processes are this executable again, so it must be the
/// `fedroute` binary ([`child::can_spawn`]); in the researcher process it
/// starts (environment variable [`crash_soak::CRASH_RESEARCHER_ENV`] set),
/// this call runs that researcher and exits the process.
pub fn run_crash_soak(
    opts: &crash_soak::CrashSoakOptions,
) -> Result<crash_soak::CrashSoakReport, BenchError> {
    child::run_child_if_asked();
    if !child::can_spawn() {
        return Err(BenchError::Setup {
            what: "the crash soak runs its researcher and nodes as `fedroute` processes: run it \
                   as `fedroute bench --crash-soak SECONDS`"
                .into(),
        });
    }
    let exe = std::env::current_exe()?;
    crash_soak::crash_soak(opts, &exe)
}

/// The load averages from `/proc/loadavg`.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
}

fn fmt_num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn fmt_load(l: &Option<[f64; 3]>) -> String {
    match l {
        Some([a, b, c]) => format!("{a:.2} {b:.2} {c:.2}"),
        None => "unknown".to_owned(),
    }
}

impl BenchReport {
    /// A plain-text table: one line per figure, then the machine and notes.
    pub fn to_table(&self) -> String {
        let headers = [
            "workload",
            "mode",
            "figure",
            "median",
            "runs",
            "wire limit",
            "ratio",
            "target",
            "met",
            "detail",
        ];
        let mut lines: Vec<[String; 10]> = Vec::new();
        for r in &self.rows {
            let runs = r
                .runs
                .iter()
                .map(|x| fmt_num(*x))
                .collect::<Vec<_>>()
                .join(" ");
            lines.push([
                r.workload.clone(),
                r.mode.clone(),
                format!("{} ({})", r.metric, r.unit),
                fmt_num(r.median),
                runs,
                r.wire_limit.map(fmt_num).unwrap_or_default(),
                r.ratio
                    .map(|x| format!("{:.0}%", x * 100.0))
                    .unwrap_or_default(),
                r.target.clone().unwrap_or_default(),
                match r.met {
                    Some(true) => "yes".to_owned(),
                    Some(false) => "NO".to_owned(),
                    None => String::new(),
                },
                r.detail.clone(),
            ]);
        }
        let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
        for l in &lines {
            for (i, c) in l.iter().enumerate() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let row = |cells: Vec<&str>| -> String {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i > 0 {
                    s.push_str(" | ");
                }
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(widths[i].saturating_sub(c.chars().count())));
                }
            }
            s.trim_end().to_owned()
        };
        let mut out = String::new();
        out.push_str(&row(headers.to_vec()));
        out.push('\n');
        out.push_str(
            &widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("-|-"),
        );
        out.push('\n');
        for l in &lines {
            out.push_str(&row(l.iter().map(String::as_str).collect()));
            out.push('\n');
        }
        out.push_str(&format!(
            "\nmachine: {} CPUs{}{}; load before {}, after {}; {}run took {:.1} s\n",
            self.machine.cpus,
            self.machine
                .cpu_model
                .as_ref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default(),
            self.machine
                .kernel
                .as_ref()
                .map(|k| format!(", Linux {k}"))
                .unwrap_or_default(),
            fmt_load(&self.machine.load_before),
            fmt_load(&self.machine.load_after),
            if self.quick { "quick " } else { "" },
            self.elapsed_s
        ));
        if let Some(s) = &self.soak {
            out.push_str(&format!(
                "soak: {:.0} s, {} restarts: sent {} / delivered {} / duplicates {} / lost {} \
                 (failed with an error by a restart: {})\n",
                s.seconds,
                s.restarts,
                s.sent,
                s.delivered,
                s.duplicates,
                s.lost,
                s.failed_by_restart
            ));
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }

    /// True when every workload ran, every figure with a target met it, and
    /// the soak, if any, lost and duplicated nothing.
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.met != Some(false))
            && !self.notes.iter().any(|n| n.starts_with("FAILED"))
            && self
                .soak
                .as_ref()
                .is_none_or(|s| s.lost == 0 && s.duplicates == 0)
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain structs of numbers and strings cannot fail;
        // NaN or infinite floats become `null`.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> BenchReport {
        BenchReport {
            rows: vec![BenchRow {
                workload: "1 sequential ping".into(),
                mode: "unary".into(),
                metric: "round trips/s".into(),
                unit: "1/s".into(),
                median: 2600.0,
                runs: vec![2500.0, 2600.0, 2700.0],
                detail: "p50 0.38 ms".into(),
                wire_limit: Some(4500.0),
                ratio: Some(2600.0 / 4500.0),
                target: Some(">= 2500/s".into()),
                met: Some(true),
            }],
            machine: Machine {
                cpus: 2,
                load_before: Some([1.0, 2.0, 3.0]),
                load_after: None,
                cpu_model: None,
                kernel: None,
            },
            quick: true,
            elapsed_s: 1.5,
            notes: vec!["one process".into()],
            soak: None,
        }
    }

    #[test]
    fn passed_follows_the_targets() {
        let mut r = report();
        assert!(r.passed());
        r.rows[0].met = Some(false);
        assert!(!r.passed());
    }

    #[test]
    fn table_has_every_row_and_the_load() {
        let t = report().to_table();
        assert!(t.contains("1 sequential ping"), "{t}");
        assert!(t.contains("58%"), "{t}");
        assert!(t.contains("load before 1.00 2.00 3.00"), "{t}");
        assert!(t.contains("note: one process"), "{t}");
    }

    #[test]
    fn json_round_trips_through_serde_json() {
        let j = report().to_json();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["rows"][0]["median"], 2600.0);
        assert_eq!(v["machine"]["cpus"], 2);
    }

    #[test]
    fn load_average_parses_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(load_average().is_some());
        }
    }
}
