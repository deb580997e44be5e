//! The `Controller` actor: the node's single entry point to all its
//! researchers (the Rust form of Fed-BioMed's `GrpcController`).
//!
//! It starts one [`ResearcherLink`] per endpoint under an
//! [`actix::Supervisor`], keeps the map researcher id -> endpoint (learnt from
//! each server certificate and from tasks), and answers the node service's
//! messages: [`Send`], [`Broadcast`], [`SendFeedback`], [`IsConnected`],
//! [`Status`], [`AddResearcher`], [`RemoveResearcher`] and [`Shutdown`].
//! Tasks go to the handler as [`TaskReceived`] messages.
//!
//! ```no_run
//! use actix::prelude::*;
//! use fedroute::node::{Controller, ControllerConfig, ResearcherEndpoint, Send, TaskReceived};
//!
//! struct Echo(Option<Addr<Controller>>);
//! impl Actor for Echo { type Context = Context<Self>; }
//! impl Handler<TaskReceived> for Echo {
//!     type Result = ();
//!     fn handle(&mut self, task: TaskReceived, _: &mut Context<Self>) {
//!         // Answer with the request itself (a real node builds a reply).
//!         if let Some(controller) = &self.0 {
//!             controller.do_send(Send(task.message));
//!         }
//!     }
//! }
//!
//! # fn main() {
//! actix::System::new().block_on(async {
//!     let handler = Echo(None).start();
//!     let controller = Controller::new(
//!         "NODE_1".into(),
//!         "node one".into(),
//!         vec![ResearcherEndpoint::trust_on_first_use("127.0.0.1", 50051)],
//!         handler.recipient(),
//!         None,
//!         ControllerConfig::default(),
//!     )
//!     .start();
//!     let connected = controller.send(fedroute::node::IsConnected).await;
//!     println!("connected: {connected:?}");
//! });
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::future::join_all;

use super::config::ControllerConfig;
use super::error::NodeError;
use super::link::{
    endpoint_key, Close, Drain, Intake, LinkShared, ResearcherEndpoint, ResearcherLink,
};
use super::outbox::Outgoing;
use super::status::LinkStatus;
use crate::proto;
use crate::wire::{Envelope, Feedback, FeedbackMessage, Log, PROTOCOL_VERSION};

/// Mailbox bound of the controller (log forwarding uses `try_send` against it).
pub(super) const CONTROLLER_MAILBOX_CAPACITY: usize = 1024;

/// Extra time given to links to answer after a shutdown deadline.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A task from a researcher, delivered to the node's handler.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct TaskReceived {
    /// The researcher that sent it (checked against the link's known id).
    pub researcher_id: String,
    /// The message.
    pub message: Envelope,
}

/// Why the controller finished (sent to the on-finish recipient).
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Messages that could not be sent (see [`ShutdownReport`]).
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
}

/// Send a message to the researcher named by its `researcher_id`, by `ReplyTask`.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), NodeError>")]
pub struct Send(pub Envelope);

/// Send a message to every researcher; answers, per link (`host:port`),
/// whether it was queued.
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

/// Remove a researcher at run time; answers with the messages still queued for it.
#[derive(Message, Debug)]
#[rtype(result = "Result<Vec<Envelope>, NodeError>")]
pub struct RemoveResearcher {
    /// Host as given in its endpoint.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Stop polling, send what is queued within `deadline`, report what could not
/// be sent, then refuse further work (`Send` answers [`NodeError::ShutDown`]).
#[derive(Message, Debug)]
#[rtype(result = "ShutdownReport")]
pub struct Shutdown {
    /// Time allowed to flush the outgoing queues.
    pub deadline: Duration,
}

/// What [`Shutdown`] could not send.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Messages still queued at the deadline, in queue order per link.
    pub unsent: Vec<Envelope>,
    /// Feedback messages (logs, scalars) still queued at the deadline.
    pub unsent_feedback: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Running,
    ShuttingDown,
    Stopped,
}

struct LinkEntry {
    endpoint: ResearcherEndpoint,
    key: String,
    addr: Addr<ResearcherLink>,
    shared: Arc<LinkShared>,
}

/// The node's controller actor (see the module docs).
pub struct Controller {
    node_id: String,
    node_name: String,
    config: Arc<ControllerConfig>,
    handler: Recipient<TaskReceived>,
    on_finish: Option<Recipient<Finished>>,
    pending: Vec<ResearcherEndpoint>,
    links: Vec<LinkEntry>,
    routes: HashMap<String, String>,
    state: RunState,
    finished_told: bool,
    /// The receive budget and decoder every link shares.
    intake: Intake,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("node_id", &self.node_id)
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller for node `node_id` (`node_name` for humans) dialling
    /// `endpoints`; tasks go to `handler`; `on_finish` is told when the
    /// controller is done. Start it with [`Actor::start`].
    pub fn new(
        node_id: String,
        node_name: String,
        endpoints: Vec<ResearcherEndpoint>,
        handler: Recipient<TaskReceived>,
        on_finish: Option<Recipient<Finished>>,
        config: ControllerConfig,
    ) -> Controller {
        Controller {
            node_id,
            node_name,
            intake: Intake::new(&config),
            config: Arc::new(config),
            handler,
            on_finish,
            pending: endpoints,
            links: Vec::new(),
            routes: HashMap::new(),
            state: RunState::Running,
            finished_told: false,
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    fn add_link(
        &mut self,
        endpoint: ResearcherEndpoint,
        ctx: &mut Context<Self>,
    ) -> Result<(), NodeError> {
        let key = endpoint.key();
        if self.links.iter().any(|l| l.key == key) {
            return Err(NodeError::DuplicateEndpoint { endpoint: key });
        }
        let shared = Arc::new(LinkShared::new(key.clone(), &self.config));
        let link = ResearcherLink::new(
            endpoint.clone(),
            self.node_id.clone(),
            Arc::clone(&self.config),
            self.handler.clone(),
            ctx.address().downgrade().recipient(),
            Arc::clone(&shared),
            self.intake.clone(),
        );
        let addr = actix::Supervisor::start(move |_| link);
        log::info!("node {}: researcher link to {key} added", self.node_id);
        self.links.push(LinkEntry {
            endpoint,
            key,
            addr,
            shared,
        });
        self.finished_told = false;
        Ok(())
    }

    fn running(&self) -> Result<(), NodeError> {
        match self.state {
            RunState::Running => Ok(()),
            _ => Err(NodeError::ShutDown),
        }
    }

    fn route(&self, researcher_id: &str) -> Result<&LinkEntry, NodeError> {
        let by_map = self
            .routes
            .get(researcher_id)
            .and_then(|key| self.links.iter().find(|l| &l.key == key));
        by_map
            .or_else(|| {
                // A link may know its id before its event reached us.
                self.links
                    .iter()
                    .find(|l| l.shared.researcher_id().as_deref() == Some(researcher_id))
            })
            .ok_or_else(|| NodeError::UnknownResearcher {
                researcher_id: researcher_id.to_string(),
            })
    }

    fn tell_finished(&mut self, reason: FinishReason, unsent: usize) {
        if self.finished_told {
            return;
        }
        self.finished_told = true;
        log::info!("node {}: controller finished ({reason:?})", self.node_id);
        if let Some(r) = &self.on_finish {
            r.do_send(Finished { reason, unsent });
        }
    }

    fn feedback_log(&self, record: ForwardLog) -> Outgoing {
        let log = Log::fedbiomed(&self.node_id, &record.target, &record.level, &record.msg);
        let feedback = FeedbackMessage {
            protocol_version: PROTOCOL_VERSION.to_owned(),
            researcher_id: record.researcher_id,
            feedback: Feedback::Log(log),
        };
        Outgoing::Feedback(proto::FeedbackMessage::from(feedback))
    }

    /// Queues feedback `item` for `researcher_id`'s link, or every link;
    /// the outcome per link.
    fn feedback(
        &self,
        item: Outgoing,
        researcher_id: Option<&str>,
    ) -> Result<Vec<Queued<'_>>, NodeError> {
        let links: Vec<&LinkEntry> = match researcher_id {
            Some(id) => vec![self.route(id)?],
            None => self.links.iter().collect(),
        };
        Ok(links
            .into_iter()
            .map(|l| (l, l.shared.enqueue(item.clone())))
            .collect())
    }
}

/// A link and whether an item was queued for it.
type Queued<'a> = (&'a LinkEntry, Result<(), NodeError>);

/// Turns unsent queue items back into envelopes for a report.
fn unsent_report(items: Vec<Outgoing>, report: &mut ShutdownReport) {
    for item in items {
        match item {
            Outgoing::Message(payload) => match Envelope::decode(payload.to_bytes()) {
                Ok(envelope) => report.unsent.push(envelope),
                // Cannot happen for bytes we encoded; say so if it does.
                Err(e) => log::error!("an unsent message could not be decoded for the report: {e}"),
            },
            Outgoing::Feedback(_) => report.unsent_feedback += 1,
        }
    }
}

impl Actor for Controller {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(CONTROLLER_MAILBOX_CAPACITY);
        for endpoint in std::mem::take(&mut self.pending) {
            if let Err(e) = self.add_link(endpoint, ctx) {
                log::warn!("node {}: {e}", self.node_id);
            }
        }
    }
}

impl Handler<Send> for Controller {
    type Result = Result<(), NodeError>;

    fn handle(&mut self, msg: Send, _: &mut Context<Self>) -> Self::Result {
        self.running()?;
        let envelope = msg.0;
        let Some(id) = envelope.researcher_id() else {
            return Err(NodeError::MissingResearcherId {
                class: envelope.class().to_string(),
            });
        };
        let link = self.route(id)?;
        link.shared
            .enqueue(Outgoing::Message(envelope.to_payload()))
    }
}

impl Handler<Broadcast> for Controller {
    type Result = MessageResult<Broadcast>;

    fn handle(&mut self, msg: Broadcast, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.running() {
            return MessageResult(vec![(String::new(), Err(e))]);
        }
        let item = Outgoing::Message(msg.0.to_payload());
        MessageResult(
            self.links
                .iter()
                .map(|l| (l.key.clone(), l.shared.enqueue(item.clone())))
                .collect(),
        )
    }
}

impl Handler<SendFeedback> for Controller {
    type Result = Result<(), NodeError>;

    fn handle(&mut self, msg: SendFeedback, _: &mut Context<Self>) -> Self::Result {
        self.running()?;
        let id = msg.0.researcher_id.clone();
        let item = Outgoing::Feedback(proto::FeedbackMessage::from(msg.0));
        // Queued for one link at least, or the last error.
        let mut outcome = Err(NodeError::UnknownResearcher {
            researcher_id: "<any>".to_string(),
        });
        for (_, r) in self.feedback(item, id.as_deref())? {
            if r.is_ok() || outcome.is_err() {
                outcome = r;
            }
        }
        outcome
    }
}

impl Handler<ForwardLog> for Controller {
    type Result = ();

    fn handle(&mut self, msg: ForwardLog, _: &mut Context<Self>) {
        if self.running().is_err() {
            return;
        }
        let target = msg.researcher_id.clone();
        let item = self.feedback_log(msg);
        let queued = match self.feedback(item, target.as_deref()) {
            Ok(queued) => queued,
            // This module's records are never forwarded, so no loop.
            Err(e) => {
                log::debug!("node {}: a log record was not forwarded: {e}", self.node_id);
                return;
            }
        };
        for (link, r) in queued {
            match r {
                Ok(()) => {}
                // A log flood must not crowd out replies: drop and count.
                Err(NodeError::FeedbackQueueFull { .. }) => {
                    link.shared.status().feedback_dropped += 1;
                }
                Err(e) => log::debug!("node {}: a log record was not forwarded: {e}", self.node_id),
            }
        }
    }
}

impl Handler<IsConnected> for Controller {
    type Result = bool;

    fn handle(&mut self, _: IsConnected, _: &mut Context<Self>) -> bool {
        self.state == RunState::Running
            && !self.links.is_empty()
            && self.links.iter().all(|l| l.shared.status().is_live())
    }
}

impl Handler<Status> for Controller {
    type Result = MessageResult<Status>;

    fn handle(&mut self, _: Status, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.links.iter().map(|l| l.shared.snapshot()).collect())
    }
}

impl Handler<LinkEvent> for Controller {
    type Result = ();

    fn handle(&mut self, event: LinkEvent, _: &mut Context<Self>) {
        match event {
            LinkEvent::Identified {
                endpoint,
                researcher_id,
            } => {
                log::info!(
                    "node {}: {endpoint} is researcher {researcher_id}",
                    self.node_id
                );
                if let Some(other) = self.routes.get(&researcher_id) {
                    if other != &endpoint {
                        log::warn!(
                            "node {}: researcher {researcher_id} is reachable at {other} and {endpoint}; \
                             replies go to {endpoint}",
                            self.node_id
                        );
                    }
                }
                self.routes.insert(researcher_id, endpoint);
            }
            LinkEvent::Failed { endpoint, reason } => {
                log::error!("node {}: link to {endpoint} failed: {reason}", self.node_id);
                let all_failed = !self.links.is_empty()
                    && self.links.iter().all(|l| l.shared.status().is_terminal());
                if all_failed && self.state == RunState::Running {
                    self.tell_finished(FinishReason::AllLinksFailed, 0);
                }
            }
        }
    }
}

impl Handler<AddResearcher> for Controller {
    type Result = Result<(), NodeError>;

    fn handle(&mut self, msg: AddResearcher, ctx: &mut Context<Self>) -> Self::Result {
        self.running()?;
        self.add_link(msg.0, ctx)
    }
}

impl Handler<RemoveResearcher> for Controller {
    type Result = ResponseActFuture<Self, Result<Vec<Envelope>, NodeError>>;

    fn handle(&mut self, msg: RemoveResearcher, _: &mut Context<Self>) -> Self::Result {
        let key = endpoint_key(&msg.host, msg.port);
        let Some(pos) = self.links.iter().position(|l| l.key == key) else {
            return Box::pin(fut::ready(Err(NodeError::UnknownEndpoint {
                endpoint: key,
            })));
        };
        let entry = self.links.remove(pos);
        self.routes.retain(|_, k| k != &key);
        log::info!(
            "node {}: researcher link to {} removed",
            self.node_id,
            entry.endpoint
        );
        let fut = async move {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, entry.addr.send(Close)).await;
            let mut report = ShutdownReport::default();
            unsent_report(entry.shared.outbox().take_all(), &mut report);
            Ok(report.unsent)
        };
        Box::pin(fut.into_actor(self))
    }
}

impl Handler<Shutdown> for Controller {
    type Result = ResponseActFuture<Self, ShutdownReport>;

    fn handle(&mut self, msg: Shutdown, _: &mut Context<Self>) -> Self::Result {
        if self.state != RunState::Running {
            return Box::pin(fut::ready(ShutdownReport::default()));
        }
        self.state = RunState::ShuttingDown;
        log::info!(
            "node {}: shutting down, flushing {} link(s) within {:?}",
            self.node_id,
            self.links.len(),
            msg.deadline
        );
        let deadline = tokio::time::Instant::now() + msg.deadline;
        let links: Vec<(Addr<ResearcherLink>, Arc<LinkShared>)> = self
            .links
            .iter()
            .map(|l| (l.addr.clone(), Arc::clone(&l.shared)))
            .collect();
        let fut = async move {
            let drains = links.into_iter().map(|(addr, shared)| async move {
                let _ = tokio::time::timeout_at(
                    deadline + SHUTDOWN_GRACE,
                    addr.send(Drain { deadline }),
                )
                .await;
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, addr.send(Close)).await;
                let unsent = shared.outbox().take_all();
                unsent
            });
            join_all(drains).await
        };
        Box::pin(fut.into_actor(self).map(|unsent, act, _| {
            let mut report = ShutdownReport::default();
            for items in unsent {
                unsent_report(items, &mut report);
            }
            act.links.clear();
            act.routes.clear();
            act.state = RunState::Stopped;
            let count = report.unsent.len() + report.unsent_feedback;
            if count > 0 {
                log::warn!(
                    "node {}: {count} message(s) could not be sent before the deadline",
                    act.node_id
                );
            }
            act.finished_told = false;
            act.tell_finished(FinishReason::Shutdown, count);
            report
        }))
    }
}
