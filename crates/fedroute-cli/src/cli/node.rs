//! `fedroute node`: the reference node.
//!
//! It answers `PingRequest` with `PingReply`, `ListRequest` and
//! `SearchRequest` from the datasets declared with `--dataset`, and every
//! other request with an `ErrorMessage` carrying its `request_id`, so that no
//! researcher waits forever (with `--echo-train`, `TrainRequest` gets a
//! `TrainReply` carrying the received parameters back). Its own log records
//! (info and up) are forwarded to the researchers as feedback
//! (`fedroute::node::log_forward`).
//!
//! The answering logic is a plain struct, [`Responder`]; the actor
//! [`ReferenceNode`] wraps it and owns the [`Controller`]'s address. The
//! `demo` sub-command runs the same actor in process.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use clap::Args;
use log::LevelFilter;
use tokio::sync::mpsc;

use fedroute::log_limit::{LogRate, PeerLog};
use fedroute::node::{
    log_forward, Controller, ControllerConfig, FinishReason, Finished, NodeError,
    ResearcherEndpoint, SendReply, Shutdown, Status, TaskReceived,
};
use fedroute::proxy::Proxy;
use fedroute::tls::{self, ChannelOptions, ClientIdentity, TrustPolicy};
use fedroute::wire::{
    echo, Envelope, ErrorMessage, ListReply, PingReply, SearchReply, TrainReply, Value, WireError,
};
use fedroute::ErrorChain;

use super::args::{seconds, DatasetSpec, HostPort, LimitArgs};
use super::runtime;

/// Time the node gives its queued replies to leave when it stops.
pub(crate) const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);
/// Time given to queued messages when the node stops because of a failure.
const FAILED_SHUTDOWN_DEADLINE: Duration = Duration::from_millis(100);
/// Bound on one dial attempt (TLS handshake included): the library's
/// default, or `--connect-timeout` when that is shorter (and not 0).
const DIAL_TIMEOUT: Duration = ChannelOptions::DEFAULT_CONNECT_TIMEOUT;
/// How often the start-up wait looks at the links' status.
const STATUS_INTERVAL: Duration = Duration::from_millis(20);

/// Arguments of `fedroute node`.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// A researcher to serve, as HOST:PORT (IPv6 in brackets); repeat the
    /// flag to serve several researchers.
    #[arg(long = "researcher", value_name = "HOST:PORT", required = true)]
    pub(crate) researchers: Vec<HostPort>,
    /// This node's id, sent in every reply.
    #[arg(long, value_name = "NODE_ID")]
    pub(crate) id: String,
    /// This node's name for humans [default: the node id].
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// A dataset to declare, as NAME:TAG,TAG; repeat the flag for several.
    /// Listed by ListRequest, matched by SearchRequest (all asked tags must
    /// be present) [default: none].
    #[arg(long = "dataset", value_name = "NAME:TAG,TAG")]
    pub(crate) datasets: Vec<DatasetSpec>,
    /// Trust exactly the researcher certificate in this PEM file, whatever
    /// host is dialled [default: trust the certificate seen on first contact
    /// and remember it in the trust store of --state-dir; a later, different
    /// certificate is refused unless it carries a rotation proof].
    #[arg(long, value_name = "CERT", conflicts_with = "ca")]
    pub(crate) pin: Option<PathBuf>,
    /// Trust researcher certificates signed by a CA in this PEM bundle (host
    /// names are checked) [default: trust on first use].
    #[arg(long, value_name = "BUNDLE")]
    pub(crate) ca: Option<PathBuf>,
    /// Node certificate (PEM) presented to researchers that require mutual
    /// TLS (for example one from `fedroute cert new`); it must name --id
    /// (subject O=, else CN=); needs --key [default: none].
    #[arg(long, value_name = "PEM", requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    /// Private key (PEM) of --cert [default: none].
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// Fed-BioMed's trust on first use: accept a researcher's new
    /// certificate whenever it names the same researcher id (O=), with a
    /// warning. The id is not secret, so anyone on the path can do the
    /// same: only for trusted networks [default: off, refuse a changed
    /// certificate without a rotation proof].
    #[arg(long, conflicts_with_all = ["pin", "ca", "insecure"])]
    pub(crate) trust_same_id: bool,
    /// Where the node keeps its state: the trust store (trust.json) and
    /// its replies until the researcher acknowledged them (delivery.redb:
    /// a restart sends them again) [default: $FEDROUTE_STATE_DIR, else $XDG_STATE_HOME/fedroute/node,
    /// else ~/.local/state/fedroute/node].
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// Dial researchers in plaintext, without TLS: traffic is readable and
    /// the researcher is not authenticated. Only for closed test set-ups
    /// against a researcher started with --insecure [default: off, TLS].
    #[arg(long, conflicts_with_all = ["pin", "ca", "cert"])]
    pub(crate) insecure: bool,
    /// Reach every researcher through this HTTP proxy, as
    /// http://[USER:PASSWORD@]HOST[:PORT] (%-escapes decoded; port 80 when
    /// none): the node asks it for a CONNECT tunnel and runs TLS to the
    /// researcher inside it, end to end [default: $HTTPS_PROXY (else
    /// $https_proxy) for the researchers whose host does not match
    /// $NO_PROXY (else $no_proxy); none when unset].
    #[arg(long, value_name = "URL")]
    pub(crate) proxy: Option<Proxy>,
    /// Answer TrainRequest with a TrainReply carrying the received
    /// parameters back (for demos and benchmarks) [default: off, TrainRequest
    /// gets an ErrorMessage].
    #[arg(long)]
    pub(crate) echo_train: bool,
    /// Wait this many seconds before answering each task (stands for the
    /// work a real node does, e.g. training; for demos, benchmarks and
    /// crash tests) [default: 0, answer at once].
    #[arg(long, value_name = "SECONDS", default_value = "0", value_parser = seconds)]
    pub(crate) reply_delay: Duration,
    /// Fail when a researcher is not reached within this many seconds of
    /// start-up; 0 keeps trying forever. Later disconnections are always
    /// retried.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = seconds)]
    pub(crate) connect_timeout: Duration,
    /// Stop after this many seconds, sending queued replies first
    /// [default: run until Ctrl-C].
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    pub(crate) exit_after: Option<Duration>,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

/// Runs the reference node until Ctrl-C, `--exit-after`, or every link failing.
pub(crate) fn run(args: &NodeArgs) -> Result<(), String> {
    let forwarding = log_forward::install(
        runtime::log_builder(runtime::DEFAULT_LOG_FILTER),
        LevelFilter::Info,
    )
    .ok();
    let trust = match (&args.pin, &args.ca) {
        _ if args.insecure => {
            log::warn!("--insecure: dialling researchers WITHOUT TLS");
            TrustPolicy::Plaintext
        }
        (Some(pin), _) => TrustPolicy::PinnedCertificate(pin.clone()),
        (None, Some(ca)) => TrustPolicy::CaBundle(ca.clone()),
        (None, None) if args.trust_same_id => TrustPolicy::TrustSameResearcherId,
        (None, None) => TrustPolicy::TrustOnFirstUse,
    };
    let client_identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let identity = ClientIdentity::load(cert, key)
                .map_err(|e| format!("cannot load the node certificate: {}", ErrorChain(&e)))?;
            check_certificate_names(&identity, &args.id, cert)?;
            Some(identity)
        }
        _ => None,
    };
    runtime::block_on(serve(args, trust, client_identity, forwarding))
}

/// A researcher under mutual TLS refuses every call of a node whose
/// certificate names another node: say so now, not at the first poll.
fn check_certificate_names(
    identity: &ClientIdentity,
    node_id: &str,
    cert: &std::path::Path,
) -> Result<(), String> {
    let named = identity.node_id().map_err(|e| {
        format!(
            "the node certificate {} names no node: {}",
            cert.display(),
            ErrorChain(&e)
        )
    })?;
    if named != node_id {
        return Err(format!(
            "the node certificate {} is for node {named}, not for --id {node_id}",
            cert.display()
        ));
    }
    Ok(())
}

async fn serve(
    args: &NodeArgs,
    trust: TrustPolicy,
    client_identity: Option<ClientIdentity>,
    forwarding: Option<log_forward::LogForwardHandle>,
) -> Result<(), String> {
    tls::install_crypto_provider();
    let mut endpoints = Vec::with_capacity(args.researchers.len());
    for r in &args.researchers {
        let (proxy, from) = match &args.proxy {
            Some(proxy) => (Some(proxy.clone()), "--proxy"),
            None => (
                Proxy::from_env(&r.host)
                    .map_err(|e| format!("cannot use HTTPS_PROXY: {}", ErrorChain(&e)))?,
                "HTTPS_PROXY",
            ),
        };
        if let Some(proxy) = &proxy {
            log::info!("{r}: through the HTTP proxy {proxy} ({from})");
        }
        endpoints.push(ResearcherEndpoint {
            host: r.host.clone(),
            port: r.port,
            trust: trust.clone(),
            proxy,
        });
    }
    // Check certificate files before dialling (no network for these policies).
    if !matches!(
        trust,
        TrustPolicy::TrustOnFirstUse | TrustPolicy::TrustSameResearcherId | TrustPolicy::Plaintext
    ) {
        if let Some(e) = endpoints.first() {
            tls::trusted_client_config(
                &e.trust,
                &e.host,
                e.port,
                client_identity.as_ref(),
                DIAL_TIMEOUT,
            )
            .await
            .map_err(|e| {
                format!(
                    "cannot use the researcher trust settings: {}",
                    ErrorChain(&e)
                )
            })?;
        }
    }
    let dial_timeout = if args.connect_timeout.is_zero() {
        DIAL_TIMEOUT
    } else {
        args.connect_timeout.min(DIAL_TIMEOUT)
    };
    let mut config = ControllerConfig::default();
    config.channel.connect_timeout = dial_timeout;
    config.client_identity = client_identity;
    let state_dir = super::state::state_dir(args.state_dir.as_ref(), "node")?;
    config.state_dir = Some(state_dir.clone());
    args.limits.apply(&mut config.receive);
    config
        .validate()
        .map_err(|e| format!("invalid node configuration: {}", ErrorChain(&e)))?;
    let (finished_tx, mut finished) = mpsc::channel(1);
    let responder = Responder {
        node_id: args.id.clone(),
        node_name: args.name.clone().unwrap_or_else(|| args.id.clone()),
        datasets: args.datasets.clone(),
        echo_train: args.echo_train,
        reply_delay: args.reply_delay,
    };
    let watch = FinishWatch(finished_tx).start();
    let (controller, _handler) =
        ReferenceNode::start(responder, endpoints, config, Some(watch.recipient()))
            .map_err(|e| format!("cannot start the node: {}", ErrorChain(&e)))?;
    if let Some(f) = &forwarding {
        f.attach(controller.clone().recipient());
    }
    log::info!(
        "node {} serving {} researcher(s): {}; datasets: {}",
        args.id,
        args.researchers.len(),
        list(args.researchers.iter().map(ToString::to_string)),
        list(args.datasets.iter().map(|d| d.name.clone())),
    );

    let outcome = tokio::select! {
        r = wait_connected(&controller, args.connect_timeout) => r.map(|()| None),
        _ = runtime::ctrl_c() => Ok(Some("interrupted")),
        f = finished.recv() => Err(failure(&controller, f).await),
    };
    let outcome = match outcome {
        Ok(None) => {
            let exit_after = async {
                match args.exit_after {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = runtime::ctrl_c() => Ok("interrupted"),
                _ = exit_after => Ok("--exit-after elapsed"),
                f = finished.recv() => Err(failure(&controller, f).await),
            }
        }
        Ok(Some(why)) => Ok(why),
        Err(e) => Err(e),
    };
    if let Some(f) = &forwarding {
        f.detach();
    }
    // On a failure nothing can be sent anyway: stop at once.
    let deadline = if outcome.is_ok() {
        SHUTDOWN_DEADLINE
    } else {
        FAILED_SHUTDOWN_DEADLINE
    };
    let report = controller.send(Shutdown { deadline }).await;
    let why = outcome?;
    match report {
        Ok(r) => {
            if r.undelivered() > 0 {
                // Replies written to a researcher that did not acknowledge
                // them may well have arrived (researchers keep the first copy
                // of a reply), so this is a warning.
                log::warn!(
                    "replies not delivered within {deadline:?}: {} never sent, {} sent but not \
                     acknowledged, {} feedback",
                    r.unsent.len(),
                    r.unacknowledged.len(),
                    r.unsent_feedback
                );
            }
            if r.stored > 0 {
                log::info!(
                    "{} replies not delivered yet are kept in {}: they are sent after the next \
                     start with this state directory",
                    r.stored,
                    state_dir.display()
                );
            }
            log::info!("node {} stopped ({why})", args.id);
            Ok(())
        }
        Err(e) => Err(format!("the node controller did not stop cleanly: {e}")),
    }
}

fn list(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// The one-line reason why every link failed.
async fn failure(controller: &Addr<Controller>, finished: Option<Finished>) -> String {
    let reasons: Vec<String> = match controller.send(Status).await {
        Ok(links) => links
            .into_iter()
            .map(|l| format!("{}: {}", l.endpoint, l.state))
            .collect(),
        Err(_) => Vec::new(),
    };
    match finished.map(|f| f.reason) {
        Some(FinishReason::AllLinksFailed) | None => {
            format!("every researcher link failed ({})", reasons.join("; "))
        }
        Some(FinishReason::Shutdown) => "the node controller shut down".to_string(),
        Some(other) => format!("the node controller finished ({other:?})"),
    }
}

/// Waits until every link is connected and polling or has failed for good,
/// at most `timeout` (zero: forever). A link that failed for good is logged
/// and the node goes on serving the others; the error comes only when every
/// link failed, or names the first researcher not reached in time and why.
pub(crate) async fn wait_connected(
    controller: &Addr<Controller>,
    timeout: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    let mut announced = HashSet::new();
    loop {
        let links = controller
            .send(Status)
            .await
            .map_err(|e| format!("the node controller is gone: {e}"))?;
        for l in &links {
            if (l.is_live() || l.is_terminal()) && announced.insert(l.endpoint.clone()) {
                let id = l.researcher_id.clone().unwrap_or_default();
                if l.is_live() {
                    log::info!(researcher_id = id.as_str(); "connected to researcher {id} at {}", l.endpoint);
                } else {
                    log::error!("researcher {}: {}; serving the others", l.endpoint, l.state);
                }
            }
        }
        if !links.is_empty() && links.iter().all(|l| l.is_terminal()) {
            let reasons: Vec<String> = links
                .iter()
                .map(|l| format!("{}: {}", l.endpoint, l.state))
                .collect();
            return Err(format!(
                "every researcher link failed ({})",
                reasons.join("; ")
            ));
        }
        if !links.is_empty() && links.iter().all(|l| l.is_live() || l.is_terminal()) {
            return Ok(());
        }
        if !timeout.is_zero() && started.elapsed() >= timeout {
            let l = links.iter().find(|l| !l.is_live() && !l.is_terminal());
            return Err(match l {
                Some(l) => format!(
                    "cannot reach researcher {} within {}: {}",
                    l.endpoint,
                    super::stats::duration(timeout),
                    l.last_error.as_deref().unwrap_or("no answer")
                ),
                None => "no researcher link".to_string(),
            });
        }
        tokio::time::sleep(STATUS_INTERVAL).await;
    }
}

/// Tells a channel when the controller finished.
struct FinishWatch(mpsc::Sender<Finished>);

impl Actor for FinishWatch {
    type Context = Context<Self>;
}

impl Handler<Finished> for FinishWatch {
    type Result = ();
    fn handle(&mut self, msg: Finished, _: &mut Context<Self>) {
        let _ = self.0.try_send(msg);
    }
}

/// What the reference node answers (no I/O: a plain struct).
#[derive(Debug, Clone)]
pub(crate) struct Responder {
    /// The node id written into replies.
    pub(crate) node_id: String,
    /// The node name written into replies.
    pub(crate) node_name: String,
    /// Declared datasets.
    pub(crate) datasets: Vec<DatasetSpec>,
    /// Answer `TrainRequest` with the received parameters.
    pub(crate) echo_train: bool,
    /// Time taken before each answer.
    pub(crate) reply_delay: Duration,
}

impl Responder {
    /// The reply to `request`; `None` when it has no `request_id` (nothing
    /// waits for an answer, e.g. an overlay message).
    pub(crate) fn answer(&self, request: &Envelope) -> Result<Option<Envelope>, WireError> {
        if request.request_id().is_none() {
            return Ok(None);
        }
        let (id, name) = (self.node_id.as_str(), self.node_name.as_str());
        let reply = match request.class() {
            "PingRequest" => Envelope::from_typed(&PingReply::answer(request, id, name))?,
            "ListRequest" => {
                let all = self.datasets.iter().map(dataset_value).collect();
                Envelope::from_typed(&ListReply::answer(request, id, name, all))?
            }
            "SearchRequest" => {
                let wanted: Vec<&str> = request
                    .get("tags")
                    .and_then(Value::as_array)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                let found = self
                    .datasets
                    .iter()
                    .filter(|d| wanted.iter().all(|w| d.tags.iter().any(|t| t == w)))
                    .map(dataset_value)
                    .collect();
                Envelope::from_typed(&SearchReply::answer(request, id, name, found))?
            }
            "TrainRequest" if self.echo_train => {
                let params = request.get("params").cloned().unwrap_or(Value::Nil);
                Envelope::from_typed(&TrainReply::answer(request, id, name, params))?
            }
            class => Envelope::from_typed(&ErrorMessage::answer(
                request,
                id,
                name,
                format!("the fedroute reference node does not handle {class}"),
                None,
            ))?,
        };
        Ok(Some(reply))
    }
}

/// A dataset as Fed-BioMed's `ListReply`/`SearchReply` describe it.
fn dataset_value(d: &DatasetSpec) -> Value {
    let tags = d.tags.iter().map(|t| Value::Str(t.clone())).collect();
    Value::map([
        ("name", Value::Str(d.name.clone())),
        ("data_type", Value::Str("default".into())),
        ("tags", Value::Array(tags)),
        ("description", Value::Str(String::new())),
        ("shape", Value::Array(Vec::new())),
        ("dataset_id", Value::Str(format!("dataset_{}", d.name))),
    ])
}

/// The reference node's handler actor: answers each [`TaskReceived`] through
/// its [`Controller`].
pub(crate) struct ReferenceNode {
    responder: Responder,
    controller: Addr<Controller>,
    greeted: HashSet<String>,
    /// Warnings per researcher and kind are rate-limited: a researcher that
    /// floods unhandled or unanswerable tasks gets a few lines, not one each.
    log: Arc<PeerLog>,
}

impl ReferenceNode {
    /// Starts a controller dialling `endpoints` and the handler answering its
    /// tasks; returns both addresses.
    pub(crate) fn start(
        responder: Responder,
        endpoints: Vec<ResearcherEndpoint>,
        config: ControllerConfig,
        on_finish: Option<Recipient<Finished>>,
    ) -> Result<(Addr<Controller>, Addr<ReferenceNode>), NodeError> {
        // The handler's address exists before the actor runs, so the
        // controller and its handler can know each other from the start.
        let ctx = Context::<ReferenceNode>::new();
        let controller = Controller::builder(responder.node_id.clone())
            .name(responder.node_name.clone())
            .researchers(endpoints)
            .on_finish(on_finish)
            .config(config)
            .build(ctx.address().recipient())?
            .start();
        let handler = ctx.run(ReferenceNode {
            responder,
            controller: controller.clone(),
            greeted: HashSet::new(),
            log: Arc::new(PeerLog::new(LogRate::default())),
        });
        Ok((controller, handler))
    }
}

impl Actor for ReferenceNode {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(LogRate::default().flush_every(), |act, _| act.log.flush());
    }
}

impl Handler<TaskReceived> for ReferenceNode {
    type Result = ();

    fn handle(&mut self, task: TaskReceived, _: &mut Context<Self>) {
        let rid = task.researcher_id.as_str();
        if self.greeted.insert(task.researcher_id.clone()) {
            log::info!(researcher_id = rid;
                "node {} received its first task from researcher {rid}",
                self.responder.node_id
            );
        }
        let class = echo(task.message.class());
        let reply = match self.responder.answer(&task.message) {
            Ok(Some(reply)) => reply,
            Ok(None) => {
                if let Some(n) = self.log.allow(rid, "no request id") {
                    log::warn!(researcher_id = rid; "ignored a {class} without request_id{}", PeerLog::held_back(n));
                }
                return;
            }
            Err(e) => {
                if let Some(n) = self.log.allow(rid, "cannot answer") {
                    log::error!(researcher_id = rid; "cannot answer {class}: {e}{}", PeerLog::held_back(n));
                }
                return;
            }
        };
        if reply.class() == "ErrorMessage" {
            if let Some(n) = self.log.allow(rid, "unhandled") {
                log::warn!(researcher_id = rid;
                    "answered {class} with an ErrorMessage: not handled here{}", PeerLog::held_back(n));
            }
        } else {
            log::debug!("answering {class} with {}", reply.class());
        }
        let controller = self.controller.clone();
        let rid = task.researcher_id;
        let delay = self.responder.reply_delay;
        let request_id = reply.request_id().unwrap_or_default().to_string();
        let log = Arc::clone(&self.log);
        // Without a delay the reply enters the controller's mailbox now, so
        // replies keep the tasks' order. The wait for the answer (with a
        // state directory, for a disk commit) runs as a task of its own: a
        // future spawned into this actor's context would be polled again at
        // every message, and a flood of tasks would make that quadratic.
        let sending = if delay.is_zero() {
            Ok(controller.send(SendReply(reply)))
        } else {
            Err(reply)
        };
        actix::spawn(async move {
            let sent = match sending {
                Ok(sent) => sent.await,
                Err(reply) => {
                    tokio::time::sleep(delay).await;
                    controller.send(SendReply(reply)).await
                }
            };
            let e = match sent {
                Ok(Ok(())) => {
                    log::debug!("the reply to {request_id} is accepted");
                    return;
                }
                Ok(Err(e)) => ErrorChain(&e).to_string(),
                Err(e) => e.to_string(),
            };
            if let Some(n) = log.allow(&rid, "reply not queued") {
                let rid = rid.as_str();
                log::error!(researcher_id = rid;
                    "cannot queue the reply to {class}: {e}{}", PeerLog::held_back(n));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedroute::wire::{ListRequest, PingRequest, SearchRequest, TrainRequest, Value};

    fn responder() -> Responder {
        Responder {
            node_id: "NODE_t".into(),
            node_name: "test".into(),
            datasets: vec![
                "mnist:images,digits".parse().unwrap(),
                "adni:mri".parse().unwrap(),
            ],
            echo_train: false,
            reply_delay: Duration::ZERO,
        }
    }

    #[test]
    fn ping_gets_a_ping_reply_with_the_request_id() {
        let req = Envelope::from_typed(&PingRequest::new("R")).unwrap();
        let reply = responder().answer(&req).unwrap().unwrap();
        assert_eq!(reply.class(), "PingReply");
        assert_eq!(reply.request_id(), req.request_id());
        assert_eq!(reply.node_id(), Some("NODE_t"));
        assert_eq!(reply.researcher_id(), Some("R"));
    }

    #[test]
    fn list_and_search_use_the_declared_datasets() {
        let r = responder();
        let list = Envelope::from_typed(&ListRequest::new("R")).unwrap();
        let reply = r.answer(&list).unwrap().unwrap();
        assert_eq!(reply.get("count").and_then(Value::as_u64), Some(2));
        let search = SearchRequest::new("R", vec!["images".into(), "digits".into()]);
        let reply = r
            .answer(&Envelope::from_typed(&search).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(reply.class(), "SearchReply");
        assert_eq!(reply.get("count").and_then(Value::as_u64), Some(1));
        let db = &reply.get("databases").unwrap().as_array().unwrap()[0];
        assert_eq!(db.get("name").and_then(Value::as_str), Some("mnist"));
        let none = SearchRequest::new("R", vec!["images".into(), "mri".into()]);
        let reply = r
            .answer(&Envelope::from_typed(&none).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(reply.get("count").and_then(Value::as_u64), Some(0));
    }

    #[test]
    fn train_gets_an_error_unless_echoing() {
        let params = Value::map([("w", Value::Bin(bytes::Bytes::from_static(b"abc")))]);
        let req =
            Envelope::from_typed(&TrainRequest::new("R", "exp", "ds", params.clone())).unwrap();
        let mut r = responder();
        let reply = r.answer(&req).unwrap().unwrap();
        assert_eq!(reply.class(), "ErrorMessage");
        assert_eq!(reply.request_id(), req.request_id());
        r.echo_train = true;
        let reply = r.answer(&req).unwrap().unwrap();
        assert_eq!(reply.class(), "TrainReply");
        assert_eq!(reply.get("params"), Some(&params));
    }

    #[test]
    fn messages_without_request_id_get_no_answer() {
        let mut ping = PingRequest::new("R");
        ping.request_id = None;
        let req = Envelope::from_typed(&ping).unwrap();
        assert!(responder().answer(&req).unwrap().is_none());
    }
}
