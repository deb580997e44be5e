//! [`FairQueue`]: the writer's waiting operations, one FIFO per group (a
//! researcher link on a node, a node on a researcher), taken round-robin,
//! a few per group per commit. A peer that makes its group write thousands
//! of items (a researcher flooding a node with tasks) then delays the other
//! groups' writes by one small commit, not by its whole backlog; order
//! within a group is kept, which is the only order the store promises.

use std::collections::{HashMap, VecDeque};

/// Per-group FIFOs served round-robin.
#[derive(Debug)]
pub(super) struct FairQueue<T> {
    queues: HashMap<String, VecDeque<T>>,
    /// Groups with something waiting, in serving order.
    turn: VecDeque<String>,
    len: usize,
}

impl<T> Default for FairQueue<T> {
    fn default() -> FairQueue<T> {
        FairQueue {
            queues: HashMap::new(),
            turn: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> FairQueue<T> {
    /// Appends `item` to `group`'s FIFO.
    pub(super) fn push(&mut self, group: &str, item: T) {
        let queue = self.queues.entry(group.to_string()).or_default();
        if queue.is_empty() {
            self.turn.push_back(group.to_string());
        }
        queue.push_back(item);
        self.len += 1;
    }

    /// Nothing waits.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Up to `per_group` items of each group in turn, `max` in all; a
    /// group with more left waits for its next turn.
    pub(super) fn take_round(&mut self, per_group: usize, max: usize) -> Vec<T> {
        let mut taken = Vec::new();
        for _ in 0..self.turn.len() {
            if taken.len() >= max {
                break;
            }
            let Some(group) = self.turn.pop_front() else {
                break;
            };
            let Some(queue) = self.queues.get_mut(&group) else {
                continue;
            };
            let n = per_group.max(1).min(max - taken.len()).min(queue.len());
            taken.extend(queue.drain(..n));
            self.len -= n;
            if queue.is_empty() {
                self.queues.remove(&group);
            } else {
                self.turn.push_back(group);
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_group_does_not_hold_back_a_quiet_one_and_order_is_kept_per_group() {
        let mut q = FairQueue::default();
        for i in 0..1000 {
            q.push("flood", ("flood", i));
        }
        q.push("quiet", ("quiet", 0));
        let first = q.take_round(64, 1024);
        assert_eq!(first.len(), 65);
        assert!(first.contains(&("quiet", 0)));
        let flood: Vec<_> = first
            .iter()
            .filter(|(g, _)| *g == "flood")
            .map(|x| x.1)
            .collect();
        assert_eq!(flood, (0..64).collect::<Vec<_>>());
        // The rest comes in order, 64 a round.
        let mut next = 64;
        while !q.is_empty() {
            for (_, i) in q.take_round(64, 1024) {
                assert_eq!(i, next);
                next += 1;
            }
        }
        assert_eq!(next, 1000);
    }

    #[test]
    fn a_round_stops_at_its_maximum() {
        let mut q = FairQueue::default();
        for g in ["a", "b", "c"] {
            for i in 0..10 {
                q.push(g, i);
            }
        }
        assert_eq!(q.take_round(8, 20).len(), 20);
        assert_eq!(q.take_round(8, 20).len(), 10);
        assert!(q.is_empty());
        assert!(q.take_round(8, 20).is_empty());
    }
}
