//! A node's connection status as seen by the researcher, as a plain state
//! machine driven by poll events and the clock (no timers inside: the agent
//! asks [`StatusTracker::check`] when [`StatusTracker::next_check`] says).
//!
//! ACTIVE while at least one poll is open; WAITING between polls;
//! DISCONNECTED once no poll was open for the disconnection timeout. A node
//! starts DISCONNECTED, so its first poll reports it connected.

use std::time::{Duration, Instant, SystemTime};

/// When the stretch `d` from `at` ends; a span beyond the clock's range
/// (a "forever" setting) ends in about a century instead of overflowing.
pub(super) fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(at)
}

/// A node's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NodeStatus {
    /// A poll is open: a task can be delivered now.
    Active,
    /// Between polls: tasks wait in the queue.
    Waiting,
    /// No poll for the disconnection timeout: tasks still wait until their
    /// time to live.
    Disconnected,
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeStatus::Active => "ACTIVE",
            NodeStatus::Waiting => "WAITING",
            NodeStatus::Disconnected => "DISCONNECTED",
        })
    }
}

/// A change worth telling the researcher's handler about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StatusChange {
    /// The node came (back) from DISCONNECTED.
    Connected,
    /// The node went DISCONNECTED.
    Disconnected,
}

/// The status state machine of one node.
#[derive(Debug)]
pub(super) struct StatusTracker {
    status: NodeStatus,
    open_polls: u32,
    last_seen: Option<Instant>,
    last_poll: Option<SystemTime>,
    timeout: Duration,
}

impl StatusTracker {
    /// A node never seen, DISCONNECTED, going DISCONNECTED again after
    /// `timeout` without a poll.
    pub(super) fn new(timeout: Duration) -> StatusTracker {
        StatusTracker {
            status: NodeStatus::Disconnected,
            open_polls: 0,
            last_seen: None,
            last_poll: None,
            timeout,
        }
    }

    /// The current status.
    pub(super) fn status(&self) -> NodeStatus {
        self.status
    }

    /// Polls open right now.
    #[cfg(test)]
    pub(super) fn open_polls(&self) -> u32 {
        self.open_polls
    }

    /// Wall-clock time the last poll was opened.
    pub(super) fn last_poll(&self) -> Option<SystemTime> {
        self.last_poll
    }

    /// A poll was opened at `now` (`wall` for reports).
    pub(super) fn poll_opened(&mut self, now: Instant, wall: SystemTime) -> Option<StatusChange> {
        self.open_polls = self.open_polls.saturating_add(1);
        self.last_seen = Some(now);
        self.last_poll = Some(wall);
        let was = std::mem::replace(&mut self.status, NodeStatus::Active);
        (was == NodeStatus::Disconnected).then_some(StatusChange::Connected)
    }

    /// A poll ended at `now`. Returns when [`StatusTracker::check`] should
    /// run next (the node went WAITING), if it should.
    pub(super) fn poll_closed(&mut self, now: Instant) -> Option<Instant> {
        self.open_polls = self.open_polls.saturating_sub(1);
        self.last_seen = Some(now);
        if self.open_polls == 0 && self.status == NodeStatus::Active {
            self.status = NodeStatus::Waiting;
        }
        self.next_check()
    }

    /// When the node would turn DISCONNECTED if no poll comes: `None` unless
    /// it is WAITING.
    pub(super) fn next_check(&self) -> Option<Instant> {
        match (self.status, self.last_seen) {
            (NodeStatus::Waiting, Some(seen)) => Some(later(seen, self.timeout)),
            _ => None,
        }
    }

    /// Applies the disconnection timeout at `now`.
    pub(super) fn check(&mut self, now: Instant) -> Option<StatusChange> {
        match self.next_check() {
            Some(at) if now >= at => {
                self.status = NodeStatus::Disconnected;
                Some(StatusChange::Disconnected)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn first_poll_connects_and_activates() {
        let mut s = StatusTracker::new(T);
        assert_eq!(s.status(), NodeStatus::Disconnected);
        let now = Instant::now();
        assert_eq!(
            s.poll_opened(now, SystemTime::now()),
            Some(StatusChange::Connected)
        );
        assert_eq!(s.status(), NodeStatus::Active);
        assert!(s.last_poll().is_some());
        assert_eq!(s.next_check(), None);
    }

    #[test]
    fn active_waiting_disconnected_and_back() {
        let mut s = StatusTracker::new(T);
        let t0 = Instant::now();
        s.poll_opened(t0, SystemTime::now());
        let at = s.poll_closed(t0 + Duration::from_secs(1));
        assert_eq!(s.status(), NodeStatus::Waiting);
        assert_eq!(at, Some(t0 + Duration::from_secs(11)));
        assert_eq!(s.check(t0 + Duration::from_secs(10)), None);
        assert_eq!(s.status(), NodeStatus::Waiting);
        assert_eq!(
            s.check(t0 + Duration::from_secs(11)),
            Some(StatusChange::Disconnected)
        );
        assert_eq!(s.status(), NodeStatus::Disconnected);
        assert_eq!(s.check(t0 + Duration::from_secs(50)), None);
        assert_eq!(
            s.poll_opened(t0 + Duration::from_secs(60), SystemTime::now()),
            Some(StatusChange::Connected)
        );
        assert_eq!(s.status(), NodeStatus::Active);
    }

    #[test]
    fn repoll_from_waiting_is_not_a_reconnection() {
        let mut s = StatusTracker::new(T);
        let t0 = Instant::now();
        s.poll_opened(t0, SystemTime::now());
        s.poll_closed(t0);
        assert_eq!(s.poll_opened(t0, SystemTime::now()), None);
        assert_eq!(s.status(), NodeStatus::Active);
        // A stale check while active changes nothing.
        assert_eq!(s.check(t0 + T * 2), None);
    }

    #[test]
    fn stays_active_while_any_poll_is_open() {
        let mut s = StatusTracker::new(T);
        let t0 = Instant::now();
        s.poll_opened(t0, SystemTime::now());
        s.poll_opened(t0, SystemTime::now());
        assert_eq!(s.poll_closed(t0), None);
        assert_eq!(s.status(), NodeStatus::Active);
        assert_eq!(s.open_polls(), 1);
        assert!(s.poll_closed(t0).is_some());
        assert_eq!(s.status(), NodeStatus::Waiting);
    }

    #[test]
    fn later_poll_close_pushes_the_deadline() {
        let mut s = StatusTracker::new(T);
        let t0 = Instant::now();
        s.poll_opened(t0, SystemTime::now());
        s.poll_closed(t0);
        s.poll_opened(t0 + Duration::from_secs(5), SystemTime::now());
        s.poll_closed(t0 + Duration::from_secs(6));
        assert_eq!(s.check(t0 + Duration::from_secs(10)), None);
        assert_eq!(s.next_check(), Some(t0 + Duration::from_secs(16)));
    }

    #[test]
    fn huge_timeouts_do_not_overflow() {
        let mut s = StatusTracker::new(Duration::MAX);
        let t0 = Instant::now();
        s.poll_opened(t0, SystemTime::now());
        assert!(s.poll_closed(t0).unwrap() > t0);
        assert_eq!(s.check(t0 + Duration::from_secs(3600)), None);
    }

    #[test]
    fn unbalanced_close_does_not_underflow() {
        let mut s = StatusTracker::new(T);
        let t0 = Instant::now();
        s.poll_closed(t0);
        assert_eq!(s.open_polls(), 0);
        assert_eq!(s.status(), NodeStatus::Disconnected);
    }
}
