//! `ResearcherLink`: the supervised actor that owns the connection to one
//! researcher.
//!
//! Life of a link:
//! 1. `started`: dial (after a backoff delay, except for the very first
//!    attempt): apply the endpoint's [`TrustPolicy`] (trust on first use
//!    fetches the certificate and has the controller's trust store decide on
//!    it before anything is sent: a certificate other than the trusted one,
//!    without a valid rotation proof, is refused and retried with back-off),
//!    check the researcher id against the one known for this endpoint, open
//!    the tonic channel.
//! 2. Connected: spawn the poll loop ([`Poller`]) and the send pump
//!    ([`Pump`]) as actor futures; both report back when they end.
//! 3. Connection lost (a failed dial, poll or send): `ctx.stop()`. The
//!    [`actix::Supervisor`] keeps the actor value and its mailbox, drops the
//!    futures, calls [`Supervised::restarting`] (which resets the connection
//!    state) and `started` again. The outgoing queue and the counters live in
//!    [`LinkShared`], so they survive.
//! 4. Failed for good (a researcher id change, or the researcher refusing
//!    the node's identity with UNAUTHENTICATED) or closed: the
//!    link stays idle until the controller drops it.
//!
//! The controller talks to a link through [`LinkShared`] for the hot path
//! (queueing a message is a push under a short lock plus a wake-up, no
//! mailbox round trip) and through messages ([`Drain`], [`Close`]) for
//! control.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix::WeakRecipient;
use tonic::transport::Channel;

use super::backoff::Backoff;
use super::config::ControllerConfig;
use super::dedup::RecentIds;
use super::endpoint::{check_same_researcher, ResearcherEndpoint};
use super::error::NodeError;
use super::handler::HandlerSlot;
use super::life::{Attempt, LinkLife};
use super::listener::{PollEnd, Poller, TaskAssembler};
use super::messages::{notify, LinkChange, LinkEvent, Replier};
use super::probe::{self, ProbeSchedule};
use super::progress::{LastData, LinkClient, Progress};
use super::shared::LinkShared;
use super::trust::NodeTrust;

use super::sender::Pump;
use super::status::{LinkState, PollMode};
use crate::log_limit::PeerLog;
use crate::tls;
use crate::wire::{
    check_id, BufferPool, IdKind, MessageDecoder, ReceiveBudget, GRPC_MAX_MESSAGE_BYTES,
};

/// Longest wait for one knock's TCP connection.
const PROBE_KNOCK_TIMEOUT: Duration = Duration::from_secs(1);
use crate::ErrorChain;

/// What all the links of a controller share to receive tasks: one receive
/// budget and one decoder (with its bound on large decodes at once).
#[derive(Clone, Debug)]
pub(super) struct Intake {
    /// Bytes held by tasks still being received, all links together.
    pub budget: ReceiveBudget,
    /// Decodes tasks, large ones off the event loop.
    pub decoder: MessageDecoder,
}

impl Intake {
    /// The intake `config` asks for.
    pub(super) fn new(config: &ControllerConfig) -> Intake {
        Intake {
            budget: ReceiveBudget::new(config.receive.budget_bytes),
            decoder: MessageDecoder::new(
                config.receive.decode_limits,
                config.receive.decode_threads,
            ),
        }
    }
}

/// The result of a successful dial.
struct Dialled {
    channel: Channel,
    researcher_id: Option<String>,
}

/// The actor owning the connection to one researcher (see the module docs).
pub(crate) struct ResearcherLink {
    endpoint: ResearcherEndpoint,
    key: String,
    node_id: String,
    config: Arc<ControllerConfig>,
    handler: Arc<HandlerSlot>,
    events: WeakRecipient<LinkEvent>,
    /// What each task carries for the handler to reply with.
    replier: Replier,
    shared: Arc<LinkShared>,
    /// Where the link stands between dials.
    life: LinkLife,
    trust: NodeTrust,
    mode: PollMode,
    client: Option<LinkClient>,
    /// When data last arrived on the current channel.
    last_data: Option<LastData>,
    poll: Option<SpawnHandle>,
    /// Request ids received lately, across reconnections (the actor value
    /// survives supervisor restarts).
    recent: Arc<Mutex<RecentIds>>,
    /// Reassembly buffers kept for the next large task, across polls.
    buffers: BufferPool,
    /// The controller's receive budget and decoder.
    intake: Intake,
    /// Rate-limited warnings about this researcher, across restarts.
    log: Arc<PeerLog>,
    /// Bytes a refused task needed, to wait for before reconnecting.
    wait_for_room: Option<usize>,
}

/// How a link reaches its controller and the node's handler.
pub(super) struct LinkWiring {
    /// Where tasks go.
    pub(super) handler: Arc<HandlerSlot>,
    /// The controller, told what the link learns and when it changes.
    pub(super) events: WeakRecipient<LinkEvent>,
    /// What each task carries for the handler to reply with.
    pub(super) replier: Replier,
    /// The controller's trust store.
    pub(super) trust: NodeTrust,
    /// The request ids the node answered before a restart (the delivery
    /// store's record), oldest first: their tasks are dropped if they come
    /// again.
    pub(super) answered: Vec<String>,
}

impl std::fmt::Debug for ResearcherLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResearcherLink")
            .field("key", &self.key)
            .field("node_id", &self.node_id)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl ResearcherLink {
    /// A link for `endpoint`; start it with `actix::Supervisor::start(|_| link)`.
    pub(super) fn new(
        endpoint: ResearcherEndpoint,
        node_id: String,
        config: Arc<ControllerConfig>,
        wiring: LinkWiring,
        shared: Arc<LinkShared>,
        intake: Intake,
    ) -> ResearcherLink {
        let LinkWiring {
            handler,
            events,
            replier,
            trust,
            answered,
        } = wiring;
        let mut recent = RecentIds::new(config.queues.dedup_window);
        for id in &answered {
            recent.insert(id);
        }
        ResearcherLink {
            log: Arc::new(PeerLog::new(config.peer_log_rate)),
            wait_for_room: None,
            intake,
            key: endpoint.key(),
            life: LinkLife::new(
                Backoff::new(config.reconnect.backoff_first, config.reconnect.backoff_max),
                !config.reconnect.probe_interval.is_zero(),
            ),
            mode: config.polling.mode,
            recent: Arc::new(Mutex::new(recent)),
            buffers: BufferPool::new(config.receive.buffer_bytes),
            endpoint,
            node_id,
            config,
            handler,
            events,
            replier,
            trust,
            shared,
            client: None,
            last_data: None,
            poll: None,
        }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        let Attempt {
            first,
            delay,
            knock_since,
        } = self.life.next_attempt(std::time::Instant::now());
        let schedule = knock_since.map(|since| {
            ProbeSchedule::new(
                since,
                self.config.reconnect.probe_interval,
                self.config.reconnect.probe_fast_for,
                self.config.reconnect.backoff_max,
            )
        });
        {
            // A refused certificate stays the link's state while it retries:
            // it is what the operator must act on.
            let mut status = self.shared.status();
            if !matches!(status.state, LinkState::CertificateChanged { .. }) {
                status.state = if first {
                    LinkState::Connecting
                } else {
                    LinkState::BackingOff
                };
            }
        }
        let knock_timeout = self.config.channel.connect_timeout.min(PROBE_KNOCK_TIMEOUT);
        let shared = Arc::clone(&self.shared);
        let endpoint = self.endpoint.clone();
        let key = self.key.clone();
        let config = Arc::clone(&self.config);
        let known = self.shared.researcher_id();
        let trust = self.trust.clone();
        // After a task was refused for lack of budget: wait until the others
        // gave some back (at most a stall timeout, after which a stalled
        // holder has been dropped), so the researcher's next try fits.
        let room = self.wait_for_room.take().map(|n| {
            let budget = self.intake.budget.clone();
            let stall = self.config.receive.stall_timeout;
            async move {
                let _ = tokio::time::timeout(stall, budget.room_for(n)).await;
            }
        });
        let fut = async move {
            if let Some(room) = room {
                room.await;
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if let Some(mut schedule) = schedule {
                let knocked = || shared.status().knocks += 1;
                let proxy = endpoint.proxy.as_ref().or(config.channel.proxy.as_ref());
                probe::until_open(
                    &endpoint.host,
                    endpoint.port,
                    proxy,
                    &mut schedule,
                    knock_timeout,
                    knocked,
                )
                .await;
            }
            {
                let mut status = shared.status();
                if !matches!(status.state, LinkState::CertificateChanged { .. }) {
                    status.state = LinkState::Connecting;
                }
            }
            dial(&endpoint, &key, known, &trust, &config).await
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(|res, act, ctx| act.on_dialled(res, ctx)),
        );
    }

    fn on_dialled(&mut self, res: Result<Dialled, NodeError>, ctx: &mut Context<Self>) {
        let d = match res {
            Ok(d) => d,
            Err(e) if e.is_fatal() => return self.fail(e, ctx),
            Err(e) => {
                self.life.dial_failed();
                return self.lost(e, ctx);
            }
        };
        let reconnected = self.life.connected();
        if let Some(id) = &d.researcher_id {
            let mut status = self.shared.status();
            if status.researcher_id.as_deref() != Some(id.as_str()) {
                status.researcher_id = Some(id.clone());
                drop(status);
                notify(
                    &self.events,
                    LinkEvent::Identified {
                        endpoint: self.key.clone(),
                        researcher_id: id.clone(),
                    },
                );
            }
        }
        {
            let mut status = self.shared.status();
            if reconnected {
                status.reconnects += 1;
            }
            status.state = LinkState::Connected;
            status.last_error = None;
            status.certificate_accepted = self.trust.acceptance(&self.key);
        }
        if reconnected {
            log::info!("{}: reconnected", self.key);
        } else {
            log::info!("{}: connected", self.key);
        }
        notify(
            &self.events,
            LinkEvent::Changed(LinkChange::Up {
                endpoint: self.key.clone(),
                researcher_id: self.shared.researcher_id(),
                reconnected,
            }),
        );
        let (client, last_data) = Progress::client(d.channel);
        let client = client
            .max_decoding_message_size(self.config.receive.max_frame_bytes)
            .max_encoding_message_size(GRPC_MAX_MESSAGE_BYTES);
        self.client = Some(client);
        self.last_data = Some(last_data);
        self.start_pump(ctx);
        if !self.life.is_draining() {
            self.start_poll(ctx);
        }
    }

    fn start_poll(&mut self, ctx: &mut Context<Self>) {
        let (Some(client), Some(last_data)) = (self.client.clone(), self.last_data.clone()) else {
            return;
        };
        let poller = Poller {
            client,
            endpoint: self.key.clone(),
            node_id: self.node_id.clone(),
            shared: Arc::clone(&self.shared),
            handler: Arc::clone(&self.handler),
            handler_copy: self.handler.current(),
            events: self.events.clone(),
            replier: self.replier.clone(),
            assembler: TaskAssembler::new(
                self.key.clone(),
                self.config.receive.max_message_bytes,
                self.shared.researcher_id(),
            )
            .with_pool(self.buffers.clone())
            .with_budget(self.intake.budget.clone()),
            last_data,
            budget: self.intake.budget.clone(),
            poll_deadline: self.config.polling.deadline,
            credits: self.config.polling.credits,
            guard: Default::default(),
            recent: Arc::clone(&self.recent),
            decoder: self.intake.decoder.clone(),
            stall_timeout: self.config.receive.stall_timeout,
            log: Arc::clone(&self.log),
        };
        let mode = self.mode;
        let fut = async move { poller.run(mode).await };
        let handle = ctx.spawn(
            fut.into_actor(self)
                .map(|end, act, ctx| act.on_poll_end(end, ctx)),
        );
        self.poll = Some(handle);
    }

    fn on_poll_end(&mut self, end: PollEnd, ctx: &mut Context<Self>) {
        self.poll = None;
        self.shared.status().polling = false;
        match end {
            PollEnd::Unimplemented => {
                log::info!(
                    "{}: the researcher has no streaming GetTask; using GetTaskUnary",
                    self.key
                );
                self.mode = PollMode::Unary;
                self.shared.status().poll_mode = PollMode::Unary;
                self.shared.poll_news.notify_waiters();
                if !self.life.is_draining() {
                    self.start_poll(ctx);
                }
            }
            PollEnd::Lost(e) => self.lost(e, ctx),
            PollEnd::Fatal(e) => self.fail(e, ctx),
        }
    }

    fn start_pump(&mut self, ctx: &mut Context<Self>) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let pump = Pump {
            client,
            endpoint: self.key.clone(),
            shared: Arc::clone(&self.shared),
            send_timeout: self.config.replies.send_timeout,
            max_batch_messages: self.config.replies.max_batch_messages,
            max_batch_bytes: self.config.replies.max_batch_bytes,
            max_rejections: self.config.replies.max_rejections,
            reply_stream: self.config.replies.stream,
            stream_idle: self.config.replies.stream_idle,
            stream_messages: self.config.replies.stream_messages,
            stream_age: self.config.replies.stream_age,
        };
        ctx.spawn(pump.run().into_actor(self).map(|e, act, ctx| {
            if e.is_fatal() {
                act.fail(e, ctx)
            } else if e.is_refusal() {
                act.send_rejected(e, ctx)
            } else {
                act.lost(e, ctx)
            }
        }));
    }

    /// The researcher refused a send (a gRPC status, not a broken
    /// connection; e.g. NOT_FOUND from a restarted researcher that has not
    /// seen this node's new poll yet, UNKNOWN from a failing handler). The
    /// connection and the open poll are fine, so only the send pump starts
    /// again, after a backoff delay;
    /// tearing the link down here would also cut the poll stream and lose
    /// a task the researcher had just written into it.
    fn send_rejected(&mut self, e: NodeError, ctx: &mut Context<Self>) {
        let Some(delay) = self.life.send_refused() else {
            return;
        };
        let why = ErrorChain(&e).to_string();
        self.log.warn(&self.key, "send refused", || {
            format!("{}: {why}; sending again in {delay:?}", self.key)
        });
        self.shared.status().last_error = Some(why);
        ctx.run_later(delay, |act, ctx| act.start_pump(ctx));
    }

    /// The connection is gone: let the supervisor restart the link.
    fn lost(&mut self, e: NodeError, ctx: &mut Context<Self>) {
        let Some(was_up) = self.life.lost(std::time::Instant::now()) else {
            return;
        };
        if let NodeError::ReceiveBudget { source, .. } = &e {
            if let crate::wire::WireError::BudgetExhausted { claimed, limit, .. } = **source {
                self.wait_for_room = Some(claimed.min(limit));
            }
        }
        let why = ErrorChain(&e).to_string();
        self.log.warn(&self.key, "reconnecting", || {
            format!("{}: {why}; reconnecting", self.key)
        });
        {
            let mut status = self.shared.status();
            status.polling = false;
            status.state = match &e {
                NodeError::CertificateChanged {
                    recorded,
                    presented,
                    ..
                } => LinkState::CertificateChanged {
                    recorded: *recorded,
                    presented: *presented,
                },
                _ => LinkState::BackingOff,
            };
            status.last_error = Some(why.clone());
        }
        if was_up {
            notify(
                &self.events,
                LinkEvent::Changed(LinkChange::Down {
                    endpoint: self.key.clone(),
                    reason: why,
                    for_good: false,
                }),
            );
        }
        ctx.stop();
    }

    /// Stop for good: the link never reconnects; the controller is told.
    fn fail(&mut self, e: NodeError, ctx: &mut Context<Self>) {
        if self.life.is_over() {
            // Already failed (the poll and the pump may both fail) or closed.
            return;
        }
        let reason = ErrorChain(&e).to_string();
        log::error!("{}: {reason}; the link stops for good", self.key);
        self.life.fail();
        {
            let mut status = self.shared.status();
            status.polling = false;
            status.state = LinkState::Failed(reason.clone());
            status.last_error = Some(reason.clone());
        }
        self.shared.drained.notify_waiters();
        notify(
            &self.events,
            LinkEvent::Failed {
                endpoint: self.key.clone(),
                reason,
            },
        );
        // The supervisor restarts the (now idle) actor; `started` sees it is over.
        ctx.stop();
    }
}

/// Applies the trust policy and opens the channel (one attempt).
async fn dial(
    endpoint: &ResearcherEndpoint,
    key: &str,
    known: Option<String>,
    trust: &NodeTrust,
    config: &ControllerConfig,
) -> Result<Dialled, NodeError> {
    let tls_error = |e: tls::TlsError| NodeError::Tls {
        endpoint: key.to_string(),
        source: Box::new(e),
    };
    let mut opts = config.channel.clone();
    opts.keepalive_interval = config.effective_keepalive();
    if endpoint.proxy.is_some() {
        opts.proxy = endpoint.proxy.clone();
    }
    if endpoint.trust == tls::TrustPolicy::Plaintext {
        let channel = tls::connect_plaintext_channel(&endpoint.host, endpoint.port, &opts)
            .await
            .map_err(tls_error)?;
        return Ok(Dialled {
            channel,
            researcher_id: known,
        });
    }
    let fetch_started = std::time::Instant::now();
    let trusted = tls::trusted_client_config_via(
        &endpoint.trust,
        &endpoint.host,
        endpoint.port,
        opts.proxy.as_ref(),
        config.client_identity.as_ref(),
        config.channel.connect_timeout,
    )
    .await
    .map_err(tls_error)?;
    log::debug!(
        "{key}: trust policy applied in {:?} (a TLS handshake when the certificate is fetched)",
        fetch_started.elapsed()
    );
    if let Some(found) = &trusted.researcher_id {
        check_same_researcher(key, known.as_deref(), found, "server certificate")?;
    }
    if let Some(cert) = &trusted.certificate {
        if matches!(
            endpoint.trust,
            tls::TrustPolicy::TrustOnFirstUse | tls::TrustPolicy::TrustSameResearcherId
        ) {
            // Before anything is sent: a server with another certificate
            // than the trusted one gets no poll, no reply, no feedback.
            trust
                .admit(
                    key,
                    cert.clone(),
                    trusted.researcher_id.clone(),
                    &endpoint.trust,
                )
                .await?;
        }
    }
    let connected =
        tls::connect_channel_with_peer(&endpoint.host, endpoint.port, trusted.config, &opts)
            .await
            .map_err(tls_error)?;
    let researcher_id = match trusted.researcher_id {
        Some(id) => Some(id),
        None => tls::researcher_id_of(&connected.peer_certificate).ok(),
    };
    if let Some(id) = &researcher_id {
        // The id becomes a key and a quote in logs: it must be a valid one.
        check_id(IdKind::Researcher, id).map_err(|e| NodeError::BadCertificate {
            endpoint: key.to_string(),
            reason: e.to_string(),
        })?;
    }
    if let Some(found) = &researcher_id {
        check_same_researcher(key, known.as_deref(), found, "server certificate")?;
    }
    Ok(Dialled {
        channel: connected.channel,
        researcher_id,
    })
}

impl Actor for ResearcherLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.life.is_over() {
            return;
        }
        let window = self
            .config
            .peer_log_rate
            .per
            .max(Duration::from_millis(100));
        ctx.run_interval(window, |act, _| act.log.flush());
        self.connect(ctx);
    }
}

impl Supervised for ResearcherLink {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.client = None;
        self.last_data = None;
        self.poll = None;
        self.shared.status().polling = false;
        let polled = self.shared.polled.swap(false, Ordering::Relaxed);
        self.life.restarting(polled);
    }
}

/// Stop polling and send what is queued; answers when the queue is empty, the
/// link failed for good, or `deadline` passed (the queue is left as it is).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(super) struct Drain {
    /// When to give up waiting.
    pub deadline: tokio::time::Instant,
}

impl Handler<Drain> for ResearcherLink {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Drain, ctx: &mut Context<Self>) -> Self::Result {
        self.life.drain();
        self.shared.stop_polling();
        if let Some(handle) = self.poll.take() {
            ctx.cancel_future(handle);
        }
        self.shared.status().polling = false;
        let shared = Arc::clone(&self.shared);
        // A plain future (not an actor future): a restart of the link while
        // it drains must not cancel the wait.
        Box::pin(async move {
            let wait = async {
                loop {
                    let notified = shared.drained.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if shared.done_sending() {
                        break;
                    }
                    notified.await;
                }
            };
            let _ = tokio::time::timeout_at(msg.deadline, wait).await;
        })
    }
}

/// Close the link for good (what is still queued stays in [`LinkShared`] for
/// the controller to report).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(super) struct Close;

impl Handler<Close> for ResearcherLink {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) -> Self::Result {
        self.life.close();
        self.shared.stop_polling();
        self.client = None;
        self.poll = None;
        {
            let mut status = self.shared.status();
            status.polling = false;
            if !matches!(status.state, LinkState::Failed(_)) {
                status.state = LinkState::Closed;
            }
        }
        // Cancels the dial, poll and pump futures (a send in flight is
        // dropped; its messages are still queued and reported unsent).
        ctx.stop();
        self.shared.drained.notify_waiters();
    }
}
