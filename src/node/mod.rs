//! The node side: the [`Controller`](controller::Controller) actor and its
//! supervised researcher links.
pub mod backoff;
pub mod config;
pub mod outbox;
pub mod status;
