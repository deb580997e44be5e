//! The node side: the [`Controller`] actor and its supervised
//! [`ResearcherLink`]s (see `DESIGN.md`).
//!
//! # Layout
//! - [`controller`]: the `Controller` actor and the messages the node service sends it.
//! - [`link`]: `ResearcherLink`, one supervised actor per researcher, and its shared state.
//! - [`listener`]: the poll loop (unary and streaming) and the task checks ([`TaskAssembler`]).
//! - [`sender`]: the send pump (`ReplyTask` in chunks, `Feedback`).
//! - [`outbox`], [`backoff`], [`status`], [`config`], [`error`]: plain structs.
//! - [`log_forward`]: forwards node log records to researchers as feedback.
pub mod backoff;
pub mod config;
pub mod controller;
pub mod error;
pub mod link;
pub mod listener;
pub mod log_forward;
pub mod outbox;
pub mod sender;
pub mod status;

pub use config::{ControllerConfig, ReplyStreamMode};
pub use controller::{
    AddResearcher, Broadcast, Controller, FinishReason, Finished, ForwardLog, IsConnected,
    RemoveResearcher, Send, SendFeedback, Shutdown, ShutdownReport, Status, TaskReceived,
};
pub use error::NodeError;
pub use link::{ResearcherEndpoint, ResearcherLink};
pub use listener::TaskAssembler;
pub use status::{LinkState, LinkStatus, PollMode};
