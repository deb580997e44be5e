//! [`AwaitingReply`]: the tasks of one node that were written out to a poll
//! and whose reply has not arrived yet, each with the connection that
//! carried it, as a plain struct (no timers, no I/O).
//!
//! A task written into an HTTP/2 response may still be lost when the TCP
//! connection is cut before the bytes reach the node. The agent keeps such
//! tasks here (only tasks with a `request_id`: the reply names it) until
//! their reply comes, their request gives up, or they expire; when it sees
//! that their connection is gone it takes them back
//! ([`AwaitingReply::take_lost`], [`AwaitingReply::take_all`]) and queues
//! them again, in their original order.
//!
//! The set is bounded: when full, the oldest entry is let go (it falls back
//! to at-most-once delivery; the agent logs it).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use super::queue::QueuedTask;

/// A task waiting for its reply.
#[derive(Debug)]
pub(super) struct Awaiting<T, C> {
    /// The request id the reply will carry.
    pub request_id: String,
    /// The connection the task was written to (`None`: unknown).
    pub conn: Option<C>,
    /// When to stop waiting (`None`: until the reply or the request's own
    /// timeout).
    pub expires: Option<Instant>,
    /// The task, with its queue bookkeeping (sequence number, attempts).
    pub task: QueuedTask<T>,
}

/// Tasks of one node written out and not yet answered, in their original
/// order, at most `capacity` of them.
#[derive(Debug)]
pub(super) struct AwaitingReply<T, C> {
    entries: BTreeMap<u64, Awaiting<T, C>>,
    by_id: HashMap<String, Vec<u64>>,
    capacity: usize,
}

impl<T, C: PartialEq> AwaitingReply<T, C> {
    /// An empty set holding at most `capacity` tasks.
    pub(super) fn new(capacity: usize) -> AwaitingReply<T, C> {
        AwaitingReply {
            entries: BTreeMap::new(),
            by_id: HashMap::new(),
            capacity,
        }
    }

    /// Tasks waiting for a reply.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// No task waits for a reply.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps `entry` until its reply; answers the entry let go to make room
    /// (the oldest, or `entry` itself with a capacity of 0).
    pub(super) fn insert(&mut self, entry: Awaiting<T, C>) -> Option<Awaiting<T, C>> {
        if self.capacity == 0 {
            return Some(entry);
        }
        let evicted = if self.entries.len() >= self.capacity {
            self.entries
                .first_key_value()
                .map(|(seq, _)| *seq)
                .and_then(|seq| self.remove(seq))
        } else {
            None
        };
        let seq = entry.task.seq;
        // Sequence numbers are unique per queue; should one come twice, the
        // older entry goes.
        self.remove(seq);
        self.by_id
            .entry(entry.request_id.clone())
            .or_default()
            .push(seq);
        self.entries.insert(seq, entry);
        evicted
    }

    /// The reply to `request_id` came (or its request gave up): removes and
    /// answers every task with that id.
    pub(super) fn answer(&mut self, request_id: &str) -> Vec<Awaiting<T, C>> {
        let Some(seqs) = self.by_id.remove(request_id) else {
            return Vec::new();
        };
        seqs.into_iter()
            .filter_map(|seq| self.entries.remove(&seq))
            .collect()
    }

    /// The node polls on connection `live`: every task written to another
    /// (known) connection was on a connection that is gone. Removes and
    /// answers them, in their original order.
    pub(super) fn take_lost(&mut self, live: &C) -> Vec<Awaiting<T, C>> {
        let lost: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.conn.as_ref().is_some_and(|c| c != live))
            .map(|(seq, _)| *seq)
            .collect();
        lost.into_iter()
            .filter_map(|seq| self.remove(seq))
            .collect()
    }

    /// Removes and answers every task, in their original order.
    pub(super) fn take_all(&mut self) -> Vec<Awaiting<T, C>> {
        self.by_id.clear();
        std::mem::take(&mut self.entries).into_values().collect()
    }

    /// Removes and answers the tasks whose wait ended at or before `now`.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<Awaiting<T, C>> {
        let due: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires.is_some_and(|at| at <= now))
            .map(|(seq, _)| *seq)
            .collect();
        due.into_iter().filter_map(|seq| self.remove(seq)).collect()
    }

    /// The earliest end of a wait.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.entries.values().filter_map(|e| e.expires).min()
    }

    fn remove(&mut self, seq: u64) -> Option<Awaiting<T, C>> {
        let e = self.entries.remove(&seq)?;
        self.unindex(&e.request_id, seq);
        Some(e)
    }

    fn unindex(&mut self, request_id: &str, seq: u64) {
        if let Some(seqs) = self.by_id.get_mut(request_id) {
            seqs.retain(|s| *s != seq);
            if seqs.is_empty() {
                self.by_id.remove(request_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(seq: u64, id: &str, conn: Option<u8>, expires: Option<Instant>) -> Awaiting<u64, u8> {
        Awaiting {
            request_id: id.to_string(),
            conn,
            expires,
            task: QueuedTask {
                task: seq,
                deadline: Instant::now(),
                attempts: 0,
                seq,
            },
        }
    }

    fn seqs(v: Vec<Awaiting<u64, u8>>) -> Vec<u64> {
        v.into_iter().map(|e| e.task.seq).collect()
    }

    #[test]
    fn a_reply_removes_its_task() {
        let mut a = AwaitingReply::new(8);
        assert!(a.insert(entry(1, "r1", Some(1), None)).is_none());
        assert!(a.insert(entry(2, "r2", Some(1), None)).is_none());
        assert_eq!(seqs(a.answer("r1")), vec![1]);
        assert!(a.answer("r1").is_empty(), "answered once");
        assert!(a.answer("nobody").is_empty());
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn a_new_connection_gives_back_the_tasks_of_the_others_in_order() {
        let mut a = AwaitingReply::new(8);
        for (seq, conn) in [
            (3, Some(1)),
            (1, Some(1)),
            (2, Some(2)),
            (4, None),
            (5, Some(3)),
        ] {
            a.insert(entry(seq, &format!("r{seq}"), conn, None));
        }
        // Polling on connection 2: 1 and 3 lost, 5 too; 4 (unknown) stays.
        assert_eq!(seqs(a.take_lost(&2)), vec![1, 3, 5]);
        assert_eq!(a.len(), 2);
        assert!(a.take_lost(&2).is_empty());
        assert!(a.answer("r1").is_empty(), "the index follows");
        assert_eq!(seqs(a.take_all()), vec![2, 4]);
        assert!(a.is_empty());
        assert!(a.answer("r2").is_empty());
    }

    #[test]
    fn the_oldest_is_let_go_when_full() {
        let mut a = AwaitingReply::new(2);
        a.insert(entry(1, "r1", Some(1), None));
        a.insert(entry(2, "r2", Some(1), None));
        let out = a.insert(entry(3, "r3", Some(1), None)).unwrap();
        assert_eq!(out.request_id, "r1");
        assert!(a.answer("r1").is_empty());
        assert_eq!(a.len(), 2);
        let mut none = AwaitingReply::new(0);
        assert!(none.insert(entry(1, "r1", Some(1), None)).is_some());
        assert!(none.is_empty());
    }

    #[test]
    fn waits_expire() {
        let t0 = Instant::now();
        let mut a = AwaitingReply::new(8);
        a.insert(entry(1, "r1", Some(1), Some(t0 + Duration::from_secs(2))));
        a.insert(entry(2, "r2", Some(1), None));
        a.insert(entry(3, "r3", Some(1), Some(t0 + Duration::from_secs(1))));
        assert_eq!(a.next_expiry(), Some(t0 + Duration::from_secs(1)));
        assert!(a.expire(t0).is_empty());
        assert_eq!(seqs(a.expire(t0 + Duration::from_secs(2))), vec![1, 3]);
        assert_eq!(a.next_expiry(), None);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn same_request_id_twice() {
        let mut a = AwaitingReply::new(8);
        a.insert(entry(1, "r", Some(1), None));
        a.insert(entry(2, "r", Some(1), None));
        assert_eq!(seqs(a.answer("r")), vec![1, 2]);
        assert!(a.is_empty());
    }

    #[test]
    fn traffic_leaves_nothing_behind() {
        let mut a = AwaitingReply::new(16);
        for i in 0..10_000u64 {
            a.insert(entry(i, &format!("r{i}"), Some((i % 3) as u8), None));
            match i % 4 {
                0 => {
                    a.answer(&format!("r{i}"));
                }
                1 => {
                    a.take_lost(&((i % 3) as u8));
                }
                _ => {}
            }
        }
        a.take_all();
        assert!(a.is_empty());
        assert!(a.by_id.is_empty());
    }
}
