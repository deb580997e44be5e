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
//! link, `ControllerConfig::queues.dedup_window`). Fed-BioMed (Python) nodes do not
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
//! The decisions themselves live in [`NodeTasks`], a plain struct driven
//! by these messages and the clock; this actor only carries messages to it,
//! sends the effects it returns, and keeps one timer armed at the time it
//! asks for ([`NodeTasks::poll_timeout`]), so traffic does not pile up
//! timers in the actor's context.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use actix::prelude::*;
use tokio::sync::mpsc;

use super::error::ResearcherError;
use super::events::ResearcherEvent;
use super::node_tasks::{Effect, NewPoll, NodeTasks, PollSink, Room};
use super::queue::QueuedTask;
use crate::wire::Payload;

pub(crate) use super::node_tasks::{
    AgentSettings, NodeInfo, Origin, PollMode, Task, LIFECYCLE_LINES,
};

/// The time on tokio's clock, so the timer and the deadlines it serves
/// agree (also under a paused test clock).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
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

/// A poll's channel, as [`NodeTasks`] sees it.
struct PollTx {
    tx: mpsc::Sender<PollItem>,
    agent: Addr<NodeAgent>,
}

impl PollSink for PollTx {
    fn room(&self) -> Room {
        if self.tx.is_closed() {
            Room::Closed
        } else if self.tx.capacity() == 0 {
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
        let flight = InFlight {
            task: Some(task),
            agent: self.agent.clone(),
            started: false,
            conn,
        };
        // Taking the task back out of a refused item keeps its guard from
        // reporting it as returned: the caller gets it back at once instead.
        match self.tx.try_send(PollItem::Task(flight)) {
            Ok(()) => Ok(()),
            Err(
                mpsc::error::TrySendError::Full(PollItem::Task(mut f))
                | mpsc::error::TrySendError::Closed(PollItem::Task(mut f)),
            ) => f.task.take().map_or(Ok(()), Err),
            Err(_) => Ok(()),
        }
    }

    fn end(&mut self) {
        let _ = self.tx.try_send(PollItem::End(tonic::Status::unavailable(
            "the researcher is shutting down",
        )));
    }
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
    /// The work epoch it is idle after.
    pub epoch: u64,
}

/// The researcher forgot this agent: stop.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Forget;

/// The task with this request id needs no delivery any more: its reply
/// arrived (`answered`), or its request gave up (see [`NodeTasks::cancel`]).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Cancel {
    /// The request id.
    pub request_id: String,
    /// The reply arrived (rather than the request giving up).
    pub answered: bool,
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

/// The actor holding one node's [`NodeTasks`].
pub(crate) struct NodeAgent {
    node_id: String,
    tasks: NodeTasks<PollTx>,
    failures: Recipient<Undeliverable>,
    idle: Recipient<AgentIdle>,
    events: Option<Recipient<ResearcherEvent>>,
    /// The armed timer and when it fires.
    timer: Option<(Instant, SpawnHandle)>,
}

impl std::fmt::Debug for NodeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAgent")
            .field("tasks", &self.tasks)
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
            tasks: NodeTasks::new(node_id.clone(), settings),
            node_id,
            failures,
            idle,
            events,
            timer: None,
        }
    }

    /// Carries out what the last event decided, and keeps the timer armed
    /// at the time the tasks ask for.
    fn settle(&mut self, ctx: &mut Context<Self>) {
        for effect in self.tasks.take_effects() {
            match effect {
                Effect::GiveUp {
                    request_id,
                    origin,
                    error,
                } => self.failures.do_send(Undeliverable {
                    node_id: self.node_id.clone(),
                    request_id,
                    origin,
                    error,
                }),
                // Status events are rare (bounded by polls coming and
                // going), so an unbounded send cannot grow without the
                // node's own traffic.
                Effect::Event(event) => {
                    if let Some(events) = &self.events {
                        events.do_send(event);
                    }
                }
                Effect::Idle { epoch } => self.idle.do_send(AgentIdle {
                    node_id: self.node_id.clone(),
                    epoch,
                }),
            }
        }
        let Some(at) = self.tasks.poll_timeout() else {
            return;
        };
        if let Some((armed, handle)) = self.timer {
            if armed <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = at.saturating_duration_since(now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.tasks.handle_timeout(now());
            act.settle(ctx);
        });
        self.timer = Some((at, handle));
    }

    fn disarm(&mut self, ctx: &mut Context<Self>) {
        if let Some((_, handle)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
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
        let sink = PollTx {
            tx: msg.tx,
            agent: ctx.address(),
        };
        self.tasks.open_poll(
            now(),
            SystemTime::now(),
            NewPoll {
                id: msg.poll_id,
                mode: msg.mode,
                sink,
                remote: msg.remote,
                epoch: msg.epoch,
            },
        );
        self.settle(ctx);
    }
}

impl Handler<PollClosed> for NodeAgent {
    type Result = ();

    fn handle(&mut self, msg: PollClosed, ctx: &mut Self::Context) {
        self.tasks.poll_closed(now(), msg.poll_id);
        self.settle(ctx);
    }
}

impl Handler<Credit> for NodeAgent {
    type Result = ();

    fn handle(&mut self, msg: Credit, ctx: &mut Self::Context) {
        self.tasks.credit(msg.poll_id, msg.n);
        self.settle(ctx);
    }
}

impl Handler<CreditEnded> for NodeAgent {
    type Result = ();

    fn handle(&mut self, msg: CreditEnded, _ctx: &mut Self::Context) {
        self.tasks.credit_ended(msg.poll_id);
    }
}

impl Handler<Delivered> for NodeAgent {
    type Result = ();

    fn handle(&mut self, msg: Delivered, ctx: &mut Self::Context) {
        self.tasks.delivered(now(), msg.task, msg.conn);
        self.settle(ctx);
    }
}

impl Handler<Returned> for NodeAgent {
    type Result = ();

    fn handle(&mut self, msg: Returned, ctx: &mut Self::Context) {
        self.tasks.returned(msg.task, msg.cut);
        self.settle(ctx);
    }
}

impl Handler<Enqueue> for NodeAgent {
    type Result = Result<(), ResearcherError>;

    fn handle(&mut self, msg: Enqueue, ctx: &mut Self::Context) -> Self::Result {
        let result = self
            .tasks
            .enqueue(now(), msg.task, msg.report_refusal, msg.epoch);
        self.settle(ctx);
        result
    }
}

impl Handler<Cancel> for NodeAgent {
    type Result = ();

    fn handle(&mut self, msg: Cancel, ctx: &mut Self::Context) {
        self.tasks.cancel(&msg.request_id, msg.answered);
        self.settle(ctx);
    }
}

impl Handler<Forget> for NodeAgent {
    type Result = ();

    fn handle(&mut self, _: Forget, ctx: &mut Self::Context) {
        self.tasks.forget();
        self.disarm(ctx);
        ctx.stop();
    }
}

impl Handler<Info> for NodeAgent {
    type Result = MessageResult<Info>;

    fn handle(&mut self, _: Info, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.tasks.info())
    }
}

impl Handler<Close> for NodeAgent {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Self::Context) {
        self.tasks.close();
        self.settle(ctx);
        self.disarm(ctx);
    }
}

#[cfg(test)]
mod tests {
    //! The shell: guards, channels and the timer. The rules themselves are
    //! tested on [`NodeTasks`] directly.
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::log_limit::PeerLog;
    use bytes::Bytes;

    /// Forwards failure reports to the test.
    struct Sink(mpsc::UnboundedSender<Undeliverable>);
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<Undeliverable> for Sink {
        type Result = ();
        fn handle(&mut self, msg: Undeliverable, _: &mut Self::Context) {
            let _ = self.0.send(msg);
        }
    }
    impl Handler<AgentIdle> for Sink {
        type Result = ();
        fn handle(&mut self, _: AgentIdle, _: &mut Self::Context) {}
    }

    const TTL: Duration = Duration::from_secs(300);

    fn agent() -> (Addr<NodeAgent>, mpsc::UnboundedReceiver<Undeliverable>) {
        let settings = AgentSettings {
            task_ttl: TTL,
            queue_capacity: 8,
            max_task_retries: 5,
            disconnection_timeout: Duration::from_secs(60),
            lifecycle: Arc::new(PeerLog::new(LIFECYCLE_LINES)),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Sink(tx).start();
        let agent = NodeAgent::new(
            "N".into(),
            settings,
            sink.clone().recipient(),
            sink.recipient(),
            None,
        )
        .start();
        (agent, rx)
    }

    fn task(id: &str) -> Enqueue {
        Enqueue {
            task: Task {
                payload: Payload::from(Bytes::from(id.to_owned())),
                request_id: Some(id.into()),
                origin: Origin::Request,
            },
            report_refusal: false,
            epoch: 1,
        }
    }

    #[actix_rt::test]
    async fn a_dropped_in_flight_task_comes_back_to_the_queue() {
        let (agent, _failures) = agent();
        let (tx, mut rx) = mpsc::channel(1);
        agent.do_send(OpenPoll {
            poll_id: 1,
            mode: PollMode::Unary,
            tx,
            remote: None,
            epoch: 1,
        });
        agent.send(task("r")).await.unwrap().unwrap();
        let Some(PollItem::Task(mut flight)) = rx.recv().await else {
            panic!("expected a task");
        };
        assert_eq!(flight.payload(), Bytes::from_static(b"r"));
        // The unary poll got its one task: the agent let go of the sender.
        assert!(rx.recv().await.is_none());
        flight.start();
        drop(flight);
        let info = agent.send(Info).await.unwrap();
        assert_eq!((info.queue_depth, info.in_flight), (1, 0));
    }

    #[actix_rt::test]
    async fn the_timer_gives_a_task_up_at_its_time_to_live() {
        tokio::time::pause();
        let start = tokio::time::Instant::now();
        let (agent, mut failures) = agent();
        agent.send(task("r")).await.unwrap().unwrap();
        // A second task, later, must not push the first one's deadline back.
        tokio::time::advance(Duration::from_secs(10)).await;
        agent.send(task("s")).await.unwrap().unwrap();
        // Bounded on the paused clock: without a timer this fails at once.
        let first = tokio::time::timeout(3 * TTL, failures.recv())
            .await
            .expect("a timer fired")
            .unwrap();
        assert_eq!(first.request_id.as_deref(), Some("r"));
        assert!(matches!(first.error, ResearcherError::Expired { .. }));
        assert_eq!(start.elapsed().as_secs(), TTL.as_secs());
        let second = tokio::time::timeout(3 * TTL, failures.recv())
            .await
            .expect("a timer fired")
            .unwrap();
        assert_eq!(second.request_id.as_deref(), Some("s"));
        assert_eq!(start.elapsed().as_secs(), TTL.as_secs() + 10);
    }
}
