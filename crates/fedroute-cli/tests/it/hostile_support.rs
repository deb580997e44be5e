//! Support of the hostile suite (`tests/hostile_*.rs`): what the target's
//! memory and CPU do, an attacker on its own thread and runtime (so that the
//! attack does not share the target's event loop), lazy frame streams that
//! send hundreds of megabytes without holding them, a hostile researcher
//! server, the honest traffic whose round trips must go on, and a
//! `fedroute node` child process with its log lines counted. Every wait is
//! bounded.
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::pin::Pin;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fedroute::proto::researcher_service_client::ResearcherServiceClient;
use fedroute::proto::researcher_service_server::ResearcherService;
use fedroute::proto::{Empty, FeedbackMessage, TaskRequest, TaskResponse, TaskResult};
use fedroute::researcher::{Request, ResearcherHandle};
use fedroute::tls::{self, CertificateDer};
use fedroute::wire::{self, Envelope, PingRequest, Value, CHUNK_SIZE, GRPC_MAX_MESSAGE_BYTES};
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;
use tonic::{Response, Status, Streaming};

/// Bound on any one await of the suite.
pub(crate) const T: Duration = Duration::from_secs(90);

/// Awaits `fut` at most [`T`]; a timeout fails the test naming `what`.
pub(crate) async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    fedroute_testkit::within_for(T, what, fut).await
}

// ---------------------------------------------------------------------------
// memory and CPU of a process

/// Resident and virtual memory of a process, in MiB.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Mem {
    /// VmRSS.
    pub(crate) rss_mib: f64,
    /// VmSize.
    pub(crate) vm_mib: f64,
}

/// The memory of process `pid` (`None`: this process); `None` once it is gone.
pub(crate) fn mem_of(pid: Option<u32>) -> Option<Mem> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| -> Option<f64> {
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    };
    Some(Mem {
        rss_mib: field("VmRSS:")?,
        vm_mib: field("VmSize:")?,
    })
}

/// CPU seconds (user + system) process `pid` used so far.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Samples a process's memory every 10 ms on a thread and keeps the peak.
pub(crate) struct PeakMemory {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Mem>>,
}

impl PeakMemory {
    /// Starts sampling process `pid` (`None`: this process).
    pub(crate) fn start(pid: Option<u32>) -> PeakMemory {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = Mem::default();
            while !flag.load(Ordering::Relaxed) {
                if let Some(m) = mem_of(pid) {
                    peak.rss_mib = peak.rss_mib.max(m.rss_mib);
                    peak.vm_mib = peak.vm_mib.max(m.vm_mib);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        PeakMemory {
            stop,
            thread: Some(thread),
        }
    }

    /// The peak seen so far, and stops.
    pub(crate) fn stop(mut self) -> Mem {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

// ---------------------------------------------------------------------------
// an attacker on its own thread

/// Runs `attack` on a new thread with its own single-threaded runtime, the
/// way an independent client process would; await its result with
/// [`finished`].
pub(crate) fn attacker<F, Fut, R>(attack: F) -> std::thread::JoinHandle<R>
where
    F: FnOnce() -> Fut + std::marker::Send + 'static,
    Fut: Future<Output = R>,
    R: std::marker::Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                // Bounded: the thread ends by itself even if the test gave up.
                match tokio::time::timeout(T, attack()).await {
                    Ok(done) => done,
                    Err(_) => panic!("the attack ran longer than {T:?}"),
                }
            })
    })
}

/// The attacker's result, awaited without blocking the caller's runtime.
pub(crate) async fn finished<R: std::marker::Send + 'static>(
    attack: std::thread::JoinHandle<R>,
) -> R {
    bounded(
        "the attack",
        tokio::task::spawn_blocking(move || attack.join().expect("the attacker panicked")),
    )
    .await
    .unwrap()
}

/// A raw researcher client, pinned to `cert`, as an attacker would write one.
pub(crate) type Client = ResearcherServiceClient<Channel>;

/// Connects a raw client to the researcher on 127.0.0.1:`port`.
pub(crate) async fn raw_client(port: u16, cert: CertificateDer<'static>) -> Client {
    let config = tls::pinned_client_config(cert, None).unwrap();
    let channel = bounded(
        "raw client connect",
        tls::connect_channel(
            "127.0.0.1",
            port,
            config,
            &fedroute_testkit::researcher::server_windows(),
        ),
    )
    .await
    .expect("the raw client connects");
    ResearcherServiceClient::new(channel)
        .max_decoding_message_size(GRPC_MAX_MESSAGE_BYTES)
        .max_encoding_message_size(GRPC_MAX_MESSAGE_BYTES)
}

/// Runs the ignored test `role` of this test binary in a child process
/// against `target` (see [`role_target`]), with `vars` in its environment:
/// an attacker that is a process of its own, so that the target's memory is
/// measured alone. The role prints `RESULT ...` lines on stdout;
/// [`role_results`] collects them.
pub(crate) fn spawn_role(role: &str, target: &ResearcherHandle, vars: &[(&str, String)]) -> Child {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        role,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE_VAR, role)
    .env(PORT_VAR, target.local_addr.port().to_string())
    .env(CERT_VAR, hex(&target.cert_der))
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::inherit());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.spawn().expect("the attacker process starts")
}

/// Inside a role: the port and certificate of the researcher
/// [`spawn_role`] was given.
fn role_target() -> (u16, CertificateDer<'static>) {
    let port = std::env::var(PORT_VAR).unwrap().parse().unwrap();
    (port, unhex(&std::env::var(CERT_VAR).unwrap()))
}

/// Inside a role: runs `attack` on a fresh current-thread runtime with
/// `connections` raw clients of the researcher [`spawn_role`] was given.
pub(crate) fn attack_with<F, Fut>(connections: usize, attack: F)
where
    F: FnOnce(Vec<Client>) -> Fut,
    Fut: Future<Output = ()>,
{
    let (port, der) = role_target();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut clients = Vec::new();
        for _ in 0..connections {
            clients.push(raw_client(port, der.clone()).await);
        }
        attack(clients).await
    });
}

const PORT_VAR: &str = "HOSTILE_PORT";
const CERT_VAR: &str = "HOSTILE_CERT";

/// A certificate as hex, to hand a role in its environment.
fn hex(der: &CertificateDer<'_>) -> String {
    der.iter().map(|b| format!("{b:02x}")).collect()
}

/// The certificate [`hex`] wrote.
fn unhex(s: &str) -> CertificateDer<'static> {
    let bytes: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect();
    CertificateDer::from(bytes)
}

/// The variable telling a role test it was started by [`spawn_role`].
pub(crate) const ROLE_VAR: &str = "FEDROUTE_HOSTILE_ROLE";

/// True inside a child started by [`spawn_role`] for `role`; a role test
/// does nothing otherwise.
pub(crate) fn playing(role: &str) -> bool {
    std::env::var(ROLE_VAR).is_ok_and(|r| r == role)
}

/// The `RESULT` lines of a role's stdout once it exited (bounded by [`T`]:
/// past it the child is killed and the test fails).
pub(crate) async fn role_results(mut child: Child) -> Vec<String> {
    let out = child.stdout.take().unwrap();
    let reader = tokio::task::spawn_blocking(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            // The harness may print its "test ... " on the same line.
            .filter_map(|l| l.split_once("RESULT ").map(|(_, r)| r.to_string()))
            .collect::<Vec<String>>()
    });
    let deadline = Instant::now() + T;
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the attacker process ran longer than {T:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "the attacker process failed: {exit}");
    bounded("the attacker's output", reader).await.unwrap()
}

// ---------------------------------------------------------------------------
// messages and frames

/// A frame of `CHUNK_SIZE` bytes: `prefix`, then `fill` to the end.
pub(crate) fn full_frame(prefix: &[u8], fill: u8) -> Bytes {
    let mut v = vec![fill; CHUNK_SIZE];
    v[..prefix.len()].copy_from_slice(prefix);
    Bytes::from(v)
}

/// The msgpack header of an array claiming `n` elements.
pub(crate) fn array_header(n: u32) -> Vec<u8> {
    let mut v = vec![0xdd];
    v.extend_from_slice(&n.to_be_bytes());
    v
}

/// Frames of a message of `size` frames of which `send` are sent: frame 1
/// is `first`, the others `rest` (shared, never copied here).
pub(crate) fn lazy_frames(
    first: Bytes,
    rest: Bytes,
    size: i32,
    send: i32,
) -> Vec<(i32, i32, Bytes)> {
    (1..=send)
        .map(|i| {
            let b = if i == 1 { first.clone() } else { rest.clone() };
            (size, i, b)
        })
        .collect()
}

/// `lazy_frames` as `ReplyTask` frames, optionally held open (never ended)
/// after the last one until `hold` is set.
pub(crate) fn reply_stream(
    frames: Vec<(i32, i32, Bytes)>,
    hold: Option<watch::Receiver<bool>>,
) -> Pin<Box<dyn Stream<Item = TaskResult> + std::marker::Send>> {
    let sent =
        futures::stream::iter(
            frames
                .into_iter()
                .map(|(size, iteration, bytes)| TaskResult {
                    size,
                    iteration,
                    bytes,
                }),
        );
    match hold {
        None => Box::pin(sent),
        Some(mut hold) => {
            use futures::StreamExt;
            let wait = futures::stream::once(async move {
                let _ = hold.wait_for(|h| *h).await;
            })
            .filter_map(|()| async { None });
            Box::pin(sent.chain(wait))
        }
    }
}

/// A ping request of the researcher `handle`.
pub(crate) fn ping(researcher_id: &str) -> Envelope {
    Envelope::from_typed(&PingRequest::new(researcher_id.to_string())).unwrap()
}

/// A minimal PingReply-looking reply from `node` (no pending request).
pub(crate) fn stray_reply(node: &str) -> Envelope {
    Envelope::from_value(Value::map([
        ("protocol_version", Value::Str("7".into())),
        ("researcher_id", Value::Str("RESEARCHER_x".into())),
        ("request_id", Value::Str(uuid::Uuid::new_v4().to_string())),
        ("node_id", Value::Str(node.into())),
        ("node_name", Value::Str(node.into())),
        (
            "__type_message__",
            Value::map([
                ("module", Value::Str(wire::MESSAGE_MODULE.into())),
                ("class", Value::Str("PingReply".into())),
            ]),
        ),
    ]))
    .unwrap()
}

// ---------------------------------------------------------------------------
// honest traffic

/// Round trips of the honest node while an attack runs.
#[derive(Debug, Default)]
pub(crate) struct PingStats {
    /// Replies received.
    pub(crate) count: usize,
    /// Requests that failed, with why.
    pub(crate) errors: Vec<String>,
    /// The longest round trip.
    pub(crate) max: Duration,
    /// The longest time without a reply (from the start, between replies,
    /// to the stop): what a stalled event loop shows whatever the timing.
    pub(crate) max_gap: Duration,
    /// How long the monitor ran.
    pub(crate) ran: Duration,
}

impl PingStats {
    /// Round trips per second.
    pub(crate) fn rate(&self) -> f64 {
        self.count as f64 / self.ran.as_secs_f64().max(1e-9)
    }
}

/// `n` pings of `node_id` in a row from `handle`'s researcher (bounded).
pub(crate) async fn ping_n(handle: &ResearcherHandle, node_id: &str, n: usize) -> PingStats {
    let mut stats = PingStats::default();
    let started = Instant::now();
    for _ in 0..n {
        let sent = Instant::now();
        let answer = bounded(
            "a ping",
            handle.addr.send(Request {
                node_id: node_id.to_string(),
                message: ping(&handle.researcher_id),
                timeout: Duration::from_secs(20),
            }),
        )
        .await;
        match answer {
            Ok(Ok(reply)) if reply.class() == "PingReply" => {
                stats.count += 1;
                stats.max = stats.max.max(sent.elapsed());
            }
            Ok(Ok(other)) => stats
                .errors
                .push(format!("answered with {}", other.class())),
            Ok(Err(e)) => stats.errors.push(e.to_string()),
            Err(e) => stats.errors.push(e.to_string()),
        }
    }
    stats.ran = started.elapsed();
    stats
}

/// Pings a node back to back through a researcher until stopped.
pub(crate) struct PingMonitor {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<PingStats>,
}

impl PingMonitor {
    /// Starts pinging `node_id` from `handle`'s researcher.
    pub(crate) fn start(handle: &ResearcherHandle, node_id: &str) -> PingMonitor {
        let (stop, mut stopped) = watch::channel(false);
        let handle = handle.clone();
        let node_id = node_id.to_string();
        let task = tokio::spawn(async move {
            let mut stats = PingStats::default();
            let started = Instant::now();
            let mut last = started;
            while !*stopped.borrow() {
                let sent = Instant::now();
                let ask = handle.addr.send(Request {
                    node_id: node_id.clone(),
                    message: ping(&handle.researcher_id),
                    timeout: Duration::from_secs(20),
                });
                let answer = tokio::select! {
                    a = ask => a,
                    _ = stopped.changed() => break,
                };
                match answer {
                    Ok(Ok(reply)) if reply.class() == "PingReply" => {
                        stats.count += 1;
                        stats.max = stats.max.max(sent.elapsed());
                        stats.max_gap = stats.max_gap.max(last.elapsed());
                        last = Instant::now();
                    }
                    Ok(Ok(other)) => stats
                        .errors
                        .push(format!("answered with {}", other.class())),
                    Ok(Err(e)) => {
                        stats.errors.push(e.to_string());
                        stats.max = stats.max.max(sent.elapsed());
                    }
                    Err(e) => stats.errors.push(e.to_string()),
                }
            }
            stats.ran = started.elapsed();
            stats.max_gap = stats.max_gap.max(last.elapsed());
            stats
        });
        PingMonitor { stop, task }
    }

    /// Stops and returns what it saw.
    pub(crate) async fn stop(self) -> PingStats {
        let _ = self.stop.send(true);
        bounded("the ping monitor", self.task).await.unwrap()
    }
}

// ---------------------------------------------------------------------------
// a hostile researcher

/// What the hostile researcher hands the next poll.
pub(crate) enum Script {
    /// These frames, then the poll ends.
    Frames(Vec<(i32, i32, Bytes)>),
    /// These frames, then the poll stays open with nothing more.
    FramesThenStall(Vec<(i32, i32, Bytes)>),
    /// This message, chunked, then the poll ends.
    Message(Bytes),
    /// These messages, one after the other on the same poll.
    Messages(Vec<Bytes>),
}

/// How the hostile researcher treats `ReplyTask` calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Replies {
    /// Reads and drops them.
    Read,
    /// Accepts the call and never reads a frame of it.
    NeverRead,
}

#[derive(Clone)]
struct Hostile {
    scripts: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Script>>>,
    /// Scripted tasks handed out, and polls with nothing scripted.
    served: Arc<AtomicUsize>,
    replies: Replies,
    reply_calls: Arc<AtomicUsize>,
}

type Frames = Pin<Box<dyn Stream<Item = Result<TaskResponse, Status>> + std::marker::Send>>;

#[tonic::async_trait]
impl ResearcherService for Hostile {
    type GetTaskStream = Frames;
    type GetTaskUnaryStream = Frames;

    async fn get_task(
        &self,
        _: tonic::Request<Streaming<TaskRequest>>,
    ) -> Result<Response<Frames>, Status> {
        Err(Status::unimplemented("unary polls only"))
    }

    async fn get_task_unary(
        &self,
        _: tonic::Request<TaskRequest>,
    ) -> Result<Response<Frames>, Status> {
        let (tx, rx) = mpsc::channel(4);
        let scripts = Arc::clone(&self.scripts);
        let served = Arc::clone(&self.served);
        tokio::spawn(async move {
            let script = tokio::select! {
                s = async { scripts.lock().await.recv().await } => s,
                _ = tx.closed() => return,
            };
            let Some(script) = script else { return };
            served.fetch_add(1, Ordering::SeqCst);
            let (frames, stall) = match script {
                Script::Frames(f) => (f, false),
                Script::FramesThenStall(f) => (f, true),
                Script::Message(m) => (
                    wire::Frame::split(m)
                        .map(|f| (f.size, f.iteration, f.bytes))
                        .collect(),
                    false,
                ),
                Script::Messages(all) => (
                    all.into_iter()
                        .flat_map(wire::Frame::split)
                        .map(|f| (f.size, f.iteration, f.bytes))
                        .collect(),
                    false,
                ),
            };
            for (size, iteration, bytes) in frames {
                let frame = TaskResponse {
                    size,
                    iteration,
                    bytes,
                };
                if tx.send(Ok(frame)).await.is_err() {
                    return;
                }
            }
            if stall {
                tx.closed().await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn reply_task(
        &self,
        request: tonic::Request<Streaming<TaskResult>>,
    ) -> Result<Response<Empty>, Status> {
        self.reply_calls.fetch_add(1, Ordering::SeqCst);
        let mut frames = request.into_inner();
        match self.replies {
            Replies::Read => while frames.message().await?.is_some() {},
            Replies::NeverRead => std::future::pending::<()>().await,
        }
        Ok(Response::new(Empty {}))
    }

    async fn feedback(
        &self,
        _: tonic::Request<FeedbackMessage>,
    ) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }
}

/// A hostile researcher: a tonic server over TLS on its own thread and
/// runtime, serving scripted polls; stops when dropped.
pub(crate) struct HostileResearcher {
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
    /// The researcher id of its certificate.
    pub(crate) researcher_id: String,
    scripts: mpsc::UnboundedSender<Script>,
    served: Arc<AtomicUsize>,
    reply_calls: Arc<AtomicUsize>,
    _server: crate::node_support::ServerThread,
}

/// Starts `fedroute node` as `NODE_target` serving `hostile` and
/// 127.0.0.1:`honest_port`, with the `extra` flags.
pub(crate) fn start_node_between(
    hostile: &HostileResearcher,
    honest_port: u16,
    extra: &[&str],
) -> Process {
    let hostile_addr = format!("127.0.0.1:{}", hostile.port);
    let honest_addr = format!("127.0.0.1:{honest_port}");
    let mut args = vec![
        "node",
        "--id",
        "NODE_target",
        "--researcher",
        &hostile_addr,
        "--researcher",
        &honest_addr,
    ];
    args.extend_from_slice(extra);
    Process::start(&args, "info")
}

/// [`start_node_between`], once the node is connected to `hostile`.
pub(crate) async fn node_between(
    hostile: &HostileResearcher,
    honest_port: u16,
    extra: &[&str],
) -> Process {
    let node = start_node_between(hostile, honest_port, extra);
    node.wait_line(&format!(
        "connected to researcher {}",
        hostile.researcher_id
    ))
    .await;
    node
}

impl HostileResearcher {
    /// Starts one on a free port.
    pub(crate) fn start(replies: Replies) -> HostileResearcher {
        tls::install_crypto_provider();
        let identity = tls::generate_researcher_identity(None, "127.0.0.1").unwrap();
        let researcher_id = identity.researcher_id.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (scripts, rx) = mpsc::unbounded_channel();
        let served = Arc::new(AtomicUsize::new(0));
        let reply_calls = Arc::new(AtomicUsize::new(0));
        let service = Hostile {
            scripts: Arc::new(tokio::sync::Mutex::new(rx)),
            served: Arc::clone(&served),
            replies,
            reply_calls: Arc::clone(&reply_calls),
        };
        let server = crate::node_support::ServerThread::start(
            listener,
            &identity,
            service,
            "hostile researcher",
        );
        HostileResearcher {
            port,
            researcher_id,
            scripts,
            served,
            reply_calls,
            _server: server,
        }
    }

    /// Queues what the next poll gets.
    pub(crate) fn script(&self, script: Script) {
        self.scripts.send(script).unwrap();
    }

    /// Scripts handed out so far.
    pub(crate) fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// `ReplyTask` calls opened so far.
    pub(crate) fn reply_calls(&self) -> usize {
        self.reply_calls.load(Ordering::SeqCst)
    }

    /// Waits until `n` scripts were handed out.
    pub(crate) async fn until_served(&self, n: usize) {
        bounded(&format!("{n} scripted polls"), async {
            while self.served() < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }
}

// ---------------------------------------------------------------------------
// a `fedroute` child process

/// A `fedroute` child whose stderr lines are counted (the last ones kept);
/// killed when dropped.
pub(crate) struct Process {
    /// The child.
    pub(crate) child: Child,
    lines: Arc<AtomicU64>,
    tail: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `fedroute ARGS` with `RUST_LOG=rust_log`.
    pub(crate) fn start(args: &[&str], rust_log: &str) -> Process {
        Process::start_command(crate::cli_support::fedroute(args, rust_log), rust_log)
    }

    /// Starts `cmd` (which runs fedroute) with `RUST_LOG=rust_log`.
    pub(crate) fn start_command(mut cmd: std::process::Command, rust_log: &str) -> Process {
        let mut child = cmd
            .env("RUST_LOG", rust_log)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("fedroute starts");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(AtomicU64::new(0));
        let tail = Arc::new(Mutex::new(Vec::new()));
        let (l, t) = (Arc::clone(&lines), Arc::clone(&tail));
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                l.fetch_add(1, Ordering::SeqCst);
                let mut t = t.lock().unwrap();
                t.push(line);
                if t.len() > 400 {
                    t.drain(..200);
                }
            }
        });
        Process { child, lines, tail }
    }

    /// Its pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while it runs.
    pub(crate) fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Lines written to stderr so far.
    pub(crate) fn lines(&self) -> u64 {
        self.lines.load(Ordering::SeqCst)
    }

    /// The last lines (at most a few hundred).
    pub(crate) fn tail(&self) -> String {
        self.tail.lock().unwrap().join("\n")
    }

    /// Waits until a stderr line contains `needle`.
    pub(crate) async fn wait_line(&self, needle: &str) {
        self.wait_lines(needle, 1).await
    }

    /// Waits until `n` of the kept stderr lines contain `needle`.
    pub(crate) async fn wait_lines(&self, needle: &str, n: usize) {
        bounded(&format!("{n} lines with {needle:?}"), async {
            loop {
                let seen = self
                    .tail
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|l| l.contains(needle))
                    .count();
                if seen >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
