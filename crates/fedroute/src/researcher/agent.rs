//! [`NodeAgent`]: one actor per node id, holding the node's task queue and
//! status, and handing tasks to the node's open polls.
//!
//! A poll (a `GetTaskUnary` call, or a `GetTask` stream with its credit) is a
//! channel sender registered with `OpenPoll`. The agent moves tasks from
//! its queue into poll channels as credit allows; each task travels wrapped
//! in an `InFlight` guard that reports back when the task was written out
//! (`InFlight::delivered`) or, when dropped undelivered, gives the task
//! back: a task whose delivery had started is requeued at the head with one
//! more attempt (bounded retries), one that never started goes back without
//! penalty. So a task is never lost silently, whatever way a stream ends.
//!
//! Delivery guarantee: a task counts as written out once its last chunk has
//! been handed to HTTP/2. A connection cut after that point, with the bytes
//! still in buffers or on the wire, would lose the task without the
//! researcher knowing (Fed-BioMed does lose it). So a written task that
//! carries a `request_id` is kept as *awaiting its reply*
//! ([`AwaitingReply`], bounded by the queue capacity), tagged with the TCP
//! connection (the node's remote address) whose poll carried it. It leaves
//! that set when a reply with its `request_id` arrives (`Cancel` with
//! `answered`), when its request times out (`Cancel`), or, for a task
//! nobody waits on (`SendToNode`, `Broadcast`), after the time to live.
//! When the agent sees that the connection is gone, the awaiting tasks of
//! that connection go back to the head of the queue in their original order.
//! No attempt is counted for them: `max_task_retries` stops a task whose
//! own delivery keeps breaking the stream, and these were written out
//! completely (counting them made requests fail under frequent cuts: a task
//! reached the node, but its reply lagged behind several cuts). They stay
//! bounded by their request's timeout or, for tasks nobody waits on, by the
//! time to live, and each resend needs a lost connection. The evidence that
//! a connection is gone:
//! - the node polls from another remote address: a node keeps one channel
//!   (one TCP connection) per researcher, so a new connection means the old
//!   one died;
//! - the node becomes DISCONNECTED.
//!
//! A requeued task may in fact have reached the node: fedroute nodes drop a
//! task whose `request_id` they received recently (a bounded window per
//! link, `ControllerConfig::dedup_window`). Fed-BioMed (Python) nodes do not
//! deduplicate, so for them a cut may deliver a task twice - as Fed-BioMed's
//! own researcher does when it requeues a cut task (up to 5 times); the
//! researcher keeps the first reply and drops the second as already
//! answered (an [`ResearcherEvent::UnmatchedReply`]).
//!
//! Tasks without a `request_id` (relayed `OverlayMessage`s) cannot be matched
//! to a reply, so they keep the at-most-once behaviour: lost if a cut takes
//! them after they were written out.
//!
//! A node is expected to poll over a single connection. Two live
//! connections of one node id polling in turn (two links of one node to the
//! same researcher under two names) would make each poll look like the
//! other connection died: tasks would be resent, bounded by the retries.
//!
//! Timers are single per agent (one for task expiry, one for the
//! disconnection timeout), re-armed when they fire, so traffic does not
//! pile up timers in the actor's context.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use tokio::sync::mpsc;

use super::awaiting::{Awaiting, AwaitingReply};
use super::error::ResearcherError;
use super::events::ResearcherEvent;
use super::queue::{QueueRefusal, QueuedTask, TaskQueue};
use super::status::{later, NodeStatus, StatusChange, StatusTracker};
use crate::log_limit::{LogRate, PeerLog};
use crate::wire::Payload;

/// Who learns about a task that could not be delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A `Request`: its future resolves with the error.
    Request,
    /// `SendToNode`, `Broadcast` or an overlay relay: an `Undelivered` event.
    Send,
}

/// A message on its way to a node.
#[derive(Debug)]
pub(crate) struct Task {
    /// The encoded message (msgpack), chunked when delivered.
    pub payload: Payload,
    /// Its request id, if it has one.
    pub request_id: Option<String>,
    /// Who is told if it cannot be delivered.
    pub origin: Origin,
}

/// A task handed to a poll stream. Dropping it without calling
/// [`InFlight::delivered`] gives the task back to its agent.
pub(crate) struct InFlight {
    task: Option<QueuedTask<Task>>,
    agent: Addr<NodeAgent>,
    started: bool,
    /// The connection of the poll writing it.
    conn: Option<SocketAddr>,
}

impl InFlight {
    /// The encoded message (a cheap clone of the shared pieces).
    pub(crate) fn payload(&self) -> Payload {
        self.task
            .as_ref()
            .map(|t| t.task.payload.clone())
            .unwrap_or_default()
    }

    /// The first chunk was written: from now on a cut costs an attempt.
    pub(crate) fn start(&mut self) {
        self.started = true;
    }

    /// Every chunk was written.
    pub(crate) fn delivered(mut self) {
        if let Some(task) = self.task.take() {
            self.agent.do_send(Delivered {
                task,
                conn: self.conn,
            });
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            self.agent.do_send(Returned {
                task,
                cut: self.started,
            });
        }
    }
}

/// What a poll stream receives from its agent.
pub(crate) enum PollItem {
    /// A task to send.
    Task(InFlight),
    /// End the stream with this status (shutdown).
    End(tonic::Status),
}

/// How a poll takes tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PollMode {
    /// `GetTaskUnary`: one task, then the stream ends.
    Unary,
    /// `GetTask`: one task per credit, for as long as the stream lives.
    Streaming,
}

/// A poll opened by the node.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct OpenPoll {
    /// Unique among polls.
    pub poll_id: u64,
    /// Unary or streaming.
    pub mode: PollMode,
    /// Where tasks go.
    pub tx: mpsc::Sender<PollItem>,
    /// The node's remote address (its TCP connection), when known.
    pub remote: Option<SocketAddr>,
    /// The researcher's work epoch of this agent (see [`super::table`]).
    pub epoch: u64,
}

/// A poll ended (sent from its stream's `Drop`, or for a call abandoned
/// while its poll was being registered). Idempotent.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct PollClosed {
    /// The poll.
    pub poll_id: u64,
}

/// A streaming poll asked for `n` more tasks.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Credit {
    /// The poll.
    pub poll_id: u64,
    /// How many more tasks it takes.
    pub n: u32,
}

/// A streaming poll's request side ended: no more credit will come.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CreditEnded {
    /// The poll.
    pub poll_id: u64,
}

/// An in-flight task was written out.
#[derive(Message)]
#[rtype(result = "()")]
struct Delivered {
    task: QueuedTask<Task>,
    conn: Option<SocketAddr>,
}

/// An in-flight task came back undelivered.
#[derive(Message)]
#[rtype(result = "()")]
struct Returned {
    task: QueuedTask<Task>,
    cut: bool,
}

/// Queue a task for the node.
#[derive(Message)]
#[rtype(result = "Result<(), ResearcherError>")]
pub(crate) struct Enqueue {
    /// The task.
    pub task: Task,
    /// Also report a refusal through the failure path ([`Undeliverable`]),
    /// for senders that do not wait for the answer (`do_send`).
    pub report_refusal: bool,
    /// The researcher's work epoch of this agent (see [`super::table`]).
    pub epoch: u64,
}

/// The agent became forgettable (its node is DISCONNECTED with nothing
/// queued, in flight or awaiting a reply) after the work of `epoch`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct AgentIdle {
    /// The node.
    pub node_id: String,
    /// The last work epoch the agent saw.
    pub epoch: u64,
}

/// The researcher forgot this agent: stop.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Forget;

/// The task with this request id needs no delivery any more: its reply
/// arrived (`answered`), or its request gave up. It leaves the queue, the
/// awaiting set, and is not kept if it is being written right now.
/// Request ids are taken to be unique per node (the researcher refuses a
/// second pending request with the same id).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Cancel {
    /// The request id.
    pub request_id: String,
    /// A reply came: only the copies that were out already (requeued after
    /// a cut) leave the queue.
    pub answered: bool,
}

/// What the researcher knows about a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node id.
    pub node_id: String,
    /// Its status.
    pub status: NodeStatus,
    /// When it last opened a poll.
    pub last_poll: Option<SystemTime>,
    /// Tasks waiting in its queue.
    pub queue_depth: usize,
    /// Tasks being written to it.
    pub in_flight: usize,
    /// Tasks written to it and waiting for their reply (sent again if their
    /// connection is cut).
    pub awaiting_reply: usize,
}

/// Ask the agent for its [`NodeInfo`].
#[derive(Message)]
#[rtype(result = "NodeInfo")]
pub(crate) struct Info;

/// Shutdown: report queued tasks as undeliverable and end the polls.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Close;

/// A task the agent gives up on, for the researcher to report.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Undeliverable {
    /// The node it was for.
    pub node_id: String,
    /// The task's request id.
    pub request_id: Option<String>,
    /// Who is told.
    pub origin: Origin,
    /// Why.
    pub error: ResearcherError,
}

/// The agent's limits.
#[derive(Clone, Debug)]
pub(crate) struct AgentSettings {
    /// Time to live of a queued task.
    pub task_ttl: Duration,
    /// Queue capacity (queued + in flight).
    pub queue_capacity: usize,
    /// Cut deliveries tolerated per task.
    pub max_task_retries: u32,
    /// Without a poll for this long, the node is DISCONNECTED.
    pub disconnection_timeout: Duration,
    /// Where nodes coming and going are logged: a few lines per window
    /// for all nodes together, so a flood of made-up node ids cannot flood
    /// the log.
    pub lifecycle: Arc<PeerLog>,
}

/// Lines about nodes coming and going let through per window.
pub(crate) const LIFECYCLE_LINES: LogRate = LogRate {
    lines: 50,
    per: Duration::from_secs(10),
};

struct PollSlot {
    id: u64,
    mode: PollMode,
    tx: mpsc::Sender<PollItem>,
    credit: u32,
    credit_ended: bool,
    conn: Option<SocketAddr>,
}

/// The actor holding one node's queue and status.
pub(crate) struct NodeAgent {
    node_id: String,
    settings: AgentSettings,
    queue: TaskQueue<Task>,
    /// Tasks written out, waiting for their reply.
    awaiting: AwaitingReply<Task, SocketAddr>,
    /// Request ids of the in-flight tasks (with their count), so a task
    /// answered or cancelled while being written is not kept afterwards.
    in_flight_ids: HashMap<String, u32>,
    /// The node's current connection (remote address of its last poll).
    conn: Option<SocketAddr>,
    status: StatusTracker,
    polls: VecDeque<PollSlot>,
    /// Polls opened and not yet closed (a close is counted once, whoever
    /// reports it).
    open_polls: HashSet<u64>,
    failures: Recipient<Undeliverable>,
    idle: Recipient<AgentIdle>,
    events: Option<Recipient<ResearcherEvent>>,
    expiry_timer: Option<(Instant, SpawnHandle)>,
    status_timer: Option<SpawnHandle>,
    closed: bool,
    /// The latest work epoch seen, and whether idleness was reported for it.
    epoch: u64,
    idle_reported: bool,
}

impl std::fmt::Debug for NodeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAgent")
            .field("node_id", &self.node_id)
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl NodeAgent {
    pub(crate) fn new(
        node_id: String,
        settings: AgentSettings,
        failures: Recipient<Undeliverable>,
        idle: Recipient<AgentIdle>,
        events: Option<Recipient<ResearcherEvent>>,
    ) -> NodeAgent {
        NodeAgent {
            queue: TaskQueue::new(settings.queue_capacity, settings.max_task_retries),
            awaiting: AwaitingReply::new(settings.queue_capacity),
            in_flight_ids: HashMap::new(),
            conn: None,
            status: StatusTracker::new(settings.disconnection_timeout),
            node_id,
            settings,
            polls: VecDeque::new(),
            open_polls: HashSet::new(),
            failures,
            idle,
            events,
            expiry_timer: None,
            status_timer: None,
            closed: false,
            epoch: 0,
            idle_reported: false,
        }
    }

    /// Takes note of work of `epoch` given by the researcher.
    fn saw_epoch(&mut self, epoch: u64) {
        if epoch > self.epoch {
            self.epoch = epoch;
            self.idle_reported = false;
        }
    }

    /// Tells the researcher once per epoch that nothing would be lost by
    /// forgetting this agent.
    fn report_if_idle(&mut self) {
        let forgettable = !self.closed
            && self.status.status() == NodeStatus::Disconnected
            && self.open_polls.is_empty()
            && self.queue.is_empty()
            && self.queue.in_flight() == 0
            && self.awaiting.is_empty();
        if forgettable && !self.idle_reported {
            self.idle_reported = true;
            self.idle.do_send(AgentIdle {
                node_id: self.node_id.clone(),
                epoch: self.epoch,
            });
        }
    }

    fn emit(&self, event: ResearcherEvent) {
        // Status events are rare (bounded by polls coming and going), so an
        // unbounded send cannot grow without the node's own traffic.
        if let Some(events) = &self.events {
            events.do_send(event);
        }
    }

    fn give_up(&self, task: Task, error: ResearcherError) {
        log::warn!("node {}: {error}", self.node_id);
        self.failures.do_send(Undeliverable {
            node_id: self.node_id.clone(),
            request_id: task.request_id,
            origin: task.origin,
            error,
        });
    }

    /// Removes one in-flight mark of `request_id`; false when the task was
    /// answered or cancelled while in flight (it needs no more delivery).
    fn land(&mut self, request_id: &Option<String>) -> bool {
        let Some(id) = request_id else {
            return true;
        };
        match self.in_flight_ids.get_mut(id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            Some(_) => {
                self.in_flight_ids.remove(id);
                true
            }
            None => false,
        }
    }

    /// Queues again, in their original order, tasks that were written to a
    /// connection that is gone.
    fn requeue_lost(
        &mut self,
        ctx: &mut Context<Self>,
        lost: Vec<Awaiting<Task, SocketAddr>>,
        why: &str,
    ) {
        if lost.is_empty() {
            return;
        }
        let count = lost.len();
        // A new stay in the queue: the time to live counts queueing time.
        let deadline = later(Instant::now(), self.settings.task_ttl);
        for a in lost {
            let mut t = a.task;
            t.deadline = deadline;
            self.queue.put_back(t);
        }
        log::info!(
            "node {}: {count} task(s) written to a connection that is gone ({why}); queued again",
            self.node_id
        );
        self.arm_expiry(ctx, deadline);
    }

    /// The earliest deadline of a queued task or an awaited reply.
    fn next_deadline(&self) -> Option<Instant> {
        match (self.queue.next_deadline(), self.awaiting.next_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn expire_due(&mut self, now: Instant) {
        for a in self.awaiting.expire(now) {
            log::debug!(
                "node {}: no reply to {} within the time to live; not kept for a resend any more",
                self.node_id,
                a.request_id
            );
        }
        for t in self.queue.expire(now) {
            let error = ResearcherError::Expired {
                node_id: self.node_id.clone(),
                request_id: t.task.request_id.clone(),
                ttl: self.settings.task_ttl,
            };
            self.give_up(t.task, error);
        }
    }

    fn arm_expiry(&mut self, ctx: &mut Context<Self>, at: Instant) {
        if let Some((armed, handle)) = self.expiry_timer {
            if armed <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = at.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.expiry_timer = None;
            act.expire_due(Instant::now());
            if let Some(next) = act.next_deadline() {
                act.arm_expiry(ctx, next);
            }
            act.report_if_idle();
        });
        self.expiry_timer = Some((at, handle));
    }

    fn arm_status_check(&mut self, ctx: &mut Context<Self>) {
        if self.status_timer.is_some() {
            return;
        }
        let Some(at) = self.status.next_check() else {
            return;
        };
        let delay = at.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.status_timer = None;
            if act.status.check(Instant::now()) == Some(StatusChange::Disconnected) {
                if let Some(n) = act.settings.lifecycle.allow("nodes", "node disconnected") {
                    log::info!(
                        "node {} is DISCONNECTED{}",
                        act.node_id,
                        PeerLog::held_back(n)
                    );
                }
                act.emit(ResearcherEvent::NodeDisconnected {
                    node_id: act.node_id.clone(),
                });
                act.conn = None;
                let lost = act.awaiting.take_all();
                act.requeue_lost(ctx, lost, "the node is DISCONNECTED");
                act.report_if_idle();
            } else {
                act.arm_status_check(ctx);
            }
        });
        self.status_timer = Some(handle);
    }

    /// Moves queued tasks into polls with credit and channel room.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let mut i = 0;
        while i < self.polls.len() && !self.queue.is_empty() {
            if self.polls[i].credit == 0 {
                i += 1;
                continue;
            }
            let closed = match self.polls[i].tx.try_reserve() {
                Ok(permit) => {
                    let Some(task) = self.queue.take() else {
                        break;
                    };
                    if let Some(id) = &task.task.request_id {
                        *self.in_flight_ids.entry(id.clone()).or_default() += 1;
                    }
                    permit.send(PollItem::Task(InFlight {
                        task: Some(task),
                        agent: ctx.address(),
                        started: false,
                        conn: self.polls[i].conn,
                    }));
                    false
                }
                Err(mpsc::error::TrySendError::Full(())) => {
                    i += 1;
                    continue;
                }
                Err(mpsc::error::TrySendError::Closed(())) => true,
            };
            if closed {
                self.polls.remove(i);
                continue;
            }
            let slot = &mut self.polls[i];
            slot.credit -= 1;
            let finished = match slot.mode {
                PollMode::Unary => true,
                PollMode::Streaming => slot.credit == 0 && slot.credit_ended,
            };
            if finished {
                // Dropping our sender lets the stream end after its tasks.
                self.polls.remove(i);
            }
        }
    }

    fn slot_mut(&mut self, poll_id: u64) -> Option<(usize, &mut PollSlot)> {
        self.polls
            .iter_mut()
            .enumerate()
            .find(|(_, s)| s.id == poll_id)
    }
}

impl Actor for NodeAgent {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Polls and task reports arrive in bursts; the mailbox bound only
        // applies to `send`/`try_send`, and every sender here is bounded by
        // polls or in-flight tasks.
        ctx.set_mailbox_capacity(256);
    }
}

impl Handler<OpenPoll> for NodeAgent {
    type Result = ();

    fn handle(&mut self, msg: OpenPoll, ctx: &mut Self::Context) {
        self.saw_epoch(msg.epoch);
        if self.closed {
            let _ = msg.tx.try_send(PollItem::End(tonic::Status::unavailable(
                "the researcher is shutting down",
            )));
            return;
        }
        if !self.open_polls.insert(msg.poll_id) {
            log::warn!("node {}: poll {} opened twice", self.node_id, msg.poll_id);
            return;
        }
        if self.status.poll_opened(Instant::now(), SystemTime::now())
            == Some(StatusChange::Connected)
        {
            if let Some(n) = self.settings.lifecycle.allow("nodes", "node connected") {
                log::info!("node {} connected{}", self.node_id, PeerLog::held_back(n));
            }
            self.emit(ResearcherEvent::NodeConnected {
                node_id: self.node_id.clone(),
            });
        }
        if let Some(remote) = msg.remote {
            if self.conn != Some(remote) {
                if let Some(old) = self.conn {
                    log::debug!(
                        "node {}: polls from {remote} now, no longer from {old}",
                        self.node_id
                    );
                }
                self.conn = Some(remote);
                let lost = self.awaiting.take_lost(&remote);
                self.requeue_lost(ctx, lost, "the node polls on a new connection");
            }
        }
        self.polls.push_back(PollSlot {
            id: msg.poll_id,
            mode: msg.mode,
            tx: msg.tx,
            credit: 1,
            credit_ended: false,
            conn: msg.remote,
        });
        let now = Instant::now();
        if self.queue.front_deadline().is_some_and(|d| d <= now) {
            self.expire_due(now);
        }
        self.pump(ctx);
    }
}

impl Handler<PollClosed> for NodeAgent {
    type Result = ();

    fn handle(&mut self, msg: PollClosed, ctx: &mut Self::Context) {
        if let Some((i, _)) = self.slot_mut(msg.poll_id) {
            self.polls.remove(i);
        }
        if !self.open_polls.remove(&msg.poll_id) {
            return;
        }
        self.status.poll_closed(Instant::now());
        self.arm_status_check(ctx);
    }
}

impl Handler<Credit> for NodeAgent {
    type Result = ();

    fn handle(&mut self, msg: Credit, ctx: &mut Self::Context) {
        if let Some((_, slot)) = self.slot_mut(msg.poll_id) {
            slot.credit = slot.credit.saturating_add(msg.n);
            self.pump(ctx);
        }
    }
}

impl Handler<CreditEnded> for NodeAgent {
    type Result = ();

    fn handle(&mut self, msg: CreditEnded, _ctx: &mut Self::Context) {
        if let Some((i, slot)) = self.slot_mut(msg.poll_id) {
            slot.credit_ended = true;
            if slot.credit == 0 {
                self.polls.remove(i);
            }
        }
    }
}

impl Handler<Delivered> for NodeAgent {
    type Result = ();

    fn handle(&mut self, msg: Delivered, ctx: &mut Self::Context) {
        self.queue.delivered();
        let still_wanted = self.land(&msg.task.task.request_id);
        if let (false, true, Some(id)) =
            (self.closed, still_wanted, msg.task.task.request_id.clone())
        {
            let expires = (msg.task.task.origin == Origin::Send)
                .then(|| later(Instant::now(), self.settings.task_ttl));
            let entry = Awaiting {
                request_id: id,
                conn: msg.conn,
                expires,
                task: msg.task,
            };
            match (entry.conn, self.conn) {
                // Written to a connection already replaced by another.
                (Some(was), Some(now)) if was != now => {
                    self.requeue_lost(ctx, vec![entry], "written after the node reconnected");
                }
                _ => {
                    if let Some(out) = self.awaiting.insert(entry) {
                        log::warn!(
                            "node {}: {} tasks await their reply; task {} is no longer kept for a resend after a cut",
                            self.node_id,
                            self.awaiting.len(),
                            out.request_id
                        );
                    }
                    if let Some(at) = expires {
                        self.arm_expiry(ctx, at);
                    }
                }
            }
        }
        self.pump(ctx);
    }
}

impl Handler<Returned> for NodeAgent {
    type Result = ();

    fn handle(&mut self, msg: Returned, ctx: &mut Self::Context) {
        if self.closed {
            self.queue.delivered();
            self.give_up(msg.task.task, ResearcherError::ShuttingDown);
            return;
        }
        if !self.land(&msg.task.task.request_id) {
            // Answered or given up while being written: nothing to resend.
            self.queue.delivered();
            self.pump(ctx);
            return;
        }
        let deadline = msg.task.deadline;
        if msg.cut {
            match self.queue.requeue(msg.task) {
                Ok(()) => log::info!(
                    "node {}: a task's delivery was cut; queued again",
                    self.node_id
                ),
                Err(QueueRefusal::RetriesExhausted(t)) => {
                    let error = ResearcherError::RetriesExhausted {
                        node_id: self.node_id.clone(),
                        request_id: t.task.request_id.clone(),
                        attempts: t.attempts,
                    };
                    self.give_up(t.task, error);
                    return;
                }
                Err(QueueRefusal::Full { task, .. }) => {
                    // requeue never refuses for room; kept for completeness.
                    self.give_up(task, ResearcherError::ShuttingDown);
                    return;
                }
            }
        } else {
            self.queue.restore(msg.task);
        }
        self.arm_expiry(ctx, deadline);
        self.pump(ctx);
    }
}

impl Handler<Enqueue> for NodeAgent {
    type Result = Result<(), ResearcherError>;

    fn handle(&mut self, msg: Enqueue, ctx: &mut Self::Context) -> Self::Result {
        self.saw_epoch(msg.epoch);
        if self.closed {
            if msg.report_refusal {
                self.give_up(msg.task, ResearcherError::ShuttingDown);
            }
            return Err(ResearcherError::ShuttingDown);
        }
        let deadline = later(Instant::now(), self.settings.task_ttl);
        match self.queue.push(msg.task, deadline) {
            Ok(()) => {}
            Err(QueueRefusal::Full { task, capacity }) => {
                let error = || ResearcherError::QueueFull {
                    node_id: self.node_id.clone(),
                    capacity,
                };
                if msg.report_refusal {
                    self.give_up(task, error());
                }
                return Err(error());
            }
            Err(QueueRefusal::RetriesExhausted(_)) => return Err(ResearcherError::ShuttingDown),
        }
        self.pump(ctx);
        if !self.queue.is_empty() {
            if log::log_enabled!(log::Level::Debug) {
                log::debug!(
                    "node {} ({}): task queued, {} waiting",
                    self.node_id,
                    self.status.status(),
                    self.queue.len()
                );
            }
            self.arm_expiry(ctx, deadline);
        }
        Ok(())
    }
}

impl Handler<Cancel> for NodeAgent {
    type Result = ();

    fn handle(&mut self, msg: Cancel, _ctx: &mut Self::Context) {
        let id = msg.request_id.as_str();
        let answered = msg.answered;
        let queued = self
            .queue
            .remove_all_where(|t| {
                t.task.request_id.as_deref() == Some(id) && (!answered || t.attempts > 0)
            })
            .len();
        let awaited = self.awaiting.answer(id).len();
        let flying = self.in_flight_ids.remove(id).is_some();
        if queued + awaited > 0 || flying {
            log::debug!(
                "node {}: request {id} {}: {queued} queued, {awaited} awaiting, in flight: {flying}",
                self.node_id,
                if answered { "answered" } else { "cancelled" }
            );
        }
        self.report_if_idle();
    }
}

impl Handler<Forget> for NodeAgent {
    type Result = ();

    fn handle(&mut self, _: Forget, ctx: &mut Self::Context) {
        log::debug!("node {}: forgotten", self.node_id);
        self.closed = true;
        ctx.stop();
    }
}

impl Handler<Info> for NodeAgent {
    type Result = MessageResult<Info>;

    fn handle(&mut self, _: Info, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(NodeInfo {
            node_id: self.node_id.clone(),
            status: self.status.status(),
            last_poll: self.status.last_poll(),
            queue_depth: self.queue.len(),
            in_flight: self.queue.in_flight(),
            awaiting_reply: self.awaiting.len(),
        })
    }
}

impl Handler<Close> for NodeAgent {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Self::Context) {
        self.closed = true;
        for t in self.queue.drain() {
            self.give_up(t.task, ResearcherError::ShuttingDown);
        }
        // Written out: their requests are failed by the researcher itself.
        self.awaiting.take_all();
        self.in_flight_ids.clear();
        for slot in self.polls.drain(..) {
            let _ = slot.tx.try_send(PollItem::End(tonic::Status::unavailable(
                "the researcher is shutting down",
            )));
        }
        if let Some((_, handle)) = self.expiry_timer.take() {
            ctx.cancel_future(handle);
        }
        if let Some(handle) = self.status_timer.take() {
            ctx.cancel_future(handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// Swallows failure reports.
    struct Sink;
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<Undeliverable> for Sink {
        type Result = ();
        fn handle(&mut self, _: Undeliverable, _: &mut Self::Context) {}
    }
    impl Handler<AgentIdle> for Sink {
        type Result = ();
        fn handle(&mut self, _: AgentIdle, _: &mut Self::Context) {}
    }

    fn agent() -> Addr<NodeAgent> {
        let settings = AgentSettings {
            task_ttl: Duration::from_secs(300),
            queue_capacity: 8,
            max_task_retries: 5,
            disconnection_timeout: Duration::from_secs(60),
            lifecycle: Arc::new(PeerLog::new(LIFECYCLE_LINES)),
        };
        let sink = Sink.start();
        NodeAgent::new(
            "N".into(),
            settings,
            sink.clone().recipient(),
            sink.recipient(),
            None,
        )
        .start()
    }

    async fn status(agent: &Addr<NodeAgent>) -> NodeStatus {
        agent.send(Info).await.unwrap().status
    }

    #[actix_rt::test]
    async fn poll_close_reports_are_counted_once() {
        let agent = agent();
        let (tx, _rx) = mpsc::channel(1);
        agent.do_send(OpenPoll {
            poll_id: 1,
            mode: PollMode::Unary,
            tx: tx.clone(),
            remote: None,
            epoch: 1,
        });
        assert_eq!(status(&agent).await, NodeStatus::Active);
        agent.do_send(PollClosed { poll_id: 1 });
        agent.do_send(PollClosed { poll_id: 1 });
        assert_eq!(status(&agent).await, NodeStatus::Waiting);
        agent.do_send(OpenPoll {
            poll_id: 2,
            mode: PollMode::Unary,
            tx,
            remote: None,
            epoch: 1,
        });
        // A close for a poll never registered (a call abandoned before its
        // registration arrived) changes nothing.
        agent.do_send(PollClosed { poll_id: 99 });
        assert_eq!(status(&agent).await, NodeStatus::Active);
    }

    #[actix_rt::test]
    async fn a_waiting_poll_gets_the_task_and_a_cut_requeues_it() {
        let agent = agent();
        let (tx, mut rx) = mpsc::channel(1);
        agent.do_send(OpenPoll {
            poll_id: 1,
            mode: PollMode::Unary,
            tx,
            remote: None,
            epoch: 1,
        });
        agent
            .send(Enqueue {
                task: Task {
                    payload: Payload::from(Bytes::from_static(b"task")),
                    request_id: Some("r".into()),
                    origin: Origin::Request,
                },
                report_refusal: false,
                epoch: 1,
            })
            .await
            .unwrap()
            .unwrap();
        let Some(PollItem::Task(mut flight)) = rx.recv().await else {
            panic!("expected a task");
        };
        assert_eq!(flight.payload(), Bytes::from_static(b"task"));
        // The unary poll got its one task: the agent let go of the sender.
        assert!(rx.recv().await.is_none());
        flight.start();
        drop(flight);
        let info = agent.send(Info).await.unwrap();
        assert_eq!((info.queue_depth, info.in_flight), (1, 0));
    }

    fn task(id: &str) -> Enqueue {
        Enqueue {
            task: Task {
                payload: Payload::from(id.to_string().into_bytes()),
                request_id: Some(id.into()),
                origin: Origin::Request,
            },
            report_refusal: false,
            epoch: 1,
        }
    }

    async fn poll_from(agent: &Addr<NodeAgent>, poll_id: u64, remote: &str) -> InFlight {
        let (tx, mut rx) = mpsc::channel(1);
        agent.do_send(OpenPoll {
            poll_id,
            mode: PollMode::Unary,
            tx,
            remote: Some(remote.parse().unwrap()),
            epoch: 1,
        });
        match rx.recv().await {
            Some(PollItem::Task(flight)) => flight,
            _ => panic!("expected a task"),
        }
    }

    #[actix_rt::test]
    async fn a_written_task_is_sent_again_when_the_node_polls_on_a_new_connection() {
        let agent = agent();
        agent.send(task("r1")).await.unwrap().unwrap();
        agent.send(task("r2")).await.unwrap().unwrap();
        // Both written on connection A, no reply yet.
        for (poll, want) in [(1, "r1"), (2, "r2")] {
            let mut flight = poll_from(&agent, poll, "127.0.0.1:1000").await;
            assert_eq!(flight.payload(), Bytes::from(want));
            flight.start();
            flight.delivered();
            agent.do_send(PollClosed { poll_id: poll });
        }
        let info = agent.send(Info).await.unwrap();
        assert_eq!((info.queue_depth, info.awaiting_reply), (0, 2));
        // r2 is answered; then the node polls from connection B: r1 comes
        // again, r2 does not.
        agent.do_send(Cancel {
            request_id: "r2".into(),
            answered: true,
        });
        let mut flight = poll_from(&agent, 3, "127.0.0.1:2000").await;
        assert_eq!(flight.payload(), Bytes::from("r1"));
        let info = agent.send(Info).await.unwrap();
        assert_eq!((info.queue_depth, info.awaiting_reply), (0, 0));
        // Its reply comes while it is being written: it is not kept.
        agent.do_send(Cancel {
            request_id: "r1".into(),
            answered: true,
        });
        flight.start();
        flight.delivered();
        let info = agent.send(Info).await.unwrap();
        assert_eq!(
            (info.queue_depth, info.in_flight, info.awaiting_reply),
            (0, 0, 0)
        );
        // A further new connection has nothing to resend.
        let (tx, mut rx) = mpsc::channel(1);
        agent.do_send(OpenPoll {
            poll_id: 4,
            mode: PollMode::Unary,
            tx,
            remote: Some("127.0.0.1:3000".parse().unwrap()),
            epoch: 1,
        });
        let info = agent.send(Info).await.unwrap();
        assert_eq!(info.queue_depth, 0);
        assert!(rx.try_recv().is_err(), "nothing sent again");
    }
}
