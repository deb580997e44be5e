//! [`ResearcherConfig`]: where the researcher listens and with which
//! identity, how it handles nodes, and its limits, in groups with
//! documented defaults (see [`crate::config`]).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigError, ReceiveLimits};
use crate::log_limit::LogRate;
use crate::tls::ChannelOptions;

/// The researcher's configuration:
///
/// ```
/// use std::time::Duration;
/// use fedroute::researcher::ResearcherConfig;
///
/// let mut config = ResearcherConfig::default();
/// config.listen.address = "127.0.0.1:0".parse().unwrap();
/// config.nodes.disconnection_timeout = Duration::from_secs(2);
/// assert_eq!(config.nodes.task_ttl, Duration::from_secs(300));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ResearcherConfig {
    /// Where the researcher listens, and its TLS identity.
    /// Default: [`ListenSettings::default`].
    pub listen: ListenSettings,
    /// How the researcher handles each node (its queue, its status).
    /// Default: [`NodeSettings::default`].
    pub nodes: NodeSettings,
    /// How much the researcher serves at once (nodes, requests,
    /// connections). Default: [`Limits::default`].
    pub limits: Limits,
    /// When the researcher closes connections, and its HTTP/2 keepalive.
    /// Default: [`Timeouts::default`].
    pub timeouts: Timeouts,
    /// What nodes may make the researcher hold while it receives replies,
    /// all nodes and calls together. Default: [`ReceiveLimits::default`].
    pub receive: ReceiveLimits,
    /// Warnings one node (or one address, before a node id is known) may
    /// cause per kind (bad reply, bad poll, ...) and window; the rest are
    /// counted and summed up in one line. Default: [`LogRate::default`]
    /// (5 lines per 10 s).
    pub peer_log_rate: LogRate,
    /// Where the researcher keeps what must survive a restart: its key and
    /// certificate (`researcher-identity.pem`, see
    /// [`IdentityDir`](crate::tls::IdentityDir)), generated on the first
    /// start, so that nodes which trusted it on first use still trust it.
    /// `listen.identity` files, when given, take precedence. It also holds
    /// the delivery store (`delivery.redb`, `delivery-payloads/`): every
    /// [`Request`](super::Request) and [`Submit`](super::Submit) is on
    /// disk before it is queued, until its reply, timeout or failure, and
    /// a restart with the same directory offers the unanswered tasks again
    /// (see [`RecoveredRequests`](super::RecoveredRequests)). One process
    /// per directory. Default: none: a new identity at every start (nodes
    /// that trusted an earlier one then refuse it), and requests in memory
    /// only.
    pub state_dir: Option<PathBuf>,
}

impl ResearcherConfig {
    /// Checks the settings are usable: nothing that must be positive is
    /// zero, the keepalive is not too frequent for peers, the receive
    /// limits fit together ([`ReceiveLimits::validate`]), and plaintext is
    /// not asked for with mutual TLS (a client CA or trusted nodes). [`super::start`] checks it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.insecure && self.listen.client_ca.is_some() {
            return Err(ConfigError::Conflict {
                first: "listen.insecure (plaintext)",
                second: "listen.client_ca (mutual TLS)",
            });
        }
        if self.listen.insecure && self.listen.trusted_nodes.is_some() {
            return Err(ConfigError::Conflict {
                first: "listen.insecure (plaintext)",
                second: "listen.trusted_nodes (mutual TLS)",
            });
        }
        for (setting, zero) in [
            ("nodes.queue_capacity", self.nodes.queue_capacity == 0),
            ("nodes.stream_pipeline", self.nodes.stream_pipeline == 0),
            ("nodes.task_ttl", self.nodes.task_ttl.is_zero()),
            (
                "nodes.disconnection_timeout",
                self.nodes.disconnection_timeout.is_zero(),
            ),
            ("nodes.forget_after", self.nodes.forget_after.is_zero()),
            ("limits.max_nodes", self.limits.max_nodes == 0),
            (
                "limits.max_pending_requests",
                self.limits.max_pending_requests == 0,
            ),
            ("limits.max_connections", self.limits.max_connections == 0),
            (
                "limits.max_streams_per_connection",
                self.limits.max_streams_per_connection == 0,
            ),
            ("timeouts.idle", self.timeouts.idle.is_zero()),
            ("timeouts.quiet", self.timeouts.quiet.is_zero()),
            ("timeouts.handshake", self.timeouts.handshake.is_zero()),
        ] {
            if zero {
                return Err(ConfigError::Zero { setting });
            }
        }
        if self.timeouts.keepalive_interval < ChannelOptions::MIN_KEEPALIVE_INTERVAL {
            return Err(ConfigError::KeepaliveTooShort {
                setting: "timeouts.keepalive_interval",
                interval: self.timeouts.keepalive_interval,
                minimum: ChannelOptions::MIN_KEEPALIVE_INTERVAL,
            });
        }
        self.receive.validate()
    }
}

/// Where the researcher listens, and its TLS identity.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenSettings {
    /// Address to listen on; port 0 picks a free port (reported in
    /// `ResearcherHandle::local_addr`). Default: `127.0.0.1:50051`.
    pub address: SocketAddr,
    /// Host name or IP written into a generated certificate (CN and SAN).
    /// Default: none, for the listen IP (`localhost` when it is
    /// unspecified; see [`ListenSettings::certificate_host`]).
    pub host: Option<String>,
    /// The researcher id. Ignored when an identity is loaded: the id is the
    /// certificate's O=. Default: none, for `RESEARCHER_<uuid4>`.
    pub researcher_id: Option<String>,
    /// Certificate and key PEM files. Default: none, for a self-signed
    /// certificate generated at start.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// CA bundle (PEM) for mutual TLS: when set, nodes must present a client
    /// certificate signed by it (or registered in
    /// [`ListenSettings::trusted_nodes`]), and every call is accepted only
    /// for the node id in that certificate (subject O=, else CN=).
    /// Default: none.
    pub client_ca: Option<PathBuf>,
    /// Directory of registered node certificates for mutual TLS, as
    /// Fed-BioMed registers them: every `*.pem` file in it is one node's
    /// (self-signed) certificate, trusted exactly as it is, not as a CA
    /// (make one with `fedroute cert new` or
    /// [`crate::tls::generate_node_identity`]). When set, nodes must present
    /// a registered certificate (or one signed by
    /// [`ListenSettings::client_ca`], when that is set too), and every call is
    /// accepted only for the node id in it. The directory is checked again at
    /// each handshake (one `stat` per file; changed files are read again), so
    /// registering or removing a node needs no restart. At start, a missing
    /// directory or a file that does not parse is an error; later, such a
    /// file is logged once per change and its last good content kept.
    /// Default: none.
    pub trusted_nodes: Option<PathBuf>,
    /// Serve plaintext HTTP/2 (no TLS), for interop and debugging only; a
    /// warning is logged. Default: false.
    pub insecure: bool,
}

impl ListenSettings {
    /// Default of [`ListenSettings::address`] (`127.0.0.1:50051`, Fed-BioMed's).
    pub const DEFAULT_ADDRESS: SocketAddr =
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 50051));

    /// Whether nodes must present a client certificate (a client CA or a
    /// trusted-nodes directory is set).
    pub(crate) fn mutual_tls(&self) -> bool {
        self.client_ca.is_some() || self.trusted_nodes.is_some()
    }

    /// The host written into a generated certificate.
    pub fn certificate_host(&self) -> String {
        match &self.host {
            Some(h) => h.clone(),
            None if self.address.ip().is_unspecified() => "localhost".to_string(),
            None => self.address.ip().to_string(),
        }
    }
}

impl Default for ListenSettings {
    fn default() -> ListenSettings {
        ListenSettings {
            address: Self::DEFAULT_ADDRESS,
            host: None,
            researcher_id: None,
            identity: None,
            client_ca: None,
            trusted_nodes: None,
            insecure: false,
        }
    }
}

/// How the researcher handles each node: its task queue and its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeSettings {
    /// A node without an open poll for this long becomes DISCONNECTED.
    /// Default: 10 s.
    pub disconnection_timeout: Duration,
    /// Time to live of a queued task. Default: 300 s.
    pub task_ttl: Duration,
    /// Tasks one node may have queued or in delivery. Default: 1024.
    pub queue_capacity: usize,
    /// Cut deliveries tolerated per task before the sender is told.
    /// Default: 5.
    pub max_task_retries: u32,
    /// An agent whose node is DISCONNECTED with nothing queued, in flight or
    /// awaiting a reply is forgotten after this long (a later poll creates
    /// a new one; until then, `SendToNode` and `Request` to that node fail
    /// at once with `NodeUnknown` instead of waiting in its queue).
    /// Default: 10 minutes.
    pub forget_after: Duration,
    /// Tasks handed ahead to a streaming (`GetTask`) poll while earlier ones
    /// are still being written. Default: 16.
    pub stream_pipeline: usize,
}

impl NodeSettings {
    /// Default of [`NodeSettings::disconnection_timeout`] (10 s).
    pub const DEFAULT_DISCONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default of [`NodeSettings::task_ttl`] (300 s, as Fed-BioMed).
    pub const DEFAULT_TASK_TTL: Duration = Duration::from_secs(300);
    /// Default of [`NodeSettings::queue_capacity`] (1024).
    pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
    /// Default of [`NodeSettings::max_task_retries`] (5, as Fed-BioMed).
    pub const DEFAULT_MAX_TASK_RETRIES: u32 = 5;
    /// Default of [`NodeSettings::forget_after`] (10 minutes).
    pub const DEFAULT_FORGET_AFTER: Duration = Duration::from_secs(600);
    /// Default of [`NodeSettings::stream_pipeline`] (16).
    pub const DEFAULT_STREAM_PIPELINE: usize = 16;
}

impl Default for NodeSettings {
    fn default() -> NodeSettings {
        NodeSettings {
            disconnection_timeout: Self::DEFAULT_DISCONNECTION_TIMEOUT,
            task_ttl: Self::DEFAULT_TASK_TTL,
            queue_capacity: Self::DEFAULT_QUEUE_CAPACITY,
            max_task_retries: Self::DEFAULT_MAX_TASK_RETRIES,
            forget_after: Self::DEFAULT_FORGET_AFTER,
            stream_pipeline: Self::DEFAULT_STREAM_PIPELINE,
        }
    }
}

/// How much the researcher serves at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Distinct node ids kept. When the table is full, a new node id takes
    /// the place of the agent that has been forgettable (see
    /// [`NodeSettings::forget_after`]) the longest; it is refused
    /// (RESOURCE_EXHAUSTED) only when every agent has work or an open poll.
    /// Default: 10,000.
    pub max_nodes: usize,
    /// Requests that may wait for replies at once. Default: 65,536.
    pub max_pending_requests: usize,
    /// Connections served at once; further ones wait in the kernel's queue
    /// until one closes. Raise the process's file-descriptor limit
    /// (`ulimit -n`) with it. Default: 10,000.
    pub max_connections: usize,
    /// Calls one connection may have open at once (HTTP/2 concurrent
    /// streams; a node uses two or three). Default: 100.
    pub max_streams_per_connection: u32,
}

impl Limits {
    /// Default of [`Limits::max_nodes`] (10,000).
    pub const DEFAULT_MAX_NODES: usize = 10_000;
    /// Default of [`Limits::max_pending_requests`] (65,536).
    pub const DEFAULT_MAX_PENDING_REQUESTS: usize = 65_536;
    /// Default of [`Limits::max_connections`] (10,000: about one per node).
    pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
    /// Default of [`Limits::max_streams_per_connection`] (100).
    pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 100;
    /// The HTTP/2 initial stream window of every connection (4 MiB, not
    /// configurable): large enough that a 4 MB frame does not wait for many
    /// window updates.
    pub const STREAM_WINDOW: u32 = 4 << 20;
    /// The HTTP/2 initial connection window of every connection (16 MiB,
    /// not configurable): data a node may have sent and the researcher not
    /// yet read.
    pub const CONNECTION_WINDOW: u32 = 16 << 20;
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_nodes: Self::DEFAULT_MAX_NODES,
            max_pending_requests: Self::DEFAULT_MAX_PENDING_REQUESTS,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_streams_per_connection: Self::DEFAULT_MAX_STREAMS_PER_CONNECTION,
        }
    }
}

/// When the researcher closes connections, and its HTTP/2 keepalive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// A connection that opens no call within this long of being accepted
    /// is closed (one that never completes TLS or HTTP/2, or never opens a
    /// stream). Default: 30 s.
    pub idle: Duration,
    /// A connection that had calls and has none open for this long is
    /// closed (a Fed-BioMed node opens a second connection for its replies,
    /// quiet between them). Default: 1 hour.
    pub quiet: Duration,
    /// Longest TLS handshake. Default: 10 s.
    pub handshake: Duration,
    /// HTTP/2 keepalive interval, at least
    /// [`ChannelOptions::MIN_KEEPALIVE_INTERVAL`] (2 s); an unanswered ping
    /// closes the connection after
    /// [`ChannelOptions::DEFAULT_KEEPALIVE_TIMEOUT`]. Default: 60 s.
    pub keepalive_interval: Duration,
}

impl Timeouts {
    /// Default of [`Timeouts::idle`] (30 s).
    pub const DEFAULT_IDLE: Duration = Duration::from_secs(30);
    /// Default of [`Timeouts::quiet`] (1 hour; Fed-BioMed's own server:
    /// 3,602 s).
    pub const DEFAULT_QUIET: Duration = Duration::from_secs(3600);
    /// Default of [`Timeouts::handshake`] (10 s), the bound
    /// [`crate::tls::server_tls_config`] sets.
    pub const DEFAULT_HANDSHAKE: Duration = crate::tls::SERVER_HANDSHAKE_TIMEOUT;
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            idle: Self::DEFAULT_IDLE,
            quiet: Self::DEFAULT_QUIET,
            handshake: Self::DEFAULT_HANDSHAKE,
            keepalive_interval: ChannelOptions::DEFAULT_KEEPALIVE_INTERVAL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_values() {
        // Destructured in full, so that a new setting fails here until its
        // default is checked.
        let ResearcherConfig {
            listen,
            nodes,
            limits,
            timeouts,
            receive,
            peer_log_rate,
            state_dir,
        } = ResearcherConfig::default();
        assert!(state_dir.is_none());
        assert_eq!(receive, ReceiveLimits::default());
        assert_eq!(peer_log_rate, LogRate::default());

        let ListenSettings {
            address,
            host,
            researcher_id,
            identity,
            client_ca,
            trusted_nodes,
            insecure,
        } = listen;
        assert_eq!(address, "127.0.0.1:50051".parse().unwrap());
        assert_eq!((host, researcher_id), (None, None));
        assert_eq!((identity, client_ca, trusted_nodes), (None, None, None));
        assert!(!insecure);

        let NodeSettings {
            disconnection_timeout,
            task_ttl,
            queue_capacity,
            max_task_retries,
            forget_after,
            stream_pipeline,
        } = nodes;
        assert_eq!(disconnection_timeout, Duration::from_secs(10));
        assert_eq!(task_ttl, Duration::from_secs(300));
        assert_eq!(queue_capacity, 1024);
        assert_eq!(max_task_retries, 5);
        assert_eq!(forget_after, Duration::from_secs(600));
        assert_eq!(stream_pipeline, 16);

        let Limits {
            max_nodes,
            max_pending_requests,
            max_connections,
            max_streams_per_connection,
        } = limits;
        assert_eq!(max_nodes, 10_000);
        assert_eq!(max_pending_requests, 65_536);
        assert_eq!(max_connections, 10_000);
        assert_eq!(max_streams_per_connection, 100);

        let Timeouts {
            idle,
            quiet,
            handshake,
            keepalive_interval,
        } = timeouts;
        assert_eq!(idle, Duration::from_secs(30));
        assert_eq!(quiet, Duration::from_secs(3600));
        assert_eq!(handshake, Duration::from_secs(10));
        assert_eq!(keepalive_interval, Duration::from_secs(60));

        assert!(ResearcherConfig::default().validate().is_ok());
        assert_eq!(
            crate::config::fields_without_default(include_str!("config.rs")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn certificate_host_follows_listen_address() {
        let mut l = ListenSettings {
            address: "127.0.0.1:0".parse().unwrap(),
            ..ListenSettings::default()
        };
        assert_eq!(l.certificate_host(), "127.0.0.1");
        l.address = "0.0.0.0:0".parse().unwrap();
        assert_eq!(l.certificate_host(), "localhost");
        l.host = Some("researcher.example".into());
        assert_eq!(l.certificate_host(), "researcher.example");
    }

    #[test]
    fn unusable_settings_are_rejected() {
        let mut c = ResearcherConfig::default();
        c.nodes.queue_capacity = 0;
        assert_eq!(
            c.validate(),
            Err(ConfigError::Zero {
                setting: "nodes.queue_capacity"
            })
        );
        let mut c = ResearcherConfig::default();
        c.timeouts.keepalive_interval = Duration::from_secs(1);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::KeepaliveTooShort { .. })
        ));
        let mut c = ResearcherConfig::default();
        c.listen.insecure = true;
        c.listen.client_ca = Some("ca.pem".into());
        assert!(matches!(c.validate(), Err(ConfigError::Conflict { .. })));
        c.listen.client_ca = None;
        c.listen.trusted_nodes = Some("nodes".into());
        assert!(matches!(c.validate(), Err(ConfigError::Conflict { .. })));
        let mut c = ResearcherConfig::default();
        c.receive.budget_bytes = 1;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::BudgetTooSmall { .. })
        ));
    }
}
