//! [`NodeTasks`]: everything the researcher decides about one node's tasks,
//! as a plain struct driven by events and the clock (quinn-proto style: no
//! actor, no channel, no timer inside).
//!
//! It holds the node's [`TaskQueue`], its [`AwaitingReply`] set, its
//! [`StatusTracker`], the open polls with their credit, and the request ids
//! in flight. Each method takes the time it happens at; what the shell must
//! do (tell a sender its task is undeliverable, emit a status event, report
//! the agent idle) comes back from [`NodeTasks::take_effects`], and when to
//! call [`NodeTasks::handle_timeout`] next from [`NodeTasks::poll_timeout`].
//! Tasks reach a poll through its [`PollSink`], which the shell implements
//! over a channel (and the tests over a `Vec`).
//!
//! The delivery rules themselves (when a task is kept awaiting its reply,
//! requeued, or given up) are described in the agent's module
//! documentation (`super::agent`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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

/// How a poll takes tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PollMode {
    /// `GetTaskUnary`: one task, then the stream ends.
    Unary,
    /// `GetTask`: one task per credit, for as long as the stream lives.
    Streaming,
}

/// Whether a poll can take a task now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Room {
    /// It can.
    Free,
    /// Not now (its stream has not caught up): try later.
    Full,
    /// The poll is gone.
    Closed,
}

/// Where one poll's tasks go.
pub(crate) trait PollSink {
    /// Whether [`PollSink::offer`] would take a task now (checked first, so
    /// a full poll costs no task taken and put back).
    fn room(&self) -> Room;
    /// Hands `task` to a poll whose [`PollSink::room`] was `Free`, or gives
    /// it back untouched when the poll ended in between.
    fn offer(
        &mut self,
        task: QueuedTask<Task>,
        conn: Option<SocketAddr>,
    ) -> Result<(), QueuedTask<Task>>;
    /// Ends the poll: the researcher is shutting down.
    fn end(&mut self);
}

/// Something the shell must do after an event.
#[derive(Debug)]
pub(crate) enum Effect {
    /// A task will not be delivered: tell whoever sent it.
    GiveUp {
        /// The task's request id.
        request_id: Option<String>,
        /// Who is told.
        origin: Origin,
        /// Why.
        error: ResearcherError,
    },
    /// The node connected or disconnected.
    Event(ResearcherEvent),
    /// Nothing would be lost by forgetting this node now (reported once per
    /// work epoch).
    Idle {
        /// The work epoch it is idle after.
        epoch: u64,
    },
}

/// A node's limits.
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

/// What the researcher knows about a node.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NodeInfo {
    /// The node id.
    pub node_id: String,
    /// ACTIVE, WAITING or DISCONNECTED.
    pub status: NodeStatus,
    /// When the node last opened a poll.
    pub last_poll: Option<SystemTime>,
    /// Tasks waiting for a poll.
    pub queue_depth: usize,
    /// Tasks being written to a poll right now.
    pub in_flight: usize,
    /// Tasks written out whose reply has not come yet (sent again if the
    /// node's connection turns out to be gone).
    pub awaiting_reply: usize,
}

/// A poll the node opened.
#[derive(Debug)]
pub(crate) struct NewPoll<S> {
    /// Unique among polls.
    pub id: u64,
    /// Unary or streaming.
    pub mode: PollMode,
    /// Where its tasks go.
    pub sink: S,
    /// The node's remote address (its TCP connection), when known.
    pub remote: Option<SocketAddr>,
    /// The researcher's work epoch of this node.
    pub epoch: u64,
}

struct PollSlot<S> {
    id: u64,
    mode: PollMode,
    sink: S,
    credit: u32,
    credit_ended: bool,
    conn: Option<SocketAddr>,
}

/// One node's tasks, polls and status.
pub(crate) struct NodeTasks<S> {
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
    polls: VecDeque<PollSlot<S>>,
    /// Polls opened and not yet closed (a close is counted once, whoever
    /// reports it).
    open_polls: HashSet<u64>,
    closed: bool,
    /// The latest work epoch seen, and whether idleness was reported for it.
    epoch: u64,
    idle_reported: bool,
    /// The earliest time a deadline was set for since the last timeout
    /// (kept up to date cheaply; recomputed in full when it fires).
    wake: Option<Instant>,
    effects: Vec<Effect>,
}

impl<S> std::fmt::Debug for NodeTasks<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTasks")
            .field("node_id", &self.node_id)
            .field("status", &self.status.status())
            .field("queued", &self.queue.len())
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl<S: PollSink> NodeTasks<S> {
    /// A node never seen: DISCONNECTED, nothing queued.
    pub(crate) fn new(node_id: String, settings: AgentSettings) -> NodeTasks<S> {
        NodeTasks {
            queue: TaskQueue::new(settings.queue_capacity, settings.max_task_retries),
            awaiting: AwaitingReply::new(settings.queue_capacity),
            in_flight_ids: HashMap::new(),
            conn: None,
            status: StatusTracker::new(settings.disconnection_timeout),
            node_id,
            settings,
            polls: VecDeque::new(),
            open_polls: HashSet::new(),
            closed: false,
            epoch: 0,
            idle_reported: false,
            wake: None,
            effects: Vec::new(),
        }
    }

    /// What the shell must do since the last call, in order.
    pub(crate) fn take_effects(&mut self) -> std::vec::Drain<'_, Effect> {
        self.effects.drain(..)
    }

    /// When [`NodeTasks::handle_timeout`] should run next (it may run
    /// earlier or later without harm: a deadline is only acted on once due).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.wake
    }

    /// The node's status, depths and last poll.
    pub(crate) fn info(&self) -> NodeInfo {
        NodeInfo {
            node_id: self.node_id.clone(),
            status: self.status.status(),
            last_poll: self.status.last_poll(),
            queue_depth: self.queue.len(),
            in_flight: self.queue.in_flight(),
            awaiting_reply: self.awaiting.len(),
        }
    }

    /// Queues a task at `now` and hands it to a poll if one has room.
    /// `report_refusal`: a refusal is also an [`Effect::GiveUp`], for senders
    /// that do not wait for this call's result.
    pub(crate) fn enqueue(
        &mut self,
        now: Instant,
        task: Task,
        report_refusal: bool,
        epoch: u64,
    ) -> Result<(), ResearcherError> {
        self.saw_epoch(epoch);
        if self.closed {
            if report_refusal {
                self.give_up(task, ResearcherError::ShuttingDown);
            }
            return Err(ResearcherError::ShuttingDown);
        }
        let deadline = later(now, self.settings.task_ttl);
        match self.queue.push(task, deadline) {
            Ok(()) => {}
            Err(QueueRefusal::Full { task, capacity }) => {
                let full = |node_id: &str| ResearcherError::QueueFull {
                    node_id: node_id.to_owned(),
                    capacity,
                };
                if report_refusal {
                    self.give_up(task, full(&self.node_id));
                }
                return Err(full(&self.node_id));
            }
            Err(QueueRefusal::RetriesExhausted(_)) => return Err(ResearcherError::ShuttingDown),
        }
        self.pump();
        if !self.queue.is_empty() {
            if log::log_enabled!(log::Level::Debug) {
                log::debug!(
                    "node {} ({}): task queued, {} waiting",
                    self.node_id,
                    self.status.status(),
                    self.queue.len()
                );
            }
            self.wake_at(deadline);
        }
        Ok(())
    }

    /// The node opened a poll at `now` (`wall` for reports).
    pub(crate) fn open_poll(&mut self, now: Instant, wall: SystemTime, poll: NewPoll<S>) {
        let NewPoll {
            id: poll_id,
            mode,
            mut sink,
            remote,
            epoch,
        } = poll;
        self.saw_epoch(epoch);
        if self.closed {
            sink.end();
            return;
        }
        if !self.open_polls.insert(poll_id) {
            log::warn!("node {}: poll {poll_id} opened twice", self.node_id);
            return;
        }
        if self.status.poll_opened(now, wall) == Some(StatusChange::Connected) {
            if let Some(n) = self.settings.lifecycle.allow("nodes", "node connected") {
                log::info!("node {} connected{}", self.node_id, PeerLog::held_back(n));
            }
            self.effects
                .push(Effect::Event(ResearcherEvent::NodeConnected {
                    node_id: self.node_id.clone(),
                }));
        }
        if let Some(remote) = remote {
            if self.conn != Some(remote) {
                if let Some(old) = self.conn {
                    log::debug!(
                        "node {}: polls from {remote} now, no longer from {old}",
                        self.node_id
                    );
                }
                self.conn = Some(remote);
                let lost = self.awaiting.take_lost(&remote);
                self.requeue_lost(now, lost, "the node polls on a new connection");
            }
        }
        self.polls.push_back(PollSlot {
            id: poll_id,
            mode,
            sink,
            credit: 1,
            credit_ended: false,
            conn: remote,
        });
        if self.queue.front_deadline().is_some_and(|d| d <= now) {
            self.expire_due(now);
        }
        self.pump();
    }

    /// A poll ended at `now` (reports after the first are ignored).
    pub(crate) fn poll_closed(&mut self, now: Instant, poll_id: u64) {
        if let Some(i) = self.slot_index(poll_id) {
            self.polls.remove(i);
        }
        if !self.open_polls.remove(&poll_id) {
            return;
        }
        if let Some(at) = self.status.poll_closed(now) {
            self.wake_at(at);
        }
    }

    /// A streaming poll takes `n` more tasks.
    pub(crate) fn credit(&mut self, poll_id: u64, n: u32) {
        if let Some(i) = self.slot_index(poll_id) {
            let slot = &mut self.polls[i];
            slot.credit = slot.credit.saturating_add(n);
            self.pump();
        }
    }

    /// A streaming poll will give no more credit.
    pub(crate) fn credit_ended(&mut self, poll_id: u64) {
        if let Some(i) = self.slot_index(poll_id) {
            let slot = &mut self.polls[i];
            slot.credit_ended = true;
            if slot.credit == 0 {
                self.polls.remove(i);
            }
        }
    }

    /// An in-flight task was written out completely at `now`, on `conn`.
    pub(crate) fn delivered(
        &mut self,
        now: Instant,
        task: QueuedTask<Task>,
        conn: Option<SocketAddr>,
    ) {
        self.queue.delivered();
        let still_wanted = self.land(&task.task.request_id);
        if let (false, true, Some(id)) = (self.closed, still_wanted, task.task.request_id.clone()) {
            let expires =
                (task.task.origin == Origin::Send).then(|| later(now, self.settings.task_ttl));
            let entry = Awaiting {
                request_id: id,
                conn,
                expires,
                task,
            };
            match (entry.conn, self.conn) {
                // Written to a connection already replaced by another.
                (Some(was), Some(current)) if was != current => {
                    self.requeue_lost(now, vec![entry], "written after the node reconnected");
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
                        self.wake_at(at);
                    }
                }
            }
        }
        self.pump();
    }

    /// An in-flight task came back unwritten; `cut`: its writing had
    /// started (a cut delivery, which costs an attempt).
    pub(crate) fn returned(&mut self, task: QueuedTask<Task>, cut: bool) {
        if self.closed {
            self.queue.delivered();
            self.give_up(task.task, ResearcherError::ShuttingDown);
            return;
        }
        if !self.land(&task.task.request_id) {
            // Answered or given up while being written: nothing to resend.
            self.queue.delivered();
            self.pump();
            return;
        }
        let deadline = task.deadline;
        if cut {
            match self.queue.requeue(task) {
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
            self.queue.restore(task);
        }
        self.wake_at(deadline);
        self.pump();
    }

    /// The task with `request_id` needs no delivery any more: its reply
    /// came (`answered`) or its request gave up. It leaves the queue (when
    /// `answered`, only a copy queued again after a cut), the awaiting set,
    /// and is not kept if it is being written right now. Request ids are
    /// taken to be unique per node (the researcher refuses a second pending
    /// request with the same id).
    pub(crate) fn cancel(&mut self, request_id: &str, answered: bool) {
        let queued = self
            .queue
            .remove_all_where(|t| {
                t.task.request_id.as_deref() == Some(request_id) && (!answered || t.attempts > 0)
            })
            .len();
        let awaited = self.awaiting.answer(request_id).len();
        let flying = self.in_flight_ids.remove(request_id).is_some();
        if queued + awaited > 0 || flying {
            log::debug!(
                "node {}: request {request_id} {}: {queued} queued, {awaited} awaiting, in flight: {flying}",
                self.node_id,
                if answered { "answered" } else { "cancelled" }
            );
        }
        self.report_if_idle();
    }

    /// Acts on every deadline due at `now`: tasks past their time to live
    /// are given up, awaited replies past it are no longer kept, and a node
    /// without a poll for the disconnection timeout goes DISCONNECTED (its
    /// awaited tasks are queued again).
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.wake = None;
        if self.closed {
            return;
        }
        self.expire_due(now);
        if self.status.check(now) == Some(StatusChange::Disconnected) {
            if let Some(n) = self.settings.lifecycle.allow("nodes", "node disconnected") {
                log::info!(
                    "node {} is DISCONNECTED{}",
                    self.node_id,
                    PeerLog::held_back(n)
                );
            }
            self.effects
                .push(Effect::Event(ResearcherEvent::NodeDisconnected {
                    node_id: self.node_id.clone(),
                }));
            self.conn = None;
            let lost = self.awaiting.take_all();
            self.requeue_lost(now, lost, "the node is DISCONNECTED");
        }
        let next = [
            self.queue.next_deadline(),
            self.awaiting.next_expiry(),
            self.status.next_check(),
        ];
        for at in next.into_iter().flatten() {
            self.wake_at(at);
        }
        self.report_if_idle();
    }

    /// Shutdown: every queued task is given up, the polls end, and nothing
    /// is accepted any more.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.wake = None;
        for t in self.queue.drain() {
            self.give_up(t.task, ResearcherError::ShuttingDown);
        }
        // Written out: their requests are failed by the researcher itself.
        self.awaiting.take_all();
        self.in_flight_ids.clear();
        for mut slot in self.polls.drain(..) {
            slot.sink.end();
        }
    }

    /// The researcher forgot this node: refuse everything from now on.
    pub(crate) fn forget(&mut self) {
        log::debug!("node {}: forgotten", self.node_id);
        self.closed = true;
        self.wake = None;
    }

    fn wake_at(&mut self, at: Instant) {
        if self.wake.is_none_or(|w| at < w) {
            self.wake = Some(at);
        }
    }

    /// Takes note of work of `epoch` given by the researcher.
    fn saw_epoch(&mut self, epoch: u64) {
        if epoch > self.epoch {
            self.epoch = epoch;
            self.idle_reported = false;
        }
    }

    /// Reports once per epoch that nothing would be lost by forgetting this
    /// node.
    fn report_if_idle(&mut self) {
        let forgettable = !self.closed
            && self.status.status() == NodeStatus::Disconnected
            && self.open_polls.is_empty()
            && self.queue.is_empty()
            && self.queue.in_flight() == 0
            && self.awaiting.is_empty();
        if forgettable && !self.idle_reported {
            self.idle_reported = true;
            self.effects.push(Effect::Idle { epoch: self.epoch });
        }
    }

    fn give_up(&mut self, task: Task, error: ResearcherError) {
        log::warn!("node {}: {error}", self.node_id);
        self.effects.push(Effect::GiveUp {
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
    fn requeue_lost(&mut self, now: Instant, lost: Vec<Awaiting<Task, SocketAddr>>, why: &str) {
        if lost.is_empty() {
            return;
        }
        let count = lost.len();
        // A new stay in the queue: the time to live counts queueing time.
        let deadline = later(now, self.settings.task_ttl);
        for a in lost {
            let mut t = a.task;
            t.deadline = deadline;
            self.queue.put_back(t);
        }
        log::info!(
            "node {}: {count} task(s) written to a connection that is gone ({why}); queued again",
            self.node_id
        );
        self.wake_at(deadline);
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

    /// Moves queued tasks into polls with credit and room.
    fn pump(&mut self) {
        let mut i = 0;
        while i < self.polls.len() && !self.queue.is_empty() {
            if self.polls[i].credit == 0 {
                i += 1;
                continue;
            }
            match self.polls[i].sink.room() {
                Room::Free => {}
                Room::Full => {
                    i += 1;
                    continue;
                }
                Room::Closed => {
                    self.polls.remove(i);
                    continue;
                }
            }
            let Some(task) = self.queue.take() else {
                break;
            };
            if let Some(id) = &task.task.request_id {
                *self.in_flight_ids.entry(id.clone()).or_default() += 1;
            }
            let conn = self.polls[i].conn;
            // Refused although it had room: its stream ended just now.
            if let Err(task) = self.polls[i].sink.offer(task, conn) {
                self.land(&task.task.request_id);
                self.queue.restore(task);
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
                // Dropping the sink lets the stream end after its tasks.
                self.polls.remove(i);
            }
        }
    }

    fn slot_index(&self, poll_id: u64) -> Option<usize> {
        self.polls.iter().position(|s| s.id == poll_id)
    }
}

#[cfg(test)]
mod tests {
    //! The rules driven directly: a poll is a shared `Vec`, time is a
    //! number of seconds after `t0`.
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    const TTL: Duration = Duration::from_secs(300);
    const DISCONNECT: Duration = Duration::from_secs(60);

    /// A poll's channel: `room` tasks fit until the test takes them.
    #[derive(Default)]
    struct Channel {
        room: usize,
        closed: bool,
        ended: bool,
        got: VecDeque<(QueuedTask<Task>, Option<SocketAddr>)>,
    }

    #[derive(Clone, Default)]
    struct Sink(Rc<RefCell<Channel>>);

    impl PollSink for Sink {
        fn room(&self) -> Room {
            let c = self.0.borrow();
            if c.closed {
                Room::Closed
            } else if c.got.len() >= c.room {
                Room::Full
            } else {
                Room::Free
            }
        }

        fn offer(
            &mut self,
            task: QueuedTask<Task>,
            conn: Option<SocketAddr>,
        ) -> Result<(), QueuedTask<Task>> {
            let mut c = self.0.borrow_mut();
            if c.closed || c.got.len() >= c.room {
                return Err(task);
            }
            c.got.push_back((task, conn));
            Ok(())
        }

        fn end(&mut self) {
            self.0.borrow_mut().ended = true;
        }
    }

    impl Sink {
        fn with_room(room: usize) -> Sink {
            Sink(Rc::new(RefCell::new(Channel {
                room,
                ..Channel::default()
            })))
        }

        fn take(&self) -> Option<(QueuedTask<Task>, Option<SocketAddr>)> {
            self.0.borrow_mut().got.pop_front()
        }

        fn ids(&self) -> Vec<String> {
            let c = self.0.borrow();
            c.got
                .iter()
                .map(|(t, _)| t.task.request_id.clone().unwrap_or_default())
                .collect()
        }
    }

    struct Rig {
        t0: Instant,
        tasks: NodeTasks<Sink>,
        next_poll: u64,
    }

    impl Rig {
        fn new(capacity: usize) -> Rig {
            let settings = AgentSettings {
                task_ttl: TTL,
                queue_capacity: capacity,
                max_task_retries: 2,
                disconnection_timeout: DISCONNECT,
                lifecycle: Arc::new(PeerLog::new(LIFECYCLE_LINES)),
            };
            Rig {
                t0: Instant::now(),
                tasks: NodeTasks::new("N".into(), settings),
                next_poll: 0,
            }
        }

        fn at(&self, secs: u64) -> Instant {
            self.t0 + Duration::from_secs(secs)
        }

        fn enqueue(&mut self, secs: u64, id: &str, origin: Origin) -> Result<(), ResearcherError> {
            let task = Task {
                payload: Payload::from(id.to_owned().into_bytes()),
                request_id: Some(id.to_owned()),
                origin,
            };
            self.tasks.enqueue(self.at(secs), task, false, 1)
        }

        fn poll(&mut self, secs: u64, mode: PollMode, room: usize, remote: &str) -> (u64, Sink) {
            self.next_poll += 1;
            let sink = Sink::with_room(room);
            let remote = Some(remote.parse().unwrap());
            let now = self.at(secs);
            self.tasks.open_poll(
                now,
                SystemTime::now(),
                NewPoll {
                    id: self.next_poll,
                    mode,
                    sink: sink.clone(),
                    remote,
                    epoch: 1,
                },
            );
            (self.next_poll, sink)
        }

        fn effects(&mut self) -> Vec<Effect> {
            self.tasks.take_effects().collect()
        }

        fn depths(&self) -> (usize, usize, usize) {
            let i = self.tasks.info();
            (i.queue_depth, i.in_flight, i.awaiting_reply)
        }
    }

    const A: &str = "127.0.0.1:1000";
    const B: &str = "127.0.0.1:2000";

    fn given_up(effects: Vec<Effect>) -> Vec<(Option<String>, ResearcherError)> {
        effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::GiveUp {
                    request_id, error, ..
                } => Some((request_id, error)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_unary_poll_takes_one_task_and_a_cut_costs_an_attempt_until_retries_run_out() {
        let mut rig = Rig::new(8);
        rig.enqueue(0, "r1", Origin::Request).unwrap();
        rig.enqueue(0, "r2", Origin::Request).unwrap();
        for attempt in 1..=3 {
            let (_, sink) = rig.poll(1, PollMode::Unary, 4, A);
            // One task per unary poll, the oldest first.
            assert_eq!(sink.ids(), ["r1"]);
            let (task, _) = sink.take().unwrap();
            assert_eq!(task.attempts, attempt - 1);
            rig.tasks.returned(task, true);
        }
        // Cut three times with two retries allowed: given up, r2 next.
        let gone = given_up(rig.effects());
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0.as_deref(), Some("r1"));
        assert!(
            matches!(
                gone[0].1,
                ResearcherError::RetriesExhausted { attempts: 3, .. }
            ),
            "{}",
            gone[0].1
        );
        let (_, sink) = rig.poll(2, PollMode::Unary, 4, A);
        assert_eq!(sink.ids(), ["r2"]);
        // A task that comes back before its writing started costs nothing.
        let (task, _) = sink.take().unwrap();
        rig.tasks.returned(task, false);
        assert_eq!(rig.depths(), (1, 0, 0));
    }

    #[test]
    fn a_streaming_poll_takes_one_task_per_credit_and_only_while_its_channel_has_room() {
        let mut rig = Rig::new(8);
        for id in ["a", "b", "c", "d"] {
            rig.enqueue(0, id, Origin::Request).unwrap();
        }
        let (poll, sink) = rig.poll(0, PollMode::Streaming, 2, A);
        assert_eq!(sink.ids(), ["a"], "a new stream has one credit");
        rig.tasks.credit(poll, 5);
        assert_eq!(sink.ids(), ["a", "b"], "the channel holds two");
        assert_eq!(rig.depths(), (2, 2, 0));
        // The stream writes both; the next delivery report pumps again.
        let (a, conn) = sink.take().unwrap();
        sink.take().unwrap();
        rig.tasks.delivered(rig.at(1), a, conn);
        assert_eq!(sink.ids(), ["c", "d"]);
        assert_eq!(rig.depths(), (0, 3, 1));
    }

    #[test]
    fn a_closed_poll_gives_its_task_back_to_the_queue_head() {
        let mut rig = Rig::new(8);
        let (_, gone) = rig.poll(0, PollMode::Streaming, 4, A);
        gone.0.borrow_mut().closed = true;
        let (_, later_poll) = rig.poll(0, PollMode::Streaming, 0, A);
        rig.enqueue(0, "r", Origin::Request).unwrap();
        assert_eq!(rig.depths(), (1, 0, 0), "no poll could take it");
        later_poll.0.borrow_mut().room = 1;
        rig.tasks.credit(2, 1);
        assert_eq!(later_poll.ids(), ["r"]);
    }

    #[test]
    fn written_tasks_are_sent_again_in_order_when_the_node_polls_on_a_new_connection() {
        let mut rig = Rig::new(8);
        for id in ["r1", "r2", "r3"] {
            rig.enqueue(0, id, Origin::Request).unwrap();
        }
        for _ in 0..3 {
            let (poll, sink) = rig.poll(1, PollMode::Unary, 1, A);
            let (task, conn) = sink.take().unwrap();
            rig.tasks.delivered(rig.at(1), task, conn);
            rig.tasks.poll_closed(rig.at(1), poll);
        }
        assert_eq!(rig.depths(), (0, 0, 3));
        rig.tasks.cancel("r2", true);
        let (poll, sink) = rig.poll(2, PollMode::Unary, 1, B);
        assert_eq!(sink.ids(), ["r1"]);
        assert_eq!(rig.depths(), (1, 1, 0));
        // r1's reply comes while it is being written: it is not kept.
        rig.tasks.cancel("r1", true);
        let (task, conn) = sink.take().unwrap();
        rig.tasks.delivered(rig.at(2), task, conn);
        rig.tasks.poll_closed(rig.at(2), poll);
        assert_eq!(rig.depths(), (1, 0, 0));
        let (_, sink) = rig.poll(3, PollMode::Unary, 1, B);
        assert_eq!(sink.ids(), ["r3"]);
    }

    #[test]
    fn a_task_written_to_a_connection_already_replaced_is_queued_again() {
        let mut rig = Rig::new(8);
        rig.enqueue(0, "r", Origin::Request).unwrap();
        let (_, old) = rig.poll(0, PollMode::Streaming, 1, A);
        let (task, conn) = old.take().unwrap();
        let (_, new) = rig.poll(1, PollMode::Streaming, 0, B);
        rig.tasks.delivered(rig.at(1), task, conn);
        assert_eq!(rig.depths(), (1, 0, 0));
        assert!(new.ids().is_empty(), "the new stream has no room yet");
    }

    #[test]
    fn an_undelivered_task_expires_after_its_time_to_live() {
        let mut rig = Rig::new(8);
        rig.enqueue(10, "r", Origin::Send).unwrap();
        assert_eq!(rig.tasks.poll_timeout(), Some(rig.at(10) + TTL));
        rig.tasks
            .handle_timeout(rig.at(10) + TTL - Duration::from_millis(1));
        assert!(given_up(rig.effects()).is_empty(), "not yet due");
        assert_eq!(rig.tasks.poll_timeout(), Some(rig.at(10) + TTL));
        rig.tasks.handle_timeout(rig.at(10) + TTL);
        let gone = given_up(rig.effects());
        assert_eq!(gone.len(), 1);
        assert!(
            matches!(gone[0].1, ResearcherError::Expired { ttl: TTL, .. }),
            "{}",
            gone[0].1
        );
        assert_eq!(rig.depths(), (0, 0, 0));
        assert_eq!(rig.tasks.poll_timeout(), None);
    }

    #[test]
    fn a_sent_task_awaits_its_reply_for_the_time_to_live_only() {
        let mut rig = Rig::new(8);
        rig.enqueue(0, "s", Origin::Send).unwrap();
        let (_, sink) = rig.poll(5, PollMode::Streaming, 1, A);
        let (task, conn) = sink.take().unwrap();
        rig.tasks.delivered(rig.at(5), task, conn);
        assert_eq!(rig.depths(), (0, 0, 1));
        rig.tasks.handle_timeout(rig.at(5) + TTL);
        assert_eq!(rig.depths(), (0, 0, 0));
        assert!(given_up(rig.effects()).is_empty(), "it was delivered");
    }

    #[test]
    fn a_node_without_a_poll_goes_disconnected_and_its_awaited_tasks_are_queued_again() {
        let mut rig = Rig::new(8);
        rig.enqueue(0, "r", Origin::Request).unwrap();
        let (poll, sink) = rig.poll(0, PollMode::Unary, 1, A);
        assert!(matches!(
            rig.effects()[..],
            [Effect::Event(ResearcherEvent::NodeConnected { .. })]
        ));
        let (task, conn) = sink.take().unwrap();
        rig.tasks.delivered(rig.at(1), task, conn);
        rig.tasks.poll_closed(rig.at(2), poll);
        assert_eq!(rig.tasks.info().status, NodeStatus::Waiting);
        assert_eq!(rig.tasks.poll_timeout(), Some(rig.at(2) + DISCONNECT));
        rig.tasks.handle_timeout(rig.at(2) + DISCONNECT);
        assert_eq!(rig.tasks.info().status, NodeStatus::Disconnected);
        assert!(matches!(
            rig.effects()[..],
            [Effect::Event(ResearcherEvent::NodeDisconnected { .. })]
        ));
        assert_eq!(rig.depths(), (1, 0, 0));
        // The requeued task has a new time to live, and the next poll
        // (from any connection) gets it.
        assert_eq!(rig.tasks.poll_timeout(), Some(rig.at(2) + DISCONNECT + TTL));
        let (_, sink) = rig.poll(70, PollMode::Unary, 1, B);
        assert_eq!(sink.ids(), ["r"]);
    }

    #[test]
    fn an_idle_disconnected_node_is_reported_once_per_epoch() {
        let mut rig = Rig::new(8);
        let (poll, _) = rig.poll(0, PollMode::Unary, 1, A);
        rig.tasks.poll_closed(rig.at(0), poll);
        rig.effects();
        rig.tasks.handle_timeout(rig.at(0) + DISCONNECT);
        let idle = |e: &[Effect]| {
            e.iter()
                .filter(|e| matches!(e, Effect::Idle { .. }))
                .count()
        };
        assert_eq!(idle(&rig.effects()), 1);
        rig.tasks.cancel("nothing", false);
        assert_eq!(idle(&rig.effects()), 0, "once per epoch");
    }

    #[test]
    fn a_full_queue_refuses_and_in_flight_tasks_count() {
        let mut rig = Rig::new(2);
        rig.enqueue(0, "a", Origin::Request).unwrap();
        let (_, _sink) = rig.poll(0, PollMode::Unary, 1, A);
        rig.enqueue(0, "b", Origin::Request).unwrap();
        let err = rig.enqueue(0, "c", Origin::Request).unwrap_err();
        assert!(
            matches!(err, ResearcherError::QueueFull { capacity: 2, .. }),
            "{err}"
        );
        assert!(given_up(rig.effects()).is_empty(), "the caller was told");
        let task = Task {
            payload: Payload::from(b"d".to_vec()),
            request_id: Some("d".into()),
            origin: Origin::Send,
        };
        assert!(rig.tasks.enqueue(rig.at(0), task, true, 1).is_err());
        assert_eq!(given_up(rig.effects()).len(), 1, "reported as well");
    }

    #[test]
    fn close_gives_up_queued_tasks_ends_the_polls_and_refuses_new_ones() {
        let mut rig = Rig::new(8);
        let (_, sink) = rig.poll(0, PollMode::Streaming, 0, A);
        rig.enqueue(0, "q", Origin::Request).unwrap();
        rig.tasks.close();
        assert!(sink.0.borrow().ended);
        assert_eq!(given_up(rig.effects()).len(), 1);
        assert_eq!(rig.tasks.poll_timeout(), None);
        assert!(matches!(
            rig.enqueue(1, "late", Origin::Request),
            Err(ResearcherError::ShuttingDown)
        ));
        let (_, late) = rig.poll(1, PollMode::Unary, 1, A);
        assert!(
            late.0.borrow().ended,
            "a poll after shutdown is ended at once"
        );
    }

    #[test]
    fn a_poll_close_is_counted_once() {
        let mut rig = Rig::new(8);
        let (poll, _) = rig.poll(0, PollMode::Unary, 1, A);
        let (_, _) = rig.poll(0, PollMode::Unary, 1, A);
        rig.tasks.poll_closed(rig.at(1), poll);
        rig.tasks.poll_closed(rig.at(1), poll);
        rig.tasks.poll_closed(rig.at(1), 99);
        assert_eq!(rig.tasks.info().status, NodeStatus::Active);
    }
}
