//! The researcher side: the gRPC server nodes dial.
//!
//! # Layout
//! - [`config`]: [`ResearcherConfig`], limits and their defaults.
//! - [`error`]: [`ResearcherError`].
//! - [`status`]: node status ACTIVE / WAITING / DISCONNECTED (plain struct).
//! - [`queue`]: a node's bounded task queue with time to live and retries.
//! - [`pending`]: requests waiting for replies.

pub mod config;
pub mod error;
pub mod pending;
pub mod queue;
pub mod status;

pub use config::ResearcherConfig;
pub use error::ResearcherError;
pub use status::NodeStatus;
