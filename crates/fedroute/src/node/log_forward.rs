//! Forwards node log records to researchers as `FeedbackMessage.log`, as
//! Fed-BioMed's node logger does.
//!
//! [`install`] puts a `LogForwarder` in place of the process logger: every
//! record still goes to env_logger (filtered as usual by `RUST_LOG`; with
//! [`install_with`], to any other [`log::Log`] the application uses), and
//! records at the forwarding level and up are also handed to the controller
//! ([`ForwardLog`]), which queues them as feedback: to the researcher named by
//! the record's `researcher_id` key-value
//! (`log::info!(researcher_id = id; "...")`), or to every researcher.
//!
//! The transport never forwards its own records: records whose target is in
//! fedroute's transport modules or in the networking crates (tonic, h2,
//! hyper, rustls, actix, ...) stay local, and a thread-local guard stops any
//! record logged while forwarding. Forwarding never blocks the caller: when
//! the controller's mailbox is full the record is counted as dropped
//! ([`LogForwardHandle::dropped`]) and only logged locally.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix::Recipient;
use log::{Level, LevelFilter, Log, Metadata, Record};

use super::messages::ForwardLog;

/// Targets (prefixes) that are never forwarded: the transport itself.
pub(crate) const TRANSPORT_TARGETS: &[&str] = &[
    "fedroute::node",
    "fedroute::log_limit",
    "fedroute::tls",
    "fedroute::wire",
    "fedroute::proto",
    "fedroute::researcher",
    "tonic",
    "h2",
    "hyper",
    "hyper_util",
    "tower",
    "rustls",
    "tokio_rustls",
    "actix",
    "actix_rt",
    "tokio",
    "mio",
];

/// The key-value naming the researcher a record is for.
pub(crate) const RESEARCHER_ID_KEY: &str = "researcher_id";

thread_local! {
    static FORWARDING: Cell<bool> = const { Cell::new(false) };
}

/// Fed-BioMed's level name for a `log` level.
pub(crate) fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARNING",
        Level::Info => "INFO",
        Level::Debug | Level::Trace => "DEBUG",
    }
}

/// True when `target` belongs to the transport (never forwarded).
pub(crate) fn is_transport_target(target: &str) -> bool {
    TRANSPORT_TARGETS.iter().any(|prefix| {
        target == *prefix
            || target
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with("::"))
    })
}

/// The [`ForwardLog`] for `record`, or `None` when it stays local (below
/// `level`, or from the transport).
pub fn forwarded(record: &Record<'_>, level: LevelFilter) -> Option<ForwardLog> {
    if record.level() > level || is_transport_target(record.target()) {
        return None;
    }
    let researcher_id = record
        .key_values()
        .get(log::kv::Key::from_str(RESEARCHER_ID_KEY))
        .map(|v| v.to_string());
    Some(ForwardLog {
        level: level_name(record.level()).to_string(),
        target: record.target().to_string(),
        msg: record.args().to_string(),
        researcher_id,
    })
}

type Sink = Arc<Mutex<Option<Recipient<ForwardLog>>>>;

/// The process logger: the application's own logger plus forwarding (see
/// the module docs).
pub(crate) struct LogForwarder {
    inner: Box<dyn Log>,
    level: LevelFilter,
    sink: Sink,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for LogForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogForwarder")
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

/// Connects an installed `LogForwarder` to a controller.
#[derive(Clone)]
pub struct LogForwardHandle {
    sink: Sink,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for LogForwardHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogForwardHandle")
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl LogForwardHandle {
    /// Starts forwarding to `controller` (replaces any previous one).
    pub fn attach(&self, controller: Recipient<ForwardLog>) {
        *self.sink.lock().unwrap_or_else(|p| p.into_inner()) = Some(controller);
    }

    /// Stops forwarding.
    pub fn detach(&self) {
        *self.sink.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Records not forwarded because the controller's mailbox was full or gone.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl LogForwarder {
    /// A forwarder over `inner` (which keeps its own filter) forwarding
    /// records at `level` and up.
    pub(crate) fn new(
        inner: impl Log + 'static,
        level: LevelFilter,
    ) -> (LogForwarder, LogForwardHandle) {
        let sink = Sink::default();
        let dropped = Arc::new(AtomicU64::new(0));
        let handle = LogForwardHandle {
            sink: Arc::clone(&sink),
            dropped: Arc::clone(&dropped),
        };
        (
            LogForwarder {
                inner: Box::new(inner),
                level,
                sink,
                dropped,
            },
            handle,
        )
    }

    fn forward(&self, record: &Record<'_>) {
        let Some(msg) = forwarded(record, self.level) else {
            return;
        };
        let sink = self.sink.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(sink) = sink {
            if sink.try_send(msg).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Log for LogForwarder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata) || metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if self.inner.enabled(record.metadata()) {
            self.inner.log(record);
        }
        if FORWARDING.with(|f| f.replace(true)) {
            // Logged while forwarding: local only.
            return;
        }
        self.forward(record);
        FORWARDING.with(|f| f.set(false));
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Installs a `LogForwarder` built from `builder` as the process logger,
/// forwarding records at `level` and up once a controller is attached.
pub fn install(
    mut builder: env_logger::Builder,
    level: LevelFilter,
) -> Result<LogForwardHandle, log::SetLoggerError> {
    let inner = builder.build();
    let inner_max = inner.filter();
    install_with(inner, inner_max, level)
}

/// Installs a `LogForwarder` over `inner` (any logger; it sees records up
/// to `inner_max`, its own filter still applying) as the process logger,
/// forwarding records at `level` and up once a controller is attached.
pub fn install_with(
    inner: impl Log + 'static,
    inner_max: LevelFilter,
    level: LevelFilter,
) -> Result<LogForwardHandle, log::SetLoggerError> {
    let (forwarder, handle) = LogForwarder::new(inner, level);
    log::set_boxed_logger(Box::new(forwarder))?;
    log::set_max_level(inner_max.max(level));
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(level: Level, target: &str, msg: &str, kvs: &[(&str, &str)]) -> Option<ForwardLog> {
        forwarded(
            &Record::builder()
                .level(level)
                .target(target)
                .args(format_args!("{msg}"))
                .key_values(&kvs)
                .build(),
            LevelFilter::Info,
        )
    }

    #[test]
    fn transport_records_stay_local() {
        for target in [
            "fedroute::node::link",
            "tonic::transport",
            "h2",
            "rustls::conn",
        ] {
            assert!(is_transport_target(target), "{target}");
        }
        for target in ["fedroute::app", "my_node", "h2o", "fedroute::nodes"] {
            assert!(!is_transport_target(target), "{target}");
        }
        assert!(forward(Level::Error, "tonic::transport", "x", &[]).is_none());
    }

    #[test]
    fn level_threshold_and_names() {
        assert!(forward(Level::Debug, "my_node", "x", &[]).is_none());
        let f = forward(Level::Warn, "my_node", "disk 3", &[]).unwrap();
        assert_eq!(f.level, "WARNING");
        assert_eq!(f.msg, "disk 3");
        assert_eq!(f.researcher_id, None);
        assert_eq!(level_name(Level::Trace), "DEBUG");
    }

    #[test]
    fn researcher_named_in_the_record() {
        let f = forward(
            Level::Info,
            "my_node",
            "hi",
            &[("researcher_id", "RESEARCHER_1")],
        )
        .unwrap();
        assert_eq!(f.researcher_id.as_deref(), Some("RESEARCHER_1"));
    }
}
