//! A JSON view of a msgpack value, for humans (`fedroute inspect`) and the
//! golden tests: `bin` values show as `{"$len": n, "$bytes_hex": first bytes}`,
//! ext values as `{"$ext": tag, "$len": n, "$bytes_hex": ..}`, non-string map
//! keys as their JSON text.

use serde_json::{Map, Number, Value as Json};

use super::value::Value;

/// How many leading bytes of a bin value the view shows in hex.
pub(super) const HEX_PREFIX_BYTES: usize = 16;

impl Value {
    /// The JSON view of this value (see the module's conventions: `bin`
    /// shows as `{"$len", "$bytes_hex"}` with its first bytes).
    pub fn to_json(&self) -> Json {
        to_json(self)
    }

    /// The JSON view as text, keys in wire order, laid out like Python's
    /// `json.dumps(v, indent=2)` (ASCII only, `\uXXXX` escapes).
    pub fn to_json_pretty(&self) -> String {
        let mut out = String::new();
        write_pretty(&to_json_ordered(self), 0, &mut out);
        out
    }
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::F32(f) => Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number),
        Value::F64(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Str(s) => Json::String(s.clone()),
        Value::Bin(b) => {
            let mut m = Map::new();
            m.insert("$bytes_hex".into(), Json::String(hex_prefix(b)));
            m.insert("$len".into(), Json::from(b.len()));
            Json::Object(m)
        }
        Value::Ext(tag, b) => {
            let mut m = Map::new();
            m.insert("$ext".into(), Json::from(*tag));
            m.insert("$bytes_hex".into(), Json::String(hex_prefix(b)));
            m.insert("$len".into(), Json::from(b.len()));
            Json::Object(m)
        }
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let key = match k {
                    Value::Str(s) => s.clone(),
                    other => to_json(other).to_string(),
                };
                m.insert(key, to_json(v));
            }
            Json::Object(m)
        }
    }
}

fn hex_prefix(b: &[u8]) -> String {
    b.iter()
        .take(HEX_PREFIX_BYTES)
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Like [`Value::to_json`] but keeping key order (a small tree of our own, since
/// serde_json's map sorts its keys).
enum Ordered {
    Scalar(Json),
    Array(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

fn to_json_ordered(v: &Value) -> Ordered {
    match v {
        Value::Array(a) => Ordered::Array(a.iter().map(to_json_ordered).collect()),
        Value::Map(entries) => Ordered::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::Str(s) => s.clone(),
                        other => to_json(other).to_string(),
                    };
                    (key, to_json_ordered(v))
                })
                .collect(),
        ),
        Value::Bin(b) => Ordered::Object(vec![
            (
                "$bytes_hex".into(),
                Ordered::Scalar(Json::String(hex_prefix(b))),
            ),
            ("$len".into(), Ordered::Scalar(Json::from(b.len()))),
        ]),
        Value::Ext(tag, b) => Ordered::Object(vec![
            ("$ext".into(), Ordered::Scalar(Json::from(*tag))),
            (
                "$bytes_hex".into(),
                Ordered::Scalar(Json::String(hex_prefix(b))),
            ),
            ("$len".into(), Ordered::Scalar(Json::from(b.len()))),
        ]),
        Value::F32(f) => Ordered::Scalar(Json::String(python_float(f64::from(*f)))),
        Value::F64(f) => Ordered::Scalar(Json::String(python_float(*f))),
        other => Ordered::Scalar(to_json(other)),
    }
}

/// A float as Python's `repr` writes it; marked so the writer emits it bare.
fn python_float(f: f64) -> String {
    let text = if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else if f != 0.0 && (f.abs() < 1e-4 || f.abs() >= 1e16) {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    } else if f.fract() == 0.0 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    };
    format!("{FLOAT_MARK}{text}")
}

const FLOAT_MARK: char = '\u{0}';

fn write_pretty(v: &Ordered, indent: usize, out: &mut String) {
    let pad = |n: usize, out: &mut String| out.extend(std::iter::repeat_n(' ', n));
    match v {
        Ordered::Scalar(Json::String(s)) if s.starts_with(FLOAT_MARK) => out.push_str(&s[1..]),
        Ordered::Scalar(Json::String(s)) => write_string(s, out),
        Ordered::Scalar(j) => out.push_str(&j.to_string()),
        Ordered::Array(a) if a.is_empty() => out.push_str("[]"),
        Ordered::Array(a) => {
            out.push_str("[\n");
            for (i, item) in a.iter().enumerate() {
                pad(indent + 2, out);
                write_pretty(item, indent + 2, out);
                out.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
            }
            pad(indent, out);
            out.push(']');
        }
        Ordered::Object(m) if m.is_empty() => out.push_str("{}"),
        Ordered::Object(m) => {
            out.push_str("{\n");
            for (i, (k, item)) in m.iter().enumerate() {
                pad(indent + 2, out);
                write_string(k, out);
                out.push_str(": ");
                write_pretty(item, indent + 2, out);
                out.push_str(if i + 1 < m.len() { ",\n" } else { "\n" });
            }
            pad(indent, out);
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
