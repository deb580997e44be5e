//! [`LinkLife`]: where a link stands between its dials, as a plain struct
//! driven by what happened and the clock (no actor, no socket, no timer).
//!
//! The link's actor asks it how to make the next attempt (at once, after
//! a back-off delay, knocking on the port first) and tells it what came of
//! it; it answers which changes to report (a link reported up is reported
//! down once when it goes).
//!
//! The back-off applies to attempts that failed after the researcher
//! accepted the TCP connection, and to connections that ended before any
//! poll opened (a researcher that accepts connections and fails them). A
//! port that refuses connections is knocked on instead (see
//! `super::probe`), so a researcher that comes back is reached within a
//! knock interval. A poll that opened resets the back-off.

use std::time::{Duration, Instant};

use super::backoff::Backoff;

/// Where the link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Never dialled.
    New,
    /// A dial is under way; `knocked`: its port accepted a knock first.
    Dialling { knocked: bool },
    /// Connected and reported up.
    Up,
    /// The connection is gone; the next attempt comes.
    Down,
    /// Failed for good or closed: no attempt any more.
    Over,
}

/// How to make the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Attempt {
    /// The link's very first attempt.
    pub first: bool,
    /// Wait this long first.
    pub delay: Duration,
    /// Knock on the port until it accepts, on the knock schedule of an
    /// outage that began then.
    pub knock_since: Option<Instant>,
}

/// A link's state across its connections (it survives supervisor
/// restarts with the actor value).
#[derive(Debug)]
pub(super) struct LinkLife {
    phase: Phase,
    backoff: Backoff,
    /// Knocks are on (a non-zero probe interval).
    knock: bool,
    ever_connected: bool,
    /// A connection was made since the last restart.
    connected_since_restart: bool,
    /// The next attempt waits for the back-off first.
    needs_backoff: bool,
    /// No poll opens any more (shutdown or removal under way).
    draining: bool,
    /// When the current outage began.
    down_since: Option<Instant>,
}

impl LinkLife {
    /// A link never dialled; `knock`: knock on a refusing port between
    /// attempts.
    pub(super) fn new(backoff: Backoff, knock: bool) -> LinkLife {
        LinkLife {
            phase: Phase::New,
            backoff,
            knock,
            ever_connected: false,
            connected_since_restart: false,
            needs_backoff: false,
            draining: false,
            down_since: None,
        }
    }

    /// Starts the next attempt at `now`.
    pub(super) fn next_attempt(&mut self, now: Instant) -> Attempt {
        let first = self.phase == Phase::New;
        let delay = if !first && self.needs_backoff {
            self.backoff.next_delay()
        } else {
            Duration::ZERO
        };
        let knock_since = (!first && self.knock).then(|| *self.down_since.get_or_insert(now));
        self.phase = Phase::Dialling {
            knocked: knock_since.is_some(),
        };
        Attempt {
            first,
            delay,
            knock_since,
        }
    }

    /// The attempt failed (not for good); call [`LinkLife::lost`] next.
    pub(super) fn dial_failed(&mut self) {
        if let Phase::Dialling { knocked } = self.phase {
            // The port accepted the knock, so this failed past TCP; with
            // knocks off, nothing else spaces the attempts out.
            self.needs_backoff = knocked || !self.knock;
        }
    }

    /// The attempt connected: true when this is a reconnection.
    pub(super) fn connected(&mut self) -> bool {
        self.down_since = None;
        self.connected_since_restart = true;
        self.phase = Phase::Up;
        std::mem::replace(&mut self.ever_connected, true)
    }

    /// The connection (or the attempt) is gone at `now`. `None`: the link is
    /// over and this changes nothing; `Some(true)`: it was up, report it
    /// down.
    pub(super) fn lost(&mut self, now: Instant) -> Option<bool> {
        if self.is_over() {
            return None;
        }
        self.down_since.get_or_insert(now);
        let was_up = self.phase == Phase::Up;
        self.phase = Phase::Down;
        Some(was_up)
    }

    /// The supervisor restarts the link after a loss; `polled`: a poll
    /// opened on the connection that ended.
    pub(super) fn restarting(&mut self, polled: bool) {
        if polled {
            self.backoff.reset();
            self.needs_backoff = false;
        } else if self.connected_since_restart {
            // Connected but never polled (polls ended at once, a refusal).
            self.needs_backoff = true;
        }
        self.connected_since_restart = false;
    }

    /// The researcher refused a send: how long before sending again, or
    /// `None` when the link is over.
    pub(super) fn send_refused(&mut self) -> Option<Duration> {
        (!self.is_over()).then(|| self.backoff.next_delay())
    }

    /// Failed for good: no attempt any more.
    pub(super) fn fail(&mut self) {
        self.phase = Phase::Over;
    }

    /// Stop polling (the queue is still sent).
    pub(super) fn drain(&mut self) {
        self.draining = true;
    }

    /// Closed on request: no poll and no attempt any more.
    pub(super) fn close(&mut self) {
        self.draining = true;
        self.phase = Phase::Over;
    }

    /// Failed for good or closed.
    pub(super) fn is_over(&self) -> bool {
        self.phase == Phase::Over
    }

    /// No poll opens any more.
    pub(super) fn is_draining(&self) -> bool {
        self.draining
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Duration = Duration::from_millis(50);

    fn life() -> (LinkLife, Instant) {
        let backoff = Backoff::with_seed(FIRST, Duration::from_secs(2), 7);
        (LinkLife::new(backoff, true), Instant::now())
    }

    #[test]
    fn the_first_attempt_is_immediate_and_a_refusing_port_is_knocked_on_without_back_off() {
        let (mut l, t0) = life();
        let a = l.next_attempt(t0);
        assert_eq!(
            (a.first, a.delay, a.knock_since),
            (true, Duration::ZERO, None)
        );
        // Refused before TCP: no knock had succeeded, so no back-off.
        l.dial_failed();
        assert_eq!(l.lost(t0), Some(false), "never up: nothing to report");
        l.restarting(false);
        let t1 = t0 + Duration::from_secs(1);
        let a = l.next_attempt(t1);
        assert_eq!((a.first, a.delay), (false, Duration::ZERO));
        assert_eq!(a.knock_since, Some(t0), "the outage began at the loss");
    }

    #[test]
    fn a_failure_past_tcp_backs_off_and_a_poll_resets_the_back_off() {
        let (mut l, t0) = life();
        l.next_attempt(t0);
        l.lost(t0);
        l.next_attempt(t0); // knocks
        l.dial_failed(); // the knock was accepted: past TCP
        l.lost(t0);
        l.restarting(false);
        let d1 = l.next_attempt(t0).delay;
        assert!(d1 >= FIRST / 2 && d1 <= FIRST, "{d1:?}");
        l.dial_failed();
        l.lost(t0);
        let d2 = l.next_attempt(t0).delay;
        assert!(d2 >= FIRST && d2 <= 2 * FIRST, "doubles: {d2:?}");
        assert!(!l.connected(), "the first connection");
        l.lost(t0);
        l.restarting(true);
        assert_eq!(l.next_attempt(t0).delay, Duration::ZERO);
    }

    #[test]
    fn without_knocks_every_failed_dial_backs_off() {
        let backoff = Backoff::with_seed(FIRST, Duration::from_secs(2), 7);
        let (mut l, t0) = (LinkLife::new(backoff, false), Instant::now());
        l.next_attempt(t0);
        l.dial_failed();
        l.lost(t0);
        l.restarting(false);
        let a = l.next_attempt(t0);
        assert_eq!(a.knock_since, None);
        assert!(
            a.delay >= FIRST / 2,
            "a refused port is not retried at once: {a:?}"
        );
    }

    #[test]
    fn a_connection_that_never_polled_backs_off() {
        let (mut l, t0) = life();
        l.next_attempt(t0);
        l.connected();
        assert_eq!(l.lost(t0), Some(true));
        l.restarting(false);
        let d = l.next_attempt(t0).delay;
        assert!(d >= FIRST / 2, "{d:?}");
    }

    #[test]
    fn up_and_down_are_reported_once_per_change() {
        let (mut l, t0) = life();
        l.next_attempt(t0);
        assert!(!l.connected());
        assert_eq!(l.lost(t0), Some(true));
        l.next_attempt(t0);
        assert_eq!(l.lost(t0), Some(false), "an attempt while down");
        l.next_attempt(t0);
        assert!(l.connected(), "a reconnection");
        l.fail();
        assert_eq!(l.lost(t0), None, "over: nothing changes");
        assert_eq!(l.send_refused(), None);
    }

    #[test]
    fn close_drains_and_ends_the_link() {
        let (mut l, t0) = life();
        l.next_attempt(t0);
        l.connected();
        l.drain();
        assert!(l.is_draining() && !l.is_over());
        assert!(l.send_refused().is_some());
        l.close();
        assert!(l.is_over());
    }
}
