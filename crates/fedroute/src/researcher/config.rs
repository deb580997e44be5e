//! [`ResearcherConfig`]: where the researcher listens, its identity, and the
//! limits of its queues. Every field has a documented default
//! ([`ResearcherConfig::default`]) and a chainable setter.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// How long a node may go without polling before it is DISCONNECTED.
pub(super) const DEFAULT_DISCONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a task may wait in a node's queue (Fed-BioMed: 300 s).
pub(super) const DEFAULT_TASK_TTL: Duration = Duration::from_secs(300);
/// Tasks one node may have queued or in delivery.
pub(super) const DEFAULT_NODE_QUEUE_CAPACITY: usize = 1024;
/// How often a task whose delivery was cut is queued again (Fed-BioMed: 5).
pub(super) const DEFAULT_MAX_TASK_RETRIES: u32 = 5;
/// Requests that may wait for their replies at the same time.
pub(super) const DEFAULT_MAX_PENDING_REQUESTS: usize = 65_536;
/// Distinct node ids the researcher keeps an agent for.
pub(super) const DEFAULT_MAX_NODES: usize = 10_000;
/// Tasks handed ahead to one streaming (`GetTask`) poll while earlier ones
/// are still being written.
pub(super) const DEFAULT_STREAM_PIPELINE: usize = 16;
/// HTTP/2 keepalive interval of the server (Fed-BioMed's Python peers refuse
/// pings closer than about 1.8 s apart).
pub(super) const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// How long an agent whose node is DISCONNECTED with nothing queued or
/// awaiting a reply is kept before it is forgotten (10 minutes).
pub(super) const DEFAULT_FORGET_AFTER: Duration = Duration::from_secs(600);
/// How long a `ReplyTask` stream may go without a frame before it is
/// cancelled and what it held is released.
pub(super) const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection may stay open without opening a call (one that
/// never starts HTTP/2, or never opens a stream) before it is closed.
pub(super) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection that had calls may stay without one open before it
/// is closed (Fed-BioMed's own server: 3,602 s).
pub(super) const DEFAULT_QUIET_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long a TLS handshake may take.
pub(super) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once (about one per node); further ones wait in
/// the kernel's accept queue.
pub(super) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// HTTP/2 streams (calls) one connection may have open at once (a node
/// uses two or three).
pub(super) const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 100;
pub(super) use crate::log_limit::LogRate;
pub(super) use crate::wire::{
    DecodeLimits, DEFAULT_DECODE_THREADS, DEFAULT_MAX_FRAME_BYTES, DEFAULT_RECEIVE_BUDGET_BYTES,
    DEFAULT_RECEIVE_BUFFER_BYTES,
};

/// The researcher's configuration. Build with [`ResearcherConfig::default`]
/// and the setters:
///
/// ```
/// use std::time::Duration;
/// use fedroute::researcher::ResearcherConfig;
///
/// let config = ResearcherConfig::default()
///     .listen("127.0.0.1:0".parse().unwrap())
///     .disconnection_timeout(Duration::from_secs(2));
/// assert_eq!(config.task_ttl, Duration::from_secs(300));
/// ```
#[derive(Clone, Debug)]
pub struct ResearcherConfig {
    /// Address to listen on; port 0 picks a free port (reported in
    /// `ResearcherHandle::local_addr`). Default `127.0.0.1:50051`.
    pub listen: SocketAddr,
    /// Host name or IP written into a generated certificate (CN and SAN).
    /// Default: the listen IP (`localhost` when it is unspecified).
    pub host: Option<String>,
    /// The researcher id (`RESEARCHER_<uuid4>` when `None`). Ignored when an
    /// identity is loaded: the id is the certificate's O=.
    pub researcher_id: Option<String>,
    /// Certificate and key PEM files; a self-signed certificate is generated
    /// when `None`.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// CA bundle (PEM) for mutual TLS: when set, nodes must present a client
    /// certificate signed by it, and a poll or a reply is accepted only for
    /// the node id in that certificate. Default `None`.
    pub client_ca: Option<PathBuf>,
    /// Serve plaintext HTTP/2 (no TLS), for interop and debugging only; a
    /// warning is logged. Default `false`.
    pub insecure: bool,
    /// A node without an open poll for this long becomes DISCONNECTED.
    /// Default `DEFAULT_DISCONNECTION_TIMEOUT`.
    pub disconnection_timeout: Duration,
    /// Time to live of a queued task. Default `DEFAULT_TASK_TTL`.
    pub task_ttl: Duration,
    /// Tasks one node may have queued or in delivery.
    /// Default `DEFAULT_NODE_QUEUE_CAPACITY`.
    pub node_queue_capacity: usize,
    /// Cut deliveries tolerated per task before the sender is told.
    /// Default `DEFAULT_MAX_TASK_RETRIES`.
    pub max_task_retries: u32,
    /// Largest reassembled reply accepted, in bytes.
    /// Default `wire::DEFAULT_MAX_MESSAGE_BYTES`.
    pub max_message_bytes: usize,
    /// Requests that may wait for replies at once.
    /// Default `DEFAULT_MAX_PENDING_REQUESTS`.
    pub max_pending_requests: usize,
    /// Distinct node ids kept. When the table is full, a new node id takes
    /// the place of the agent that has been forgettable (see
    /// [`ResearcherConfig::forget_after`]) the longest; it is refused
    /// (RESOURCE_EXHAUSTED) only when every agent has work or an open poll.
    /// Default `DEFAULT_MAX_NODES` (10,000).
    pub max_nodes: usize,
    /// An agent whose node is DISCONNECTED with nothing queued, in flight or
    /// awaiting a reply is forgotten after this long (a later poll creates
    /// a new one; until then, `SendToNode` and `Request` to that node fail
    /// at once with `NodeUnknown` instead of waiting in its queue).
    /// Default `DEFAULT_FORGET_AFTER` (10 minutes).
    pub forget_after: Duration,
    /// Bytes that messages still being received may hold, all nodes and
    /// calls together, counted as their buffers grow and as the gRPC layer
    /// holds a call's data beyond 64 KiB. A call that would go past it
    /// waits for room without reading on (at most `stall_timeout`, and at
    /// most 32 calls wait), then is refused with RESOURCE_EXHAUSTED (a
    /// fedroute node sends it again after a back-off), while the others go
    /// on. Must hold one message of `max_message_bytes` and a frame of
    /// `max_frame_bytes` ([`ResearcherConfig::validate`]). See
    /// `crate::wire::ReceiveBudget`.
    /// Default `DEFAULT_RECEIVE_BUDGET_BYTES` (2 GiB + 16 MiB).
    pub receive_budget_bytes: usize,
    /// What decoding one reply may cost (value-tree bytes per input byte,
    /// nesting depth). Default [`DecodeLimits::default`] (8 bytes per byte,
    /// at least 8 MiB, at most 1 GiB; 128 levels).
    pub decode_limits: DecodeLimits,
    /// Large replies (1 MiB and more) decoded at the same time, off the
    /// event loop. Default `DEFAULT_DECODE_THREADS` (2).
    pub decode_threads: usize,
    /// A `ReplyTask` stream without data for this long is cancelled
    /// (DEADLINE_EXCEEDED) and the partial message it held is released (a
    /// slow stream whose bytes keep coming is not). Also the longest a call
    /// waits for room in the receive budget.
    /// Default `DEFAULT_STALL_TIMEOUT` (30 s).
    pub stall_timeout: Duration,
    /// A connection that opens no call within this long of being accepted
    /// is closed (one that never completes TLS or HTTP/2, or never opens a
    /// stream). Default `DEFAULT_IDLE_TIMEOUT` (30 s).
    pub idle_timeout: Duration,
    /// A connection that had calls and has none open for this long is
    /// closed (a Fed-BioMed node opens a second connection for its replies,
    /// quiet between them). Default `DEFAULT_QUIET_TIMEOUT` (1 hour).
    pub quiet_timeout: Duration,
    /// Longest TLS handshake. Default `DEFAULT_HANDSHAKE_TIMEOUT` (10 s).
    pub handshake_timeout: Duration,
    /// Connections served at once; further ones wait in the kernel's queue
    /// until one closes. Raise the process's file-descriptor limit
    /// (`ulimit -n`) with it. Default `DEFAULT_MAX_CONNECTIONS` (10,000).
    pub max_connections: usize,
    /// Calls one connection may have open at once (HTTP/2 concurrent
    /// streams). Default `DEFAULT_MAX_STREAMS_PER_CONNECTION` (100).
    pub max_streams_per_connection: u32,
    /// Largest gRPC message (one frame of a chunked message) accepted;
    /// fedroute and Fed-BioMed send frames of just under 4 MB.
    /// Default `DEFAULT_MAX_FRAME_BYTES` (8 MiB).
    pub max_frame_bytes: usize,
    /// Warnings one node (or one address, before a node id is known) may
    /// cause per kind (bad reply, bad poll, ...) and window; the rest are
    /// counted and summed up in one line. Default [`LogRate::default`]
    /// (5 lines per 10 s).
    pub peer_log_rate: LogRate,
    /// Tasks handed ahead to a streaming poll. Default `DEFAULT_STREAM_PIPELINE`.
    pub stream_pipeline: usize,
    /// HTTP/2 keepalive interval (at least 2 s). Default `DEFAULT_KEEPALIVE_INTERVAL`.
    pub keepalive_interval: Duration,
    /// Bytes of reassembly buffers kept, for all nodes together, to receive
    /// the next large replies into the same memory (no fresh allocation and
    /// page faults per model), at the price of keeping that memory while
    /// idle; a buffer is reused only once the application has dropped the
    /// reply that was in it. Raise it when several nodes send large replies
    /// at once; 0 keeps none. See [`crate::wire::BufferPool`].
    /// Default [`DEFAULT_RECEIVE_BUFFER_BYTES`] (256 MiB).
    pub receive_buffer_bytes: usize,
}

impl Default for ResearcherConfig {
    fn default() -> Self {
        ResearcherConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 50051)),
            host: None,
            researcher_id: None,
            identity: None,
            client_ca: None,
            insecure: false,
            disconnection_timeout: DEFAULT_DISCONNECTION_TIMEOUT,
            task_ttl: DEFAULT_TASK_TTL,
            node_queue_capacity: DEFAULT_NODE_QUEUE_CAPACITY,
            max_task_retries: DEFAULT_MAX_TASK_RETRIES,
            max_message_bytes: crate::wire::DEFAULT_MAX_MESSAGE_BYTES,
            max_pending_requests: DEFAULT_MAX_PENDING_REQUESTS,
            max_nodes: DEFAULT_MAX_NODES,
            forget_after: DEFAULT_FORGET_AFTER,
            receive_budget_bytes: DEFAULT_RECEIVE_BUDGET_BYTES,
            decode_limits: DecodeLimits::default(),
            decode_threads: DEFAULT_DECODE_THREADS,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            quiet_timeout: DEFAULT_QUIET_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            peer_log_rate: LogRate::default(),
            stream_pipeline: DEFAULT_STREAM_PIPELINE,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            receive_buffer_bytes: DEFAULT_RECEIVE_BUFFER_BYTES,
        }
    }
}

impl ResearcherConfig {
    /// Sets [`ResearcherConfig::listen`].
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }
    /// Sets [`ResearcherConfig::host`].
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }
    /// Sets [`ResearcherConfig::researcher_id`].
    pub fn researcher_id(mut self, id: impl Into<String>) -> Self {
        self.researcher_id = Some(id.into());
        self
    }
    /// Sets [`ResearcherConfig::identity`].
    pub fn identity(mut self, cert: PathBuf, key: PathBuf) -> Self {
        self.identity = Some((cert, key));
        self
    }
    /// Sets [`ResearcherConfig::client_ca`] (mutual TLS).
    pub fn client_ca(mut self, ca: PathBuf) -> Self {
        self.client_ca = Some(ca);
        self
    }
    /// Sets [`ResearcherConfig::insecure`].
    pub fn insecure(mut self, on: bool) -> Self {
        self.insecure = on;
        self
    }
    /// Sets [`ResearcherConfig::disconnection_timeout`].
    pub fn disconnection_timeout(mut self, d: Duration) -> Self {
        self.disconnection_timeout = d;
        self
    }
    /// Sets [`ResearcherConfig::task_ttl`].
    pub fn task_ttl(mut self, d: Duration) -> Self {
        self.task_ttl = d;
        self
    }
    /// Sets [`ResearcherConfig::node_queue_capacity`].
    pub fn node_queue_capacity(mut self, n: usize) -> Self {
        self.node_queue_capacity = n;
        self
    }
    /// Sets [`ResearcherConfig::max_task_retries`].
    pub fn max_task_retries(mut self, n: u32) -> Self {
        self.max_task_retries = n;
        self
    }
    /// Sets [`ResearcherConfig::max_message_bytes`].
    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.max_message_bytes = n;
        self
    }
    /// Sets [`ResearcherConfig::max_pending_requests`].
    pub fn max_pending_requests(mut self, n: usize) -> Self {
        self.max_pending_requests = n;
        self
    }
    /// Sets [`ResearcherConfig::max_nodes`].
    pub fn max_nodes(mut self, n: usize) -> Self {
        self.max_nodes = n;
        self
    }
    /// Sets [`ResearcherConfig::forget_after`].
    pub fn forget_after(mut self, d: Duration) -> Self {
        self.forget_after = d;
        self
    }
    /// Sets [`ResearcherConfig::receive_budget_bytes`].
    pub fn receive_budget_bytes(mut self, n: usize) -> Self {
        self.receive_budget_bytes = n;
        self
    }
    /// Sets [`ResearcherConfig::decode_limits`].
    pub fn decode_limits(mut self, limits: DecodeLimits) -> Self {
        self.decode_limits = limits;
        self
    }
    /// Sets [`ResearcherConfig::decode_threads`].
    pub fn decode_threads(mut self, n: usize) -> Self {
        self.decode_threads = n;
        self
    }
    /// Sets [`ResearcherConfig::stall_timeout`].
    pub fn stall_timeout(mut self, d: Duration) -> Self {
        self.stall_timeout = d;
        self
    }
    /// Sets [`ResearcherConfig::idle_timeout`].
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }
    /// Sets [`ResearcherConfig::quiet_timeout`].
    pub fn quiet_timeout(mut self, d: Duration) -> Self {
        self.quiet_timeout = d;
        self
    }
    /// Sets [`ResearcherConfig::handshake_timeout`].
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }
    /// Sets [`ResearcherConfig::max_connections`].
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }
    /// Sets [`ResearcherConfig::max_streams_per_connection`].
    pub fn max_streams_per_connection(mut self, n: u32) -> Self {
        self.max_streams_per_connection = n;
        self
    }
    /// Sets [`ResearcherConfig::max_frame_bytes`].
    pub fn max_frame_bytes(mut self, n: usize) -> Self {
        self.max_frame_bytes = n;
        self
    }
    /// Sets [`ResearcherConfig::peer_log_rate`].
    pub fn peer_log_rate(mut self, rate: LogRate) -> Self {
        self.peer_log_rate = rate;
        self
    }
    /// Sets [`ResearcherConfig::stream_pipeline`].
    pub fn stream_pipeline(mut self, n: usize) -> Self {
        self.stream_pipeline = n;
        self
    }
    /// Sets [`ResearcherConfig::keepalive_interval`].
    pub fn keepalive_interval(mut self, d: Duration) -> Self {
        self.keepalive_interval = d;
        self
    }
    /// Sets [`ResearcherConfig::receive_buffer_bytes`].
    pub fn receive_buffer_bytes(mut self, n: usize) -> Self {
        self.receive_buffer_bytes = n;
        self
    }

    /// The host written into a generated certificate.
    pub fn certificate_host(&self) -> String {
        match &self.host {
            Some(h) => h.clone(),
            None if self.listen.ip().is_unspecified() => "localhost".to_string(),
            None => self.listen.ip().to_string(),
        }
    }

    /// Checks the limits are usable (non-zero capacities and durations).
    pub fn validate(&self) -> Result<(), String> {
        if self.node_queue_capacity == 0 {
            return Err("node_queue_capacity must be at least 1".into());
        }
        if self.max_pending_requests == 0 {
            return Err("max_pending_requests must be at least 1".into());
        }
        if self.max_nodes == 0 {
            return Err("max_nodes must be at least 1".into());
        }
        if self.stream_pipeline == 0 {
            return Err("stream_pipeline must be at least 1".into());
        }
        if self.task_ttl.is_zero() {
            return Err("task_ttl must be positive".into());
        }
        if self.disconnection_timeout.is_zero() {
            return Err("disconnection_timeout must be positive".into());
        }
        if self.keepalive_interval < Duration::from_secs(2) {
            return Err(format!(
                "keepalive_interval {:?} is below 2 s (peers refuse faster pings)",
                self.keepalive_interval
            ));
        }
        if self.max_message_bytes == 0 {
            return Err("max_message_bytes must be positive".into());
        }
        let needed = self.max_message_bytes.saturating_add(self.max_frame_bytes);
        if self.receive_budget_bytes < needed {
            return Err(format!(
                "receive_budget_bytes {} cannot hold one message of max_message_bytes {} and a frame of max_frame_bytes {}: raise it, or lower those",
                self.receive_budget_bytes, self.max_message_bytes, self.max_frame_bytes
            ));
        }
        for (name, d) in [
            ("forget_after", self.forget_after),
            ("stall_timeout", self.stall_timeout),
            ("idle_timeout", self.idle_timeout),
            ("quiet_timeout", self.quiet_timeout),
            ("handshake_timeout", self.handshake_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be positive"));
            }
        }
        if self.max_connections == 0 || self.max_streams_per_connection == 0 {
            return Err("max_connections and max_streams_per_connection must be at least 1".into());
        }
        if self.max_frame_bytes == 0 || self.decode_threads == 0 {
            return Err("max_frame_bytes and decode_threads must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = ResearcherConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.task_ttl, Duration::from_secs(300));
        assert_eq!(c.max_task_retries, 5);
        assert_eq!(c.receive_buffer_bytes, 256 << 20);
        assert!(!c.insecure);
    }

    #[test]
    fn certificate_host_follows_listen_address() {
        let c = ResearcherConfig::default().listen("127.0.0.1:0".parse().unwrap());
        assert_eq!(c.certificate_host(), "127.0.0.1");
        let c = ResearcherConfig::default().listen("0.0.0.0:0".parse().unwrap());
        assert_eq!(c.certificate_host(), "localhost");
        let c = c.host("researcher.example");
        assert_eq!(c.certificate_host(), "researcher.example");
    }

    #[test]
    fn zero_limits_are_rejected() {
        assert!(ResearcherConfig::default()
            .node_queue_capacity(0)
            .validate()
            .is_err());
        assert!(ResearcherConfig::default()
            .keepalive_interval(Duration::from_secs(1))
            .validate()
            .is_err());
    }
}
