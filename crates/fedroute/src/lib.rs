//! # fedroute
//!
//! An actix-based message router for federated learning that speaks
//! Fed-BioMed's gRPC/TLS wire protocol.
//!
//! # Layout
//! - [`proto`]: the generated gRPC types (`proto/researcher.proto`).
//! - [`wire`]: the Fed-BioMed payload: msgpack values, the message envelope,
//!   typed messages, protocol version checks, chunking and reassembly.
//! - [`tls`]: certificates, trust policies and TLS configurations.
//! - [`researcher`]: the gRPC server nodes dial, one `NodeAgent` actor per node.
//! - [`node`]: the `Controller` actor and its supervised `ResearcherLink`s.
//! - [`proxy`]: HTTP proxies a node reaches researchers through (`CONNECT`).
//! - [`config`]: how both sides are configured, and the limits they share.
//! - `store` (private): the delivery store of a state directory, behind the
//!   durable outbox and durable requests; its errors and counters are
//!   [`StoreError`] and [`StoreStats`].
//! - [`ErrorChain`]: prints an error with its causes.

pub mod config;
mod error_chain;
pub mod log_limit;
pub mod node;
pub mod proto;
pub mod proxy;
pub mod researcher;
mod state_file;
mod store;
pub mod tls;
pub mod wire;

pub use error_chain::ErrorChain;
pub use store::{StoreError, StoreStats};
