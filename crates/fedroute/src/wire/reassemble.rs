//! Reassembling a chunked message from its frames.
//!
//! Unlike Fed-BioMed's receivers, every frame is checked: `size` at least 1
//! and constant within a message, `iteration` exactly the next one, and the
//! total below a limit. A one-frame message is handed on as the frame's own
//! buffer (no copy). For a longer message the first frame fixes an upper
//! bound (`size` × first frame length, since senders cut equal slices) that
//! is checked against the limit, but nothing is reserved on that claim: the
//! buffer grows as data arrives, at least doubling each time and never past
//! the bound ([`next_capacity`]), so a hostile first frame that claims
//! gigabytes costs one frame. Every frame is copied into the buffer exactly
//! once; growing a large buffer is a `realloc` that Linux serves by moving
//! pages (`mremap`), not bytes.
//!
//! With a [`ReceiveBudget`] ([`Reassembler::with_budget`]) each growth is
//! taken from the budget before the memory is reserved (with
//! [`Reassembler::frame_ahead`], one frame more: the frame the gRPC layer
//! is receiving meanwhile). When the budget is spent the frame is refused
//! with [`WireError::BudgetExhausted`] and the reassembler keeps its state:
//! the caller waits for room ([`ReceiveBudget::room_for`]) and pushes the
//! same frame again, or gives up. A message that could never fit the
//! budget is refused for good ([`WireError::LargerThanBudget`]). The bytes
//! stay held after the message completes until the caller drops the
//! [`Hold`] it takes with [`Reassembler::take_hold`] (once the message is
//! decoded and handed on).
//!
//! With a [`BufferPool`] ([`Reassembler::with_pool`]) the buffers of
//! finished messages are kept and a message whose claimed size fits one of
//! them is written into the same allocation once every slice of the
//! previous message has been dropped: no fresh allocation and page faults
//! per large message, at the price of keeping those buffers (up to the
//! pool's limit) while idle.
//!
//! ```
//! use bytes::Bytes;
//! use fedroute::wire::{Frame, Reassembler};
//!
//! let payload = Bytes::from_static(b"a message cut in 4-byte frames");
//! let mut r = Reassembler::default();
//! let mut out = None;
//! for f in Frame::split_by(payload.clone(), 4) {
//!     out = r.push(f.size, f.iteration, f.bytes).unwrap();
//! }
//! assert_eq!(out, Some(payload));
//! ```

use bytes::{Bytes, BytesMut};

use super::budget::{Hold, ReceiveBudget};
use super::error::{FrameProblem, WireError};
use super::pool::BufferPool;

/// The capacity a message buffer grows to when `needed` bytes must fit and
/// it has `current`: at least double, never past the claimed `bound` while
/// the data fits it, never past `max` (the message limit) once a sender
/// whose later frames are longer than its first went past its claim.
pub(crate) fn next_capacity(current: usize, needed: usize, bound: usize, max: usize) -> usize {
    let cap = if needed <= bound { bound } else { max };
    needed.max(current.saturating_mul(2)).min(cap.max(needed))
}

/// A budget refusal naming what the whole message needs (`claimed`).
fn claiming(e: WireError, claimed: usize) -> WireError {
    match e {
        WireError::BudgetExhausted {
            requested,
            in_use,
            limit,
            ..
        } => WireError::BudgetExhausted {
            requested,
            claimed,
            in_use,
            limit,
        },
        other => other,
    }
}

/// Checks and joins the frames of consecutive messages on one stream.
#[derive(Debug)]
pub struct Reassembler {
    max_message_bytes: usize,
    current: Option<InProgress>,
    /// Where finished messages' buffers go for reuse, if anywhere.
    pool: Option<BufferPool>,
    /// Where buffer growth is taken from, if anywhere.
    budget: Option<ReceiveBudget>,
    /// Also take one frame ahead from the budget.
    frame_ahead: bool,
    /// The budget held by the last completed message, until taken.
    completed: Option<Hold>,
}

#[derive(Debug)]
struct InProgress {
    size: i32,
    received: i32,
    /// Upper bound of the message length (size × first frame length).
    bound: usize,
    buf: Buffer,
    /// What the growth policy allows so far (and the budget was charged).
    capacity: usize,
    /// The frame ahead charged besides (0 unless [`Reassembler::frame_ahead`]).
    ahead: usize,
    hold: Option<Hold>,
}

/// A message buffer: a fresh vector that grows with `realloc`, or a kept
/// buffer of the pool, large enough for the whole claimed message.
#[derive(Debug)]
enum Buffer {
    Fresh(Vec<u8>),
    Kept(BytesMut),
}

impl Buffer {
    fn len(&self) -> usize {
        match self {
            Buffer::Fresh(v) => v.len(),
            Buffer::Kept(b) => b.len(),
        }
    }

    fn extend(&mut self, bytes: &[u8], capacity: usize) {
        match self {
            Buffer::Fresh(v) => {
                if capacity > v.capacity() {
                    v.reserve_exact(capacity - v.len());
                }
                v.extend_from_slice(bytes);
            }
            Buffer::Kept(b) => b.extend_from_slice(bytes),
        }
    }
}

impl Default for Reassembler {
    fn default() -> Self {
        Reassembler::new(crate::config::ReceiveLimits::DEFAULT_MAX_MESSAGE_BYTES)
    }
}

impl Reassembler {
    /// A reassembler refusing messages above `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Reassembler {
        Reassembler {
            max_message_bytes,
            current: None,
            pool: None,
            budget: None,
            frame_ahead: false,
            completed: None,
        }
    }

    /// Takes message buffers from `pool` and gives them back to it when a
    /// message is complete, to receive later messages into the same memory
    /// (off by default; see [`BufferPool`]).
    pub fn with_pool(mut self, pool: BufferPool) -> Reassembler {
        self.pool = (pool.max_bytes() > 0).then_some(pool);
        self
    }

    /// Takes every growth of a message buffer from `budget` (see the module
    /// documentation). Off by default.
    pub(crate) fn with_budget(mut self, budget: ReceiveBudget) -> Reassembler {
        self.budget = Some(budget);
        self
    }

    /// With a budget, also takes one frame ahead for a message in progress:
    /// the next frame, which the gRPC layer holds before it reaches the
    /// reassembler. For receivers whose gRPC layer is not metered otherwise
    /// (the node; the researcher meters its calls). Off by default.
    pub fn frame_ahead(mut self, on: bool) -> Reassembler {
        self.frame_ahead = on;
        self
    }

    /// Whether a message has started and not finished.
    pub fn in_progress(&self) -> bool {
        self.current.is_some()
    }

    /// The budget held for the message the last [`Reassembler::push`]
    /// completed (none for a one-frame message or without a budget). Drop it
    /// once the message is decoded and handed on; it is also given back at
    /// the next push.
    pub(crate) fn take_hold(&mut self) -> Option<Hold> {
        self.completed.take()
    }

    /// Takes one frame. Returns the payload when this was its last frame.
    /// On [`WireError::BudgetExhausted`] nothing changed: push the same frame
    /// again once there is room, or [`Reassembler::finish`]. On any other
    /// error the partial message is dropped and the reassembler is ready for
    /// a new message.
    pub fn push(
        &mut self,
        size: i32,
        iteration: i32,
        bytes: Bytes,
    ) -> Result<Option<Bytes>, WireError> {
        self.completed = None;
        let r = self.push_inner(size, iteration, bytes);
        if matches!(&r, Err(e) if !matches!(e, WireError::BudgetExhausted { .. })) {
            self.current = None;
        }
        r
    }

    /// Call when the frame stream ends: an error if a message is incomplete.
    /// The reassembler is reset either way.
    pub fn finish(&mut self) -> Result<(), WireError> {
        self.completed = None;
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

    /// Starts a message of `size` frames with its first frame.
    fn start(&mut self, size: i32, bytes: Bytes) -> Result<(), WireError> {
        let len = bytes.len();
        let bound = (len as u64).saturating_mul(size as u64);
        self.too_large(bound, size)?;
        // bound <= max_message_bytes, a usize: the cast cannot truncate.
        let bound = bound as usize;
        let capacity = next_capacity(0, len, bound, self.max_message_bytes);
        let ahead = if self.frame_ahead { len } else { 0 };
        let hold = match &self.budget {
            Some(budget) => {
                let claimed = bound.saturating_add(ahead);
                if claimed > budget.limit() {
                    return Err(WireError::LargerThanBudget {
                        claimed,
                        size,
                        budget: budget.limit(),
                    });
                }
                let mut hold = budget.hold();
                hold.grow(capacity.saturating_add(ahead))
                    .map_err(|e| claiming(e, claimed))?;
                Some(hold)
            }
            None => None,
        };
        // A kept buffer is used only when the whole claim fits it: it costs
        // no new memory, and growing it would mean a copy.
        let mut buf = match self.pool.as_ref().and_then(|p| p.take_fitting(bound)) {
            Some(kept) => Buffer::Kept(kept),
            None => Buffer::Fresh(Vec::new()),
        };
        buf.extend(&bytes, capacity);
        self.current = Some(InProgress {
            size,
            received: 1,
            bound,
            buf,
            capacity,
            ahead,
            hold,
        });
        Ok(())
    }

    fn push_inner(
        &mut self,
        size: i32,
        iteration: i32,
        bytes: Bytes,
    ) -> Result<Option<Bytes>, WireError> {
        if size < 1 {
            return Err(WireError::BadFrame {
                size,
                iteration,
                problem: FrameProblem::SizeNotPositive,
            });
        }
        if iteration < 1 || iteration > size {
            return Err(WireError::BadFrame {
                iteration,
                size,
                problem: FrameProblem::IterationOutOfRange,
            });
        }
        let Some(cur) = self.current.as_mut() else {
            // First frame of a new message.
            if iteration != 1 {
                return Err(WireError::BadFrame {
                    iteration,
                    size,
                    problem: FrameProblem::OutOfOrder { expected: 1 },
                });
            }
            if size == 1 {
                self.too_large(bytes.len() as u64, size)?;
                return Ok(Some(bytes));
            }
            self.start(size, bytes)?;
            return Ok(None);
        };
        let expected = cur.received + 1;
        if size != cur.size {
            if iteration == 1 {
                return Err(WireError::BadFrame {
                    size,
                    iteration,
                    problem: FrameProblem::PreviousIncomplete {
                        received: cur.received,
                        previous_size: cur.size,
                    },
                });
            }
            return Err(WireError::BadFrame {
                size,
                iteration,
                problem: FrameProblem::SizeChanged { expected: cur.size },
            });
        }
        if iteration != expected {
            return Err(if iteration == cur.received {
                WireError::BadFrame {
                    iteration,
                    size,
                    problem: FrameProblem::Repeated { expected },
                }
            } else if iteration == 1 {
                WireError::BadFrame {
                    size,
                    iteration,
                    problem: FrameProblem::PreviousIncomplete {
                        received: cur.received,
                        previous_size: cur.size,
                    },
                }
            } else if iteration < expected {
                WireError::BadFrame {
                    iteration,
                    size,
                    problem: FrameProblem::OutOfOrder { expected },
                }
            } else {
                WireError::BadFrame {
                    iteration,
                    size,
                    problem: FrameProblem::Missing { expected },
                }
            });
        }
        let needed = cur.buf.len() + bytes.len();
        if needed as u64 > self.max_message_bytes as u64 {
            return Err(WireError::MessageTooLarge {
                claimed: needed as u64,
                size,
                limit: self.max_message_bytes,
            });
        }
        if needed > cur.capacity {
            let capacity = next_capacity(cur.capacity, needed, cur.bound, self.max_message_bytes);
            if let Some(hold) = &mut cur.hold {
                let claimed = cur.bound.max(capacity) + cur.ahead;
                hold.grow(capacity - cur.capacity)
                    .map_err(|e| claiming(e, claimed))?;
            }
            log::trace!("frame {iteration} of {size}: buffer grows to {capacity} bytes");
            cur.capacity = capacity;
        }
        cur.buf.extend(&bytes, cur.capacity);
        cur.received = iteration;
        if iteration < size {
            return Ok(None);
        }
        let Some(done) = self.current.take() else {
            return Ok(None);
        };
        self.completed = done.hold;
        let mut buf = match done.buf {
            // Both conversions keep the allocation (the vector is unique).
            Buffer::Fresh(v) => BytesMut::from(Bytes::from(v)),
            Buffer::Kept(b) => b,
        };
        let capacity = buf.capacity();
        let message = buf.split().freeze();
        if let Some(pool) = &self.pool {
            pool.put(buf, capacity);
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
    fn a_huge_claim_reserves_one_frame() {
        let mut r = Reassembler::default();
        let first = Bytes::from(vec![7u8; 1 << 20]);
        // 2047 frames of 1 MiB: just under the 2 GiB limit.
        assert_eq!(r.push(2047, 1, first).unwrap(), None);
        let cur = r.current.as_ref().unwrap();
        assert_eq!(cur.capacity, 1 << 20);
        let Buffer::Fresh(v) = &cur.buf else {
            panic!("no pool: a fresh buffer");
        };
        assert_eq!(v.capacity(), 1 << 20);
    }

    #[test]
    fn the_buffer_doubles_up_to_the_claimed_size() {
        assert_eq!(next_capacity(0, 4, 40, 1000), 4);
        assert_eq!(next_capacity(4, 8, 40, 1000), 8);
        assert_eq!(next_capacity(32, 36, 40, 1000), 40);
        // Later frames longer than the first: doubling again, up to the limit.
        assert_eq!(next_capacity(40, 50, 40, 1000), 80);
        assert_eq!(next_capacity(640, 700, 40, 1000), 1000);
        let frame_len = 1 << 20;
        let frames = 11;
        let mut r = Reassembler::default();
        let mut capacities = Vec::new();
        let mut out = None;
        for i in 1..=frames {
            out = r
                .push(frames, i, Bytes::from(vec![i as u8; frame_len]))
                .unwrap();
            if let Some(cur) = &r.current {
                capacities.push(cur.capacity / frame_len);
            }
        }
        assert_eq!(capacities, [1, 2, 4, 4, 8, 8, 8, 8, 11, 11]);
        let out = out.unwrap();
        assert_eq!(out.len(), frames as usize * frame_len);
        assert_eq!(out[0], 1);
        assert_eq!(out[out.len() - 1], frames as u8);
    }

    #[test]
    fn growth_is_taken_from_the_budget_and_given_back_after_the_message() {
        let budget = ReceiveBudget::new(20);
        let mut ra = Reassembler::default()
            .with_budget(budget.clone())
            .frame_ahead(true);
        let mut rb = Reassembler::default()
            .with_budget(budget.clone())
            .frame_ahead(true);
        // A frame of buffer, and a frame ahead.
        ra.push(3, 1, b(b"abc")).unwrap();
        assert_eq!(budget.in_use(), 6);
        ra.push(3, 2, b(b"def")).unwrap();
        assert_eq!(budget.in_use(), 9);
        // b's first frame fits, its second does not: refused for now, and b
        // keeps what it had.
        rb.push(2, 1, b(b"wxyz")).unwrap();
        assert_eq!(budget.in_use(), 17);
        assert!(matches!(
            rb.push(2, 2, b(b"wxyz")),
            Err(WireError::BudgetExhausted {
                requested: 4,
                claimed: 12,
                in_use: 17,
                limit: 20
            })
        ));
        assert!(rb.in_progress());
        assert_eq!(budget.in_use(), 17);
        // a completes (its buffer grew to the claimed 9 bytes); the bytes
        // stay held until the hold is dropped.
        assert_eq!(ra.push(3, 3, b(b"gh")).unwrap(), Some(b(b"abcdefgh")));
        assert_eq!(budget.in_use(), 20);
        let hold = ra.take_hold().unwrap();
        assert_eq!(hold.bytes(), 12);
        drop(hold);
        assert_eq!(budget.in_use(), 8);
        // Room again: b's same frame goes through.
        assert_eq!(rb.push(2, 2, b(b"wxyz")).unwrap(), Some(b(b"wxyzwxyz")));
        drop(rb.take_hold());
        assert_eq!(budget.in_use(), 0);
        // One-frame messages never touch it.
        assert_eq!(
            rb.push(1, 1, b(b"0123456789ab")).unwrap(),
            Some(b(b"0123456789ab"))
        );
        assert!(rb.take_hold().is_none());
        assert_eq!(budget.in_use(), 0);
        // A claim the whole budget could never hold is refused for good.
        assert!(matches!(
            rb.push(5, 1, b(b"wxyz")),
            Err(WireError::LargerThanBudget {
                claimed: 24,
                budget: 20,
                ..
            })
        ));
        assert!(!rb.in_progress());
        // Without frames ahead (the default), the buffer alone counts.
        let mut plain = Reassembler::default().with_budget(budget.clone());
        plain.push(2, 1, b(b"abcd")).unwrap();
        assert_eq!(budget.in_use(), 4);
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
            Err(WireError::BadFrame {
                size: 0,
                problem: FrameProblem::SizeNotPositive,
                ..
            })
        ));
        assert!(matches!(
            r.push(-3, 1, b(b"x")),
            Err(WireError::BadFrame {
                size: -3,
                problem: FrameProblem::SizeNotPositive,
                ..
            })
        ));
        assert!(matches!(
            r.push(2, 3, b(b"x")),
            Err(WireError::BadFrame {
                problem: FrameProblem::IterationOutOfRange,
                ..
            })
        ));
        assert!(matches!(
            r.push(2, 0, b(b"x")),
            Err(WireError::BadFrame {
                problem: FrameProblem::IterationOutOfRange,
                ..
            })
        ));
        assert!(matches!(
            r.push(2, 2, b(b"x")),
            Err(WireError::BadFrame {
                problem: FrameProblem::OutOfOrder { expected: 1 },
                ..
            })
        ));

        r.push(3, 1, b(b"x")).unwrap();
        assert!(matches!(
            r.push(3, 1, b(b"x")),
            Err(WireError::BadFrame {
                iteration: 1,
                problem: FrameProblem::Repeated { .. },
                ..
            })
        ));
        assert!(!r.in_progress());

        r.push(4, 1, b(b"x")).unwrap();
        r.push(4, 2, b(b"x")).unwrap();
        assert!(matches!(
            r.push(4, 4, b(b"x")),
            Err(WireError::BadFrame {
                iteration: 4,
                problem: FrameProblem::Missing { expected: 3 },
                ..
            })
        ));

        r.push(4, 1, b(b"x")).unwrap();
        r.push(4, 2, b(b"x")).unwrap();
        r.push(4, 3, b(b"x")).unwrap();
        assert!(matches!(
            r.push(4, 2, b(b"x")),
            Err(WireError::BadFrame {
                iteration: 2,
                problem: FrameProblem::OutOfOrder { expected: 4 },
                ..
            })
        ));

        r.push(4, 1, b(b"x")).unwrap();
        assert!(matches!(
            r.push(5, 2, b(b"x")),
            Err(WireError::BadFrame {
                size: 5,
                problem: FrameProblem::SizeChanged { expected: 4 },
                ..
            })
        ));

        r.push(4, 1, b(b"x")).unwrap();
        assert!(matches!(
            r.push(2, 1, b(b"x")),
            Err(WireError::BadFrame {
                problem: FrameProblem::PreviousIncomplete {
                    received: 1,
                    previous_size: 4
                },
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
