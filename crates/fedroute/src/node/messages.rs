//! The controller's messages: what an application sends it
//! ([`SendReply`], [`Broadcast`], [`SendFeedback`], [`IsConnected`],
//! [`Status`], [`AddResearcher`], [`RemoveResearcher`], [`SetHandler`],
//! [`Shutdown`]), what it tells the application ([`TaskReceived`],
//! [`LinkChange`], [`Finished`]), and what links tell it ([`LinkEvent`]).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix::WeakRecipient;

use super::endpoint::ResearcherEndpoint;
use super::error::NodeError;
use super::status::LinkStatus;
use crate::wire::{Envelope, FeedbackMessage};

/// A task from a researcher, delivered to the node's handler.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct TaskReceived {
    /// The researcher that sent it (checked against the link's known id).
    pub researcher_id: String,
    /// The message.
    pub message: Envelope,
    /// The way back: [`Replier::send`] queues a reply (as [`SendReply`]).
    pub reply: Replier,
}

/// A handle a handler replies with, carried by every [`TaskReceived`]: it
/// reaches the controller that delivered the task (weakly: holding it does
/// not keep a stopped controller alive).
#[derive(Clone)]
pub struct Replier {
    // An `Arc`: a task's copy costs a count, not an allocation.
    controller: Arc<actix::WeakRecipient<SendReply>>,
}

impl std::fmt::Debug for Replier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replier").finish_non_exhaustive()
    }
}

impl Replier {
    pub(super) fn new(controller: actix::WeakRecipient<SendReply>) -> Replier {
        Replier {
            controller: Arc::new(controller),
        }
    }

    /// Queues `reply` for the researcher its `researcher_id` names, as
    /// [`SendReply`] does, and resolves when it is queued (delivery follows
    /// the guarantees of the module docs); [`NodeError::ShutDown`] when the
    /// controller is shut down or gone. The message enters the controller's
    /// mailbox at the call (while the mailbox has room), so replies keep the
    /// order of the calls. The future holds no borrow: spawn it or return it
    /// from a handler (`ResponseFuture<()>`). With a state directory it
    /// resolves after a disk commit (milliseconds): when many replies may be
    /// waiting at once, await them in tasks (`actix::spawn`), not as futures
    /// spawned into the handler's context, which actix polls again at every
    /// message the handler receives.
    pub fn send(
        &self,
        reply: Envelope,
    ) -> impl std::future::Future<Output = Result<(), NodeError>> + 'static {
        // `Recipient::send` enqueues at once when the mailbox has room, not
        // when first polled: replies keep the calls' order.
        let request = self
            .controller
            .upgrade()
            .map(|controller| controller.send(SendReply(reply)));
        async move {
            match request {
                Some(request) => request.await.map_err(|_| NodeError::ShutDown)?,
                None => Err(NodeError::ShutDown),
            }
        }
    }
}

/// Replaces the handler tasks go to, for every link. A link whose handler
/// stopped (or panicked) holds back its tasks until this gives a new one:
/// it polls no further task, and delivers the one it was holding, if any,
/// to the new handler. (Tasks already in a handler's mailbox when it stops
/// are lost with it: the transport never hands one to a closed mailbox.)
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SetHandler(pub Recipient<TaskReceived>);

/// A link went up or down, told to the recipient given to
/// [`ControllerBuilder::on_link_change`](super::ControllerBuilder::on_link_change) (one message per change, not per
/// retry).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
#[non_exhaustive]
pub enum LinkChange {
    /// The link has a verified connection (and polls).
    Up {
        /// `host:port`.
        endpoint: String,
        /// The researcher id, once known.
        researcher_id: Option<String>,
        /// False the first time, true after an outage.
        reconnected: bool,
    },
    /// The link lost its connection (it reconnects by itself unless
    /// `for_good`).
    Down {
        /// `host:port`.
        endpoint: String,
        /// Why.
        reason: String,
        /// The link stopped for good (see [`LinkState::Failed`](super::LinkState)).
        for_good: bool,
    },
}

/// Why the controller finished (sent to the on-finish recipient).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FinishReason {
    /// [`Shutdown`] completed.
    Shutdown,
    /// Every link failed for good (see [`Status`] for the reasons).
    AllLinksFailed,
}

/// Told to the on-finish recipient once, when the controller is done.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Finished {
    /// Why.
    pub reason: FinishReason,
    /// Messages not known to be delivered ([`ShutdownReport::undelivered`]).
    pub unsent: usize,
}

/// From a link to its controller.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum LinkEvent {
    /// The link learnt the researcher id of its endpoint.
    Identified {
        /// `host:port`.
        endpoint: String,
        /// The researcher id.
        researcher_id: String,
    },
    /// The link stopped for good.
    Failed {
        /// `host:port`.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The link went up or down (forwarded as a [`LinkChange`]).
    Changed(LinkChange),
}

/// Send a message to the researcher named by its `researcher_id`, by
/// `ReplyTask`. `Ok` means queued in memory, or, with a state directory,
/// on disk (see the module's delivery guarantees).
#[derive(Message, Debug)]
#[rtype(result = "Result<(), NodeError>")]
pub struct SendReply(pub Envelope);

/// Send a message to every researcher; answers, per link (`host:port`),
/// whether it was queued (as [`SendReply`] does, with a state directory on
/// disk: one copy per link).
#[derive(Message, Debug)]
#[rtype(result = "Vec<(String, Result<(), NodeError>)>")]
pub struct Broadcast(pub Envelope);

/// Send feedback (log or scalar) by the `Feedback` RPC: to its
/// `researcher_id` when set, else to every researcher (`Ok` when at least one
/// link queued it).
#[derive(Message, Debug)]
#[rtype(result = "Result<(), NodeError>")]
pub struct SendFeedback(pub FeedbackMessage);

/// A node log record to forward as `FeedbackMessage.log` (see
/// [`log_forward`](super::log_forward)); to `researcher_id` when set, else to every researcher.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ForwardLog {
    /// Level name as Fed-BioMed writes it ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL").
    pub level: String,
    /// The record's target (Fed-BioMed's logger `name`).
    pub target: String,
    /// The formatted message.
    pub msg: String,
    /// Target researcher, if the record named one.
    pub researcher_id: Option<String>,
}

/// True when every link has a live, verified connection with an open poll
/// (false when there are no links).
///
/// Fed-BioMed's `GrpcController.is_connected()` answers another question: it
/// is true while the client tasks (poll and send loops) of every researcher
/// are still running, whether or not they reach their researcher, and true
/// for no researchers at all (`all([])`); it raises when the controller was
/// not started. A node that is waiting for a researcher to come back is
/// "connected" for Fed-BioMed and not for fedroute; [`Status`] gives each
/// link's state when the difference matters.
#[derive(Message, Debug)]
#[rtype(result = "bool")]
pub struct IsConnected;

/// A snapshot of every link, in the order they were added.
#[derive(Message, Debug)]
#[rtype(result = "Vec<LinkStatus>")]
pub struct Status;

/// Add a researcher at run time.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), NodeError>")]
pub struct AddResearcher(pub ResearcherEndpoint);

/// Remove a researcher at run time; answers with what was still queued for
/// it (see [`ShutdownReport`]).
#[derive(Message, Debug)]
#[rtype(result = "Result<ShutdownReport, NodeError>")]
pub struct RemoveResearcher {
    /// Host as given in its endpoint.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl RemoveResearcher {
    /// Removes the researcher that [`AddResearcher`]`(endpoint)` (or the
    /// builder) added.
    pub fn endpoint(endpoint: &ResearcherEndpoint) -> RemoveResearcher {
        RemoveResearcher {
            host: endpoint.host.clone(),
            port: endpoint.port,
        }
    }
}

/// Stop polling, send what is queued within `deadline`, report what could not
/// be sent, then refuse further work (`SendReply` answers [`NodeError::ShutDown`]).
#[derive(Message, Debug)]
#[rtype(result = "ShutdownReport")]
pub struct Shutdown {
    /// Time allowed to flush the outgoing queues.
    pub deadline: Duration,
}

/// What [`Shutdown`] (or [`RemoveResearcher`]) could not deliver, in queue
/// order per link, split by what the researcher may already have.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Messages never written to the researcher: sending them again by
    /// other means cannot duplicate them.
    pub unsent: Vec<Envelope>,
    /// Messages written to an RPC whose acknowledgement never came: the
    /// researcher may have received them (sending them again may duplicate
    /// them; a fedroute or Fed-BioMed researcher keeps the first copy of a
    /// request id).
    pub unacknowledged: Vec<Envelope>,
    /// Feedback messages (logs, scalars) still queued, written or not.
    pub unsent_feedback: usize,
    /// Messages kept in the delivery store of the state directory (after
    /// [`Shutdown`] only): not delivered yet, not lost either; they are
    /// sent after the next start with the same state directory. They are
    /// in neither list above (sending them by other means would duplicate
    /// them).
    pub stored: usize,
}

impl ShutdownReport {
    /// Every message not known to be delivered (unsent, unacknowledged and
    /// feedback).
    pub fn undelivered(&self) -> usize {
        self.unsent.len() + self.unacknowledged.len() + self.unsent_feedback
    }
}

/// Tells the controller, if it still exists.
pub(crate) fn notify(events: &WeakRecipient<LinkEvent>, event: LinkEvent) {
    if let Some(r) = events.upgrade() {
        r.do_send(event);
    }
}
