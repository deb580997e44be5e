//! An encoded message as a list of byte pieces.
//!
//! Encoding a message that carries a model would copy the model's bytes into
//! a fresh buffer (for 100 MiB: a 100 MiB allocation, its page faults and a
//! memcpy) only for [`Frame::split`](super::Frame::split) to slice that buffer again. A
//! [`Payload`] avoids the copy: [`Value::to_payload`] writes the small parts of
//! the message (keys, numbers, headers) into one buffer and keeps every `bin`
//! or `ext` value of at least [`Payload::SHARED_MIN_BYTES`] as a piece of its own,
//! which is a cheap clone of the [`Bytes`] the value already holds. The
//! frames cut from a payload are slices of those pieces; only a frame that
//! straddles two pieces is assembled into a buffer of its own (at most one
//! frame's worth per boundary).
//!
//! A node answering a `TrainRequest` with a reply that carries the received
//! parameters therefore sends slices of the request's own buffer: the reply
//! costs no second copy of the model.
//!
//! Sharing has one consequence to keep in mind: a piece keeps the whole
//! buffer it is a slice of alive until the message is sent and dropped. A
//! reply carrying a small slice of a large received message keeps that
//! message's buffer until the researcher has acknowledged the reply; to
//! detach it, give the reply a copy (`Bytes::copy_from_slice`).
//!
//! ```
//! use bytes::Bytes;
//! use fedroute::wire::{Payload, Value};
//!
//! let model = Bytes::from(vec![7u8; Payload::SHARED_MIN_BYTES]);
//! let v = Value::map([("params", Value::Bin(model.clone())), ("round", Value::UInt(3))]);
//! let payload = v.to_payload();
//! // The same bytes as a contiguous encoding...
//! assert_eq!(payload.to_bytes(), v.to_bytes());
//! // ...but the model is shared, not copied.
//! assert!(payload.pieces().iter().any(|p| p.as_ptr() == model.as_ptr()));
//! ```

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::encode::{array_header, bin_header, encode_into, encoded_len, ext_header, map_header};
use super::value::Value;

/// An encoded message: its bytes, in order, as one or more [`Bytes`] pieces.
///
/// Cloning is cheap (reference counts). Two payloads are equal when their
/// bytes are, whatever their pieces.
#[derive(Clone, Default)]
pub struct Payload {
    pieces: Pieces,
    len: usize,
}

#[derive(Clone)]
enum Pieces {
    One(Bytes),
    Many(Arc<[Bytes]>),
}

impl Default for Pieces {
    fn default() -> Self {
        Pieces::One(Bytes::new())
    }
}

impl Payload {
    /// The smallest `bin` or `ext` value [`Value::to_payload`] shares
    /// instead of copying (64 KiB). Below this, a copy is cheaper than the
    /// bookkeeping and than the frame assembly a piece boundary may cost.
    pub const SHARED_MIN_BYTES: usize = 64 << 10;

    /// A payload made of `pieces`, in order (empty pieces are dropped).
    pub fn from_pieces(pieces: impl IntoIterator<Item = Bytes>) -> Payload {
        let mut pieces: Vec<Bytes> = pieces.into_iter().filter(|p| !p.is_empty()).collect();
        let len = pieces.iter().map(Bytes::len).sum();
        let pieces = match pieces.len() {
            0 => Pieces::One(Bytes::new()),
            1 => Pieces::One(pieces.pop().unwrap_or_default()),
            _ => Pieces::Many(pieces.into()),
        };
        Payload { pieces, len }
    }

    /// The total length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> &[Bytes] {
        match &self.pieces {
            Pieces::One(b) => std::slice::from_ref(b),
            Pieces::Many(p) => p,
        }
    }

    /// The bytes as one buffer: a cheap clone for a one-piece payload, a copy
    /// otherwise.
    pub fn to_bytes(&self) -> Bytes {
        match &self.pieces {
            Pieces::One(b) => b.clone(),
            Pieces::Many(_) => self.slice(0, self.len),
        }
    }

    /// Bytes `start..end` (clamped to the payload): a slice when they lie in
    /// one piece, otherwise a new buffer holding them.
    pub fn slice(&self, start: usize, end: usize) -> Bytes {
        let end = end.min(self.len);
        let start = start.min(end);
        let pieces = match &self.pieces {
            Pieces::One(b) => return b.slice(start..end),
            Pieces::Many(pieces) => pieces,
        };
        let mut piece_start = 0;
        let mut out: Option<BytesMut> = None;
        for piece in pieces.iter() {
            let piece_end = piece_start + piece.len();
            if piece_end > start && piece_start < end {
                let from = start.saturating_sub(piece_start);
                let to = end.min(piece_end) - piece_start;
                match &mut out {
                    None if piece_start <= start && end <= piece_end => {
                        return piece.slice(from..to);
                    }
                    None => {
                        let mut buf = BytesMut::with_capacity(end - start);
                        buf.put_slice(&piece[from..to]);
                        out = Some(buf);
                    }
                    Some(buf) => buf.put_slice(&piece[from..to]),
                }
            }
            if piece_end >= end {
                break;
            }
            piece_start = piece_end;
        }
        out.map(BytesMut::freeze).unwrap_or_default()
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Payload {
        Payload {
            len: bytes.len(),
            pieces: Pieces::One(bytes),
        }
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Payload {
        Payload::from(Bytes::from(bytes))
    }
}

impl From<&'static [u8]> for Payload {
    fn from(bytes: &'static [u8]) -> Payload {
        Payload::from(Bytes::from_static(bytes))
    }
}

impl Payload {
    /// Whether the bytes are `other`, piece by piece (no allocation).
    fn eq_slice(&self, other: &[u8]) -> bool {
        if self.len != other.len() {
            return false;
        }
        let mut at = 0;
        self.pieces().iter().all(|p| {
            let same = p[..] == other[at..at + p.len()];
            at += p.len();
            same
        })
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        match (&self.pieces, &other.pieces) {
            (_, Pieces::One(b)) => self.eq_slice(b),
            (Pieces::One(a), _) => other.eq_slice(a),
            (Pieces::Many(_), Pieces::Many(_)) => {
                self.len == other.len
                    && self
                        .pieces()
                        .iter()
                        .flat_map(|p| p.iter())
                        .eq(other.pieces().iter().flat_map(|p| p.iter()))
            }
        }
    }
}

impl Eq for Payload {}

impl PartialEq<Bytes> for Payload {
    fn eq(&self, other: &Bytes) -> bool {
        self.eq_slice(other)
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("len", &self.len)
            .field("pieces", &self.pieces().len())
            .finish()
    }
}

/// Encodes `v` like [`Value::to_bytes`] (the same bytes), sharing every
/// `bin` or `ext` value of at least [`Payload::SHARED_MIN_BYTES`] instead of
/// copying it; everything else goes into one buffer allocated once.
pub(crate) fn encode_payload(v: &Value) -> Payload {
    let shared = shared_len(v);
    if shared == 0 {
        return Payload::from(v.to_bytes());
    }
    let mut buf = BytesMut::with_capacity(encoded_len(v) - shared);
    let mut pieces = Vec::new();
    encode_shared(v, &mut buf, &mut pieces);
    pieces.push(buf.freeze());
    Payload::from_pieces(pieces)
}

/// The bytes of the values [`encode_payload`] shares.
fn shared_len(v: &Value) -> usize {
    match v {
        Value::Bin(b) | Value::Ext(_, b) if b.len() >= Payload::SHARED_MIN_BYTES => b.len(),
        Value::Array(a) => a.iter().map(shared_len).sum(),
        Value::Map(m) => m.iter().map(|(k, v)| shared_len(k) + shared_len(v)).sum(),
        _ => 0,
    }
}

fn encode_shared(v: &Value, buf: &mut BytesMut, pieces: &mut Vec<Bytes>) {
    match v {
        Value::Bin(b) | Value::Ext(_, b) if b.len() >= Payload::SHARED_MIN_BYTES => {
            // The header into the buffer, the body as a piece of its own.
            match v {
                Value::Ext(tag, _) => ext_header(*tag, b.len(), buf),
                _ => bin_header(b.len(), buf),
            }
            pieces.push(buf.split().freeze());
            pieces.push(b.clone());
        }
        Value::Array(a) => {
            array_header(a.len(), buf);
            for item in a {
                encode_shared(item, buf, pieces);
            }
        }
        Value::Map(m) => {
            map_header(m.len(), buf);
            for (k, v) in m {
                encode_shared(k, buf, pieces);
                encode_shared(v, buf, pieces);
            }
        }
        other => encode_into(other, buf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[test]
    fn small_values_make_one_piece_identical_to_the_contiguous_encoding() {
        let v = Value::map([("a", Value::Bin(big(100, 1))), ("b", Value::UInt(7))]);
        let p = encode_payload(&v);
        assert_eq!(p.pieces().len(), 1);
        assert_eq!(p.to_bytes(), v.to_bytes());
    }

    #[test]
    fn large_bins_and_exts_are_shared_and_the_bytes_are_the_same() {
        let a = big(Payload::SHARED_MIN_BYTES, 2);
        let b = big(70_000, 3);
        let e = big(1 << 20, 4);
        let v = Value::map([
            ("first", Value::Bin(a.clone())),
            (
                "nested",
                Value::Array(vec![Value::Bin(b.clone()), Value::Nil]),
            ),
            ("ext", Value::Ext(-3, e.clone())),
            ("tail", Value::Str("end".into())),
        ]);
        let p = encode_payload(&v);
        assert_eq!(p.len(), encoded_len(&v));
        assert_eq!(p.to_bytes(), v.to_bytes());
        for shared in [&a, &b, &e] {
            assert!(
                p.pieces().iter().any(|x| x.as_ptr() == shared.as_ptr()),
                "a large value was copied"
            );
        }
        // header, a, header, b, header, e, tail
        assert_eq!(p.pieces().len(), 7);
    }

    #[test]
    fn a_message_that_is_one_large_bin_has_no_empty_pieces() {
        let a = big(Payload::SHARED_MIN_BYTES * 2, 9);
        let v = Value::Bin(a.clone());
        let p = encode_payload(&v);
        assert!(p.pieces().iter().all(|x| !x.is_empty()));
        assert_eq!(p.to_bytes(), v.to_bytes());
    }

    #[test]
    fn slices_inside_a_piece_are_not_copied_and_across_pieces_are_joined() {
        let a = Bytes::from_static(b"hello ");
        let b = Bytes::from_static(b"world");
        let p = Payload::from_pieces([a.clone(), Bytes::new(), b.clone()]);
        assert_eq!(p.len(), 11);
        assert_eq!(p.pieces().len(), 2);
        assert_eq!(p.slice(1, 4).as_ptr(), a[1..].as_ptr());
        assert_eq!(p.slice(6, 11).as_ptr(), b.as_ptr());
        assert_eq!(p.slice(4, 8), Bytes::from_static(b"o wo"));
        assert_eq!(p.slice(0, 100), Bytes::from_static(b"hello world"));
        assert_eq!(p.slice(20, 30), Bytes::new());
        assert_eq!(p.slice(5, 3), Bytes::new());
        assert_eq!(p, Bytes::from_static(b"hello world"));
        assert_ne!(p, Bytes::from_static(b"hello worle"));
        assert_ne!(p, Bytes::from_static(b"hello"));
        let q = Payload::from_pieces([Bytes::from_static(b"hel"), Bytes::from_static(b"lo world")]);
        assert_eq!(p, q);
        assert_eq!(p, Payload::from(Bytes::from_static(b"hello world")));
        assert_ne!(p, Payload::from_pieces([a, Bytes::from_static(b"worlds")]));
    }
}
