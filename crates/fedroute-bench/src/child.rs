//! Bench peers in separate processes: a node, for honest per-side memory
//! figures, and a researcher that can be killed for real outages.
//!
//! [`NodeChild::spawn`] and [`ResearcherChild::spawn`] start the current
//! executable again (the `fedroute` binary, with the same arguments, so it
//! reaches [`super::run`] again) with the environment variable
//! [`CHILD_ENV`] or [`RESEARCHER_ENV`] describing the peer to run. In that
//! process [`super::run`] calls [`run_child_if_asked`], which runs the peer
//! until stdin closes, then exits the process.
//!
//! The node (a [`BenchNodeHandle`]) answers line commands on stdin:
//! - `mem` -> `mem <VmRSS bytes> <VmHWM bytes>`
//! - `reset` -> `reset <VmRSS bytes>` (the peak is reset to the current RSS)
//!
//! and prints `ready` once its controller is started, or `error <why>`.
//!
//! The researcher (a [`BenchResearcher`]) prints `listening <port>` once it
//! listens, `polled <µs>` when the node it waits for first polls and
//! `answered <µs>` when that node has answered a ping, both counted from
//! just before the researcher was started (so one clock measures both).
//!
//! Only executables named `fedroute` are re-run this way (a test or bench
//! binary would run its own tests instead); elsewhere memory is measured in
//! one process and the researcher is restarted in the same process.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;

use super::mem;
use super::rig::{BenchNodeHandle, BenchResearcher, IdentityFiles};
use super::BenchError;
use fedroute::node::{PollMode, ResearcherEndpoint};
use fedroute::tls::TrustPolicy;

/// The environment variable that makes [`super::run`] act as a bench node:
/// `<port> <pinned certificate path> <unary|streaming> <node id> <receive buffer bytes>`.
pub const CHILD_ENV: &str = "FEDROUTE_BENCH_CHILD";
/// The environment variable that makes [`super::run`] act as a bench
/// researcher: `<port, 0 for any> <certificate path> <key path> <node id>`.
pub const RESEARCHER_ENV: &str = "FEDROUTE_BENCH_RESEARCHER";
/// Set (to anything) to see the children's logs on this process's stderr
/// (they are discarded otherwise, e.g. `FEDROUTE_BENCH_CHILD_STDERR=1
/// RUST_LOG=fedroute=debug fedroute bench --only 5`).
pub const STDERR_ENV: &str = "FEDROUTE_BENCH_CHILD_STDERR";
/// How long the child may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// True when the current executable may be re-run as a bench node.
pub fn can_spawn() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s == "fedroute"))
        .unwrap_or(false)
}

/// A child process re-running this executable, and the lines it prints.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    what: &'static str,
}

fn child_stderr() -> Stdio {
    if std::env::var_os(STDERR_ENV).is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

impl Peer {
    /// Starts this executable again with `env`=`spec`.
    fn spawn(env: &str, spec: String, what: &'static str) -> Result<Peer, BenchError> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(env, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(child_stderr())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| BenchError::Setup {
            what: format!("the {what} process has no stdout"),
        })?;
        let (tx, lines) = mpsc::channel(64);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Peer {
            child,
            stdin,
            lines,
            what,
        })
    }

    /// Waits for the line starting with `word`; returns the numbers after it.
    async fn answer(&mut self, word: &str) -> Result<Vec<u64>, BenchError> {
        loop {
            let line = tokio::time::timeout(ANSWER_TIMEOUT, self.lines.recv())
                .await
                .map_err(|_| BenchError::Timeout {
                    what: format!("the {} process to answer {word:?}", self.what),
                    after: ANSWER_TIMEOUT,
                })?
                .ok_or_else(|| BenchError::Failed {
                    what: format!("the {} process exited", self.what),
                })?;
            let mut parts = line.split_whitespace();
            match parts.next() {
                Some(w) if w == word => {
                    return Ok(parts.filter_map(|p| p.parse().ok()).collect());
                }
                Some("error") => {
                    return Err(BenchError::Failed {
                        what: format!("{} process: {line}", self.what),
                    })
                }
                // Anything else the program printed.
                _ => continue,
            }
        }
    }

    /// The single number after `word`.
    async fn number(&mut self, word: &str) -> Result<u64, BenchError> {
        let v = self.answer(word).await?;
        v.first().copied().ok_or_else(|| BenchError::Failed {
            what: format!("the {} process said {word:?} without a number", self.what),
        })
    }

    async fn command(&mut self, cmd: &str) -> Result<Vec<u64>, BenchError> {
        let stdin = self.stdin.as_mut().ok_or_else(|| BenchError::Failed {
            what: format!("the {} process stdin is closed", self.what),
        })?;
        writeln!(stdin, "{cmd}")?;
        stdin.flush()?;
        self.answer(cmd).await
    }

    /// Closes stdin (the child stops its peer and exits) and waits for it,
    /// killing it after a few seconds.
    async fn stop(mut self) {
        self.stdin = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if std::time::Instant::now() >= deadline => break,
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        self.kill();
    }

    /// SIGKILL, and waits for the process to be gone.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Stop the process we started if `stop` was not awaited.
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// A bench node running in a child process.
pub struct NodeChild {
    peer: Peer,
    /// The node id.
    pub node_id: String,
}

impl NodeChild {
    /// Starts a node process dialling 127.0.0.1:`port`, pinning `cert`.
    /// Resolves when the child says `ready`.
    pub async fn spawn(
        port: u16,
        cert: &Path,
        mode: PollMode,
        node_id: &str,
        receive_buffer_bytes: usize,
    ) -> Result<NodeChild, BenchError> {
        let spec = format!(
            "{port} {} {} {node_id} {receive_buffer_bytes}",
            cert.display(),
            if mode == PollMode::Unary {
                "unary"
            } else {
                "streaming"
            }
        );
        let mut peer = Peer::spawn(CHILD_ENV, spec, "bench node")?;
        peer.answer("ready").await?;
        Ok(NodeChild {
            peer,
            node_id: node_id.to_owned(),
        })
    }

    /// `(VmRSS, VmHWM)` of the child, in bytes.
    pub async fn memory(&mut self) -> Result<(u64, u64), BenchError> {
        let v = self.peer.command("mem").await?;
        match v.as_slice() {
            [rss, hwm] => Ok((*rss, *hwm)),
            _ => Err(BenchError::Failed {
                what: format!("bad memory answer {v:?}"),
            }),
        }
    }

    /// Resets the child's peak; returns its current RSS.
    pub async fn reset_peak(&mut self) -> Result<u64, BenchError> {
        let v = self.peer.command("reset").await?;
        v.first().copied().ok_or_else(|| BenchError::Failed {
            what: "bad reset answer".into(),
        })
    }

    /// Closes stdin (the child shuts its node down and exits) and waits
    /// for it, killing it after a few seconds.
    pub async fn stop(self) {
        self.peer.stop().await
    }
}

/// A bench researcher running in a child process, waiting for one node.
pub struct ResearcherChild {
    peer: Peer,
    /// The port it listens on.
    pub port: u16,
}

/// When a restarted researcher saw its node again, counted from just
/// before it was started.
#[derive(Debug, Clone, Copy)]
pub struct BackAfter {
    /// The node's first poll.
    pub polled: Duration,
    /// The node's answer to a ping sent right after that poll.
    pub answered: Duration,
}

impl ResearcherChild {
    /// Starts a researcher process on 127.0.0.1:`port` (0: any) with the
    /// identity in `files`, waiting for `node_id`. Resolves when it listens.
    pub async fn spawn(
        port: u16,
        files: &IdentityFiles,
        node_id: &str,
    ) -> Result<ResearcherChild, BenchError> {
        let spec = format!(
            "{port} {} {} {node_id}",
            files.cert.display(),
            files.key.display()
        );
        let mut peer = Peer::spawn(RESEARCHER_ENV, spec, "bench researcher")?;
        let listening = peer.number("listening").await?;
        let port = u16::try_from(listening).map_err(|_| BenchError::Failed {
            what: format!("the bench researcher listens on port {listening}"),
        })?;
        Ok(ResearcherChild { peer, port })
    }

    /// Waits until the node has polled and answered a ping.
    pub async fn back_after(&mut self) -> Result<BackAfter, BenchError> {
        let polled = Duration::from_micros(self.peer.number("polled").await?);
        let answered = Duration::from_micros(self.peer.number("answered").await?);
        Ok(BackAfter { polled, answered })
    }

    /// Kills the process with SIGKILL (no shutdown: the node sees its
    /// connection reset, as in a crash) and waits until it is gone.
    pub fn kill(mut self) {
        self.peer.kill();
    }

    /// Closes stdin (the researcher shuts down) and waits for the process.
    pub async fn stop(self) {
        self.peer.stop().await
    }
}

/// When this process was started by [`NodeChild::spawn`],
/// [`ResearcherChild::spawn`] or the crash soak (as its researcher), runs
/// the bench peer and exits the process; otherwise returns at once.
pub fn run_child_if_asked() {
    let result = if let Ok(spec) = std::env::var(CHILD_ENV) {
        child_main(&spec)
    } else if let Ok(spec) = std::env::var(RESEARCHER_ENV) {
        researcher_main(&spec)
    } else if let Ok(spec) = std::env::var(super::crash_soak::CRASH_RESEARCHER_ENV) {
        super::crash_child::main(&spec)
    } else {
        return;
    };
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            say(&format!("error {}", fedroute::ErrorChain(&e)));
            1
        }
    };
    std::process::exit(code);
}

/// The lines of stdin, until it closes.
pub(crate) fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    lines
}

fn researcher_main(spec: &str) -> Result<(), BenchError> {
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let [port, cert, key, node_id] = parts.as_slice() else {
        return Err(BenchError::Setup {
            what: format!("{RESEARCHER_ENV}={spec:?} is not `<port> <cert> <key> <node id>`"),
        });
    };
    let port: u16 = port.parse().map_err(|_| BenchError::Setup {
        what: format!("bad port {port:?} in {RESEARCHER_ENV}"),
    })?;
    let files = IdentityFiles::borrowed(PathBuf::from(cert), PathBuf::from(key));
    let ids = [node_id.to_string()];
    let mut stdin = stdin_lines();
    actix::System::new().block_on(async move {
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        // Taken before `start` (which binds early): the figures include the
        // start-up, so they are upper bounds.
        let started = std::time::Instant::now();
        let mut researcher = BenchResearcher::start_with(
            std::sync::Arc::new(files),
            Some(listen),
            fedroute::config::ReceiveLimits::DEFAULT_BUFFER_BYTES,
        )
        .await?;
        say(&format!(
            "listening {}",
            researcher.handle.local_addr.port()
        ));
        let work = async {
            let polled = researcher
                .wait_connected(&ids, ANSWER_TIMEOUT)
                .await?
                .saturating_duration_since(started);
            say(&format!("polled {}", polled.as_micros()));
            researcher.ping(&ids[0]).await?;
            say(&format!("answered {}", started.elapsed().as_micros()));
            Ok::<(), BenchError>(())
        };
        // Stops when stdin closes (the parent is done or gone), also
        // while waiting for the node.
        tokio::select! {
            r = work => r?,
            _ = async { while stdin.recv().await.is_some() {} } => {}
        }
        while stdin.recv().await.is_some() {}
        researcher.handle.shutdown().await?;
        Ok(())
    })
}

fn child_main(spec: &str) -> Result<(), BenchError> {
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let [port, cert, mode, node_id, buffers] = parts.as_slice() else {
        return Err(BenchError::Setup {
            what: format!(
                "{CHILD_ENV}={spec:?} is not `<port> <cert> <mode> <node id> <receive buffer bytes>`"
            ),
        });
    };
    let receive_buffer_bytes: usize = buffers.parse().map_err(|_| BenchError::Setup {
        what: format!("bad receive buffer byte count {buffers:?} in {CHILD_ENV}"),
    })?;
    let port: u16 = port.parse().map_err(|_| BenchError::Setup {
        what: format!("bad port {port:?} in {CHILD_ENV}"),
    })?;
    let mode = if *mode == "unary" {
        PollMode::Unary
    } else {
        PollMode::Streaming
    };
    let endpoint = ResearcherEndpoint {
        host: "127.0.0.1".into(),
        port,
        trust: TrustPolicy::PinnedCertificate(PathBuf::from(cert)),
        proxy: None,
    };
    let node_id = node_id.to_string();
    let mut commands = stdin_lines();
    actix::System::new().block_on(async move {
        let node = BenchNodeHandle::start_tracked(
            node_id,
            endpoint,
            mode,
            bytes::Bytes::new(),
            None,
            receive_buffer_bytes,
        )
        .await?;
        say("ready");
        while let Some(cmd) = commands.recv().await {
            match cmd.trim() {
                "mem" => say(&format!(
                    "mem {} {}",
                    mem::rss_bytes().unwrap_or(0),
                    mem::peak_rss_bytes().unwrap_or(0)
                )),
                "reset" => {
                    mem::reset_peak();
                    say(&format!("reset {}", mem::rss_bytes().unwrap_or(0)));
                }
                other => say(&format!("error unknown command {other:?}")),
            }
        }
        node.shutdown().await;
        Ok(())
    })
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
