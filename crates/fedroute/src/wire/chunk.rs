//! Splitting a payload into gRPC frames.
//!
//! Fed-BioMed cuts a message's msgpack bytes into slices of [`CHUNK_SIZE`]
//! bytes and sends each as `{size, iteration, bytes_}` with `size` the number
//! of slices and `iteration` counting from 1. Here every frame is a cheap
//! [`Bytes`] slice of the payload: of its one buffer, or, for a [`Payload`]
//! of several pieces, of the piece the frame lies in (a frame that straddles
//! two pieces is joined into a buffer of its own when it is produced).

use bytes::Bytes;

use super::payload::Payload;

/// Bytes per frame (Fed-BioMed's `MAX_SEND_SIZE` slice length).
pub const CHUNK_SIZE: usize = 3_999_967;

/// One frame of a chunked message (the fields of `TaskResponse`/`TaskResult`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Number of frames of the message.
    pub size: i32,
    /// This frame's position, 1..=size.
    pub iteration: i32,
    /// This frame's slice of the payload.
    pub bytes: Bytes,
}

impl Frame {
    /// The number of frames a payload of `len` bytes travels in (at least 1).
    pub fn count_for(len: usize) -> usize {
        frame_count_of(len, CHUNK_SIZE)
    }

    /// Splits `payload` (a [`Bytes`] or a [`Payload`]) into frames of
    /// [`CHUNK_SIZE`] bytes; an empty payload is one empty frame.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use fedroute::wire::{Frame, CHUNK_SIZE};
    ///
    /// let frames: Vec<Frame> = Frame::split(Bytes::from(vec![0u8; CHUNK_SIZE + 1])).collect();
    /// assert_eq!(frames.len(), 2);
    /// assert_eq!((frames[1].iteration, frames[1].size, frames[1].bytes.len()), (2, 2, 1));
    /// ```
    pub fn split(payload: impl Into<Payload>) -> impl ExactSizeIterator<Item = Frame> + Send {
        chunks_of(payload, CHUNK_SIZE)
    }

    /// Splits `payload` into frames of `chunk_size` bytes (at least 1), as
    /// [`Frame::split`] does with [`CHUNK_SIZE`].
    ///
    /// A payload needing more than `i32::MAX` frames cannot be represented
    /// on the wire; such a payload is far above any message limit, and its
    /// frame count saturates at `i32::MAX`.
    pub fn split_by(
        payload: impl Into<Payload>,
        chunk_size: usize,
    ) -> impl ExactSizeIterator<Item = Frame> + Send {
        chunks_of(payload, chunk_size)
    }
}

fn frame_count_of(len: usize, chunk_size: usize) -> usize {
    len.div_ceil(chunk_size).max(1)
}

/// [`Frame::split_by`], as a type the researcher's reply stream can hold.
pub(crate) fn chunks_of(payload: impl Into<Payload>, chunk_size: usize) -> Chunks {
    let payload = payload.into();
    let chunk_size = chunk_size.max(1);
    let count = frame_count_of(payload.len(), chunk_size);
    Chunks {
        payload,
        chunk_size,
        size: i32::try_from(count).unwrap_or(i32::MAX),
        next: 1,
    }
}

/// Iterator over the frames of one payload; see [`Frame::split`].
#[derive(Clone, Debug)]
pub(crate) struct Chunks {
    payload: Payload,
    chunk_size: usize,
    size: i32,
    next: i32,
}

impl Chunks {
    /// [`Frame::split`] with a type a stream can hold.
    pub(crate) fn new(payload: impl Into<Payload>) -> Chunks {
        chunks_of(payload, CHUNK_SIZE)
    }
}

impl Iterator for Chunks {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        if self.next > self.size {
            return None;
        }
        let start = (self.next as usize - 1).saturating_mul(self.chunk_size);
        let end = start.saturating_add(self.chunk_size);
        let frame = Frame {
            size: self.size,
            iteration: self.next,
            bytes: self.payload.slice(start, end),
        };
        self.next += 1;
        Some(frame)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.size - self.next + 1).max(0) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Chunks {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_payload_is_one_empty_frame() {
        let f: Vec<_> = Frame::split(Bytes::new()).collect();
        assert_eq!(
            f,
            vec![Frame {
                size: 1,
                iteration: 1,
                bytes: Bytes::new()
            }]
        );
        assert_eq!(Frame::count_for(0), 1);
    }

    #[test]
    fn frames_are_slices_of_the_payload() {
        let p = Bytes::from(vec![1u8; 10]);
        let f: Vec<_> = chunks_of(p.clone(), 4).collect();
        assert_eq!(f.len(), 3);
        assert_eq!(chunks_of(p.clone(), 4).len(), 3);
        assert_eq!(
            f.iter().map(|f| f.bytes.len()).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        assert!(f.iter().all(|f| f.size == 3));
        assert_eq!(f[1].bytes.as_ptr(), p[4..].as_ptr());
        assert_eq!(Frame::count_for(CHUNK_SIZE), 1);
        assert_eq!(Frame::count_for(CHUNK_SIZE + 1), 2);
    }

    #[test]
    fn frames_of_pieces_slice_each_piece_and_join_only_straddling_frames() {
        let a = Bytes::from(vec![1u8; 5]);
        let b = Bytes::from(vec![2u8; 9]);
        let p = Payload::from_pieces([a.clone(), b.clone()]);
        let f: Vec<_> = chunks_of(p, 4).collect();
        assert_eq!(
            f.iter().map(|f| f.bytes.len()).collect::<Vec<_>>(),
            [4, 4, 4, 2]
        );
        assert_eq!(f[0].bytes.as_ptr(), a.as_ptr());
        assert_eq!(&f[1].bytes[..], [1, 2, 2, 2]);
        assert_eq!(f[2].bytes.as_ptr(), b[3..].as_ptr());
        assert_eq!(f[3].bytes.as_ptr(), b[7..].as_ptr());
        assert!(f.iter().all(|f| f.size == 4));
    }
}
