//! The `Controller` actor: the node's single entry point to all its
//! researchers (the Rust form of Fed-BioMed's `GrpcController`).
//!
//! It starts one [`ResearcherLink`] per endpoint under an
//! [`actix::Supervisor`], finds a researcher's link by the id each link's
//! status records (learnt from its server certificate or its first task),
//! and answers the node service's
//! messages: [`SendReply`], [`Broadcast`], [`SendFeedback`], [`IsConnected`],
//! [`Status`], [`AddResearcher`], [`RemoveResearcher`] and [`Shutdown`].
//! Tasks go to the handler as [`TaskReceived`] messages.
//!
//! A handler answers through the [`Replier`] each task carries, so it
//! needs no address of the controller; the controller is built with
//! [`Controller::builder`]:
//! ```no_run
//! use actix::prelude::*;
//! use fedroute::node::{Controller, ResearcherEndpoint, TaskReceived};
//! use fedroute::wire::{Envelope, PingReply};
//!
//! struct Pong;
//! impl Actor for Pong { type Context = Context<Self>; }
//! impl Handler<TaskReceived> for Pong {
//!     type Result = ResponseFuture<()>;
//!     fn handle(&mut self, task: TaskReceived, _: &mut Context<Self>) -> Self::Result {
//!         Box::pin(async move {
//!             if task.message.class() != "PingRequest" { return }
//!             let pong = PingReply::answer(&task.message, "NODE_1", "node one");
//!             if let Err(e) = task.reply.send(Envelope::from_typed(&pong).unwrap()).await {
//!                 log::warn!("the reply was not queued: {}", fedroute::ErrorChain(&e));
//!             }
//!         })
//!     }
//! }
//!
//! # fn main() {
//! actix::System::new().block_on(async {
//!     let controller = Controller::builder("NODE_1")
//!         .name("node one")
//!         .researcher(ResearcherEndpoint::trust_on_first_use("127.0.0.1", 50051))
//!         .start(Pong.start().recipient())
//!         .expect("the configuration is valid and the trust store readable");
//!     let connected = controller.send(fedroute::node::IsConnected).await;
//!     println!("connected: {connected:?}");
//! });
//! # }
//! ```
//!
//! The handler runs on the arbiter it was started on; the controller and its
//! links run on theirs. CPU-bound work (training) must not run inside a
//! handler on the controller's arbiter, or every link stalls while it runs:
//! start the handler on an arbiter of its own (`Arbiter::new` +
//! `Actor::start_in_arbiter`) or move the work to
//! `tokio::task::spawn_blocking` / an `actix::SyncArbiter` and reply when it
//! is done (see `examples/embedded_node.rs`).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::future::{join_all, Either};

use super::config::ControllerConfig;
use super::endpoint::{endpoint_key, ResearcherEndpoint};
use super::error::NodeError;
use super::handler::HandlerSlot;
use super::link::{Close, Drain, Intake, LinkWiring, ResearcherLink};
use super::messages::{
    AddResearcher, Broadcast, FinishReason, Finished, ForwardLog, IsConnected, LinkChange,
    LinkEvent, RemoveResearcher, Replier, SendFeedback, SendReply, SetHandler, Shutdown,
    ShutdownReport, Status, TaskReceived,
};
use super::outbox::Outgoing;
use super::shared::LinkShared;
use super::trust::NodeTrust;
use crate::proto;
use crate::store::{DeliveryStore, Recovered};
use crate::wire::{Envelope, FeedbackMessage, Log};
use crate::ErrorChain;

/// Mailbox bound of the controller (log forwarding uses `try_send` against it).
pub(super) const CONTROLLER_MAILBOX_CAPACITY: usize = 1024;

/// Extra time given to links to answer after a shutdown deadline.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

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

/// The node's controller actor (see the module docs). It runs until
/// [`Shutdown`] (or the end of its `System`), whether or not anyone keeps
/// its address.
pub struct Controller {
    node_id: String,
    node_name: String,
    config: Arc<ControllerConfig>,
    handler: Arc<HandlerSlot>,
    on_finish: Option<Recipient<Finished>>,
    on_link_change: Option<Recipient<LinkChange>>,
    pending: Vec<ResearcherEndpoint>,
    links: Vec<LinkEntry>,
    state: RunState,
    finished_told: bool,
    /// The receive budget and decoder every link shares.
    intake: Intake,
    /// The trust store every link shares.
    trust: NodeTrust,
    /// The durable outbox of the state directory, if any.
    store: Option<DeliveryStore>,
    /// What the store held at start, handed to each link as it is added.
    recovered: Recovered,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("node_id", &self.node_id)
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Controller`]: `Controller::builder(node_id)`, then the
/// researchers, optional recipients and configuration, then
/// [`build`](ControllerBuilder::build) or [`start`](ControllerBuilder::start)
/// with the handler that receives the tasks.
#[derive(Debug)]
#[must_use = "a builder does nothing until built or started"]
pub struct ControllerBuilder {
    node_id: String,
    node_name: Option<String>,
    endpoints: Vec<ResearcherEndpoint>,
    on_finish: Option<Recipient<Finished>>,
    on_link_change: Option<Recipient<LinkChange>>,
    config: ControllerConfig,
}

impl ControllerBuilder {
    /// The node's name for humans (default: its id).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.node_name = Some(name.into());
        self
    }

    /// Adds a researcher to dial (more can be added at run time with
    /// [`AddResearcher`]).
    pub fn researcher(mut self, endpoint: ResearcherEndpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// Adds researchers to dial.
    pub fn researchers(mut self, endpoints: impl IntoIterator<Item = ResearcherEndpoint>) -> Self {
        self.endpoints.extend(endpoints);
        self
    }

    /// Told once, with [`Finished`], when the controller is done.
    pub fn on_finish(mut self, recipient: impl Into<Option<Recipient<Finished>>>) -> Self {
        self.on_finish = recipient.into();
        self
    }

    /// Told every [`LinkChange`]: a link up, down, or failed for good.
    pub fn on_link_change(mut self, recipient: impl Into<Option<Recipient<LinkChange>>>) -> Self {
        self.on_link_change = recipient.into();
        self
    }

    /// The configuration (default [`ControllerConfig::default`]).
    pub fn config(mut self, config: ControllerConfig) -> Self {
        self.config = config;
        self
    }

    /// The controller, delivering tasks to `handler`; start it with
    /// [`Actor::start`] (or on an arbiter of its own). Checks the
    /// configuration ([`ControllerConfig::validate`]) and opens the trust
    /// store of its state directory: a damaged store is an error naming
    /// the file.
    pub fn build(self, handler: Recipient<TaskReceived>) -> Result<Controller, NodeError> {
        self.config
            .validate()
            .map_err(|source| NodeError::Config { source })?;
        let trust = NodeTrust::open(&self.config)?;
        let (store, recovered) = match &self.config.state_dir {
            Some(dir) => {
                let (store, recovered) = DeliveryStore::open(dir, self.config.queues.dedup_window)
                    .map_err(|source| NodeError::Store { source })?;
                (Some(store), recovered)
            }
            None => (None, Recovered::default()),
        };
        Ok(Controller {
            trust,
            store,
            recovered,
            node_name: self.node_name.unwrap_or_else(|| self.node_id.clone()),
            node_id: self.node_id,
            intake: Intake::new(&self.config),
            config: Arc::new(self.config),
            handler: HandlerSlot::new(handler),
            on_finish: self.on_finish,
            on_link_change: self.on_link_change,
            pending: self.endpoints,
            links: Vec::new(),
            state: RunState::Running,
            finished_told: false,
        })
    }

    /// Builds the controller (see [`ControllerBuilder::build`]) and starts
    /// it on the current arbiter.
    pub fn start(self, handler: Recipient<TaskReceived>) -> Result<Addr<Controller>, NodeError> {
        Ok(self.build(handler)?.start())
    }
}

impl Controller {
    /// A builder for the controller of node `node_id`.
    pub fn builder(node_id: impl Into<String>) -> ControllerBuilder {
        ControllerBuilder {
            node_id: node_id.into(),
            node_name: None,
            endpoints: Vec::new(),
            on_finish: None,
            on_link_change: None,
            config: ControllerConfig::default(),
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
        let shared = Arc::new(LinkShared::new(
            key.clone(),
            &self.config,
            self.store.clone(),
        ));
        let kept = self.recovered.take_items(&key);
        if !kept.is_empty() {
            log::info!(
                "node {}: {} message(s) for {key} kept from before the restart are sent again",
                self.node_id,
                kept.len()
            );
        }
        shared.restore(kept);
        // A researcher known from the trust store can be sent replies (they
        // queue) before its link is up again.
        shared.status().researcher_id = self.trust.researcher_id(&key);
        let link = ResearcherLink::new(
            endpoint.clone(),
            self.node_id.clone(),
            Arc::clone(&self.config),
            LinkWiring {
                handler: Arc::clone(&self.handler),
                events: ctx.address().downgrade().recipient(),
                replier: Replier::new(ctx.address().downgrade().recipient()),
                trust: self.trust.clone(),
                answered: self.recovered.take_answered(&key),
            },
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

    /// The link of `researcher_id`: each link's status is the one record of
    /// its researcher's id (from its certificate or its first task). When
    /// two endpoints lead to the same researcher, a connected link wins.
    fn route(&self, researcher_id: &str) -> Result<&LinkEntry, NodeError> {
        let mut first = None;
        for link in &self.links {
            let status = link.shared.status();
            if status.researcher_id.as_deref() != Some(researcher_id) {
                continue;
            }
            if status.state == super::LinkState::Connected {
                return Ok(link);
            }
            first.get_or_insert(link);
        }
        first.ok_or_else(|| NodeError::UnknownResearcher {
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
        let feedback = FeedbackMessage::with_log(record.researcher_id, log);
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

/// Turns what was left in a link's queue (written but unacknowledged, never
/// written) back into envelopes for a report.
fn unsent_report((attempted, never): (Vec<Outgoing>, Vec<Outgoing>), report: &mut ShutdownReport) {
    let items = attempted
        .into_iter()
        .map(|i| (true, i))
        .chain(never.into_iter().map(|i| (false, i)));
    for (written, item) in items {
        match item {
            Outgoing::Message(payload, _) => match Envelope::decode(payload.to_bytes()) {
                Ok(envelope) if written => report.unacknowledged.push(envelope),
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
                log::warn!("node {}: {}", self.node_id, ErrorChain(&e));
            }
        }
        for (endpoint, items) in &self.recovered.items {
            log::warn!(
                "node {}: the delivery store keeps {} message(s) for {endpoint}, which is not \
                 configured; they are sent once it is added (AddResearcher)",
                self.node_id,
                items.len()
            );
        }
    }

    /// Its last address dropped is no reason for a node to stop serving: a
    /// handler answers through each task's [`Replier`] and needs none. Only
    /// [`Shutdown`] (or the end of its `System`) stops the controller.
    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        if self.state == RunState::Running {
            Running::Continue
        } else {
            Running::Stop
        }
    }
}

impl Handler<SendReply> for Controller {
    // A `Response` answers a reply queued in memory at once; only a write
    // to the delivery store costs a task.
    type Result = Response<Result<(), NodeError>>;

    fn handle(&mut self, msg: SendReply, _: &mut Context<Self>) -> Self::Result {
        let queued = (|| {
            self.running()?;
            let envelope = msg.0;
            let Some(id) = envelope.researcher_id() else {
                return Err(NodeError::MissingResearcherId {
                    class: envelope.class().to_string(),
                });
            };
            let link = self.route(id)?;
            let request_id = envelope.request_id().map(str::to_string);
            Ok(link
                .shared
                .enqueue_message(envelope.to_payload(), request_id))
        })();
        match queued {
            Ok(Either::Left(now)) => Response::reply(now.into_inner()),
            Ok(Either::Right(stored)) => Response::fut(stored),
            Err(e) => Response::reply(Err(e)),
        }
    }
}

impl Handler<Broadcast> for Controller {
    type Result = Response<Vec<(String, Result<(), NodeError>)>>;

    fn handle(&mut self, msg: Broadcast, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.running() {
            return Response::reply(vec![(String::new(), Err(e))]);
        }
        let payload = msg.0.to_payload();
        let request_id = msg.0.request_id().map(str::to_string);
        let queued: Vec<_> = self
            .links
            .iter()
            .map(|l| {
                let queued = l
                    .shared
                    .enqueue_message(payload.clone(), request_id.clone());
                (l.key.clone(), queued)
            })
            .collect();
        if queued.iter().all(|(_, q)| matches!(q, Either::Left(_))) {
            let now = queued.into_iter().filter_map(|(key, q)| match q {
                Either::Left(now) => Some((key, now.into_inner())),
                Either::Right(_) => None,
            });
            return Response::reply(now.collect());
        }
        Response::fut(join_all(
            queued
                .into_iter()
                .map(|(key, queued)| async move { (key, queued.await) }),
        ))
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
                log::debug!(
                    "node {}: a log record was not forwarded: {}",
                    self.node_id,
                    ErrorChain(&e)
                );
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
                Err(e) => log::debug!(
                    "node {}: a log record was not forwarded: {}",
                    self.node_id,
                    ErrorChain(&e)
                ),
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
                let others: Vec<&str> = self
                    .links
                    .iter()
                    .filter(|l| l.key != endpoint)
                    .filter(|l| l.shared.researcher_id().as_deref() == Some(researcher_id.as_str()))
                    .map(|l| l.key.as_str())
                    .collect();
                if !others.is_empty() {
                    log::warn!(
                        "node {}: researcher {researcher_id} is reachable at {} and {endpoint}; \
                         replies go to a connected one",
                        self.node_id,
                        others.join(", ")
                    );
                }
            }
            LinkEvent::Changed(change) => {
                if let Some(r) = &self.on_link_change {
                    r.do_send(change);
                }
            }
            LinkEvent::Failed { endpoint, reason } => {
                log::error!("node {}: link to {endpoint} failed: {reason}", self.node_id);
                if let Some(r) = &self.on_link_change {
                    r.do_send(LinkChange::Down {
                        endpoint: endpoint.clone(),
                        reason: reason.clone(),
                        for_good: true,
                    });
                }
                let all_failed = !self.links.is_empty()
                    && self.links.iter().all(|l| l.shared.status().is_terminal());
                if all_failed && self.state == RunState::Running {
                    self.tell_finished(FinishReason::AllLinksFailed, 0);
                }
            }
        }
    }
}

impl Handler<SetHandler> for Controller {
    type Result = ();

    fn handle(&mut self, msg: SetHandler, _: &mut Context<Self>) {
        log::info!("node {}: task handler replaced", self.node_id);
        self.handler.set(msg.0);
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
    type Result = ResponseActFuture<Self, Result<ShutdownReport, NodeError>>;

    fn handle(&mut self, msg: RemoveResearcher, _: &mut Context<Self>) -> Self::Result {
        let key = endpoint_key(&msg.host, msg.port);
        let Some(pos) = self.links.iter().position(|l| l.key == key) else {
            return Box::pin(fut::ready(Err(NodeError::UnknownEndpoint {
                endpoint: key,
            })));
        };
        let entry = self.links.remove(pos);
        log::info!(
            "node {}: researcher link to {} removed",
            self.node_id,
            entry.endpoint
        );
        let fut = async move {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, entry.addr.send(Close)).await;
            let mut report = ShutdownReport::default();
            let (written, never) = entry.shared.outbox().take_all();
            // Given back to the application: no longer the store's to send.
            entry.shared.forget_stored(&written);
            entry.shared.forget_stored(&never);
            unsent_report((written, never), &mut report);
            Ok(report)
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
        let store = self.store.clone();
        let fut = async move {
            let drains = links.into_iter().map(|(addr, shared)| async move {
                let _ = tokio::time::timeout_at(
                    deadline + SHUTDOWN_GRACE,
                    addr.send(Drain { deadline }),
                )
                .await;
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, addr.send(Close)).await;
                let left = shared.outbox().take_all();
                (shared.is_durable(), left)
            });
            let left = join_all(drains).await;
            // The removals of what was acknowledged reach the disk, so the
            // next start does not send it again; the directory is free for
            // the next controller.
            if let Some(store) = store {
                if let Err(e) = store.close().await {
                    log::warn!("{}", ErrorChain(&e));
                }
            }
            left
        };
        Box::pin(fut.into_actor(self).map(|unsent, act, _| {
            let mut report = ShutdownReport::default();
            for (durable, (written, never)) in unsent {
                if durable {
                    // Still in the delivery store: sent after the next start.
                    report.stored += written
                        .iter()
                        .chain(&never)
                        .filter(|i| !i.is_feedback())
                        .count();
                    report.unsent_feedback += written
                        .iter()
                        .chain(&never)
                        .filter(|i| i.is_feedback())
                        .count();
                } else {
                    unsent_report((written, never), &mut report);
                }
            }
            act.links.clear();
            act.store = None;
            act.state = RunState::Stopped;
            let count = report.undelivered();
            if count > 0 {
                log::warn!(
                    "node {}: {count} message(s) not delivered before the deadline \
                     ({} never sent, {} sent but not acknowledged, {} feedback)",
                    act.node_id,
                    report.unsent.len(),
                    report.unacknowledged.len(),
                    report.unsent_feedback
                );
            }
            act.finished_told = false;
            act.tell_finished(FinishReason::Shutdown, count);
            report
        }))
    }
}
