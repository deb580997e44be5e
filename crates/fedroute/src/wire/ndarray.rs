//! A view of Fed-BioMed's `np.ndarray` extension value:
//! `{"__type__": "np.ndarray", "value": [bin raw bytes, dtype name, [shape...]]}`.
//! `torch.Tensor` values use the same layout and are read the same way.

use bytes::Bytes;

use super::error::WireError;
use super::value::Value;

/// The `__type__` of a numpy array.
pub(super) const NDARRAY_TYPE: &str = "np.ndarray";
/// The `__type__` of a torch tensor (same layout as a numpy array).
pub(super) const TENSOR_TYPE: &str = "torch.Tensor";

/// A numpy array: dtype name, shape and raw bytes (a slice of the message
/// buffer, never a copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NdArray {
    /// numpy dtype name (`"uint8"`, `"float32"`, ...).
    pub dtype: String,
    /// Dimensions.
    pub shape: Vec<u64>,
    /// Raw element bytes in C order.
    pub data: Bytes,
}

impl NdArray {
    /// A 1-D `uint8` array over `data`.
    pub fn u8(data: Bytes) -> NdArray {
        NdArray {
            dtype: "uint8".to_owned(),
            shape: vec![data.len() as u64],
            data,
        }
    }

    /// Reads an `np.ndarray` (or `torch.Tensor`) extension map.
    pub fn from_value(v: &Value) -> Result<NdArray, WireError> {
        let wrong = |field: &str, expected: &str, found: &Value| WireError::WrongType {
            field: field.to_owned(),
            expected: expected.to_owned(),
            found: found.type_name().to_owned(),
        };
        if v.as_map().is_none() {
            return Err(wrong("ndarray", "an extension map", v));
        }
        match v.get("__type__").and_then(Value::as_str) {
            Some(NDARRAY_TYPE | TENSOR_TYPE) => {}
            _ => {
                return Err(WireError::WrongType {
                    field: "__type__".to_owned(),
                    expected: "\"np.ndarray\" or \"torch.Tensor\"".to_owned(),
                    found: match v.get("__type__") {
                        Some(Value::Str(s)) => format!("\"{s}\""),
                        Some(other) => other.type_name().to_owned(),
                        None => "nothing".to_owned(),
                    },
                })
            }
        }
        let inner = v.get("value").unwrap_or(&Value::Nil);
        let parts = inner
            .as_array()
            .ok_or_else(|| wrong("value", "an array [bin, dtype, shape]", inner))?;
        let (Some(data), Some(dtype), Some(shape)) = (parts.first(), parts.get(1), parts.get(2))
        else {
            return Err(wrong("value", "an array [bin, dtype, shape]", inner));
        };
        let data = data
            .as_bin()
            .ok_or_else(|| wrong("value[0]", "bin", data))?;
        let dtype = dtype
            .as_str()
            .ok_or_else(|| wrong("value[1]", "str", dtype))?;
        let dims = shape
            .as_array()
            .ok_or_else(|| wrong("value[2]", "array", shape))?;
        let shape = dims
            .iter()
            .map(|d| {
                d.as_u64()
                    .ok_or_else(|| wrong("value[2][]", "non-negative int", d))
            })
            .collect::<Result<Vec<u64>, _>>()?;
        Ok(NdArray {
            dtype: dtype.to_owned(),
            shape,
            data: data.clone(),
        })
    }

    /// The extension map, as Fed-BioMed writes it.
    pub fn to_value(&self) -> Value {
        Value::map([
            ("__type__", Value::Str(NDARRAY_TYPE.to_owned())),
            (
                "value",
                Value::Array(vec![
                    Value::Bin(self.data.clone()),
                    Value::Str(self.dtype.clone()),
                    Value::Array(self.shape.iter().map(|&d| Value::UInt(d)).collect()),
                ]),
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_without_copying() {
        let a = NdArray::u8(Bytes::from(vec![3u8; 16]));
        let v = a.to_value();
        let b = NdArray::from_value(&v).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.data.as_ptr(), b.data.as_ptr());
    }

    #[test]
    fn malformed_arrays_are_wrong_type_errors() {
        let bad = [
            Value::Nil,
            Value::map([("__type__", Value::from("np.generic"))]),
            Value::map([
                ("__type__", Value::from("np.ndarray")),
                ("value", Value::Nil),
            ]),
            Value::map([
                ("__type__", Value::from("np.ndarray")),
                (
                    "value",
                    Value::Array(vec![Value::Nil, Value::Nil, Value::Nil]),
                ),
            ]),
        ];
        for v in bad {
            assert!(
                matches!(NdArray::from_value(&v), Err(WireError::WrongType { .. })),
                "{v:?}"
            );
        }
    }
}
