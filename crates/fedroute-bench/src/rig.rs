//! The fedroute set-up of workloads 1-5: a real researcher
//! ([`fedroute::researcher::start`]) and real nodes ([`Controller`] with a
//! handler actor) over TLS on 127.0.0.1, in the current actix `System`.
//!
//! The node handler ([`BenchNode`]) answers:
//! - `PingRequest` with a `PingReply`;
//! - `TrainRequest` according to its `dataset_id`: `"echo"` sends the
//!   request's `params` back (the same bytes, not copied), `"down"` answers
//!   with empty `params`, `"up:N"` answers with an N-byte uint8 ndarray.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::BenchError;
use fedroute::config::ReceiveLimits;
use fedroute::node::{Controller, ControllerConfig, PollMode, ResearcherEndpoint, TaskReceived};
use fedroute::researcher::{
    self, Request, ResearcherConfig, ResearcherEvent, ResearcherHandle, StoreStatus, Submit,
};
use fedroute::tls::{self, TrustPolicy};
use fedroute::wire::{Envelope, NdArray, PingReply, PingRequest, TrainReply, TrainRequest, Value};
use fedroute::{ErrorChain, StoreStats};

/// How long one request may take before the benchmark fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long nodes may take to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Capacity of the researcher event channel of the bench.
const EVENT_CAPACITY: usize = 65_536;

/// Sets the controller a [`BenchNode`] replies through.
#[derive(Message)]
#[rtype(result = "()")]
struct SetController(Addr<Controller>);

/// The node-side handler actor of the benchmarks (see the module docs).
pub struct BenchNode {
    node_id: String,
    controller: Option<Addr<Controller>>,
    blob: Bytes,
    seen: Option<super::soak::SeenIds>,
}

impl BenchNode {
    /// A handler for `node_id` that can answer `up:N` requests up to
    /// `blob.len()` bytes.
    pub fn new(node_id: String, blob: Bytes) -> BenchNode {
        BenchNode {
            node_id,
            controller: None,
            blob,
            seen: None,
        }
    }

    /// Also records every task's `request_id` in `seen` and counts the
    /// ones seen before (duplicates delivered to the application).
    pub fn tracking(mut self, seen: super::soak::SeenIds) -> BenchNode {
        self.seen = Some(seen);
        self
    }

    fn reply(&self, message: &Envelope) -> Result<Envelope, BenchError> {
        let reply = match message.class() {
            "PingRequest" => {
                Envelope::from_typed(&PingReply::answer(message, &self.node_id, "bench node"))?
            }
            "TrainRequest" => {
                let dataset = message.get("dataset_id").and_then(Value::as_str);
                let params = match dataset {
                    Some("echo") => message.get("params").cloned().unwrap_or(Value::Nil),
                    Some(up) if up.starts_with("up:") => {
                        let n: usize = up[3..].parse().unwrap_or(0).min(self.blob.len());
                        params_of(self.blob.slice(0..n))
                    }
                    _ => Value::Map(Vec::new()),
                };
                Envelope::from_typed(&TrainReply::answer(
                    message,
                    &self.node_id,
                    "bench node",
                    params,
                ))?
            }
            other => {
                return Err(BenchError::Failed {
                    what: format!("the bench node got an unexpected {other}"),
                })
            }
        };
        Ok(reply)
    }
}

impl Actor for BenchNode {
    type Context = Context<Self>;
}

impl Handler<SetController> for BenchNode {
    type Result = ();
    fn handle(&mut self, msg: SetController, _: &mut Context<Self>) {
        self.controller = Some(msg.0);
    }
}

impl Handler<TaskReceived> for BenchNode {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, task: TaskReceived, _: &mut Context<Self>) -> Self::Result {
        if let (Some(seen), Some(id)) = (&self.seen, task.message.request_id()) {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            if !seen.0.insert(format!("{}/{id}", self.node_id)) {
                seen.1 += 1;
                log::error!("bench node {}: task {id} delivered twice", self.node_id);
            }
        }
        let reply = self.reply(&task.message);
        let controller = self.controller.clone();
        Box::pin(async move {
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    log::error!("bench node: {}", ErrorChain(&e));
                    return;
                }
            };
            let Some(controller) = controller else {
                log::error!("bench node: no controller yet, reply dropped");
                return;
            };
            match controller.send(fedroute::node::SendReply(reply)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::error!("bench node: reply not queued: {}", ErrorChain(&e)),
                Err(e) => log::error!("bench node: controller gone: {e}"),
            }
        })
    }
}

/// `params` holding one uint8 array `w` over `data`.
pub fn params_of(data: Bytes) -> Value {
    Value::Map(vec![(
        Value::Str("w".to_owned()),
        NdArray::u8(data).to_value(),
    )])
}

/// Forwards researcher events, time-stamped, to a bounded channel.
struct EventSink {
    tx: mpsc::Sender<(Instant, ResearcherEvent)>,
}

impl Actor for EventSink {
    type Context = Context<Self>;
}

impl Handler<ResearcherEvent> for EventSink {
    type Result = ();
    fn handle(&mut self, event: ResearcherEvent, _: &mut Context<Self>) {
        match self.tx.try_send((Instant::now(), event)) {
            Ok(()) => {}
            // The benchmark that listened is over.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                log::warn!("bench event channel full, event dropped")
            }
        }
    }
}

/// A researcher whose identity is kept in files, so it can be restarted on
/// the same port with the same certificate (workload 5).
pub struct BenchResearcher {
    /// The running researcher.
    pub handle: ResearcherHandle,
    /// Time-stamped events of this researcher.
    pub events: mpsc::Receiver<(Instant, ResearcherEvent)>,
    files: std::sync::Arc<IdentityFiles>,
    receive_buffer_bytes: usize,
    /// `ResearcherConfig::state_dir` (the durable requests' store), kept
    /// across restarts.
    state_dir: Option<PathBuf>,
}

/// A researcher's certificate and key files (PEM), so that restarts, in
/// this process or in a child process, keep the identity nodes pinned.
pub struct IdentityFiles {
    /// The certificate file.
    pub cert: PathBuf,
    /// The private key file.
    pub key: PathBuf,
    /// Whether the files are removed on drop (they are when generated here).
    owned: bool,
}

impl IdentityFiles {
    /// Generates an identity for 127.0.0.1 in the temporary directory; the
    /// files are removed on drop.
    pub fn generate() -> Result<IdentityFiles, BenchError> {
        tls::install_crypto_provider();
        let identity = tls::generate_researcher_identity(None, "127.0.0.1")?;
        let stem = format!(
            "fedroute-bench-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        );
        let dir = std::env::temp_dir();
        let files = IdentityFiles {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
            owned: true,
        };
        identity.write_pem(&files.cert, &files.key)?;
        Ok(files)
    }

    /// Files someone else made and removes.
    pub fn borrowed(cert: PathBuf, key: PathBuf) -> IdentityFiles {
        IdentityFiles {
            cert,
            key,
            owned: false,
        }
    }
}

impl Drop for IdentityFiles {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_file(&self.cert);
            let _ = std::fs::remove_file(&self.key);
        }
    }
}

impl BenchResearcher {
    /// Generates an identity for 127.0.0.1 and starts a researcher on an
    /// ephemeral port.
    pub async fn start() -> Result<BenchResearcher, BenchError> {
        Self::start_buffers(ReceiveLimits::DEFAULT_BUFFER_BYTES).await
    }

    /// [`BenchResearcher::start`] keeping up to `receive_buffer_bytes` of
    /// reassembly buffers (`ResearcherConfig::receive.buffer_bytes`).
    pub async fn start_buffers(receive_buffer_bytes: usize) -> Result<BenchResearcher, BenchError> {
        Self::start_with(
            std::sync::Arc::new(IdentityFiles::generate()?),
            "127.0.0.1:0".parse().ok(),
            receive_buffer_bytes,
        )
        .await
    }

    /// Starts a researcher on `listen` with the identity in `files`.
    pub async fn start_with(
        files: std::sync::Arc<IdentityFiles>,
        listen: Option<std::net::SocketAddr>,
        receive_buffer_bytes: usize,
    ) -> Result<BenchResearcher, BenchError> {
        Self::start_config(files, listen, receive_buffer_bytes, None).await
    }

    /// A researcher on an ephemeral port whose requests made with
    /// [`BenchResearcher::submit_within`] are kept in `state_dir` (its
    /// delivery store) before they are accepted.
    pub async fn start_durable(
        state_dir: PathBuf,
        receive_buffer_bytes: usize,
    ) -> Result<BenchResearcher, BenchError> {
        Self::start_config(
            std::sync::Arc::new(IdentityFiles::generate()?),
            "127.0.0.1:0".parse().ok(),
            receive_buffer_bytes,
            Some(state_dir),
        )
        .await
    }

    async fn start_config(
        files: std::sync::Arc<IdentityFiles>,
        listen: Option<std::net::SocketAddr>,
        receive_buffer_bytes: usize,
        state_dir: Option<PathBuf>,
    ) -> Result<BenchResearcher, BenchError> {
        let (tx, events) = mpsc::channel(EVENT_CAPACITY);
        let sink = EventSink { tx }.start();
        let mut config = ResearcherConfig::default();
        config.listen.identity = Some((files.cert.clone(), files.key.clone()));
        config.nodes.queue_capacity = 4096;
        config.receive.buffer_bytes = receive_buffer_bytes;
        config.state_dir = state_dir.clone();
        if let Some(listen) = listen {
            config.listen.address = listen;
        }
        let handle = researcher::start(config, Some(sink.recipient())).await?;
        Ok(BenchResearcher {
            handle,
            events,
            files,
            receive_buffer_bytes,
            state_dir,
        })
    }

    /// Shuts this researcher down and starts a new one on the same port
    /// with the same identity; returns it with the instant just before
    /// `start` was called (it listens a few milliseconds later at most).
    pub async fn restart(self) -> Result<(BenchResearcher, Instant), BenchError> {
        self.restart_shared().await
    }

    /// [`BenchResearcher::restart`] without owning this one (others may
    /// still hold it; it is shut down either way).
    pub async fn restart_shared(&self) -> Result<(BenchResearcher, Instant), BenchError> {
        let addr = self.handle.local_addr;
        self.handle.shutdown().await?;
        let files = self.files.clone();
        // Taken before `start` (which binds early): the figure includes the
        // start-up, so it is an upper bound.
        let listening = Instant::now();
        let r = Self::start_config(
            files,
            Some(addr),
            self.receive_buffer_bytes,
            self.state_dir.clone(),
        )
        .await?;
        Ok((r, listening))
    }

    /// The researcher's certificate file (PEM).
    pub fn cert_path(&self) -> &std::path::Path {
        &self.files.cert
    }

    /// A pinned-certificate endpoint for nodes.
    pub fn endpoint(&self) -> ResearcherEndpoint {
        ResearcherEndpoint {
            host: "127.0.0.1".to_owned(),
            port: self.handle.local_addr.port(),
            trust: TrustPolicy::PinnedCertificate(self.files.cert.clone()),
            proxy: None,
        }
    }

    /// Waits until every node of `node_ids` has polled (its
    /// `NodeConnected` event), at most `timeout`.
    pub async fn wait_connected(
        &mut self,
        node_ids: &[String],
        timeout: Duration,
    ) -> Result<Instant, BenchError> {
        let mut missing: std::collections::HashSet<&str> =
            node_ids.iter().map(String::as_str).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = Instant::now();
        while !missing.is_empty() {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some((at, ResearcherEvent::NodeConnected { node_id }))) => {
                    if missing.remove(node_id.as_str()) {
                        last = at;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(BenchError::Failed {
                        what: "the researcher event channel closed".into(),
                    })
                }
                Err(_) => {
                    return Err(BenchError::Timeout {
                        what: format!("{} of {} nodes to connect", missing.len(), node_ids.len()),
                        after: timeout,
                    })
                }
            }
        }
        Ok(last)
    }

    /// Sends `message` to `node_id` and waits for the reply.
    pub async fn request(&self, node_id: &str, message: Envelope) -> Result<Envelope, BenchError> {
        self.request_within(node_id, message, REQUEST_TIMEOUT).await
    }

    /// Sends `message` to `node_id` and waits for the reply at most `timeout`.
    pub async fn request_within(
        &self,
        node_id: &str,
        message: Envelope,
        timeout: Duration,
    ) -> Result<Envelope, BenchError> {
        Ok(self
            .handle
            .addr
            .send(Request {
                node_id: node_id.to_owned(),
                message,
                timeout,
            })
            .await??)
    }

    /// One ping round trip to `node_id`; returns its latency.
    pub async fn ping(&self, node_id: &str) -> Result<Duration, BenchError> {
        self.ping_within(node_id, REQUEST_TIMEOUT).await
    }

    /// One ping round trip to `node_id`, waiting at most `timeout`.
    pub async fn ping_within(
        &self,
        node_id: &str,
        timeout: Duration,
    ) -> Result<Duration, BenchError> {
        let start = Instant::now();
        let message = Envelope::from_typed(&PingRequest::new(&self.handle.researcher_id))?;
        let reply = self.request_within(node_id, message, timeout).await?;
        check_class(&reply, "PingReply")?;
        Ok(start.elapsed())
    }

    /// One `TrainRequest` round trip: `down` bytes of params in the request
    /// (an uint8 array sliced from `blob`), and as many in the reply as
    /// `reply` says. The request is built (encoded) inside the timing.
    pub async fn train(
        &self,
        node_id: &str,
        blob: &Bytes,
        down: usize,
        reply: TrainReplySize,
    ) -> Result<Duration, BenchError> {
        self.train_within(node_id, blob, down, reply, REQUEST_TIMEOUT)
            .await
    }

    /// [`BenchResearcher::train`] waiting at most `timeout`.
    pub async fn train_within(
        &self,
        node_id: &str,
        blob: &Bytes,
        down: usize,
        reply: TrainReplySize,
        timeout: Duration,
    ) -> Result<Duration, BenchError> {
        let start = Instant::now();
        let message = self.train_request(blob, down, reply)?;
        let reply = self.request_within(node_id, message, timeout).await?;
        check_class(&reply, "TrainReply")?;
        Ok(start.elapsed())
    }

    /// The `TrainRequest` of [`BenchResearcher::train`].
    fn train_request(
        &self,
        blob: &Bytes,
        down: usize,
        reply: TrainReplySize,
    ) -> Result<Envelope, BenchError> {
        let params = if down > 0 {
            params_of(blob.slice(0..down.min(blob.len())))
        } else {
            Value::Map(Vec::new())
        };
        let dataset = match reply {
            TrainReplySize::Echo => "echo".to_owned(),
            TrainReplySize::Empty => "down".to_owned(),
            TrainReplySize::Bytes(n) => format!("up:{n}"),
        };
        let request = TrainRequest::new(&self.handle.researcher_id, "bench", dataset, params);
        Ok(Envelope::from_typed(&request)?)
    }

    /// Sends `message` to `node_id` with `Submit` (on disk first when the
    /// researcher has a state directory) and waits for its
    /// `ResearcherEvent::Reply`, at most `timeout`; other events are
    /// dropped meanwhile.
    pub async fn submit_within(
        &mut self,
        node_id: &str,
        message: Envelope,
        timeout: Duration,
    ) -> Result<Envelope, BenchError> {
        let request_id =
            message
                .request_id()
                .map(str::to_owned)
                .ok_or_else(|| BenchError::Failed {
                    what: "a submitted request has no request_id".into(),
                })?;
        let deadline = tokio::time::Instant::now() + timeout;
        self.handle
            .addr
            .send(Submit {
                node_id: node_id.to_owned(),
                message,
                timeout,
            })
            .await??;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| BenchError::Timeout {
                    what: format!("the reply to {request_id}"),
                    after: timeout,
                })?;
            match event {
                Some((
                    _,
                    ResearcherEvent::Reply {
                        request_id: id,
                        message,
                        ..
                    },
                )) if id == request_id => return Ok(message),
                Some((
                    _,
                    ResearcherEvent::NoReply {
                        request_id: id,
                        reason,
                        ..
                    },
                )) if id == request_id => {
                    return Err(BenchError::Failed {
                        what: format!("no reply to {request_id}: {reason}"),
                    })
                }
                Some(_) => {}
                None => {
                    return Err(BenchError::Failed {
                        what: "the researcher event channel closed".into(),
                    })
                }
            }
        }
    }

    /// One submitted ping round trip (see [`BenchResearcher::submit_within`]).
    pub async fn ping_submitted(&mut self, node_id: &str) -> Result<Duration, BenchError> {
        let start = Instant::now();
        let message = Envelope::from_typed(&PingRequest::new(&self.handle.researcher_id))?;
        let reply = self
            .submit_within(node_id, message, REQUEST_TIMEOUT)
            .await?;
        check_class(&reply, "PingReply")?;
        Ok(start.elapsed())
    }

    /// One submitted `TrainRequest` round trip (as [`BenchResearcher::train`]).
    pub async fn train_submitted(
        &mut self,
        node_id: &str,
        blob: &Bytes,
        down: usize,
        reply: TrainReplySize,
    ) -> Result<Duration, BenchError> {
        let start = Instant::now();
        let message = self.train_request(blob, down, reply)?;
        let reply = self
            .submit_within(node_id, message, REQUEST_TIMEOUT)
            .await?;
        check_class(&reply, "TrainReply")?;
        Ok(start.elapsed())
    }

    /// What the researcher's delivery store wrote so far (`None` without
    /// a state directory).
    pub async fn store_stats(&self) -> Result<Option<StoreStats>, BenchError> {
        Ok(self.handle.addr.send(StoreStatus).await?)
    }
}

/// What a bench `TrainReply` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainReplySize {
    /// The request's params.
    Echo,
    /// No params.
    Empty,
    /// An n-byte array.
    Bytes(usize),
}

fn check_class(reply: &Envelope, class: &str) -> Result<(), BenchError> {
    if reply.class() == class {
        Ok(())
    } else {
        Err(BenchError::Failed {
            what: format!("expected a {class}, got a {}", reply.class()),
        })
    }
}

/// A running bench node: its controller and handler.
pub struct BenchNodeHandle {
    /// The node id.
    pub node_id: String,
    /// The controller.
    pub controller: Addr<Controller>,
}

impl BenchNodeHandle {
    /// Starts node `node_id` dialling `endpoint` in `mode`; `blob` bounds
    /// the `up:N` replies it can make.
    pub async fn start(
        node_id: String,
        endpoint: ResearcherEndpoint,
        mode: PollMode,
        blob: Bytes,
    ) -> Result<BenchNodeHandle, BenchError> {
        Self::start_tracked(
            node_id,
            endpoint,
            mode,
            blob,
            None,
            ReceiveLimits::DEFAULT_BUFFER_BYTES,
        )
        .await
    }

    /// [`BenchNodeHandle::start`], the handler recording request ids in
    /// `seen` (see [`BenchNode::tracking`]), the node keeping
    /// up to `receive_buffer_bytes` of reassembly buffers
    /// (`ControllerConfig::receive.buffer_bytes`).
    pub async fn start_tracked(
        node_id: String,
        endpoint: ResearcherEndpoint,
        mode: PollMode,
        blob: Bytes,
        seen: Option<super::soak::SeenIds>,
        receive_buffer_bytes: usize,
    ) -> Result<BenchNodeHandle, BenchError> {
        let mut config = ControllerConfig::default();
        config.polling.mode = mode;
        config.receive.buffer_bytes = receive_buffer_bytes;
        Self::start_config(node_id, endpoint, blob, seen, config).await
    }

    /// [`BenchNodeHandle::start`] with a state directory: the node's
    /// durable outbox (a reply is on disk before `SendReply` answers Ok).
    pub async fn start_durable(
        node_id: String,
        endpoint: ResearcherEndpoint,
        mode: PollMode,
        blob: Bytes,
        state_dir: PathBuf,
        receive_buffer_bytes: usize,
    ) -> Result<BenchNodeHandle, BenchError> {
        let mut config = ControllerConfig::default();
        config.polling.mode = mode;
        config.receive.buffer_bytes = receive_buffer_bytes;
        config.state_dir = Some(state_dir);
        Self::start_config(node_id, endpoint, blob, None, config).await
    }

    async fn start_config(
        node_id: String,
        endpoint: ResearcherEndpoint,
        blob: Bytes,
        seen: Option<super::soak::SeenIds>,
        config: ControllerConfig,
    ) -> Result<BenchNodeHandle, BenchError> {
        let mut handler = BenchNode::new(node_id.clone(), blob);
        if let Some(seen) = seen {
            handler = handler.tracking(seen);
        }
        let handler = handler.start();
        let controller = Controller::builder(node_id.clone())
            .name(format!("bench {node_id}"))
            .researchers(vec![endpoint])
            .config(config)
            .build(handler.clone().recipient())
            .map_err(|e| BenchError::Setup {
                what: format!("the bench node: {}", fedroute::ErrorChain(&e)),
            })?
            .start();
        handler.send(SetController(controller.clone())).await?;
        Ok(BenchNodeHandle {
            node_id,
            controller,
        })
    }

    /// What the node's delivery store wrote so far (`None` without a
    /// state directory).
    pub async fn store_stats(&self) -> Result<Option<StoreStats>, BenchError> {
        let links = self.controller.send(fedroute::node::Status).await?;
        Ok(links.into_iter().find_map(|l| l.store))
    }

    /// Shuts the controller down.
    pub async fn shutdown(&self) {
        let _ = self
            .controller
            .send(fedroute::node::Shutdown {
                deadline: Duration::from_secs(2),
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn ping_and_echo_through_a_real_researcher_and_node() {
        tokio::time::timeout(Duration::from_secs(60), async {
            let blob = Bytes::from(vec![1u8; 5 << 20]);
            for mode in [PollMode::Unary, PollMode::Streaming] {
                let mut researcher = BenchResearcher::start().await.unwrap();
                let id = format!("NODE_rig_test_{mode}");
                let node =
                    BenchNodeHandle::start(id.clone(), researcher.endpoint(), mode, blob.clone())
                        .await
                        .unwrap();
                researcher
                    .wait_connected(std::slice::from_ref(&id), CONNECT_TIMEOUT)
                    .await
                    .unwrap();
                researcher.ping(&id).await.unwrap();
                for reply in [
                    TrainReplySize::Echo,
                    TrainReplySize::Empty,
                    TrainReplySize::Bytes(5 << 20),
                ] {
                    researcher.train(&id, &blob, 5 << 20, reply).await.unwrap();
                }
                node.shutdown().await;
                researcher.handle.shutdown().await.unwrap();
            }
        })
        .await
        .unwrap();
    }

    #[test]
    fn the_handler_answers_each_train_variant() {
        let node = BenchNode::new("NODE_x".into(), Bytes::from(vec![0u8; 100]));
        let request = |dataset: &str| {
            Envelope::from_typed(&TrainRequest::new(
                "RESEARCHER_x",
                "exp",
                dataset,
                params_of(Bytes::from(vec![9u8; 10])),
            ))
            .unwrap()
        };
        let len_of = |e: &Envelope| {
            e.get("params")
                .and_then(|p| p.get("w"))
                .map(|w| NdArray::from_value(w).unwrap().data.len())
        };
        assert_eq!(len_of(&node.reply(&request("echo")).unwrap()), Some(10));
        assert_eq!(len_of(&node.reply(&request("down")).unwrap()), None);
        assert_eq!(len_of(&node.reply(&request("up:50")).unwrap()), Some(50));
        // Asking for more than the handler holds gives what it holds.
        assert_eq!(len_of(&node.reply(&request("up:500")).unwrap()), Some(100));
        let ping = Envelope::from_typed(&PingRequest::new("RESEARCHER_x")).unwrap();
        assert_eq!(node.reply(&ping).unwrap().class(), "PingReply");
    }
}
