//! JSON mapping of [`Value`] for people and JSON-speaking hosts (CLI, C API).
//!
//! JSON → Value: integers stay integers (`Int`, or `UInt` above `i64::MAX`), other numbers become
//! floats, and an object that is exactly `{"$bytes": "<hex>"}` (even-length hex) becomes bytes.
//! Value → JSON: bytes become `{"$bytes": "<lowercase hex>"}`, non-finite floats become null.
//! The mapping is documented in docs/protocol.md §JSON. Never fails and never panics: whatever
//! does not fit (a `$bytes` object with bad hex) stays what it is (a map).

use crate::value::Value;
use serde_json::{Map, Number};

/// The one key of the JSON object that stands for a byte string.
const BYTES_KEY: &str = "$bytes";

impl Value {
    /// Converts from JSON (see module docs for `{"$bytes": …}`).
    ///
    /// # Examples
    ///
    /// ```
    /// use logos_wire::Value;
    /// let v = Value::from_json(serde_json::json!({"n": 18446744073709551615u64, "b": {"$bytes": "00ff"}}));
    /// assert_eq!(v.get("n"), Some(&Value::UInt(u64::MAX)));
    /// assert_eq!(v.get("b"), Some(&Value::Bytes(vec![0, 255].into())));
    /// ```
    pub fn from_json(json: serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => number(&n),
            serde_json::Value::String(s) => Value::Text(s),
            serde_json::Value::Array(items) => {
                Value::List(items.into_iter().map(Value::from_json).collect())
            }
            serde_json::Value::Object(obj) => {
                if let Some(bytes) = bytes_object(&obj) {
                    return Value::Bytes(bytes.into());
                }
                Value::Map(
                    obj.into_iter()
                        .map(|(k, v)| (k, Value::from_json(v)))
                        .collect(),
                )
            }
        }
    }

    /// Converts to JSON (see module docs for bytes and non-finite floats).
    ///
    /// # Examples
    ///
    /// ```
    /// use logos_wire::Value;
    /// assert_eq!(Value::Bytes(vec![0xab].into()).to_json(), serde_json::json!({"$bytes": "ab"}));
    /// assert_eq!(Value::Float(f64::NAN).to_json(), serde_json::Value::Null);
    /// ```
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::Number(Number::from(*i)),
            Value::UInt(u) => serde_json::Value::Number(Number::from(*u)),
            Value::Float(x) => {
                Number::from_f64(*x).map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
            Value::Text(s) => serde_json::Value::String(s.clone()),
            Value::Bytes(b) => {
                let mut obj = Map::new();
                obj.insert(
                    BYTES_KEY.to_owned(),
                    serde_json::Value::String(hex::encode(b)),
                );
                serde_json::Value::Object(obj)
            }
            Value::List(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
            Value::Map(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

fn number(n: &Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::Int(i)
    } else if let Some(u) = n.as_u64() {
        Value::UInt(u)
    } else {
        // Without serde_json's arbitrary_precision every other number is an f64.
        Value::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// `Some(bytes)` when `obj` is exactly `{"$bytes": "<even-length hex>"}`.
fn bytes_object(obj: &Map<String, serde_json::Value>) -> Option<Vec<u8>> {
    if obj.len() != 1 {
        return None;
    }
    match obj.get(BYTES_KEY)? {
        // Either case; `None` for odd length or any other character.
        serde_json::Value::String(digits) => hex::decode(digits).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn integers_keep_their_range() {
        assert_eq!(Value::from_json(json!(-5)), Value::Int(-5));
        assert!(matches!(
            Value::from_json(json!(i64::MIN)),
            Value::Int(i64::MIN)
        ));
        assert!(matches!(
            Value::from_json(json!(u64::MAX)),
            Value::UInt(u64::MAX)
        ));
        assert!(matches!(Value::from_json(json!(7u64)), Value::Int(7)));
        assert_eq!(Value::UInt(u64::MAX).to_json(), json!(u64::MAX));
        assert_eq!(Value::Int(i64::MIN).to_json(), json!(i64::MIN));
    }

    #[test]
    fn floats_stay_floats_and_non_finite_become_null() {
        assert_eq!(Value::from_json(json!(1.5)), Value::Float(1.5));
        assert_eq!(Value::from_json(json!(1.0)), Value::Float(1.0));
        assert_eq!(Value::Float(-0.25).to_json(), json!(-0.25));
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(Value::Float(x).to_json(), serde_json::Value::Null);
        }
    }

    #[test]
    fn bytes_round_trip_through_the_dollar_object() {
        let v = Value::Bytes(vec![0x00, 0x7f, 0x80, 0xff].into());
        assert_eq!(v.to_json(), json!({"$bytes": "007f80ff"}));
        assert_eq!(Value::from_json(v.to_json()), v);
        assert_eq!(
            Value::from_json(json!({"$bytes": "ABcd"})),
            Value::Bytes(vec![0xab, 0xcd].into())
        );
        assert_eq!(
            Value::from_json(json!({"$bytes": ""})),
            Value::Bytes(vec![].into())
        );
    }

    #[test]
    fn near_miss_dollar_objects_stay_maps() {
        for j in [
            json!({"$bytes": "abc"}),
            json!({"$bytes": "zz"}),
            json!({"$bytes": "é1"}),
            json!({"$bytes": 12}),
            json!({"$bytes": "00", "x": 1}),
        ] {
            assert!(matches!(Value::from_json(j.clone()), Value::Map(_)), "{j}");
        }
    }

    #[test]
    fn nested_structures_convert_both_ways() {
        let j = json!({"a": [1, "two", null, true, {"b": []}], "c": {}});
        let v = Value::from_json(j.clone());
        let mut inner = BTreeMap::new();
        inner.insert("b".to_owned(), Value::List(vec![]));
        let mut want = BTreeMap::new();
        want.insert(
            "a".to_owned(),
            Value::List(vec![
                Value::Int(1),
                Value::from("two"),
                Value::Null,
                Value::Bool(true),
                Value::Map(inner),
            ]),
        );
        want.insert("c".to_owned(), Value::Map(BTreeMap::new()));
        assert_eq!(v, Value::Map(want));
        assert_eq!(v.to_json(), j);
    }
}
