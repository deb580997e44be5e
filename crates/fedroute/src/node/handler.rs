//! [`HandlerSlot`]: the application's handler, shared by the controller and
//! its links so that [`SetHandler`](super::SetHandler) reaches a link in
//! the middle of a poll, and a link holding a task for a stopped handler
//! waits for the next one instead of losing the task.

use std::sync::Arc;

use actix::prelude::*;

use super::messages::TaskReceived;

/// The handler tasks go to, shared by a controller and its links, so that
/// [`SetHandler`](super::SetHandler) reaches links in the middle of a poll.
pub(super) struct HandlerSlot {
    handler: std::sync::Mutex<Recipient<TaskReceived>>,
    changed: tokio::sync::Notify,
    /// Bumped by every [`SetHandler`](super::SetHandler), so that links can keep a copy of the
    /// handler and check it with one atomic load per task.
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for HandlerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerSlot").finish_non_exhaustive()
    }
}

impl HandlerSlot {
    pub(super) fn new(handler: Recipient<TaskReceived>) -> Arc<HandlerSlot> {
        Arc::new(HandlerSlot {
            handler: std::sync::Mutex::new(handler),
            changed: tokio::sync::Notify::new(),
            generation: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub(super) fn set(&self, handler: Recipient<TaskReceived>) {
        *self.handler.lock().unwrap_or_else(|p| p.into_inner()) = handler;
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        self.changed.notify_waiters();
    }

    /// The number of [`SetHandler`](super::SetHandler)s so far.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The current handler and its generation, open or not.
    pub(super) fn current(&self) -> (u64, Recipient<TaskReceived>) {
        let handler = self.handler.lock().unwrap_or_else(|p| p.into_inner());
        (self.generation(), handler.clone())
    }

    /// The current handler and its generation, if its mailbox is open.
    pub(super) fn open(&self) -> Option<(u64, Recipient<TaskReceived>)> {
        let current = self.current();
        current.1.connected().then_some(current)
    }

    /// Resolves with a handler whose mailbox is open, waiting for
    /// [`SetHandler`](super::SetHandler) as long as it takes.
    pub(super) async fn wait_open(&self) -> (u64, Recipient<TaskReceived>) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(open) = self.open() {
                return open;
            }
            changed.await;
        }
    }
}
