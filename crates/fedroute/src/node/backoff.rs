//! Reconnect backoff: how long a researcher link
//! waits before dialling again.
//!
//! Fed-BioMed nodes wait a fixed 2 s after any failure. fedroute retries the
//! first time almost at once (a researcher restart is usually quick), then
//! doubles the delay up to a cap, with jitter so that many nodes cut off by the
//! same researcher restart do not all dial in the same millisecond. A successful
//! poll resets the schedule.
//!
//! The schedule is a plain struct with its own small random generator, so
//! unit tests can drive it with a fixed seed and no timers.

use std::time::Duration;

use super::config::ReconnectSettings;

/// Exponential backoff with jitter.
///
/// Attempt `n` (counting from 0) waits a random delay in
/// `[d/2, d]` where `d = min(cap, first * 2^n)`: the first retry comes
/// within `first`, later ones never after `cap`.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    first: Duration,
    cap: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// A schedule whose first delay is at most `first` and whose delays never exceed `cap`.
    pub(super) fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff::with_seed(first, cap, rand::random::<u64>())
    }

    /// Like [`Backoff::new`] with a fixed seed for the jitter (tests).
    pub(super) fn with_seed(first: Duration, cap: Duration, seed: u64) -> Backoff {
        Backoff {
            first,
            cap: cap.max(first),
            attempt: 0,
            // xorshift must not start at 0.
            rng: seed | 1,
        }
    }

    /// The delay before the next attempt; advances the schedule.
    pub(super) fn next_delay(&mut self) -> Duration {
        let exp = self.attempt.min(30);
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = self
            .first
            .checked_mul(1u32 << exp)
            .unwrap_or(self.cap)
            .min(self.cap);
        let half = ceiling / 2;
        let span = (ceiling - half).as_nanos() as u64;
        let jitter = if span == 0 {
            0
        } else {
            self.next_u64() % (span + 1)
        };
        half + Duration::from_nanos(jitter)
    }

    /// Back to the first, short delay (after a successful poll).
    pub(super) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Number of delays handed out since the last reset.
    #[cfg(test)]
    pub(super) fn attempts(&self) -> u32 {
        self.attempt
    }

    fn next_u64(&mut self) -> u64 {
        // xorshift64*: plenty for jitter.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new(
            ReconnectSettings::DEFAULT_BACKOFF_FIRST,
            ReconnectSettings::DEFAULT_BACKOFF_MAX,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Duration = ReconnectSettings::DEFAULT_BACKOFF_FIRST;
    const CAP: Duration = ReconnectSettings::DEFAULT_BACKOFF_MAX;

    #[test]
    fn first_retry_comes_within_the_first_delay() {
        for seed in 0..200 {
            let mut b = Backoff::with_seed(FIRST, CAP, seed);
            let d = b.next_delay();
            assert!(d <= Duration::from_millis(50), "{d:?}");
            assert!(d >= Duration::from_millis(25), "{d:?}");
        }
    }

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let mut b = Backoff::with_seed(FIRST, CAP, 7);
        let delays: Vec<Duration> = (0..40).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= CAP));
        // After enough attempts every delay is at least half the cap.
        assert!(delays[10..].iter().all(|d| *d >= CAP / 2));
        // Bounds of attempt n are [min(cap, 50ms*2^n)/2, min(cap, 50ms*2^n)].
        for (n, d) in delays.iter().enumerate().take(6) {
            let ceiling = (FIRST * (1 << n)).min(CAP);
            assert!(*d <= ceiling && *d >= ceiling / 2, "attempt {n}: {d:?}");
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut b = Backoff::with_seed(FIRST, CAP, 3);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            b.reset();
            seen.insert(b.next_delay());
        }
        assert!(seen.len() > 10, "{seen:?}");
    }

    #[test]
    fn reset_goes_back_to_the_short_delay() {
        let mut b = Backoff::with_seed(FIRST, CAP, 11);
        for _ in 0..10 {
            b.next_delay();
        }
        assert_eq!(b.attempts(), 10);
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay() <= FIRST);
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::with_seed(Duration::from_secs(1), Duration::from_secs(5), 1);
        for _ in 0..1000 {
            assert!(b.next_delay() <= Duration::from_secs(5));
        }
    }
}
