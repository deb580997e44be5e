//! Shared helpers of the researcher integration tests: a real researcher on
//! 127.0.0.1:0 over TLS, a raw tonic client with the generated stubs, and an
//! event sink. Every await here is bounded by [`T`].

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use fedroute::proto::researcher_service_client::ResearcherServiceClient;
use fedroute::proto::{TaskRequest, TaskResult};
use fedroute::researcher::{
    self, Limits, NodeInfo, NodeStatus, Nodes, ResearcherConfig, ResearcherEvent, ResearcherHandle,
};
use fedroute::tls::{self, ChannelOptions, ClientIdentity};
use fedroute::wire::{
    self, Envelope, PingReply, PingRequest, Reassembler, Value, GRPC_MAX_MESSAGE_BYTES,
    MESSAGE_MODULE, TYPE_MESSAGE_KEY,
};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::Status;

/// The bound on every await of a test.
pub const T: Duration = Duration::from_secs(60);

/// A raw client.
pub type Client = ResearcherServiceClient<Channel>;

/// Awaits `fut` at most [`T`]; a timeout fails the test naming `what`.
pub async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    crate::within_for(T, what, fut).await
}

/// Forwards researcher events to the test.
struct EventSink {
    tx: mpsc::UnboundedSender<ResearcherEvent>,
}

impl Actor for EventSink {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(100_000);
    }
}

impl Handler<ResearcherEvent> for EventSink {
    type Result = ();
    fn handle(&mut self, ev: ResearcherEvent, _: &mut Self::Context) {
        let _ = self.tx.send(ev);
    }
}

/// The events a researcher emitted, in order.
pub struct Events {
    rx: mpsc::UnboundedReceiver<ResearcherEvent>,
}

impl Events {
    /// Waits for the first event matching `f` (earlier ones are skipped).
    pub async fn wait_for(
        &mut self,
        what: &str,
        mut f: impl FnMut(&ResearcherEvent) -> bool,
    ) -> ResearcherEvent {
        bounded(what, async {
            loop {
                let ev = self.rx.recv().await.expect("event sink gone");
                if f(&ev) {
                    return ev;
                }
            }
        })
        .await
    }

    /// Waits for `NodeConnected` of `node`.
    pub async fn connected(&mut self, node: &str) {
        self.wait_for(
            &format!("{node} connected"),
            |e| matches!(e, ResearcherEvent::NodeConnected { node_id } if node_id == node),
        )
        .await;
    }

    /// Events already received, without waiting.
    pub fn drain(&mut self) -> Vec<ResearcherEvent> {
        let mut out = Vec::new();
        while let Ok(ev) = self.rx.try_recv() {
            out.push(ev);
        }
        out
    }
}

/// A test configuration: 127.0.0.1:0, defaults otherwise.
pub fn config() -> ResearcherConfig {
    let mut config = ResearcherConfig::default();
    config.listen.address = SocketAddr::from(([127, 0, 0, 1], 0));
    config
}

/// Starts a researcher with an event sink.
pub async fn start(config: ResearcherConfig) -> (ResearcherHandle, Events) {
    let _ = env_logger::builder().is_test(true).try_init();
    let (tx, rx) = mpsc::unbounded_channel();
    let sink = EventSink { tx }.start();
    let handle = bounded(
        "researcher start",
        researcher::start(config, Some(sink.recipient())),
    )
    .await
    .expect("researcher starts");
    (handle, Events { rx })
}

/// Channel options whose HTTP/2 windows are the researcher server's
/// ([`Limits::STREAM_WINDOW`], [`Limits::CONNECTION_WINDOW`]).
pub fn server_windows() -> ChannelOptions {
    let mut opts = ChannelOptions::default();
    opts.initial_stream_window_size = Some(Limits::STREAM_WINDOW);
    opts.initial_connection_window_size = Some(Limits::CONNECTION_WINDOW);
    opts
}

/// A raw tonic client pinned to the researcher's certificate.
pub async fn client(handle: &ResearcherHandle) -> Client {
    client_with(handle, None).await.expect("client connects")
}

/// A raw client, optionally presenting a client certificate.
pub async fn client_with(
    handle: &ResearcherHandle,
    identity: Option<&ClientIdentity>,
) -> Result<Client, tls::TlsError> {
    let config = tls::pinned_client_config(handle.cert_der.clone(), identity)?;
    let channel = bounded(
        "connect",
        tls::connect_channel(
            "127.0.0.1",
            handle.local_addr.port(),
            config,
            &server_windows(),
        ),
    )
    .await?;
    Ok(ResearcherServiceClient::new(channel)
        .max_decoding_message_size(GRPC_MAX_MESSAGE_BYTES)
        .max_encoding_message_size(GRPC_MAX_MESSAGE_BYTES))
}

/// A `TaskRequest` for `node`.
pub fn task_request(node: &str) -> TaskRequest {
    TaskRequest {
        node: node.to_string(),
        protocol_version: wire::PROTOCOL_VERSION.to_string(),
    }
}

/// One `GetTaskUnary` poll: the task's raw payload and its frame count
/// (bounded by [`T`]).
pub async fn poll_raw(client: &mut Client, node: &str) -> Result<(Bytes, usize), Status> {
    bounded(&format!("poll of {node}"), poll_raw_unbounded(client, node)).await
}

async fn poll_raw_unbounded(client: &mut Client, node: &str) -> Result<(Bytes, usize), Status> {
    let mut stream = client
        .get_task_unary(task_request(node))
        .await?
        .into_inner();
    let mut re = Reassembler::default();
    let mut frames = 0;
    let mut payload = None;
    while let Some(frame) = stream.message().await? {
        frames += 1;
        let done = re
            .push(frame.size, frame.iteration, frame.bytes)
            .map_err(|e| Status::internal(format!("bad frame from researcher: {e}")))?;
        if let Some(p) = done {
            assert!(payload.is_none(), "two messages in one unary poll");
            payload = Some(p);
        }
    }
    let payload = payload.ok_or_else(|| Status::internal("poll ended without a task"))?;
    Ok((payload, frames))
}

/// One `GetTaskUnary` poll, decoded.
pub async fn poll(client: &mut Client, node: &str) -> Result<Envelope, Status> {
    let (payload, _) = poll_raw(client, node).await?;
    Ok(Envelope::decode(payload).expect("researcher sends decodable tasks"))
}

/// A poll running in the background (its result via the join handle).
pub fn spawn_poll(
    client: &Client,
    node: &str,
) -> tokio::task::JoinHandle<Result<Envelope, Status>> {
    let mut client = client.clone();
    let node = node.to_string();
    tokio::spawn(async move { poll(&mut client, &node).await })
}

/// The frames of `payload` as `TaskResult`s.
pub fn frames(payload: Bytes) -> Vec<TaskResult> {
    wire::Frame::split(payload)
        .map(|f| TaskResult {
            size: f.size,
            iteration: f.iteration,
            bytes: f.bytes,
        })
        .collect()
}

/// Sends raw `TaskResult`s in one `ReplyTask` stream.
pub async fn reply_frames(client: &mut Client, frames: Vec<TaskResult>) -> Result<(), Status> {
    bounded("ReplyTask", client.reply_task(tokio_stream::iter(frames)))
        .await
        .map(|_| ())
}

/// Sends `messages` in one `ReplyTask` stream.
pub async fn reply(client: &mut Client, messages: &[Envelope]) -> Result<(), Status> {
    let all = messages.iter().flat_map(|m| frames(m.to_bytes())).collect();
    reply_frames(client, all).await
}

/// A fresh ping from the researcher.
pub fn ping(handle: &ResearcherHandle) -> Envelope {
    Envelope::from_typed(&PingRequest::new(handle.researcher_id.clone())).unwrap()
}

/// The node's answer to a ping.
pub fn pong(request: &Envelope, node: &str) -> Envelope {
    Envelope::from_typed(&PingReply::answer(request, node, format!("{node} name"))).unwrap()
}

/// A message of `class` with `fields` (in order), `__type_message__` last.
pub fn message(class: &str, fields: Vec<(&str, Value)>) -> Envelope {
    let mut map: Vec<(Value, Value)> = fields
        .into_iter()
        .map(|(k, v)| (Value::Str(k.to_string()), v))
        .collect();
    map.push((
        Value::Str(TYPE_MESSAGE_KEY.to_string()),
        Value::Map(vec![
            (
                Value::Str("module".into()),
                Value::Str(MESSAGE_MODULE.into()),
            ),
            (Value::Str("class".into()), Value::Str(class.into())),
        ]),
    ));
    Envelope::from_value(Value::Map(map)).unwrap()
}

/// A request carrying `blob` bytes.
pub fn blob_request(handle: &ResearcherHandle, blob: Bytes) -> Envelope {
    message(
        "BlobRequest",
        vec![
            (
                "protocol_version",
                Value::Str(wire::PROTOCOL_VERSION.into()),
            ),
            ("researcher_id", Value::Str(handle.researcher_id.clone())),
            ("request_id", Value::Str(uuid::Uuid::new_v4().to_string())),
            ("blob", Value::Bin(blob)),
        ],
    )
}

/// A reply from `node` to `request` carrying `blob`.
pub fn blob_reply(request: &Envelope, node: &str, blob: Bytes) -> Envelope {
    message(
        "BlobReply",
        vec![
            (
                "protocol_version",
                Value::Str(wire::PROTOCOL_VERSION.into()),
            ),
            (
                "researcher_id",
                Value::Str(request.researcher_id().unwrap().into()),
            ),
            (
                "request_id",
                Value::Str(request.request_id().unwrap().into()),
            ),
            ("node_id", Value::Str(node.into())),
            ("node_name", Value::Str(node.into())),
            ("blob", Value::Bin(blob)),
        ],
    )
}

/// Deterministic bytes of length `n`.
pub fn pattern(n: usize) -> Bytes {
    Bytes::from((0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

/// The researcher's view of `node`.
pub async fn node_info(handle: &ResearcherHandle, node: &str) -> Option<NodeInfo> {
    bounded("Nodes", handle.addr.send(Nodes))
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.node_id == node)
}

/// Waits until `cond` holds for the researcher's view of `node`, checking
/// after every researcher answer (bounded by [`T`]). For states no event
/// announces (WAITING, queue depth).
pub async fn until_node(
    handle: &ResearcherHandle,
    node: &str,
    what: &str,
    cond: impl Fn(&NodeInfo) -> bool,
) -> NodeInfo {
    bounded(what, async {
        loop {
            if let Some(info) = node_info(handle, node).await {
                if cond(&info) {
                    return info;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Waits until `node` has `status`.
pub async fn until_status(handle: &ResearcherHandle, node: &str, status: NodeStatus) -> NodeInfo {
    until_node(handle, node, &format!("{node} {status}"), |n| {
        n.status == status
    })
    .await
}

/// A node that answers every ping until the task is aborted.
pub fn spawn_ping_node(client: &Client, node: &str) -> tokio::task::JoinHandle<()> {
    let mut client = client.clone();
    let node = node.to_string();
    tokio::spawn(async move {
        loop {
            let Ok(request) = poll(&mut client, &node).await else {
                return;
            };
            let answer = pong(&request, &node);
            if reply(&mut client, &[answer]).await.is_err() {
                return;
            }
        }
    })
}

/// Makes `node` known to the researcher: one poll, cancelled once the node
/// is connected; returns when the researcher saw the poll close (WAITING).
pub async fn register(handle: &ResearcherHandle, events: &mut Events, client: &Client, node: &str) {
    let poller = spawn_poll(client, node);
    events.connected(node).await;
    poller.abort();
    let _ = bounded("aborted poll", poller).await;
    until_status(handle, node, NodeStatus::Waiting).await;
}
