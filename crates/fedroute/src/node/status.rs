//! What the controller reports about each researcher link
//! ([`Status`](super::Status)).

use std::fmt;
use std::time::SystemTime;

use crate::tls::{Acceptance, Fingerprint};

/// Where a link stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkState {
    /// Dialling: fetching or checking the certificate, opening the channel.
    Connecting,
    /// Channel up and verified, a poll is open.
    Connected,
    /// The last attempt failed; waiting before the next one.
    BackingOff,
    /// The researcher presented another certificate than the trusted one,
    /// without a valid rotation proof: nothing was sent to it, and the
    /// link keeps retrying with its back-off (the real researcher is served
    /// again as soon as it is back). `last_error` says how to accept it.
    CertificateChanged {
        /// The fingerprint of the trusted certificate.
        recorded: Fingerprint,
        /// The fingerprint of the one presented.
        presented: Fingerprint,
    },
    /// Stopped for good; the reason says why (a security error: the researcher id changed).
    Failed(String),
    /// Closed on request (shutdown or `RemoveResearcher`).
    Closed,
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkState::Connecting => f.write_str("connecting"),
            LinkState::Connected => f.write_str("connected"),
            LinkState::BackingOff => f.write_str("backing off"),
            LinkState::CertificateChanged {
                recorded,
                presented,
            } => write!(
                f,
                "certificate changed (trusted {recorded}, presented {presented})"
            ),
            LinkState::Failed(reason) => write!(f, "failed: {reason}"),
            LinkState::Closed => f.write_str("closed"),
        }
    }
}

/// How the link polls for tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PollMode {
    /// Try the streaming `GetTask` first, fall back to `GetTaskUnary` when the
    /// researcher answers UNIMPLEMENTED (Fed-BioMed researchers).
    Auto,
    /// fedroute's streaming `GetTask` (one open stream, credit per task).
    Streaming,
    /// Fed-BioMed's `GetTaskUnary` long poll (one task per call).
    Unary,
}

impl PollMode {
    /// The mode's name: `auto`, `streaming` or `unary` (its `Display`).
    pub fn as_str(self) -> &'static str {
        match self {
            PollMode::Auto => "auto",
            PollMode::Streaming => "streaming",
            PollMode::Unary => "unary",
        }
    }
}

impl fmt::Display for PollMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of one link.
#[derive(Debug, Clone)]
pub struct LinkStatus {
    /// `host:port` as configured.
    pub endpoint: String,
    /// Researcher id learnt from the certificate (O=) or from the first task.
    pub researcher_id: Option<String>,
    /// Current state.
    pub state: LinkState,
    /// Poll mode in use (Auto until the first poll found out).
    pub poll_mode: PollMode,
    /// True while a poll RPC is open.
    pub polling: bool,
    /// Connections made after the first one.
    pub reconnects: u64,
    /// Bare TCP connections tried while the link was down (see
    /// `super::probe`).
    pub knocks: u64,
    /// Tasks received (decoded messages).
    pub messages_received: u64,
    /// Task payload bytes received.
    pub bytes_received: u64,
    /// Messages acknowledged by the researcher (replies and feedback).
    pub messages_sent: u64,
    /// Payload bytes acknowledged by the researcher.
    pub bytes_sent: u64,
    /// Tasks dropped as bad (frames, msgpack, version).
    pub bad_tasks: u64,
    /// Messages the researcher rejected repeatedly and that were dropped (logged).
    pub rejected: u64,
    /// Forwarded log records dropped because the link's feedback queue was
    /// full (`ControllerConfig::queues.max_feedback`).
    pub feedback_dropped: u64,
    /// Messages waiting in the outgoing queue (including one being sent).
    pub queue_depth: usize,
    /// When a poll last opened or delivered a task.
    pub last_poll: Option<SystemTime>,
    /// The last connection or send error, if any.
    pub last_error: Option<String>,
    /// True while the link holds back tasks because the handler's mailbox
    /// is closed (it stopped or panicked): it polls again, and delivers the
    /// task it holds, once [`SetHandler`](super::SetHandler) gives a new one.
    pub waiting_for_handler: bool,
    /// How the researcher's current certificate came to be trusted (trust
    /// on first use only): first use, rotation proof or same id.
    pub certificate_accepted: Option<Acceptance>,
    /// What the node's delivery store wrote so far (all links together),
    /// with a state directory.
    pub store: Option<crate::StoreStats>,
}

impl LinkStatus {
    /// A fresh status for `endpoint`.
    pub fn new(endpoint: String, poll_mode: PollMode) -> LinkStatus {
        LinkStatus {
            endpoint,
            researcher_id: None,
            state: LinkState::Connecting,
            poll_mode,
            polling: false,
            reconnects: 0,
            knocks: 0,
            messages_received: 0,
            bytes_received: 0,
            messages_sent: 0,
            bytes_sent: 0,
            bad_tasks: 0,
            rejected: 0,
            feedback_dropped: 0,
            queue_depth: 0,
            last_poll: None,
            last_error: None,
            waiting_for_handler: false,
            certificate_accepted: None,
            store: None,
        }
    }

    /// True when the link is connected and a poll is open.
    pub fn is_live(&self) -> bool {
        self.state == LinkState::Connected && self.polling
    }

    /// True when the link will never connect again.
    pub fn is_terminal(&self) -> bool {
        matches!(self.state, LinkState::Failed(_) | LinkState::Closed)
    }

    /// Records a received task of `bytes` bytes.
    pub fn record_received(&mut self, bytes: usize) {
        self.messages_received += 1;
        self.bytes_received += bytes as u64;
        self.last_poll = Some(SystemTime::now());
    }

    /// Records `messages` acknowledged messages totalling `bytes`.
    pub fn record_sent(&mut self, messages: usize, bytes: usize) {
        self.messages_sent += messages as u64;
        self.bytes_sent += bytes as u64;
    }

    /// Records an open poll.
    pub fn record_poll_open(&mut self) {
        self.polling = true;
        self.state = LinkState::Connected;
        self.last_poll = Some(SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_liveness() {
        let mut s = LinkStatus::new("127.0.0.1:1".into(), PollMode::Auto);
        assert!(!s.is_live());
        s.record_poll_open();
        assert!(s.is_live());
        assert!(s.last_poll.is_some());
        s.record_received(10);
        s.record_sent(2, 30);
        assert_eq!((s.messages_received, s.bytes_received), (1, 10));
        assert_eq!((s.messages_sent, s.bytes_sent), (2, 30));
        s.state = LinkState::Failed("researcher id changed".into());
        assert!(s.is_terminal());
        assert!(!s.is_live());
        assert_eq!(s.state.to_string(), "failed: researcher id changed");
    }
}
