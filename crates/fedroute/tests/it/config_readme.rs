//! The README's Limits table repeats the defaults for readers; these tests
//! keep it saying what the library's `DEFAULT_*` constants are.

use std::time::Duration;

use fedroute::config::ReceiveLimits;
use fedroute::log_limit::LogRate;
use fedroute::node::{QueueSettings, ReconnectSettings};
use fedroute::researcher::{Limits, NodeSettings, Timeouts};
use fedroute::wire::DecodeLimits;

const README: &str = include_str!("../../../../README.md");

/// The table row whose knob column names `knob`.
fn row(knob: &str) -> &'static str {
    let knob = format!("`{knob}`");
    README
        .lines()
        .find(|l| l.starts_with('|') && l.contains(&knob))
        .unwrap_or_else(|| panic!("the README's Limits table has no row for {knob}"))
}

/// Asserts that the default column of `knob`'s row starts with `default`.
fn states(knob: &str, default: &str) {
    let row = row(knob);
    let column = row.split('|').nth(2).unwrap_or_default().trim();
    assert!(
        column.starts_with(default),
        "README row for {knob}: {column:?} should start with {default:?}"
    );
}

/// `2 GiB`, `16 MiB`, `1000 B`.
fn bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n => format!("{n} B"),
    }
}

/// `10,000`, `256`.
fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The README's text with every run of white space as one space (its
/// lines wrap anywhere).
fn flat() -> String {
    README.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `50 ms`, `30 s`, `10 min`, `1 hour`.
fn time(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{} ms", d.as_millis());
    }
    match d.as_secs() {
        3600 => "1 hour".to_string(),
        s if s >= 600 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[test]
fn the_receive_limits_rows_state_the_defaults() {
    let max = ReceiveLimits::DEFAULT_MAX_MESSAGE_BYTES;
    states("receive.max_message_bytes", &bytes(max));
    states(
        "receive.max_frame_bytes",
        &bytes(ReceiveLimits::DEFAULT_MAX_FRAME_BYTES),
    );
    states(
        "receive.budget_bytes",
        &format!(
            "{} + {}",
            bytes(max),
            bytes(ReceiveLimits::DEFAULT_BUDGET_BYTES - max)
        ),
    );
    states(
        "receive.decode_limits",
        &format!(
            "{} bytes per input byte, at least {}, at most {}",
            DecodeLimits::DEFAULT_TREE_BYTES_PER_INPUT_BYTE,
            bytes(DecodeLimits::DEFAULT_TREE_BYTES_FLOOR),
            bytes(DecodeLimits::DEFAULT_MAX_TREE_BYTES)
        ),
    );
    states(
        "receive.decode_limits.max_depth",
        &format!("{} levels", DecodeLimits::DEFAULT_MAX_DEPTH),
    );
    states(
        "receive.decode_threads",
        &count(ReceiveLimits::DEFAULT_DECODE_THREADS),
    );
    states(
        "receive.stall_timeout",
        &time(ReceiveLimits::DEFAULT_STALL_TIMEOUT),
    );
    let buffers = format!("up to {},", bytes(ReceiveLimits::DEFAULT_BUFFER_BYTES));
    assert!(
        flat().contains(&buffers),
        "the README should say {buffers:?}"
    );
}

#[test]
fn the_researcher_rows_state_the_defaults() {
    states(
        "timeouts.idle",
        &format!(
            "{} (TLS handshake: {})",
            time(Timeouts::DEFAULT_IDLE),
            time(Timeouts::DEFAULT_HANDSHAKE)
        ),
    );
    states("timeouts.quiet", &time(Timeouts::DEFAULT_QUIET));
    states(
        "limits.max_connections",
        &count(Limits::DEFAULT_MAX_CONNECTIONS),
    );
    states(
        "limits.max_streams_per_connection",
        &count(Limits::DEFAULT_MAX_STREAMS_PER_CONNECTION as usize),
    );
    states("limits.max_nodes", &count(Limits::DEFAULT_MAX_NODES));
    states(
        "limits.max_pending_requests",
        &count(Limits::DEFAULT_MAX_PENDING_REQUESTS),
    );
    states(
        "nodes.forget_after",
        &format!(
            "forgotten after {}",
            time(NodeSettings::DEFAULT_FORGET_AFTER)
        ),
    );
    states(
        "nodes.queue_capacity",
        &format!(
            "{}, each for {}",
            count(NodeSettings::DEFAULT_QUEUE_CAPACITY),
            time(NodeSettings::DEFAULT_TASK_TTL)
        ),
    );
    let window = format!("{} of data sent", bytes(Limits::CONNECTION_WINDOW as usize));
    assert!(flat().contains(&window), "the README should say {window:?}");
}

#[test]
fn the_node_and_shared_rows_state_the_defaults() {
    states(
        "queues.capacity",
        &format!(
            "{} messages, {}",
            count(QueueSettings::DEFAULT_CAPACITY),
            bytes(QueueSettings::DEFAULT_MAX_BYTES)
        ),
    );
    states(
        "queues.max_feedback",
        &count(QueueSettings::DEFAULT_MAX_FEEDBACK),
    );
    states(
        "queues.dedup_window",
        &format!("{} per link", count(QueueSettings::DEFAULT_DEDUP_WINDOW)),
    );
    states(
        "peer_log_rate",
        &format!(
            "{} lines per {}",
            LogRate::DEFAULT_LINES,
            time(LogRate::DEFAULT_PER)
        ),
    );
}

#[test]
fn the_reconnect_prose_states_the_defaults() {
    let r = ReconnectSettings::default();
    for said in [
        format!("every {}", time(r.probe_interval)),
        format!(
            "({} doubling to {})",
            time(r.backoff_first),
            time(r.backoff_max)
        ),
    ] {
        assert!(flat().contains(&said), "the README should say {said:?}");
    }
}

#[test]
fn the_formats_are_the_readmes() {
    assert_eq!(bytes(2 << 30), "2 GiB");
    assert_eq!(bytes(16 << 20), "16 MiB");
    assert_eq!(count(65_536), "65,536");
    assert_eq!(count(100), "100");
    assert_eq!(time(Duration::from_secs(600)), "10 min");
    assert_eq!(time(Duration::from_secs(30)), "30 s");
    assert_eq!(time(Duration::from_millis(50)), "50 ms");
}
