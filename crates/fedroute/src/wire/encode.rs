//! Writing msgpack, with `rmp::encode`.
//!
//! rmp picks the minimal encoding of each value, the one msgpack-python
//! writes (`use_bin_type=True`): non-negative integers as uint whatever
//! their Rust type, fixstr/str8/16/32, bin8/16/32, fixext where the length
//! allows, fixarray/array16/32, fixmap/map16/32, float32 as 0xca and
//! float64 as 0xcb. So decoding then encoding any payload msgpack-python
//! produced gives back the same bytes (`tests/it/wire_golden.rs`, and the
//! interop `bytes` scenario against Fed-BioMed itself).
//!
//! The writers take any [`BufMut`] (a `Vec<u8>`, a [`BytesMut`]) through a
//! `Sink`. The header functions let `super::payload` write a large `bin` as
//! a header here and its body as a piece of its own.

use std::io::{self, Write};

use bytes::{BufMut, Bytes, BytesMut};
use rmp::encode;

use super::payload::Payload;
use super::value::Value;

/// Appends `v` to `out`.
pub(crate) fn encode_into<B: BufMut>(v: &Value, out: &mut B) {
    written(write_value(&mut Sink(out), v));
}

/// The header of a `bin` value of `n` bytes.
pub(crate) fn bin_header<B: BufMut>(n: usize, out: &mut B) {
    written(encode::write_bin_len(&mut Sink(out), len32(n)));
}

/// The header of an `ext` value of type `tag` with `n` bytes of data.
pub(crate) fn ext_header<B: BufMut>(tag: i8, n: usize, out: &mut B) {
    written(encode::write_ext_meta(&mut Sink(out), len32(n), tag));
}

/// The header of an array of `n` items.
pub(crate) fn array_header<B: BufMut>(n: usize, out: &mut B) {
    written(encode::write_array_len(&mut Sink(out), len32(n)));
}

/// The header of a map of `n` entries.
pub(crate) fn map_header<B: BufMut>(n: usize, out: &mut B) {
    written(encode::write_map_len(&mut Sink(out), len32(n)));
}

/// Encodes `v` into a buffer allocated once at its exact final size.
pub(crate) fn encode_to_bytes(v: &Value) -> Bytes {
    let mut out = Vec::with_capacity(encoded_len(v));
    encode_into(v, &mut out);
    Bytes::from(out)
}

/// Encodes `v` into `buf`, reusing its allocation when no earlier message
/// split from it is still alive (otherwise one allocation at the final size),
/// and returns the encoded message. Keeping one `BytesMut` per sender avoids
/// a fresh allocation (and its page faults) per large message.
pub(crate) fn encode_to_buf(v: &Value, buf: &mut BytesMut) -> Bytes {
    buf.clear();
    buf.reserve(encoded_len(v));
    encode_into(v, buf);
    buf.split().freeze()
}

fn write_value<W: Write>(w: &mut W, v: &Value) -> io::Result<()> {
    match v {
        Value::Nil => encode::write_nil(w)?,
        Value::Bool(b) => encode::write_bool(w, *b)?,
        // write_sint writes a non-negative Int as uint, as msgpack-python does.
        Value::Int(i) => {
            encode::write_sint(w, *i)?;
        }
        Value::UInt(u) => {
            encode::write_uint(w, *u)?;
        }
        Value::F32(f) => encode::write_f32(w, *f)?,
        Value::F64(f) => encode::write_f64(w, *f)?,
        Value::Str(s) => {
            encode::write_str_len(w, len32(s.len()))?;
            w.write_all(s.as_bytes())?;
        }
        Value::Bin(b) => {
            encode::write_bin_len(w, len32(b.len()))?;
            w.write_all(b)?;
        }
        Value::Array(a) => {
            encode::write_array_len(w, len32(a.len()))?;
            for item in a {
                write_value(w, item)?;
            }
        }
        Value::Map(m) => {
            encode::write_map_len(w, len32(m.len()))?;
            for (k, v) in m {
                write_value(w, k)?;
                write_value(w, v)?;
            }
        }
        Value::Ext(tag, data) => {
            encode::write_ext_meta(w, len32(data.len()), *tag)?;
            w.write_all(data)?;
        }
    }
    Ok(())
}

/// A length as msgpack writes it. Lengths beyond u32 cannot be represented
/// in msgpack; the message limits (2 GiB at most) keep them far away.
fn len32(n: usize) -> u32 {
    n as u32
}

/// rmp's `io::Write` over a growable buffer: every write takes all its
/// bytes. (`BufMut::writer` does too, but asks the buffer for room before
/// each write and loops in `write_all`: 15-25% slower on small values.)
struct Sink<'a, B>(&'a mut B);

impl<B: BufMut> Write for Sink<'_, B> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.put_slice(buf);
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.put_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Takes the result of a write into a [`Sink`]. rmp writes through
/// `io::Write`, so each write returns an `io::Result`, but a `Sink` never
/// fails (a buffer that cannot grow panics in `BufMut` itself, as it did
/// before rmp), so the result is always `Ok` and there is nothing to pass
/// on. (rmp's one infallible writer, `ByteBuf`, wraps a `Vec`, and
/// `RmpWrite` is sealed: a `BytesMut` cannot have one.)
fn written<T, E>(result: Result<T, E>) {
    let _always_ok = result;
}

// Here rather than with `Value` so that the value tree does not depend on
// its encoder.
impl Value {
    /// Its msgpack encoding, in a buffer allocated once at its exact final
    /// size (the minimal encodings Python's msgpack writes).
    pub fn to_bytes(&self) -> Bytes {
        encode_to_bytes(self)
    }

    /// Its msgpack encoding (the same bytes as [`Value::to_bytes`]), with
    /// every `bin` or `ext` value of at least [`Payload::SHARED_MIN_BYTES`]
    /// shared instead of copied, for models sent without a copy.
    pub fn to_payload(&self) -> Payload {
        super::payload::encode_payload(self)
    }

    /// The number of bytes its msgpack encoding takes (what
    /// [`Value::to_bytes`] writes), without encoding it.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self)
    }
}

/// The number of bytes [`encode_into`] writes for `v`, without writing it
/// (rmp does not compute lengths; this follows its choice of markers).
pub(crate) fn encoded_len(v: &Value) -> usize {
    match v {
        Value::Nil | Value::Bool(_) => 1,
        Value::UInt(u) => uint_len(*u),
        Value::Int(i) => match u64::try_from(*i) {
            Ok(u) => uint_len(u),
            Err(_) => negative_len(*i),
        },
        Value::F32(_) => 5,
        Value::F64(_) => 9,
        Value::Str(s) => (if s.len() < 32 { 1 } else { len_hdr(s.len()) }) + s.len(),
        Value::Bin(b) => len_hdr(b.len()) + b.len(),
        Value::Array(a) => hdr16(a.len()) + a.iter().map(encoded_len).sum::<usize>(),
        Value::Map(m) => {
            hdr16(m.len())
                + m.iter()
                    .map(|(k, v)| encoded_len(k) + encoded_len(v))
                    .sum::<usize>()
        }
        Value::Ext(_, d) => {
            let hdr = match d.len() {
                1 | 2 | 4 | 8 | 16 => 1,
                n => len_hdr(n),
            };
            hdr + 1 + d.len()
        }
    }
}

/// str8/16/32, bin8/16/32, ext8/16/32 headers.
fn len_hdr(n: usize) -> usize {
    if n < 0x100 {
        2
    } else if n < 0x10000 {
        3
    } else {
        5
    }
}

/// fix/16/32 headers of arrays and maps.
fn hdr16(n: usize) -> usize {
    if n < 16 {
        1
    } else if n < 0x10000 {
        3
    } else {
        5
    }
}

fn uint_len(u: u64) -> usize {
    if u < 0x80 {
        1
    } else if u < 0x100 {
        2
    } else if u < 0x10000 {
        3
    } else if u < 0x1_0000_0000 {
        5
    } else {
        9
    }
}

fn negative_len(i: i64) -> usize {
    if i >= -32 {
        1
    } else if i >= i64::from(i8::MIN) {
        2
    } else if i >= i64::from(i16::MIN) {
        3
    } else if i >= i64::from(i32::MIN) {
        5
    } else {
        9
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The hand-written encoder rmp replaced, kept as the reference the
    /// writer must match byte for byte.
    mod reference {
        use bytes::BufMut;

        use crate::wire::Value;

        pub(super) fn encode(v: &Value, out: &mut Vec<u8>) {
            match v {
                Value::Nil => out.put_u8(0xc0),
                Value::Bool(false) => out.put_u8(0xc2),
                Value::Bool(true) => out.put_u8(0xc3),
                Value::UInt(u) => uint(*u, out),
                Value::Int(i) => match u64::try_from(*i) {
                    Ok(u) => uint(u, out),
                    Err(_) => negative(*i, out),
                },
                Value::F32(f) => {
                    out.put_u8(0xca);
                    out.put_f32(*f);
                }
                Value::F64(f) => {
                    out.put_u8(0xcb);
                    out.put_f64(*f);
                }
                Value::Str(s) => {
                    let n = s.len();
                    if n < 32 {
                        out.put_u8(0xa0 | n as u8);
                    } else {
                        len_header(n, [0xd9, 0xda, 0xdb], out);
                    }
                    out.put_slice(s.as_bytes());
                }
                Value::Bin(b) => {
                    bin_header(b.len(), out);
                    out.put_slice(b);
                }
                Value::Array(a) => {
                    array_header(a.len(), out);
                    for item in a {
                        encode(item, out);
                    }
                }
                Value::Map(m) => {
                    map_header(m.len(), out);
                    for (k, v) in m {
                        encode(k, out);
                        encode(v, out);
                    }
                }
                Value::Ext(tag, data) => {
                    ext_header(*tag, data.len(), out);
                    out.put_slice(data);
                }
            }
        }

        pub(super) fn bin_header(n: usize, out: &mut Vec<u8>) {
            len_header(n, [0xc4, 0xc5, 0xc6], out);
        }

        pub(super) fn ext_header(tag: i8, n: usize, out: &mut Vec<u8>) {
            match n {
                1 => out.put_u8(0xd4),
                2 => out.put_u8(0xd5),
                4 => out.put_u8(0xd6),
                8 => out.put_u8(0xd7),
                16 => out.put_u8(0xd8),
                n => len_header(n, [0xc7, 0xc8, 0xc9], out),
            }
            out.put_u8(tag as u8);
        }

        pub(super) fn array_header(n: usize, out: &mut Vec<u8>) {
            if n < 16 {
                out.put_u8(0x90 | n as u8);
            } else {
                len_header16(n, [0xdc, 0xdd], out);
            }
        }

        pub(super) fn map_header(n: usize, out: &mut Vec<u8>) {
            if n < 16 {
                out.put_u8(0x80 | n as u8);
            } else {
                len_header16(n, [0xde, 0xdf], out);
            }
        }

        fn uint(u: u64, out: &mut Vec<u8>) {
            if u < 0x80 {
                out.put_u8(u as u8);
            } else if u < 0x100 {
                out.put_u8(0xcc);
                out.put_u8(u as u8);
            } else if u < 0x10000 {
                out.put_u8(0xcd);
                out.put_u16(u as u16);
            } else if u < 0x1_0000_0000 {
                out.put_u8(0xce);
                out.put_u32(u as u32);
            } else {
                out.put_u8(0xcf);
                out.put_u64(u);
            }
        }

        fn negative(i: i64, out: &mut Vec<u8>) {
            if i >= -32 {
                out.put_u8(i as u8);
            } else if i >= i64::from(i8::MIN) {
                out.put_u8(0xd0);
                out.put_u8(i as u8);
            } else if i >= i64::from(i16::MIN) {
                out.put_u8(0xd1);
                out.put_i16(i as i16);
            } else if i >= i64::from(i32::MIN) {
                out.put_u8(0xd2);
                out.put_i32(i as i32);
            } else {
                out.put_u8(0xd3);
                out.put_i64(i);
            }
        }

        fn len_header(n: usize, markers: [u8; 3], out: &mut Vec<u8>) {
            if n < 0x100 {
                out.put_u8(markers[0]);
                out.put_u8(n as u8);
            } else if n < 0x10000 {
                out.put_u8(markers[1]);
                out.put_u16(n as u16);
            } else {
                out.put_u8(markers[2]);
                out.put_u32(n as u32);
            }
        }

        fn len_header16(n: usize, markers: [u8; 2], out: &mut Vec<u8>) {
            if n < 0x10000 {
                out.put_u8(markers[0]);
                out.put_u16(n as u16);
            } else {
                out.put_u8(markers[1]);
                out.put_u32(n as u32);
            }
        }
    }

    fn reference_bytes(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        reference::encode(v, &mut out);
        out
    }

    /// Both writers (into a `Vec` and into a `BytesMut`) give the
    /// reference's bytes, and `encoded_len` their length.
    fn check(v: &Value) {
        let expected = reference_bytes(v);
        let bytes = encode_to_bytes(v);
        assert_eq!(&bytes[..], &expected[..], "{v:?}");
        let mut buf = BytesMut::new();
        assert_eq!(&encode_to_buf(v, &mut buf)[..], &expected[..], "{v:?}");
        assert_eq!(encoded_len(v), expected.len(), "encoded_len of {v:?}");
    }

    /// Lengths either side of every boundary between two encodings.
    const LENGTHS: [usize; 14] = [
        0, 1, 15, 16, 31, 32, 255, 256, 65_535, 65_536, 3, 17, 100, 70_000,
    ];

    #[test]
    fn integers_at_every_boundary_match_the_reference() {
        let mut uints = vec![0u64, u64::MAX];
        for edge in [0x80u64, 0x100, 0x1_0000, 0x1_0000_0000] {
            uints.extend([edge - 1, edge, edge + 1]);
        }
        for u in uints {
            check(&Value::UInt(u));
            if let Ok(i) = i64::try_from(u) {
                // a non-negative Int is written as uint
                check(&Value::Int(i));
            }
        }
        let mut ints = vec![-1i64, i64::MIN, i64::MIN + 1];
        for edge in [
            -32i64,
            i64::from(i8::MIN),
            i64::from(i16::MIN),
            i64::from(i32::MIN),
        ] {
            ints.extend([edge + 1, edge, edge - 1]);
        }
        for i in ints {
            check(&Value::Int(i));
        }
    }

    #[test]
    fn strings_bins_exts_arrays_and_maps_at_every_length_boundary_match_the_reference() {
        for n in LENGTHS {
            check(&Value::Str("s".repeat(n)));
            check(&Value::Bin(Bytes::from(vec![7u8; n])));
            check(&Value::Array(vec![Value::Nil; n]));
            check(&Value::Map(vec![(Value::Nil, Value::Bool(true)); n]));
        }
        for n in [
            0usize, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 255, 256, 65_535, 65_536,
        ] {
            for tag in [-128i8, -1, 0, 5, 127] {
                check(&Value::Ext(tag, Bytes::from(vec![1u8; n])));
            }
        }
    }

    #[test]
    fn headers_match_the_reference() {
        for n in LENGTHS {
            let mut ours = Vec::new();
            let mut theirs = Vec::new();
            bin_header(n, &mut ours);
            reference::bin_header(n, &mut theirs);
            array_header(n, &mut ours);
            reference::array_header(n, &mut theirs);
            map_header(n, &mut ours);
            reference::map_header(n, &mut theirs);
            for tag in [-3i8, 0, 9] {
                ext_header(tag, n, &mut ours);
                reference::ext_header(tag, n, &mut theirs);
            }
            assert_eq!(ours, theirs, "headers for length {n}");
        }
    }

    /// The encodings msgpack-python writes, spelled out.
    #[test]
    fn known_encodings() {
        let cases: [(Value, &[u8]); 16] = [
            (Value::Nil, &[0xc0]),
            (Value::Bool(true), &[0xc3]),
            (Value::UInt(127), &[0x7f]),
            (Value::UInt(128), &[0xcc, 0x80]),
            (Value::UInt(256), &[0xcd, 0x01, 0x00]),
            (Value::Int(5), &[0x05]),
            (Value::Int(-32), &[0xe0]),
            (Value::Int(-33), &[0xd0, 0xdf]),
            (Value::Int(-129), &[0xd1, 0xff, 0x7f]),
            (Value::F32(1.5), &[0xca, 0x3f, 0xc0, 0x00, 0x00]),
            (Value::F64(1.5), &[0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]),
            (Value::Str("ab".into()), &[0xa2, b'a', b'b']),
            (
                Value::Bin(Bytes::from_static(b"ab")),
                &[0xc4, 0x02, b'a', b'b'],
            ),
            (
                Value::Ext(1, Bytes::from_static(b"abcd")),
                &[0xd6, 0x01, b'a', b'b', b'c', b'd'],
            ),
            (
                Value::Ext(-1, Bytes::from_static(b"abc")),
                &[0xc7, 0x03, 0xff, b'a', b'b', b'c'],
            ),
            (
                Value::map([("a", Value::Array(vec![]))]),
                &[0x81, 0xa1, b'a', 0x90],
            ),
        ];
        for (v, bytes) in cases {
            assert_eq!(&encode_to_bytes(&v)[..], bytes, "{v:?}");
        }
        let s32 = encode_to_bytes(&Value::Str("x".repeat(32)));
        assert_eq!(&s32[..2], &[0xd9, 32]);
        let a16 = encode_to_bytes(&Value::Array(vec![Value::Nil; 16]));
        assert_eq!(&a16[..3], &[0xdc, 0x00, 0x10]);
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Nil),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<u64>().prop_map(Value::UInt),
            (0u32..40).prop_map(|bits| Value::UInt(1 << bits)),
            (0u32..63).prop_map(|bits| Value::Int(-(1 << bits))),
            any::<f32>().prop_map(Value::F32),
            any::<f64>().prop_map(Value::F64),
            ".{0,40}".prop_map(Value::Str),
            (0usize..70_000).prop_map(|n| Value::Str("s".repeat(n))),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(|v| Value::Bin(Bytes::from(v))),
            (0usize..70_000).prop_map(|n| Value::Bin(Bytes::from(vec![1u8; n]))),
            (any::<i8>(), prop::collection::vec(any::<u8>(), 0..20))
                .prop_map(|(t, v)| Value::Ext(t, Bytes::from(v))),
        ]
    }

    fn tree() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 64, 20, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..20).prop_map(Value::Array),
                prop::collection::vec((inner.clone(), inner), 0..20).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// NaN floats included: the bytes are compared, not the values.
        #[test]
        fn rmp_writes_the_bytes_of_the_hand_written_encoder(v in tree()) {
            let expected = reference_bytes(&v);
            let bytes = encode_to_bytes(&v);
            prop_assert!(bytes[..] == expected[..]);
            prop_assert_eq!(encoded_len(&v), expected.len());
            let mut buf = BytesMut::new();
            prop_assert!(encode_to_buf(&v, &mut buf)[..] == expected[..]);
        }
    }
}
