//! The listener: long-polls a researcher for tasks and hands them to the
//! node's handler.
//!
//! Two modes (see [`PollMode`]):
//! - **unary** (Fed-BioMed): `GetTaskUnary(TaskRequest)` returns a stream that
//!   carries the chunks of ONE task and then ends; the node polls again at once.
//!   The call has a long deadline (default 3600 s) after which it is simply
//!   opened again.
//! - **streaming** (fedroute researchers): one `GetTask` call stays open;
//!   every `TaskRequest` the node sends on it is credit for one task, so the
//!   researcher can push the next task without waiting for a new RPC. A
//!   researcher that answers UNIMPLEMENTED (Fed-BioMed) makes the link fall
//!   back to unary mode for that endpoint.
//!
//! The protocol checks are in the plain [`TaskAssembler`]: frame order and
//! count and the size limit (the wire reassembler), msgpack decoding, the
//! protocol version, and the researcher id, which must never change for an
//! endpoint (a change is a security error that stops the link). A bad task is
//! logged with its reason and dropped; the link keeps polling.
//!
//! Delivery to the handler does not wait for the handler to run: the task is
//! put in the handler's mailbox with `try_send`; only when that mailbox is full
//! does this link wait for room (back-pressure on this link only; other links
//! and all sending go on).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::dev::SendError;
use actix::Recipient;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::Code;

use super::controller::{LinkEvent, TaskReceived};
use super::error::NodeError;
use super::link::LinkShared;
use super::status::PollMode;
use crate::proto::researcher_service_client::ResearcherServiceClient;
use crate::proto::{TaskRequest, TaskResponse};
use crate::wire::{Envelope, Reassembler, PROTOCOL_VERSION};

/// Turns the frames of a poll into checked tasks.
#[derive(Debug)]
pub struct TaskAssembler {
    endpoint: String,
    reassembler: Reassembler,
    researcher_id: Option<String>,
    skipping: bool,
}

impl TaskAssembler {
    /// An assembler for `endpoint` accepting messages up to `max_message_bytes`,
    /// expecting `researcher_id` when it is already known.
    pub fn new(
        endpoint: String,
        max_message_bytes: usize,
        researcher_id: Option<String>,
    ) -> TaskAssembler {
        TaskAssembler {
            endpoint,
            reassembler: Reassembler::new(max_message_bytes),
            researcher_id,
            skipping: false,
        }
    }

    /// The researcher id expected from tasks (known from the certificate or
    /// learnt from the first task).
    pub fn researcher_id(&self) -> Option<&str> {
        self.researcher_id.as_deref()
    }

    /// Adds one frame. `Ok(Some((envelope, bytes)))` when it completed a valid
    /// task; `Ok(None)` while a task is incomplete (or frames of a dropped task
    /// are skipped). A bad task is an error for which
    /// [`NodeError::is_bad_task`] holds (log and go on); a researcher id change
    /// is fatal ([`NodeError::is_fatal`]).
    pub fn push(&mut self, frame: TaskResponse) -> Result<Option<(Envelope, usize)>, NodeError> {
        if self.skipping {
            // After a bad frame, wait for the first frame of a new message.
            if frame.iteration != 1 {
                return Ok(None);
            }
            self.skipping = false;
        }
        let payload = match self
            .reassembler
            .push(frame.size, frame.iteration, frame.bytes)
        {
            Ok(None) => return Ok(None),
            Ok(Some(payload)) => payload,
            Err(e) => {
                self.skipping = true;
                return Err(self.bad(e));
            }
        };
        self.decode(payload).map(Some)
    }

    /// Forgets a partly received task (the stream ended in the middle);
    /// returns the bad-task error to log when one was in progress.
    pub fn abandon(&mut self) -> Option<NodeError> {
        self.skipping = false;
        self.reassembler.finish().err().map(|e| self.bad(e))
    }

    fn decode(&mut self, payload: Bytes) -> Result<(Envelope, usize), NodeError> {
        let len = payload.len();
        let envelope = Envelope::decode(payload).map_err(|e| self.bad(e))?;
        envelope.check_version().map_err(|e| self.bad(e))?;
        let Some(found) = envelope.researcher_id() else {
            return Err(NodeError::TaskWithoutResearcherId {
                endpoint: self.endpoint.clone(),
                class: envelope.class().to_string(),
            });
        };
        match &self.researcher_id {
            Some(expected) if expected != found => {
                return Err(NodeError::ResearcherIdChanged {
                    endpoint: self.endpoint.clone(),
                    expected: expected.clone(),
                    found: found.to_string(),
                    seen_in: "task",
                })
            }
            Some(_) => {}
            None => self.researcher_id = Some(found.to_string()),
        }
        Ok((envelope, len))
    }

    fn bad(&self, e: crate::wire::WireError) -> NodeError {
        NodeError::BadTask {
            endpoint: self.endpoint.clone(),
            source: Box::new(e),
        }
    }
}

/// Why a poll loop ended.
#[derive(Debug)]
pub enum PollEnd {
    /// The researcher does not implement streaming `GetTask`: use unary mode.
    Unimplemented,
    /// The connection or the call failed: reconnect.
    Lost(NodeError),
    /// Stop for good (security error, handler gone).
    Fatal(NodeError),
}

/// What a poll loop needs; moved into the loop's future.
pub struct Poller {
    /// The gRPC client (a clone of the link's channel).
    pub client: ResearcherServiceClient<Channel>,
    /// `host:port`.
    pub endpoint: String,
    /// This node's id (`TaskRequest.node`).
    pub node_id: String,
    /// Link state shared with the actor (status counters).
    pub shared: Arc<LinkShared>,
    /// Where tasks go.
    pub handler: Recipient<TaskReceived>,
    /// The controller, told when a researcher id is learnt from a task.
    pub events: actix::WeakRecipient<LinkEvent>,
    /// Frame checks.
    pub assembler: TaskAssembler,
    /// Deadline of one poll call.
    pub poll_deadline: std::time::Duration,
    /// Tasks requested ahead in streaming mode.
    pub credits: u32,
}

impl Poller {
    fn request(&self) -> TaskRequest {
        TaskRequest {
            node: self.node_id.clone(),
            protocol_version: PROTOCOL_VERSION.to_string(),
        }
    }

    fn lost(&self, rpc: &'static str, status: tonic::Status) -> PollEnd {
        PollEnd::Lost(NodeError::Rpc {
            endpoint: self.endpoint.clone(),
            rpc,
            status: Box::new(status),
        })
    }

    fn poll_opened(&self, mode: PollMode) {
        self.shared.polled.store(true, Ordering::Relaxed);
        let mut status = self.shared.status();
        status.record_poll_open();
        status.poll_mode = mode;
    }

    /// Handles one frame; `Err` ends the loop.
    async fn on_frame(&mut self, frame: TaskResponse) -> Result<bool, PollEnd> {
        let had_id = self.assembler.researcher_id().is_some();
        match self.assembler.push(frame) {
            Ok(None) => Ok(false),
            Ok(Some((envelope, len))) => {
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
                        super::link::notify(&self.events, event);
                    }
                }
                self.shared.status().record_received(len);
                self.deliver(envelope).await?;
                Ok(true)
            }
            Err(e) if e.is_bad_task() => {
                log::warn!("{e}");
                self.shared.status().bad_tasks += 1;
                Ok(true)
            }
            Err(e) => Err(PollEnd::Fatal(e)),
        }
    }

    async fn deliver(&self, message: Envelope) -> Result<(), PollEnd> {
        let researcher_id = self
            .assembler
            .researcher_id()
            .unwrap_or_default()
            .to_string();
        let task = TaskReceived {
            researcher_id,
            message,
        };
        let gone = || {
            PollEnd::Fatal(NodeError::HandlerGone {
                endpoint: self.endpoint.clone(),
            })
        };
        match self.handler.try_send(task) {
            Ok(()) => Ok(()),
            Err(SendError::Full(task)) => {
                // Back-pressure: this link waits until the handler took the task.
                self.handler.send(task).await.map_err(|_| gone())
            }
            Err(SendError::Closed(_)) => Err(gone()),
        }
    }

    /// Fed-BioMed's long poll: one task per `GetTaskUnary` call, forever.
    pub async fn run_unary(mut self) -> PollEnd {
        loop {
            let mut request = tonic::Request::new(self.request());
            request.set_timeout(self.poll_deadline);
            let until = Instant::now() + self.poll_deadline;
            let mut stream = match self.client.get_task_unary(request).await {
                Ok(response) => response.into_inner(),
                Err(status) if status.code() == Code::DeadlineExceeded => continue,
                Err(status) => return self.lost("GetTaskUnary", status),
            };
            self.poll_opened(PollMode::Unary);
            loop {
                match tokio::time::timeout_at(until, stream.message()).await {
                    // Deadline of this poll: open a new one.
                    Err(_) => break,
                    Ok(Ok(Some(frame))) => match self.on_frame(frame).await {
                        Ok(_) => {}
                        Err(end) => return end,
                    },
                    // The stream ends after one task's frames.
                    Ok(Ok(None)) => break,
                    Ok(Err(status)) if status.code() == Code::DeadlineExceeded => break,
                    Ok(Err(status)) => return self.lost("GetTaskUnary", status),
                }
            }
            if let Some(e) = self.assembler.abandon() {
                log::warn!("{e}");
                self.shared.status().bad_tasks += 1;
            }
        }
    }

    /// fedroute's streaming poll: one `GetTask` call, one credit per task.
    pub async fn run_streaming(mut self) -> PollEnd {
        loop {
            let credits = self.credits.max(1) as usize;
            let (tx, rx) = mpsc::channel::<TaskRequest>(credits + 1);
            for _ in 0..credits {
                // Cannot fail: the channel has room for every initial credit.
                let _ = tx.try_send(self.request());
            }
            let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            request.set_timeout(self.poll_deadline);
            let until = Instant::now() + self.poll_deadline;
            let mut stream = match self.client.get_task(request).await {
                Ok(response) => response.into_inner(),
                Err(status) if status.code() == Code::Unimplemented => {
                    return PollEnd::Unimplemented
                }
                Err(status) if status.code() == Code::DeadlineExceeded => continue,
                Err(status) => return self.lost("GetTask", status),
            };
            self.poll_opened(PollMode::Streaming);
            loop {
                match tokio::time::timeout_at(until, stream.message()).await {
                    Err(_) => break,
                    Ok(Ok(Some(frame))) => match self.on_frame(frame).await {
                        Ok(true) => {
                            // One task consumed one credit: give it back. The
                            // channel holds at most `credits` + 1, so this
                            // never waits long.
                            if tx.send(self.request()).await.is_err() {
                                break;
                            }
                        }
                        Ok(false) => {}
                        Err(end) => return end,
                    },
                    Ok(Ok(None)) => break,
                    Ok(Err(status)) if status.code() == Code::Unimplemented => {
                        return PollEnd::Unimplemented
                    }
                    Ok(Err(status)) if status.code() == Code::DeadlineExceeded => break,
                    Ok(Err(status)) => return self.lost("GetTask", status),
                }
            }
            if let Some(e) = self.assembler.abandon() {
                log::warn!("{e}");
                self.shared.status().bad_tasks += 1;
            }
        }
    }

    /// Runs the loop of `mode` (`Auto` tries streaming first).
    pub async fn run(self, mode: PollMode) -> PollEnd {
        match mode {
            PollMode::Unary => self.run_unary().await,
            PollMode::Streaming | PollMode::Auto => self.run_streaming().await,
        }
    }
}
