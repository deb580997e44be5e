//! The listener: long-polls a researcher for tasks and hands them to the
//! node's handler.
//!
//! Two modes (see [`PollMode`]):
//! - **unary** (Fed-BioMed): `GetTaskUnary(TaskRequest)` returns a stream that
//!   carries the chunks of ONE task and then ends; the node polls again at once.
//!   The call has a long deadline (default 3600 s), sent to the researcher
//!   as `grpc-timeout`; the researcher ends the poll at that deadline and the
//!   node opens it again. The node cuts a poll itself only a grace period
//!   later ([`deadline_grace`]): a task the researcher handed out just before
//!   the deadline is still on its way then, and cutting the call at the
//!   deadline would lose it.
//! - **streaming** (fedroute researchers): one `GetTask` call stays open;
//!   every `TaskRequest` the node sends on it is credit for one task, so the
//!   researcher can push the next task without waiting for a new RPC; its
//!   deadline works as in unary mode. A researcher that answers
//!   UNIMPLEMENTED (Fed-BioMed) makes the link fall back to unary mode for
//!   that endpoint.
//!
//! The protocol checks are in the plain [`TaskAssembler`]: frame order and
//! count and the size limit (the wire reassembler), msgpack decoding, the
//! protocol version, and the researcher id, which must never change for an
//! endpoint (a change is a security error that stops the link). A bad task is
//! logged with its reason and dropped; the link keeps polling.
//!
//! A task whose `request_id` this link received lately (the last
//! `ControllerConfig::queues.dedup_window` ids, [`RecentIds`]) is dropped with a
//! debug line: a researcher resends the tasks written to a connection that
//! was cut, and some of them had arrived.
//!
//! Delivery to the handler does not wait for the handler to run: the task is
//! put in the handler's mailbox with `try_send`; only when that mailbox is
//! full does this link wait for room (back-pressure on this link only:
//! actix parks each sender on its own, so another link's next task still
//! gets in). A large task (1 MiB and more) waits until the handler has
//! handled it, so at most one per link is held outside the receive budget.
//!
//! What a researcher sends is bounded before it is kept: a task's partial
//! message takes its memory from the node's [`crate::wire::ReceiveBudget`]
//! (all links together); a poll that delivered part of a task and then
//! nothing for `stall_timeout` (no data at all, however slow) is given up;
//! large tasks are decoded off the event loop ([`MessageDecoder`]);
//! researcher and request ids are checked ([`crate::wire::check_id`]). When
//! the budget is spent, the poll waits for room (at most `stall_timeout`)
//! without reading on, so the researcher is held back by flow control. When
//! that wait runs out or a task stalls, the link reconnects: the researcher
//! sends the cut task again (a fedroute researcher also resends what it had
//! written to the old connection), counting a delivery attempt. Bad-task
//! warnings are rate-limited per link ([`PeerLog`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use actix::dev::SendError;
use actix::Recipient;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Code;

use super::dedup::RecentIds;
use super::endpoint::check_same_researcher;
use super::error::NodeError;
use super::handler::HandlerSlot;
use super::messages::{notify, LinkEvent, Replier, TaskReceived};
use super::progress::{LastData, LinkClient};
use super::shared::LinkShared;
use super::status::PollMode;
use crate::log_limit::PeerLog;
use crate::proto::{TaskRequest, TaskResponse};
use crate::wire::{
    check_id, echo, BufferPool, Envelope, Hold, IdKind, MessageDecoder, Reassembler, ReceiveBudget,
    WireError, PROTOCOL_VERSION,
};
use crate::ErrorChain;

/// Turns the frames of a poll into checked tasks.
#[derive(Debug)]
pub(crate) struct TaskAssembler {
    endpoint: String,
    reassembler: Reassembler,
    researcher_id: Option<String>,
    skipping: bool,
    /// The first frame of a new message that cut the previous message short;
    /// to be pushed again by the caller (see [`TaskAssembler::take_restart`]).
    restart: Option<TaskResponse>,
}

impl TaskAssembler {
    /// An assembler for `endpoint` accepting messages up to `max_message_bytes`,
    /// expecting `researcher_id` when it is already known.
    pub(super) fn new(
        endpoint: String,
        max_message_bytes: usize,
        researcher_id: Option<String>,
    ) -> TaskAssembler {
        TaskAssembler {
            endpoint,
            reassembler: Reassembler::new(max_message_bytes),
            researcher_id,
            skipping: false,
            restart: None,
        }
    }

    /// Receives large tasks into buffers of `pool` (see [`BufferPool`]).
    pub(super) fn with_pool(mut self, pool: BufferPool) -> TaskAssembler {
        self.reassembler = self.reassembler.with_pool(pool);
        self
    }

    /// Takes the memory of partly received tasks from `budget` (see
    /// [`ReceiveBudget`]).
    pub(super) fn with_budget(mut self, budget: ReceiveBudget) -> TaskAssembler {
        // The frame the gRPC layer is receiving counts too (one frame ahead).
        self.reassembler = self.reassembler.with_budget(budget).frame_ahead(true);
        self
    }

    /// The frame that started a new message while another one was still
    /// incomplete: the incomplete one was reported as a bad task by
    /// [`TaskAssembler::push`], and this frame must be pushed again.
    pub(super) fn take_restart(&mut self) -> Option<TaskResponse> {
        self.restart.take()
    }

    /// The researcher id expected from tasks (known from the certificate or
    /// learnt from the first task).
    pub(super) fn researcher_id(&self) -> Option<&str> {
        self.researcher_id.as_deref()
    }

    /// Whether a task has started and not finished.
    pub(super) fn in_progress(&self) -> bool {
        self.reassembler.in_progress()
    }

    /// The budget held by the task [`TaskAssembler::push`] just completed;
    /// drop it once the task is decoded and handed on.
    pub(super) fn take_hold(&mut self) -> Option<Hold> {
        self.reassembler.take_hold()
    }

    /// Adds one frame. `Ok(Some(payload))` when it completed a task (to
    /// decode, then [`TaskAssembler::check`]); `Ok(None)` while a task is
    /// incomplete (or frames of a dropped task are skipped). A bad frame is
    /// an error for which [`NodeError::is_bad_task`] holds (log and go on);
    /// a spent receive budget is [`NodeError::ReceiveBudget`] (reconnect).
    pub(super) fn push(&mut self, frame: TaskResponse) -> Result<Option<Bytes>, NodeError> {
        if self.skipping {
            // After a bad frame, wait for the first frame of a new message.
            if frame.iteration != 1 {
                return Ok(None);
            }
            self.skipping = false;
        }
        if frame.iteration == 1 && self.reassembler.in_progress() {
            // A new message starts before the previous one ended: that one
            // is a bad task, this frame begins the next one.
            let truncated = self.reassembler.finish().err();
            self.restart = Some(frame);
            if let Some(e) = truncated {
                return Err(self.bad(e));
            }
            return Ok(None);
        }
        match self
            .reassembler
            .push(frame.size, frame.iteration, frame.bytes)
        {
            Ok(payload) => Ok(payload),
            Err(e @ WireError::BudgetExhausted { .. }) => Err(NodeError::ReceiveBudget {
                endpoint: self.endpoint.clone(),
                source: Box::new(e),
            }),
            Err(e) => {
                self.skipping = true;
                Err(self.bad(e))
            }
        }
    }

    /// Forgets a partly received task (the stream ended in the middle);
    /// returns the bad-task error to log when one was in progress.
    pub(super) fn abandon(&mut self) -> Option<NodeError> {
        self.skipping = false;
        self.reassembler.finish().err().map(|e| self.bad(e))
    }

    /// Checks a decoded task: protocol version, request id, and the
    /// researcher id, which must never change for an endpoint (a change is
    /// fatal: [`NodeError::is_fatal`]).
    pub(super) fn check(
        &mut self,
        decoded: Result<Envelope, WireError>,
    ) -> Result<Envelope, NodeError> {
        let envelope = decoded.map_err(|e| self.bad(e))?;
        envelope.check_version().map_err(|e| self.bad(e))?;
        if let Some(id) = envelope.request_id() {
            check_id(IdKind::Request, id).map_err(|e| self.bad(e))?;
        }
        let Some(found) = envelope.researcher_id() else {
            return Err(NodeError::TaskWithoutResearcherId {
                endpoint: self.endpoint.clone(),
                class: echo(envelope.class()),
            });
        };
        check_id(IdKind::Researcher, found).map_err(|e| self.bad(e))?;
        check_same_researcher(&self.endpoint, self.researcher_id.as_deref(), found, "task")?;
        if self.researcher_id.is_none() {
            self.researcher_id = Some(found.to_string());
        }
        Ok(envelope)
    }

    fn bad(&self, e: WireError) -> NodeError {
        NodeError::BadTask {
            endpoint: self.endpoint.clone(),
            source: Box::new(e),
        }
    }
}

/// The longest the node waits past a poll's deadline for the researcher to
/// end the poll itself; see [`deadline_grace`].
pub(super) const POLL_DEADLINE_GRACE_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// The name of the poll RPC of `mode`, for errors.
fn rpc_of(mode: PollMode) -> &'static str {
    match mode {
        PollMode::Unary => "GetTaskUnary",
        PollMode::Streaming | PollMode::Auto => "GetTask",
    }
}

/// How long past `deadline` the node keeps reading a poll before cutting it:
/// half the deadline, at most [`POLL_DEADLINE_GRACE_MAX`]. The researcher is
/// told the deadline (`grpc-timeout`) and ends the poll then; a task it
/// handed out just before is still arriving, and cutting the call at the
/// deadline would drop it after the researcher counted it as delivered.
pub(super) fn deadline_grace(deadline: std::time::Duration) -> std::time::Duration {
    (deadline / 2).min(POLL_DEADLINE_GRACE_MAX)
}

/// A poll that ends sooner than this without a frame is suspicious.
pub(super) const QUICK_EMPTY_POLL: std::time::Duration = std::time::Duration::from_secs(1);
/// Suspicious polls in a row after which the link reconnects (with backoff)
/// instead of spinning.
pub(super) const MAX_QUICK_EMPTY_POLLS: u32 = 3;

/// Notices a researcher that ends polls at once without sending anything,
/// so the poll loop backs off instead of spinning.
#[derive(Debug, Default)]
pub(super) struct EmptyPollGuard {
    in_a_row: u32,
}

impl EmptyPollGuard {
    /// Records a finished poll that lasted `lasted` and carried `frames`
    /// frames; true when the loop should give up and reconnect.
    pub(super) fn after_poll(&mut self, lasted: std::time::Duration, frames: usize) -> bool {
        if frames > 0 || lasted >= QUICK_EMPTY_POLL {
            self.in_a_row = 0;
            return false;
        }
        self.in_a_row += 1;
        self.in_a_row >= MAX_QUICK_EMPTY_POLLS
    }
}

/// Why a poll loop ended.
#[derive(Debug)]
pub(super) enum PollEnd {
    /// The researcher does not implement streaming `GetTask`: use unary mode.
    Unimplemented,
    /// The connection or the call failed: reconnect.
    Lost(NodeError),
    /// Stop for good (a security error).
    Fatal(NodeError),
}

/// What a poll loop needs; moved into the loop's future.
pub(super) struct Poller {
    /// The gRPC client (a clone of the link's channel).
    pub client: LinkClient,
    /// `host:port`.
    pub endpoint: String,
    /// This node's id (`TaskRequest.node`).
    pub node_id: String,
    /// Link state shared with the actor (status counters).
    pub shared: Arc<LinkShared>,
    /// Where tasks go (replaceable by `SetHandler`).
    pub handler: Arc<HandlerSlot>,
    /// The handler last used, with its generation.
    pub handler_copy: (u64, Recipient<TaskReceived>),
    /// The controller, told when a researcher id is learnt from a task.
    pub events: actix::WeakRecipient<LinkEvent>,
    /// What each task carries for the handler to reply with.
    pub replier: Replier,
    /// Frame checks.
    pub assembler: TaskAssembler,
    /// Deadline of one poll call.
    pub poll_deadline: std::time::Duration,
    /// Tasks requested ahead in streaming mode.
    pub credits: u32,
    /// Spinning protection.
    pub guard: EmptyPollGuard,
    /// Request ids received lately on this link (duplicates are dropped).
    pub recent: Arc<Mutex<RecentIds>>,
    /// Decodes tasks (large ones off the event loop).
    pub decoder: MessageDecoder,
    /// Longest time without data while a task is in progress.
    pub stall_timeout: std::time::Duration,
    /// When data last arrived on the link's channel.
    pub last_data: LastData,
    /// The budget tasks in progress take from (to wait for room).
    pub budget: ReceiveBudget,
    /// Rate-limited warnings about this researcher.
    pub log: Arc<PeerLog>,
}

/// What the next wait for a frame may last.
#[derive(Clone, Copy)]
enum Wait {
    /// Until the poll's deadline (plus grace).
    Deadline(Instant),
    /// Until a task in progress counts as stalled.
    Stall(Instant),
}

impl Poller {
    /// How long to wait for the next frame: until the poll's end `until`,
    /// or, while a task is in progress, until its data has stopped coming
    /// for the stall timeout.
    fn next_wait(&self, until: Instant) -> Wait {
        if self.assembler.in_progress() {
            let stall = self.last_data.at() + self.stall_timeout;
            if stall < until {
                return Wait::Stall(stall);
            }
        }
        Wait::Deadline(until)
    }

    /// True when a wait for the next frame ran out but data still came
    /// meanwhile (a slow task, not a stalled one).
    fn still_coming(&self) -> bool {
        self.last_data.at() + self.stall_timeout > Instant::now()
    }

    /// The next frame of an open poll of `mode`: `Ok(None)` when the poll
    /// is over (its stream ended, or its deadline passed: the researcher did
    /// not end it, a new one opens); `Err` ends the loop (a task whose data
    /// stopped coming for the stall timeout, a failed stream).
    async fn next_frame(
        &mut self,
        stream: &mut tonic::Streaming<TaskResponse>,
        until: Instant,
        mode: PollMode,
    ) -> Result<Option<TaskResponse>, PollEnd> {
        loop {
            let wait = self.next_wait(until);
            let (Wait::Deadline(at) | Wait::Stall(at)) = wait;
            return match tokio::time::timeout_at(at, stream.message()).await {
                Err(_) if matches!(wait, Wait::Stall(_)) => {
                    if self.still_coming() {
                        continue;
                    }
                    Err(self.stalled())
                }
                Err(_) => Ok(None),
                Ok(Ok(frame)) => Ok(frame),
                Ok(Err(status)) if status.code() == Code::DeadlineExceeded => Ok(None),
                Ok(Err(status))
                    if status.code() == Code::Unimplemented && mode == PollMode::Streaming =>
                {
                    Err(PollEnd::Unimplemented)
                }
                Ok(Err(status)) => Err(self.lost(rpc_of(mode), status)),
            };
        }
    }

    fn stalled(&mut self) -> PollEnd {
        let _ = self.assembler.abandon();
        let e = NodeError::Stalled {
            endpoint: self.endpoint.clone(),
            after: self.stall_timeout,
        };
        PollEnd::Lost(e)
    }

    fn bad_task(&self, e: NodeError) {
        self.log
            .warn(&self.endpoint, "bad task", || ErrorChain(&e).to_string());
        self.shared.status().bad_tasks += 1;
    }

    fn request(&self) -> TaskRequest {
        TaskRequest {
            node: self.node_id.clone(),
            protocol_version: PROTOCOL_VERSION.to_string(),
        }
    }

    /// The poll failed with `status`: reconnect, or stop for good when the
    /// researcher refuses the node's identity (UNAUTHENTICATED).
    fn lost(&self, rpc: &'static str, status: tonic::Status) -> PollEnd {
        let e = NodeError::rpc(&self.endpoint, rpc, status);
        if e.is_fatal() {
            PollEnd::Fatal(e)
        } else {
            PollEnd::Lost(e)
        }
    }

    /// Ends the loop when polls keep ending at once without frames. A poll
    /// that reached (about) its deadline is normal, however short the
    /// configured deadline.
    fn check_empty(&mut self, opened: Instant, frames: usize) -> Result<(), PollEnd> {
        let lasted = opened.elapsed();
        let lasted = if lasted >= self.poll_deadline.mul_f32(0.9) {
            QUICK_EMPTY_POLL
        } else {
            lasted
        };
        if self.guard.after_poll(lasted, frames) {
            return Err(PollEnd::Lost(NodeError::EmptyPolls {
                endpoint: self.endpoint.clone(),
                count: MAX_QUICK_EMPTY_POLLS,
            }));
        }
        Ok(())
    }

    fn poll_opened(&self, mode: PollMode) {
        self.shared.polled.store(true, Ordering::Relaxed);
        {
            let mut status = self.shared.status();
            status.record_poll_open();
            status.poll_mode = mode;
        }
        self.shared.poll_news.notify_waiters();
    }

    /// Handles one frame; answers how many tasks it ended (good or bad:
    /// each gives back one streaming credit); `Err` ends the loop.
    async fn on_frame(&mut self, frame: TaskResponse) -> Result<usize, PollEnd> {
        let mut ended = 0;
        let mut next = Some(frame);
        while let Some(frame) = next.take() {
            if self.on_one_frame(frame).await? {
                ended += 1;
            }
            next = self.assembler.take_restart();
        }
        Ok(ended)
    }

    /// Handles one frame; true when it ended a task; `Err` ends the loop.
    async fn on_one_frame(&mut self, frame: TaskResponse) -> Result<bool, PollEnd> {
        let had_id = self.assembler.researcher_id().is_some();
        let payload = match self.push_waiting(frame).await {
            Ok(None) => return Ok(false),
            Ok(Some(payload)) => payload,
            Err(e) if e.is_bad_task() => {
                self.bad_task(e);
                return Ok(true);
            }
            Err(e @ NodeError::ReceiveBudget { .. }) => return Err(PollEnd::Lost(e)),
            Err(e) => return Err(PollEnd::Fatal(e)),
        };
        // The task's bytes stay counted until it is in the handler's hands.
        let hold = self.assembler.take_hold();
        let len = payload.len();
        let (decoded, hold) = self.decoder.decode_holding(payload, hold).await;
        let envelope = match self.assembler.check(decoded) {
            Ok(envelope) => envelope,
            Err(e) if e.is_bad_task() => {
                self.bad_task(e);
                return Ok(true);
            }
            Err(e) => return Err(PollEnd::Fatal(e)),
        };
        if !had_id {
            if let Some(id) = self.assembler.researcher_id() {
                log::info!(
                    "{}: researcher id {id} learnt from the first task",
                    self.endpoint
                );
                self.shared.status().researcher_id = Some(id.to_string());
                let event = LinkEvent::Identified {
                    endpoint: self.endpoint.clone(),
                    researcher_id: id.to_string(),
                };
                notify(&self.events, event);
            }
        }
        self.shared.status().record_received(len);
        if let Some(id) = envelope.request_id() {
            let fresh = self
                .recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id);
            if !fresh {
                log::debug!(
                    "{}: task {} ({}) received again; dropped as a duplicate",
                    self.endpoint,
                    id,
                    envelope.class()
                );
                return Ok(true);
            }
        }
        self.deliver(envelope, len).await?;
        drop(hold);
        Ok(true)
    }

    /// Pushes `frame`; when the receive budget has no room for it, waits
    /// for room (at most the stall timeout: the poll does not read on
    /// meanwhile, so HTTP/2 flow control holds the researcher back) and
    /// pushes it again.
    async fn push_waiting(&mut self, frame: TaskResponse) -> Result<Option<Bytes>, NodeError> {
        let waited_until = Instant::now() + self.stall_timeout;
        loop {
            match self.assembler.push(frame.clone()) {
                Err(NodeError::ReceiveBudget { endpoint, source }) => {
                    let WireError::BudgetExhausted { requested, .. } = *source else {
                        return Err(NodeError::ReceiveBudget { endpoint, source });
                    };
                    let Some(place) = self.budget.wait_place() else {
                        return Err(NodeError::ReceiveBudget { endpoint, source });
                    };
                    let room = place.room_for(requested);
                    if tokio::time::timeout_at(waited_until, room).await.is_err() {
                        return Err(NodeError::ReceiveBudget { endpoint, source });
                    }
                }
                other => return other,
            }
        }
    }

    /// The handler, once its mailbox is open: while it is closed (the
    /// handler stopped or panicked) this waits for `SetHandler`, saying so in
    /// the status and once in the log, so that no task is polled for, or
    /// handed, to a closed mailbox. The copy kept costs one atomic load per
    /// task while the handler lives and is not replaced; the handler to use
    /// is then `self.handler_copy.1`.
    async fn open_handler(&mut self) {
        let (generation, handler) = &self.handler_copy;
        if *generation == self.handler.generation() && handler.connected() {
            return;
        }
        self.handler_copy = match self.handler.open() {
            Some(open) => open,
            None => {
                log::warn!(
                    "{}: the task handler is gone; tasks are held back until SetHandler gives a new one",
                    self.endpoint
                );
                self.shared.status().waiting_for_handler = true;
                let open = self.handler.wait_open().await;
                self.shared.status().waiting_for_handler = false;
                log::info!("{}: a new task handler; delivering again", self.endpoint);
                open
            }
        };
    }

    /// Hands the task to the handler. A small task goes straight into the
    /// handler's mailbox; when that is full, this link waits for room (its
    /// next tasks wait behind, the other links' do not). A large one waits
    /// until the handler has handled it, so that at most one large task per
    /// link is held outside the receive budget. A closed mailbox gives the
    /// task back, and it waits here for a new handler.
    async fn deliver(&mut self, message: Envelope, len: usize) -> Result<(), PollEnd> {
        let researcher_id = self
            .assembler
            .researcher_id()
            .unwrap_or_default()
            .to_string();
        let mut task = TaskReceived {
            researcher_id,
            message,
            reply: self.replier.clone(),
        };
        loop {
            self.open_handler().await;
            let handler = &self.handler_copy.1;
            if len < crate::wire::OFF_LOOP_MIN_BYTES {
                match handler.try_send(task) {
                    Ok(()) => return Ok(()),
                    Err(SendError::Closed(back)) => {
                        task = back;
                        continue;
                    }
                    Err(SendError::Full(full)) => task = full,
                }
            }
            // A large task, or a full mailbox: wait until it is handled.
            let request_id = task.message.request_id().map(crate::wire::echo);
            if handler.send(task).await.is_err() {
                log::error!(
                    "{}: the task handler stopped before handling task {}; it is lost with the \
                     handler's mailbox",
                    self.endpoint,
                    request_id.as_deref().unwrap_or("(no request id)")
                );
            }
            return Ok(());
        }
    }

    /// Opens one poll of `mode`: Fed-BioMed's long poll (one task per
    /// `GetTaskUnary` call) or fedroute's streaming poll (one `GetTask` call,
    /// one credit per task, `credits` asked ahead). `Ok(None)` when the
    /// researcher ended it at once with DEADLINE_EXCEEDED (poll again).
    async fn open_poll(&mut self, mode: PollMode) -> Result<Option<OpenPoll>, PollEnd> {
        let opened = if mode == PollMode::Unary {
            let mut request = tonic::Request::new(self.request());
            request.set_timeout(self.poll_deadline);
            self.client.get_task_unary(request).await.map(|r| OpenPoll {
                stream: r.into_inner(),
                credits: None,
            })
        } else {
            let credits = self.credits.max(1) as usize;
            let (tx, rx) = mpsc::channel::<TaskRequest>(credits + 1);
            for _ in 0..credits {
                // Cannot fail: the channel has room for every initial credit.
                let _ = tx.try_send(self.request());
            }
            let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            request.set_timeout(self.poll_deadline);
            self.client.get_task(request).await.map(|r| OpenPoll {
                stream: r.into_inner(),
                credits: Some(tx),
            })
        };
        match opened {
            Ok(poll) => {
                self.poll_opened(mode);
                Ok(Some(poll))
            }
            Err(status) if status.code() == Code::Unimplemented && mode == PollMode::Streaming => {
                Err(PollEnd::Unimplemented)
            }
            Err(status) if status.code() == Code::DeadlineExceeded => Ok(None),
            Err(status) => Err(self.lost(rpc_of(mode), status)),
        }
    }

    /// The mode's "ask for more" after a frame that ended `ended` tasks: in
    /// streaming mode each gives its credit back (the channel holds at most
    /// `credits` + 1, so this never waits long); a unary poll asks for
    /// nothing (its stream ends after one task). False when the call is over.
    async fn ask_for_more(
        &self,
        credits: Option<&mpsc::Sender<TaskRequest>>,
        ended: usize,
    ) -> bool {
        let Some(credits) = credits else {
            return true;
        };
        for _ in 0..ended {
            if credits.send(self.request()).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Polls forever in `mode` (Unary or Streaming), until the connection is
    /// lost or a fatal error.
    async fn poll_loop(mut self, mode: PollMode) -> PollEnd {
        loop {
            self.open_handler().await;
            let opened = Instant::now();
            let until = opened + self.poll_deadline + deadline_grace(self.poll_deadline);
            let mut frames = 0usize;
            let poll = match self.open_poll(mode).await {
                Ok(Some(poll)) => poll,
                Ok(None) => {
                    if let Err(end) = self.check_empty(opened, 0) {
                        return end;
                    }
                    continue;
                }
                Err(end) => return end,
            };
            let OpenPoll {
                mut stream,
                credits,
            } = poll;
            loop {
                let frame = match self.next_frame(&mut stream, until, mode).await {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(end) => return end,
                };
                frames += 1;
                let ended = match self.on_frame(frame).await {
                    Ok(ended) => ended,
                    Err(end) => return end,
                };
                if !self.ask_for_more(credits.as_ref(), ended).await {
                    break;
                }
            }
            if let Some(e) = self.assembler.abandon() {
                self.bad_task(e);
            }
            if let Err(end) = self.check_empty(opened, frames) {
                return end;
            }
        }
    }

    /// Runs the poll loop of `mode` (`Auto` tries streaming first; the link
    /// falls back to unary on UNIMPLEMENTED).
    pub(super) async fn run(self, mode: PollMode) -> PollEnd {
        let mode = if mode == PollMode::Unary {
            PollMode::Unary
        } else {
            PollMode::Streaming
        };
        self.poll_loop(mode).await
    }
}

/// An open poll: the frames it brings, and in streaming mode the channel its
/// credits go on.
struct OpenPoll {
    stream: tonic::Streaming<TaskResponse>,
    credits: Option<mpsc::Sender<TaskRequest>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Value;
    use std::time::Duration;

    #[test]
    fn the_grace_past_a_poll_deadline_is_half_of_it_at_most_five_seconds() {
        assert_eq!(
            deadline_grace(Duration::from_millis(100)),
            Duration::from_millis(50)
        );
        assert_eq!(
            deadline_grace(Duration::from_secs(3600)),
            POLL_DEADLINE_GRACE_MAX
        );
        assert_eq!(POLL_DEADLINE_GRACE_MAX, Duration::from_secs(5));
    }

    fn task(researcher_id: &str, version: &str, pad: usize) -> Bytes {
        let v = Value::map([
            ("protocol_version", Value::Str(version.into())),
            ("researcher_id", Value::Str(researcher_id.into())),
            ("request_id", Value::Str("r1".into())),
            ("pad", Value::Bin(Bytes::from(vec![0u8; pad]))),
            (
                "__type_message__",
                Value::map([
                    ("module", Value::Str("fedbiomed.common.message".into())),
                    ("class", Value::Str("PingRequest".into())),
                ]),
            ),
        ]);
        Envelope::from_value(v).unwrap().to_bytes()
    }

    fn frame(size: i32, iteration: i32, bytes: Bytes) -> TaskResponse {
        TaskResponse {
            size,
            iteration,
            bytes,
        }
    }

    fn assembler(known: Option<&str>) -> TaskAssembler {
        TaskAssembler::new("h:1".into(), 1 << 30, known.map(str::to_string))
    }

    /// What the poll loop does with a frame: push it, and decode and check
    /// a completed task.
    fn feed(
        a: &mut TaskAssembler,
        f: TaskResponse,
    ) -> Result<Option<(Envelope, usize)>, NodeError> {
        let Some(payload) = a.push(f)? else {
            return Ok(None);
        };
        let len = payload.len();
        a.check(Envelope::decode(payload)).map(|e| Some((e, len)))
    }

    #[test]
    fn a_good_task_passes_and_teaches_the_id() {
        let mut a = assembler(None);
        let (env, len) = feed(&mut a, frame(1, 1, task("R1", "7", 0)))
            .unwrap()
            .unwrap();
        assert_eq!(env.class(), "PingRequest");
        assert!(len > 0);
        assert_eq!(a.researcher_id(), Some("R1"));
    }

    #[test]
    fn a_multi_frame_task_is_reassembled() {
        let mut a = assembler(Some("R1"));
        let payload = task("R1", "7", crate::wire::CHUNK_SIZE + 100);
        let mut out = None;
        for f in crate::wire::Frame::split(payload.clone()) {
            out = feed(&mut a, frame(f.size, f.iteration, f.bytes)).unwrap();
        }
        let (env, len) = out.unwrap();
        assert_eq!(len, payload.len());
        assert_eq!(env.request_id(), Some("r1"));
    }

    #[test]
    fn a_first_frame_cutting_a_task_short_starts_the_next_one() {
        let mut a = assembler(Some("R1"));
        let small = Bytes::from_static(b"\x80");
        assert!(feed(&mut a, frame(3, 1, small.clone())).unwrap().is_none());
        assert!(feed(&mut a, frame(3, 2, small)).unwrap().is_none());
        // The next task's single frame: the cut one is a bad task...
        let e = feed(&mut a, frame(1, 1, task("R1", "7", 0))).unwrap_err();
        assert!(e.is_bad_task(), "{e}");
        // ...and the frame is handed back to start the next one.
        let again = a.take_restart().expect("the frame to push again");
        let (env, _) = feed(&mut a, again).unwrap().unwrap();
        assert_eq!(env.request_id(), Some("r1"));
        assert!(a.take_restart().is_none());
    }

    #[test]
    fn bad_tasks_are_errors_that_keep_the_link() {
        let mut a = assembler(Some("R1"));
        let e = feed(&mut a, frame(1, 1, Bytes::from_static(b"\xc1"))).unwrap_err();
        assert!(e.is_bad_task() && !e.is_fatal(), "{e}");
        let e = feed(&mut a, frame(1, 1, task("R1", "8", 0))).unwrap_err();
        assert!(e.is_bad_task(), "{e}");
        // Out of order frame, then the frames of that message are skipped.
        let e = feed(&mut a, frame(3, 2, Bytes::from_static(b"x"))).unwrap_err();
        assert!(e.is_bad_task(), "{e}");
        assert!(a
            .push(frame(3, 3, Bytes::from_static(b"x")))
            .unwrap()
            .is_none());
        // The next message is fine.
        assert!(feed(&mut a, frame(1, 1, task("R1", "7", 0)))
            .unwrap()
            .is_some());
    }

    #[test]
    fn researcher_and_request_ids_outside_the_rules_make_bad_tasks() {
        let mut a = assembler(None);
        let huge = "R".repeat(1 << 20);
        let e = feed(&mut a, frame(1, 1, task(&huge, "7", 0))).unwrap_err();
        assert!(e.is_bad_task() && !e.is_fatal(), "{e}");
        // What is logged (the error and its causes) stays short.
        let logged = ErrorChain(&e).to_string();
        assert!(logged.len() < 300, "{}", logged.len());
        assert!(logged.contains("researcher id"), "{logged}");
        // Not learnt from a bad task.
        assert_eq!(a.researcher_id(), None);
        let mut t = Envelope::decode(task("R1", "7", 0)).unwrap();
        t.set("request_id", Value::Str("a b".into()));
        let e = feed(&mut a, frame(1, 1, t.to_bytes())).unwrap_err();
        assert!(e.is_bad_task(), "{e}");
    }

    #[test]
    fn another_researcher_id_is_fatal() {
        let mut a = assembler(Some("R1"));
        let e = feed(&mut a, frame(1, 1, task("R2", "7", 0))).unwrap_err();
        assert!(e.is_fatal(), "{e}");
        assert!(e.to_string().contains("R2"), "{e}");
    }

    #[test]
    fn a_stream_cut_mid_task_is_reported_once() {
        let mut a = assembler(Some("R1"));
        assert!(a.abandon().is_none());
        assert!(a
            .push(frame(2, 1, Bytes::from_static(b"x")))
            .unwrap()
            .is_none());
        assert!(a.abandon().unwrap().is_bad_task());
        assert!(a.abandon().is_none());
    }

    #[test]
    fn quick_empty_polls_stop_the_spin() {
        let mut g = EmptyPollGuard::default();
        let quick = Duration::from_millis(1);
        assert!(!g.after_poll(quick, 0));
        assert!(!g.after_poll(quick, 0));
        assert!(g.after_poll(quick, 0));
        let mut g = EmptyPollGuard::default();
        assert!(!g.after_poll(quick, 0));
        assert!(!g.after_poll(quick, 1));
        assert!(!g.after_poll(QUICK_EMPTY_POLL, 0));
        assert!(!g.after_poll(quick, 0));
        assert!(!g.after_poll(quick, 0));
    }
}
