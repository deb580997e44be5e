//! [`TaskQueue`]: a node's bounded queue of tasks with a time to live and a
//! count of cut deliveries, as a plain struct (no timers, no I/O).
//!
//! A task leaves the queue with [`TaskQueue::take`] and is then *in flight*
//! until it is [`TaskQueue::delivered`], [`TaskQueue::requeue`]d (its delivery
//! was cut: back to the head, one more attempt counted) or
//! [`TaskQueue::restore`]d (never started: back to the head, no attempt
//! counted). In-flight tasks count against the capacity, so the number of
//! tasks a node holds never exceeds it.
//!
//! A task written out but lost with its connection (see the agent's
//! "awaiting reply" set) comes back with [`TaskQueue::put_back`], outside the
//! in-flight count and without counting an attempt: the attempt count
//! stops a task whose delivery itself keeps breaking the stream, and a
//! task written out completely did not break it. Every task keeps the sequence
//! number it got when first queued, and tasks coming back are put before
//! every task queued after them, so the queue always keeps the original
//! order, whatever order the tasks come back in.

use std::collections::VecDeque;
use std::time::Instant;

/// A task with its bookkeeping.
#[derive(Debug)]
pub(super) struct QueuedTask<T> {
    /// The task itself.
    pub task: T,
    /// When it expires if still undelivered.
    pub deadline: Instant,
    /// Deliveries of it that were cut so far.
    pub attempts: u32,
    /// Its place in the original order (given by [`TaskQueue::push`]).
    pub seq: u64,
}

/// Why a task was refused or given back.
#[derive(Debug)]
pub(super) enum QueueRefusal<T> {
    /// The queue (with the tasks in flight) holds `capacity` tasks already.
    Full {
        /// The refused task.
        task: T,
        /// The capacity.
        capacity: usize,
    },
    /// The task's delivery was cut more than the allowed number of times.
    RetriesExhausted(QueuedTask<T>),
}

/// A bounded FIFO of tasks for one node.
#[derive(Debug)]
pub(super) struct TaskQueue<T> {
    items: VecDeque<QueuedTask<T>>,
    in_flight: usize,
    capacity: usize,
    max_retries: u32,
    next_seq: u64,
}

impl<T> TaskQueue<T> {
    /// An empty queue holding at most `capacity` tasks (queued plus in
    /// flight); a task may be cut `max_retries` times and queued again.
    pub(super) fn new(capacity: usize, max_retries: u32) -> TaskQueue<T> {
        TaskQueue {
            items: VecDeque::new(),
            in_flight: 0,
            capacity,
            max_retries,
            next_seq: 0,
        }
    }

    /// Tasks waiting (not in flight).
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// No task waiting.
    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Tasks being delivered.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Queues `task` at the tail, to expire at `deadline`.
    pub(super) fn push(&mut self, task: T, deadline: Instant) -> Result<(), QueueRefusal<T>> {
        if self.items.len() + self.in_flight >= self.capacity {
            return Err(QueueRefusal::Full {
                task,
                capacity: self.capacity,
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.items.push_back(QueuedTask {
            task,
            deadline,
            attempts: 0,
            seq,
        });
        Ok(())
    }

    /// Takes the head task for delivery (it is in flight until reported).
    pub(super) fn take(&mut self) -> Option<QueuedTask<T>> {
        let t = self.items.pop_front()?;
        self.in_flight += 1;
        Some(t)
    }

    /// An in-flight task was delivered.
    pub(super) fn delivered(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// An in-flight task's delivery was cut: back to the head with one more
    /// attempt, or refused when it has been cut too often.
    pub(super) fn requeue(&mut self, mut t: QueuedTask<T>) -> Result<(), QueueRefusal<T>> {
        self.in_flight = self.in_flight.saturating_sub(1);
        t.attempts += 1;
        if t.attempts > self.max_retries {
            return Err(QueueRefusal::RetriesExhausted(t));
        }
        self.put_back(t);
        Ok(())
    }

    /// An in-flight task never started being delivered: back to the head,
    /// no attempt counted.
    pub(super) fn restore(&mut self, t: QueuedTask<T>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.put_back(t);
    }

    /// Puts a returning task before every task queued after it (usually the
    /// head: the scan stops at the first later task). For a task that had
    /// left the queue as delivered (not counted in flight) and was lost with
    /// its connection; no attempt is counted. It may take the queue over its
    /// capacity for a while (new tasks are refused until it drains).
    pub(super) fn put_back(&mut self, t: QueuedTask<T>) {
        let at = self
            .items
            .iter()
            .position(|x| x.seq > t.seq)
            .unwrap_or(self.items.len());
        self.items.insert(at, t);
    }

    /// Removes and returns the waiting tasks whose deadline is at or before
    /// `now`, oldest first.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<QueuedTask<T>> {
        if !self.items.iter().any(|t| t.deadline <= now) {
            return Vec::new();
        }
        let mut expired = Vec::new();
        let mut kept = VecDeque::with_capacity(self.items.len());
        for t in self.items.drain(..) {
            if t.deadline <= now {
                expired.push(t);
            } else {
                kept.push_back(t);
            }
        }
        self.items = kept;
        expired
    }

    /// The earliest deadline of a waiting task.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.items.iter().map(|t| t.deadline).min()
    }

    /// The deadline of the head task (cheap; the queue is mostly in deadline
    /// order since every task gets the same time to live).
    pub(super) fn front_deadline(&self) -> Option<Instant> {
        self.items.front().map(|t| t.deadline)
    }

    /// Removes the first waiting task matching `pred`.
    #[cfg(test)]
    pub(super) fn remove_where(&mut self, pred: impl Fn(&T) -> bool) -> Option<QueuedTask<T>> {
        let i = self.items.iter().position(|t| pred(&t.task))?;
        self.items.remove(i)
    }

    /// Removes every waiting task matching `pred` (which sees the
    /// bookkeeping too), in queue order.
    pub(super) fn remove_all_where(
        &mut self,
        pred: impl Fn(&QueuedTask<T>) -> bool,
    ) -> Vec<QueuedTask<T>> {
        if !self.items.iter().any(&pred) {
            return Vec::new();
        }
        let mut removed = Vec::new();
        let mut kept = VecDeque::with_capacity(self.items.len());
        for t in self.items.drain(..) {
            if pred(&t) {
                removed.push(t);
            } else {
                kept.push_back(t);
            }
        }
        self.items = kept;
        removed
    }

    /// Removes every waiting task (shutdown).
    pub(super) fn drain(&mut self) -> Vec<QueuedTask<T>> {
        self.items.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn q(cap: usize) -> TaskQueue<u32> {
        TaskQueue::new(cap, 2)
    }

    #[test]
    fn fifo_order() {
        let now = Instant::now();
        let mut q = q(10);
        for i in 0..3 {
            q.push(i, now).unwrap();
        }
        assert_eq!(q.take().unwrap().task, 0);
        assert_eq!(q.take().unwrap().task, 1);
        assert_eq!(q.len(), 1);
        assert_eq!(q.in_flight(), 2);
    }

    #[test]
    fn capacity_counts_in_flight_tasks() {
        let now = Instant::now();
        let mut q = q(2);
        q.push(1, now).unwrap();
        q.push(2, now).unwrap();
        match q.push(3, now) {
            Err(QueueRefusal::Full {
                task: 3,
                capacity: 2,
            }) => {}
            other => panic!("expected Full, got {other:?}"),
        }
        let _in_flight = q.take().unwrap();
        assert!(q.push(3, now).is_err(), "in-flight task still counts");
        q.delivered();
        q.push(3, now).unwrap();
    }

    #[test]
    fn requeue_goes_to_head_and_counts_attempts() {
        let now = Instant::now();
        let mut q = q(10);
        q.push(1, now).unwrap();
        q.push(2, now).unwrap();
        let t = q.take().unwrap();
        q.requeue(t).unwrap();
        assert_eq!(q.in_flight(), 0);
        let t = q.take().unwrap();
        assert_eq!((t.task, t.attempts), (1, 1));
        q.requeue(t).unwrap();
        let t = q.take().unwrap();
        assert_eq!(t.attempts, 2);
        match q.requeue(t) {
            Err(QueueRefusal::RetriesExhausted(t)) => assert_eq!((t.task, t.attempts), (1, 3)),
            other => panic!("expected RetriesExhausted, got {other:?}"),
        }
        assert_eq!(q.in_flight(), 0);
        assert_eq!(q.take().unwrap().task, 2);
    }

    #[test]
    fn restore_does_not_count_an_attempt() {
        let now = Instant::now();
        let mut q = q(10);
        q.push(1, now).unwrap();
        let t = q.take().unwrap();
        q.restore(t);
        let t = q.take().unwrap();
        assert_eq!(t.attempts, 0);
    }

    #[test]
    fn returning_tasks_keep_the_original_order() {
        let now = Instant::now();
        let mut q = q(10);
        for i in 0..5 {
            q.push(i, now).unwrap();
        }
        let t0 = q.take().unwrap();
        let t1 = q.take().unwrap();
        let t2 = q.take().unwrap();
        q.delivered(); // t0 left the queue as delivered
                       // t2 comes back before t1 and t0, yet the order stays 0 1 2 3 4.
        q.restore(t2);
        q.requeue(t1).unwrap();
        q.put_back(t0);
        assert_eq!(q.in_flight(), 0);
        let order: Vec<(u32, u32)> = q
            .drain()
            .into_iter()
            .map(|t| (t.task, t.attempts))
            .collect();
        assert_eq!(order, vec![(0, 0), (1, 1), (2, 0), (3, 0), (4, 0)]);
    }

    #[test]
    fn put_back_may_exceed_capacity() {
        let now = Instant::now();
        let mut q = q(2);
        q.push(1, now).unwrap();
        let t = q.take().unwrap();
        q.delivered();
        q.push(2, now).unwrap();
        q.push(3, now).unwrap();
        q.put_back(t);
        assert_eq!(q.len(), 3);
        assert!(q.push(4, now).is_err());
        let t = q.take().unwrap();
        assert_eq!((t.task, t.attempts), (1, 0));
    }

    #[test]
    fn remove_all_where_keeps_the_rest_in_order() {
        let now = Instant::now();
        let mut q = q(10);
        for i in [1, 2, 1, 3] {
            q.push(i, now).unwrap();
        }
        assert_eq!(q.remove_all_where(|t| t.task == 1).len(), 2);
        assert!(q.remove_all_where(|t| t.task == 9).is_empty());
        let rest: Vec<u32> = q.drain().into_iter().map(|t| t.task).collect();
        assert_eq!(rest, vec![2, 3]);
    }

    #[test]
    fn expire_removes_only_due_tasks() {
        let t0 = Instant::now();
        let mut q = q(10);
        q.push(1, t0 + Duration::from_secs(1)).unwrap();
        q.push(2, t0 + Duration::from_secs(5)).unwrap();
        q.push(3, t0 + Duration::from_secs(2)).unwrap();
        assert!(q.expire(t0).is_empty());
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_secs(1)));
        let gone: Vec<u32> = q
            .expire(t0 + Duration::from_secs(2))
            .into_iter()
            .map(|t| t.task)
            .collect();
        assert_eq!(gone, vec![1, 3]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn remove_where_and_drain() {
        let now = Instant::now();
        let mut q = q(10);
        for i in 0..4 {
            q.push(i, now).unwrap();
        }
        assert_eq!(q.remove_where(|t| *t == 2).unwrap().task, 2);
        assert!(q.remove_where(|t| *t == 9).is_none());
        let rest: Vec<u32> = q.drain().into_iter().map(|t| t.task).collect();
        assert_eq!(rest, vec![0, 1, 3]);
        assert!(q.is_empty());
    }
}
