//! The errors of the node side.

use std::time::Duration;

use crate::config::ConfigError;
use crate::tls::{Fingerprint, RotationError, TlsError};
use crate::wire::{shortened, WireError};

/// Characters of a researcher's status message quoted in an error (the
/// researcher chooses it, as long as HTTP/2 trailers may be).
const STATUS_CHARS: usize = 300;

/// Everything that can go wrong on the node side. Variants read as sentences
/// and carry the values that explain them; a cause is returned by
/// `source()`, not repeated in the message (print the error with
/// [`crate::ErrorChain`] to show it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// `SendReply` was given a message without a `researcher_id` field.
    #[error("the {class} message has no researcher_id, so it cannot be routed")]
    MissingResearcherId {
        /// The message class.
        class: String,
    },
    /// `SendReply` named a researcher no link has identified.
    #[error("no researcher link knows the researcher id {researcher_id}")]
    UnknownResearcher {
        /// The id found in the message.
        researcher_id: String,
    },
    /// The outgoing queue of a link is full
    /// (see [`QueueSettings::capacity`](super::QueueSettings::capacity)
    /// and [`QueueSettings::max_bytes`](super::QueueSettings::max_bytes)).
    #[error(
        "the outgoing queue to {endpoint} is full (bounds: {capacity} messages, {max_bytes} bytes)"
    )]
    QueueFull {
        /// `host:port` of the link.
        endpoint: String,
        /// The bound on messages.
        capacity: usize,
        /// The bound on bytes.
        max_bytes: usize,
    },
    /// The controller was shut down (or is shutting down).
    #[error("the controller is shut down")]
    ShutDown,
    /// The message was not written to the delivery store (full disk, I/O
    /// error): it is not queued; nothing accepted before is lost.
    #[error("the message to {endpoint} was not accepted: it could not be stored")]
    NotStored {
        /// `host:port` of the link.
        endpoint: String,
        /// Why (it names the file).
        #[source]
        source: crate::StoreError,
    },
    /// The delivery store of the state directory cannot be opened (damaged,
    /// newer, in use by another process).
    #[error("the node's delivery store cannot be used")]
    Store {
        /// Why (it names the file).
        #[source]
        source: crate::StoreError,
    },
    /// The link stopped for good.
    #[error("the link to {endpoint} has failed for good: {reason}")]
    LinkFailed {
        /// `host:port` of the link.
        endpoint: String,
        /// Why it failed.
        reason: String,
    },
    /// The link was closed (removed or shut down).
    #[error("the link to {endpoint} is closed")]
    LinkClosed {
        /// `host:port` of the link.
        endpoint: String,
    },
    /// `AddResearcher` named an endpoint the controller already has.
    #[error("the controller already has a link to {endpoint}")]
    DuplicateEndpoint {
        /// `host:port`.
        endpoint: String,
    },
    /// `RemoveResearcher` named an endpoint the controller does not have.
    #[error("the controller has no link to {endpoint}")]
    UnknownEndpoint {
        /// `host:port`.
        endpoint: String,
    },
    /// Security: the researcher behind an endpoint is not the one first seen
    /// (a new certificate or a task with another researcher id).
    #[error(
        "security: {endpoint} was researcher {expected} but now claims to be {found} ({seen_in})"
    )]
    ResearcherIdChanged {
        /// `host:port`.
        endpoint: String,
        /// The id first seen.
        expected: String,
        /// The id now presented.
        found: String,
        /// Where the new id was seen ("server certificate" or "task").
        seen_in: &'static str,
    },
    /// Security: the researcher behind an endpoint presents another
    /// certificate than the one the node trusts it with, without a valid
    /// rotation proof. Nothing is sent to it; the link keeps retrying (with
    /// its normal back-off), so the real researcher is served again as soon
    /// as it is back.
    #[error(
        "security: {endpoint} presents certificate {presented} instead of the trusted {recorded} ({why}); \
         nothing is sent to it. If the researcher really changed its certificate, {accept}"
    )]
    CertificateChanged {
        /// `host:port`.
        endpoint: String,
        /// The fingerprint of the trusted certificate.
        recorded: Fingerprint,
        /// The fingerprint of the certificate presented.
        presented: Fingerprint,
        /// Why the new certificate was not accepted.
        why: Box<RotationError>,
        /// How an operator accepts the new certificate ("accept it with:
        /// fedroute trust forget ...").
        accept: String,
    },
    /// The researcher's certificate is outside its validity period; the
    /// link retries with back-off (the researcher may renew it).
    #[error("the certificate of {endpoint} {validity}")]
    CertificateNotValid {
        /// `host:port`.
        endpoint: String,
        /// How its validity stands ("expired on ...").
        validity: String,
    },
    /// The trust store could not be opened or written.
    #[error("the trust store cannot be used")]
    TrustStore {
        /// The TLS layer's error (it names the file).
        #[source]
        source: Box<TlsError>,
    },
    /// The configuration does not hold together.
    #[error("the controller configuration is not valid")]
    Config {
        /// What is wrong.
        #[source]
        source: ConfigError,
    },
    /// A task could not be used (bad frames, msgpack, version, fields); it is dropped.
    #[error("dropped a bad task from {endpoint}")]
    BadTask {
        /// `host:port`.
        endpoint: String,
        /// What was wrong with it.
        #[source]
        source: Box<WireError>,
    },
    /// A task without a `researcher_id` field; it is dropped.
    #[error("dropped a {class} task from {endpoint}: it has no researcher_id")]
    TaskWithoutResearcherId {
        /// `host:port`.
        endpoint: String,
        /// The message class.
        class: String,
    },
    /// TLS or channel set-up failed.
    #[error("could not connect to {endpoint}")]
    Tls {
        /// `host:port`.
        endpoint: String,
        /// The TLS layer's error.
        #[source]
        source: Box<TlsError>,
    },
    /// The researcher's certificate cannot be used (its researcher id is
    /// not a valid identifier); the link retries with back-off.
    #[error("the certificate of {endpoint} cannot be used: {reason}")]
    BadCertificate {
        /// `host:port`.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// A gRPC call failed.
    #[error("{rpc} to {endpoint} failed: {}: {}", status.code(), shortened(status.message(), STATUS_CHARS))]
    Rpc {
        /// `host:port`.
        endpoint: String,
        /// The RPC ("GetTask", "GetTaskUnary", "ReplyTask", "Feedback").
        rpc: &'static str,
        /// The gRPC status.
        status: Box<tonic::Status>,
    },
    /// The researcher refused the node's identity (a call answered
    /// UNAUTHENTICATED: under mutual TLS, no usable client certificate; a
    /// Fed-BioMed researcher also answers it to a poll for another node than
    /// the certificate's). Retrying cannot help, so the link stops for good
    /// ([`NodeError::is_fatal`]).
    #[error(
        "{endpoint} does not accept this node's identity: {rpc} was refused as UNAUTHENTICATED: {}          (check the node's client certificate, its node id and its registration with the researcher)",
        shortened(reason, STATUS_CHARS)
    )]
    Unauthenticated {
        /// `host:port`.
        endpoint: String,
        /// The RPC refused.
        rpc: &'static str,
        /// The researcher's status message.
        reason: String,
    },
    /// A gRPC call did not finish in time.
    #[error("{rpc} to {endpoint} did not finish within {after:?}")]
    Timeout {
        /// `host:port`.
        endpoint: String,
        /// The RPC.
        rpc: &'static str,
        /// The bound.
        after: Duration,
    },
    /// A task stopped arriving half-way: the link reconnects (the researcher
    /// sends it again on the new connection).
    #[error("{endpoint} sent part of a task and then nothing for {after:?} (ControllerConfig::receive.stall_timeout)")]
    Stalled {
        /// `host:port`.
        endpoint: String,
        /// The stall timeout.
        after: Duration,
    },
    /// A task could not be received now: the node's receive budget is
    /// spent by other tasks in progress. The link reconnects after a
    /// back-off and the researcher sends the task again.
    #[error("a task from {endpoint} was refused for now")]
    ReceiveBudget {
        /// `host:port`.
        endpoint: String,
        /// The budget's error.
        #[source]
        source: Box<WireError>,
    },
    /// Too many feedback items wait for this link
    /// (`ControllerConfig::queues.max_feedback`).
    #[error("{limit} feedback items already wait to be sent to {endpoint}")]
    FeedbackQueueFull {
        /// `host:port`.
        endpoint: String,
        /// The limit.
        limit: usize,
    },
    /// The researcher keeps ending polls at once without a task.
    #[error("{endpoint} ended {count} polls in a row at once without a task")]
    EmptyPolls {
        /// `host:port`.
        endpoint: String,
        /// Polls in a row.
        count: u32,
    },
    /// The actor (or a task standing for one, such as the trust store
    /// check) did not answer: it stopped.
    #[error("the {actor} did not answer: {reason}")]
    Mailbox {
        /// Which actor.
        actor: &'static str,
        /// actix's reason.
        reason: String,
    },
}

impl NodeError {
    /// The error of a call answered with `status`: [`NodeError::Rpc`], or
    /// [`NodeError::Unauthenticated`] for UNAUTHENTICATED.
    pub(crate) fn rpc(endpoint: &str, rpc: &'static str, status: tonic::Status) -> NodeError {
        if status.code() == tonic::Code::Unauthenticated {
            NodeError::Unauthenticated {
                endpoint: endpoint.to_string(),
                rpc,
                reason: status.message().to_string(),
            }
        } else {
            NodeError::Rpc {
                endpoint: endpoint.to_string(),
                rpc,
                status: Box::new(status),
            }
        }
    }

    /// True for errors after which the link must never reconnect: security
    /// errors (a researcher id that changed, an identity the researcher
    /// refuses).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            NodeError::ResearcherIdChanged { .. } | NodeError::Unauthenticated { .. }
        )
    }

    /// True when the researcher answered a send with an error status that is
    /// not a transport failure (it may be refusing that message).
    /// RESOURCE_EXHAUSTED is not one: the researcher is short of room for
    /// now (its receive budget), and the message is sent again, however
    /// often, after a back-off.
    pub fn is_rejection(&self) -> bool {
        use tonic::Code;
        match self {
            NodeError::Rpc { status, .. } => !matches!(
                status.code(),
                Code::Unavailable
                    | Code::Cancelled
                    | Code::DeadlineExceeded
                    | Code::Aborted
                    | Code::ResourceExhausted
            ),
            _ => false,
        }
    }

    /// True when the researcher answered NOT_FOUND: it does not know this
    /// node yet (a restarted researcher learns a node from its first poll).
    /// Not the message's fault: it is sent again after a back-off, never
    /// counted towards dropping it.
    pub(crate) fn is_unknown_node(&self) -> bool {
        matches!(self, NodeError::Rpc { status, .. } if status.code() == tonic::Code::NotFound)
    }

    /// True when a send failed with a status that does not say the
    /// connection broke (anything but UNAVAILABLE, CANCELLED,
    /// DEADLINE_EXCEEDED and ABORTED): the link keeps its connection and
    /// poll and only sends again after a back-off. UNKNOWN and INTERNAL are
    /// among them: they are also what a researcher's failing handler
    /// answers (Fed-BioMed's answers UNKNOWN to a reply from before its
    /// restart), and reconnecting then would cut the open poll and lose the
    /// task the researcher just wrote into it. A connection that did break
    /// fails the poll on it too, which reconnects the link.
    pub fn is_refusal(&self) -> bool {
        use tonic::Code;
        match self {
            NodeError::Rpc { status, .. } => !matches!(
                status.code(),
                Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded | Code::Aborted
            ),
            _ => false,
        }
    }

    /// True for errors that drop one task while the link keeps working.
    pub fn is_bad_task(&self) -> bool {
        matches!(
            self,
            NodeError::BadTask { .. } | NodeError::TaskWithoutResearcherId { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc(code: tonic::Code) -> NodeError {
        NodeError::Rpc {
            endpoint: "127.0.0.1:1".into(),
            rpc: "ReplyTask",
            status: Box::new(tonic::Status::new(code, "x")),
        }
    }

    #[test]
    fn only_broken_connection_statuses_make_a_failed_send_reconnect() {
        use tonic::Code;
        for code in [
            Code::Unknown,
            Code::Internal,
            Code::NotFound,
            Code::ResourceExhausted,
        ] {
            assert!(rpc(code).is_refusal(), "{code:?}");
        }
        for code in [Code::Unavailable, Code::Cancelled, Code::DeadlineExceeded] {
            assert!(!rpc(code).is_refusal(), "{code:?}");
        }
    }

    #[test]
    fn only_not_found_says_the_researcher_does_not_know_the_node_yet() {
        use tonic::Code;
        assert!(rpc(Code::NotFound).is_unknown_node());
        for code in [Code::Unknown, Code::InvalidArgument, Code::Unavailable] {
            assert!(!rpc(code).is_unknown_node(), "{code:?}");
        }
    }

    #[test]
    fn messages_read_as_sentences() {
        let e = NodeError::ResearcherIdChanged {
            endpoint: "127.0.0.1:50051".into(),
            expected: "RESEARCHER_a".into(),
            found: "RESEARCHER_b".into(),
            seen_in: "server certificate",
        };
        assert!(e.is_fatal());
        assert_eq!(
            e.to_string(),
            "security: 127.0.0.1:50051 was researcher RESEARCHER_a but now claims to be RESEARCHER_b (server certificate)"
        );
        let e = NodeError::UnknownResearcher {
            researcher_id: "R".into(),
        };
        assert!(!e.is_fatal());
        assert_eq!(
            e.to_string(),
            "no researcher link knows the researcher id R"
        );
    }

    #[test]
    fn a_researchers_status_is_quoted_shortened() {
        let e = NodeError::Rpc {
            endpoint: "h:1".into(),
            rpc: "ReplyTask",
            status: Box::new(tonic::Status::internal("x".repeat(1 << 20))),
        };
        let text = e.to_string();
        assert!(text.len() < 400, "{}", text.len());
        assert!(
            text.starts_with("ReplyTask to h:1 failed: Internal error: xxx"),
            "{text}"
        );
    }

    #[test]
    fn unauthenticated_is_fatal_and_says_why_and_where() {
        let e = NodeError::rpc(
            "h:1",
            "GetTaskUnary",
            tonic::Status::unauthenticated("no client certificate"),
        );
        assert!(e.is_fatal() && !e.is_refusal() && !e.is_rejection(), "{e}");
        let text = e.to_string();
        assert!(
            text.starts_with("h:1 does not accept this node's identity: GetTaskUnary was refused as UNAUTHENTICATED: no client certificate"),
            "{text}"
        );
        let e = NodeError::rpc("h:1", "GetTaskUnary", tonic::Status::permission_denied("x"));
        assert!(!e.is_fatal() && e.is_refusal(), "{e}");
    }

    #[test]
    fn error_stays_small() {
        assert!(std::mem::size_of::<NodeError>() <= 128);
    }
}
