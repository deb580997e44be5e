//! [`ResearcherEvent`]: what the researcher tells its handler `Recipient`
//! about, besides replies to requests.

use actix::Message;

use crate::wire::{Envelope, FeedbackMessage};

/// An event for the researcher-side handler.
#[derive(Clone, Debug, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub enum ResearcherEvent {
    /// The node polled for the first time, or again after being
    /// DISCONNECTED.
    NodeConnected {
        /// The node id.
        node_id: String,
    },
    /// The node did not poll for the disconnection timeout.
    NodeDisconnected {
        /// The node id.
        node_id: String,
    },
    /// A log or scalar message a node sent.
    Feedback(FeedbackMessage),
    /// A reply no request waits for (never sent, already answered, timed
    /// out, or answered by another node than the one asked).
    UnmatchedReply(Envelope),
    /// A message queued with `SendToNode`, `Broadcast` or relayed as an
    /// overlay message could not be delivered.
    Undelivered {
        /// The node it was for.
        node_id: String,
        /// Its request id, if it had one.
        request_id: Option<String>,
        /// Why (the error's sentence).
        reason: String,
    },
}
