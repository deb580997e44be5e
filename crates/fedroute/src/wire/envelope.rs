//! Any Fed-BioMed message, lossless.
//!
//! A message is a msgpack map whose `__type_message__` entry names its class.
//! The envelope keeps the decoded tree and, until it is modified, the original
//! bytes: a router relays a message it does not understand byte for byte.

use bytes::{Bytes, BytesMut};

use super::echo::echo;
use super::encode::encode_to_buf;
use super::error::WireError;
use super::limits::DecodeLimits;
use super::message::{Fields, Typed};
use super::payload::Payload;
use super::value::Value;
use super::version::check_version;

/// The key naming a message's class.
pub const TYPE_MESSAGE_KEY: &str = "__type_message__";
/// The `module` Fed-BioMed writes in `__type_message__` (receivers ignore it).
pub const MESSAGE_MODULE: &str = "fedbiomed.common.message";

/// A decoded Fed-BioMed message. `Debug` shows the value tree with binary
/// data abbreviated (see [`Value`]).
#[derive(Clone)]
pub struct Envelope {
    value: Value,
    /// The bytes `value` was decoded from, while unmodified.
    raw: Option<Bytes>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("class", &self.class())
            .field("raw_len", &self.raw.as_ref().map(Bytes::len))
            .field("value", &self.value)
            .finish()
    }
}

impl PartialEq for Envelope {
    /// Envelopes are equal when their value trees are.
    fn eq(&self, other: &Envelope) -> bool {
        self.value == other.value
    }
}

impl Envelope {
    /// Decodes a message payload: one msgpack map with a
    /// `__type_message__.class` string, within the default [`DecodeLimits`].
    pub fn decode(raw: Bytes) -> Result<Envelope, WireError> {
        Envelope::decode_with(raw, &DecodeLimits::default())
    }

    /// Decodes a message payload within `limits` (see `super::limits`).
    pub fn decode_with(raw: Bytes, limits: &DecodeLimits) -> Result<Envelope, WireError> {
        let value = Value::decode_with(&raw, limits)?;
        validate(&value)?;
        Ok(Envelope {
            value,
            raw: Some(raw),
        })
    }

    /// Wraps a value tree (validated like [`Envelope::decode`]).
    pub fn from_value(value: Value) -> Result<Envelope, WireError> {
        validate(&value)?;
        Ok(Envelope { value, raw: None })
    }

    /// The payload bytes: the original ones when the envelope was decoded and
    /// not modified (a cheap clone), otherwise a fresh encoding.
    pub fn to_bytes(&self) -> Bytes {
        match &self.raw {
            Some(raw) => raw.clone(),
            None => self.value.to_bytes(),
        }
    }

    /// The payload to send: the original bytes when the envelope was decoded
    /// and not modified, otherwise an encoding that shares every large `bin`
    /// value (a model's parameters) instead of copying it; see
    /// `super::payload`. The bytes are the same as [`Envelope::to_bytes`]'s.
    pub fn to_payload(&self) -> Payload {
        match &self.raw {
            Some(raw) => Payload::from(raw.clone()),
            None => self.value.to_payload(),
        }
    }

    /// Like [`Envelope::to_bytes`], but a fresh encoding goes into `buf`,
    /// reusing its allocation when possible (see `super::encode::encode_to_buf`).
    pub fn to_bytes_in(&self, buf: &mut BytesMut) -> Bytes {
        match &self.raw {
            Some(raw) => raw.clone(),
            None => encode_to_buf(&self.value, buf),
        }
    }

    /// The value tree.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Consumes the envelope, returning its value tree.
    pub fn into_value(self) -> Value {
        self.value
    }

    /// The message class (`__type_message__.class`); empty if a [`Envelope::set`]
    /// replaced `__type_message__` with something else.
    pub fn class(&self) -> &str {
        self.value
            .get(TYPE_MESSAGE_KEY)
            .and_then(|t| t.get("class"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The `protocol_version` string.
    pub fn protocol_version(&self) -> Option<&str> {
        self.get_str("protocol_version")
    }

    /// The `researcher_id` string.
    pub fn researcher_id(&self) -> Option<&str> {
        self.get_str("researcher_id")
    }

    /// The `request_id` string (requests and replies; not overlay messages).
    pub fn request_id(&self) -> Option<&str> {
        self.get_str("request_id")
    }

    /// The `node_id` string (replies and overlay messages).
    pub fn node_id(&self) -> Option<&str> {
        self.get_str("node_id")
    }

    /// The `dest_node_id` string (overlay messages).
    pub fn dest_node_id(&self) -> Option<&str> {
        self.get_str("dest_node_id")
    }

    /// A top-level field.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.value.get(key)
    }

    fn get_str(&self, key: &str) -> Option<&str> {
        self.value.get(key).and_then(Value::as_str)
    }

    /// Sets a top-level field, keeping the key order: an existing key keeps
    /// its place, a new key goes just before `__type_message__`. The envelope
    /// then re-encodes on [`Envelope::to_bytes`].
    pub fn set(&mut self, key: &str, v: Value) {
        self.raw = None;
        if let Some(slot) = self.value.get_mut(key) {
            *slot = v;
            return;
        }
        if let Value::Map(entries) = &mut self.value {
            let at = entries
                .iter()
                .position(|(k, _)| k.as_str() == Some(TYPE_MESSAGE_KEY))
                .unwrap_or(entries.len());
            entries.insert(at, (Value::Str(key.to_owned()), v));
        }
    }

    /// Checks `protocol_version` as Fed-BioMed does (see `super::version`);
    /// an older minor version is accepted.
    pub fn check_version(&self) -> Result<(), WireError> {
        let theirs = self
            .protocol_version()
            .ok_or_else(|| WireError::MissingProtocolVersion {
                class: echo(self.class()),
            })?;
        check_version(theirs)?;
        Ok(())
    }

    /// Builds the envelope of a typed message: its fields in wire order
    /// ([`Typed::write_fields`]), then `__type_message__`. A `bin` or a
    /// [`Value`] field is shared, not copied. Writing a message cannot fail;
    /// the `Result` is kept for the callers that already handle one.
    pub fn from_typed<T: Typed>(t: &T) -> Result<Envelope, WireError> {
        let mut entries = Vec::with_capacity(T::FIELDS.len() + 1);
        t.write_fields(&mut entries);
        entries.push((
            Value::Str(TYPE_MESSAGE_KEY.to_owned()),
            Value::map([
                ("module", Value::Str(MESSAGE_MODULE.to_owned())),
                ("class", Value::Str(T::CLASS.to_owned())),
            ]),
        ));
        Ok(Envelope {
            value: Value::Map(entries),
            raw: None,
        })
    }

    /// Reads the envelope as typed message `T` (its class must be `T::CLASS`;
    /// unknown fields are ignored, see [`Fields::get`]). `bin` data is
    /// shared with the envelope, not copied.
    pub fn to_typed<T: Typed>(&self) -> Result<T, WireError> {
        if self.class() != T::CLASS {
            return Err(WireError::WrongClass {
                expected: T::CLASS,
                found: echo(self.class()),
            });
        }
        let entries = self.value.as_map().unwrap_or_default();
        T::read_fields(&Fields::new(T::CLASS, entries))
    }
}

fn validate(value: &Value) -> Result<(), WireError> {
    if value.as_map().is_none() {
        return Err(WireError::NotAMap {
            found: value.type_name(),
        });
    }
    let t = value
        .get(TYPE_MESSAGE_KEY)
        .ok_or(WireError::MissingTypeMessage)?;
    match t.get("class") {
        Some(Value::Str(_)) => Ok(()),
        Some(other) => Err(WireError::BadTypeMessage {
            found: format!("a `class` of type {}", other.type_name()),
        }),
        None if t.as_map().is_some() => Err(WireError::BadTypeMessage {
            found: "a map without `class`".to_owned(),
        }),
        None => Err(WireError::BadTypeMessage {
            found: t.type_name().to_owned(),
        }),
    }
}
