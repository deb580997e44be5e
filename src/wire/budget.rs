//! [`ReceiveBudget`]: one bound, per process, on the bytes held by messages
//! still being received.
//!
//! Each stream that reassembles a message of several frames holds what it
//! received so far. A peer that starts many large messages and never
//! finishes them would make the process hold all of it; so every
//! [`super::Reassembler`] of a researcher (all nodes, all streams) or of a
//! node's controller (all researcher links) takes its buffers' growth from
//! one shared budget, before the memory is reserved. A stream whose next
//! growth does not fit is refused ([`WireError::BudgetExhausted`]: the
//! researcher answers RESOURCE_EXHAUSTED, the node drops the poll and
//! polls again after a back-off) while the others go on, and messages of a
//! single frame (every small message) never touch the budget. The bytes
//! come back when the message has been decoded and handed on, or when its
//! stream fails.
//!
//! ```
//! use fedroute::wire::ReceiveBudget;
//!
//! let budget = ReceiveBudget::new(1000);
//! let mut a = budget.hold();
//! a.grow(600).unwrap();
//! let mut b = budget.hold();
//! assert!(b.grow(600).is_err());
//! drop(a);
//! b.grow(600).unwrap();
//! assert_eq!(budget.in_use(), 600);
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use super::error::WireError;

/// Default receive budget of a researcher or a node (2 GiB): one message of
/// the default maximum size, or ten 100 MiB models arriving at once, a
/// hundred of 16 MiB.
pub const DEFAULT_RECEIVE_BUDGET_BYTES: usize = 2 << 30;

/// A byte budget shared by every clone; see the module documentation.
#[derive(Clone, Debug)]
pub struct ReceiveBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: usize,
    used: AtomicUsize,
    /// Woken whenever bytes are given back.
    freed: Notify,
}

impl Default for ReceiveBudget {
    /// A budget of [`DEFAULT_RECEIVE_BUDGET_BYTES`].
    fn default() -> ReceiveBudget {
        ReceiveBudget::new(DEFAULT_RECEIVE_BUDGET_BYTES)
    }
}

impl ReceiveBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> ReceiveBudget {
        ReceiveBudget {
            inner: Arc::new(Inner {
                limit,
                used: AtomicUsize::new(0),
                freed: Notify::new(),
            }),
        }
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes held right now.
    pub fn in_use(&self) -> usize {
        self.inner.used.load(Ordering::Acquire)
    }

    /// An empty hold on this budget, to grow as data arrives.
    pub fn hold(&self) -> Hold {
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

    /// Resolves once `n` bytes could be taken (they are not taken): for a
    /// receiver that was refused, to try again when others gave some back.
    pub async fn room_for(&self, n: usize) {
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

/// Bytes taken from a [`ReceiveBudget`]; given back when dropped.
#[derive(Debug)]
pub struct Hold {
    budget: ReceiveBudget,
    bytes: usize,
}

impl Hold {
    /// Takes `n` more bytes; on refusal the hold keeps what it had.
    pub fn grow(&mut self, n: usize) -> Result<(), WireError> {
        self.budget.take(n)?;
        self.bytes += n;
        Ok(())
    }

    /// Gives back `n` of the bytes held (at most all of them).
    pub fn release(&mut self, n: usize) {
        let n = n.min(self.bytes);
        if n > 0 {
            self.bytes -= n;
            self.budget.give_back(n);
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
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
