//! Receive buffers kept for the next large message.
//!
//! Reassembling a 100 MiB message into freshly allocated memory costs more in
//! page faults (the kernel maps and zeroes 25,600 pages, and unmaps them when
//! the message is dropped) than in copying the bytes. A [`BufferPool`] keeps
//! the buffers of the last reassembled messages; once every slice of such a
//! message has been dropped, the next message is written into the same,
//! already mapped, memory. A buffer whose message is still alive is left
//! alone (it costs nothing extra: the memory is the message's), and a new
//! one is allocated instead.
//!
//! The price is memory kept while idle, bounded by the pool's byte limit
//! (counted in buffer capacities, so an upper bound); a buffer larger than
//! the limit is not kept at all, and the oldest buffers make room for newer
//! ones. A pool with a limit of 0 keeps nothing. Clones share the same
//! buffers, so one pool can serve every stream of a node link or of a
//! researcher.
//!
//! ```
//! use bytes::Bytes;
//! use fedroute::wire::{BufferPool, Frame, Reassembler};
//!
//! let pool = BufferPool::new(1 << 20);
//! let mut r = Reassembler::default().with_pool(pool.clone());
//! let mut first = None;
//! for f in Frame::split_by(Bytes::from(vec![1u8; 1000]), 100) {
//!     first = r.push(f.size, f.iteration, f.bytes).unwrap();
//! }
//! let first = first.unwrap();
//! let at = first.as_ptr();
//! drop(first);
//! let mut second = None;
//! for f in Frame::split_by(Bytes::from(vec![2u8; 1000]), 100) {
//!     second = r.push(f.size, f.iteration, f.bytes).unwrap();
//! }
//! // The second message reused the first one's memory.
//! assert_eq!(second.unwrap().as_ptr(), at);
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;

/// A bounded set of reusable receive buffers; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct BufferPool {
    state: Arc<Mutex<State>>,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Kept buffers with their capacity, oldest first.
    spares: VecDeque<(BytesMut, usize)>,
    /// Sum of the kept capacities.
    bytes: usize,
}

impl BufferPool {
    /// A pool keeping buffers of at most `max_bytes` of capacity in all
    /// (0: keeps none).
    pub fn new(max_bytes: usize) -> BufferPool {
        BufferPool {
            state: Arc::default(),
            max_bytes,
        }
    }

    /// The most bytes of buffer capacity this pool keeps.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The number of buffers kept now.
    pub fn kept(&self) -> usize {
        self.lock().spares.len()
    }

    /// The capacity kept now, in bytes.
    pub fn kept_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Drops every kept buffer (the memory of messages already dropped is
    /// returned to the system).
    pub fn clear(&self) {
        let mut state = self.lock();
        state.spares.clear();
        state.bytes = 0;
    }

    /// A kept buffer with room for at least `capacity` bytes whose previous
    /// message is gone (no allocation), if there is one.
    pub(crate) fn take_fitting(&self, capacity: usize) -> Option<BytesMut> {
        let mut state = self.lock();
        let free = state.spares.iter_mut().position(|(b, _)| {
            b.clear();
            b.try_reclaim(capacity)
        })?;
        let (buf, size) = state.spares.remove(free)?;
        state.bytes -= size;
        Some(buf)
    }

    /// Hands back `buf`, the rest of a buffer of `capacity` bytes a message
    /// was split from, to be reused once the message is dropped.
    pub(crate) fn put(&self, buf: BytesMut, capacity: usize) {
        if capacity > self.max_bytes {
            return;
        }
        let mut state = self.lock();
        while state.bytes + capacity > self.max_bytes {
            match state.spares.pop_front() {
                Some((_, size)) => state.bytes -= size,
                None => break,
            }
        }
        state.spares.push_back((buf, capacity));
        state.bytes += capacity;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The list stays consistent whatever a panicking holder did.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills a buffer from `pool` like a reassembly and splits the message off.
    fn message(pool: &BufferPool, len: usize) -> bytes::Bytes {
        let mut buf = pool
            .take_fitting(len)
            .unwrap_or_else(|| BytesMut::with_capacity(len));
        buf.extend_from_slice(&vec![1u8; len]);
        let capacity = buf.capacity();
        let message = buf.split().freeze();
        pool.put(buf, capacity);
        message
    }

    #[test]
    fn a_buffer_is_reused_only_after_its_message_is_dropped() {
        let pool = BufferPool::new(1 << 20);
        let first = message(&pool, 1000);
        assert_eq!(pool.kept(), 1);

        // Still alive: nothing to take, the kept one stays.
        assert!(pool.take_fitting(1000).is_none());
        assert_eq!(pool.kept(), 1);

        let at = first.as_ptr();
        drop(first);
        let again = pool.take_fitting(1000).unwrap();
        assert_eq!(again.as_ptr(), at);
        assert!(again.capacity() >= 1000);
        assert_eq!((pool.kept(), pool.kept_bytes()), (0, 0));
    }

    #[test]
    fn a_kept_buffer_too_small_is_not_used() {
        let pool = BufferPool::new(1 << 20);
        drop(message(&pool, 10));
        assert!(pool.take_fitting(1 << 16).is_none());
        assert_eq!(pool.kept(), 1);
    }

    #[test]
    fn the_pool_keeps_at_most_its_limit_newest_first() {
        let pool = BufferPool::new(2500);
        let kept: Vec<_> = (0..5).map(|_| message(&pool, 1000)).collect();
        assert_eq!((pool.kept(), pool.kept_bytes()), (2, 2000));
        // The two newest stay.
        drop(kept);
        let a = pool.take_fitting(1000).unwrap();
        let b = pool.take_fitting(1000).unwrap();
        assert_eq!(pool.kept(), 0);
        assert_ne!(a.as_ptr(), b.as_ptr());

        // Larger than the limit: not kept at all.
        drop(message(&pool, 3000));
        assert_eq!(pool.kept(), 0);

        message(&pool, 100);
        pool.clear();
        assert_eq!((pool.kept(), pool.kept_bytes()), (0, 0));

        let none = BufferPool::new(0);
        drop(message(&none, 16));
        assert_eq!(none.kept(), 0);
    }
}
