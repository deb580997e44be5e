//! [`ControllerConfig`]: the settings the controller and all its links
//! share, in groups, with documented defaults (see [`crate::config`]).

use std::path::PathBuf;
use std::time::Duration;

use super::status::PollMode;
use crate::config::{ConfigError, ReceiveLimits};
use crate::log_limit::LogRate;
#[cfg(doc)]
use crate::tls::TrustStore;
use crate::tls::{ChannelOptions, ClientIdentity};

/// How replies travel on `ReplyTask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyStreamMode {
    /// One `ReplyTask` call per batch of queued messages; a batch is removed
    /// from the queue when its call succeeds.
    PerBatch,
    /// One `ReplyTask` call stays open and messages are written to it as
    /// they are queued (no call set-up per message); the call is closed, and
    /// its messages acknowledged, when the queue has been idle for
    /// [`ReplySettings::stream_idle`], after
    /// [`ReplySettings::stream_messages`] messages, or after
    /// [`ReplySettings::stream_age`]. If it fails, its messages are sent
    /// again after reconnecting (researchers keep the first copy of a reply,
    /// by request id).
    Persistent,
    /// `Persistent` on links that poll in streaming mode (fedroute researchers),
    /// `PerBatch` on unary links (Fed-BioMed researchers).
    Auto,
}

/// Settings shared by the controller and all its links:
///
/// ```
/// use std::time::Duration;
/// use fedroute::node::{ControllerConfig, PollMode};
///
/// let mut config = ControllerConfig::default();
/// config.polling.mode = PollMode::Streaming;
/// config.channel.connect_timeout = Duration::from_secs(5);
/// assert_eq!(config.polling.deadline, Duration::from_secs(3600));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ControllerConfig {
    /// How links dial and keep their connections (connect timeout, HTTP/2
    /// keepalive and windows); the keepalive interval is raised to at least
    /// [`ChannelOptions::MIN_KEEPALIVE_INTERVAL`]
    /// ([`ControllerConfig::effective_keepalive`]).
    /// Default: [`ChannelOptions::default`] with HTTP/2 windows of 4 MiB
    /// per stream and 8 MiB per connection.
    pub channel: ChannelOptions,
    /// Node certificate presented when a researcher asks for one (mutual
    /// TLS). Default: none.
    pub client_identity: Option<ClientIdentity>,
    /// When a link dials again after losing its researcher.
    /// Default: [`ReconnectSettings::default`].
    pub reconnect: ReconnectSettings,
    /// How links ask for tasks. Default: [`PollSettings::default`].
    pub polling: PollSettings,
    /// How links send replies. Default: [`ReplySettings::default`].
    pub replies: ReplySettings,
    /// What researchers may make the node hold while it receives tasks,
    /// all links together (receive buffers: per link).
    /// Default: [`ReceiveLimits::default`].
    pub receive: ReceiveLimits,
    /// What waits to be sent, per link. Default: [`QueueSettings::default`].
    pub queues: QueueSettings,
    /// Warnings one researcher may cause per kind (bad task, ...) and
    /// window; the rest are counted and summed up in one line.
    /// Default: [`LogRate::default`] (5 lines per 10 s).
    pub peer_log_rate: LogRate,
    /// Where the node keeps what must survive a restart: the trust store
    /// (`trust.json`, see [`TrustStore`]), the certificate each researcher
    /// endpoint was trusted with, and the durable outbox (`delivery.redb`
    /// and `delivery-payloads/`): replies until the researcher acknowledged
    /// them, and the request ids answered (see the module's delivery
    /// guarantees). One process per directory: a second one is refused.
    /// Default: none; the trust store and the outbox live in memory (a
    /// restarted node trusts every researcher anew, and loses the replies
    /// it had not delivered). `fedroute
    /// node` defaults to `$XDG_STATE_HOME/fedroute/node` (or
    /// `~/.local/state/fedroute/node`).
    pub state_dir: Option<PathBuf>,
}

impl ControllerConfig {
    /// Default HTTP/2 initial stream window of a link (4 MiB): a 4 MB
    /// frame does not wait for many window updates.
    pub const DEFAULT_STREAM_WINDOW: u32 = 4 << 20;
    /// Default HTTP/2 initial connection window of a link (8 MiB).
    pub const DEFAULT_CONNECTION_WINDOW: u32 = 8 << 20;

    /// Checks that the settings fit together (see
    /// [`ReceiveLimits::validate`]); [`ControllerBuilder::build`](super::ControllerBuilder::build)
    /// calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.receive.validate()
    }

    /// The keepalive interval actually used: never below
    /// [`ChannelOptions::MIN_KEEPALIVE_INTERVAL`].
    pub fn effective_keepalive(&self) -> Duration {
        self.channel
            .keepalive_interval
            .max(ChannelOptions::MIN_KEEPALIVE_INTERVAL)
    }
}

impl Default for ControllerConfig {
    fn default() -> ControllerConfig {
        ControllerConfig {
            channel: ChannelOptions {
                initial_stream_window_size: Some(Self::DEFAULT_STREAM_WINDOW),
                initial_connection_window_size: Some(Self::DEFAULT_CONNECTION_WINDOW),
                ..ChannelOptions::default()
            },
            client_identity: None,
            reconnect: ReconnectSettings::default(),
            polling: PollSettings::default(),
            replies: ReplySettings::default(),
            receive: ReceiveLimits::default(),
            queues: QueueSettings::default(),
            state_dir: None,
            peer_log_rate: LogRate::default(),
        }
    }
}

/// When a link dials again after losing its researcher: a jittered
/// back-off after failed attempts, and fast knocks on a port that refuses
/// connections (see the README's reconnect section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReconnectSettings {
    /// Upper bound of the first reconnect delay. Default: 50 ms.
    pub backoff_first: Duration,
    /// Cap of the reconnect delay. The back-off applies to attempts that
    /// failed after the researcher accepted the TCP connection; while it
    /// refuses connections, the link knocks instead (`probe_interval`).
    /// Default: 2 s.
    pub backoff_max: Duration,
    /// While a link is down and the researcher's port refuses connections,
    /// a bare TCP connection is tried this often (plus up to a fifth of
    /// jitter) for the first `probe_fast_for` of the outage, then every
    /// second (or `backoff_max` if longer); the full reconnect starts as
    /// soon as one connects. Zero turns knocking off (back-off only).
    /// Default: 100 ms.
    pub probe_interval: Duration,
    /// How long knocks stay fast. Default: 60 s.
    pub probe_fast_for: Duration,
}

impl ReconnectSettings {
    /// Default of [`ReconnectSettings::backoff_first`] (50 ms): a
    /// researcher restart is usually quick.
    pub const DEFAULT_BACKOFF_FIRST: Duration = Duration::from_millis(50);
    /// Default of [`ReconnectSettings::backoff_max`] (2 s, the fixed delay
    /// of Fed-BioMed nodes).
    pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(2);
    /// Default of [`ReconnectSettings::probe_interval`] (100 ms).
    pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(100);
    /// Default of [`ReconnectSettings::probe_fast_for`] (60 s).
    pub const DEFAULT_PROBE_FAST_FOR: Duration = Duration::from_secs(60);
}

impl Default for ReconnectSettings {
    fn default() -> ReconnectSettings {
        ReconnectSettings {
            backoff_first: Self::DEFAULT_BACKOFF_FIRST,
            backoff_max: Self::DEFAULT_BACKOFF_MAX,
            probe_interval: Self::DEFAULT_PROBE_INTERVAL,
            probe_fast_for: Self::DEFAULT_PROBE_FAST_FOR,
        }
    }
}

/// How links ask researchers for tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollSettings {
    /// Streaming or unary polling. Default: [`PollMode::Auto`].
    pub mode: PollMode,
    /// Deadline of one long poll; the poll is opened again at once after
    /// it. Default: 3600 s.
    pub deadline: Duration,
    /// Tasks requested ahead on a streaming poll. Default: 16.
    pub credits: u32,
}

impl PollSettings {
    /// Default of [`PollSettings::deadline`] (3600 s, as Fed-BioMed).
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(3600);
    /// Default of [`PollSettings::credits`] (16).
    pub const DEFAULT_CREDITS: u32 = 16;
}

impl Default for PollSettings {
    fn default() -> PollSettings {
        PollSettings {
            mode: PollMode::Auto,
            deadline: Self::DEFAULT_DEADLINE,
            credits: Self::DEFAULT_CREDITS,
        }
    }
}

/// How links send replies and feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplySettings {
    /// Bound on one send RPC (a `ReplyTask` batch or a `Feedback`).
    /// Default: 600 s.
    pub send_timeout: Duration,
    /// Most messages per `ReplyTask` stream. Default: 64.
    pub max_batch_messages: usize,
    /// Most payload bytes per `ReplyTask` stream (one message may exceed
    /// it). Default: 16 MiB.
    pub max_batch_bytes: usize,
    /// Times the researcher may reject the same message (a gRPC error other
    /// than a transport failure, retried after reconnecting) before it is
    /// dropped with an error log. Default: 3.
    pub max_rejections: u32,
    /// How replies travel. Default: [`ReplyStreamMode::Auto`].
    pub stream: ReplyStreamMode,
    /// Idle time after which a persistent reply stream is closed.
    /// Default: 20 ms.
    pub stream_idle: Duration,
    /// Most messages per persistent reply stream. Default: 1024.
    pub stream_messages: usize,
    /// Longest life of a persistent reply stream. Default: 1 s.
    pub stream_age: Duration,
}

impl ReplySettings {
    /// Default of [`ReplySettings::send_timeout`] (600 s).
    pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(600);
    /// Default of [`ReplySettings::max_batch_messages`] (64).
    pub const DEFAULT_MAX_BATCH_MESSAGES: usize = 64;
    /// Default of [`ReplySettings::max_batch_bytes`] (16 MiB).
    pub const DEFAULT_MAX_BATCH_BYTES: usize = 16 << 20;
    /// Default of [`ReplySettings::max_rejections`] (3).
    pub const DEFAULT_MAX_REJECTIONS: u32 = 3;
    /// Default of [`ReplySettings::stream_idle`] (20 ms).
    pub const DEFAULT_STREAM_IDLE: Duration = Duration::from_millis(20);
    /// Default of [`ReplySettings::stream_messages`] (1024).
    pub const DEFAULT_STREAM_MESSAGES: usize = 1024;
    /// Default of [`ReplySettings::stream_age`] (1 s).
    pub const DEFAULT_STREAM_AGE: Duration = Duration::from_secs(1);
}

impl Default for ReplySettings {
    fn default() -> ReplySettings {
        ReplySettings {
            send_timeout: Self::DEFAULT_SEND_TIMEOUT,
            max_batch_messages: Self::DEFAULT_MAX_BATCH_MESSAGES,
            max_batch_bytes: Self::DEFAULT_MAX_BATCH_BYTES,
            max_rejections: Self::DEFAULT_MAX_REJECTIONS,
            stream: ReplyStreamMode::Auto,
            stream_idle: Self::DEFAULT_STREAM_IDLE,
            stream_messages: Self::DEFAULT_STREAM_MESSAGES,
            stream_age: Self::DEFAULT_STREAM_AGE,
        }
    }
}

/// What each link keeps: its outgoing queue and the request ids it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueSettings {
    /// Outgoing queue bound per link, in messages. Default: 4096.
    pub capacity: usize,
    /// Outgoing queue bound per link, in payload bytes (one message is
    /// always accepted into an empty queue). Default: 1 GiB.
    pub max_bytes: usize,
    /// Feedback items (logs forwarded by [`super::log_forward`], scalars)
    /// queued per link at most: beyond, forwarded logs are dropped (and
    /// counted in the link status) and `SendFeedback` is refused, so
    /// feedback can never crowd out replies. Default: 256.
    pub max_feedback: usize,
    /// Request ids remembered per link to drop a task received twice (a
    /// researcher resends the tasks of a cut connection); 0 turns the check
    /// off. Default: 4096.
    pub dedup_window: usize,
}

impl QueueSettings {
    /// Default of [`QueueSettings::capacity`] (4096 messages).
    pub const DEFAULT_CAPACITY: usize = 4096;
    /// Default of [`QueueSettings::max_bytes`] (1 GiB).
    pub const DEFAULT_MAX_BYTES: usize = 1 << 30;
    /// Default of [`QueueSettings::max_feedback`] (256).
    pub const DEFAULT_MAX_FEEDBACK: usize = 256;
    /// Default of [`QueueSettings::dedup_window`] (4096 request ids).
    pub const DEFAULT_DEDUP_WINDOW: usize = 4096;
}

impl Default for QueueSettings {
    fn default() -> QueueSettings {
        QueueSettings {
            capacity: Self::DEFAULT_CAPACITY,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_feedback: Self::DEFAULT_MAX_FEEDBACK,
            dedup_window: Self::DEFAULT_DEDUP_WINDOW,
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
        let ControllerConfig {
            channel,
            client_identity,
            reconnect,
            polling,
            replies,
            receive,
            queues,
            peer_log_rate,
            state_dir,
        } = ControllerConfig::default();
        assert!(state_dir.is_none());
        assert_eq!(channel.initial_stream_window_size, Some(4 << 20));
        assert_eq!(channel.initial_connection_window_size, Some(8 << 20));
        assert_eq!(
            channel.connect_timeout,
            ChannelOptions::default().connect_timeout
        );
        assert!(client_identity.is_none());
        assert_eq!(receive, ReceiveLimits::default());
        assert_eq!(peer_log_rate, LogRate::default());

        let ReconnectSettings {
            backoff_first,
            backoff_max,
            probe_interval,
            probe_fast_for,
        } = reconnect;
        assert_eq!(backoff_first, Duration::from_millis(50));
        assert_eq!(backoff_max, Duration::from_secs(2));
        assert_eq!(probe_interval, Duration::from_millis(100));
        assert_eq!(probe_fast_for, Duration::from_secs(60));

        let PollSettings {
            mode,
            deadline,
            credits,
        } = polling;
        assert_eq!(mode, PollMode::Auto);
        assert_eq!(deadline, Duration::from_secs(3600));
        assert_eq!(credits, 16);

        let ReplySettings {
            send_timeout,
            max_batch_messages,
            max_batch_bytes,
            max_rejections,
            stream,
            stream_idle,
            stream_messages,
            stream_age,
        } = replies;
        assert_eq!(send_timeout, Duration::from_secs(600));
        assert_eq!(max_batch_messages, 64);
        assert_eq!(max_batch_bytes, 16 << 20);
        assert_eq!(max_rejections, 3);
        assert_eq!(stream, ReplyStreamMode::Auto);
        assert_eq!(stream_idle, Duration::from_millis(20));
        assert_eq!(stream_messages, 1024);
        assert_eq!(stream_age, Duration::from_secs(1));

        let QueueSettings {
            capacity,
            max_bytes,
            max_feedback,
            dedup_window,
        } = queues;
        assert_eq!(capacity, 4096);
        assert_eq!(max_bytes, 1 << 30);
        assert_eq!(max_feedback, 256);
        assert_eq!(dedup_window, 4096);

        assert_eq!(
            crate::config::fields_without_default(include_str!("config.rs")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_receive_limits_are_checked() {
        assert!(ControllerConfig::default().validate().is_ok());
        let mut small = ControllerConfig::default();
        small.receive.budget_bytes = 1 << 20;
        assert!(matches!(
            small.validate(),
            Err(ConfigError::BudgetTooSmall { .. })
        ));
    }

    #[test]
    fn keepalive_never_below_two_seconds() {
        let mut c = ControllerConfig::default();
        c.channel.keepalive_interval = Duration::from_millis(100);
        assert_eq!(c.effective_keepalive(), Duration::from_secs(2));
    }
}
