//! Test support for the node tests: a small researcher (tonic over real TLS
//! on 127.0.0.1, in its own thread and runtime so that stopping it cuts every
//! connection like a crash), a handler actor that answers pings, and helpers.

pub mod real;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use fedroute::node::{Controller, ControllerConfig, Finished, TaskReceived};
use fedroute::proto::researcher_service_server::{ResearcherService, ResearcherServiceServer};
use fedroute::proto::{Empty, FeedbackMessage, TaskRequest, TaskResponse, TaskResult};
use fedroute::tls;
use fedroute::wire::{self, Envelope, Reassembler, Value};
use tokio::sync::{mpsc, Mutex};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Bound on every await of the tests.
pub const STEP: Duration = Duration::from_secs(10);

/// A config with fast reconnects for tests.
pub fn fast_config() -> ControllerConfig {
    let mut config = ControllerConfig::default();
    config.reconnect.backoff_first = Duration::from_millis(20);
    config.reconnect.backoff_max = Duration::from_millis(200);
    config.channel.connect_timeout = Duration::from_secs(5);
    config
}

/// Awaits `fut` within [`STEP`], panicking with `what` otherwise.
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    crate::within_for(STEP, what, fut).await
}

/// Waits (bounded by [`STEP`]) until `cond` holds, checking every 5 ms: for
/// node state that has no event to await.
pub async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    within(what, async {
        loop {
            if cond().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn str_value(s: &str) -> Value {
    Value::Str(s.to_string())
}

fn type_message(class: &str) -> Value {
    Value::map([
        ("module", str_value("fedbiomed.common.message")),
        ("class", str_value(class)),
    ])
}

/// A `PingRequest` from `researcher_id` with `request_id`.
pub fn ping_request(researcher_id: &str, request_id: &str) -> Envelope {
    Envelope::from_value(Value::map([
        ("protocol_version", str_value("7")),
        ("researcher_id", str_value(researcher_id)),
        ("request_id", str_value(request_id)),
        ("__type_message__", type_message("PingRequest")),
    ]))
    .unwrap()
}

/// The `PingReply` to `request` from `node_id` (the typed wire message).
pub fn ping_reply(request: &Envelope, node_id: &str) -> Envelope {
    Envelope::from_typed(&wire::PingReply::answer(request, node_id, "test node")).unwrap()
}

/// A message of class `class` with a binary `payload` field, for large transfers.
pub fn blob(researcher_id: &str, request_id: &str, class: &str, payload: Bytes) -> Envelope {
    Envelope::from_value(Value::map([
        ("protocol_version", str_value("7")),
        ("researcher_id", str_value(researcher_id)),
        ("request_id", str_value(request_id)),
        ("payload", Value::Bin(payload)),
        ("__type_message__", type_message(class)),
    ]))
    .unwrap()
}

type TaskQueue = Arc<Mutex<mpsc::UnboundedReceiver<Bytes>>>;

#[derive(Clone)]
struct Service {
    streaming: bool,
    tasks: TaskQueue,
    replies: mpsc::UnboundedSender<Envelope>,
    feedback: mpsc::UnboundedSender<FeedbackMessage>,
    polls: mpsc::UnboundedSender<Instant>,
}

/// The deadline a poll asked for (`grpc-timeout`), as a real researcher
/// reads it.
fn poll_deadline<T>(request: &Request<T>) -> Option<tokio::time::Instant> {
    let timeout = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    Some(tokio::time::Instant::now() + grpc_timeout(timeout)?)
}

/// A `grpc-timeout` value (`<up to 8 digits><unit>`, unit one of H M S m u
/// n), read by the fixture itself so that it does not lean on the code it
/// tests.
fn grpc_timeout(value: &str) -> Option<Duration> {
    let digits = value.get(..value.len().checked_sub(1)?)?;
    let n: u64 = if (1..=8).contains(&digits.len()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(match &value[digits.len()..] {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Sends the frames of the next queued task on `tx`; false when the client
/// went away first (the task stays queued) or when the poll's `deadline`
/// came first (the poll then ends with DEADLINE_EXCEEDED, as a real
/// researcher ends it).
async fn serve_one(
    tasks: &TaskQueue,
    tx: &mpsc::Sender<Result<TaskResponse, Status>>,
    deadline: Option<tokio::time::Instant>,
) -> bool {
    let mut queue = tasks.lock().await;
    let expired = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let task = tokio::select! {
        _ = tx.closed() => return false,
        _ = expired => {
            let _ = tx.send(Err(Status::deadline_exceeded("no task before the poll's deadline"))).await;
            return false;
        }
        task = queue.recv() => task,
    };
    drop(queue);
    let Some(task) = task else { return false };
    for f in wire::Frame::split(task) {
        let frame = TaskResponse {
            size: f.size,
            iteration: f.iteration,
            bytes: f.bytes,
        };
        if tx.send(Ok(frame)).await.is_err() {
            return false;
        }
    }
    true
}

type TaskStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<TaskResponse, Status>> + std::marker::Send>>;

#[tonic::async_trait]
impl ResearcherService for Service {
    type GetTaskStream = TaskStream;
    type GetTaskUnaryStream = TaskStream;

    async fn get_task(
        &self,
        request: Request<Streaming<TaskRequest>>,
    ) -> Result<Response<TaskStream>, Status> {
        if !self.streaming {
            return Err(Status::unimplemented("GetTask"));
        }
        let deadline = poll_deadline(&request);
        let mut credits = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let this = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(_credit)) = credits.message().await {
                let _ = this.polls.send(Instant::now());
                if !serve_one(&this.tasks, &tx, deadline).await {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_task_unary(
        &self,
        request: Request<TaskRequest>,
    ) -> Result<Response<TaskStream>, Status> {
        let _ = self.polls.send(Instant::now());
        let deadline = poll_deadline(&request);
        let (tx, rx) = mpsc::channel(16);
        let tasks = Arc::clone(&self.tasks);
        tokio::spawn(async move {
            serve_one(&tasks, &tx, deadline).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn reply_task(
        &self,
        request: Request<Streaming<TaskResult>>,
    ) -> Result<Response<Empty>, Status> {
        let mut frames = request.into_inner();
        let mut reassembler = Reassembler::default();
        while let Some(frame) = frames.message().await? {
            let done = reassembler
                .push(frame.size, frame.iteration, frame.bytes)
                .map_err(|e| Status::unknown(e.to_string()))?;
            if let Some(payload) = done {
                let envelope =
                    Envelope::decode(payload).map_err(|e| Status::unknown(e.to_string()))?;
                if envelope.class() == "Poison" {
                    return Err(Status::invalid_argument("poison refused"));
                }
                let _ = self.replies.send(envelope);
            }
        }
        Ok(Response::new(Empty {}))
    }

    async fn feedback(&self, request: Request<FeedbackMessage>) -> Result<Response<Empty>, Status> {
        let _ = self.feedback.send(request.into_inner());
        Ok(Response::new(Empty {}))
    }
}

/// Accepted connections with TCP_NODELAY (without it, Nagle's algorithm and
/// delayed ACKs add ~40 ms to every small message).
/// A researcher service served over TLS on its own thread and runtime;
/// [`ServerThread::stop`] (or drop) ends it, cutting every connection.
pub struct ServerThread {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Serves `service` on `listener` (non-blocking) with `identity`'s
    /// certificate; `name` prefixes a server error on stderr.
    pub fn start<S: ResearcherService>(
        listener: std::net::TcpListener,
        identity: &tls::ServerIdentity,
        service: S,
        name: &'static str,
    ) -> ServerThread {
        let tls_config = tls::server_tls_config(identity, None).unwrap();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let server = tonic::transport::Server::builder()
                    .tls_config(tls_config)
                    .unwrap()
                    .add_service(
                        ResearcherServiceServer::new(service)
                            .max_decoding_message_size(wire::GRPC_MAX_MESSAGE_BYTES)
                            .max_encoding_message_size(wire::GRPC_MAX_MESSAGE_BYTES),
                    )
                    .serve_with_incoming(crate::tls::nodelay_incoming(listener));
                let stop = tokio::task::spawn_blocking(move || {
                    let _ = stop_rx.recv();
                });
                tokio::select! {
                    r = server => { if let Err(e) = r { eprintln!("{name}: {e}"); } }
                    _ = stop => {}
                }
            });
            // Drops every connection task: the node sees the connection cut.
            rt.shutdown_background();
        });
        ServerThread {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Stops the server, cutting every connection.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A small researcher server in its own thread and runtime.
pub struct MiniResearcher {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its researcher id (certificate O=).
    pub researcher_id: String,
    /// Its certificate and key (to restart it as the same researcher).
    pub identity: tls::ServerIdentity,
    tasks: mpsc::UnboundedSender<Bytes>,
    /// Replies received (decoded), in arrival order.
    pub replies: mpsc::UnboundedReceiver<Envelope>,
    /// Feedback received.
    pub feedback: mpsc::UnboundedReceiver<FeedbackMessage>,
    /// One instant per poll opened (unary call or streaming credit).
    pub polls: mpsc::UnboundedReceiver<Instant>,
    server: ServerThread,
}

impl MiniResearcher {
    /// Starts a researcher on 127.0.0.1:`port` (0: any) with `researcher_id`
    /// (a fresh one if `None`) and a fresh certificate; `streaming` says
    /// whether it implements `GetTask`.
    pub fn start(port: u16, researcher_id: Option<&str>, streaming: bool) -> MiniResearcher {
        tls::install_crypto_provider();
        let identity = tls::generate_researcher_identity(researcher_id, "127.0.0.1").unwrap();
        MiniResearcher::start_as(port, identity, streaming)
    }

    /// Starts a researcher presenting `identity` (for example the one of
    /// a researcher that stopped: the same researcher restarted).
    pub fn start_as(port: u16, identity: tls::ServerIdentity, streaming: bool) -> MiniResearcher {
        tls::install_crypto_provider();
        let researcher_id = identity.researcher_id.clone();
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tasks_tx, tasks_rx) = mpsc::unbounded_channel();
        let (replies_tx, replies) = mpsc::unbounded_channel();
        let (feedback_tx, feedback) = mpsc::unbounded_channel();
        let (polls_tx, polls) = mpsc::unbounded_channel();
        let service = Service {
            streaming,
            tasks: Arc::new(Mutex::new(tasks_rx)),
            replies: replies_tx,
            feedback: feedback_tx,
            polls: polls_tx,
        };
        let server = ServerThread::start(listener, &identity, service, "mini researcher");
        MiniResearcher {
            addr,
            researcher_id,
            identity,
            tasks: tasks_tx,
            replies,
            feedback,
            polls,
            server,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Queues a task for the node.
    pub fn send_task(&self, envelope: &Envelope) {
        self.tasks.send(envelope.to_bytes()).unwrap();
    }

    /// Queues raw task bytes (possibly invalid).
    pub fn send_raw(&self, bytes: Bytes) {
        self.tasks.send(bytes).unwrap();
    }

    /// Stops the server, cutting every connection.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// The next reply, within [`STEP`].
    pub async fn next_reply(&mut self) -> Envelope {
        within("a reply", self.replies.recv())
            .await
            .expect("reply channel closed")
    }

    /// The next poll, within [`STEP`].
    pub async fn next_poll(&mut self) -> Instant {
        within("a poll", self.polls.recv())
            .await
            .expect("poll channel closed")
    }
}

/// A node-side handler: records tasks and answers `PingRequest`s through
/// each task's `Replier`.
pub struct PingHandler {
    pub node_id: String,
    pub seen: mpsc::UnboundedSender<TaskReceived>,
    /// When false, tasks are only recorded.
    pub answer: bool,
}

impl Actor for PingHandler {
    type Context = Context<Self>;
}

impl Handler<TaskReceived> for PingHandler {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, task: TaskReceived, _: &mut Context<Self>) -> Self::Result {
        let answer = (self.answer && task.message.class() == "PingRequest")
            .then(|| task.reply.send(ping_reply(&task.message, &self.node_id)));
        let _ = self.seen.send(task);
        Box::pin(async move {
            if let Some(answer) = answer {
                let _ = answer.await;
            }
        })
    }
}

/// An answering node with [`fast_config`] polling the researcher on
/// 127.0.0.1:`port`, trusted on first use (see [`start_node`]).
pub fn start_answering_node(
    node_id: &str,
    port: u16,
) -> (Addr<Controller>, mpsc::UnboundedReceiver<TaskReceived>) {
    let endpoint = fedroute::node::ResearcherEndpoint::trust_on_first_use("127.0.0.1", port);
    start_node(node_id, vec![endpoint], fast_config(), true)
}

/// Starts a ping handler and a controller for `endpoints`; returns the
/// controller and the stream of tasks the handler saw.
pub fn start_node(
    node_id: &str,
    endpoints: Vec<fedroute::node::ResearcherEndpoint>,
    config: ControllerConfig,
    answer: bool,
) -> (Addr<Controller>, mpsc::UnboundedReceiver<TaskReceived>) {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let handler = PingHandler {
        node_id: node_id.to_string(),
        seen: seen_tx,
        answer,
    }
    .start();
    let controller = Controller::builder(node_id)
        .name(format!("{node_id} name"))
        .researchers(endpoints)
        .config(config)
        .start(handler.recipient())
        .expect("the controller starts");
    (controller, seen)
}

/// Forwards the controller's `Finished` to the test.
struct FinishRecorder(mpsc::UnboundedSender<Finished>);

impl Actor for FinishRecorder {
    type Context = Context<Self>;
}

impl Handler<Finished> for FinishRecorder {
    type Result = ();
    fn handle(&mut self, msg: Finished, _: &mut Context<Self>) {
        let _ = self.0.send(msg);
    }
}

/// Like [`start_node`] with a handler that does not answer, also returning
/// the controller's `Finished` (sent when every link failed for good).
pub fn start_node_with_finish(
    node_id: &str,
    endpoints: Vec<fedroute::node::ResearcherEndpoint>,
    config: ControllerConfig,
) -> (
    Addr<Controller>,
    mpsc::UnboundedReceiver<TaskReceived>,
    mpsc::UnboundedReceiver<Finished>,
) {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let handler = PingHandler {
        node_id: node_id.to_string(),
        seen: seen_tx,
        answer: false,
    }
    .start();
    let (fin_tx, fin) = mpsc::unbounded_channel();
    let finish = FinishRecorder(fin_tx).start();
    let controller = Controller::builder(node_id)
        .name(format!("{node_id} name"))
        .researchers(endpoints)
        .on_finish(finish.recipient())
        .config(config)
        .build(handler.recipient())
        .expect("the controller starts")
        .start();
    (controller, seen, fin)
}

/// The endpoint of a mini researcher, trusted on first use.
pub fn endpoint_of(r: &MiniResearcher) -> fedroute::node::ResearcherEndpoint {
    fedroute::node::ResearcherEndpoint::trust_on_first_use("127.0.0.1", r.port())
}
