//! How fedroute is configured, and what the node and the researcher share:
//! [`ReceiveLimits`] and [`ConfigError`].
//!
//! The node's [`ControllerConfig`](crate::node::ControllerConfig), the
//! researcher's [`ResearcherConfig`](crate::researcher::ResearcherConfig)
//! and their parts are plain structs of public fields, grouped by concern
//! (polling, replies, receive limits, ...). Start from `Default` and assign
//! what you change; `validate()` checks what no field can check alone:
//!
//! ```
//! use std::time::Duration;
//! use fedroute::node::{ControllerConfig, PollMode};
//!
//! let mut config = ControllerConfig::default();
//! config.polling.mode = PollMode::Unary;
//! config.reconnect.backoff_max = Duration::from_secs(5);
//! config.receive.max_message_bytes = 512 << 20;
//! config.validate()?;
//! # Ok::<(), fedroute::config::ConfigError>(())
//! ```
//!
//! The structs are `#[non_exhaustive]`, so a setting added later breaks no
//! code (and they cannot be written as struct literals outside fedroute).
//! Each field's documentation ends with its default, and each default is an
//! associated `DEFAULT_*` constant of the struct that holds the field
//! (HTTP/2 dialling defaults are those of [`ChannelOptions`](crate::tls::ChannelOptions)).

use std::time::Duration;

use crate::wire::DecodeLimits;

/// What a peer may make this side hold while it receives messages: tasks
/// on a node ([`ControllerConfig::receive`](crate::node::ControllerConfig::receive)),
/// replies on a researcher ([`ResearcherConfig::receive`](crate::researcher::ResearcherConfig::receive)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceiveLimits {
    /// Largest message accepted once its frames are joined, in bytes.
    /// Default: 2 GiB.
    pub max_message_bytes: usize,
    /// Largest gRPC message (one frame of a chunked message) accepted;
    /// fedroute and Fed-BioMed send frames of just under 4 MB.
    /// Default: 8 MiB.
    pub max_frame_bytes: usize,
    /// Bytes that messages still being received may hold, all peers
    /// together (a node's links; a researcher's nodes and calls), counted
    /// as their buffers grow, with one frame ahead, and on a researcher as
    /// the gRPC layer holds a call's data beyond 64 KiB; one-frame tasks do
    /// not count on a node. A stream whose message would go past it waits
    /// for room without reading on (at most `stall_timeout`, and at most 32
    /// streams wait), then is refused: a researcher answers
    /// RESOURCE_EXHAUSTED (a fedroute node sends the reply again after a
    /// back-off); a node drops its connection and reconnects once there is
    /// room (the researcher sends the task again, counting a delivery
    /// attempt). Must hold one message of `max_message_bytes` and a frame
    /// of `max_frame_bytes` ([`ReceiveLimits::validate`]).
    /// Default: 2 GiB + 16 MiB.
    pub budget_bytes: usize,
    /// What decoding one message may cost (value-tree bytes per input
    /// byte, nesting depth). Default: [`DecodeLimits::default`] (8 bytes per
    /// byte, at least 8 MiB, at most 1 GiB; 128 levels).
    pub decode_limits: DecodeLimits,
    /// Large messages (1 MiB and more) decoded at the same time, off the
    /// event loop, all peers together. Default: 2.
    pub decode_threads: usize,
    /// A stream that delivered part of a message and then no data for this
    /// long is given up (a slow stream whose bytes keep coming is not): a
    /// node's poll reconnects and the researcher sends the task again; a
    /// researcher cancels the `ReplyTask` call (DEADLINE_EXCEEDED) and
    /// releases what it held. Also the longest a stream waits for room in
    /// the receive budget. Default: 30 s.
    pub stall_timeout: Duration,
    /// Bytes of reassembly buffers kept to receive the next large messages
    /// into the same memory (no fresh allocation and page faults per model:
    /// about 1.4 times as fast for 100 MiB messages), at the price of
    /// keeping that memory while idle. A node keeps them per link; a
    /// researcher for all nodes together, and reuses a buffer only once the
    /// application has dropped the reply that was in it (raise it when
    /// several nodes send large replies at once). A message larger than
    /// this is received into fresh memory; 0 keeps none. See
    /// [`crate::wire::BufferPool`]. Default: 256 MiB.
    pub buffer_bytes: usize,
}

impl ReceiveLimits {
    /// Default of [`ReceiveLimits::max_message_bytes`] (2 GiB).
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 2 << 30;
    /// Default of [`ReceiveLimits::max_frame_bytes`] (8 MiB): twice the
    /// frames fedroute and Fed-BioMed send, and what a peer can make the
    /// gRPC layer buffer per stream before fedroute sees a frame.
    pub const DEFAULT_MAX_FRAME_BYTES: usize = 8 << 20;
    /// Default of [`ReceiveLimits::budget_bytes`] (2 GiB + 16 MiB): one
    /// message of the default maximum size with two frames more, or twenty
    /// 100 MiB models arriving at once, or a hundred of 16 MiB.
    pub const DEFAULT_BUDGET_BYTES: usize =
        Self::DEFAULT_MAX_MESSAGE_BYTES + 2 * Self::DEFAULT_MAX_FRAME_BYTES;
    /// Default of [`ReceiveLimits::decode_threads`] (2).
    pub const DEFAULT_DECODE_THREADS: usize = 2;
    /// Default of [`ReceiveLimits::stall_timeout`] (30 s).
    pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default of [`ReceiveLimits::buffer_bytes`] (256 MiB): a 100 MiB
    /// model's buffer is kept, a 1 GiB one is not.
    pub const DEFAULT_BUFFER_BYTES: usize = 256 << 20;

    /// Checks that the limits fit together: nothing that must be positive
    /// is zero, and the receive budget holds one message of the maximum
    /// size and a frame ahead (otherwise such messages could never arrive).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (setting, zero) in [
            ("receive.max_message_bytes", self.max_message_bytes == 0),
            ("receive.max_frame_bytes", self.max_frame_bytes == 0),
            ("receive.decode_threads", self.decode_threads == 0),
            ("receive.stall_timeout", self.stall_timeout.is_zero()),
        ] {
            if zero {
                return Err(ConfigError::Zero { setting });
            }
        }
        if self.budget_bytes < self.max_message_bytes.saturating_add(self.max_frame_bytes) {
            return Err(ConfigError::BudgetTooSmall {
                budget: self.budget_bytes,
                max_message: self.max_message_bytes,
                max_frame: self.max_frame_bytes,
            });
        }
        Ok(())
    }
}

impl Default for ReceiveLimits {
    fn default() -> ReceiveLimits {
        ReceiveLimits {
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            max_frame_bytes: Self::DEFAULT_MAX_FRAME_BYTES,
            budget_bytes: Self::DEFAULT_BUDGET_BYTES,
            decode_limits: DecodeLimits::default(),
            decode_threads: Self::DEFAULT_DECODE_THREADS,
            stall_timeout: Self::DEFAULT_STALL_TIMEOUT,
            buffer_bytes: Self::DEFAULT_BUFFER_BYTES,
        }
    }
}

/// A configuration that cannot work, as `validate()` finds it. Settings are
/// named by their path in the configuration (`receive.stall_timeout`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count or a duration that must be positive is zero.
    #[error("{setting} must not be zero")]
    Zero {
        /// The setting.
        setting: &'static str,
    },
    /// The receive budget cannot hold one message of the maximum size and a
    /// frame.
    #[error(
        "receive.budget_bytes {budget} cannot hold one message of receive.max_message_bytes \
         {max_message} and a frame of receive.max_frame_bytes {max_frame}: raise it, or lower those"
    )]
    BudgetTooSmall {
        /// `receive.budget_bytes`.
        budget: usize,
        /// `receive.max_message_bytes`.
        max_message: usize,
        /// `receive.max_frame_bytes`.
        max_frame: usize,
    },
    /// An HTTP/2 keepalive interval below what peers accept (Fed-BioMed's
    /// Python peers refuse pings closer than about 1.8 s apart).
    #[error("{setting} {interval:?} is below {minimum:?}: peers refuse faster pings")]
    KeepaliveTooShort {
        /// The setting.
        setting: &'static str,
        /// The interval asked for.
        interval: Duration,
        /// The minimum.
        minimum: Duration,
    },
    /// Two settings that exclude each other are both on.
    #[error("{first} and {second} exclude each other")]
    Conflict {
        /// One setting.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
}

/// The public fields of the structs with a `Default` in `source` (a
/// file's text) whose documentation does not state the default, as
/// `Struct::field`: the value tests next to each `Default` check what the
/// documentation says, and this keeps a new field from going undocumented.
#[cfg(test)]
pub(crate) fn fields_without_default(source: &str) -> Vec<String> {
    let with_default: Vec<&str> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("impl Default for "))
        .filter_map(|rest| rest.split([' ', '<']).next())
        .collect();
    let mut missing = Vec::new();
    let (mut structure, mut doc) = ("", String::new());
    for line in source.lines().map(str::trim) {
        if let Some(text) = line.strip_prefix("///") {
            doc.push_str(text);
            continue;
        }
        if line.starts_with("#[") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("pub struct ") {
            structure = rest.split([' ', '<', '(']).next().unwrap_or("");
        } else if let Some((field, _)) = line.strip_prefix("pub ").and_then(|l| l.split_once(':')) {
            let is_field = !field.contains(' ') && !field.contains('(');
            if is_field && with_default.contains(&structure) && !doc.contains("Default: ") {
                missing.push(format!("{structure}::{field}"));
            }
        }
        doc.clear();
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_values() {
        let ReceiveLimits {
            max_message_bytes,
            max_frame_bytes,
            budget_bytes,
            decode_limits,
            decode_threads,
            stall_timeout,
            buffer_bytes,
        } = ReceiveLimits::default();
        assert_eq!(max_message_bytes, 2 << 30);
        assert_eq!(max_frame_bytes, 8 << 20);
        assert_eq!(budget_bytes, (2 << 30) + (16 << 20));
        assert_eq!(decode_limits, DecodeLimits::default());
        assert_eq!(decode_threads, 2);
        assert_eq!(stall_timeout, Duration::from_secs(30));
        assert_eq!(buffer_bytes, 256 << 20);
        assert_eq!(
            fields_without_default(include_str!("config.rs")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn limits_that_do_not_fit_are_refused() {
        assert_eq!(ReceiveLimits::default().validate(), Ok(()));
        let small = ReceiveLimits {
            budget_bytes: 1 << 20,
            ..ReceiveLimits::default()
        };
        assert!(matches!(
            small.validate(),
            Err(ConfigError::BudgetTooSmall { budget, .. }) if budget == 1 << 20
        ));
        let stalled = ReceiveLimits {
            stall_timeout: Duration::ZERO,
            ..ReceiveLimits::default()
        };
        assert_eq!(
            stalled.validate().map_err(|e| e.to_string()),
            Err("receive.stall_timeout must not be zero".to_string())
        );
    }

    #[test]
    fn the_field_check_finds_undocumented_defaults() {
        let source = "/// A thing.\n#[derive(Debug)]\npub struct Thing {\n    \
                      /// Documented.\n    /// Default: 1.\n    pub a: u32,\n    \
                      /// Not.\n    pub b: u32,\n}\nimpl Default for Thing {}\n\
                      pub struct Other {\n    pub c: u32,\n}\nimpl Thing {\n    \
                      /// A function.\n    pub fn f(&self) -> u32 { 0 }\n}\n";
        assert_eq!(fields_without_default(source), vec!["Thing::b".to_string()]);
    }
}
