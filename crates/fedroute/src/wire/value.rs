//! The msgpack value tree.
//!
//! Fed-BioMed packs messages with msgpack-python (`use_bin_type=True`, strict
//! types). A router must hand on messages it does not understand unchanged, so
//! payloads are decoded into a generic tree first: map key order, str versus
//! bin, float32 versus float64 and ext values are all kept, and
//! `super::encode` writes the minimal encodings msgpack-python writes, so
//! decoding then encoding any payload msgpack-python produced gives back the
//! same bytes.
//!
//! [`Value::Bin`] holds a [`Bytes`] slice of the decoded buffer: decoding a
//! 100 MiB model copies none of its parameter bytes.

use bytes::Bytes;

use super::error::WireError;
use super::limits::{DecodeLimits, TreeBudget};

/// Bytes of memory one decoded value takes in its parent's array or map.
pub(super) const TREE_NODE_BYTES: usize = std::mem::size_of::<Value>();

/// A msgpack value.
///
/// `Debug` shows `bin` and `ext` data as their length and first bytes, so
/// logging a message never dumps a 100 MiB model. Not `non_exhaustive`:
/// these are msgpack's types, all of them, and matching on them whole is the
/// point.
#[derive(Clone, PartialEq)]
pub enum Value {
    /// nil (Python `None`).
    Nil,
    /// true / false.
    Bool(bool),
    /// A negative integer (the decoder puts every non-negative integer in [`Value::UInt`]).
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    /// float 32.
    F32(f32),
    /// float 64 (Python `float`).
    F64(f64),
    /// str.
    Str(String),
    /// bin: a slice of the decoded buffer, never a copy.
    Bin(Bytes),
    /// array (Python `list`, `tuple`).
    Array(Vec<Value>),
    /// map, in wire order (Python `dict`).
    Map(Vec<(Value, Value)>),
    /// ext: type tag and data.
    Ext(i8, Bytes),
}

/// How many leading bytes of bin/ext data `Debug` shows.
const DEBUG_PREFIX: usize = 8;

struct BytesPreview<'a>(&'a [u8]);

impl std::fmt::Debug for BytesPreview<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes", self.0.len())?;
        if !self.0.is_empty() {
            f.write_str(": ")?;
            for b in self.0.iter().take(DEBUG_PREFIX) {
                write!(f, "{b:02x}")?;
            }
            if self.0.len() > DEBUG_PREFIX {
                f.write_str("..")?;
            }
        }
        f.write_str(">")
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Nil => f.write_str("Nil"),
            Value::Bool(b) => f.debug_tuple("Bool").field(b).finish(),
            Value::Int(i) => f.debug_tuple("Int").field(i).finish(),
            Value::UInt(u) => f.debug_tuple("UInt").field(u).finish(),
            Value::F32(x) => f.debug_tuple("F32").field(x).finish(),
            Value::F64(x) => f.debug_tuple("F64").field(x).finish(),
            Value::Str(s) => f.debug_tuple("Str").field(s).finish(),
            Value::Bin(b) => f.debug_tuple("Bin").field(&BytesPreview(b)).finish(),
            Value::Array(a) => f.debug_tuple("Array").field(a).finish(),
            Value::Map(m) => f.debug_tuple("Map").field(m).finish(),
            Value::Ext(t, b) => f
                .debug_tuple("Ext")
                .field(t)
                .field(&BytesPreview(b))
                .finish(),
        }
    }
}

impl Value {
    /// The msgpack type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::UInt(_) => "int",
            Value::F32(_) => "float32",
            Value::F64(_) => "float64",
            Value::Str(_) => "str",
            Value::Bin(_) => "bin",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Ext(..) => "ext",
        }
    }

    /// The string, if this is a str.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The integer as `u64`, if this is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::UInt(u) => Some(*u),
            Value::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    }

    /// The integer as `i64`, if this is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::UInt(u) => i64::try_from(*u).ok(),
            _ => None,
        }
    }

    /// The number as `f64`, if this is a float or an integer.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::F64(f) => Some(*f),
            Value::F32(f) => Some(f64::from(*f)),
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            _ => None,
        }
    }

    /// The bytes, if this is a bin.
    pub fn as_bin(&self) -> Option<&Bytes> {
        match self {
            Value::Bin(b) => Some(b),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The entries, if this is a map.
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Whether this is nil.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// Map lookup by string key: the value of the first entry whose key is the
    /// str `key`; `None` if this is not a map or has no such key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Mutable map lookup by string key.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        match self {
            Value::Map(m) => m
                .iter_mut()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A map with string keys, in the given order.
    pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::Str(k.into()), v))
                .collect(),
        )
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<u64> for Value {
    fn from(u: u64) -> Value {
        Value::UInt(u)
    }
}
impl From<i64> for Value {
    /// Non-negative integers become [`Value::UInt`], negative ones [`Value::Int`].
    fn from(i: i64) -> Value {
        match u64::try_from(i) {
            Ok(u) => Value::UInt(u),
            Err(_) => Value::Int(i),
        }
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::F64(f)
    }
}
impl From<Bytes> for Value {
    fn from(b: Bytes) -> Value {
        Value::Bin(b)
    }
}
impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Value {
        Value::Array(a)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    /// `None` becomes nil.
    fn from(o: Option<T>) -> Value {
        o.map_or(Value::Nil, Into::into)
    }
}

// ---------------------------------------------------------------------------
// decoding

impl Value {
    /// Decodes a buffer that holds exactly one msgpack value, within the
    /// default [`DecodeLimits`]; see [`Value::decode_with`].
    pub fn decode(buf: &Bytes) -> Result<Value, WireError> {
        decode_with(buf, &DecodeLimits::default())
    }

    /// Decodes a buffer that holds exactly one msgpack value.
    ///
    /// `bin` and `ext` data are slices of `buf` (no copy). Nothing is
    /// reserved on a claim: an array, map or string longer than the rest of
    /// the input could hold is [`WireError::Truncated`] at once, and one
    /// whose decoded form would take the tree past
    /// [`DecodeLimits::tree_budget`] is [`WireError::TreeTooLarge`] before it
    /// is allocated (see `super::limits`). Nesting deeper than
    /// `limits.max_depth` is [`WireError::TooDeep`]; every other violation is
    /// its own [`WireError`] variant.
    pub fn decode_with(buf: &Bytes, limits: &DecodeLimits) -> Result<Value, WireError> {
        decode_with(buf, limits)
    }
}

fn decode_with(buf: &Bytes, limits: &DecodeLimits) -> Result<Value, WireError> {
    let mut d = Decoder {
        buf,
        pos: 0,
        max_depth: limits.max_depth,
        budget: TreeBudget::new(limits, buf.len()),
    };
    let v = d.value(0)?;
    if d.pos != buf.len() {
        return Err(WireError::TrailingBytes {
            offset: d.pos,
            trailing: buf.len() - d.pos,
        });
    }
    Ok(v)
}

struct Decoder<'a> {
    buf: &'a Bytes,
    pos: usize,
    max_depth: usize,
    budget: TreeBudget,
}

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        let available = self.buf.len() - self.pos;
        if n > available {
            return Err(WireError::Truncated {
                offset: self.pos,
                needed: n,
                available,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn take_bytes(&mut self, n: usize) -> Result<Bytes, WireError> {
        let start = self.pos;
        self.take(n)?;
        Ok(self.buf.slice(start..start + n))
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn be<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn len8(&mut self) -> Result<usize, WireError> {
        Ok(usize::from(self.u8()?))
    }
    fn len16(&mut self) -> Result<usize, WireError> {
        Ok(usize::from(u16::from_be_bytes(self.be()?)))
    }
    fn len32(&mut self) -> Result<usize, WireError> {
        // u32 always fits usize on the 32- and 64-bit targets we support.
        Ok(u32::from_be_bytes(self.be()?) as usize)
    }

    fn str(&mut self, len: usize) -> Result<Value, WireError> {
        let offset = self.pos;
        self.claim(len, 1, 1)?;
        let bytes = self.take(len)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Value::Str(s.to_owned())),
            Err(_) => Err(WireError::InvalidUtf8 { offset, len }),
        }
    }

    /// Checks a claim of `len` items that take at least `min_bytes` of input
    /// each and `tree_bytes` of tree each, before anything is reserved.
    fn claim(&mut self, len: usize, min_bytes: usize, tree_bytes: usize) -> Result<(), WireError> {
        let available = self.buf.len() - self.pos;
        let needed = len.saturating_mul(min_bytes);
        if needed > available {
            return Err(WireError::Truncated {
                offset: self.pos,
                needed,
                available,
            });
        }
        self.budget.charge(len, tree_bytes, self.pos)
    }

    fn array(&mut self, len: usize, depth: usize, start: usize) -> Result<Value, WireError> {
        self.check_depth(depth, start)?;
        self.claim(len, 1, TREE_NODE_BYTES)?;
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize, start: usize) -> Result<Value, WireError> {
        self.check_depth(depth, start)?;
        self.claim(len, 2, 2 * TREE_NODE_BYTES)?;
        let mut entries = Vec::with_capacity(len);
        for _ in 0..len {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }

    fn check_depth(&self, depth: usize, offset: usize) -> Result<(), WireError> {
        if depth >= self.max_depth {
            return Err(WireError::TooDeep {
                limit: self.max_depth,
                offset,
            });
        }
        Ok(())
    }

    fn ext(&mut self, len: usize) -> Result<Value, WireError> {
        let tag = i8::from_be_bytes(self.be()?);
        Ok(Value::Ext(tag, self.take_bytes(len)?))
    }

    fn value(&mut self, depth: usize) -> Result<Value, WireError> {
        let start = self.pos;
        let m = self.u8()?;
        Ok(match m {
            0x00..=0x7f => Value::UInt(u64::from(m)),
            0x80..=0x8f => return self.map(usize::from(m & 0x0f), depth, start),
            0x90..=0x9f => return self.array(usize::from(m & 0x0f), depth, start),
            0xa0..=0xbf => return self.str(usize::from(m & 0x1f)),
            0xc0 => Value::Nil,
            0xc1 => {
                return Err(WireError::ReservedMarker {
                    byte: m,
                    offset: start,
                })
            }
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 => {
                let n = self.len8()?;
                Value::Bin(self.take_bytes(n)?)
            }
            0xc5 => {
                let n = self.len16()?;
                Value::Bin(self.take_bytes(n)?)
            }
            0xc6 => {
                let n = self.len32()?;
                Value::Bin(self.take_bytes(n)?)
            }
            0xc7 => {
                let n = self.len8()?;
                return self.ext(n);
            }
            0xc8 => {
                let n = self.len16()?;
                return self.ext(n);
            }
            0xc9 => {
                let n = self.len32()?;
                return self.ext(n);
            }
            0xca => Value::F32(f32::from_be_bytes(self.be()?)),
            0xcb => Value::F64(f64::from_be_bytes(self.be()?)),
            0xcc => Value::UInt(u64::from(self.u8()?)),
            0xcd => Value::UInt(u64::from(u16::from_be_bytes(self.be()?))),
            0xce => Value::UInt(u64::from(u32::from_be_bytes(self.be()?))),
            0xcf => Value::UInt(u64::from_be_bytes(self.be()?)),
            0xd0 => Value::from(i64::from(i8::from_be_bytes(self.be()?))),
            0xd1 => Value::from(i64::from(i16::from_be_bytes(self.be()?))),
            0xd2 => Value::from(i64::from(i32::from_be_bytes(self.be()?))),
            0xd3 => Value::from(i64::from_be_bytes(self.be()?)),
            0xd4 => return self.ext(1),
            0xd5 => return self.ext(2),
            0xd6 => return self.ext(4),
            0xd7 => return self.ext(8),
            0xd8 => return self.ext(16),
            0xd9 => {
                let n = self.len8()?;
                return self.str(n);
            }
            0xda => {
                let n = self.len16()?;
                return self.str(n);
            }
            0xdb => {
                let n = self.len32()?;
                return self.str(n);
            }
            0xdc => {
                let n = self.len16()?;
                return self.array(n, depth, start);
            }
            0xdd => {
                let n = self.len32()?;
                return self.array(n, depth, start);
            }
            0xde => {
                let n = self.len16()?;
                return self.map(n, depth, start);
            }
            0xdf => {
                let n = self.len32()?;
                return self.map(n, depth, start);
            }
            0xe0..=0xff => Value::Int(i64::from(m as i8)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::encode::encoded_len;

    fn roundtrip(v: Value) {
        let b = v.to_bytes();
        assert_eq!(b.len(), encoded_len(&v), "encoded_len of {v:?}");
        // Arrays of nils are what the default limits refuse; these test the
        // encodings, so any tree is allowed.
        let any_tree = DecodeLimits {
            max_tree_bytes: usize::MAX,
            tree_bytes_floor: usize::MAX,
            ..DecodeLimits::default()
        };
        assert_eq!(Value::decode_with(&b, &any_tree).unwrap(), v);
    }

    #[test]
    fn scalars_round_trip_with_minimal_encodings() {
        for u in [
            0u64,
            1,
            127,
            128,
            255,
            256,
            65535,
            65536,
            u32::MAX as u64,
            u64::MAX,
        ] {
            roundtrip(Value::UInt(u));
        }
        for i in [
            -1i64,
            -32,
            -33,
            -128,
            -129,
            -32768,
            -32769,
            i32::MIN as i64,
            i64::MIN,
        ] {
            roundtrip(Value::Int(i));
        }
        roundtrip(Value::F32(1.5));
        roundtrip(Value::F64(-2.25));
        roundtrip(Value::Nil);
        roundtrip(Value::Bool(true));
        for n in [0usize, 31, 32, 255, 256, 65536] {
            roundtrip(Value::Str("x".repeat(n)));
            roundtrip(Value::Bin(Bytes::from(vec![7u8; n])));
            roundtrip(Value::Array(vec![Value::Nil; n.min(70000)]));
        }
        for n in [0usize, 1, 2, 3, 4, 8, 16, 17, 300] {
            roundtrip(Value::Ext(-3, Bytes::from(vec![1u8; n])));
        }
        let b = Value::to_bytes(&Value::Int(-1));
        assert_eq!(&b[..], &[0xff]);
    }

    #[test]
    fn debug_shows_only_a_prefix_of_binary_data() {
        let v = Value::Bin(Bytes::from(vec![0xabu8; 1 << 20]));
        assert_eq!(format!("{v:?}"), "Bin(<1048576 bytes: abababababababab..>)");
        assert_eq!(
            format!("{:?}", Value::Ext(1, Bytes::new())),
            "Ext(1, <0 bytes>)"
        );
    }

    #[test]
    fn bin_values_slice_the_input() {
        let v = Value::map([("blob", Value::Bin(Bytes::from(vec![3u8; 1000])))]);
        let buf = v.to_bytes();
        let decoded = Value::decode(&buf).unwrap();
        let bin = decoded.get("blob").and_then(Value::as_bin).unwrap();
        let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
        assert!(range.contains(&(bin.as_ptr() as usize)));
    }
}
