//! [`LinkShared`]: the state of one link that its actor, its poll and send
//! futures and the controller all read: the outgoing queue, the status, and
//! the wake-ups between them. Queueing a reply is a push under a short lock
//! plus a wake-up, with no mailbox round trip.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::Either;
use tokio::sync::{oneshot, Notify};

use super::config::ControllerConfig;
use super::error::NodeError;
use super::outbox::{Outbox, Outgoing};
use super::status::{LinkState, LinkStatus, PollMode};
use crate::store::{DeliveryStore, Item};
use crate::wire::Payload;

/// Locks a mutex even if a panicking thread poisoned it (the data are plain
/// counters and a queue, always left consistent).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// State of a link shared between its actor, its futures and the controller.
/// Lives as long as the link, across supervisor restarts.
#[derive(Debug)]
pub(super) struct LinkShared {
    endpoint: String,
    outbox: Mutex<Outbox<Outgoing>>,
    status: Mutex<LinkStatus>,
    /// Woken when something is queued.
    pub(crate) wake: Notify,
    /// Woken when the pump found the queue empty, or the link failed.
    pub(crate) drained: Notify,
    /// A poll opened since the last (re)connection (resets the backoff;
    /// in streaming mode, replies wait for it, see [`LinkShared::poll_settled`]).
    pub(crate) polled: AtomicBool,
    /// Woken when a poll opened, the poll mode fell back to unary, or the
    /// link started draining.
    pub(crate) poll_news: Notify,
    /// The link is draining or closed: no poll will open any more.
    pub(crate) draining: AtomicBool,
    /// Consecutive rejections of the queue's first message.
    pub(crate) rejections: AtomicU32,
    /// Send one message per RPC until a send succeeds (after a rejection).
    pub(crate) isolate: AtomicBool,
    /// Most feedback items queued at once.
    max_feedback: usize,
    /// Where messages are kept until acknowledged (a state directory).
    store: Option<DeliveryStore>,
}

impl LinkShared {
    /// Fresh state for `endpoint`, with the queue bounds of `config`;
    /// messages are kept in `store` until acknowledged.
    pub(super) fn new(
        endpoint: String,
        config: &ControllerConfig,
        store: Option<DeliveryStore>,
    ) -> LinkShared {
        let (queue_capacity, queue_max_bytes, poll_mode) = (
            config.queues.capacity,
            config.queues.max_bytes,
            config.polling.mode,
        );
        LinkShared {
            outbox: Mutex::new(
                Outbox::new(queue_capacity, queue_max_bytes, Outgoing::len)
                    .with_mark(Outgoing::is_feedback),
            ),
            status: Mutex::new(LinkStatus::new(endpoint.clone(), poll_mode)),
            endpoint,
            wake: Notify::new(),
            drained: Notify::new(),
            polled: AtomicBool::new(false),
            poll_news: Notify::new(),
            draining: AtomicBool::new(false),
            rejections: AtomicU32::new(0),
            isolate: AtomicBool::new(false),
            max_feedback: config.queues.max_feedback,
            store,
        }
    }

    /// Queues again, before anything new, the messages the delivery store
    /// kept for this link (accepted before a restart, not acknowledged).
    pub(super) fn restore(&self, items: Vec<Item>) {
        let mut outbox = self.outbox();
        for item in items {
            outbox.push_unbounded(Outgoing::Message(item.payload, Some(item.seq)));
        }
    }

    /// Removes the first `n` queued items (acknowledged, or given up), from
    /// the delivery store too.
    pub(crate) fn remove_front(&self, n: usize) {
        let items = self.outbox().pop(n);
        self.forget_stored(&items);
    }

    /// Removes `items` from the delivery store (they were taken out of the
    /// queue for good).
    pub(super) fn forget_stored(&self, items: &[Outgoing]) {
        if let Some(store) = &self.store {
            for item in items {
                if let Outgoing::Message(_, Some(seq)) = item {
                    store.remove(&self.endpoint, *seq);
                }
            }
        }
    }

    /// Queues a message (a reply, with the request id it answers): at once
    /// without a delivery store; with one, once it is on disk, and its
    /// request id is then recorded as answered (so a restarted node drops
    /// the task if it comes again). Errors as [`LinkShared::enqueue`], and
    /// [`NodeError::NotStored`].
    /// `Either::Left` when the outcome is known at once (no store, or
    /// refused before any disk work), so that callers answer without a
    /// task.
    pub(super) fn enqueue_message(
        self: &Arc<Self>,
        payload: Payload,
        request_id: Option<String>,
    ) -> Either<
        std::future::Ready<Result<(), NodeError>>,
        impl Future<Output = Result<(), NodeError>> + 'static,
    > {
        let Some(store) = &self.store else {
            let queued = self.enqueue(Outgoing::Message(payload, None));
            return Either::Left(std::future::ready(queued));
        };
        if let Err(e) = self.check_open().and_then(|()| self.reserve(payload.len())) {
            return Either::Left(std::future::ready(Err(e)));
        }
        let (tx, rx) = oneshot::channel();
        let item = Item {
            group: self.endpoint.clone(),
            seq: store.next_seq(),
            request_id,
            deadline_ms: 0,
            tag: 0,
            payload,
        };
        let (seq, n) = (item.seq, item.payload.len());
        let kept = item.payload.clone();
        let shared = Arc::clone(self);
        let done = move |stored: Result<(), crate::StoreError>| {
            let queued = match stored {
                Ok(()) => shared.stored(kept, seq),
                Err(source) => {
                    shared.outbox().unreserve(n);
                    Err(NodeError::NotStored {
                        endpoint: shared.endpoint.clone(),
                        source,
                    })
                }
            };
            let _ = tx.send(queued);
        };
        store.put(item, true, Box::new(done));
        Either::Right(async move { rx.await.unwrap_or(Err(NodeError::ShutDown)) })
    }

    /// A message is on disk: queue it in its reserved place, unless the link
    /// was closed meanwhile (then it is not accepted after all).
    fn stored(&self, payload: Payload, seq: u64) -> Result<(), NodeError> {
        let n = payload.len();
        let item = Outgoing::Message(payload, Some(seq));
        if let Err(e) = self.check_open() {
            self.outbox().unreserve(n);
            self.forget_stored(std::slice::from_ref(&item));
            return Err(e);
        }
        self.outbox().push_reserved(item);
        self.wake.notify_one();
        Ok(())
    }

    fn reserve(&self, n: usize) -> Result<(), NodeError> {
        let mut outbox = self.outbox();
        if outbox.reserve(n) {
            return Ok(());
        }
        Err(NodeError::QueueFull {
            endpoint: self.endpoint.clone(),
            capacity: outbox.capacity(),
            max_bytes: outbox.max_bytes(),
        })
    }

    /// An error when the link is closed or failed for good.
    fn check_open(&self) -> Result<(), NodeError> {
        let status = self.status();
        match &status.state {
            LinkState::Failed(reason) => Err(NodeError::LinkFailed {
                endpoint: self.endpoint.clone(),
                reason: reason.clone(),
            }),
            LinkState::Closed => Err(NodeError::LinkClosed {
                endpoint: self.endpoint.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// True when this link keeps its messages in a delivery store.
    pub(super) fn is_durable(&self) -> bool {
        self.store.is_some()
    }

    /// Resolves once replies may go on this connection: at once in unary
    /// poll mode; in streaming mode once the researcher has accepted this
    /// connection's poll. A restarted fedroute researcher knows a node only
    /// from its poll and refuses its replies before that (NOT_FOUND, then a
    /// back-off of tens of milliseconds); it accepts the poll before
    /// answering it, so a reply sent after the answer is never refused for
    /// that. (In unary mode the answer may only come with a task, so replies
    /// do not wait.)
    pub(crate) async fn poll_settled(&self) {
        loop {
            let news = self.poll_news.notified();
            tokio::pin!(news);
            news.as_mut().enable();
            if self.polled.load(Ordering::Relaxed)
                || self.draining.load(Ordering::Relaxed)
                || self.status().poll_mode == PollMode::Unary
            {
                return;
            }
            news.await;
        }
    }

    /// Marks the link as draining (no more polls) and wakes a pump waiting
    /// in [`LinkShared::poll_settled`].
    pub(super) fn stop_polling(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.poll_news.notify_waiters();
    }

    /// The outgoing queue (short lock, never held across an await).
    pub(crate) fn outbox(&self) -> MutexGuard<'_, Outbox<Outgoing>> {
        lock(&self.outbox)
    }

    /// The status (short lock, never held across an await).
    pub(crate) fn status(&self) -> MutexGuard<'_, LinkStatus> {
        lock(&self.status)
    }

    /// A snapshot of the status with the current queue depth.
    pub(super) fn snapshot(&self) -> LinkStatus {
        let depth = self.outbox().len();
        let mut s = self.status().clone();
        s.queue_depth = depth;
        s.store = self.store.as_ref().map(DeliveryStore::stats);
        s
    }

    /// The researcher id of this link, once known.
    pub(super) fn researcher_id(&self) -> Option<String> {
        self.status().researcher_id.clone()
    }

    /// Queues `item` for sending: an error if the link is closed or failed for
    /// good, or if the queue is full.
    pub(super) fn enqueue(&self, item: Outgoing) -> Result<(), NodeError> {
        self.check_open()?;
        let mut outbox = self.outbox();
        if item.is_feedback() && outbox.marked() >= self.max_feedback {
            return Err(NodeError::FeedbackQueueFull {
                endpoint: self.endpoint.clone(),
                limit: self.max_feedback,
            });
        }
        let (capacity, max_bytes) = (outbox.capacity(), outbox.max_bytes());
        outbox.push(item).map_err(|_| NodeError::QueueFull {
            endpoint: self.endpoint.clone(),
            capacity,
            max_bytes,
        })?;
        drop(outbox);
        self.wake.notify_one();
        Ok(())
    }

    /// True when nothing waits to be sent or the link will never send again.
    pub(super) fn done_sending(&self) -> bool {
        self.outbox().is_empty() || self.status().is_terminal()
    }
}
