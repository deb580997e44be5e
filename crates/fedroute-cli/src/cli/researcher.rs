//! `fedroute researcher`: serve nodes as a researcher.
//!
//! Logs nodes coming and going and the feedback they send. With `--ping N`
//! it waits for `--wait-nodes` nodes, sends each N `PingRequest`s one after
//! the other (nodes in parallel), prints round-trip statistics and exits.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix::prelude::*;
use clap::Args;
use futures::future::join_all;
use tokio::sync::mpsc;

use fedroute::log_limit::{LogRate, PeerLog};
use fedroute::researcher::{
    self, ListenSettings, Request, ResearcherConfig, ResearcherEvent, ResearcherHandle, Submit,
};
use fedroute::tls;
use fedroute::wire::{echo, shortened, Envelope, Feedback, PingRequest};
use fedroute::ErrorChain;

use super::args::{seconds, LimitArgs};
use super::runtime;
use super::stats::{self, RoundTrips};

/// Events buffered between the researcher and the command's loop.
pub(crate) const EVENT_QUEUE: usize = 4096;
/// Feedback log lines one node may print per window (its own logs, which
/// a hostile node could send without end), in the library's window.
const FEEDBACK_LINES: LogRate = LogRate {
    lines: 100,
    per: LogRate::DEFAULT_PER,
};
/// Longest feedback text printed, in characters.
const FEEDBACK_CHARS: usize = 1000;

/// Arguments of `fedroute researcher`.
#[derive(Debug, Args)]
pub(crate) struct ResearcherArgs {
    /// Address to listen on (port 0 picks a free port, printed at start).
    #[arg(long, value_name = "ADDR", default_value_t = ListenSettings::DEFAULT_ADDRESS)]
    pub(crate) listen: SocketAddr,
    /// Researcher id written into a generated certificate (O=)
    /// [default: RESEARCHER_<uuid4>; with --cert, the certificate's O=].
    #[arg(long, value_name = "ID", conflicts_with = "cert")]
    pub(crate) id: Option<String>,
    /// Host name or IP written into a generated certificate (CN and SAN)
    /// [default: the listen IP, or localhost when listening on all addresses].
    #[arg(long, value_name = "HOST", conflicts_with = "cert")]
    pub(crate) host: Option<String>,
    /// Certificate (PEM) to serve; needs --key [default: the identity kept
    /// in --state-dir, generated on the first start].
    #[arg(long, value_name = "PEM", requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// Require node certificates signed by a CA in this PEM bundle (mutual
    /// TLS); a node may then only poll, reply and send feedback as the node
    /// id in its certificate (subject O=, else CN=) [default: no client
    /// certificates].
    #[arg(long, value_name = "PEM")]
    pub(crate) client_ca: Option<PathBuf>,
    /// Where the researcher keeps its key and certificate across restarts
    /// (researcher-identity.pem), so that nodes which trusted it still do,
    /// and its requests until answered (delivery.redb: a restart offers
    /// their tasks again) [default: $FEDROUTE_STATE_DIR, else
    /// $XDG_STATE_HOME/fedroute/researcher, else
    /// ~/.local/state/fedroute/researcher].
    #[arg(long, value_name = "DIR", conflicts_with = "cert")]
    pub(crate) state_dir: Option<PathBuf>,
    /// Before serving, replace the identity in --state-dir with a new key
    /// whose certificate carries a rotation proof signed by the current
    /// key: nodes that trusted the current certificate accept the new one.
    #[arg(long, conflicts_with_all = ["cert", "insecure", "id"])]
    pub(crate) rotate_cert: bool,
    /// Require registered node certificates (mutual TLS, as Fed-BioMed):
    /// every *.pem file in DIR is one node's certificate, trusted exactly as
    /// it is (make one with `fedroute cert new`). Copying a certificate in
    /// registers the node without a restart; with --client-ca too, a
    /// certificate accepted by either passes [default: none].
    #[arg(long, value_name = "DIR")]
    pub(crate) trusted_nodes: Option<PathBuf>,
    /// Write the server certificate (PEM) to this file, for nodes to --pin
    /// [default: not written].
    #[arg(long, value_name = "PATH")]
    pub(crate) cert_out: Option<PathBuf>,
    /// Serve plaintext gRPC without TLS, for interop and debugging only (a
    /// warning is logged) [default: TLS].
    #[arg(long, conflicts_with_all = ["cert", "client_ca", "trusted_nodes"])]
    pub(crate) insecure: bool,
    /// Send N PingRequests to each node, print round-trip statistics and
    /// exit [default: serve until Ctrl-C].
    #[arg(long, value_name = "N")]
    pub(crate) ping: Option<u32>,
    /// Send N PingRequests to each node at once without waiting (Submit),
    /// then serve on: each reply is logged as it comes ("reply ID from
    /// NODE"), also after a restart with the same --state-dir, which keeps
    /// the requests until answered [default: none].
    #[arg(long, value_name = "N", conflicts_with = "ping")]
    pub(crate) submit: Option<u32>,
    /// With --ping or --submit: nodes to wait for first.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub(crate) wait_nodes: usize,
    /// With --ping or --submit: longest wait for the nodes, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = seconds)]
    pub(crate) wait_timeout: Duration,
    /// With --ping or --submit: longest wait for one reply, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds)]
    pub(crate) timeout: Duration,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

/// Runs the researcher until Ctrl-C (or until the pings are done).
pub(crate) fn run(args: &ResearcherArgs) -> Result<(), String> {
    runtime::init_logging(runtime::DEFAULT_LOG_FILTER);
    runtime::block_on(serve(args))
}

/// `--rotate-cert`: a new key for the identity in `dir`, with a proof.
fn rotate_identity(dir: &std::path::Path, host: &str) -> Result<(), String> {
    let ids = tls::IdentityDir::new(dir);
    if !ids.identity_path().exists() {
        return Err(format!(
            "--rotate-cert: there is no identity to rotate in {} (start the researcher once without it)",
            dir.display()
        ));
    }
    let rotated = ids
        .rotate(&[host])
        .map_err(|e| format!("cannot rotate the certificate: {}", ErrorChain(&e)))?;
    println!(
        "rotated the certificate of {}: new SHA-256 {} (nodes that trusted the previous one accept it by its proof)",
        rotated.researcher_id,
        tls::Fingerprint::of(&rotated.cert_der)
    );
    Ok(())
}

async fn serve(args: &ResearcherArgs) -> Result<(), String> {
    let mut config = ResearcherConfig::default();
    config.listen.address = args.listen;
    config.listen.insecure = args.insecure;
    config.listen.researcher_id = args.id.clone();
    config.listen.host = args.host.clone();
    config.listen.identity = args.cert.clone().zip(args.key.clone());
    config.listen.client_ca = args.client_ca.clone();
    if config.listen.identity.is_none() && !args.insecure {
        let dir = super::state::state_dir(args.state_dir.as_ref(), "researcher")?;
        if args.rotate_cert {
            rotate_identity(&dir, &config.listen.certificate_host())?;
        }
        config.state_dir = Some(dir);
    }
    config.listen.trusted_nodes = args.trusted_nodes.clone();
    args.limits.apply(&mut config.receive);
    let (tx, mut events) = mpsc::channel(EVENT_QUEUE);
    let tap = EventTap::new(tx).start();
    let handle = researcher::start(config, Some(tap.recipient()))
        .await
        .map_err(|e| format!("cannot start the researcher: {}", ErrorChain(&e)))?;
    let mode = if args.insecure {
        "PLAINTEXT, insecure"
    } else if args.client_ca.is_some() || args.trusted_nodes.is_some() {
        "mutual TLS"
    } else {
        "TLS"
    };
    // Written before the address line, so that whoever reads that line can
    // use the file.
    if let Some(path) = &args.cert_out {
        if let Err(e) = std::fs::write(path, tls::certificate_pem(&handle.cert_der)) {
            let _ = handle.shutdown().await;
            return Err(format!("cannot write {}: {e}", path.display()));
        }
        log::info!("server certificate written to {}", path.display());
    }

    println!(
        "researcher {} listening on {} ({mode})",
        handle.researcher_id, handle.local_addr
    );
    let result = match (args.ping, args.submit) {
        (Some(n), _) => tokio::select! {
            r = ping_nodes(&handle, events, n, args) => r,
            _ = runtime::ctrl_c() => Err("interrupted".to_string()),
        },
        (None, Some(n)) => tokio::select! {
            r = submit_and_serve(&handle, events, n, args) => r,
            _ = runtime::ctrl_c() => {
                log::info!("Ctrl-C: stopping");
                Ok(())
            }
        },
        (None, None) => tokio::select! {
            _ = async {
                let log = EventLog::default();
                while let Some(e) = events.recv().await {
                    log.log(&e)
                }
            } => Ok(()),
            _ = runtime::ctrl_c() => {
                log::info!("Ctrl-C: stopping");
                Ok(())
            }
        },
    };
    let _ = handle.shutdown().await;
    result
}

/// Logs researcher events, a bounded number of lines per node.
pub(crate) struct EventLog {
    feedback: PeerLog,
}

impl Default for EventLog {
    fn default() -> EventLog {
        EventLog {
            feedback: PeerLog::new(FEEDBACK_LINES),
        }
    }
}

impl EventLog {
    /// Logs one researcher event.
    pub(crate) fn log(&self, event: &ResearcherEvent) {
        self.feedback.flush_due();
        match event {
            // The library logs these at info already.
            ResearcherEvent::NodeConnected { node_id } => log::debug!("node {node_id} connected"),
            ResearcherEvent::NodeDisconnected { node_id } => {
                log::debug!("node {node_id} disconnected")
            }
            ResearcherEvent::Feedback(f) => {
                let Some(n) = self.feedback.allow(f.node_id(), "feedback") else {
                    return;
                };
                match &f.feedback {
                    Feedback::Log(l) => log::info!(
                        "feedback from {}: [{}] {}{}",
                        l.node_id,
                        echo(&l.level),
                        shortened(&l.text(), FEEDBACK_CHARS),
                        PeerLog::held_back(n)
                    ),
                    Feedback::Scalar(s) => log::info!(
                        "feedback from {}: scalars of experiment {} iteration {}: {}{}",
                        s.node_id,
                        echo(&s.experiment_id),
                        s.iteration,
                        shortened(&format!("{:?}", s.metric), FEEDBACK_CHARS),
                        PeerLog::held_back(n)
                    ),
                    other => log::info!("feedback: {other:?}{}", PeerLog::held_back(n)),
                }
            }
            // The library warns about these (rate-limited).
            ResearcherEvent::UnmatchedReply(e) => log::debug!(
                "a {} from {} answers no waiting request ({})",
                echo(e.class()),
                e.node_id().unwrap_or("?"),
                e.request_id().unwrap_or("no request_id")
            ),
            ResearcherEvent::Reply {
                node_id,
                request_id,
                message,
            } => log::info!(
                "reply {} from {node_id} ({})",
                echo(request_id),
                echo(message.class())
            ),
            ResearcherEvent::NoReply {
                node_id,
                request_id,
                reason,
            } => log::warn!("no reply {} from {node_id}: {reason}", echo(request_id)),
            ResearcherEvent::Undelivered {
                node_id,
                request_id,
                reason,
            } => log::warn!(
                "undelivered to {node_id} ({}): {reason}",
                request_id.as_deref().unwrap_or("no request_id")
            ),
            other => log::debug!("researcher event: {other:?}"),
        }
    }
}

/// Waits for `--wait-nodes` nodes (logging events meanwhile), then keeps
/// logging events in the background; the nodes that connected.
async fn wait_for_nodes(
    mut events: mpsc::Receiver<ResearcherEvent>,
    args: &ResearcherArgs,
) -> Result<BTreeSet<String>, String> {
    let mut nodes = BTreeSet::new();
    let log = EventLog::default();
    let wait = async {
        while nodes.len() < args.wait_nodes {
            match events.recv().await {
                Some(e) => {
                    log.log(&e);
                    if let ResearcherEvent::NodeConnected { node_id } = e {
                        nodes.insert(node_id);
                    }
                }
                None => return,
            }
        }
    };
    let waited = tokio::time::timeout(args.wait_timeout, wait).await;
    if waited.is_err() || nodes.len() < args.wait_nodes {
        return Err(format!(
            "only {} of {} node(s) connected within {}",
            nodes.len(),
            args.wait_nodes,
            stats::duration(args.wait_timeout)
        ));
    }
    // Keep logging events (replies, feedback, departures).
    actix::spawn(async move {
        while let Some(e) = events.recv().await {
            log.log(&e);
        }
    });
    Ok(nodes)
}

/// `--submit N`: N pings to each node without waiting, then serve on.
async fn submit_and_serve(
    handle: &ResearcherHandle,
    events: mpsc::Receiver<ResearcherEvent>,
    count: u32,
    args: &ResearcherArgs,
) -> Result<(), String> {
    let nodes = wait_for_nodes(events, args).await?;
    for node in &nodes {
        for _ in 0..count {
            let ping = PingRequest::new(handle.researcher_id.clone());
            let message = Envelope::from_typed(&ping).map_err(|e| e.to_string())?;
            let id = message.request_id().unwrap_or_default().to_string();
            let submit = Submit {
                node_id: node.clone(),
                message,
                timeout: args.timeout,
            };
            match handle.addr.send(submit).await {
                Ok(Ok(())) => log::info!("submitted request {id} to {node}"),
                Ok(Err(e)) => log::error!("request {id} to {node} refused: {}", ErrorChain(&e)),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    std::future::pending().await
}

async fn ping_nodes(
    handle: &ResearcherHandle,
    events: mpsc::Receiver<ResearcherEvent>,
    count: u32,
    args: &ResearcherArgs,
) -> Result<(), String> {
    let nodes = wait_for_nodes(events, args).await?;

    let started = Instant::now();
    let results = join_all(
        nodes
            .iter()
            .map(|node| ping_node(handle, node, count, args.timeout)),
    )
    .await;
    let elapsed = started.elapsed();
    let mut all = RoundTrips::new();
    let mut lost = 0;
    for (node, (mut rtts, errors)) in nodes.iter().zip(results) {
        println!(
            "{node}: {}/{count} replies, {}",
            rtts.count(),
            rtts.summary()
        );
        for e in errors.iter().take(3) {
            println!("  {e}");
        }
        lost += errors.len();
        all.extend(&rtts);
    }
    let sent = count as usize * nodes.len();
    println!(
        "{sent} pings to {} node(s): {} replies, {lost} lost, {}, {:.0} round trips/s",
        nodes.len(),
        all.count(),
        all.summary(),
        all.count() as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    if lost == 0 {
        Ok(())
    } else {
        Err(format!("{lost} of {sent} pings got no reply"))
    }
}

/// Pings `node` `count` times in a row; the round trips and the failures.
async fn ping_node(
    handle: &ResearcherHandle,
    node: &str,
    count: u32,
    timeout: Duration,
) -> (RoundTrips, Vec<String>) {
    let mut rtts = RoundTrips::new();
    let mut errors = Vec::new();
    for _ in 0..count {
        let message = match Envelope::from_typed(&PingRequest::new(handle.researcher_id.clone())) {
            Ok(m) => m,
            Err(e) => {
                errors.push(format!("cannot build a PingRequest: {e}"));
                continue;
            }
        };
        let sent = Instant::now();
        let reply = handle
            .addr
            .send(Request {
                node_id: node.to_string(),
                message,
                timeout,
            })
            .await;
        match reply {
            Ok(Ok(r)) if r.class() == "PingReply" => rtts.record(sent.elapsed()),
            Ok(Ok(r)) => errors.push(format!("{node} answered with a {}", r.class())),
            Ok(Err(e)) => errors.push(ErrorChain(&e).to_string()),
            Err(e) => errors.push(format!("the researcher is gone: {e}")),
        }
    }
    (rtts, errors)
}

/// Forwards researcher events to a channel (dropping them, with a
/// rate-limited warning, when the channel is full).
pub(crate) struct EventTap {
    tx: mpsc::Sender<ResearcherEvent>,
    dropped: PeerLog,
}

impl EventTap {
    /// A tap into `tx`.
    pub(crate) fn new(tx: mpsc::Sender<ResearcherEvent>) -> EventTap {
        EventTap {
            tx,
            dropped: PeerLog::new(LogRate {
                lines: 1,
                per: LogRate::DEFAULT_PER,
            }),
        }
    }
}

impl Actor for EventTap {
    type Context = Context<Self>;
}

impl Handler<ResearcherEvent> for EventTap {
    type Result = ();
    fn handle(&mut self, event: ResearcherEvent, _: &mut Context<Self>) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(event) {
            self.dropped.warn("events", "event queue full", || {
                format!("event queue full ({EVENT_QUEUE}); an event was dropped")
            });
        }
    }
}
