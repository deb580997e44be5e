//! Test support of the fault and hostile-input tests:
//! - [`Proxy`]: a TCP proxy between node and researcher (TLS passes through)
//!   that can cut every connection, stall, drop bytes mid-stream, or cut by
//!   itself once a number of bytes went through in one direction;
//! - [`EvilResearcher`]: a tonic server (real TLS) that sends a node scripted
//!   frame sequences, honouring streaming credits;
//! - [`vm_rss_kib`].
//!
//! Every task started here stops when its owner is dropped.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fedroute::proto::researcher_service_server::{ResearcherService, ResearcherServiceServer};
use fedroute::proto::{Empty, FeedbackMessage, TaskRequest, TaskResponse, TaskResult};
use fedroute::tls;
use fedroute::wire::{self, Envelope, Reassembler};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Mutex, Notify};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Resident memory of this process, in KiB.
pub fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Direction of traffic through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Node to researcher (replies, credits).
    Up,
    /// Researcher to node (tasks).
    Down,
}

#[derive(Default)]
struct Control {
    /// Bumped to cut every open connection.
    cut: AtomicU64,
    /// While set, nothing is forwarded.
    stalled: AtomicBool,
    unstalled: Notify,
    /// Bytes forwarded up / down since the start.
    up: AtomicU64,
    down: AtomicU64,
    /// Cut everything once `up` (or `down`) reaches this (0: disarmed).
    cut_at_up: AtomicU64,
    cut_at_down: AtomicU64,
    /// Bytes still to drop up / down.
    drop_up: AtomicU64,
    drop_down: AtomicU64,
    /// Start dropping `drop_n_*` bytes once the counter reaches `drop_at_*` (0: disarmed).
    drop_at_up: AtomicU64,
    drop_at_down: AtomicU64,
    drop_n_up: AtomicU64,
    drop_n_down: AtomicU64,
    /// Connections accepted.
    accepted: AtomicU64,
    /// Cuts done.
    cuts: AtomicU64,
}

/// A TCP proxy on 127.0.0.1 forwarding to a target address.
pub struct Proxy {
    /// Where nodes connect.
    pub addr: SocketAddr,
    ctl: Arc<Control>,
    cut_tx: watch::Sender<u64>,
    cut_events: Mutex<mpsc::UnboundedReceiver<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `target` on a free port of 127.0.0.1.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, target)
    }

    /// Starts a proxy on `listener`.
    pub fn start_on(listener: TcpListener, target: SocketAddr) -> Proxy {
        let addr = listener.local_addr().unwrap();
        let ctl = Arc::new(Control::default());
        let (cut_tx, cut_rx) = watch::channel(0u64);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let c = Arc::clone(&ctl);
        let cut_tx2 = cut_tx.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((inbound, _)) = accepted else { continue };
                        c.accepted.fetch_add(1, Ordering::Relaxed);
                        conns.spawn(serve(
                            inbound,
                            target,
                            Arc::clone(&c),
                            cut_rx.clone(),
                            cut_tx2.clone(),
                            events_tx.clone(),
                        ));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            // Dropping `conns` (when this task is aborted) closes every connection.
        });
        Proxy {
            addr,
            ctl,
            cut_tx,
            cut_events: Mutex::new(events_rx),
            task,
        }
    }

    /// Cuts every open connection now (the sockets are reset).
    pub fn cut(&self) {
        cut_all(&self.ctl, &self.cut_tx);
    }

    /// Cuts every connection once `bytes` more went through in `dir`.
    pub fn cut_after(&self, dir: Dir, bytes: u64) {
        let (counter, at) = match dir {
            Dir::Up => (&self.ctl.up, &self.ctl.cut_at_up),
            Dir::Down => (&self.ctl.down, &self.ctl.cut_at_down),
        };
        at.store(
            counter.load(Ordering::SeqCst) + bytes.max(1),
            Ordering::SeqCst,
        );
    }

    /// Waits (bounded by `within`) until a cut armed with [`Proxy::cut_after`] happened.
    pub async fn wait_cut(&self, within: Duration) -> u64 {
        let mut rx = self.cut_events.lock().await;
        tokio::time::timeout(within, rx.recv())
            .await
            .expect("the armed cut did not happen")
            .expect("proxy gone")
    }

    /// Stops (true) or resumes (false) forwarding, keeping connections open.
    pub fn stall(&self, on: bool) {
        self.ctl.stalled.store(on, Ordering::SeqCst);
        if !on {
            self.ctl.unstalled.notify_waiters();
        }
    }

    /// Drops the next `bytes` bytes going in `dir` (the TLS session breaks).
    pub fn drop_bytes(&self, dir: Dir, bytes: u64) {
        match dir {
            Dir::Up => self.ctl.drop_up.store(bytes, Ordering::SeqCst),
            Dir::Down => self.ctl.drop_down.store(bytes, Ordering::SeqCst),
        }
    }

    /// Drops `bytes` bytes going in `dir` once `after` more bytes went through.
    pub fn drop_bytes_after(&self, dir: Dir, after: u64, bytes: u64) {
        let (counter, at, n) = match dir {
            Dir::Up => (&self.ctl.up, &self.ctl.drop_at_up, &self.ctl.drop_n_up),
            Dir::Down => (
                &self.ctl.down,
                &self.ctl.drop_at_down,
                &self.ctl.drop_n_down,
            ),
        };
        n.store(bytes, Ordering::SeqCst);
        at.store(
            counter.load(Ordering::SeqCst) + after.max(1),
            Ordering::SeqCst,
        );
    }

    /// Bytes forwarded in `dir` so far.
    pub fn bytes(&self, dir: Dir) -> u64 {
        match dir {
            Dir::Up => self.ctl.up.load(Ordering::SeqCst),
            Dir::Down => self.ctl.down.load(Ordering::SeqCst),
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.ctl.accepted.load(Ordering::SeqCst)
    }

    /// Cuts done so far.
    pub fn cuts(&self) -> u64 {
        self.ctl.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn cut_all(ctl: &Control, tx: &watch::Sender<u64>) {
    ctl.cuts.fetch_add(1, Ordering::SeqCst);
    let n = ctl.cut.fetch_add(1, Ordering::SeqCst) + 1;
    tx.send_replace(n);
}

/// Forwards one connection until either side closes or a cut.
async fn serve(
    inbound: TcpStream,
    target: SocketAddr,
    ctl: Arc<Control>,
    mut cut: watch::Receiver<u64>,
    cut_tx: watch::Sender<u64>,
    events: mpsc::UnboundedSender<u64>,
) {
    let generation = *cut.borrow_and_update();
    let Ok(Ok(outbound)) =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target)).await
    else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (mut in_r, mut in_w) = inbound.into_split();
    let (mut out_r, mut out_w) = outbound.into_split();
    let mut up_buf = vec![0u8; 64 * 1024];
    let mut down_buf = vec![0u8; 64 * 1024];
    let mut up_open = true;
    let mut down_open = true;
    while up_open || down_open {
        if ctl.stalled.load(Ordering::SeqCst) {
            let unstalled = ctl.unstalled.notified();
            if ctl.stalled.load(Ordering::SeqCst) {
                tokio::select! {
                    _ = unstalled => {}
                    _ = cut.changed() => break,
                }
            }
            continue;
        }
        tokio::select! {
            _ = cut.changed() => {
                if *cut.borrow() != generation { break; }
            }
            r = in_r.read(&mut up_buf), if up_open => match r {
                Ok(0) | Err(_) => { up_open = false; let _ = out_w.shutdown().await; }
                Ok(n) => {
                    if !forward(&ctl, Dir::Up, &up_buf[..n], &mut out_w, &cut_tx, &events).await {
                        break;
                    }
                }
            },
            r = out_r.read(&mut down_buf), if down_open => match r {
                Ok(0) | Err(_) => { down_open = false; let _ = in_w.shutdown().await; }
                Ok(n) => {
                    if !forward(&ctl, Dir::Down, &down_buf[..n], &mut in_w, &cut_tx, &events).await {
                        break;
                    }
                }
            },
        }
    }
    // Reset both sockets: a cut looks like a crash, not a clean close.
    // (Linger 0 resets at once; nothing blocks on drop.)
    #[allow(deprecated)]
    if let (Ok(a), Ok(b)) = (in_r.reunite(in_w), out_r.reunite(out_w)) {
        let _ = a.set_linger(Some(Duration::ZERO));
        let _ = b.set_linger(Some(Duration::ZERO));
    }
}

/// Forwards `data` (minus bytes to drop); false when the connection must end.
async fn forward(
    ctl: &Control,
    dir: Dir,
    data: &[u8],
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    cut_tx: &watch::Sender<u64>,
    events: &mpsc::UnboundedSender<u64>,
) -> bool {
    let (counter, at, drop, drop_at, drop_n) = match dir {
        Dir::Up => (
            &ctl.up,
            &ctl.cut_at_up,
            &ctl.drop_up,
            &ctl.drop_at_up,
            &ctl.drop_n_up,
        ),
        Dir::Down => (
            &ctl.down,
            &ctl.cut_at_down,
            &ctl.drop_down,
            &ctl.drop_at_down,
            &ctl.drop_n_down,
        ),
    };
    let armed = drop_at.load(Ordering::SeqCst);
    if armed > 0 && counter.load(Ordering::SeqCst) + data.len() as u64 >= armed {
        drop_at.store(0, Ordering::SeqCst);
        drop.store(drop_n.load(Ordering::SeqCst), Ordering::SeqCst);
    }
    let mut data = data;
    let to_drop = drop.load(Ordering::SeqCst);
    if to_drop > 0 {
        // Drop from the middle of this read when possible.
        let n = (data.len() as u64).min(to_drop) as usize;
        drop.fetch_sub(n as u64, Ordering::SeqCst);
        let keep = data.len() - n;
        let head = keep / 2;
        if head > 0 && to.write_all(&data[..head]).await.is_err() {
            return false;
        }
        data = &data[head + n..];
    }
    let total = counter.fetch_add(data.len() as u64, Ordering::SeqCst) + data.len() as u64;
    let limit = at.load(Ordering::SeqCst);
    if limit > 0 && total >= limit {
        at.store(0, Ordering::SeqCst);
        // Forward only up to the limit, then cut.
        let over = (total - limit) as usize;
        let _ = to
            .write_all(&data[..data.len() - over.min(data.len())])
            .await;
        cut_all(ctl, cut_tx);
        let _ = events.send(total);
        return false;
    }
    to.write_all(data).await.is_ok()
}

// ---------------------------------------------------------------------------
// A researcher that sends scripted frames.

/// One scripted task: the frames sent for one poll (unary) or one credit (streaming).
pub type Script = Vec<TaskResponse>;

/// Frames of a well-formed payload.
pub fn script_of(payload: bytes::Bytes) -> Script {
    wire::Frame::split(payload)
        .map(|f| TaskResponse {
            size: f.size,
            iteration: f.iteration,
            bytes: f.bytes,
        })
        .collect()
}

#[derive(Clone)]
struct EvilService {
    streaming: bool,
    hold_replies: Arc<AtomicBool>,
    scripts: Arc<Mutex<mpsc::UnboundedReceiver<Script>>>,
    polls: mpsc::UnboundedSender<()>,
    replies: mpsc::UnboundedSender<Envelope>,
}

type FrameStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<TaskResponse, Status>> + Send + 'static>>;

async fn next_script(
    scripts: &Mutex<mpsc::UnboundedReceiver<Script>>,
    tx: &mpsc::Sender<Result<TaskResponse, Status>>,
) -> Option<Script> {
    let mut q = scripts.lock().await;
    tokio::select! {
        _ = tx.closed() => None,
        s = q.recv() => s,
    }
}

#[tonic::async_trait]
impl ResearcherService for EvilService {
    type GetTaskStream = FrameStream;
    type GetTaskUnaryStream = FrameStream;

    async fn get_task(
        &self,
        request: Request<Streaming<TaskRequest>>,
    ) -> Result<Response<FrameStream>, Status> {
        if !self.streaming {
            return Err(Status::unimplemented("GetTask"));
        }
        let mut credits = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let this = self.clone();
        tokio::spawn(async move {
            // One script per credit.
            while let Ok(Some(_)) = credits.message().await {
                let _ = this.polls.send(());
                let Some(script) = next_script(&this.scripts, &tx).await else {
                    return;
                };
                for f in script {
                    if tx.send(Ok(f)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_task_unary(
        &self,
        _request: Request<TaskRequest>,
    ) -> Result<Response<FrameStream>, Status> {
        let _ = self.polls.send(());
        let (tx, rx) = mpsc::channel(64);
        let scripts = Arc::clone(&self.scripts);
        tokio::spawn(async move {
            let Some(script) = next_script(&scripts, &tx).await else {
                return;
            };
            for f in script {
                if tx.send(Ok(f)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn reply_task(
        &self,
        request: Request<Streaming<TaskResult>>,
    ) -> Result<Response<Empty>, Status> {
        let mut frames = request.into_inner();
        let mut re = Reassembler::default();
        while let Some(f) = frames.message().await? {
            if let Some(p) = re
                .push(f.size, f.iteration, f.bytes)
                .map_err(|e| Status::invalid_argument(e.to_string()))?
            {
                let env =
                    Envelope::decode(p).map_err(|e| Status::invalid_argument(e.to_string()))?;
                let _ = self.replies.send(env);
            }
        }
        if self.hold_replies.load(Ordering::SeqCst) {
            // Read, never acknowledged: the call ends when the node gives up.
            std::future::pending::<()>().await;
        }
        Ok(Response::new(Empty {}))
    }

    async fn feedback(&self, _r: Request<FeedbackMessage>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }
}

/// A malicious researcher (real TLS on 127.0.0.1) sending scripted frames.
pub struct EvilResearcher {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its certificate's researcher id.
    pub researcher_id: String,
    scripts: mpsc::UnboundedSender<Script>,
    hold_replies: Arc<AtomicBool>,
    /// One item per poll (unary call or streaming credit).
    pub polls: mpsc::UnboundedReceiver<()>,
    /// Replies received.
    pub replies: mpsc::UnboundedReceiver<Envelope>,
    task: tokio::task::JoinHandle<()>,
}

impl EvilResearcher {
    /// Starts one; `streaming` says whether it implements `GetTask`.
    pub async fn start(streaming: bool) -> EvilResearcher {
        tls::install_crypto_provider();
        let identity = tls::generate_researcher_identity(None, "127.0.0.1").unwrap();
        let researcher_id = identity.researcher_id.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (scripts_tx, scripts_rx) = mpsc::unbounded_channel();
        let (polls_tx, polls) = mpsc::unbounded_channel();
        let (replies_tx, replies) = mpsc::unbounded_channel();
        let hold_replies = Arc::new(AtomicBool::new(false));
        let service = EvilService {
            hold_replies: Arc::clone(&hold_replies),
            streaming,
            scripts: Arc::new(Mutex::new(scripts_rx)),
            polls: polls_tx,
            replies: replies_tx,
        };
        let tls_config = tls::server_tls_config(&identity, None).unwrap();
        let task = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .tls_config(tls_config)
                .unwrap()
                .add_service(
                    ResearcherServiceServer::new(service)
                        .max_decoding_message_size(wire::GRPC_MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(wire::GRPC_MAX_MESSAGE_BYTES),
                )
                .serve_with_incoming(incoming)
                .await;
        });
        EvilResearcher {
            addr,
            researcher_id,
            scripts: scripts_tx,
            hold_replies,
            polls,
            replies,
            task,
        }
    }

    /// When on, each `ReplyTask` call is read to its end (its replies are
    /// passed on as usual) and then never answered: the node's replies were
    /// received but are never acknowledged.
    pub fn hold_replies(&self, on: bool) {
        self.hold_replies.store(on, Ordering::SeqCst);
    }

    /// Queues a script for the next poll / credit.
    pub fn send(&self, script: Script) {
        self.scripts.send(script).unwrap();
    }
}

impl Drop for EvilResearcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------
// A researcher that can crash.

use actix::prelude::*;
use fedroute::researcher::{self, ResearcherConfig, ResearcherEvent};

/// Bound on the awaits of the helpers below.
pub const STEP: Duration = Duration::from_secs(30);

/// Awaits `f` at most [`STEP`].
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    crate::within_for(STEP, what, f).await
}

struct Sink(mpsc::UnboundedSender<ResearcherEvent>);
impl Actor for Sink {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(100_000);
    }
}
impl Handler<ResearcherEvent> for Sink {
    type Result = ();
    fn handle(&mut self, ev: ResearcherEvent, _: &mut Context<Self>) {
        let _ = self.0.send(ev);
    }
}

/// A researcher in its own thread and actix system: `kill` drops that
/// system's runtime, aborting the server task and cutting every connection.
pub struct Crashable {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its researcher id.
    pub researcher_id: String,
    /// Its actor (messages cross threads).
    pub actor: actix::Addr<fedroute::researcher::Researcher>,
    /// Its events.
    pub events: mpsc::UnboundedReceiver<ResearcherEvent>,
    /// Nodes seen connecting while waiting for another one.
    seen_connected: std::collections::HashSet<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Crashable {
    /// Starts a researcher with `config` (events recorded).
    pub fn start(config: ResearcherConfig) -> Crashable {
        let (ev_tx, events) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let sys = actix::System::new();
            sys.block_on(async move {
                let sink = Sink(ev_tx).start();
                let handle = researcher::start(config, Some(sink.recipient()))
                    .await
                    .expect("researcher starts");
                addr_tx
                    .send((
                        handle.local_addr,
                        handle.researcher_id.clone(),
                        handle.addr.clone(),
                    ))
                    .unwrap();
                let _ = stop_rx.await;
            });
            // `sys` drops here with its runtime: a crash, not a shutdown.
        });
        let (addr, researcher_id, actor) = addr_rx
            .recv_timeout(STEP)
            .expect("researcher thread reports its address");
        Crashable {
            seen_connected: Default::default(),
            addr,
            researcher_id,
            actor,
            events,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Drops its runtime: the server task is aborted, connections cut.
    pub fn kill(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    /// Waits for `NodeConnected` of `node`.
    pub async fn connected(&mut self, node: &str) {
        if self.seen_connected.remove(node) {
            return;
        }
        let seen = &mut self.seen_connected;
        let events = &mut self.events;
        within(&format!("{node} connects"), async {
            loop {
                match events.recv().await.expect("events") {
                    ResearcherEvent::NodeConnected { node_id } if node_id == node => return,
                    // Another node connected first: remember it for its own wait.
                    ResearcherEvent::NodeConnected { node_id } => {
                        seen.insert(node_id);
                    }
                    _ => {}
                }
            }
        })
        .await
    }

    /// The next `n` replies that matched no request (as the test's replies do).
    pub async fn unmatched(&mut self, n: usize) -> Vec<Envelope> {
        let mut out = Vec::new();
        within(&format!("{n} replies"), async {
            while out.len() < n {
                if let ResearcherEvent::UnmatchedReply(e) =
                    self.events.recv().await.expect("events")
                {
                    out.push(e);
                }
            }
        })
        .await;
        out
    }
}

impl Drop for Crashable {
    fn drop(&mut self) {
        self.kill();
    }
}
