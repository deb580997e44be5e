//! Round-trip statistics and human-readable figures for the summaries of
//! `demo` and `researcher --ping`.

use std::time::Duration;

/// Round-trip times of one series of requests.
#[derive(Debug, Default, Clone)]
pub(crate) struct RoundTrips {
    samples: Vec<Duration>,
    sorted: bool,
}

impl RoundTrips {
    /// An empty series.
    pub(crate) fn new() -> RoundTrips {
        RoundTrips::default()
    }

    /// Records one round trip.
    pub(crate) fn record(&mut self, rtt: Duration) {
        self.samples.push(rtt);
        self.sorted = false;
    }

    /// Adds every sample of `other`.
    pub(crate) fn extend(&mut self, other: &RoundTrips) {
        self.samples.extend_from_slice(&other.samples);
        self.sorted = false;
    }

    /// Number of samples.
    pub(crate) fn count(&self) -> usize {
        self.samples.len()
    }

    /// The `p`-th percentile (0 to 100, nearest rank), `None` when empty.
    pub(crate) fn percentile(&mut self, p: f64) -> Option<Duration> {
        if self.samples.is_empty() {
            return None;
        }
        if !self.sorted {
            self.samples.sort_unstable();
            self.sorted = true;
        }
        let n = self.samples.len();
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * n as f64).ceil() as usize;
        Some(self.samples[rank.clamp(1, n) - 1])
    }

    /// "p50 1.2 ms, p99 3.4 ms" (or "no samples").
    pub(crate) fn summary(&mut self) -> String {
        match (self.percentile(50.0), self.percentile(99.0)) {
            (Some(p50), Some(p99)) => {
                format!("p50 {}, p99 {}", duration(p50), duration(p99))
            }
            _ => "no samples".to_string(),
        }
    }
}

/// A short human form of a duration: `850 µs`, `12.3 ms`, `1.24 s`.
pub(crate) fn duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// A short human form of a byte count: `512 B`, `3.0 KiB`, `16.0 MiB`, `1.50 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f < K {
        format!("{n} B")
    } else if f < K * K {
        format!("{:.1} KiB", f / K)
    } else if f < K * K * K {
        format!("{:.1} MiB", f / (K * K))
    } else {
        format!("{:.2} GiB", f / (K * K * K))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut rt = RoundTrips::new();
        assert_eq!(rt.percentile(50.0), None);
        assert_eq!(rt.summary(), "no samples");
        for ms in (1..=100).rev() {
            rt.record(Duration::from_millis(ms));
        }
        assert_eq!(rt.percentile(50.0), Some(Duration::from_millis(50)));
        assert_eq!(rt.percentile(99.0), Some(Duration::from_millis(99)));
        assert_eq!(rt.percentile(100.0), Some(Duration::from_millis(100)));
        assert_eq!(rt.percentile(0.0), Some(Duration::from_millis(1)));
        let mut one = RoundTrips::new();
        one.record(Duration::from_micros(300));
        assert_eq!(one.summary(), "p50 300 µs, p99 300 µs");
        rt.extend(&one);
        assert_eq!(rt.count(), 101);
    }

    #[test]
    fn human_forms() {
        assert_eq!(duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(duration(Duration::from_micros(12_340)), "12.3 ms");
        assert_eq!(duration(Duration::from_millis(1_240)), "1.24 s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024), "3.0 KiB");
        assert_eq!(bytes(16 << 20), "16.0 MiB");
    }
}
