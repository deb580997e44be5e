//! Controller and link settings, with documented defaults.

use std::time::Duration;

use super::backoff::{DEFAULT_FIRST_RETRY, DEFAULT_MAX_RETRY};
pub(super) use super::dedup::DEFAULT_DEDUP_WINDOW;
use super::outbox::{DEFAULT_QUEUE_CAPACITY, DEFAULT_QUEUE_MAX_BYTES};
pub(super) use super::status::PollMode;

/// Default deadline of one long poll (Fed-BioMed: 3600 s).
pub(super) const DEFAULT_POLL_DEADLINE: Duration = Duration::from_secs(3600);
/// Default bound on dialling a researcher (certificate fetch, TLS, HTTP/2).
pub(super) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default HTTP/2 keepalive interval (Fed-BioMed nodes: 60 s; Fed-BioMed's
/// server refuses pings closer than about 1.8 s).
pub(super) const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// Default time to wait for a keepalive answer.
pub(super) const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Default bound on one send RPC (a `ReplyTask` batch or a `Feedback`).
pub(super) const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(600);
/// Default number of tasks requested ahead on a streaming poll.
pub(super) const DEFAULT_STREAM_CREDITS: u32 = 16;
/// Default most messages carried by one `ReplyTask` stream.
pub(super) const DEFAULT_MAX_BATCH_MESSAGES: usize = 64;
/// Default most payload bytes carried by one `ReplyTask` stream.
pub(super) const DEFAULT_MAX_BATCH_BYTES: usize = 16 << 20;
/// Default rejections of one message before it is dropped.
pub(super) const DEFAULT_MAX_REJECTIONS: u32 = 3;
/// Default time a persistent `ReplyTask` stream stays open without new messages.
pub(super) const DEFAULT_REPLY_STREAM_IDLE: Duration = Duration::from_millis(20);
/// Default most messages carried by one persistent `ReplyTask` stream.
pub(super) const DEFAULT_REPLY_STREAM_MESSAGES: usize = 1024;
/// Default longest life of one persistent `ReplyTask` stream.
pub(super) const DEFAULT_REPLY_STREAM_AGE: Duration = Duration::from_secs(1);
/// Default time a poll may go without a frame in the middle of a task
/// before the link drops the connection (the researcher sends the task
/// again on the new one).
pub(super) const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default most feedback items (forwarded logs, scalars) queued per link.
pub(super) const DEFAULT_MAX_QUEUED_FEEDBACK: usize = 256;
pub(super) use super::probe::{DEFAULT_PROBE_FAST_FOR, DEFAULT_PROBE_INTERVAL};
pub(super) use crate::log_limit::LogRate;
pub(super) use crate::wire::{
    DecodeLimits, DEFAULT_DECODE_THREADS, DEFAULT_MAX_FRAME_BYTES, DEFAULT_RECEIVE_BUDGET_BYTES,
    DEFAULT_RECEIVE_BUFFER_BYTES,
};

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
    /// `reply_stream_idle`, after `reply_stream_messages` messages, or after
    /// `reply_stream_age`. If it fails, its messages are sent again after
    /// reconnecting (researchers keep the first copy of a reply, by request id).
    Persistent,
    /// `Persistent` on links that poll in streaming mode (fedroute researchers),
    /// `PerBatch` on unary links (Fed-BioMed researchers).
    Auto,
}

/// Settings shared by the controller and all its links.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Deadline of one long poll; the poll is opened again at once after it.
    /// Default `DEFAULT_POLL_DEADLINE` (3600 s).
    pub poll_deadline: Duration,
    /// Bound on one connection attempt. Default `DEFAULT_CONNECT_TIMEOUT` (10 s).
    pub connect_timeout: Duration,
    /// Upper bound of the first reconnect delay. Default 50 ms.
    pub backoff_first: Duration,
    /// Cap of the reconnect delay. Default 2 s. The back-off applies to
    /// attempts that failed after the researcher accepted the TCP
    /// connection; while it refuses connections, the link knocks instead
    /// (`probe_interval`).
    pub backoff_max: Duration,
    /// While a link is down and the researcher's port refuses connections,
    /// a bare TCP connection is tried this often (plus up to a fifth of
    /// jitter) for the first `probe_fast_for` of the outage, then every
    /// second (or `backoff_max` if longer); the full reconnect starts as
    /// soon as one connects. Zero turns knocking off (back-off only). See
    /// `super::probe`. Default `DEFAULT_PROBE_INTERVAL` (100 ms).
    pub probe_interval: Duration,
    /// How long knocks stay fast. Default `DEFAULT_PROBE_FAST_FOR` (60 s).
    pub probe_fast_for: Duration,
    /// Outgoing queue bound per link (messages). Default `DEFAULT_QUEUE_CAPACITY`.
    pub queue_capacity: usize,
    /// Outgoing queue bound per link (payload bytes; one message is always
    /// accepted into an empty queue). Default `DEFAULT_QUEUE_MAX_BYTES` (1 GiB).
    pub queue_max_bytes: usize,
    /// HTTP/2 keepalive interval, raised to at least 2 s. Default 60 s.
    pub keepalive_interval: Duration,
    /// HTTP/2 keepalive answer timeout. Default 20 s.
    pub keepalive_timeout: Duration,
    /// Bound on one send RPC. Default `DEFAULT_SEND_TIMEOUT` (600 s).
    pub send_timeout: Duration,
    /// Streaming or unary polling. Default [`PollMode::Auto`].
    pub poll_mode: PollMode,
    /// Tasks requested ahead on a streaming poll. Default `DEFAULT_STREAM_CREDITS` (16).
    pub stream_credits: u32,
    /// Largest incoming message accepted after reassembly.
    /// Default `wire::DEFAULT_MAX_MESSAGE_BYTES` (2 GiB).
    pub max_message_bytes: usize,
    /// Most messages per `ReplyTask` stream. Default 64.
    pub max_batch_messages: usize,
    /// Most payload bytes per `ReplyTask` stream (one message may exceed it). Default 16 MiB.
    pub max_batch_bytes: usize,
    /// Times the researcher may reject the same message (a gRPC error other
    /// than a transport failure, retried after reconnecting) before it is
    /// dropped with an error log. Default `DEFAULT_MAX_REJECTIONS` (3).
    pub max_rejections: u32,
    /// How replies travel. Default [`ReplyStreamMode::Auto`].
    pub reply_stream: ReplyStreamMode,
    /// Idle time after which a persistent reply stream is closed. Default 20 ms.
    pub reply_stream_idle: Duration,
    /// Most messages per persistent reply stream. Default 1024.
    pub reply_stream_messages: usize,
    /// Longest life of a persistent reply stream. Default 1 s.
    pub reply_stream_age: Duration,
    /// HTTP/2 initial stream window (bytes); `None` keeps hyper's default. Default 4 MiB.
    pub stream_window: Option<u32>,
    /// HTTP/2 initial connection window (bytes); `None` keeps hyper's default. Default 8 MiB.
    pub connection_window: Option<u32>,
    /// Node certificate presented when a researcher asks for one (mutual TLS). Default none.
    pub client_identity: Option<crate::tls::ClientIdentity>,
    /// Request ids remembered per link to drop a task received twice (a
    /// researcher resends the tasks of a cut connection); 0 turns the check
    /// off. Default `DEFAULT_DEDUP_WINDOW` (4,096).
    pub dedup_window: usize,
    /// Bytes that tasks still being received may hold, all links together,
    /// counted as their buffers grow (with one frame ahead). A link whose
    /// task would go past it waits for room without reading on (at most
    /// `stall_timeout`), then drops its connection and reconnects once
    /// there is room (the researcher sends the task again, counting a
    /// delivery attempt); one-frame tasks do not count. Must hold one task
    /// of `max_message_bytes` and a frame ([`ControllerConfig::validate`]).
    /// See `crate::wire::ReceiveBudget`.
    /// Default `DEFAULT_RECEIVE_BUDGET_BYTES` (2 GiB + 16 MiB).
    pub receive_budget_bytes: usize,
    /// What decoding one task may cost (value-tree bytes per input byte,
    /// nesting depth). Default [`DecodeLimits::default`] (8 bytes per byte,
    /// at least 8 MiB, at most 1 GiB; 128 levels).
    pub decode_limits: DecodeLimits,
    /// Large tasks (1 MiB and more) decoded at the same time, off the event
    /// loop, all links together. Default `DEFAULT_DECODE_THREADS` (2).
    pub decode_threads: usize,
    /// A poll that delivered part of a task and then no data for this long
    /// is given up (a slow task whose bytes keep coming is not): the link
    /// reconnects and the researcher sends the task again. Also the longest
    /// a poll waits for room in the receive budget.
    /// Default `DEFAULT_STALL_TIMEOUT` (30 s).
    pub stall_timeout: Duration,
    /// Largest gRPC message (one frame) accepted from a researcher.
    /// Default `DEFAULT_MAX_FRAME_BYTES` (8 MiB).
    pub max_frame_bytes: usize,
    /// Feedback items (logs forwarded by [`super::log_forward`], scalars)
    /// queued per link at most: beyond, forwarded logs are dropped (and
    /// counted in the link status) and `SendFeedback` is refused, so
    /// feedback can never crowd out replies. Default
    /// `DEFAULT_MAX_QUEUED_FEEDBACK` (256).
    pub max_queued_feedback: usize,
    /// Warnings one researcher may cause per kind (bad task, ...) and
    /// window; the rest are counted and summed up in one line.
    /// Default [`LogRate::default`] (5 lines per 10 s).
    pub peer_log_rate: LogRate,
    /// Bytes of reassembly buffers each link keeps to receive the next large
    /// task into the same memory (no fresh allocation and page faults per
    /// model: about 1.4 times as fast for 100 MiB tasks), at the price of
    /// keeping that memory while idle; a task larger than this is received
    /// into fresh memory, and 0 keeps none. See [`crate::wire::BufferPool`].
    /// Default [`DEFAULT_RECEIVE_BUFFER_BYTES`] (256 MiB).
    pub receive_buffer_bytes: usize,
}

impl Default for ControllerConfig {
    fn default() -> ControllerConfig {
        ControllerConfig {
            poll_deadline: DEFAULT_POLL_DEADLINE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            backoff_first: DEFAULT_FIRST_RETRY,
            backoff_max: DEFAULT_MAX_RETRY,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            probe_fast_for: DEFAULT_PROBE_FAST_FOR,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            queue_max_bytes: DEFAULT_QUEUE_MAX_BYTES,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            poll_mode: PollMode::Auto,
            stream_credits: DEFAULT_STREAM_CREDITS,
            max_message_bytes: crate::wire::DEFAULT_MAX_MESSAGE_BYTES,
            max_batch_messages: DEFAULT_MAX_BATCH_MESSAGES,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_rejections: DEFAULT_MAX_REJECTIONS,
            reply_stream: ReplyStreamMode::Auto,
            reply_stream_idle: DEFAULT_REPLY_STREAM_IDLE,
            reply_stream_messages: DEFAULT_REPLY_STREAM_MESSAGES,
            reply_stream_age: DEFAULT_REPLY_STREAM_AGE,
            stream_window: Some(4 << 20),
            connection_window: Some(8 << 20),
            client_identity: None,
            dedup_window: DEFAULT_DEDUP_WINDOW,
            receive_budget_bytes: DEFAULT_RECEIVE_BUDGET_BYTES,
            decode_limits: DecodeLimits::default(),
            decode_threads: DEFAULT_DECODE_THREADS,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_queued_feedback: DEFAULT_MAX_QUEUED_FEEDBACK,
            peer_log_rate: LogRate::default(),
            receive_buffer_bytes: DEFAULT_RECEIVE_BUFFER_BYTES,
        }
    }
}

impl ControllerConfig {
    /// Checks that the limits fit together: the receive budget must hold one
    /// message of the maximum size and a frame ahead (otherwise such tasks
    /// could never arrive).
    pub fn validate(&self) -> Result<(), String> {
        let needed = self.max_message_bytes.saturating_add(self.max_frame_bytes);
        if self.receive_budget_bytes < needed {
            return Err(format!(
                "receive_budget_bytes {} cannot hold one task of max_message_bytes {} and a frame of max_frame_bytes {}: raise it, or lower those",
                self.receive_budget_bytes, self.max_message_bytes, self.max_frame_bytes
            ));
        }
        if self.stall_timeout.is_zero() || self.max_frame_bytes == 0 || self.decode_threads == 0 {
            return Err(
                "stall_timeout, max_frame_bytes and decode_threads must be positive".into(),
            );
        }
        Ok(())
    }

    /// The keepalive interval actually used: never below `ChannelOptions::MIN_KEEPALIVE_INTERVAL`.
    pub fn effective_keepalive(&self) -> Duration {
        self.keepalive_interval
            .max(crate::tls::ChannelOptions::MIN_KEEPALIVE_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let c = ControllerConfig::default();
        assert_eq!(c.poll_deadline, Duration::from_secs(3600));
        assert_eq!(c.backoff_first, Duration::from_millis(50));
        assert_eq!(c.backoff_max, Duration::from_secs(2));
        assert_eq!(c.keepalive_interval, Duration::from_secs(60));
        assert_eq!(c.poll_mode, PollMode::Auto);
        assert_eq!(c.dedup_window, 4096);
        assert_eq!(c.receive_buffer_bytes, 256 << 20);
        assert!(c.validate().is_ok());
        let small = ControllerConfig {
            receive_budget_bytes: 1 << 20,
            ..ControllerConfig::default()
        };
        assert!(small.validate().is_err());
    }

    #[test]
    fn keepalive_never_below_two_seconds() {
        let c = ControllerConfig {
            keepalive_interval: Duration::from_millis(100),
            ..Default::default()
        };
        assert_eq!(c.effective_keepalive(), Duration::from_secs(2));
    }
}
