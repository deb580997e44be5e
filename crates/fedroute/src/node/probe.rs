//! Knocking on a down researcher's port: [`ProbeSchedule`] and [`knock`].
//!
//! A researcher that restarts is away for one to several seconds; by then
//! the reconnect back-off would have grown to its cap (2 s), and the node
//! would come back up to 2 s after the researcher. So while a link is down
//! and its last attempt failed to connect at all, the link does not sleep
//! the back-off: it *knocks*, opening a bare TCP connection to the
//! researcher's port (no TLS, closed at once) every
//! [`probe_interval`](super::ReconnectSettings::probe_interval) (100 ms, with up to a fifth more of
//! jitter so that many nodes spread out) for the first
//! [`probe_fast_for`](super::ReconnectSettings::probe_fast_for) (a minute) of the outage,
//! then every [`PROBE_SLOW_INTERVAL`] (1 s) or the back-off cap if longer.
//! As soon as a knock connects, the full TLS and gRPC reconnect starts.
//!
//! The back-off is kept for attempts that failed *after* the TCP connection
//! was made (TLS refused, gRPC failed, a poll ended at once): a researcher
//! that accepts connections but fails them is not hammered.
//!
//! Cost, per down link: at most 10 connection attempts a second during the
//! first minute, at most 1 a second after. A researcher restarting in front
//! of 1,000 nodes receives up to 10,000 SYNs a second while it is down
//! (each answered by the kernel with a reset), then 1,000 knocks (accepted
//! and closed, a few hundred bytes each) and 1,000 reconnects when it
//! listens again; the knocks reach it within ~120 ms of its listening.
//!
//! Through an HTTP proxy the proxy's own port says nothing about the
//! researcher's, so the knock is a `CONNECT` to the researcher (the tunnel
//! is closed as soon as the proxy answers 2xx). The researcher counts as
//! refusing while the proxy cannot be reached or answers 500, 502, 503 or
//! 504 (it could not reach the researcher: tinyproxy says 500, most others
//! 502): knocks go on on the same schedule. Any other answer (407, 403,
//! garbage, a tunnel) ends the knocks and the full dial runs, fails with
//! the precise error, and the link backs off as after any failure past
//! TCP: a proxy refusing the node with 407 is asked again only at the
//! back-off's pace, never at the knocks'.

use std::time::{Duration, Instant};

use crate::proxy::{self, Proxy};

/// Least time between knocks after the first part.
pub(super) const PROBE_SLOW_INTERVAL: Duration = Duration::from_secs(1);

/// When to knock next on a down researcher's port (a plain struct: the
/// link passes `now`).
#[derive(Debug, Clone)]
pub(super) struct ProbeSchedule {
    down_since: Instant,
    fast: Duration,
    fast_for: Duration,
    slow: Duration,
    rng: u64,
}

impl ProbeSchedule {
    /// A schedule for an outage that began at `down_since`: every `fast`
    /// for `fast_for`, then every `slow` (never under
    /// [`PROBE_SLOW_INTERVAL`]).
    pub(super) fn new(
        down_since: Instant,
        fast: Duration,
        fast_for: Duration,
        slow: Duration,
    ) -> Self {
        ProbeSchedule::with_seed(down_since, fast, fast_for, slow, rand::random())
    }

    /// Like [`ProbeSchedule::new`] with a fixed seed for the jitter (tests).
    pub(super) fn with_seed(
        down_since: Instant,
        fast: Duration,
        fast_for: Duration,
        slow: Duration,
        seed: u64,
    ) -> Self {
        ProbeSchedule {
            down_since,
            fast,
            fast_for,
            slow: slow.max(PROBE_SLOW_INTERVAL),
            // xorshift must not start at 0.
            rng: seed | 1,
        }
    }

    /// The wait before the next knock at `now`: the interval of the part of
    /// the outage `now` is in, plus up to a fifth of it of jitter.
    pub(super) fn next_wait(&mut self, now: Instant) -> Duration {
        let base = if now.saturating_duration_since(self.down_since) < self.fast_for {
            self.fast
        } else {
            self.slow
        };
        let span = (base / 5).as_nanos() as u64;
        let jitter = if span == 0 {
            0
        } else {
            self.next_u64() % (span + 1)
        };
        base + Duration::from_nanos(jitter)
    }

    fn next_u64(&mut self) -> u64 {
        // xorshift64*: plenty for jitter.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Whether `host:port` accepts a TCP connection within `timeout` (the
/// connection is closed at once).
pub(super) async fn knock(host: &str, port: u16, timeout: Duration) -> bool {
    let connect = tokio::net::TcpStream::connect((host, port));
    matches!(tokio::time::timeout(timeout, connect).await, Ok(Ok(_)))
}

/// Whether a knock through `proxy` says to dial: the proxy opened a
/// tunnel to `host:port` (closed at once), or refused for another reason
/// than the researcher being unreachable (see the module docs).
pub(super) async fn knock_via(proxy: &Proxy, host: &str, port: u16, timeout: Duration) -> bool {
    let proxy = proxy.clone().with_handshake_timeout(timeout);
    match proxy::tunnel::open(&proxy, host, port).await {
        Ok(_) => true,
        Err(e) if e.target_unreachable() => false,
        Err(
            crate::proxy::ProxyError::Unreachable { .. } | crate::proxy::ProxyError::Timeout { .. },
        ) => false,
        Err(e) => {
            log::trace!("{host}:{port}: the knock through the proxy ended with: {e}; dialling");
            true
        }
    }
}

/// Knocks on `host:port` (through `proxy` when given) by `schedule`
/// until it accepts, calling `knocked` after each knock.
pub(super) async fn until_open(
    host: &str,
    port: u16,
    proxy: Option<&Proxy>,
    schedule: &mut ProbeSchedule,
    timeout: Duration,
    mut knocked: impl FnMut(),
) {
    loop {
        let open = match proxy {
            None => knock(host, port, timeout).await,
            Some(proxy) => knock_via(proxy, host, port, timeout).await,
        };
        knocked();
        if open {
            return;
        }
        let wait = schedule.next_wait(Instant::now());
        log::trace!("{host}:{port} refuses connections; knocking again in {wait:?}");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::ReconnectSettings;
    use super::*;

    #[test]
    fn fast_for_a_minute_then_about_once_a_second() {
        let t0 = Instant::now();
        let fast = ReconnectSettings::DEFAULT_PROBE_INTERVAL;
        let mut s = ProbeSchedule::with_seed(
            t0,
            fast,
            ReconnectSettings::DEFAULT_PROBE_FAST_FOR,
            Duration::from_secs(2),
            7,
        );
        let mut now = t0;
        let mut knocks_first_minute = 0;
        while now < t0 + ReconnectSettings::DEFAULT_PROBE_FAST_FOR {
            let w = s.next_wait(now);
            assert!(w >= fast && w <= fast + fast / 5, "{w:?}");
            now += w;
            knocks_first_minute += 1;
        }
        // At most 10 a second: 600 a minute.
        assert!(knocks_first_minute <= 600, "{knocks_first_minute}");
        assert!(knocks_first_minute >= 500, "{knocks_first_minute}");
        let w = s.next_wait(now);
        assert!(
            w >= Duration::from_secs(2) && w <= Duration::from_millis(2400),
            "{w:?}"
        );
        // A short back-off cap does not make the slow part faster than 1/s.
        let mut s =
            ProbeSchedule::with_seed(t0, fast, Duration::ZERO, Duration::from_millis(200), 7);
        assert!(s.next_wait(t0) >= PROBE_SLOW_INTERVAL);
    }

    #[tokio::test]
    async fn a_knock_tells_an_open_port_from_a_closed_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(knock("127.0.0.1", port, Duration::from_secs(5)).await);
        drop(listener);
        assert!(!knock("127.0.0.1", port, Duration::from_secs(5)).await);
    }
}
