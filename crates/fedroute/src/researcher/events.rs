//! [`ResearcherEvent`]: what the researcher tells its handler `Recipient`
//! about, besides replies to requests.

use std::time::Duration;

use actix::{Message, Recipient};

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
    /// The reply to a request without a waiting future: one made with
    /// [`Submit`](super::Submit), or one accepted before a restart (see
    /// [`RecoveredRequests`](super::RecoveredRequests)). The researcher
    /// acknowledges it to the node, and forgets the request, only once the
    /// handler has handled this event: an application that must not lose a
    /// reply to a crash stores it before its handler returns (a crash
    /// before that gets it again after the restart; one in the
    /// microseconds between the handler's return and the acknowledgement
    /// too).
    Reply {
        /// The node that answered.
        node_id: String,
        /// The request it answers.
        request_id: String,
        /// The reply.
        message: Envelope,
    },
    /// A request without a waiting future got no reply: its timeout passed
    /// (counted across restarts), or its task could not be delivered.
    NoReply {
        /// The node it was for.
        node_id: String,
        /// The request id.
        request_id: String,
        /// Why (the error's sentence).
        reason: String,
    },
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

/// How long delivering an event to the handler may hold up the node's call.
pub(crate) const EVENT_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Hands `event` to `events` and waits for its handler to run (at most
/// [`EVENT_SEND_TIMEOUT`]); false when it could not.
pub(crate) async fn hand_over(events: &Recipient<ResearcherEvent>, event: ResearcherEvent) -> bool {
    match tokio::time::timeout(EVENT_SEND_TIMEOUT, events.send(event)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            log::warn!("event handler unreachable, event dropped: {e}");
            false
        }
        Err(_) => {
            log::warn!("event handler busy for {EVENT_SEND_TIMEOUT:?}, event dropped");
            false
        }
    }
}
