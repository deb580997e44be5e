//! [`ReceiveBudget`]: one bound, per process, on the bytes held by messages
//! still being received.
//!
//! Each stream that reassembles a message of several frames holds what it
//! received so far. A peer that starts many large messages and never
//! finishes them would make the process hold all of it; so every
//! [`super::Reassembler`] of a researcher (all nodes, all streams) or of a
//! node's controller (all researcher links) takes its buffers' growth from
//! one shared budget, before the memory is reserved. A stream whose next
//! growth does not fit waits for room ([`ReceiveBudget::room_for`]) without
//! reading on, which holds its sender back through HTTP/2 flow control, at
//! most for the stall timeout; then it is refused
//! ([`WireError::BudgetExhausted`]: the researcher answers
//! RESOURCE_EXHAUSTED and a fedroute node sends the reply again after a
//! back-off; the node drops the connection and the researcher sends the
//! task again). Meanwhile the other streams go on, and small messages are
//! not held up: a one-frame message does not take from the budget on the
//! node, and on the researcher only what a call holds beyond 64 KiB counts.
//! The bytes come back when the message has been decoded and handed on, or
//! when its stream fails.
//!

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use super::error::WireError;
use crate::config::ReceiveLimits;

/// A byte budget shared by every clone; see the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct ReceiveBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: usize,
    used: AtomicUsize,
    /// Woken whenever bytes are given back.
    freed: Notify,
    /// Receivers waiting for room now.
    waiting: AtomicUsize,
}

/// Receivers that may wait for room at the same time; further ones are
/// refused at once, so that a flood of streams cannot keep many waiting
/// (each holds some memory outside the budget, in its HTTP/2 and gRPC
/// buffers).
pub(crate) const MAX_WAITING: usize = 32;

impl Default for ReceiveBudget {
    /// A budget of [`ReceiveLimits::DEFAULT_BUDGET_BYTES`].
    fn default() -> ReceiveBudget {
        ReceiveBudget::new(ReceiveLimits::DEFAULT_BUDGET_BYTES)
    }
}

impl ReceiveBudget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: usize) -> ReceiveBudget {
        ReceiveBudget {
            inner: Arc::new(Inner {
                limit,
                used: AtomicUsize::new(0),
                freed: Notify::new(),
                waiting: AtomicUsize::new(0),
            }),
        }
    }

    /// The budget in bytes.
    pub(crate) fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes held right now.
    pub(crate) fn in_use(&self) -> usize {
        self.inner.used.load(Ordering::Acquire)
    }

    /// An empty hold on this budget, to grow as data arrives.
    pub(crate) fn hold(&self) -> Hold {
        Hold {
            budget: self.clone(),
            bytes: 0,
        }
    }

    fn take(&self, n: usize) -> Result<(), WireError> {
        let limit = self.inner.limit;
        self.inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= limit)
            })
            .map(|_| ())
            .map_err(|in_use| WireError::BudgetExhausted {
                requested: n,
                claimed: n,
                in_use,
                limit,
            })
    }

    /// A place among those waiting for room, unless [`MAX_WAITING`]
    /// receivers wait already (then `None`: refuse now).
    pub(crate) fn wait_place(&self) -> Option<WaitPlace> {
        self.inner
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w < MAX_WAITING).then_some(w + 1)
            })
            .ok()?;
        Some(WaitPlace(self.clone()))
    }

    /// Resolves once `n` bytes could be taken (they are not taken): for a
    /// receiver that was refused, to try again when others gave some back.
    pub(crate) async fn room_for(&self, n: usize) {
        loop {
            let freed = self.inner.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.in_use().saturating_add(n) <= self.inner.limit {
                return;
            }
            freed.await;
        }
    }

    fn give_back(&self, n: usize) {
        self.inner.used.fetch_sub(n, Ordering::AcqRel);
        self.inner.freed.notify_waiters();
    }
}

/// One of the [`MAX_WAITING`] places to wait for room; given back when
/// dropped.
#[derive(Debug)]
pub(crate) struct WaitPlace(ReceiveBudget);

impl WaitPlace {
    /// Resolves once `n` bytes could be taken ([`ReceiveBudget::room_for`]).
    pub(crate) fn room_for(
        &self,
        n: usize,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let budget = self.0.clone();
        async move { budget.room_for(n).await }
    }
}

impl Drop for WaitPlace {
    fn drop(&mut self) {
        self.0.inner.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Bytes taken from a [`ReceiveBudget`]; given back when dropped.
#[derive(Debug)]
pub(crate) struct Hold {
    budget: ReceiveBudget,
    bytes: usize,
}

impl Hold {
    /// Takes `n` more bytes; on refusal the hold keeps what it had.
    pub(crate) fn grow(&mut self, n: usize) -> Result<(), WireError> {
        self.budget.take(n)?;
        self.bytes += n;
        Ok(())
    }

    /// Gives back `n` of the bytes held (at most all of them).
    pub(crate) fn release(&mut self, n: usize) {
        let n = n.min(self.bytes);
        if n > 0 {
            self.bytes -= n;
            self.budget.give_back(n);
        }
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.give_back(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the module's documentation says, as it was once its example.
    #[test]
    fn the_documented_behaviour_holds() {
        use crate::wire::ReceiveBudget;
        let budget = ReceiveBudget::new(1000);
        let mut a = budget.hold();
        a.grow(600).unwrap();
        let mut b = budget.hold();
        assert!(b.grow(600).is_err());
        drop(a);
        b.grow(600).unwrap();
        assert_eq!(budget.in_use(), 600);
    }

    #[tokio::test]
    async fn a_refused_receiver_learns_when_there_is_room_again() {
        let budget = ReceiveBudget::new(10);
        let mut held = budget.hold();
        held.grow(8).unwrap();
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.room_for(5).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(held);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        // Room already: at once.
        budget.room_for(10).await;
    }

    #[tokio::test]
    async fn only_so_many_receivers_wait() {
        let budget = ReceiveBudget::new(10);
        let mut held = budget.hold();
        held.grow(10).unwrap();
        let places: Vec<_> = (0..MAX_WAITING)
            .map(|_| budget.wait_place().expect("a place to wait"))
            .collect();
        assert!(budget.wait_place().is_none());
        drop(places);
        let place = budget.wait_place().unwrap();
        drop(held);
        place.room_for(10).await;
    }

    #[test]
    fn holds_share_the_budget_and_give_it_back() {
        let budget = ReceiveBudget::new(100);
        let mut a = budget.hold();
        a.grow(60).unwrap();
        a.grow(40).unwrap();
        let mut b = budget.clone().hold();
        let e = b.grow(1).unwrap_err();
        assert!(matches!(
            e,
            WireError::BudgetExhausted {
                requested: 1,
                claimed: 1,
                in_use: 100,
                limit: 100
            }
        ));
        assert_eq!(b.bytes(), 0);
        drop(a);
        assert_eq!(budget.in_use(), 0);
        b.grow(100).unwrap();
        assert!(b.grow(usize::MAX).is_err());
        assert_eq!(budget.in_use(), 100);
    }
}
