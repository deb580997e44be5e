//! The ordered, bounded outgoing queue of one researcher link.
//!
//! Replies and feedback wait here until the researcher has acknowledged them.
//! The sender *peeks* a batch (cheap clones: a reply is a `Payload` handle) and
//! removes it only after the RPC succeeded, so a send that fails, or a link
//! that is restarted or shut down in the middle of a send, leaves the queue
//! intact: the batch is sent again after reconnecting, in the same order, or
//! reported as unsent. The bound is on the number of queued messages; a full
//! queue is an error for the caller, never unbounded memory.
//!
//! The queue lives in the link's shared state, outside the actor's context, so
//! it survives the supervisor's restarts of the link.

use std::collections::VecDeque;

use crate::proto;
use crate::wire::Payload;

/// One message waiting to go to a researcher.
#[derive(Debug, Clone)]
pub(super) enum Outgoing {
    /// A Fed-BioMed message (msgpack bytes, as pieces that share a model's
    /// buffer; see [`Payload`]), sent by `ReplyTask` in chunks; with its
    /// sequence number in the delivery store when it is kept there.
    Message(Payload, Option<u64>),
    /// Node feedback (log or scalar), sent by the unary `Feedback` RPC.
    Feedback(proto::FeedbackMessage),
}

impl Outgoing {
    /// Payload size in bytes, for statistics and batch limits.
    pub(super) fn len(&self) -> usize {
        match self {
            Outgoing::Message(b, _) => b.len(),
            Outgoing::Feedback(f) => prost::Message::encoded_len(f),
        }
    }

    /// True for feedback (sent one by one by the unary `Feedback` RPC).
    pub(super) fn is_feedback(&self) -> bool {
        matches!(self, Outgoing::Feedback(_))
    }
}

/// A bounded FIFO with peek-then-acknowledge removal, bounded both in items
/// and in bytes (`size` measures an item).
#[derive(Debug)]
pub(crate) struct Outbox<T> {
    items: VecDeque<T>,
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    size: fn(&T) -> usize,
    /// Places promised by [`Outbox::reserve`] and their bytes.
    reserved: usize,
    reserved_bytes: usize,
    /// Items for which `mark` holds, counted as they come and go.
    marked: usize,
    mark: fn(&T) -> bool,
    /// The first `attempted` items were written to an RPC at least once: the
    /// researcher may have them although it did not acknowledge them.
    attempted: usize,
}

impl<T: Clone> Outbox<T> {
    /// An empty queue holding at most `capacity` items (at least one) and
    /// `max_bytes` bytes (one item is always accepted into an empty queue,
    /// whatever its size).
    pub(crate) fn new(capacity: usize, max_bytes: usize, size: fn(&T) -> usize) -> Outbox<T> {
        Outbox {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            max_bytes,
            bytes: 0,
            size,
            reserved: 0,
            reserved_bytes: 0,
            marked: 0,
            mark: |_| false,
            attempted: 0,
        }
    }

    /// Counts the queued items for which `mark` holds ([`Outbox::marked`]).
    pub(crate) fn with_mark(mut self, mark: fn(&T) -> bool) -> Outbox<T> {
        self.mark = mark;
        self
    }

    /// Queued items for which the [`Outbox::with_mark`] predicate holds.
    pub(crate) fn marked(&self) -> usize {
        self.marked
    }

    /// Appends `item`; gives it back when the queue is full.
    pub(crate) fn push(&mut self, item: T) -> Result<(), T> {
        if !self.reserve((self.size)(&item)) {
            return Err(item);
        }
        self.push_reserved(item);
        Ok(())
    }

    /// Promises a place for an item of `n` bytes that will come with
    /// [`Outbox::push_reserved`] (or be given up with
    /// [`Outbox::unreserve`]): the item is being written to the delivery
    /// store meanwhile. False when the queue is full.
    pub(crate) fn reserve(&mut self, n: usize) -> bool {
        let held = self.items.len() + self.reserved;
        let bytes = self.bytes + self.reserved_bytes;
        if held >= self.capacity || (held > 0 && bytes.saturating_add(n) > self.max_bytes) {
            return false;
        }
        self.reserved += 1;
        self.reserved_bytes += n;
        true
    }

    /// Gives up a place promised for `n` bytes.
    pub(crate) fn unreserve(&mut self, n: usize) {
        self.reserved = self.reserved.saturating_sub(1);
        self.reserved_bytes = self.reserved_bytes.saturating_sub(n);
    }

    /// Appends `item` in a place [`Outbox::reserve`] promised.
    pub(crate) fn push_reserved(&mut self, item: T) {
        let n = (self.size)(&item);
        self.unreserve(n);
        self.push_unbounded(item);
    }

    /// Appends `item` whatever the bounds: an item accepted before a
    /// restart (the bounds may have changed since) comes back in.
    pub(crate) fn push_unbounded(&mut self, item: T) {
        self.bytes += (self.size)(&item);
        self.marked += usize::from((self.mark)(&item));
        self.items.push_back(item);
    }

    /// Bytes queued (as measured by `size`).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The byte bound given at construction.
    pub(crate) fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Clones of the first items, stopping at `max_items`, when adding the
    /// next would exceed `max_bytes` (the first item is always taken), or where
    /// `same_batch(first, next)` is false. Nothing is removed.
    pub(crate) fn peek_batch(
        &self,
        max_items: usize,
        max_bytes: usize,
        size: impl Fn(&T) -> usize,
        same_batch: impl Fn(&T, &T) -> bool,
    ) -> Vec<T> {
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        let Some(first) = self.items.front() else {
            return batch;
        };
        for item in self.items.iter().take(max_items.max(1)) {
            let n = size(item);
            if !batch.is_empty()
                && (bytes.saturating_add(n) > max_bytes || !same_batch(first, item))
            {
                break;
            }
            bytes = bytes.saturating_add(n);
            batch.push(item.clone());
        }
        batch
    }

    /// A clone of the item at `index` (0 = first), if any.
    pub(crate) fn get(&self, index: usize) -> Option<T> {
        self.items.get(index).cloned()
    }

    /// Notes that the first `n` items are being written to an RPC.
    pub(crate) fn mark_attempted(&mut self, n: usize) {
        self.attempted = self.attempted.max(n.min(self.items.len()));
    }

    /// Removes and returns the first `n` items (they were acknowledged).
    pub(crate) fn pop(&mut self, n: usize) -> Vec<T> {
        let n = n.min(self.items.len());
        self.attempted = self.attempted.saturating_sub(n);
        let (size, mark) = (self.size, self.mark);
        let (mut removed, mut unmarked) = (0, 0);
        let items: Vec<T> = self.items.drain(..n).collect();
        for item in &items {
            removed += size(item);
            unmarked += usize::from(mark(item));
        }
        self.bytes = self.bytes.saturating_sub(removed);
        self.marked = self.marked.saturating_sub(unmarked);
        items
    }

    /// Removes and returns everything (shutdown, link removed): the items
    /// written to an RPC but not acknowledged, then those never written.
    pub(crate) fn take_all(&mut self) -> (Vec<T>, Vec<T>) {
        self.bytes = 0;
        self.marked = 0;
        let mut never = std::mem::take(&mut self.items);
        let attempted = never.drain(..self.attempted.min(never.len())).collect();
        self.attempted = 0;
        (attempted, never.into())
    }

    /// Number of queued items, including a batch being sent.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The bound given at construction.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_written_but_not_acknowledged_are_told_apart() {
        let mut q = Outbox::new(8, usize::MAX, one);
        for i in 0..4u32 {
            q.push(i).unwrap();
        }
        q.mark_attempted(3);
        q.pop(1); // 0 acknowledged
        q.mark_attempted(1); // a retry of 1 does not forget that 2 was written
        assert_eq!(q.take_all(), (vec![1, 2], vec![3]));
        q.push(9).unwrap();
        q.mark_attempted(5); // more than is queued
        assert_eq!(q.take_all(), (vec![9], vec![]));
    }

    fn all(_: &u32, _: &u32) -> bool {
        true
    }

    fn one(_: &u32) -> usize {
        1
    }

    fn value(x: &u32) -> usize {
        *x as usize
    }

    #[test]
    fn byte_bound() {
        let mut q = Outbox::new(100, 10, value);
        // One oversized item is accepted into an empty queue.
        assert!(q.push(50).is_ok());
        assert_eq!(q.push(1), Err(1));
        q.pop(1);
        assert_eq!(q.bytes(), 0);
        assert!(q.push(6).is_ok());
        assert!(q.push(4).is_ok());
        assert_eq!(q.push(1), Err(1));
        assert_eq!(q.bytes(), 10);
        q.pop(1);
        assert_eq!(q.bytes(), 4);
        q.take_all();
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn marked_items_are_counted_as_they_come_and_go() {
        let mut q = Outbox::new(10, usize::MAX, one).with_mark(|x| x % 2 == 0);
        for i in [1u32, 2, 4, 5] {
            q.push(i).unwrap();
        }
        assert_eq!(q.marked(), 2);
        q.pop(2);
        assert_eq!(q.marked(), 1);
        q.take_all();
        assert_eq!(q.marked(), 0);
    }

    #[test]
    fn reserved_places_count_against_both_bounds() {
        let mut q = Outbox::new(3, 10, value);
        assert!(q.reserve(4));
        assert!(q.reserve(4));
        // Two places promised: the bytes of a third would exceed the bound.
        assert!(!q.reserve(4));
        q.unreserve(4);
        assert!(q.push(4).is_ok());
        q.push_reserved(4);
        assert_eq!((q.len(), q.bytes()), (2, 8));
        assert!(q.reserve(2));
        // Full in items, whatever the size.
        assert!(!q.reserve(0));
        // Items from before a restart come in whatever the bounds.
        q.push_unbounded(50);
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(2), vec![4, 4]);
    }

    #[test]
    fn keeps_order_and_bound() {
        let mut q = Outbox::new(3, usize::MAX, one);
        assert!(q.push(1u32).is_ok());
        assert!(q.push(2).is_ok());
        assert!(q.push(3).is_ok());
        assert_eq!(q.push(4), Err(4));
        assert_eq!(q.take_all(), (vec![], vec![1, 2, 3]));
        assert!(q.is_empty());
    }

    #[test]
    fn peek_does_not_remove_until_acknowledged() {
        let mut q = Outbox::new(10, usize::MAX, one);
        for i in 0..5u32 {
            q.push(i).unwrap();
        }
        let batch = q.peek_batch(3, usize::MAX, |_| 1, all);
        assert_eq!(batch, vec![0, 1, 2]);
        assert_eq!(q.len(), 5);
        // A failed send: nothing popped, the same batch comes again.
        assert_eq!(q.peek_batch(3, usize::MAX, |_| 1, all), batch);
        q.pop(3);
        assert_eq!(q.peek_batch(3, usize::MAX, |_| 1, all), vec![3, 4]);
        assert_eq!(q.get(1), Some(4));
        assert_eq!(q.get(2), None);
        q.pop(10);
        assert!(q.peek_batch(3, usize::MAX, |_| 1, all).is_empty());
    }

    #[test]
    fn batch_respects_byte_limit_but_always_takes_one() {
        let mut q = Outbox::new(10, usize::MAX, one);
        for i in [100u32, 1, 1, 50, 1] {
            q.push(i).unwrap();
        }
        let size = |x: &u32| *x as usize;
        assert_eq!(q.peek_batch(10, 10, size, all), vec![100]);
        q.pop(1);
        assert_eq!(q.peek_batch(10, 10, size, all), vec![1, 1]);
    }

    #[test]
    fn batch_stops_at_a_different_kind() {
        let mut q = Outbox::new(10, usize::MAX, one);
        for i in [2u32, 4, 5, 6] {
            q.push(i).unwrap();
        }
        let parity = |a: &u32, b: &u32| a % 2 == b % 2;
        assert_eq!(q.peek_batch(10, usize::MAX, |_| 1, parity), vec![2, 4]);
    }

    #[test]
    fn outgoing_sizes() {
        let m = Outgoing::Message(Payload::from(&b"abc"[..]), None);
        assert_eq!(m.len(), 3);
        assert!(!m.is_feedback());
        let f = Outgoing::Feedback(proto::FeedbackMessage {
            protocol_version: "7".into(),
            ..Default::default()
        });
        assert!(f.is_feedback());
    }
}
