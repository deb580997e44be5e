//! The tonic `ResearcherService`: a thin shell turning gRPC calls into
//! messages to the [`Researcher`] and [`NodeAgent`] actors.
//!
//! - `GetTaskUnary`: registers a one-task poll with the node's agent and
//!   returns a [`PollStream`], which writes the task's chunks and ends.
//! - `GetTask` (fedroute's streaming mode): every `TaskRequest` on the
//!   request stream is credit for one more task on the response stream.
//! - `ReplyTask`: reassembles each message of the stream, decodes and
//!   version-checks it, and has the researcher route it.
//! - `Feedback`: forwarded to the handler as an event.
//!
//! Under mutual TLS, every call is checked against the node its client
//! certificate names ([`node_auth`]): UNAUTHENTICATED without a usable
//! certificate, PERMISSION_DENIED for another node's id.
//!
//! What a node sends is bounded before it is kept: node and request ids
//! are checked ([`crate::wire::check_id`]; INVALID_ARGUMENT otherwise), a
//! reply's partial message takes its memory from the researcher's
//! [`ReceiveBudget`] (RESOURCE_EXHAUSTED when spent), a `ReplyTask` stream
//! that sends no frame for `stall_timeout` is cancelled (DEADLINE_EXCEEDED),
//! large replies are decoded off the event loop ([`MessageDecoder`]), every
//! quote of the node's input in a status or a log line is shortened
//! ([`crate::wire::echo()`]), and warnings are rate-limited per node and
//! kind ([`PeerLog`]). Each call is marked on its connection, so that a
//! connection without calls closes after the idle timeout.
//!
//! Service futures only hold `Addr`s, `Recipient`s and channels, so they are
//! `Send` and run on whatever runtime serves tonic.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix::{Addr, Recipient};
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};

use super::actor::{Attach, Detach, ReplyRoute, Researcher, RouteError, RouteReply};
use super::agent::{Credit, CreditEnded, InFlight, NodeAgent, PollClosed, PollItem, PollMode};
use super::error::ResearcherError;
use super::events::{hand_over, ResearcherEvent};
use super::metered::{meter_of, StreamMeter};
use super::node_auth;
use crate::log_limit::PeerLog;
use crate::proto::researcher_service_server::ResearcherService;
use crate::proto::{Empty, FeedbackMessage, TaskRequest, TaskResponse, TaskResult};
use crate::wire::{
    self, check_id, echo, BufferPool, Chunks, IdKind, MessageDecoder, Reassembler, ReceiveBudget,
    WireError,
};
use crate::ErrorChain;

/// The gRPC service. Cheap to clone.
#[derive(Clone)]
pub(super) struct ResearcherGrpc {
    inner: Arc<Shared>,
}

/// What the service is built from (see [`ResearcherGrpc::new`]).
pub(crate) struct ServiceParts {
    pub researcher: Addr<Researcher>,
    pub events: Option<Recipient<ResearcherEvent>>,
    /// Becomes `true` at shutdown: open `ReplyTask` calls end.
    pub shutdown: watch::Receiver<bool>,
    /// Calls are accepted only for the node id of the client certificate.
    pub mutual_tls: bool,
    pub max_message_bytes: usize,
    pub stream_pipeline: usize,
    /// Reassembly buffers of large replies, kept for the next ones.
    pub buffers: BufferPool,
    /// Bytes held by replies still being received, all streams together.
    pub budget: ReceiveBudget,
    pub decoder: MessageDecoder,
    pub stall_timeout: Duration,
    pub peer_log: Arc<PeerLog>,
}

struct Shared {
    parts: ServiceParts,
    next_poll_id: AtomicU64,
}

impl ResearcherGrpc {
    /// The service over `parts`.
    pub(crate) fn new(parts: ServiceParts) -> ResearcherGrpc {
        ResearcherGrpc {
            inner: Arc::new(Shared {
                parts,
                next_poll_id: AtomicU64::new(1),
            }),
        }
    }
}

impl std::ops::Deref for Shared {
    type Target = ServiceParts;
    fn deref(&self) -> &ServiceParts {
        &self.parts
    }
}

/// The key under which a call's warnings are counted: its node id when it
/// is valid, else the address it came from.
fn peer_key(node_id: Option<&str>, remote: Option<std::net::SocketAddr>) -> String {
    match node_id {
        Some(id) if check_id(IdKind::Node, id).is_ok() => id.to_string(),
        _ => remote.map_or_else(|| "an unknown address".to_string(), |r| r.ip().to_string()),
    }
}

/// INVALID_ARGUMENT for a bad identifier.
fn bad_id(kind: IdKind, id: &str) -> Result<(), Status> {
    check_id(kind, id).map_err(|e| Status::invalid_argument(e.to_string()))
}

impl Shared {
    /// The node the connection's client certificate proves, when mutual
    /// TLS is on (UNAUTHENTICATED when it proves none; see `node_auth`).
    fn certified_node<T>(&self, request: &Request<T>) -> Result<Option<String>, Status> {
        let certificate = if self.mutual_tls {
            crate::tls::peer_node_id(request)
        } else {
            None
        };
        node_auth::authenticate(self.mutual_tls, certificate).inspect_err(|status| {
            let peer = peer_key(None, request.remote_addr());
            self.peer_log.warn(&peer, "unauthenticated", || {
                format!("call from {peer} refused: {}", status.message())
            });
        })
    }

    /// Checks that the call may act as node `claimed` (named in `field`);
    /// PERMISSION_DENIED, logged, when the certificate names another node.
    fn check_node(
        &self,
        certified: &Option<String>,
        field: &str,
        claimed: &str,
    ) -> Result<(), Status> {
        node_auth::authorize(certified.as_deref(), field, claimed).inspect_err(|status| {
            let peer = certified.as_deref().unwrap_or_default();
            self.peer_log.warn(peer, "foreign node id", || {
                format!(
                    "security: node {peer} tried to act as another node: {}",
                    status.message()
                )
            });
        })
    }

    /// Validates a `TaskRequest` and registers a poll for it.
    async fn open_poll(
        &self,
        task_request: &TaskRequest,
        certified: &Option<String>,
        mode: PollMode,
        deadline: Option<Duration>,
        remote: Option<std::net::SocketAddr>,
    ) -> Result<PollStream, Status> {
        let node_id = task_request.node.as_str();
        if node_id.is_empty() {
            return Err(Status::invalid_argument("TaskRequest.node is empty"));
        }
        bad_id(IdKind::Node, node_id)?;
        self.check_node(certified, "TaskRequest.node", node_id)?;
        if !task_request.protocol_version.is_empty() {
            wire::check_version(&task_request.protocol_version)
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
        }
        let capacity = match mode {
            PollMode::Unary => 1,
            PollMode::Streaming => self.stream_pipeline,
        };
        let (tx, rx) = mpsc::channel(capacity);
        let poll_id = self.next_poll_id.fetch_add(1, Ordering::Relaxed);
        // If the call is dropped while the poll is being registered, the
        // guard closes it (the PollStream does that once it exists).
        let mut guard = DetachGuard {
            researcher: &self.researcher,
            node_id,
            poll_id,
            armed: true,
        };
        let attached = self
            .researcher
            .send(Attach {
                node_id: node_id.to_string(),
                poll_id,
                mode,
                tx,
                remote,
            })
            .await;
        guard.armed = false;
        let agent = attached
            .map_err(|e| Status::unavailable(e.to_string()))?
            .map_err(status_of)?;
        Ok(PollStream {
            rx,
            agent,
            poll_id,
            mode,
            current: None,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep(d))),
            done: false,
        })
    }

    /// Hands `event` to the handler (see [`hand_over`]).
    async fn emit(&self, event: ResearcherEvent) {
        if let Some(events) = &self.events {
            hand_over(events, event).await;
        }
    }

    /// Pushes `frame`; when the budget has no room for it, waits for room
    /// (at most the stall timeout: the stream does not read on meanwhile, so
    /// HTTP/2 flow control holds the node back) and pushes it again.
    async fn push_waiting(
        &self,
        reassembler: &mut Reassembler,
        frame: TaskResult,
    ) -> Result<Option<bytes::Bytes>, Status> {
        let waited_until = tokio::time::Instant::now() + self.stall_timeout;
        loop {
            match reassembler.push(frame.size, frame.iteration, frame.bytes.clone()) {
                Ok(done) => return Ok(done),
                Err(WireError::BudgetExhausted { requested, .. }) => {
                    let place = self.budget.wait_place();
                    let waited = match &place {
                        Some(place) => {
                            tokio::time::timeout_at(waited_until, place.room_for(requested))
                                .await
                                .is_ok()
                        }
                        None => false,
                    };
                    if !waited {
                        return Err(Status::resource_exhausted(format!(
                            "reply refused for now, send it again later: {requested} more bytes do not fit the receive budget of {} bytes within {:?}",
                            self.budget.limit(),
                            self.stall_timeout
                        )));
                    }
                }
                Err(e) => return Err(Status::invalid_argument(format!("bad reply frame: {e}"))),
            }
        }
    }

    /// Decodes, checks and routes one reassembled message; `hold` is what
    /// its bytes took from the budget, kept until it is decoded and routed.
    async fn route(
        &self,
        payload: bytes::Bytes,
        hold: Option<wire::Hold>,
        certified: &Option<String>,
    ) -> Result<(), Status> {
        let (decoded, hold) = self.decoder.decode_holding(payload, hold).await;
        let _hold = hold;
        let envelope =
            decoded.map_err(|e| Status::invalid_argument(format!("undecodable reply: {e}")))?;
        envelope
            .check_version()
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let Some(node_id) = envelope.node_id() else {
            return Err(Status::invalid_argument(format!(
                "a {} reply has no node_id",
                echo(envelope.class())
            )));
        };
        bad_id(IdKind::Node, node_id)?;
        if let Some(id) = envelope.request_id() {
            bad_id(IdKind::Request, id)?;
        }
        if let Some(id) = envelope.dest_node_id() {
            bad_id(IdKind::Node, id)?;
        }
        self.check_node(certified, "the reply's node_id", node_id)?;
        let route = self
            .researcher
            .send(RouteReply { envelope })
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        match route {
            Ok(ReplyRoute::Matched) | Ok(ReplyRoute::Relayed) => Ok(()),
            Ok(ReplyRoute::Handed(handled)) => {
                // The reply is acknowledged once the handler has run.
                let _ = handled.await;
                Ok(())
            }
            Ok(ReplyRoute::Unmatched(envelope)) => {
                let node_id = envelope.node_id().unwrap_or_default();
                self.peer_log.warn(node_id, "unmatched reply", || {
                    format!(
                        "{} from node {node_id} answers no waiting request ({:?}); dropped",
                        echo(envelope.class()),
                        envelope.request_id()
                    )
                });
                self.emit(ResearcherEvent::UnmatchedReply(envelope)).await;
                Ok(())
            }
            Err(RouteError::UnknownNode(id)) => Err(Status::not_found(format!(
                "node {id:?} never polled this researcher"
            ))),
            Err(RouteError::UnknownDestination(id)) => Err(Status::not_found(format!(
                "overlay destination node {id:?} never polled this researcher"
            ))),
            Err(RouteError::NoDestination) => Err(Status::invalid_argument(
                "an OverlayMessage has no dest_node_id",
            )),
        }
    }
}

/// The next frame of a `ReplyTask` stream. A stream whose bytes stop
/// coming for `stall` is cancelled (DEADLINE_EXCEEDED); a slow one whose
/// bytes keep coming is not, however long a frame takes.
async fn next_frame(
    inbound: &mut Streaming<TaskResult>,
    meter: Option<&StreamMeter>,
    stall: Duration,
) -> Result<Option<TaskResult>, Status> {
    let next = inbound.message();
    tokio::pin!(next);
    let mut deadline = tokio::time::Instant::now() + stall;
    loop {
        tokio::select! {
            frame = &mut next => {
                let frame = frame?;
                if let (Some(m), Some(_)) = (meter, &frame) {
                    m.consumed_message();
                }
                return Ok(frame);
            }
            _ = tokio::time::sleep_until(deadline) => {
                let progress = meter.map(StreamMeter::last_progress);
                match progress {
                    Some(at) if at + stall > tokio::time::Instant::now() => deadline = at + stall,
                    _ => {
                        return Err(Status::deadline_exceeded(format!(
                            "no ReplyTask data for {stall:?}: the stream is cancelled"
                        )))
                    }
                }
            }
        }
    }
}

/// Closes a poll whose call was abandoned during registration.
struct DetachGuard<'a> {
    researcher: &'a Addr<Researcher>,
    node_id: &'a str,
    poll_id: u64,
    armed: bool,
}

impl Drop for DetachGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.researcher.do_send(Detach {
                node_id: self.node_id.to_string(),
                poll_id: self.poll_id,
            });
        }
    }
}

/// The gRPC status for a researcher error met while serving a call (its
/// message holds the error's causes: the peer sees no `source()`).
fn status_of(e: ResearcherError) -> Status {
    let message = ErrorChain(&e).to_string();
    match e {
        ResearcherError::ShuttingDown | ResearcherError::Mailbox(_) => Status::unavailable(message),
        ResearcherError::TooManyNodes { .. } | ResearcherError::QueueFull { .. } => {
            Status::resource_exhausted(message)
        }
        ResearcherError::NodeUnknown { .. } => Status::not_found(message),
        _ => Status::internal(message),
    }
}

/// Parses a `grpc-timeout` header value (`<digits><unit>`, unit one of
/// H M S m u n).
pub(crate) fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn client_deadline<T>(request: &Request<T>) -> Option<Duration> {
    request
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
}

#[tonic::async_trait]
impl ResearcherService for ResearcherGrpc {
    type GetTaskStream = PollStream;
    type GetTaskUnaryStream = PollStream;

    async fn get_task(
        &self,
        request: Request<Streaming<TaskRequest>>,
    ) -> Result<Response<PollStream>, Status> {
        let certified = self.inner.certified_node(&request)?;
        let deadline = client_deadline(&request);
        let remote = request.remote_addr();
        let meter = meter_of(&request);
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.ok_or_else(|| {
            Status::invalid_argument("GetTask stream ended before its first TaskRequest")
        })?;
        if let Some(m) = &meter {
            m.consumed_message();
        }
        let stream = self
            .inner
            .open_poll(&first, &certified, PollMode::Streaming, deadline, remote)
            .await?;
        let agent = stream.agent.clone();
        let poll_id = stream.poll_id;
        let node_id = first.node;
        let shared = Arc::clone(&self.inner);
        // Each further TaskRequest is credit for one task. `send` waits for
        // the agent, so a node flooding credits is slowed, not buffered.
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(more)) => {
                        if let Some(m) = &meter {
                            m.consumed_message();
                        }
                        if !more.node.is_empty() && more.node != node_id {
                            shared.peer_log.warn(&node_id, "foreign credit", || {
                                format!(
                                    "GetTask stream of node {node_id} asked for node {}; ignored",
                                    echo(&more.node)
                                )
                            });
                            continue;
                        }
                        if agent.send(Credit { poll_id, n: 1 }).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) | Err(_) => {
                        agent.do_send(CreditEnded { poll_id });
                        break;
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn get_task_unary(
        &self,
        request: Request<TaskRequest>,
    ) -> Result<Response<PollStream>, Status> {
        let certified = self.inner.certified_node(&request)?;
        let deadline = client_deadline(&request);
        let remote = request.remote_addr();
        let task_request = request.into_inner();
        let stream = self
            .inner
            .open_poll(&task_request, &certified, PollMode::Unary, deadline, remote)
            .await?;
        Ok(Response::new(stream))
    }

    async fn reply_task(
        &self,
        request: Request<Streaming<TaskResult>>,
    ) -> Result<Response<Empty>, Status> {
        let remote = request.remote_addr();
        let certified = self.inner.certified_node(&request)?;
        let peer = peer_key(certified.as_deref(), remote);
        let refused = |status: Status| {
            self.inner.peer_log.warn(&peer, "refused reply", || {
                format!("reply from {peer} refused: {}", status.message())
            });
            status
        };
        let meter = meter_of(&request);
        let mut inbound = request.into_inner();
        let mut reassembler = Reassembler::new(self.inner.max_message_bytes)
            .with_pool(self.inner.buffers.clone())
            .with_budget(self.inner.budget.clone());
        let mut shutdown = self.inner.shutdown.clone();
        let stall = self.inner.stall_timeout;
        // A node may hold its reply stream open; shutdown must not wait
        // for it. (A dropped sender means the researcher is gone: end too.)
        let stopping = shutdown.wait_for(|stop| *stop);
        tokio::pin!(stopping);
        loop {
            let next = next_frame(&mut inbound, meter.as_ref(), stall);
            let frame = tokio::select! {
                biased;
                frame = next => match frame {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(status) => return Err(refused(status)),
                },
                _ = &mut stopping => {
                    return Err(Status::unavailable("the researcher is shutting down"));
                }
            };
            let complete = self
                .inner
                .push_waiting(&mut reassembler, frame)
                .await
                .map_err(refused)?;
            if let Some(payload) = complete {
                // The message's bytes stay counted until it is decoded and routed.
                let hold = reassembler.take_hold();
                let routed = self.inner.route(payload, hold, &certified).await;
                routed.map_err(refused)?;
            }
        }
        if reassembler.in_progress() {
            return Err(refused(Status::invalid_argument(
                "ReplyTask stream ended in the middle of a message",
            )));
        }
        Ok(Response::new(Empty {}))
    }

    async fn feedback(&self, request: Request<FeedbackMessage>) -> Result<Response<Empty>, Status> {
        let certified = self.inner.certified_node(&request)?;
        let message = request.into_inner();
        let feedback = wire::FeedbackMessage::try_from(message)
            .map_err(|e| Status::invalid_argument(format!("bad feedback: {e}")))?;
        feedback
            .check_version()
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        bad_id(IdKind::Node, feedback.node_id())?;
        self.inner
            .check_node(&certified, "the feedback's node_id", feedback.node_id())?;
        if let (Some(_), wire::Feedback::Log(log)) = (&certified, &feedback.feedback) {
            if let Some(inner) = node_auth::log_record_node_id(&log.msg) {
                self.inner
                    .check_node(&certified, "the log record's node_id", &inner)?;
            }
        }
        if self.inner.events.is_none() {
            // Nobody asked for feedback: a few lines, shortened.
            let node = feedback.node_id();
            if let Some(n) = self.inner.peer_log.allow(node, "feedback") {
                let text = format!("{feedback:?}");
                log::info!(
                    "feedback from node {node}: {}{}",
                    echo(&text),
                    PeerLog::held_back(n)
                );
            }
        }
        self.inner.emit(ResearcherEvent::Feedback(feedback)).await;
        Ok(Response::new(Empty {}))
    }
}

/// The response stream of a poll: the chunks of the tasks its agent hands
/// it. Dropping it (the call ended or was cut) closes the poll; a task
/// whose chunks were not all written goes back to the agent.
pub(super) struct PollStream {
    rx: mpsc::Receiver<PollItem>,
    agent: Addr<NodeAgent>,
    poll_id: u64,
    mode: PollMode,
    current: Option<(InFlight, Chunks)>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
}

impl Stream for PollStream {
    type Item = Result<TaskResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some((flight, chunks)) = &mut this.current {
                if let Some(frame) = chunks.next() {
                    flight.start();
                    return Poll::Ready(Some(Ok(TaskResponse {
                        size: frame.size,
                        iteration: frame.iteration,
                        bytes: frame.bytes,
                    })));
                }
                // Asked for more after the last chunk: it was written out.
                if let Some((flight, _)) = this.current.take() {
                    flight.delivered();
                }
                if this.mode == PollMode::Unary {
                    this.done = true;
                    return Poll::Ready(None);
                }
            }
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(PollItem::Task(flight))) => {
                    let chunks = Chunks::new(flight.payload());
                    this.current = Some((flight, chunks));
                    continue;
                }
                Poll::Ready(Some(PollItem::End(status))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => {}
            }
            if let Some(deadline) = &mut this.deadline {
                if deadline.as_mut().poll(cx).is_ready() {
                    this.done = true;
                    return Poll::Ready(Some(Err(Status::deadline_exceeded(
                        "no task for this node before the poll's deadline",
                    ))));
                }
            }
            return Poll::Pending;
        }
    }
}

impl Drop for PollStream {
    fn drop(&mut self) {
        // Report the close first; the tasks still held (the one being
        // written, those buffered) return to the agent as `rx` and
        // `current` drop right after.
        self.rx.close();
        self.agent.do_send(PollClosed {
            poll_id: self.poll_id,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_carries_the_errors_causes() {
        let status = status_of(ResearcherError::Mailbox(actix::MailboxError::Closed));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status
                .message()
                .starts_with("the researcher actor is gone: "),
            "{}",
            status.message()
        );
        assert!(status.message().len() > "the researcher actor is gone: ".len());
    }

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("3600S"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
    }

    #[test]
    fn bad_grpc_timeouts_are_ignored() {
        for v in ["", "S", "10", "10x", "-1S", "1234567890S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(v), None, "{v:?}");
        }
    }
}
