//! The researcher side: the gRPC server nodes dial.
//!
//! ```text
//!  application ──SendToNode/Request/Broadcast/Nodes/Shutdown──▶ Researcher ──▶ NodeAgent (one per node id)
//!       ▲                                                       (pending       queue, status, polls
//!       └──── ResearcherEvent (Recipient) ◀──────────────────    requests)         │ tasks (InFlight)
//!                                                                   ▲               ▼
//!                     tonic ResearcherGrpc: ReplyTask ─ RouteReply ─┘    GetTaskUnary / GetTask PollStream
//! ```
//!
//! # Layout
//! - `config` - [`ResearcherConfig`] and its groups, with their defaults.
//! - `error` - [`ResearcherError`].
//! - `status` - node status ACTIVE / WAITING / DISCONNECTED (plain struct).
//! - `queue` - a node's bounded task queue with time to live and retries.
//! - `pending` - requests waiting for replies (plain struct).
//! - `awaiting` - a node's tasks written out and not yet answered, requeued
//!   when their connection is gone (plain struct).
//! - `table` - the agents by node id, forgetting idle ones (plain struct).
//! - `node_tasks` - `NodeTasks`: everything decided about one node's tasks
//!   (queue, awaiting set, status, polls and their credit, timers) as a
//!   plain struct driven by events and `now`, returning effects.
//! - `agent` - the `NodeAgent` actor: the shell around `NodeTasks`
//!   (channels, in-flight guards, one timer).
//! - `actor` - the [`Researcher`] actor and its messages.
//! - `service` - the tonic service and the poll response stream.
//! - `node_auth` - which node a call may act as under mutual TLS (plain
//!   functions).
//! - `incoming` - the accept loop, TLS handshakes and idle-closing
//!   connections.
//! - `metered` - the bytes the gRPC layer holds for a call, counted.
//! - `events` - [`ResearcherEvent`] for the handler.
//! - `server` - [`start`] and [`ResearcherHandle`].

mod actor;
mod agent;
mod awaiting;
mod config;
mod error;
mod events;
mod incoming;
mod metered;
mod node_auth;
mod node_tasks;
mod pending;
mod queue;
mod server;
mod service;
mod status;
mod table;

pub use actor::{
    Broadcast, Nodes, PendingCount, RecoveredRequest, RecoveredRequests, Request, Researcher,
    SendToNode, Shutdown, StoreStatus, Submit,
};
pub use config::{Limits, ListenSettings, NodeSettings, ResearcherConfig, Timeouts};
pub use error::ResearcherError;
pub use events::ResearcherEvent;
pub use node_tasks::NodeInfo;
pub use server::{start, ResearcherHandle};
pub use status::NodeStatus;
