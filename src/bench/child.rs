//! A bench node in a separate process, for honest per-side memory figures.
//!
//! [`NodeChild::spawn`] starts the current executable again (the `fedroute`
//! binary, with the same arguments, so it reaches [`super::run`] again) with
//! the environment variable [`CHILD_ENV`] describing the node to run. In
//! that process [`super::run`] calls [`run_child_if_asked`], which runs the
//! node (a [`BenchNodeHandle`]) and answers line commands on stdin until
//! stdin closes, then exits the process:
//! - `mem` -> `mem <VmRSS bytes> <VmHWM bytes>`
//! - `reset` -> `reset <VmRSS bytes>` (the peak is reset to the current RSS)
//!
//! The child prints `ready` once its controller is started, or `error <why>`.
//! Only executables named `fedroute` are re-run this way (a test or bench
//! binary would run its own tests instead); elsewhere memory is measured in
//! one process.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;

use super::mem;
use super::rig::BenchNodeHandle;
use super::BenchError;
use crate::node::{PollMode, ResearcherEndpoint};
use crate::tls::TrustPolicy;

/// The environment variable that makes [`super::run`] act as a bench node:
/// `<port> <pinned certificate path> <unary|streaming> <node id> <receive buffer bytes>`.
pub const CHILD_ENV: &str = "FEDROUTE_BENCH_CHILD";
/// How long the child may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// True when the current executable may be re-run as a bench node.
pub fn can_spawn() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s == "fedroute"))
        .unwrap_or(false)
}

/// A bench node running in a child process.
pub struct NodeChild {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
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
        let exe = std::env::current_exe()?;
        let spec = format!(
            "{port} {} {} {node_id} {receive_buffer_bytes}",
            cert.display(),
            if mode == PollMode::Unary {
                "unary"
            } else {
                "streaming"
            }
        );
        let mut child = Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(CHILD_ENV, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| BenchError::Setup {
            what: "the bench node process has no stdout".into(),
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
        let mut me = NodeChild {
            child,
            stdin,
            lines,
            node_id: node_id.to_owned(),
        };
        me.answer("ready").await?;
        Ok(me)
    }

    async fn answer(&mut self, word: &str) -> Result<Vec<u64>, BenchError> {
        loop {
            let line = tokio::time::timeout(ANSWER_TIMEOUT, self.lines.recv())
                .await
                .map_err(|_| BenchError::Timeout {
                    what: format!("the bench node process to answer {word:?}"),
                    after: ANSWER_TIMEOUT,
                })?
                .ok_or_else(|| BenchError::Failed {
                    what: "the bench node process exited".into(),
                })?;
            let mut parts = line.split_whitespace();
            match parts.next() {
                Some(w) if w == word => {
                    return Ok(parts.filter_map(|p| p.parse().ok()).collect());
                }
                Some("error") => {
                    return Err(BenchError::Failed {
                        what: format!("bench node process: {line}"),
                    })
                }
                // Anything else the program printed.
                _ => continue,
            }
        }
    }

    async fn command(&mut self, cmd: &str) -> Result<Vec<u64>, BenchError> {
        let stdin = self.stdin.as_mut().ok_or_else(|| BenchError::Failed {
            what: "the bench node process stdin is closed".into(),
        })?;
        writeln!(stdin, "{cmd}")?;
        stdin.flush()?;
        self.answer(cmd).await
    }

    /// `(VmRSS, VmHWM)` of the child, in bytes.
    pub async fn memory(&mut self) -> Result<(u64, u64), BenchError> {
        let v = self.command("mem").await?;
        match v.as_slice() {
            [rss, hwm] => Ok((*rss, *hwm)),
            _ => Err(BenchError::Failed {
                what: format!("bad memory answer {v:?}"),
            }),
        }
    }

    /// Resets the child's peak; returns its current RSS.
    pub async fn reset_peak(&mut self) -> Result<u64, BenchError> {
        let v = self.command("reset").await?;
        v.first().copied().ok_or_else(|| BenchError::Failed {
            what: "bad reset answer".into(),
        })
    }

    /// Closes stdin (the child shuts its node down and exits) and waits
    /// for it, killing it after a few seconds.
    pub async fn stop(mut self) {
        self.stdin = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if std::time::Instant::now() >= deadline => break,
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeChild {
    fn drop(&mut self) {
        // Stop the process we started if `stop` was not awaited.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// When this process was started by [`NodeChild::spawn`], runs the bench
/// node and exits the process; otherwise returns at once.
pub fn run_child_if_asked() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let code = match child_main(&spec) {
        Ok(()) => 0,
        Err(e) => {
            println!("error {e}");
            1
        }
    };
    std::process::exit(code);
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
    };
    let node_id = node_id.to_string();
    let (tx, mut commands) = mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
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
