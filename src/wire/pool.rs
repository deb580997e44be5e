//! Receive buffers kept for the next large message.
//!
//! Reassembling a 100 MiB message into freshly allocated memory costs more in
//! page faults (the kernel maps and zeroes 25,600 pages, and unmaps them when
//! the message is dropped) than in copying the bytes. A [`BufferPool`] keeps
//! the buffers of the last few reassembled messages; once every slice of such
//! a message has been dropped, the next message is written into the same,
//! already mapped, memory. A buffer whose message is still alive is left
//! alone (it costs nothing extra: the memory is the message's), and a new
//! one is allocated instead.
//!
//! The price is memory kept while idle: up to `max_buffers` times the largest
//! message. A pool of size 0 keeps nothing. Clones share the same buffers, so
//! one pool can serve every stream of a node or of a researcher.
//!
//! ```
//! use bytes::Bytes;
//! use fedroute::wire::{chunks_of, BufferPool, Reassembler};
//!
//! let pool = BufferPool::new(1);
//! let mut r = Reassembler::default().with_pool(pool.clone());
//! let mut first = None;
//! for f in chunks_of(Bytes::from(vec![1u8; 1000]), 100) {
//!     first = r.push(f.size, f.iteration, f.bytes).unwrap();
//! }
//! let first = first.unwrap();
//! let at = first.as_ptr();
//! drop(first);
//! let mut second = None;
//! for f in chunks_of(Bytes::from(vec![2u8; 1000]), 100) {
//!     second = r.push(f.size, f.iteration, f.bytes).unwrap();
//! }
//! // The second message reused the first one's memory.
//! assert_eq!(second.unwrap().as_ptr(), at);
//! ```

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;

/// A bounded set of reusable receive buffers; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct BufferPool {
    inner: Arc<Mutex<Vec<BytesMut>>>,
    max_buffers: usize,
}

impl BufferPool {
    /// A pool keeping at most `max_buffers` buffers (0: keeps none).
    pub fn new(max_buffers: usize) -> BufferPool {
        BufferPool {
            inner: Arc::default(),
            max_buffers,
        }
    }

    /// The most buffers this pool keeps.
    pub fn max_buffers(&self) -> usize {
        self.max_buffers
    }

    /// An empty buffer with room for at least `capacity` bytes: a kept one
    /// whose previous message is gone and that is large enough (no
    /// allocation), or else a new one.
    pub fn take(&self, capacity: usize) -> BytesMut {
        let mut spares = self.lock();
        let free = spares.iter_mut().position(|b| {
            b.clear();
            b.try_reclaim(capacity)
        });
        match free {
            Some(i) => spares.swap_remove(i),
            None => BytesMut::with_capacity(capacity),
        }
    }

    /// Hands back the buffer a message was split from, to be reused once the
    /// message is dropped. When the pool is full the oldest buffer goes.
    pub fn put(&self, buf: BytesMut) {
        if self.max_buffers == 0 {
            return;
        }
        let mut spares = self.lock();
        if spares.len() >= self.max_buffers {
            spares.remove(0);
        }
        spares.push(buf);
    }

    /// The number of buffers kept now.
    pub fn kept(&self) -> usize {
        self.lock().len()
    }

    /// Drops every kept buffer (the memory of messages already dropped is
    /// returned to the system).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, Vec<BytesMut>> {
        // The list stays consistent whatever a panicking holder did.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_reused_only_after_its_message_is_dropped() {
        let pool = BufferPool::new(1);
        let mut buf = pool.take(1000);
        buf.extend_from_slice(&[1u8; 1000]);
        let message = buf.split().freeze();
        pool.put(buf);
        assert_eq!(pool.kept(), 1);

        // Still alive: a new buffer, the kept one stays.
        let other = pool.take(1000);
        assert_ne!(other.as_ptr(), message.as_ptr());
        assert_eq!(pool.kept(), 1);

        let at = message.as_ptr();
        drop(message);
        let again = pool.take(1000);
        assert_eq!(again.as_ptr(), at);
        assert!(again.capacity() >= 1000);
        assert_eq!(pool.kept(), 0);
    }

    #[test]
    fn a_kept_buffer_too_small_is_not_used() {
        let pool = BufferPool::new(1);
        pool.put(BytesMut::with_capacity(10));
        let b = pool.take(1 << 20);
        assert!(b.capacity() >= 1 << 20);
        assert_eq!(pool.kept(), 1);
    }

    #[test]
    fn the_pool_is_bounded_and_a_zero_pool_keeps_nothing() {
        let pool = BufferPool::new(2);
        for _ in 0..5 {
            pool.put(BytesMut::with_capacity(16));
        }
        assert_eq!(pool.kept(), 2);
        pool.clear();
        assert_eq!(pool.kept(), 0);

        let none = BufferPool::new(0);
        none.put(BytesMut::with_capacity(16));
        assert_eq!(none.kept(), 0);
    }
}
