//! Rate limits on log lines that peers cause.
//!
//! A peer that sends a bad task or a bad reply earns a warning; a peer that
//! sends eighty thousand of them must not earn eighty thousand lines (which
//! fill disks, drown the lines that matter and, written synchronously, slow
//! everything else). `LogLimiter` lets through the first
//! [`LogRate::lines`] lines of each kind per peer in each window of
//! [`LogRate::per`], counts the rest, and reports the count once: with the
//! next line let through, or from `LogLimiter::flush`, which the actors
//! call periodically. It is a plain struct driven by `now`; [`PeerLog`]
//! wraps it for the shells.
//!

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::wire::echo;

/// Peers tracked separately; beyond, the others share one count.
pub(crate) const MAX_TRACKED_PEERS: usize = 1024;
/// The name under which untracked peers are counted.
const OTHER_PEERS: &str = "(other peers)";

/// How many lines of one kind a peer may cause per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRate {
    /// Lines let through per window. Default: 5.
    pub lines: u32,
    /// The window. Default: 10 s.
    pub per: Duration,
}

impl LogRate {
    /// Default of [`LogRate::lines`] (5).
    pub const DEFAULT_LINES: u32 = 5;
    /// Default of [`LogRate::per`] (10 s).
    pub const DEFAULT_PER: Duration = Duration::from_secs(10);
}

impl Default for LogRate {
    fn default() -> LogRate {
        LogRate {
            lines: Self::DEFAULT_LINES,
            per: Self::DEFAULT_PER,
        }
    }
}

#[derive(Debug)]
struct Window {
    started: Instant,
    let_through: u32,
    held_back: u64,
}

/// Counts log lines per (peer, kind); see the module documentation.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    rate: LogRate,
    windows: HashMap<(String, &'static str), Window>,
    last_flush: Option<Instant>,
}

impl LogLimiter {
    /// A limiter letting `rate` through.
    pub(crate) fn new(rate: LogRate) -> LogLimiter {
        LogLimiter {
            rate,
            windows: HashMap::new(),
            last_flush: None,
        }
    }

    /// Whether a line of `kind` caused by `peer` may be logged at `now`:
    /// `Some(n)` to log it, mentioning `n` lines held back before it (when
    /// `n > 0`), `None` to hold it back.
    pub(crate) fn allow(&mut self, peer: &str, kind: &'static str, now: Instant) -> Option<u64> {
        let peer = if self.windows.len() >= MAX_TRACKED_PEERS
            && !self.windows.contains_key(&(peer.to_owned(), kind))
        {
            OTHER_PEERS.to_owned()
        } else {
            echo(peer)
        };
        let window = self.windows.entry((peer, kind)).or_insert(Window {
            started: now,
            let_through: 0,
            held_back: 0,
        });
        let mut mention = 0;
        if now.saturating_duration_since(window.started) >= self.rate.per {
            mention = std::mem::take(&mut window.held_back);
            window.started = now;
            window.let_through = 0;
        }
        if window.let_through < self.rate.lines {
            window.let_through += 1;
            Some(mention)
        } else {
            window.held_back += mention + 1;
            None
        }
    }

    /// Lines held back in windows that ended by `now`, as (peer, kind,
    /// count); forgets the peers that stayed quiet for a whole window.
    pub(crate) fn flush(&mut self, now: Instant) -> Vec<(String, &'static str, u64)> {
        self.last_flush = Some(now);
        let per = self.rate.per;
        let mut out = Vec::new();
        self.windows.retain(|(peer, kind), w| {
            if now.saturating_duration_since(w.started) < per {
                return true;
            }
            if w.held_back > 0 {
                out.push((peer.clone(), *kind, std::mem::take(&mut w.held_back)));
                w.started = now;
                w.let_through = 0;
                return true;
            }
            false
        });
        out
    }
}

impl LogLimiter {
    /// [`LogLimiter::flush`], at most once per window (cheap to call often).
    pub(crate) fn flush_due(&mut self, now: Instant) -> Vec<(String, &'static str, u64)> {
        match self.last_flush {
            Some(at) if now.saturating_duration_since(at) < self.rate.per => Vec::new(),
            _ => self.flush(now),
        }
    }
}

impl LogRate {
    /// How often to call [`PeerLog::flush`]: a quarter of the window (at
    /// least 100 ms), so a count is reported soon after its window ends.
    pub fn flush_every(&self) -> Duration {
        (self.per / 4).max(Duration::from_millis(100))
    }
}

/// A `LogLimiter` behind a lock, logging at warn level: what the
/// researcher's service and a node's links use.
#[derive(Debug)]
pub struct PeerLog {
    limiter: Mutex<LogLimiter>,
}

impl PeerLog {
    /// The note appended to a line let through after `n` were held back
    /// (empty for 0).
    pub fn held_back(n: u64) -> String {
        if n == 0 {
            String::new()
        } else {
            format!(" ({n} more such lines were held back)")
        }
    }

    /// A log letting `rate` through.
    pub fn new(rate: LogRate) -> PeerLog {
        PeerLog {
            limiter: Mutex::new(LogLimiter::new(rate)),
        }
    }

    /// Whether a line of `kind` caused by `peer` may be logged now, for
    /// callers that log it themselves (see `LogLimiter::allow`; mention a
    /// count with [`PeerLog::held_back`]).
    pub fn allow(&self, peer: &str, kind: &'static str) -> Option<u64> {
        self.lock().allow(peer, kind, Instant::now())
    }

    /// Logs `line` (built only when it is let through) at warn level unless
    /// `peer` exceeded its rate for `kind`.
    pub fn warn(&self, peer: &str, kind: &'static str, line: impl FnOnce() -> String) {
        if let Some(n) = self.allow(peer, kind) {
            log::warn!("{}{}", line(), PeerLog::held_back(n));
        }
    }

    /// Logs one summary line per (peer, kind) whose lines were held back in
    /// a window that has ended; call it periodically.
    pub fn flush(&self) {
        let held = self.lock().flush(Instant::now());
        summarize(held);
    }

    /// [`PeerLog::flush`] at most once per window: cheap enough to call
    /// after every line.
    pub fn flush_due(&self) {
        let held = self.lock().flush_due(Instant::now());
        summarize(held);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogLimiter> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn summarize(held: Vec<(String, &'static str, u64)>) {
    for (peer, kind, n) in held {
        log::warn!("{peer}: {n} more \"{kind}\" lines were held back");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_values() {
        let LogRate { lines, per } = LogRate::default();
        assert_eq!((lines, per), (5, Duration::from_secs(10)));
        assert_eq!(
            crate::config::fields_without_default(include_str!("log_limit.rs")),
            Vec::<String>::new()
        );
    }

    /// What the module's documentation says, as it was once its example.
    #[test]
    fn the_documented_behaviour_holds() {
        use crate::log_limit::{LogLimiter, LogRate};
        use std::time::{Duration, Instant};
        let mut limiter = LogLimiter::new(LogRate {
            lines: 2,
            per: Duration::from_secs(10),
        });
        let t0 = Instant::now();
        assert_eq!(limiter.allow("NODE_1", "bad reply", t0), Some(0));
        assert_eq!(limiter.allow("NODE_1", "bad reply", t0), Some(0));
        assert_eq!(limiter.allow("NODE_1", "bad reply", t0), None);
        assert_eq!(limiter.allow("NODE_2", "bad reply", t0), Some(0));
        // The next window: let through, with the count of the lines held back.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(limiter.allow("NODE_1", "bad reply", t1), Some(1));
    }

    fn rate() -> LogRate {
        LogRate {
            lines: 3,
            per: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_flood_is_cut_to_the_rate_and_counted() {
        let mut l = LogLimiter::new(rate());
        let t0 = Instant::now();
        let logged = (0..83_000)
            .filter(|_| l.allow("R", "bad task", t0).is_some())
            .count();
        assert_eq!(logged, 3);
        // Another kind of the same peer has its own count.
        assert_eq!(l.allow("R", "bad reply", t0), Some(0));
        // The window ends: the flush reports the count once.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(l.flush(t1), vec![("R".to_string(), "bad task", 82_997)]);
        assert!(l.flush(t1).is_empty());
        assert_eq!(l.allow("R", "bad task", t1), Some(0));
    }

    #[test]
    fn quiet_peers_are_forgotten_and_untracked_ones_share_a_count() {
        let mut l = LogLimiter::new(rate());
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED_PEERS + 500 {
            l.allow(&format!("NODE_{i}"), "bad poll", t0);
        }
        assert_eq!(l.windows.len(), MAX_TRACKED_PEERS + 1);
        // 500 peers over the limit: 3 let through, 497 held back.
        assert!(l.flush(t0 + Duration::from_secs(10)).contains(&(
            OTHER_PEERS.to_string(),
            "bad poll",
            497
        )));
        assert_eq!(l.windows.len(), 1);
        assert!(l.flush(t0 + Duration::from_secs(20)).is_empty());
        assert!(l.windows.is_empty());
    }

    #[test]
    fn long_peer_names_are_shortened() {
        let mut l = LogLimiter::new(rate());
        let t0 = Instant::now();
        l.allow(&"x".repeat(1 << 20), "bad poll", t0);
        let key = l.windows.keys().next().unwrap();
        assert!(key.0.len() < 100);
    }
}
