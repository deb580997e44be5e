//! serde between typed messages and [`Value`].
//!
//! [`to_value`] and [`from_value`] convert any serde type. A [`Value`] field
//! inside a typed message (model parameters, training arguments) moves through
//! them whole and unchanged: ext values, float32, bin slices and key order
//! survive, and a 100 MiB `bin` is never copied. This works by a private
//! newtype token: when [`Value`]'s own `Serialize`/`Deserialize` impls meet
//! this module's serializer/deserializer they hand the value over through a
//! thread-local slot instead of walking it (the serializer is recognised by its
//! type name, the deserializer by the token). With any other serde format
//! (serde_json, ...) they serialise the tree normally.

use std::cell::RefCell;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

use super::error::WireError;
use super::value::Value;

/// Newtype-struct name used to recognise a whole [`Value`] in transit.
const VALUE_TOKEN: &str = "$fedroute::wire::Value";

thread_local! {
    /// The value handed over between a `Value` impl and this module.
    static STASH: RefCell<Option<Value>> = const { RefCell::new(None) };
}

fn stash(v: Value) {
    STASH.with(|s| *s.borrow_mut() = Some(v));
}

fn unstash() -> Option<Value> {
    STASH.with(|s| s.borrow_mut().take())
}

/// Converts a serde type into a [`Value`] (structs become maps in field order;
/// `None` becomes nil; non-negative integers become [`Value::UInt`]).
pub fn to_value<T: Serialize + ?Sized>(t: &T) -> Result<Value, WireError> {
    t.serialize(ValueSerializer)
}

/// Converts a [`Value`] into a serde type. Unknown map keys are ignored
/// (unless the type denies them); missing `Option` fields become `None`.
pub fn from_value<T: de::DeserializeOwned>(v: Value) -> Result<T, WireError> {
    T::deserialize(v)
}

// ---------------------------------------------------------------------------
// Value: Serialize / Deserialize

impl Serialize for Value {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if std::any::type_name::<S>() == std::any::type_name::<ValueSerializer>() {
            stash(self.clone());
            return s.serialize_newtype_struct(VALUE_TOKEN, &());
        }
        use ser::{SerializeMap, SerializeSeq, SerializeTuple};
        match self {
            Value::Nil => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::UInt(u) => s.serialize_u64(*u),
            Value::F32(f) => s.serialize_f32(*f),
            Value::F64(f) => s.serialize_f64(*f),
            Value::Str(x) => s.serialize_str(x),
            Value::Bin(b) => s.serialize_bytes(b),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Map(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Value::Ext(tag, data) => {
                let mut t = s.serialize_tuple(2)?;
                t.serialize_element(tag)?;
                t.serialize_element(&BytesRef(data))?;
                t.end()
            }
        }
    }
}

struct BytesRef<'a>(&'a [u8]);
impl Serialize for BytesRef<'_> {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de> de::Deserialize<'de> for Value {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_newtype_struct(VALUE_TOKEN, ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any msgpack value")
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        // Our own deserializer stashes the whole value before calling visit_unit.
        Ok(unstash().unwrap_or(Value::Nil))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        de::Deserialize::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::from(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(Value::UInt(u))
    }
    fn visit_f32<E>(self, f: f32) -> Result<Value, E> {
        Ok(Value::F32(f))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::F64(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }
    fn visit_bytes<E>(self, b: &[u8]) -> Result<Value, E> {
        Ok(Value::Bin(Bytes::copy_from_slice(b)))
    }
    fn visit_byte_buf<E>(self, b: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bin(Bytes::from(b)))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some((k, v)) = map.next_entry()? {
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }
}

/// `#[serde(with = "fedroute::wire::bin")]` for [`Bytes`] fields that travel
/// as msgpack bin (Fed-BioMed `bytes`), without copying through [`to_value`]
/// and [`from_value`].
pub(crate) mod bin {
    use bytes::Bytes;
    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    use super::Value;

    /// Serialises the bytes as a msgpack bin.
    pub(crate) fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        Value::Bin(b.clone()).serialize(s)
    }

    /// Deserialises a msgpack bin.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        match Value::deserialize(d)? {
            Value::Bin(b) => Ok(b),
            Value::Array(a) => a
                .iter()
                .map(|v| v.as_u64().and_then(|u| u8::try_from(u).ok()))
                .collect::<Option<Vec<u8>>>()
                .map(Bytes::from)
                .ok_or_else(|| de::Error::custom("expected bin, found an array that is not bytes")),
            other => Err(de::Error::custom(format_args!(
                "expected bin, found {}",
                other.type_name()
            ))),
        }
    }
}

// ---------------------------------------------------------------------------
// Serializer: T -> Value

struct ValueSerializer;

fn int_value(i: i64) -> Value {
    Value::from(i)
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = WireError;
    type SerializeSeq = SeqSer;
    type SerializeTuple = SeqSer;
    type SerializeTupleStruct = SeqSer;
    type SerializeTupleVariant = VariantSer<SeqSer>;
    type SerializeMap = MapSer;
    type SerializeStruct = MapSer;
    type SerializeStructVariant = VariantSer<MapSer>;

    fn serialize_bool(self, v: bool) -> Result<Value, WireError> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, WireError> {
        Ok(int_value(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, WireError> {
        Ok(int_value(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, WireError> {
        Ok(int_value(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, WireError> {
        Ok(int_value(v))
    }
    fn serialize_i128(self, v: i128) -> Result<Value, WireError> {
        if let Ok(u) = u64::try_from(v) {
            Ok(Value::UInt(u))
        } else if let Ok(i) = i64::try_from(v) {
            Ok(Value::Int(i))
        } else {
            Err(WireError::Serde(format!(
                "integer {v} does not fit in 64 bits"
            )))
        }
    }
    fn serialize_u8(self, v: u8) -> Result<Value, WireError> {
        Ok(Value::UInt(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, WireError> {
        Ok(Value::UInt(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, WireError> {
        Ok(Value::UInt(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, WireError> {
        Ok(Value::UInt(v))
    }
    fn serialize_u128(self, v: u128) -> Result<Value, WireError> {
        u64::try_from(v)
            .map(Value::UInt)
            .map_err(|_| WireError::Serde(format!("integer {v} does not fit in 64 bits")))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, WireError> {
        Ok(Value::F32(v))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, WireError> {
        Ok(Value::F64(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, WireError> {
        Ok(Value::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, WireError> {
        Ok(Value::Str(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, WireError> {
        Ok(Value::Bin(Bytes::copy_from_slice(v)))
    }
    fn serialize_none(self) -> Result<Value, WireError> {
        Ok(Value::Nil)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Value, WireError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, WireError> {
        Ok(Value::Nil)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, WireError> {
        Ok(Value::Nil)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, WireError> {
        Ok(Value::Str(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<Value, WireError> {
        if name == VALUE_TOKEN {
            if let Some(v) = unstash() {
                return Ok(v);
            }
        }
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Value, WireError> {
        Ok(Value::Map(vec![(
            Value::Str(variant.to_owned()),
            v.serialize(ValueSerializer)?,
        )]))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSer, WireError> {
        Ok(SeqSer(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqSer, WireError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<SeqSer, WireError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantSer<SeqSer>, WireError> {
        Ok(VariantSer {
            variant,
            inner: SeqSer(Vec::with_capacity(len)),
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapSer, WireError> {
        Ok(MapSer {
            entries: Vec::with_capacity(len.unwrap_or(0)),
            key: None,
        })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<MapSer, WireError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantSer<MapSer>, WireError> {
        Ok(VariantSer {
            variant,
            inner: MapSer {
                entries: Vec::with_capacity(len),
                key: None,
            },
        })
    }
}

struct SeqSer(Vec<Value>);

impl ser::SerializeSeq for SeqSer {
    type Ok = Value;
    type Error = WireError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), WireError> {
        self.0.push(v.serialize(ValueSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, WireError> {
        Ok(Value::Array(self.0))
    }
}
impl ser::SerializeTuple for SeqSer {
    type Ok = Value;
    type Error = WireError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), WireError> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Value, WireError> {
        ser::SerializeSeq::end(self)
    }
}
impl ser::SerializeTupleStruct for SeqSer {
    type Ok = Value;
    type Error = WireError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), WireError> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Value, WireError> {
        ser::SerializeSeq::end(self)
    }
}

struct MapSer {
    entries: Vec<(Value, Value)>,
    key: Option<Value>,
}

impl ser::SerializeMap for MapSer {
    type Ok = Value;
    type Error = WireError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), WireError> {
        self.key = Some(k.serialize(ValueSerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), WireError> {
        let k = self
            .key
            .take()
            .ok_or_else(|| WireError::Serde("map value serialised before its key".into()))?;
        self.entries.push((k, v.serialize(ValueSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Value, WireError> {
        Ok(Value::Map(self.entries))
    }
}
impl ser::SerializeStruct for MapSer {
    type Ok = Value;
    type Error = WireError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), WireError> {
        self.entries
            .push((Value::Str(key.to_owned()), v.serialize(ValueSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Value, WireError> {
        Ok(Value::Map(self.entries))
    }
}

struct VariantSer<I> {
    variant: &'static str,
    inner: I,
}

impl ser::SerializeTupleVariant for VariantSer<SeqSer> {
    type Ok = Value;
    type Error = WireError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), WireError> {
        ser::SerializeSeq::serialize_element(&mut self.inner, v)
    }
    fn end(self) -> Result<Value, WireError> {
        Ok(Value::Map(vec![(
            Value::Str(self.variant.to_owned()),
            Value::Array(self.inner.0),
        )]))
    }
}
impl ser::SerializeStructVariant for VariantSer<MapSer> {
    type Ok = Value;
    type Error = WireError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), WireError> {
        ser::SerializeStruct::serialize_field(&mut self.inner, key, v)
    }
    fn end(self) -> Result<Value, WireError> {
        Ok(Value::Map(vec![(
            Value::Str(self.variant.to_owned()),
            Value::Map(self.inner.entries),
        )]))
    }
}

// ---------------------------------------------------------------------------
// Deserializer: Value -> T

impl<'de> de::Deserializer<'de> for Value {
    type Error = WireError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WireError> {
        match self {
            Value::Nil => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Int(i) => visitor.visit_i64(i),
            Value::UInt(u) => visitor.visit_u64(u),
            Value::F32(f) => visitor.visit_f32(f),
            Value::F64(f) => visitor.visit_f64(f),
            Value::Str(s) => visitor.visit_string(s),
            Value::Bin(b) => visitor.visit_byte_buf(b.to_vec()),
            Value::Array(a) => {
                let len = a.len();
                let mut seq = SeqDe(a.into_iter(), 0);
                let out = visitor.visit_seq(&mut seq)?;
                if seq.0.len() != 0 {
                    return Err(de::Error::invalid_length(len, &"fewer elements"));
                }
                Ok(out)
            }
            Value::Map(m) => visitor.visit_map(MapDe {
                iter: m.into_iter(),
                value: None,
                key: String::new(),
            }),
            Value::Ext(tag, data) => {
                let mut seq = SeqDe(
                    vec![Value::from(i64::from(tag)), Value::Bin(data)].into_iter(),
                    0,
                );
                visitor.visit_seq(&mut seq)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WireError> {
        match self {
            Value::Nil => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, WireError> {
        if name == VALUE_TOKEN {
            stash(self);
            let out = visitor.visit_unit();
            // The visitor took it; clear the slot in case a foreign visitor did not.
            let _ = unstash();
            return out;
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WireError> {
        match self {
            Value::Str(s) => visitor.visit_enum(s.into_deserializer()),
            Value::Map(m) if m.len() == 1 => {
                let mut it = m.into_iter();
                // len == 1 was just checked
                let Some((k, v)) = it.next() else {
                    return Err(WireError::Serde("empty enum map".into()));
                };
                visitor.visit_enum(EnumDe {
                    variant: k,
                    value: v,
                })
            }
            other => Err(de::Error::invalid_type(unexpected(&other), &"an enum")),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WireError> {
        match self {
            Value::Bin(b) => visitor.visit_byte_buf(b.to_vec()),
            Value::Str(s) => visitor.visit_string(s),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WireError> {
        self.deserialize_bytes(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Nil => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Int(i) => de::Unexpected::Signed(*i),
        Value::UInt(u) => de::Unexpected::Unsigned(*u),
        Value::F32(f) => de::Unexpected::Float(f64::from(*f)),
        Value::F64(f) => de::Unexpected::Float(*f),
        Value::Str(s) => de::Unexpected::Str(s),
        Value::Bin(b) => de::Unexpected::Bytes(b),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Map(_) => de::Unexpected::Map,
        Value::Ext(..) => de::Unexpected::Other("ext"),
    }
}

struct SeqDe(std::vec::IntoIter<Value>, usize);

impl<'de> de::SeqAccess<'de> for SeqDe {
    type Error = WireError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, WireError> {
        match self.0.next() {
            Some(v) => {
                let i = self.1;
                self.1 += 1;
                seed.deserialize(v)
                    .map(Some)
                    .map_err(|e| e.in_field(&format!("[{i}]")))
            }
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct MapDe {
    iter: std::vec::IntoIter<(Value, Value)>,
    value: Option<Value>,
    /// The current key as text, for error paths.
    key: String,
}

impl<'de> de::MapAccess<'de> for MapDe {
    type Error = WireError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, WireError> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                self.key = match &k {
                    Value::Str(s) => s.clone(),
                    other => format!("<{}>", other.type_name()),
                };
                seed.deserialize(k).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, WireError> {
        match self.value.take() {
            Some(v) => seed.deserialize(v).map_err(|e| e.in_field(&self.key)),
            None => Err(WireError::Serde(
                "map value requested before its key".into(),
            )),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct EnumDe {
    variant: Value,
    value: Value,
}

impl<'de> de::EnumAccess<'de> for EnumDe {
    type Error = WireError;
    type Variant = Value;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Value), WireError> {
        Ok((seed.deserialize(self.variant)?, self.value))
    }
}

impl<'de> de::VariantAccess<'de> for Value {
    type Error = WireError;
    fn unit_variant(self) -> Result<(), WireError> {
        match self {
            Value::Nil => Ok(()),
            other => Err(de::Error::invalid_type(
                unexpected(&other),
                &"a unit variant",
            )),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, WireError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, WireError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WireError> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Inner {
        a: u32,
        b: Option<String>,
        c: Vec<i64>,
        #[serde(with = "bin")]
        d: Bytes,
        e: Value,
        f: f64,
    }

    #[test]
    fn struct_round_trips_in_field_order_and_keeps_values_whole() {
        let payload = Bytes::from(vec![9u8; 64]);
        let inner = Inner {
            a: 7,
            b: None,
            c: vec![-1, 2],
            d: payload.clone(),
            e: Value::map([
                ("x", Value::Ext(5, Bytes::from_static(b"ab"))),
                ("y", Value::F32(0.5)),
                ("z", Value::Bin(payload.clone())),
            ]),
            f: 1.0,
        };
        let v = to_value(&inner).unwrap();
        let keys: Vec<_> = v
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str().unwrap())
            .collect();
        assert_eq!(keys, ["a", "b", "c", "d", "e", "f"]);
        assert_eq!(v.get("b"), Some(&Value::Nil));
        assert_eq!(v.get("c").unwrap().as_array().unwrap()[0], Value::Int(-1));
        // no copy: the Bin in the value is the same allocation
        assert_eq!(
            v.get("d").unwrap().as_bin().unwrap().as_ptr(),
            payload.as_ptr()
        );
        let z = v.get("e").unwrap().get("z").unwrap().as_bin().unwrap();
        assert_eq!(z.as_ptr(), payload.as_ptr());
        let back: Inner = from_value(v).unwrap();
        assert_eq!(back.d.as_ptr(), payload.as_ptr());
        assert_eq!(
            back.e.get("z").unwrap().as_bin().unwrap().as_ptr(),
            payload.as_ptr()
        );
        assert_eq!(back, inner);
    }

    #[test]
    fn wrong_types_are_errors() {
        let v = Value::map([("a", Value::Str("no".into()))]);
        let r: Result<Inner, _> = from_value(v);
        assert!(
            matches!(r, Err(WireError::WrongType { ref field, ref found, .. }) if field == "a" && found.contains("no")),
            "{r:?}"
        );
        let v = Value::map([("c", Value::Array(vec![Value::UInt(1), Value::from("x")]))]);
        let r: Result<Inner, _> = from_value(v);
        assert!(
            matches!(r, Err(WireError::WrongType { ref field, .. }) if field == "c[1]"),
            "{r:?}"
        );
        let r: Result<Inner, _> = from_value(Value::map([("a", Value::UInt(1))]));
        assert!(
            matches!(r, Err(WireError::MissingField { field: "c", .. })),
            "{r:?}"
        );
    }

    #[test]
    fn value_serialises_normally_to_other_formats() {
        let v = Value::map([("k", Value::Array(vec![Value::UInt(1), Value::Nil]))]);
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"k":[1,null]}"#);
        let back: Value = serde_json::from_str(r#"{"k":[1,null,-2]}"#).unwrap();
        assert_eq!(
            back.get("k").unwrap().as_array().unwrap()[2],
            Value::Int(-2)
        );
    }
}
