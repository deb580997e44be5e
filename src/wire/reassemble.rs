//! Reassembling a chunked message from its frames.
//!
//! Unlike Fed-BioMed's receivers, every frame is checked: `size` at least 1
//! and constant within a message, `iteration` exactly the next one, and the
//! total below a limit. A one-frame message is handed on as the frame's own
//! buffer (no copy). For a longer message the first frame fixes an upper bound
//! (`size` × first frame length, since senders cut equal slices) that is
//! checked against the limit. Up to [`INITIAL_RESERVE_CAP`] of it is reserved
//! at once; a longer message reserves the rest of its bound when its data
//! actually reaches the cap (one `realloc`, which Linux serves with `mremap`
//! for buffers that large, without copying), so a hostile first frame that
//! claims gigabytes reserves no more than the cap. Every frame is copied into
//! the buffer exactly once.
//!
//! With a [`BufferPool`] ([`Reassembler::with_pool`]) the buffers of
//! finished messages are kept and the next message is written into the same
//! allocation once every slice of the previous one has been dropped: no fresh
//! allocation and page faults per large message, at the price of keeping
//! those buffers (up to the pool's limit) while idle.
//!
//! ```
//! use bytes::Bytes;
//! use fedroute::wire::{chunks_of, Reassembler};
//!
//! let payload = Bytes::from_static(b"a message cut in 4-byte frames");
//! let mut r = Reassembler::default();
//! let mut out = None;
//! for f in chunks_of(payload.clone(), 4) {
//!     out = r.push(f.size, f.iteration, f.bytes).unwrap();
//! }
//! assert_eq!(out, Some(payload));
//! ```

use bytes::{Bytes, BytesMut};

use super::error::WireError;
use super::pool::BufferPool;

/// Default limit on a reassembled message (2 GiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 2 << 30;

/// The most a message reserves before its data arrives (64 MiB): a claim of
/// more (frame count × first frame length) is reserved in full only once the
/// received data reaches this much.
pub const INITIAL_RESERVE_CAP: usize = 64 << 20;

/// Checks and joins the frames of consecutive messages on one stream.
#[derive(Debug)]
pub struct Reassembler {
    max_message_bytes: usize,
    current: Option<InProgress>,
    /// Where finished messages' buffers go for reuse, if anywhere.
    pool: Option<BufferPool>,
}

#[derive(Debug)]
struct InProgress {
    size: i32,
    received: i32,
    /// Upper bound of the message length (size × first frame length).
    bound: usize,
    buf: BytesMut,
}

impl Default for Reassembler {
    fn default() -> Self {
        Reassembler::new(DEFAULT_MAX_MESSAGE_BYTES)
    }
}

impl Reassembler {
    /// A reassembler refusing messages above `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Reassembler {
        Reassembler {
            max_message_bytes,
            current: None,
            pool: None,
        }
    }

    /// Takes message buffers from `pool` and gives them back to it when a
    /// message is complete, to receive later messages into the same memory
    /// (off by default; see [`BufferPool`]).
    pub fn with_pool(mut self, pool: BufferPool) -> Reassembler {
        self.pool = (pool.max_bytes() > 0).then_some(pool);
        self
    }

    /// Whether a message has started and not finished.
    pub fn in_progress(&self) -> bool {
        self.current.is_some()
    }

    /// Takes one frame. Returns the payload when this was its last frame.
    /// On any error the partial message is dropped and the reassembler is
    /// ready for a new message.
    pub fn push(
        &mut self,
        size: i32,
        iteration: i32,
        bytes: Bytes,
    ) -> Result<Option<Bytes>, WireError> {
        let r = self.push_inner(size, iteration, bytes);
        if r.is_err() {
            self.current = None;
        }
        r
    }

    /// Call when the frame stream ends: an error if a message is incomplete.
    /// The reassembler is reset either way.
    pub fn finish(&mut self) -> Result<(), WireError> {
        match self.current.take() {
            None => Ok(()),
            Some(p) => Err(WireError::StreamEndedMidMessage {
                received: p.received,
                size: p.size,
            }),
        }
    }

    fn too_large(&self, claimed: u64, size: i32) -> Result<(), WireError> {
        if claimed > self.max_message_bytes as u64 {
            return Err(WireError::MessageTooLarge {
                claimed,
                size,
                limit: self.max_message_bytes,
            });
        }
        Ok(())
    }

    fn push_inner(
        &mut self,
        size: i32,
        iteration: i32,
        bytes: Bytes,
    ) -> Result<Option<Bytes>, WireError> {
        if size < 1 {
            return Err(WireError::SizeNotPositive { size, iteration });
        }
        if iteration < 1 || iteration > size {
            return Err(WireError::IterationOutOfRange { iteration, size });
        }
        let Some(cur) = self.current.as_mut() else {
            // First frame of a new message.
            if iteration != 1 {
                return Err(WireError::FrameOutOfOrder {
                    iteration,
                    size,
                    expected: 1,
                });
            }
            let len = bytes.len() as u64;
            if size == 1 {
                self.too_large(len, size)?;
                return Ok(Some(bytes));
            }
            let bound = len.saturating_mul(size as u64);
            self.too_large(bound, size)?;
            // bound <= max_message_bytes, a usize: the cast cannot truncate.
            let bound = bound as usize;
            let initial = bound.min(INITIAL_RESERVE_CAP.max(bytes.len()));
            let mut buf = match &self.pool {
                Some(pool) => pool.take(initial),
                None => BytesMut::with_capacity(initial),
            };
            buf.extend_from_slice(&bytes);
            self.current = Some(InProgress {
                size,
                received: 1,
                bound,
                buf,
            });
            return Ok(None);
        };
        let expected = cur.received + 1;
        if size != cur.size {
            if iteration == 1 {
                return Err(WireError::MessageIncomplete {
                    size,
                    received: cur.received,
                    previous_size: cur.size,
                });
            }
            return Err(WireError::SizeChanged {
                size,
                expected: cur.size,
                iteration,
            });
        }
        if iteration != expected {
            return Err(if iteration == cur.received {
                WireError::RepeatedFrame {
                    iteration,
                    size,
                    expected,
                }
            } else if iteration == 1 {
                WireError::MessageIncomplete {
                    size,
                    received: cur.received,
                    previous_size: cur.size,
                }
            } else if iteration < expected {
                WireError::FrameOutOfOrder {
                    iteration,
                    size,
                    expected,
                }
            } else {
                WireError::FramesMissing {
                    iteration,
                    size,
                    expected,
                }
            });
        }
        let total = (cur.buf.len() + bytes.len()) as u64;
        if total > self.max_message_bytes as u64 {
            return Err(WireError::MessageTooLarge {
                claimed: total,
                size,
                limit: self.max_message_bytes,
            });
        }
        if bytes.len() > cur.buf.capacity() - cur.buf.len() {
            // The data reached the initial reservation: reserve the rest of
            // the bound at once (or just this frame, for an unusual sender
            // whose frame is longer than the first one), within the limit.
            let rest = cur.bound.saturating_sub(cur.buf.len()).max(bytes.len());
            log::debug!("frame {iteration} of {size}: reserving {rest} more bytes");
            cur.buf.reserve(rest);
        }
        cur.buf.extend_from_slice(&bytes);
        cur.received = iteration;
        if iteration < size {
            return Ok(None);
        }
        let Some(mut done) = self.current.take() else {
            return Ok(None);
        };
        let capacity = done.buf.capacity();
        let message = done.buf.split().freeze();
        if let Some(pool) = &self.pool {
            pool.put(done.buf, capacity);
        }
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    #[test]
    fn a_huge_claim_reserves_at_most_the_cap() {
        let mut r = Reassembler::default();
        let first = Bytes::from(vec![7u8; 1 << 20]);
        // 2047 frames of 1 MiB: just under the 2 GiB limit.
        assert_eq!(r.push(2047, 1, first).unwrap(), None);
        let cur = r.current.as_ref().unwrap();
        assert!(
            cur.buf.capacity() <= INITIAL_RESERVE_CAP,
            "{}",
            cur.buf.capacity()
        );
    }

    #[test]
    fn a_message_longer_than_the_cap_is_whole_and_grows_once() {
        let frame_len = 1 << 20;
        let frames = (INITIAL_RESERVE_CAP / frame_len + 3) as i32;
        let mut r = Reassembler::default();
        let mut grew = 0;
        let mut capacity = 0;
        let mut out = None;
        for i in 1..=frames {
            out = r
                .push(frames, i, Bytes::from(vec![i as u8; frame_len]))
                .unwrap();
            if let Some(cur) = &r.current {
                if cur.buf.capacity() != capacity {
                    grew += 1;
                    capacity = cur.buf.capacity();
                }
            }
        }
        let out = out.unwrap();
        assert_eq!(out.len(), frames as usize * frame_len);
        assert_eq!(out[0], 1);
        assert_eq!(out[out.len() - 1], frames as u8);
        // Initial reservation, then the rest of the bound once.
        assert_eq!(grew, 2);
    }

    #[test]
    fn one_frame_message_is_not_copied() {
        let mut r = Reassembler::default();
        let p = Bytes::from(vec![1u8; 100]);
        let out = r.push(1, 1, p.clone()).unwrap().unwrap();
        assert_eq!(out.as_ptr(), p.as_ptr());
        assert!(!r.in_progress());
    }

    #[test]
    fn three_frames_join() {
        let mut r = Reassembler::default();
        assert_eq!(r.push(3, 1, b(b"ab")).unwrap(), None);
        assert!(r.in_progress());
        assert_eq!(r.push(3, 2, b(b"cd")).unwrap(), None);
        assert_eq!(r.push(3, 3, b(b"e")).unwrap(), Some(b(b"abcde")));
        assert!(!r.in_progress());
        r.finish().unwrap();
    }

    #[test]
    fn violations_are_specific_errors_and_reset() {
        let mut r = Reassembler::default();
        assert!(matches!(
            r.push(0, 1, b(b"x")),
            Err(WireError::SizeNotPositive { size: 0, .. })
        ));
        assert!(matches!(
            r.push(-3, 1, b(b"x")),
            Err(WireError::SizeNotPositive { size: -3, .. })
        ));
        assert!(matches!(
            r.push(2, 3, b(b"x")),
            Err(WireError::IterationOutOfRange { .. })
        ));
        assert!(matches!(
            r.push(2, 0, b(b"x")),
            Err(WireError::IterationOutOfRange { .. })
        ));
        assert!(matches!(
            r.push(2, 2, b(b"x")),
            Err(WireError::FrameOutOfOrder { expected: 1, .. })
        ));

        r.push(3, 1, b(b"x")).unwrap();
        assert!(matches!(
            r.push(3, 1, b(b"x")),
            Err(WireError::RepeatedFrame { iteration: 1, .. })
        ));
        assert!(!r.in_progress());

        r.push(4, 1, b(b"x")).unwrap();
        r.push(4, 2, b(b"x")).unwrap();
        assert!(matches!(
            r.push(4, 4, b(b"x")),
            Err(WireError::FramesMissing {
                iteration: 4,
                expected: 3,
                ..
            })
        ));

        r.push(4, 1, b(b"x")).unwrap();
        r.push(4, 2, b(b"x")).unwrap();
        r.push(4, 3, b(b"x")).unwrap();
        assert!(matches!(
            r.push(4, 2, b(b"x")),
            Err(WireError::FrameOutOfOrder {
                iteration: 2,
                expected: 4,
                ..
            })
        ));

        r.push(4, 1, b(b"x")).unwrap();
        assert!(matches!(
            r.push(5, 2, b(b"x")),
            Err(WireError::SizeChanged {
                size: 5,
                expected: 4,
                ..
            })
        ));

        r.push(4, 1, b(b"x")).unwrap();
        assert!(matches!(
            r.push(2, 1, b(b"x")),
            Err(WireError::MessageIncomplete {
                received: 1,
                previous_size: 4,
                ..
            })
        ));

        r.push(2, 1, b(b"x")).unwrap();
        assert!(matches!(
            r.finish(),
            Err(WireError::StreamEndedMidMessage {
                received: 1,
                size: 2
            })
        ));
        assert!(!r.in_progress());
    }

    #[test]
    fn oversize_claims_are_refused_before_allocating() {
        let mut r = Reassembler::new(10);
        assert!(matches!(
            r.push(1, 1, Bytes::from(vec![0u8; 11])),
            Err(WireError::MessageTooLarge { claimed: 11, .. })
        ));
        // 4 bytes x 3 frames = 12 > 10: refused at the first frame.
        assert!(matches!(
            r.push(3, 1, Bytes::from(vec![0u8; 4])),
            Err(WireError::MessageTooLarge { claimed: 12, .. })
        ));
        // a huge frame count is refused too, whatever the first frame's size
        let mut r = Reassembler::default();
        assert!(matches!(
            r.push(i32::MAX, 1, Bytes::from(vec![0u8; 4])),
            Err(WireError::MessageTooLarge { .. })
        ));
        // frames that grow past the limit after a small first frame
        let mut r = Reassembler::new(10);
        r.push(3, 1, b(b"x")).unwrap();
        assert!(matches!(
            r.push(3, 2, Bytes::from(vec![0u8; 10])),
            Err(WireError::MessageTooLarge { claimed: 11, .. })
        ));
    }
}
