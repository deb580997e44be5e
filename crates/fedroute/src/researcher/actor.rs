//! [`Researcher`]: the actor the application talks to. It owns the node
//! registry (one [`NodeAgent`] per node id) and the table of requests
//! waiting for replies, and routes replies coming from the gRPC service.
//!
//! Requests resolve exactly once: with the matching reply, or with an error
//! on timeout, expiry in the node's queue, exhausted delivery retries, a
//! full queue or shutdown; the pending entry is removed in every case.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::join_all;
use tokio::sync::{mpsc, oneshot};

use super::agent::{
    AgentIdle, AgentSettings, Cancel, Close, Enqueue, Forget, Info, NodeAgent, NodeInfo, OpenPoll,
    Origin, PollClosed, PollItem, PollMode, Task, Undeliverable, LIFECYCLE_LINES,
};
use super::config::ResearcherConfig;
use super::error::ResearcherError;
use super::events::ResearcherEvent;
use super::pending::{PendingRefusal, PendingTable, ReplyMatch};
use super::status::later;
use super::table::{Admission, NodeTable};
use crate::log_limit::PeerLog;
use crate::wire::{echo, Envelope};
use crate::ErrorChain;

/// How long `Shutdown` waits for the gRPC server to finish its calls.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The class name of node-to-node messages the researcher relays.
const OVERLAY_CLASS: &str = "OverlayMessage";

type Waiter = oneshot::Sender<Result<Envelope, ResearcherError>>;

/// Queue `message` for `node_id`; resolves once it is queued (not
/// delivered). If it later cannot be delivered (expiry, retries), the
/// handler gets [`ResearcherEvent::Undelivered`].
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
    ) -> Researcher {
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
        if self.shutting_down {
            return failed(ResearcherError::ShuttingDown);
        }
        let deadline =
            tokio::time::Instant::from_std(later(std::time::Instant::now(), msg.timeout));
        if self.agents.get(&msg.node_id).is_none() {
            return failed(ResearcherError::NodeUnknown {
                node_id: msg.node_id,
            });
        }
        let Some(request_id) = msg.message.request_id().map(str::to_owned) else {
            return failed(ResearcherError::MissingRequestId {
                class: msg.message.class().to_string(),
            });
        };
        let (tx, rx) = oneshot::channel();
        if let Err((refusal, _)) = self.pending.insert(&request_id, &msg.node_id, tx) {
            return failed(match refusal {
                PendingRefusal::Duplicate => ResearcherError::DuplicateRequestId { request_id },
                PendingRefusal::Full { limit } => {
                    ResearcherError::TooManyPending { request_id, limit }
                }
            });
        }
        // A refusal comes back through `Undeliverable`, which resolves the
        // pending entry with the error.
        if let Some((agent, epoch)) = self.agents.busy(&msg.node_id) {
            agent.do_send(Enqueue {
                task: Task {
                    payload: msg.message.to_payload(),
                    request_id: Some(request_id.clone()),
                    origin: Origin::Request,
                },
                report_refusal: true,
                epoch,
            });
        }
        let me = ctx.address();
        let node_id = msg.node_id;
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

impl Handler<RequestTimedOut> for Researcher {
    type Result = ();

    fn handle(&mut self, msg: RequestTimedOut, _ctx: &mut Self::Context) {
        self.pending.remove(&msg.request_id);
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
                if let Some(p) = self.pending.remove(id) {
                    let _ = p.waiter.send(Err(msg.error));
                }
                // Otherwise the request already gave up (timeout).
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
        let envelope = msg.envelope;
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
        match self.pending.answer(request_id, node_id) {
            ReplyMatch::Matched(p) => match p.waiter.send(Ok(envelope)) {
                Ok(()) => Ok(ReplyRoute::Matched),
                // The request gave up a moment ago.
                Err(Ok(envelope)) => Ok(ReplyRoute::Unmatched(envelope)),
                Err(Err(_)) => Ok(ReplyRoute::Matched),
            },
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
        }
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
            let _ = p.waiter.send(Err(ResearcherError::ShuttingDown));
        }
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
        })
    }
}
