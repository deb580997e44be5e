//! The node side: the [`Controller`] actor and its supervised
//! `ResearcherLink`s (see `DESIGN.md`).
//!
//! # Layout
//! - `controller`: the `Controller` actor.
//! - `messages`: what applications send the controller, what it tells them,
//!   and what links tell it.
//! - `handler`: the handler slot shared by the controller and its links.
//! - `endpoint`: `ResearcherEndpoint` and the one researcher-id check.
//! - `link`: `ResearcherLink`, one supervised actor per researcher.
//! - `life`: a link's reconnect state (attempts, back-off, knocks, up/down),
//!   a plain struct.
//! - `shared`: the state a link shares with its futures and the controller
//!   (outgoing queue, status, wake-ups).
//! - `listener`: the poll loop (unary and streaming) and the task checks (`TaskAssembler`).
//! - `sender`: the send pump (`ReplyTask` in chunks, `Feedback`).
//! - `progress`: the link's channel, noting when response data arrives.
//! - `probe`: knocking on a down researcher's port to reconnect at once.
//! - `outbox`, `backoff`, `status`, `config`, `error`, `dedup`: plain structs.
//! - [`log_forward`]: forwards node log records to researchers as feedback.
//!
//! # Delivery guarantees
//! - Tasks: every task that passes the checks reaches the handler, in the
//!   order the researcher sent it. The handler's mailbox is the
//!   back-pressure point: when it is full, only that link waits (sending,
//!   and the polls of links whose tasks fit, go on).
//! - Duplicate tasks: a fedroute researcher sends again the tasks written to
//!   a connection that was cut (it cannot know whether they arrived). A link
//!   drops a task whose `request_id` is among the last
//!   [`QueueSettings::dedup_window`] ids it received (default 4,096; a
//!   debug line is logged), so the handler sees each task once. Fed-BioMed
//!   (Python) nodes do not deduplicate: for them a cut may deliver a task
//!   twice, as with Fed-BioMed's own researcher (which requeues cut tasks up
//!   to 5 times); the researcher keeps the first reply and drops the second.
//!   Tasks without a request id (relayed `OverlayMessage`s) are never
//!   dropped, and never sent twice.
//! - Replies: a reply leaves a link's queue only when the researcher
//!   acknowledged the RPC that carried it; until then it is sent again after
//!   every reconnection, in order, until it is acknowledged or `Shutdown`'s
//!   deadline passes (then it is reported unsent). This is at-least-once: a
//!   connection cut after the researcher read a reply but before its
//!   acknowledgement arrived makes the reply travel twice (researchers keep
//!   the first copy, matched by request id).
//! - What `Ok` means: without a state directory, [`SendReply`] (and
//!   [`Replier::send`], [`Broadcast`] per link) answers `Ok` once the reply is
//!   in the link's queue in memory; it is lost if the process dies before the
//!   researcher acknowledged it. With [`ControllerConfig::state_dir`], `Ok`
//!   means the reply is on disk (the delivery store, `delivery.redb`;
//!   fsynced, many replies sharing one commit): a node killed at any moment
//!   after that sends it again after its next start with the same
//!   directory, in order, with its request id, until the researcher
//!   acknowledges it. The request ids it answered are stored with the
//!   replies (the last [`QueueSettings::dedup_window`] per link), so a
//!   restarted node drops a task it already answered if the researcher
//!   offers it again. A full queue is [`NodeError::QueueFull`], a failed
//!   write (full disk) [`NodeError::NotStored`]: the reply is not accepted,
//!   and nothing accepted before is lost. Feedback (logs, scalars) stays in
//!   memory, with or without a state directory.
//! - A message the researcher keeps refusing (a gRPC error that is not a
//!   transport failure) is retried alone and dropped with an error log after
//!   [`ReplySettings::max_rejections`] attempts, so it cannot block the queue.
//! - Security: a researcher id that changes for an endpoint (in the
//!   certificate or in a task) stops that link for good; `Status` says why.
//! - A handler that stops (or panics): the links poll no further task and
//!   keep the one they hold until [`SetHandler`] gives a new handler (see
//!   [`LinkStatus::waiting_for_handler`]); tasks already in the stopped
//!   handler's mailbox are lost with it, each logged as an error.
mod backoff;
mod config;
mod controller;
mod dedup;
mod endpoint;
mod error;
mod handler;
mod life;
mod link;
mod listener;
pub mod log_forward;
mod messages;
mod outbox;
mod probe;
mod progress;
mod sender;
mod shared;
mod status;
mod trust;

pub use config::{
    ControllerConfig, PollSettings, QueueSettings, ReconnectSettings, ReplySettings,
    ReplyStreamMode,
};
pub use controller::{Controller, ControllerBuilder};
pub use endpoint::ResearcherEndpoint;
pub use error::NodeError;
pub use messages::{
    AddResearcher, Broadcast, FinishReason, Finished, ForwardLog, IsConnected, LinkChange,
    RemoveResearcher, Replier, SendFeedback, SendReply, SetHandler, Shutdown, ShutdownReport,
    Status, TaskReceived,
};
pub use status::{LinkState, LinkStatus, PollMode};
