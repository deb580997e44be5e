//! The crash soak (issue 15): a researcher and three nodes as separate
//! processes, each with its own state directory, each killed with SIGKILL
//! at random moments and started again on the same state directory (and,
//! for the researcher, the same port), while the researcher submits
//! requests of random sizes; at the end, every request accepted must have
//! been answered once, by its reply or by a `NoReply`.
//!
//! # Processes
//! - The researcher is this executable again (a bench child, see
//!   `crash_child`) running the library `Researcher` with
//!   `state_dir`; it prints one line per fact on stdout, which this
//!   process reads and counts ([`super::crash_tally`]).
//! - Each node is `fedroute node --state-dir DIR --echo-train
//!   --connect-timeout 0`: its durable outbox keeps the replies it
//!   accepted, its trust store the researcher's certificate (the
//!   researcher keeps its identity in its own state directory).
//!
//! # Phases
//! 1. *Soak*: a kill every [`KILL_EVERY`] (uniform), of one of the running
//!    processes chosen at random; the process is started again after an
//!    outage of [`OUTAGE`].
//! 2. *Drain*: no more kills, every process runs, the researcher stops
//!    submitting; this process waits until every request is answered (or
//!    the drain bound, the request timeout plus [`DRAIN_MARGIN`], passes),
//!    then [`SETTLE`] more for late duplicates.
//!
//! Every child is bounded in time by itself (`--exit-after` for the
//! nodes, a lifetime for the researcher, which also stops when its stdin
//! closes) and killed by a drop guard when this process is done with it,
//! on error or panic too.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;

use super::crash_tally::{CrashCounts, Fact, IdHistory, Tally};
use super::temp_dir::TempDir;
use super::BenchError;

/// The environment variable that makes [`super::run_crash_soak`] act as
/// the crash soak's researcher:
/// `<port> <node ids, comma-separated> <max payload bytes> <request timeout ms> <lifetime s> <state dir>`.
pub const CRASH_RESEARCHER_ENV: &str = "FEDROUTE_BENCH_CRASH_RESEARCHER";
/// Nodes of the soak.
pub const NODES: usize = 3;
/// Time between two kills (one process each), in milliseconds: at most
/// 3.5 s, so that 20 s hold at least 5 kills; about 130 kills in 5 minutes.
pub const KILL_EVERY: std::ops::RangeInclusive<u64> = 1_000..=3_500;
/// How long a killed process stays down, in milliseconds.
pub const OUTAGE: std::ops::RangeInclusive<u64> = 0..=500;
/// Added to the request timeout to bound the drain: a restart, the
/// researcher's recovery and its `NoReply` take that much at most.
pub const DRAIN_MARGIN: Duration = Duration::from_secs(15);
/// Waited after the last answer, for duplicates that come late (a node
/// re-sending its outbox after its restart).
pub const SETTLE: Duration = Duration::from_secs(2);
/// How long the researcher may take to stop once its stdin closed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often the main loop looks at the processes and their lines.
const TICK: Duration = Duration::from_millis(10);
/// Kills and restarts kept for the failure report.
const EVENTS_KEPT: usize = 10_000;
/// Lost or duplicated ids described in detail lines.
const SUSPECTS_SHOWN: usize = 10;

/// What the crash soak does.
#[derive(Debug, Clone)]
pub struct CrashSoakOptions {
    /// How long the soak phase (with kills) lasts.
    pub duration: Duration,
    /// Largest `TrainRequest` payload (echoed by the nodes).
    pub max_payload: usize,
    /// The timeout of each request (`Submit::timeout`).
    pub request_timeout: Duration,
    /// Count the second deliveries the guarantee allows (a researcher
    /// killed right after a `Reply` event, see
    /// [`super::crash_tally::CRASH_WINDOW`]) as duplicates too.
    pub strict: bool,
}

impl CrashSoakOptions {
    /// Largest payload by default (16 MiB).
    pub const DEFAULT_MAX_PAYLOAD: usize = 16 << 20;
    /// Request timeout by default.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

    /// The defaults for a soak of `duration`.
    pub fn new(duration: Duration) -> CrashSoakOptions {
        CrashSoakOptions {
            duration,
            max_payload: Self::DEFAULT_MAX_PAYLOAD,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            strict: false,
        }
    }

    /// The longest the drain may wait.
    fn drain_bound(&self) -> Duration {
        self.request_timeout + DRAIN_MARGIN
    }

    /// How long a child may live, whatever happens to this process.
    fn lifetime(&self) -> Duration {
        self.duration + self.drain_bound() + SETTLE + Duration::from_secs(30)
    }
}

/// What the crash soak found.
#[derive(Debug, Clone, Serialize)]
pub struct CrashSoakReport {
    /// Seconds the soak phase lasted (the drain not included).
    pub seconds: f64,
    /// Seconds the drain took.
    pub drain_seconds: f64,
    /// SIGKILLs sent.
    pub kills: u64,
    /// Of which to the researcher.
    pub researcher_kills: u64,
    /// Processes that ended without being killed (restarted as well).
    pub unexpected_exits: u64,
    /// The counts at the application level.
    pub counts: CrashCounts,
    /// Whether every request was answered before the drain bound.
    pub drained: bool,
    /// Whether the allowed second deliveries count as duplicates.
    pub strict: bool,
    /// Lines explaining the figures or a failure (printed before the
    /// summary line).
    pub details: Vec<String>,
}

impl CrashSoakReport {
    /// The summary line:
    /// `crash-soak: S s, K kills: sent N / delivered D / duplicates X / lost Y`
    /// (X without the allowed second deliveries unless `strict`).
    pub fn line(&self) -> String {
        let c = &self.counts;
        format!(
            "crash-soak: {:.0} s, {} kills: sent {} / delivered {} / duplicates {} / lost {}",
            self.seconds,
            self.kills,
            c.sent,
            c.delivered,
            self.duplicates(),
            c.lost
        )
    }

    /// The duplicates that count.
    pub fn duplicates(&self) -> u64 {
        if self.strict {
            self.counts.duplicates + self.counts.window_duplicates
        } else {
            self.counts.duplicates
        }
    }

    /// True when nothing was lost or duplicated and at least one process
    /// was killed.
    pub fn passed(&self) -> bool {
        self.duplicates() == 0 && self.counts.lost == 0 && self.kills >= 1
    }

    /// The detail lines, then the summary line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for d in &self.details {
            out.push_str(d);
            out.push('\n');
        }
        out.push_str(&self.line());
        out.push('\n');
        out
    }
}

/// A process of the soak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Researcher,
    Node(usize),
}

impl Role {
    fn name(self) -> String {
        match self {
            Role::Researcher => "researcher".to_owned(),
            Role::Node(k) => node_id(k),
        }
    }
}

fn node_id(k: usize) -> String {
    format!("NODE_crash_{k}")
}

/// One child process and how to start it again; killed on drop.
struct Proc {
    role: Role,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    reader: Option<JoinHandle<()>>,
    /// When a down process is started again.
    restart_at: Option<Instant>,
    starts: u64,
}

impl Proc {
    fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, wait for the process, and for its last lines to be read
    /// (so that facts stay in order across restarts).
    fn kill(&mut self) {
        self.stdin = None;
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The running soak: processes, lines, counts.
struct Soak {
    opts: CrashSoakOptions,
    exe: PathBuf,
    dir: PathBuf,
    port: u16,
    procs: Vec<Proc>,
    /// (researcher generation, line).
    lines_tx: mpsc::Sender<(u64, String)>,
    lines: mpsc::Receiver<(u64, String)>,
    tally: Tally,
    started: Instant,
    draining: bool,
    /// (seconds, what) of kills, restarts and exits.
    events: VecDeque<(f64, String)>,
    kills: u64,
    researcher_kills: u64,
    unexpected_exits: u64,
    /// Lines of the researcher that are no facts (errors, refusals).
    other_lines: VecDeque<String>,
    other_count: u64,
}

/// Runs the crash soak with the `fedroute` executable `exe` (the nodes are
/// `exe node ...`, the researcher `exe` with this process's arguments and
/// [`CRASH_RESEARCHER_ENV`]). Blocking; needs no runtime.
pub fn crash_soak(opts: &CrashSoakOptions, exe: &Path) -> Result<CrashSoakReport, BenchError> {
    let mut dir = TempDir::new("fedroute-crash-soak")?;
    for role in roles() {
        std::fs::create_dir_all(dir.path().join(role.name()))?;
    }
    let (lines_tx, lines) = mpsc::channel();
    let mut soak = Soak {
        opts: opts.clone(),
        exe: exe.to_owned(),
        dir: dir.path().to_owned(),
        port: free_port()?,
        procs: roles()
            .map(|role| Proc {
                role,
                child: None,
                stdin: None,
                reader: None,
                restart_at: None,
                starts: 0,
            })
            .collect(),
        lines_tx,
        lines,
        tally: Tally::new(),
        started: Instant::now(),
        draining: false,
        events: VecDeque::new(),
        kills: 0,
        researcher_kills: 0,
        unexpected_exits: 0,
        other_lines: VecDeque::new(),
        other_count: 0,
    };
    let report = soak.run()?;
    let mut report = report;
    if !report.passed() {
        // Kept for the post-mortem: the stores and the logs.
        dir.keep();
        report.details.push(format!(
            "crash-soak: state directories and logs kept in {}",
            dir.path().display()
        ));
    }
    Ok(report)
}

fn roles() -> impl Iterator<Item = Role> {
    std::iter::once(Role::Researcher).chain((0..NODES).map(Role::Node))
}

/// A free TCP port on 127.0.0.1 (bound and released).
fn free_port() -> Result<u16, BenchError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Soak {
    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn event(&mut self, what: String) {
        let at = self.now();
        log::info!("crash soak {at:.3} s: {what}");
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back((at, what));
    }

    fn run(&mut self) -> Result<CrashSoakReport, BenchError> {
        for i in 0..self.procs.len() {
            self.start(i)?;
        }
        let soak_end = self.started + self.opts.duration;
        let mut next_kill = Instant::now() + kill_interval();
        // Soak phase.
        while Instant::now() < soak_end {
            self.step()?;
            let now = Instant::now();
            if now >= next_kill {
                self.kill_one();
                next_kill = now + kill_interval();
            }
            std::thread::sleep(TICK);
        }
        let seconds = self.now();
        // Drain phase.
        self.draining = true;
        self.event("drain: no more kills, no more requests".to_owned());
        for i in 0..self.procs.len() {
            if !self.procs[i].is_up() {
                self.start(i)?;
            }
        }
        self.tell_researcher("drain");
        let drain_start = Instant::now();
        let drain_end = drain_start + self.opts.drain_bound();
        let mut settled_since: Option<Instant> = None;
        let drained = loop {
            self.step()?;
            let now = Instant::now();
            if self.tally.open() == 0 {
                let since = *settled_since.get_or_insert(now);
                if now >= since + SETTLE {
                    break true;
                }
            } else {
                settled_since = None;
            }
            if now >= drain_end {
                break false;
            }
            std::thread::sleep(TICK);
        };
        let drain_seconds = drain_start.elapsed().as_secs_f64();
        self.stop_researcher();
        for p in &mut self.procs {
            p.kill();
        }
        self.read_lines();
        Ok(self.report(seconds, drain_seconds, drained))
    }

    /// Reads the lines, restarts processes whose outage is over and
    /// notices processes that ended by themselves.
    fn step(&mut self) -> Result<(), BenchError> {
        self.read_lines();
        for i in 0..self.procs.len() {
            let exited = match self.procs[i].child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Err(e)) => Some(e.to_string()),
                _ => None,
            };
            if let Some(status) = exited {
                let name = self.procs[i].role.name();
                self.procs[i].kill();
                self.read_lines();
                self.ended(i);
                self.unexpected_exits += 1;
                self.event(format!(
                    "{name} exited by itself ({status}); starting it again"
                ));
                self.procs[i].restart_at = Some(Instant::now() + Duration::from_millis(200));
            }
            let due = self.procs[i]
                .restart_at
                .is_some_and(|at| Instant::now() >= at);
            if !self.procs[i].is_up() && due {
                self.start(i)?;
            }
        }
        Ok(())
    }

    fn read_lines(&mut self) {
        while let Ok((generation, line)) = self.lines.try_recv() {
            self.line(&line, generation);
        }
    }

    /// Process `i` is gone: the tally learns when, for the researcher.
    fn ended(&mut self, i: usize) {
        if self.procs[i].role == Role::Researcher {
            let at = self.now();
            self.tally.researcher_ended(self.procs[i].starts, at);
        }
    }

    fn line(&mut self, line: &str, generation: u64) {
        let at = self.now();
        // `listening <port>` is expected at each start; other lines that
        // are no facts (errors) are kept for the report.
        if self.tally.record(line, at, generation).is_none() && !line.starts_with("listening ") {
            self.other_count += 1;
            if self.other_lines.len() < 20 {
                self.other_lines.push_back(line.to_owned());
            }
        }
    }

    /// SIGKILLs one running process chosen at random; it starts again
    /// after an outage.
    fn kill_one(&mut self) {
        let up: Vec<usize> = (0..self.procs.len())
            .filter(|i| self.procs[*i].is_up())
            .collect();
        if up.is_empty() {
            return;
        }
        let mut rng = rand::rng();
        let i = up[rng.random_range(0..up.len())];
        let outage = Duration::from_millis(rng.random_range(OUTAGE));
        let role = self.procs[i].role;
        self.procs[i].kill();
        self.read_lines();
        self.ended(i);
        self.kills += 1;
        if role == Role::Researcher {
            self.researcher_kills += 1;
        }
        self.procs[i].restart_at = Some(Instant::now() + outage);
        self.event(format!(
            "SIGKILL {} (down {} ms; {} open requests)",
            role.name(),
            outage.as_millis(),
            self.tally.open()
        ));
    }

    /// Starts process `i` (again).
    fn start(&mut self, i: usize) -> Result<(), BenchError> {
        let role = self.procs[i].role;
        let state = self.dir.join(role.name());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", role.name())))?;
        let lifetime = self.opts.lifetime();
        let mut cmd = Command::new(&self.exe);
        match role {
            Role::Researcher => {
                let ids: Vec<String> = (0..NODES).map(node_id).collect();
                cmd.args(std::env::args_os().skip(1)).env(
                    CRASH_RESEARCHER_ENV,
                    format!(
                        "{} {} {} {} {} {}",
                        self.port,
                        ids.join(","),
                        self.opts.max_payload,
                        self.opts.request_timeout.as_millis(),
                        lifetime.as_secs(),
                        state.display()
                    ),
                );
            }
            Role::Node(k) => {
                cmd.arg("node")
                    .arg("--researcher")
                    .arg(format!("127.0.0.1:{}", self.port))
                    .arg("--id")
                    .arg(node_id(k))
                    .arg("--state-dir")
                    .arg(&state)
                    .arg("--echo-train")
                    .arg("--connect-timeout")
                    .arg("0")
                    .arg("--exit-after")
                    .arg(lifetime.as_secs().to_string());
            }
        }
        // The children's logs go to one file per process (appended across
        // restarts), kept when the soak fails; warnings by default.
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        cmd.env_remove(super::child::CHILD_ENV)
            .env_remove(super::child::RESEARCHER_ENV)
            .stdin(if role == Role::Researcher {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(if role == Role::Researcher {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(log);
        let mut child = cmd.spawn().map_err(|e| BenchError::Setup {
            what: format!("cannot start the {}: {e}", role.name()),
        })?;
        let p = &mut self.procs[i];
        p.stdin = child.stdin.take();
        if let Some(stdout) = child.stdout.take() {
            let tx = self.lines_tx.clone();
            let generation = p.starts + 1;
            p.reader = Some(std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((generation, line)).is_err() {
                        break;
                    }
                }
            }));
        }
        p.child = Some(child);
        p.restart_at = None;
        p.starts += 1;
        let first = p.starts == 1;
        let what = match role {
            Role::Researcher => format!("researcher #{}", p.starts),
            Role::Node(_) => role.name(),
        };
        self.event(format!(
            "{} {what}",
            if first { "start" } else { "restart" }
        ));
        if role == Role::Researcher && self.draining {
            self.tell_researcher("drain");
        }
        Ok(())
    }

    fn tell_researcher(&mut self, line: &str) {
        if let Some(stdin) = self.procs[0].stdin.as_mut() {
            let _ = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
        }
    }

    /// Closes the researcher's stdin (it shuts down) and waits a little
    /// for it and its last lines.
    fn stop_researcher(&mut self) {
        let p = &mut self.procs[0];
        p.stdin = None;
        let deadline = Instant::now() + STOP_GRACE;
        if let Some(c) = p.child.as_mut() {
            while Instant::now() < deadline {
                if !matches!(c.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(TICK);
            }
        }
        p.kill();
        self.read_lines();
        self.ended(0);
    }

    fn report(&self, seconds: f64, drain_seconds: f64, drained: bool) -> CrashSoakReport {
        let counts = self.tally.counts();
        let mut details = vec![format!(
            "crash-soak: researcher + {NODES} nodes as processes, state directories under {}; \
             kills every {:.1}-{:.1} s ({} of the researcher), outages up to {} ms; \
             payloads up to {} MiB, request timeout {:.0} s; at most {} requests open per node",
            self.dir.display(),
            *KILL_EVERY.start() as f64 / 1e3,
            *KILL_EVERY.end() as f64 / 1e3,
            self.researcher_kills,
            OUTAGE.end(),
            self.opts.max_payload >> 20,
            self.opts.request_timeout.as_secs_f64(),
            super::crash_child::MAX_OPEN_PER_NODE
        )];
        details.push(format!(
            "crash-soak: second deliveries allowed by the guarantee (researcher killed within \
             {:.0} ms of the Reply event, request recovered) {}{}; noreply {} (late, after the \
             reply: {}; reply after noreply: {}), recovered after restarts {}, accepted but not \
             reported before a kill {}, unexpected exits {}; drain {:.1} s{}",
            super::crash_tally::CRASH_WINDOW * 1e3,
            counts.window_duplicates,
            if self.opts.strict {
                " (counted as duplicates: --crash-soak-strict)"
            } else {
                ""
            },
            counts.noreply,
            counts.late_noreply,
            counts.delivered_after_noreply,
            counts.recovered,
            counts.delivered_unsent,
            self.unexpected_exits,
            drain_seconds,
            if drained {
                ""
            } else {
                " (bound reached with requests open)"
            }
        ));
        if self.other_count > 0 {
            details.push(format!(
                "crash-soak: {} other researcher lines, first: {}",
                self.other_count,
                self.other_lines
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        let (dups, lost, window) = self.tally.suspects();
        for (what, list) in [
            ("DUPLICATE", dups),
            ("LOST", lost),
            ("second delivery in the crash window", window),
        ] {
            for (id, h) in list.iter().take(SUSPECTS_SHOWN) {
                details.push(format!("crash-soak: {what} {id}: {}", self.story(h)));
            }
            if list.len() > SUSPECTS_SHOWN {
                details.push(format!(
                    "crash-soak: ... and {} more {what}",
                    list.len() - SUSPECTS_SHOWN
                ));
            }
        }
        CrashSoakReport {
            seconds,
            drain_seconds,
            kills: self.kills,
            researcher_kills: self.researcher_kills,
            unexpected_exits: self.unexpected_exits,
            counts,
            drained,
            strict: self.opts.strict,
            details,
        }
    }

    /// An id's facts and the kills and restarts around them.
    fn story(&self, h: &IdHistory) -> String {
        let mut facts: Vec<(f64, String)> = Vec::new();
        for (fact, times) in [
            (Fact::Sent, &h.sent),
            (Fact::Delivered, &h.delivered),
            (Fact::NoReply, &h.noreply),
            (Fact::Recovered, &h.recovered),
            (Fact::Unmatched, &h.unmatched),
        ] {
            for t in times {
                facts.push((
                    t.at,
                    format!(
                        "{} (researcher #{})",
                        format!("{fact:?}").to_lowercase(),
                        t.generation
                    ),
                ));
            }
        }
        let from = facts.iter().map(|f| f.0).fold(f64::INFINITY, f64::min) - 5.0;
        let to = facts.iter().map(|f| f.0).fold(0.0, f64::max) + 5.0;
        facts.extend(
            self.events
                .iter()
                .filter(|(t, _)| *t >= from && *t <= to)
                .cloned(),
        );
        facts.sort_by(|a, b| a.0.total_cmp(&b.0));
        facts
            .iter()
            .map(|(t, what)| format!("{t:.3} {what}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn kill_interval() -> Duration {
    Duration::from_millis(rand::rng().random_range(KILL_EVERY))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(duplicates: u64, lost: u64, kills: u64) -> CrashSoakReport {
        CrashSoakReport {
            seconds: 20.2,
            drain_seconds: 1.0,
            kills,
            researcher_kills: 1,
            unexpected_exits: 0,
            counts: CrashCounts {
                sent: 10,
                delivered: 10 - lost,
                duplicates,
                lost,
                ..CrashCounts::default()
            },
            drained: true,
            strict: false,
            details: vec!["detail".into()],
        }
    }

    #[test]
    fn the_line_has_the_agreed_form() {
        assert_eq!(
            report(0, 0, 7).line(),
            "crash-soak: 20 s, 7 kills: sent 10 / delivered 10 / duplicates 0 / lost 0"
        );
        let text = report(0, 0, 7).to_text();
        assert!(text.starts_with("detail\ncrash-soak: 20 s"), "{text}");
    }

    #[test]
    fn it_passes_only_without_losses_duplicates_and_with_a_kill() {
        assert!(report(0, 0, 1).passed());
        assert!(!report(1, 0, 5).passed());
        assert!(!report(0, 1, 5).passed());
        assert!(!report(0, 0, 0).passed());
    }

    #[test]
    fn twenty_seconds_hold_five_kills() {
        assert!(Duration::from_secs(20).as_millis() / u128::from(*KILL_EVERY.end()) >= 5);
    }
}
