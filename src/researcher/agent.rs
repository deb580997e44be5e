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
//! Delivery guarantee: a task counts as delivered once its last chunk has
//! been handed to HTTP/2. A connection cut after that point, with the bytes
//! still in buffers or on the wire, loses the task without the researcher
//! knowing (Fed-BioMed behaves the same). Closing that gap needs an
//! end-to-end acknowledgement and node-side deduplication by `request_id`;
//! the gRPC contract has no field for it.
//!
//! Timers are single per agent (one for task expiry, one for the
//! disconnection timeout), re-armed when they fire, so traffic does not
//! pile up timers in the actor's context.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::error::ResearcherError;
use super::events::ResearcherEvent;
use super::queue::{QueueRefusal, QueuedTask, TaskQueue};
use super::status::{later, NodeStatus, StatusChange, StatusTracker};

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
    pub payload: Bytes,
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
}

impl InFlight {
    /// The encoded message (a cheap clone of the shared buffer).
    pub(crate) fn payload(&self) -> Bytes {
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
        if self.task.take().is_some() {
            self.agent.do_send(Delivered);
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
struct Delivered;

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
}

/// Drop the queued task with this request id (its request gave up).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Cancel {
    /// The request id.
    pub request_id: String,
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
}

struct PollSlot {
    id: u64,
    mode: PollMode,
    tx: mpsc::Sender<PollItem>,
    credit: u32,
    credit_ended: bool,
}

/// The actor holding one node's queue and status.
pub struct NodeAgent {
    node_id: String,
    settings: AgentSettings,
    queue: TaskQueue<Task>,
    status: StatusTracker,
    polls: VecDeque<PollSlot>,
    /// Polls opened and not yet closed (a close is counted once, whoever
    /// reports it).
    open_polls: HashSet<u64>,
    failures: Recipient<Undeliverable>,
    events: Option<Recipient<ResearcherEvent>>,
    expiry_timer: Option<(Instant, SpawnHandle)>,
    status_timer: Option<SpawnHandle>,
    closed: bool,
}

impl NodeAgent {
    pub(crate) fn new(
        node_id: String,
        settings: AgentSettings,
        failures: Recipient<Undeliverable>,
        events: Option<Recipient<ResearcherEvent>>,
    ) -> NodeAgent {
        NodeAgent {
            queue: TaskQueue::new(settings.queue_capacity, settings.max_task_retries),
            status: StatusTracker::new(settings.disconnection_timeout),
            node_id,
            settings,
            polls: VecDeque::new(),
            open_polls: HashSet::new(),
            failures,
            events,
            expiry_timer: None,
            status_timer: None,
            closed: false,
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

    fn expire_due(&mut self, now: Instant) {
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
            if let Some(next) = act.queue.next_deadline() {
                act.arm_expiry(ctx, next);
            }
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
                log::info!("node {} is DISCONNECTED", act.node_id);
                act.emit(ResearcherEvent::NodeDisconnected {
                    node_id: act.node_id.clone(),
                });
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
                    permit.send(PollItem::Task(InFlight {
                        task: Some(task),
                        agent: ctx.address(),
                        started: false,
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
            log::info!("node {} connected", self.node_id);
            self.emit(ResearcherEvent::NodeConnected {
                node_id: self.node_id.clone(),
            });
        }
        self.polls.push_back(PollSlot {
            id: msg.poll_id,
            mode: msg.mode,
            tx: msg.tx,
            credit: 1,
            credit_ended: false,
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

    fn handle(&mut self, _: Delivered, ctx: &mut Self::Context) {
        self.queue.delivered();
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
        if self
            .queue
            .remove_where(|t| t.request_id.as_deref() == Some(id))
            .is_some()
        {
            log::debug!("node {}: request {id} cancelled while queued", self.node_id);
        }
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

    /// Swallows failure reports.
    struct Sink;
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<Undeliverable> for Sink {
        type Result = ();
        fn handle(&mut self, _: Undeliverable, _: &mut Self::Context) {}
    }

    fn agent() -> Addr<NodeAgent> {
        let settings = AgentSettings {
            task_ttl: Duration::from_secs(300),
            queue_capacity: 8,
            max_task_retries: 5,
            disconnection_timeout: Duration::from_secs(60),
        };
        NodeAgent::new("N".into(), settings, Sink.start().recipient(), None).start()
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
        });
        assert_eq!(status(&agent).await, NodeStatus::Active);
        agent.do_send(PollClosed { poll_id: 1 });
        agent.do_send(PollClosed { poll_id: 1 });
        assert_eq!(status(&agent).await, NodeStatus::Waiting);
        agent.do_send(OpenPoll {
            poll_id: 2,
            mode: PollMode::Unary,
            tx,
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
        });
        agent
            .send(Enqueue {
                task: Task {
                    payload: Bytes::from_static(b"task"),
                    request_id: Some("r".into()),
                    origin: Origin::Request,
                },
                report_refusal: false,
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
}
