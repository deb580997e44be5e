//! [`ResearcherError`]: everything the researcher side can report to its
//! caller. Each variant reads as a sentence and carries the values that
//! explain it; variant docs name the configuration knob involved. A cause
//! is returned by `source()`, not repeated in the message: print the error
//! with [`crate::ErrorChain`] to show it.

use std::net::SocketAddr;
use std::time::Duration;

/// An error of the researcher layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResearcherError {
    /// The node never polled this researcher (or was forgotten), so nothing
    /// can be queued for it.
    #[error("node {node_id:?} is unknown: it never polled this researcher")]
    NodeUnknown {
        /// The node id asked for.
        node_id: String,
    },
    /// The node's task queue is full (`ResearcherConfig::nodes.queue_capacity`,
    /// counting tasks being delivered).
    #[error("the task queue of node {node_id:?} is full ({capacity} tasks)")]
    QueueFull {
        /// The node id.
        node_id: String,
        /// The queue capacity.
        capacity: usize,
    },
    /// Too many requests are waiting for replies
    /// (`ResearcherConfig::limits.max_pending_requests`).
    #[error("{limit} requests are already waiting for replies; request {request_id:?} refused")]
    TooManyPending {
        /// The refused request.
        request_id: String,
        /// The limit.
        limit: usize,
    },
    /// The researcher already serves its limit of node ids
    /// (`ResearcherConfig::limits.max_nodes`).
    #[error("node {node_id:?} refused: {limit} nodes are already known")]
    TooManyNodes {
        /// The refused node id.
        node_id: String,
        /// The limit.
        limit: usize,
    },
    /// `Request` needs a message with a `request_id` to match the reply.
    #[error("a {class} message without request_id cannot be sent as a request")]
    MissingRequestId {
        /// The message class.
        class: String,
    },
    /// Another request with the same id is still waiting for its reply.
    #[error("request {request_id:?} is already waiting for a reply")]
    DuplicateRequestId {
        /// The request id.
        request_id: String,
    },
    /// No reply came within the request's timeout.
    #[error("no reply from node {node_id:?} to request {request_id:?} within {timeout:?}")]
    Timeout {
        /// The node id.
        node_id: String,
        /// The request id.
        request_id: String,
        /// The timeout given with the request.
        timeout: Duration,
    },
    /// The task stayed queued longer than its time to live
    /// (`ResearcherConfig::nodes.task_ttl`) because the node did not poll.
    #[error("task {request_id:?} for node {node_id:?} expired after {ttl:?} in the queue")]
    Expired {
        /// The node id.
        node_id: String,
        /// The request id of the task (if it had one).
        request_id: Option<String>,
        /// The time to live.
        ttl: Duration,
    },
    /// The task's delivery was cut too many times
    /// (`ResearcherConfig::nodes.max_task_retries`).
    #[error("task {request_id:?} for node {node_id:?} was cut {attempts} times while being delivered; given up")]
    RetriesExhausted {
        /// The node id.
        node_id: String,
        /// The request id of the task (if it had one).
        request_id: Option<String>,
        /// How many deliveries were cut.
        attempts: u32,
    },
    /// The researcher is shutting down or has stopped.
    #[error("the researcher is shutting down")]
    ShuttingDown,
    /// The request was not written to the delivery store (full disk, I/O
    /// error): it is not queued; nothing accepted before is lost.
    #[error("request {request_id:?} was not accepted: it could not be stored")]
    NotStored {
        /// The request id.
        request_id: String,
        /// Why (it names the file).
        #[source]
        source: crate::StoreError,
    },
    /// `Submit` was used without an event recipient: its reply could go
    /// nowhere (it comes as a [`ResearcherEvent`](super::ResearcherEvent)).
    #[error("Submit needs an event recipient (its reply comes as a ResearcherEvent::Reply)")]
    NoEventRecipient,
    /// The delivery store of the state directory cannot be opened (damaged,
    /// newer, in use by another process).
    #[error("the researcher's delivery store cannot be used")]
    Store(#[source] crate::StoreError),
    /// An actor of the researcher is gone (it stopped or its mailbox closed).
    #[error("the researcher actor is gone")]
    Mailbox(#[from] actix::MailboxError),
    /// Certificates or TLS configuration failed.
    #[error("TLS set-up failed")]
    Tls(#[from] crate::tls::TlsError),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The configured listen address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The gRPC server could not be built.
    #[error("the gRPC server failed")]
    Server(#[from] tonic::transport::Error),
    /// The configuration cannot work ([`ResearcherConfig::validate`](super::ResearcherConfig::validate)).
    #[error("invalid researcher configuration")]
    Config(#[from] crate::config::ConfigError),
}
