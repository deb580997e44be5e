//! [`Researcher`]: the actor the application talks to. It owns the node
//! registry (one [`NodeAgent`] per node id) and the table of requests
//! waiting for replies, and routes replies coming from the gRPC service.
//!
//! Requests resolve exactly once: with the matching reply, or with an error
//! on timeout, expiry in the node's queue, exhausted delivery retries, a
//! full queue or shutdown; the pending entry is removed in every case.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use futures::future::join_all;
use tokio::sync::{mpsc, oneshot};

use super::agent::{
    AgentIdle, AgentSettings, Cancel, Close, Enqueue, Forget, Info, NodeAgent, NodeInfo, OpenPoll,
    Origin, PollClosed, PollItem, PollMode, Task, Undeliverable, LIFECYCLE_LINES,
};
use super::config::ResearcherConfig;
use super::error::ResearcherError;
use super::events::{hand_over, ResearcherEvent};
use super::pending::{PendingRefusal, PendingTable, ReplyMatch};
use super::status::later;
use super::table::{Admission, NodeTable};
use crate::log_limit::PeerLog;
use crate::store::{DeliveryStore, Item, Recovered};
use crate::wire::{echo, Envelope};
use crate::{ErrorChain, StoreError, StoreStats};

/// How long `Shutdown` waits for the gRPC server to finish its calls.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The class name of node-to-node messages the researcher relays.
const OVERLAY_CLASS: &str = "OverlayMessage";

/// What a pending request resolves.
#[derive(Debug)]
struct Waiter {
    /// The future of a [`Request`]; `None`: the reply is an event
    /// ([`Submit`], or a request recovered after a restart).
    reply: Option<oneshot::Sender<Result<Envelope, ResearcherError>>>,
    /// Its key in the delivery store, once stored.
    stored: Option<u64>,
    /// Tells this entry from a later one with the same request id.
    token: u64,
}

/// An accepted request: its id, and (with a delivery store) what tells
/// when it is on disk.
type Accepted = (
    String,
    Option<oneshot::Receiver<Result<(), ResearcherError>>>,
);

/// The tag of a request in the delivery store.
const STORED_REQUEST: u8 = 1;

/// Milliseconds since the Unix epoch of `t` (0 before it).
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Queue `message` for `node_id`; resolves once it is queued (not
/// delivered). If it later cannot be delivered (expiry, retries), the
/// handler gets [`ResearcherEvent::Undelivered`].
/// It is queued in memory only, with or without a state directory (use
/// [`Submit`] for a request that must survive a restart).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ResearcherError>")]
pub struct SendToNode {
    /// The node.
    pub node_id: String,
    /// The message.
    pub message: Envelope,
}

/// Send `message` (which must carry a `request_id`) to `node_id` and wait
/// for the reply with the same `request_id`, at most `timeout`.
/// With a [`state_dir`](super::ResearcherConfig::state_dir), the request is
/// on disk before it is queued (a failed write resolves it with
/// [`ResearcherError::NotStored`]); if this process dies, the next one
/// recovers it and its reply comes as [`ResearcherEvent::Reply`].
#[derive(Debug, Message)]
#[rtype(result = "Result<Envelope, ResearcherError>")]
pub struct Request {
    /// The node.
    pub node_id: String,
    /// The request.
    pub message: Envelope,
    /// How long to wait for the reply, queueing included.
    pub timeout: Duration,
}

/// Send `message` (which must carry a `request_id`) to `node_id`, with no
/// future waiting: `Ok` once it is accepted (with a
/// [`state_dir`](super::ResearcherConfig::state_dir): once it is on disk,
/// so that it survives a crash of this process). Its reply comes as
/// [`ResearcherEvent::Reply`]; no reply within `timeout` (counted across
/// restarts), or a task that cannot be delivered, as
/// [`ResearcherEvent::NoReply`]. The form of [`Request`] for applications
/// that must see every answer after a restart too.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ResearcherError>")]
pub struct Submit {
    /// The node.
    pub node_id: String,
    /// The request.
    pub message: Envelope,
    /// How long to wait for the reply, queueing included.
    pub timeout: Duration,
}

/// The requests the delivery store held when the researcher started (with
/// a state directory), accepted by an earlier process and not answered:
/// their tasks are offered again when their node polls; their replies come
/// as [`ResearcherEvent::Reply`], their timeouts as
/// [`ResearcherEvent::NoReply`].
#[derive(Debug, Message)]
#[rtype(result = "Vec<RecoveredRequest>")]
pub struct RecoveredRequests;

/// A request recovered from the delivery store (see [`RecoveredRequests`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveredRequest {
    /// The node it is for.
    pub node_id: String,
    /// Its request id.
    pub request_id: String,
    /// When it stops waiting for its reply.
    pub deadline: SystemTime,
}

/// What the researcher's delivery store wrote so far (`None` without a
/// state directory).
#[derive(Debug, Message)]
#[rtype(result = "Option<StoreStats>")]
pub struct StoreStatus;

/// Queue `message` for every known node; answers the node ids it was queued
/// for (sorted). Replies to a broadcast wait for no `Request`: they reach
/// the handler as [`ResearcherEvent::UnmatchedReply`]. To collect replies,
/// send one `Request` per node instead.
#[derive(Debug, Message)]
#[rtype(result = "Vec<String>")]
pub struct Broadcast {
    /// The message.
    pub message: Envelope,
}

/// Every known node with its status (sorted by node id).
#[derive(Debug, Message)]
#[rtype(result = "Vec<NodeInfo>")]
pub struct Nodes;

/// Requests waiting for replies right now.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct PendingCount;

/// Stop accepting calls, end open polls, fail waiting requests and report
/// queued tasks as undelivered. Resolves when the server has stopped (or
/// after 5 s, `SHUTDOWN_GRACE`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// A node opened a poll: find or create its agent and register the poll.
#[derive(Message)]
#[rtype(result = "Result<Addr<NodeAgent>, ResearcherError>")]
pub(crate) struct Attach {
    pub node_id: String,
    pub poll_id: u64,
    pub mode: PollMode,
    pub tx: mpsc::Sender<PollItem>,
    /// The node's remote address, when known.
    pub remote: Option<std::net::SocketAddr>,
}

/// A poll call was abandoned while [`Attach`] was in progress: close the
/// poll if it was registered.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Detach {
    pub node_id: String,
    pub poll_id: u64,
}

/// Where a reply went.
#[derive(Debug)]
pub(crate) enum ReplyRoute {
    /// It resolved its request.
    Matched,
    /// It answers a request without a future and is being handed to the
    /// application's handler, in a task of its own (a node's call that is
    /// cut cannot abandon it half way); the request leaves the store once
    /// the handler has run, and the receiver then resolves: the service
    /// acknowledges the reply only after that, so that a crash before the
    /// handler ran gets the reply again after the restart.
    Handed(oneshot::Receiver<()>),
    /// An overlay message, queued for its destination.
    Relayed,
    /// Nobody waits for it.
    Unmatched(Envelope),
}

/// Why a reply was refused.
#[derive(Debug)]
pub(crate) enum RouteError {
    /// The sending node never polled.
    UnknownNode(String),
    /// An overlay message for a node that never polled.
    UnknownDestination(String),
    /// An overlay message without `dest_node_id`.
    NoDestination,
}

/// Route a decoded reply.
#[derive(Message)]
#[rtype(result = "Result<ReplyRoute, RouteError>")]
pub(crate) struct RouteReply {
    pub envelope: Envelope,
}

/// A request's future gave up waiting.
#[derive(Message)]
#[rtype(result = "()")]
struct RequestTimedOut {
    node_id: String,
    request_id: String,
}

/// The delivery store wrote (or failed to write) a request: queue its task.
#[derive(Message)]
#[rtype(result = "()")]
struct Stored {
    node_id: String,
    request_id: String,
    token: u64,
    seq: u64,
    task: Task,
    /// The error, unless the `Submit` caller was told it already.
    result: Result<(), Option<ResearcherError>>,
}

/// The running gRPC server, for `Shutdown`.
pub(crate) struct ServerControl {
    /// Stops accepting connections (graceful shutdown).
    pub stop: oneshot::Sender<()>,
    /// Tells open `ReplyTask` calls to end.
    pub cut: tokio::sync::watch::Sender<bool>,
    pub done: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetServer(pub ServerControl);

/// The researcher actor.
pub struct Researcher {
    settings: AgentSettings,
    max_nodes: usize,
    forget_after: Duration,
    agents: NodeTable<Addr<NodeAgent>>,
    pending: PendingTable<Waiter>,
    events: Option<Recipient<ResearcherEvent>>,
    server: Option<ServerControl>,
    shutting_down: bool,
    /// Warnings caused by nodes, shared with the service (flushed here).
    peer_log: Arc<PeerLog>,
    log_flush: Duration,
    /// The delivery store of the state directory, if any.
    store: Option<DeliveryStore>,
    /// What it held at start, turned into pending requests in `started`.
    recovered_items: Recovered,
    /// The requests recovered at start.
    recovered: Vec<RecoveredRequest>,
    /// Recovered tasks of nodes that have not polled since the start.
    held: HashMap<String, Vec<Task>>,
    next_token: u64,
}

impl std::fmt::Debug for Researcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Researcher")
            .field("max_nodes", &self.max_nodes)
            .field("shutting_down", &self.shutting_down)
            .finish_non_exhaustive()
    }
}

impl Researcher {
    pub(crate) fn new(
        config: &ResearcherConfig,
        events: Option<Recipient<ResearcherEvent>>,
        peer_log: Arc<PeerLog>,
        store: Option<(DeliveryStore, Recovered)>,
    ) -> Researcher {
        let (store, recovered_items) = match store {
            Some((store, recovered)) => (Some(store), recovered),
            None => (None, Recovered::default()),
        };
        Researcher {
            settings: AgentSettings {
                task_ttl: config.nodes.task_ttl,
                queue_capacity: config.nodes.queue_capacity,
                max_task_retries: config.nodes.max_task_retries,
                disconnection_timeout: config.nodes.disconnection_timeout,
                lifecycle: Arc::new(PeerLog::new(LIFECYCLE_LINES)),
            },
            max_nodes: config.limits.max_nodes,
            forget_after: config.nodes.forget_after,
            agents: NodeTable::new(config.limits.max_nodes, config.nodes.forget_after),
            pending: PendingTable::new(config.limits.max_pending_requests),
            events,
            server: None,
            shutting_down: false,
            peer_log,
            log_flush: config.peer_log_rate.flush_every(),
            store,
            recovered_items,
            recovered: Vec::new(),
            held: HashMap::new(),
            next_token: 0,
        }
    }

    /// Accepts a request for `node_id` (a `Request` when `reply` is given,
    /// else a `Submit`): checks it, records it as pending, and queues its
    /// task, or (with a delivery store) has it written first; the returned
    /// receiver then tells when it is on disk.
    fn accept(
        &mut self,
        ctx: &mut Context<Self>,
        node_id: String,
        message: Envelope,
        timeout: Duration,
        reply: Option<oneshot::Sender<Result<Envelope, ResearcherError>>>,
    ) -> Result<Accepted, ResearcherError> {
        if self.shutting_down {
            return Err(ResearcherError::ShuttingDown);
        }
        if self.agents.get(&node_id).is_none() {
            return Err(ResearcherError::NodeUnknown { node_id });
        }
        let Some(request_id) = message.request_id().map(str::to_owned) else {
            return Err(ResearcherError::MissingRequestId {
                class: message.class().to_string(),
            });
        };
        let token = self.token();
        let seq = self.store.as_ref().map(DeliveryStore::next_seq);
        let waiter = Waiter {
            reply,
            stored: seq,
            token,
        };
        if let Err((refusal, _)) = self.pending.insert(&request_id, &node_id, waiter) {
            return Err(match refusal {
                PendingRefusal::Duplicate => ResearcherError::DuplicateRequestId { request_id },
                PendingRefusal::Full { limit } => {
                    ResearcherError::TooManyPending { request_id, limit }
                }
            });
        }
        let task = Task {
            payload: message.to_payload(),
            request_id: Some(request_id.clone()),
            origin: Origin::Request,
        };
        let (Some(store), Some(seq)) = (&self.store, seq) else {
            self.enqueue(&node_id, task);
            return Ok((request_id, None));
        };
        let (tx, rx) = oneshot::channel();
        let item = Item {
            group: node_id.clone(),
            seq,
            request_id: Some(request_id.clone()),
            deadline_ms: SystemTime::now()
                .checked_add(timeout)
                .map_or(u64::MAX, unix_ms),
            tag: STORED_REQUEST,
            payload: task.payload.clone(),
        };
        let me = ctx.address();
        let (id, node) = (request_id.clone(), node_id);
        store.put(
            item,
            false,
            Box::new(move |result: Result<(), StoreError>| {
                let outcome = result.map_err(|source| ResearcherError::NotStored {
                    request_id: id.clone(),
                    source,
                });
                let ok = outcome.is_ok();
                // A `Submit` caller is told here; for a `Request` (nobody
                // listens) the error goes on to its future.
                let result = match tx.send(outcome) {
                    Ok(()) if ok => Ok(()),
                    Ok(()) => Err(None),
                    Err(Ok(())) => Ok(()),
                    Err(Err(e)) => Err(Some(e)),
                };
                me.do_send(Stored {
                    node_id: node,
                    request_id: id,
                    token,
                    seq,
                    task,
                    result,
                });
            }),
        );
        Ok((request_id, Some(rx)))
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Queues `task` for `node_id`; a refusal comes back through
    /// `Undeliverable`, which resolves the pending entry.
    fn enqueue(&mut self, node_id: &str, task: Task) {
        if let Some((agent, epoch)) = self.agents.busy(node_id) {
            agent.do_send(Enqueue {
                task,
                report_refusal: true,
                epoch,
            });
        } else if let Some(id) = task.request_id {
            // The node was forgotten in the meantime.
            let error = ResearcherError::NodeUnknown {
                node_id: node_id.to_string(),
            };
            self.fail(&id, error);
        }
    }

    /// Resolves pending request `request_id` with `error`: its future, or a
    /// `NoReply` event; its row leaves the store.
    fn fail(&mut self, request_id: &str, error: ResearcherError) {
        let Some(p) = self.pending.remove(request_id) else {
            return;
        };
        self.unstore(&p.node_id, p.waiter.stored);
        match p.waiter.reply {
            Some(reply) => {
                let _ = reply.send(Err(error));
            }
            None => self.emit(ResearcherEvent::NoReply {
                node_id: p.node_id,
                request_id: request_id.to_string(),
                reason: ErrorChain(&error).to_string(),
            }),
        }
    }

    /// The request is done with: its row leaves the delivery store (not
    /// at shutdown: it is recovered at the next start).
    /// Hands a `Reply` event to the handler in a task of its own; removes
    /// the request from the store once the handler has run (not when it
    /// could not: the next start then delivers it again).
    fn hand_over(
        &self,
        event: ResearcherEvent,
        node_id: String,
        stored: Option<(DeliveryStore, u64)>,
    ) -> oneshot::Receiver<()> {
        let (done, handled) = oneshot::channel();
        let events = self.events.clone();
        actix::spawn(async move {
            let taken = match &events {
                Some(events) => hand_over(events, event).await,
                None => false,
            };
            if let (true, Some((store, seq))) = (taken, stored) {
                store.remove(&node_id, seq);
            }
            let _ = done.send(());
        });
        handled
    }

    fn unstore(&self, node_id: &str, stored: Option<u64>) {
        if let (Some(store), Some(seq), false) = (&self.store, stored, self.shutting_down) {
            store.remove(node_id, seq);
        }
    }

    /// A timer of a request without a future (`Submit`, recovered): gives
    /// up if the same entry still waits.
    fn expire_later(
        &self,
        ctx: &mut Context<Self>,
        request_id: String,
        token: u64,
        after: Duration,
    ) {
        ctx.run_later(after, move |act, _| {
            let ours = act
                .pending
                .get(&request_id)
                .is_some_and(|p| p.waiter.token == token);
            if !ours {
                return;
            }
            let node_id = act.pending.get(&request_id).map(|p| p.node_id.clone());
            if let Some(node_id) = node_id {
                if let Some(agent) = act.agents.get(&node_id) {
                    agent.do_send(Cancel {
                        request_id: request_id.clone(),
                        answered: false,
                    });
                }
                if let Some(held) = act.held.get_mut(&node_id) {
                    held.retain(|t| t.request_id.as_deref() != Some(request_id.as_str()));
                }
                act.fail(
                    &request_id.clone(),
                    ResearcherError::Timeout {
                        node_id,
                        request_id,
                        timeout: after,
                    },
                );
            }
        });
    }

    /// Turns what the delivery store held at start into pending requests
    /// (their tasks wait for their node's first poll).
    fn recover(&mut self, ctx: &mut Context<Self>) {
        let recovered = std::mem::take(&mut self.recovered_items);
        let now = SystemTime::now();
        for (node_id, items) in recovered.items {
            for item in items {
                let Some(request_id) = item.request_id.clone() else {
                    self.drop_item(&item, "it has no request id");
                    continue;
                };
                let deadline = SystemTime::UNIX_EPOCH
                    .checked_add(Duration::from_millis(item.deadline_ms))
                    // Not representable here: as good as never.
                    .unwrap_or(now + Duration::from_secs(100 * 365 * 86_400));
                let left = deadline.duration_since(now).unwrap_or_default();
                let token = self.token();
                let waiter = Waiter {
                    reply: None,
                    stored: Some(item.seq),
                    token,
                };
                if let Err((refusal, _)) = self.pending.insert(&request_id, &node_id, waiter) {
                    self.drop_item(&item, &format!("{refusal:?}"));
                    continue;
                }
                self.recovered.push(RecoveredRequest {
                    node_id: node_id.clone(),
                    request_id: request_id.clone(),
                    deadline,
                });
                if left.is_zero() {
                    let error = ResearcherError::Timeout {
                        node_id: node_id.clone(),
                        request_id: request_id.clone(),
                        timeout: Duration::ZERO,
                    };
                    self.fail(&request_id, error);
                    continue;
                }
                self.held.entry(node_id.clone()).or_default().push(Task {
                    payload: item.payload,
                    request_id: Some(request_id.clone()),
                    origin: Origin::Request,
                });
                self.expire_later(ctx, request_id, token, left);
            }
        }
        if !self.recovered.is_empty() && self.events.is_none() {
            log::warn!(
                "researcher: {} recovered request(s) but no event recipient: their replies \
                 reach nobody until their deadlines",
                self.recovered.len()
            );
        }
        if !self.recovered.is_empty() {
            log::info!(
                "researcher: {} request(s) accepted before the restart are waiting for their replies again",
                self.recovered.len()
            );
        }
    }

    fn drop_item(&self, item: &Item, why: &str) {
        log::warn!(
            "researcher: a stored task for node {} is dropped: {why}",
            item.group
        );
        if let Some(store) = &self.store {
            store.remove(&item.group, item.seq);
        }
    }

    /// Forgets the agents that have been forgettable for `forget_after`.
    fn sweep(&mut self) {
        for (node_id, agent) in self.agents.sweep(Instant::now()) {
            log::debug!(
                "node {node_id} forgotten: DISCONNECTED with nothing pending for {:?}",
                self.forget_after
            );
            agent.do_send(Forget);
        }
    }

    fn emit(&self, event: ResearcherEvent) {
        // Rate bounded by queued tasks (each reports at most once).
        if let Some(events) = &self.events {
            events.do_send(event);
        }
    }
}

impl Actor for Researcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Callers use `send`, which waits for room: keep room for bursts of
        // concurrent requests and polls.
        ctx.set_mailbox_capacity(1024);
        let sweep_every =
            (self.forget_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        ctx.run_interval(sweep_every, |act, _| act.sweep());
        ctx.run_interval(self.log_flush, |act, _| {
            act.peer_log.flush();
            act.settings.lifecycle.flush();
        });
        self.recover(ctx);
    }
}

fn failed<T: 'static>(e: ResearcherError) -> ResponseFuture<Result<T, ResearcherError>> {
    Box::pin(async move { Err(e) })
}

impl Handler<SendToNode> for Researcher {
    type Result = ResponseFuture<Result<(), ResearcherError>>;

    fn handle(&mut self, msg: SendToNode, _ctx: &mut Self::Context) -> Self::Result {
        if self.shutting_down {
            return failed(ResearcherError::ShuttingDown);
        }
        let Some((agent, epoch)) = self.agents.busy(&msg.node_id) else {
            return failed(ResearcherError::NodeUnknown {
                node_id: msg.node_id,
            });
        };
        let task = Task {
            payload: msg.message.to_payload(),
            request_id: msg.message.request_id().map(str::to_owned),
            origin: Origin::Send,
        };
        Box::pin(async move {
            agent
                .send(Enqueue {
                    task,
                    report_refusal: false,
                    epoch,
                })
                .await?
        })
    }
}

impl Handler<Request> for Researcher {
    type Result = ResponseFuture<Result<Envelope, ResearcherError>>;

    fn handle(&mut self, msg: Request, ctx: &mut Self::Context) -> Self::Result {
        let deadline =
            tokio::time::Instant::from_std(later(std::time::Instant::now(), msg.timeout));
        let (tx, rx) = oneshot::channel();
        let node_id = msg.node_id.clone();
        let request_id = match self.accept(ctx, msg.node_id, msg.message, msg.timeout, Some(tx)) {
            Ok((request_id, _stored)) => request_id,
            Err(e) => return failed(e),
        };
        let me = ctx.address();
        let timeout = msg.timeout;
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(ResearcherError::ShuttingDown),
                Err(_) => {
                    me.do_send(RequestTimedOut {
                        node_id: node_id.clone(),
                        request_id: request_id.clone(),
                    });
                    Err(ResearcherError::Timeout {
                        node_id,
                        request_id,
                        timeout,
                    })
                }
            }
        })
    }
}

impl Handler<Submit> for Researcher {
    type Result = ResponseFuture<Result<(), ResearcherError>>;

    fn handle(&mut self, msg: Submit, ctx: &mut Self::Context) -> Self::Result {
        if self.events.is_none() {
            return failed(ResearcherError::NoEventRecipient);
        }
        let timeout = msg.timeout;
        let (request_id, stored) = match self.accept(ctx, msg.node_id, msg.message, timeout, None) {
            Ok(accepted) => accepted,
            Err(e) => return failed(e),
        };
        if let Some(p) = self.pending.get(&request_id) {
            let token = p.waiter.token;
            self.expire_later(ctx, request_id, token, timeout);
        }
        Box::pin(async move {
            match stored {
                None => Ok(()),
                Some(stored) => stored.await.unwrap_or(Err(ResearcherError::ShuttingDown)),
            }
        })
    }
}

impl Handler<Stored> for Researcher {
    type Result = ();

    fn handle(&mut self, msg: Stored, _ctx: &mut Self::Context) {
        let ours = self
            .pending
            .get(&msg.request_id)
            .is_some_and(|p| p.waiter.token == msg.token);
        if !ours {
            // Given up while it was written (timeout, shutdown): nothing
            // more to do; its row goes if it is there.
            if let (Some(store), Ok(()), false) = (&self.store, &msg.result, self.shutting_down) {
                store.remove(&msg.node_id, msg.seq);
            }
            return;
        }
        match msg.result {
            Ok(()) => self.enqueue(&msg.node_id, msg.task),
            // Not stored: nothing to remove; the caller was told.
            Err(None) => {
                self.pending.remove(&msg.request_id);
            }
            Err(Some(error)) => {
                if let Some(p) = self.pending.get_mut(&msg.request_id) {
                    p.waiter.stored = None;
                }
                self.fail(&msg.request_id, error);
            }
        }
    }
}

impl Handler<RecoveredRequests> for Researcher {
    type Result = MessageResult<RecoveredRequests>;

    fn handle(&mut self, _: RecoveredRequests, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.recovered.clone())
    }
}

impl Handler<StoreStatus> for Researcher {
    type Result = Option<StoreStats>;

    fn handle(&mut self, _: StoreStatus, _ctx: &mut Self::Context) -> Self::Result {
        self.store.as_ref().map(DeliveryStore::stats)
    }
}

impl Handler<RequestTimedOut> for Researcher {
    type Result = ();

    fn handle(&mut self, msg: RequestTimedOut, _ctx: &mut Self::Context) {
        if let Some(p) = self.pending.remove(&msg.request_id) {
            self.unstore(&p.node_id, p.waiter.stored);
        }
        if let Some(agent) = self.agents.get(&msg.node_id) {
            agent.do_send(Cancel {
                request_id: msg.request_id,
                answered: false,
            });
        }
    }
}

impl Handler<Undeliverable> for Researcher {
    type Result = ();

    fn handle(&mut self, msg: Undeliverable, _ctx: &mut Self::Context) {
        if msg.origin == Origin::Request {
            if let Some(id) = &msg.request_id {
                // Unless the request already gave up (timeout).
                self.fail(id, msg.error);
                return;
            }
        }
        self.emit(ResearcherEvent::Undelivered {
            node_id: msg.node_id,
            request_id: msg.request_id,
            reason: ErrorChain(&msg.error).to_string(),
        });
    }
}

impl Handler<Broadcast> for Researcher {
    type Result = ResponseFuture<Vec<String>>;

    fn handle(&mut self, msg: Broadcast, _ctx: &mut Self::Context) -> Self::Result {
        if self.shutting_down {
            return Box::pin(async { Vec::new() });
        }
        let payload = msg.message.to_payload();
        let request_id = msg.message.request_id().map(str::to_owned);
        let ids: Vec<String> = self.agents.iter().map(|(id, _)| id.clone()).collect();
        let sends: Vec<_> = ids
            .into_iter()
            .filter_map(|id| self.agents.busy(&id).map(|busy| (id, busy)))
            .map(|(id, (agent, epoch))| {
                let fut = agent.send(Enqueue {
                    task: Task {
                        payload: payload.clone(),
                        request_id: request_id.clone(),
                        origin: Origin::Send,
                    },
                    report_refusal: false,
                    epoch,
                });
                async move {
                    match fut.await {
                        Ok(Ok(())) => Some(id),
                        Ok(Err(e)) => {
                            log::warn!("broadcast not queued for node {id}: {}", ErrorChain(&e));
                            None
                        }
                        Err(e) => {
                            log::warn!("broadcast not queued for node {id}: {e}");
                            None
                        }
                    }
                }
            })
            .collect();
        Box::pin(async move {
            let mut ids: Vec<String> = join_all(sends).await.into_iter().flatten().collect();
            ids.sort();
            ids
        })
    }
}

impl Handler<Nodes> for Researcher {
    type Result = ResponseFuture<Vec<NodeInfo>>;

    fn handle(&mut self, _: Nodes, _ctx: &mut Self::Context) -> Self::Result {
        let asks: Vec<_> = self.agents.iter().map(|(_, a)| a.send(Info)).collect();
        Box::pin(async move {
            let mut infos: Vec<NodeInfo> = join_all(asks)
                .await
                .into_iter()
                .filter_map(Result::ok)
                .collect();
            infos.sort_by(|a, b| a.node_id.cmp(&b.node_id));
            infos
        })
    }
}

impl Handler<PendingCount> for Researcher {
    type Result = usize;

    fn handle(&mut self, _: PendingCount, _ctx: &mut Self::Context) -> usize {
        self.pending.len()
    }
}

impl Handler<Attach> for Researcher {
    type Result = Result<Addr<NodeAgent>, ResearcherError>;

    fn handle(&mut self, msg: Attach, ctx: &mut Self::Context) -> Self::Result {
        if self.shutting_down {
            return Err(ResearcherError::ShuttingDown);
        }
        let known = self.agents.busy(&msg.node_id);
        let (agent, epoch) = match known.ok_or_else(|| self.agents.make_room()) {
            Ok(busy) => busy,
            Err(Admission::Room(evicted)) => {
                if let Some(old) = evicted {
                    log::debug!(
                        "node table full ({} nodes): the agent idle the longest makes room for node {}",
                        self.max_nodes,
                        msg.node_id
                    );
                    old.do_send(Forget);
                }
                let agent = NodeAgent::new(
                    msg.node_id.clone(),
                    self.settings.clone(),
                    ctx.address().recipient(),
                    ctx.address().recipient(),
                    self.events.clone(),
                )
                .start();
                // Tasks recovered from the store go first, before the poll.
                for task in self.held.remove(&msg.node_id).unwrap_or_default() {
                    agent.do_send(Enqueue {
                        task,
                        report_refusal: true,
                        epoch: 1,
                    });
                }
                self.agents.insert(msg.node_id, agent.clone());
                (agent, 1)
            }
            Err(Admission::Full) => {
                return Err(ResearcherError::TooManyNodes {
                    node_id: echo(&msg.node_id),
                    limit: self.max_nodes,
                })
            }
        };
        agent.do_send(OpenPoll {
            poll_id: msg.poll_id,
            mode: msg.mode,
            tx: msg.tx,
            remote: msg.remote,
            epoch,
        });
        Ok(agent)
    }
}

impl Handler<Detach> for Researcher {
    type Result = ();

    fn handle(&mut self, msg: Detach, _ctx: &mut Self::Context) {
        if let Some(agent) = self.agents.get(&msg.node_id) {
            agent.do_send(PollClosed {
                poll_id: msg.poll_id,
            });
        }
    }
}

impl Handler<RouteReply> for Researcher {
    type Result = Result<ReplyRoute, RouteError>;

    fn handle(&mut self, msg: RouteReply, _ctx: &mut Self::Context) -> Self::Result {
        self.route(msg.envelope)
    }
}

impl Researcher {
    /// Routes a decoded reply.
    fn route(&mut self, envelope: Envelope) -> Result<ReplyRoute, RouteError> {
        let node_id = envelope.node_id().unwrap_or_default();
        if self.agents.get(node_id).is_none() {
            return Err(RouteError::UnknownNode(echo(node_id)));
        }
        if envelope.class() == OVERLAY_CLASS {
            let Some(dest) = envelope.dest_node_id() else {
                return Err(RouteError::NoDestination);
            };
            let Some((agent, epoch)) = self.agents.busy(dest) else {
                return Err(RouteError::UnknownDestination(echo(dest)));
            };
            agent.do_send(Enqueue {
                task: Task {
                    payload: envelope.to_payload(),
                    request_id: None,
                    origin: Origin::Send,
                },
                report_refusal: true,
                epoch,
            });
            return Ok(ReplyRoute::Relayed);
        }
        let Some(request_id) = envelope.request_id() else {
            return Ok(ReplyRoute::Unmatched(envelope));
        };
        // The node answered: its agent stops keeping the task for a resend
        // (whether a request still waits for it or not).
        if let Some(agent) = self.agents.get(node_id) {
            agent.do_send(Cancel {
                request_id: request_id.to_string(),
                answered: true,
            });
        }
        let routed = match self.pending.answer(request_id, node_id) {
            ReplyMatch::Matched(p) => {
                let Some(reply) = p.waiter.reply else {
                    let stored = match (&self.store, p.waiter.stored) {
                        (Some(store), Some(seq)) => Some((store.clone(), seq)),
                        _ => None,
                    };
                    let event = ResearcherEvent::Reply {
                        node_id: p.node_id.clone(),
                        request_id: request_id.to_string(),
                        message: envelope,
                    };
                    return Ok(ReplyRoute::Handed(self.hand_over(event, p.node_id, stored)));
                };
                self.unstore(&p.node_id, p.waiter.stored);
                match reply.send(Ok(envelope)) {
                    Ok(()) => Ok(ReplyRoute::Matched),
                    // The request gave up a moment ago.
                    Err(Ok(envelope)) => Ok(ReplyRoute::Unmatched(envelope)),
                    Err(Err(_)) => Ok(ReplyRoute::Matched),
                }
            }
            ReplyMatch::Unknown => Ok(ReplyRoute::Unmatched(envelope)),
            ReplyMatch::WrongNode { expected } => {
                self.peer_log.warn(node_id, "reply for another node", || {
                    format!(
                        "reply to request {} came from node {}, but was asked of {expected}",
                        echo(request_id),
                        echo(node_id)
                    )
                });
                Ok(ReplyRoute::Unmatched(envelope))
            }
        };
        routed
    }
}

impl Handler<AgentIdle> for Researcher {
    type Result = ();

    fn handle(&mut self, msg: AgentIdle, _ctx: &mut Self::Context) {
        self.agents
            .forgettable(&msg.node_id, msg.epoch, Instant::now());
    }
}

impl Handler<SetServer> for Researcher {
    type Result = ();

    fn handle(&mut self, msg: SetServer, _ctx: &mut Self::Context) {
        self.server = Some(msg.0);
    }
}

impl Handler<Shutdown> for Researcher {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        for (_, p) in self.pending.drain() {
            if let Some(reply) = p.waiter.reply {
                let _ = reply.send(Err(ResearcherError::ShuttingDown));
            }
        }
        // Requests stay in the store: the next start recovers them.
        let store = self.store.take();
        let server = self.server.take();
        let agents: Vec<_> = self.agents.iter().map(|(_, a)| a.clone()).collect();
        Box::pin(async move {
            let done = server.map(|s| {
                let _ = s.stop.send(());
                s.cut.send_replace(true);
                s.done
            });
            join_all(agents.iter().map(|a| a.send(Close))).await;
            if let Some(mut done) = done {
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut done).await {
                    Ok(Ok(Ok(()))) => log::info!("researcher server stopped"),
                    Ok(Ok(Err(e))) => {
                        log::warn!("researcher server ended with an error: {}", ErrorChain(&e))
                    }
                    Ok(Err(e)) => log::warn!("researcher server task failed: {e}"),
                    Err(_) => {
                        // Calls still open (a node holding a ReplyTask
                        // stream): cut them.
                        log::warn!(
                            "researcher server still busy after {SHUTDOWN_GRACE:?}; closing the remaining calls"
                        );
                        done.abort();
                    }
                }
            }
            if let Some(store) = store {
                if let Err(e) = store.close().await {
                    log::warn!("{}", ErrorChain(&e));
                }
            }
        })
    }
}
