//! [`RecentIds`]: the request ids a link received most recently, to drop a
//! task that arrives twice.
//!
//! A researcher cannot know whether a task written out just before a
//! connection cut reached the node, so fedroute researchers send it again
//! after the node reconnects (see `researcher::agent`). The node remembers
//! the last `capacity` request ids per link
//! ([`dedup_window`](super::QueueSettings::dedup_window)) and drops a task whose id is among them, so the
//! handler sees each task once. Tasks without a request id (relayed
//! `OverlayMessage`s) are never dropped.

use std::collections::{HashSet, VecDeque};

/// The last `capacity` distinct request ids seen, oldest forgotten first.
#[derive(Debug)]
pub(super) struct RecentIds {
    order: VecDeque<String>,
    seen: HashSet<String>,
    capacity: usize,
}

impl RecentIds {
    /// An empty window of `capacity` ids (0: remembers nothing, drops
    /// nothing).
    pub(super) fn new(capacity: usize) -> RecentIds {
        RecentIds {
            order: VecDeque::new(),
            seen: HashSet::new(),
            capacity,
        }
    }

    /// Ids remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    /// Nothing remembered.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Records `id`; false when it is already in the window (a duplicate).
    pub(super) fn insert(&mut self, id: &str) -> bool {
        if self.capacity == 0 {
            return true;
        }
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(id.to_string());
        self.seen.insert(id.to_string());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::QueueSettings;
    use super::*;

    #[test]
    fn a_second_copy_is_a_duplicate() {
        let mut r = RecentIds::new(4);
        assert!(r.insert("a"));
        assert!(r.insert("b"));
        assert!(!r.insert("a"));
        assert!(!r.insert("b"));
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn the_oldest_id_is_forgotten() {
        let mut r = RecentIds::new(2);
        assert!(r.insert("a"));
        assert!(r.insert("b"));
        assert!(r.insert("c"));
        assert_eq!(r.len(), 2);
        assert!(r.insert("a"), "a left the window");
        assert!(!r.insert("c"));
    }

    #[test]
    fn a_zero_window_drops_nothing() {
        let mut r = RecentIds::new(0);
        assert!(r.insert("a"));
        assert!(r.insert("a"));
        assert!(r.is_empty());
    }

    #[test]
    fn memory_stays_bounded() {
        let mut r = RecentIds::new(QueueSettings::DEFAULT_DEDUP_WINDOW);
        for i in 0..20_000 {
            assert!(r.insert(&format!("r{i}")));
        }
        assert_eq!(r.len(), QueueSettings::DEFAULT_DEDUP_WINDOW);
        assert_eq!(r.seen.len(), QueueSettings::DEFAULT_DEDUP_WINDOW);
        assert!(!r.insert("r19999"));
        assert!(r.insert("r0"));
    }
}
