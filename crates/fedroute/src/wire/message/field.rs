//! How each field of a typed message is written as a [`Value`] and read back.
//!
//! [`FieldValue`] is implemented for the types the messages' fields have;
//! [`Fields`] finds a message's fields by name in its map. `typed!` builds
//! both directions of a message from these two.

use bytes::Bytes;

use crate::wire::echo::echo;
use crate::wire::{Value, WireError};

/// A type a typed message's field can have: how it is written as a
/// [`Value`] and read back from one.
///
/// Reading takes the value by reference and clones what it keeps: a
/// [`Value`] or [`Bytes`] field clones the [`Bytes`] handles of its `bin`
/// and `ext` data, never the data.
pub trait FieldValue: Sized {
    /// The field as a value (`None` is nil).
    fn to_value(&self) -> Value;

    /// Reads the field from its value. A value of the wrong type is a
    /// [`WireError::WrongType`] whose `field` is empty or the path inside
    /// this value (`[1]`); [`Fields::get`] puts the field's name in front.
    fn from_value(v: &Value) -> Result<Self, WireError>;

    /// The field's value when the message has no such field: `None` (the
    /// field is required, [`WireError::MissingField`]) except for `Option`,
    /// where a missing field is `None`.
    fn absent() -> Option<Self> {
        None
    }
}

/// The fields of a message, found by name in its map entries (the keys
/// that are strings; other entries, and `__type_message__`, are never
/// asked for).
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    class: &'static str,
    entries: &'a [(Value, Value)],
}

impl<'a> Fields<'a> {
    /// The fields of a `class` message whose map has these `entries`.
    pub fn new(class: &'static str, entries: &'a [(Value, Value)]) -> Fields<'a> {
        Fields { class, entries }
    }

    /// Reads field `name`: [`WireError::MissingField`] when it is absent
    /// (unless `T` is an `Option`), [`WireError::DuplicateField`] when the
    /// map has it twice, [`WireError::WrongType`] naming the field when its
    /// value has another type.
    pub fn get<T: FieldValue>(&self, name: &'static str) -> Result<T, WireError> {
        let mut found = self
            .entries
            .iter()
            .filter(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v);
        match (found.next(), found.next()) {
            (Some(v), None) => T::from_value(v).map_err(|e| e.in_field(name)),
            (Some(_), Some(_)) => Err(WireError::DuplicateField {
                class: self.class.to_owned(),
                field: name,
            }),
            (None, _) => T::absent().ok_or_else(|| WireError::MissingField {
                class: self.class.to_owned(),
                field: name,
            }),
        }
    }
}

/// A [`WireError::WrongType`] for a value that is not `expected`; the
/// readers up the tree fill in the field path.
pub(crate) fn wrong_type(expected: &str, found: &Value) -> WireError {
    WireError::WrongType {
        field: String::new(),
        expected: expected.to_owned(),
        found: describe(found),
    }
}

/// What a value is, for an error: its type and, for a scalar, the value
/// (a string shortened, [`echo`]).
fn describe(v: &Value) -> String {
    match v {
        Value::Nil => "nil".to_owned(),
        Value::Bool(b) => format!("bool {b}"),
        Value::Int(i) => format!("integer {i}"),
        Value::UInt(u) => format!("integer {u}"),
        Value::F32(f) => format!("float32 {f}"),
        Value::F64(f) => format!("float64 {f}"),
        Value::Str(s) => format!("str \"{}\"", echo(s)),
        Value::Bin(b) => format!("bin of {} bytes", b.len()),
        Value::Array(a) => format!("array of {} items", a.len()),
        Value::Map(m) => format!("map of {} entries", m.len()),
        Value::Ext(tag, d) => format!("ext of type {tag} with {} bytes", d.len()),
    }
}

impl FieldValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
    fn from_value(v: &Value) -> Result<Value, WireError> {
        Ok(v.clone())
    }
}

impl FieldValue for String {
    fn to_value(&self) -> Value {
        Value::Str(self.clone())
    }
    /// A str, or a bin that is valid UTF-8 (as serde's `String` accepted).
    fn from_value(v: &Value) -> Result<String, WireError> {
        match v {
            Value::Str(s) => Ok(s.clone()),
            Value::Bin(b) => std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|_| wrong_type("a string", v)),
            other => Err(wrong_type("a string", other)),
        }
    }
}

impl FieldValue for bool {
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
    fn from_value(v: &Value) -> Result<bool, WireError> {
        v.as_bool().ok_or_else(|| wrong_type("a boolean", v))
    }
}

impl FieldValue for u64 {
    fn to_value(&self) -> Value {
        Value::UInt(*self)
    }
    /// Any integer that is not negative.
    fn from_value(v: &Value) -> Result<u64, WireError> {
        v.as_u64().ok_or_else(|| wrong_type("u64", v))
    }
}

impl FieldValue for i64 {
    /// Non-negative integers are written as uint, as msgpack-python does.
    fn to_value(&self) -> Value {
        Value::from(*self)
    }
    /// Any integer that fits.
    fn from_value(v: &Value) -> Result<i64, WireError> {
        v.as_i64().ok_or_else(|| wrong_type("i64", v))
    }
}

impl FieldValue for f64 {
    fn to_value(&self) -> Value {
        Value::F64(*self)
    }
    /// Any float or integer.
    fn from_value(v: &Value) -> Result<f64, WireError> {
        v.as_f64().ok_or_else(|| wrong_type("f64", v))
    }
}

/// Fed-BioMed `bytes`: a msgpack bin, moved without copying.
impl FieldValue for Bytes {
    fn to_value(&self) -> Value {
        Value::Bin(self.clone())
    }
    /// A bin (the same bytes, not a copy), or an array of integers 0..=255.
    fn from_value(v: &Value) -> Result<Bytes, WireError> {
        match v {
            Value::Bin(b) => Ok(b.clone()),
            Value::Array(a) => a
                .iter()
                .map(|i| i.as_u64().and_then(|u| u8::try_from(u).ok()))
                .collect::<Option<Vec<u8>>>()
                .map(Bytes::from)
                .ok_or_else(|| wrong_type("bin (or an array of bytes)", v)),
            other => Err(wrong_type("bin", other)),
        }
    }
}

impl<T: FieldValue> FieldValue for Vec<T> {
    fn to_value(&self) -> Value {
        Value::Array(self.iter().map(T::to_value).collect())
    }
    /// An array; a wrong item names its index (`tags[1]`).
    fn from_value(v: &Value) -> Result<Vec<T>, WireError> {
        let items = v.as_array().ok_or_else(|| wrong_type("an array", v))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| T::from_value(item).map_err(|e| e.in_field(&format!("[{i}]"))))
            .collect()
    }
}

/// nil is `None`, and so is a missing field.
impl<T: FieldValue> FieldValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Nil, T::to_value)
    }
    fn from_value(v: &Value) -> Result<Option<T>, WireError> {
        match v {
            Value::Nil => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
    fn absent() -> Option<Option<T>> {
        Some(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::typed;
    use crate::wire::Typed;

    typed! {
        /// Every kind of field the messages have.
        #[derive(Debug, PartialEq)]
        #[allow(unreachable_pub)]
        pub struct Probe {
            pub text: String,
            pub maybe: Option<String>,
            pub flag: bool,
            pub count: u64,
            pub delta: i64,
            pub tags: Vec<String>,
            pub tree: Value,
            pub extra: Option<Value>,
            pub blob: Bytes,
        }
    }

    fn probe(blob: &Bytes) -> Probe {
        Probe {
            text: "t".into(),
            maybe: None,
            flag: true,
            count: 3,
            delta: -2,
            tags: vec!["#a".into(), "#b".into()],
            tree: Value::map([("w", Value::Bin(blob.clone()))]),
            extra: Some(Value::F32(0.5)),
            blob: blob.clone(),
        }
    }

    fn write(p: &Probe) -> Vec<(Value, Value)> {
        let mut map = Vec::new();
        p.write_fields(&mut map);
        map
    }

    fn read(map: &[(Value, Value)]) -> Result<Probe, WireError> {
        Probe::read_fields(&Fields::new(Probe::CLASS, map))
    }

    fn without(mut map: Vec<(Value, Value)>, key: &str) -> Vec<(Value, Value)> {
        map.retain(|(k, _)| k.as_str() != Some(key));
        map
    }

    fn with(mut map: Vec<(Value, Value)>, key: &str, v: Value) -> Vec<(Value, Value)> {
        for (k, slot) in &mut map {
            if k.as_str() == Some(key) {
                *slot = v.clone();
            }
        }
        map
    }

    fn wrong_type(r: Result<Probe, WireError>) -> (String, String, String) {
        match r {
            Err(WireError::WrongType {
                field,
                expected,
                found,
            }) => (field, expected, found),
            other => panic!("expected WrongType, got {other:?}"),
        }
    }

    #[test]
    fn fields_are_written_in_declaration_order_and_read_back() {
        let blob = Bytes::from(vec![1u8; 100]);
        let p = probe(&blob);
        let map = write(&p);
        let keys: Vec<_> = map.iter().map(|(k, _)| k.as_str().unwrap()).collect();
        assert_eq!(keys, Probe::FIELDS);
        assert_eq!(
            keys,
            ["text", "maybe", "flag", "count", "delta", "tags", "tree", "extra", "blob"]
        );
        let v = Value::Map(map.clone());
        assert_eq!(v.get("maybe"), Some(&Value::Nil), "None is written as nil");
        assert_eq!(v.get("count"), Some(&Value::UInt(3)));
        assert_eq!(v.get("delta"), Some(&Value::Int(-2)));
        assert_eq!(v.get("blob"), Some(&Value::Bin(blob.clone())));
        assert_eq!(read(&map).unwrap(), p);
        // a non-negative i64 is written as uint, as msgpack-python does
        let p = Probe {
            delta: 5,
            ..probe(&blob)
        };
        assert_eq!(Value::Map(write(&p)).get("delta"), Some(&Value::UInt(5)));
    }

    #[test]
    fn bin_and_value_fields_are_shared_not_copied() {
        let blob = Bytes::from(vec![9u8; 4096]);
        let map = write(&probe(&blob));
        let v = Value::Map(map.clone());
        assert_eq!(
            v.get("blob").unwrap().as_bin().unwrap().as_ptr(),
            blob.as_ptr()
        );
        let w = v.get("tree").unwrap().get("w").unwrap().as_bin().unwrap();
        assert_eq!(w.as_ptr(), blob.as_ptr());
        let back = read(&map).unwrap();
        assert_eq!(back.blob.as_ptr(), blob.as_ptr());
        let w = back.tree.get("w").unwrap().as_bin().unwrap();
        assert_eq!(w.as_ptr(), blob.as_ptr());
    }

    #[test]
    fn unknown_keys_are_ignored_and_missing_options_are_none() {
        let blob = Bytes::from_static(b"b");
        let mut map = without(without(write(&probe(&blob)), "maybe"), "extra");
        map.insert(0, (Value::from("future_field"), Value::Array(vec![])));
        map.push((Value::UInt(7), Value::Nil));
        map.push((
            Value::from("__type_message__"),
            Value::map([("class", Value::from("Probe"))]),
        ));
        let back = read(&map).unwrap();
        assert_eq!(back.maybe, None);
        assert_eq!(back.extra, None);
        // nil is None too
        let map = with(write(&probe(&blob)), "extra", Value::Nil);
        assert_eq!(read(&map).unwrap().extra, None);
        // a required Value field takes nil as it is
        let map = with(write(&probe(&blob)), "tree", Value::Nil);
        assert_eq!(read(&map).unwrap().tree, Value::Nil);
    }

    #[test]
    fn a_missing_required_field_names_the_class_and_the_field() {
        let map = without(write(&probe(&Bytes::new())), "tree");
        let r = read(&map);
        assert!(
            matches!(r, Err(WireError::MissingField { ref class, field: "tree" }) if class == "Probe"),
            "{r:?}"
        );
        assert_eq!(
            r.unwrap_err().to_string(),
            "the Probe message has no `tree` field"
        );
    }

    #[test]
    fn a_repeated_field_is_refused() {
        let mut map = write(&probe(&Bytes::new()));
        map.push((Value::from("count"), Value::UInt(4)));
        let r = read(&map);
        assert!(
            matches!(r, Err(WireError::DuplicateField { ref class, field: "count" }) if class == "Probe"),
            "{r:?}"
        );
    }

    #[test]
    fn wrong_types_name_the_field_the_expected_type_and_what_was_found() {
        let base = || write(&probe(&Bytes::new()));
        let (field, expected, found) =
            wrong_type(read(&with(base(), "count", Value::from("three"))));
        assert_eq!(
            (&*field, &*expected, &*found),
            ("count", "u64", "str \"three\"")
        );
        let err = read(&with(base(), "count", Value::from("three"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `count` should be u64, found str \"three\""
        );

        let (field, _, found) = wrong_type(read(&with(base(), "text", Value::UInt(5))));
        assert_eq!((&*field, &*found), ("text", "integer 5"));
        let (field, _, found) = wrong_type(read(&with(base(), "flag", Value::Nil)));
        assert_eq!((&*field, &*found), ("flag", "nil"));
        let (field, expected, _) = wrong_type(read(&with(base(), "blob", Value::from("x"))));
        assert_eq!((&*field, &*expected), ("blob", "bin"));
        let (field, _, found) = wrong_type(read(&with(base(), "maybe", Value::F64(1.5))));
        assert_eq!((&*field, &*found), ("maybe", "float64 1.5"));
        let tags = Value::Array(vec![Value::from("#a"), Value::Map(vec![])]);
        let (field, _, found) = wrong_type(read(&with(base(), "tags", tags)));
        assert_eq!((&*field, &*found), ("tags[1]", "map of 0 entries"));
        // a peer's string is quoted shortened
        let long = "x".repeat(10_000);
        let (_, _, found) = wrong_type(read(&with(base(), "count", Value::from(long.as_str()))));
        assert!(
            found.len() < 200 && found.contains("10000 bytes"),
            "{found}"
        );
    }

    #[test]
    fn integers_convert_as_far_as_they_fit() {
        let base = || write(&probe(&Bytes::new()));
        // a negative integer is no u64
        let (field, expected, found) = wrong_type(read(&with(base(), "count", Value::Int(-1))));
        assert_eq!(
            (&*field, &*expected, &*found),
            ("count", "u64", "integer -1")
        );
        // a non-negative Int is
        assert_eq!(
            read(&with(base(), "count", Value::Int(0))).unwrap().count,
            0
        );
        // i64 takes both kinds while they fit
        assert_eq!(
            read(&with(base(), "delta", Value::UInt(7))).unwrap().delta,
            7
        );
        assert_eq!(
            read(&with(base(), "delta", Value::Int(i64::MIN)))
                .unwrap()
                .delta,
            i64::MIN
        );
        let too_big = Value::UInt(i64::MAX as u64 + 1);
        let (field, expected, _) = wrong_type(read(&with(base(), "delta", too_big)));
        assert_eq!((&*field, &*expected), ("delta", "i64"));
        // floats are not integers
        let (field, _, _) = wrong_type(read(&with(base(), "count", Value::F64(1.0))));
        assert_eq!(field, "count");
    }

    #[test]
    fn lenient_encodings_are_accepted_as_before() {
        let base = || write(&probe(&Bytes::new()));
        // a str field sent as a UTF-8 bin
        let map = with(base(), "text", Value::Bin(Bytes::from_static(b"hi")));
        assert_eq!(read(&map).unwrap().text, "hi");
        let map = with(base(), "text", Value::Bin(Bytes::from_static(b"\xff")));
        assert_eq!(wrong_type(read(&map)).0, "text");
        // a bin field sent as an array of bytes
        let bytes = Value::Array(vec![Value::UInt(1), Value::UInt(255)]);
        let map = with(base(), "blob", bytes);
        assert_eq!(&read(&map).unwrap().blob[..], &[1, 255]);
        let not_bytes = Value::Array(vec![Value::UInt(256)]);
        assert_eq!(wrong_type(read(&with(base(), "blob", not_bytes))).0, "blob");
    }
}
