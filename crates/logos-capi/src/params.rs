//! JSON in and out of the C API: `params_json` into call arguments, results and events into
//! the JSON text callbacks receive.
//!
//! `params_json` is a JSON array; each element is either a plain JSON value, or the form the
//! RFC's applications send, `{"name": N, "value": V, "type": T}` (an object whose keys are
//! `value` plus `name` and/or `type`, and nothing else). `name` is informational: arguments are
//! positional. `type` converts `value` the way the reference implementation's Qt side would,
//! and a value that does not fit its type is an `invalid_args` error, never a silent default.
//! A plain JSON map argument that happens to look exactly like the named form must itself be
//! wrapped: `{"name": "arg0", "value": {...}, "type": "map"}`.
//!
//! Kept apart from `lib.rs` (no raw pointers here) so that every rule is unit-tested as pure
//! code. Never calls the core.

use crate::error::Error;
use logos::Value;
use serde_json::Value as Json;

/// The parameter name used in errors.
const PARAMS: &str = "params_json";

/// What a `type` field asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    Bool,
    Float,
    List,
    Map,
    Any,
}

/// The `type` spellings accepted (case-insensitive): the RFC's and their Qt/C++ spellings.
const KINDS: &[(&str, Kind)] = &[
    ("string", Kind::Text),
    ("str", Kind::Text),
    ("text", Kind::Text),
    ("qstring", Kind::Text),
    ("int", Kind::Int),
    ("integer", Kind::Int),
    ("long", Kind::Int),
    ("longlong", Kind::Int),
    ("uint", Kind::Int),
    ("qint32", Kind::Int),
    ("qint64", Kind::Int),
    ("quint32", Kind::Int),
    ("quint64", Kind::Int),
    ("qlonglong", Kind::Int),
    ("qulonglong", Kind::Int),
    ("int32", Kind::Int),
    ("int64", Kind::Int),
    ("uint32", Kind::Int),
    ("uint64", Kind::Int),
    ("bool", Kind::Bool),
    ("boolean", Kind::Bool),
    ("double", Kind::Float),
    ("float", Kind::Float),
    ("real", Kind::Float),
    ("qreal", Kind::Float),
    ("number", Kind::Float),
    ("list", Kind::List),
    ("array", Kind::List),
    ("qvariantlist", Kind::List),
    ("qjsonarray", Kind::List),
    ("qstringlist", Kind::List),
    ("map", Kind::Map),
    ("object", Kind::Map),
    ("qvariantmap", Kind::Map),
    ("qjsonobject", Kind::Map),
    ("any", Kind::Any),
    ("json", Kind::Any),
    ("qvariant", Kind::Any),
    ("qjsonvalue", Kind::Any),
];

/// Parses `params_json` into positional arguments.
///
/// # Errors
/// [`Error::Invalid`] naming the element and why: not JSON, not an array, an unknown `type`,
/// a value that does not fit its `type`.
pub(crate) fn parse(params_json: &str) -> Result<Vec<Value>, Error> {
    let invalid = |reason: String| Error::Invalid {
        name: PARAMS,
        reason,
    };
    let json: Json = serde_json::from_str(params_json).map_err(|e| {
        invalid(format!(
            "not JSON ({e}); pass a JSON array such as [] or [\"ada\", 2]"
        ))
    })?;
    let Json::Array(items) = json else {
        return Err(invalid(format!(
            "expected a JSON array of arguments, got {}; wrap a single argument as [value]",
            json_type(&json)
        )));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| argument(item).map_err(|reason| invalid(format!("element {i}: {reason}"))))
        .collect()
}

/// One element of `params_json`.
fn argument(item: Json) -> Result<Value, String> {
    let Some((value, kind)) = named(&item)? else {
        return Ok(Value::from_json(item));
    };
    convert(value, kind)
}

/// `Some((value, kind))` when `item` is the `{"name","value","type"}` form.
fn named(item: &Json) -> Result<Option<(&Json, Kind)>, String> {
    let Json::Object(obj) = item else {
        return Ok(None);
    };
    let named_form = obj.contains_key("value")
        && (obj.contains_key("name") || obj.contains_key("type"))
        && obj
            .keys()
            .all(|k| matches!(k.as_str(), "name" | "value" | "type"));
    if !named_form {
        return Ok(None);
    }
    if let Some(name) = obj.get("name").filter(|n| !n.is_string() && !n.is_null()) {
        return Err(format!(
            "\"name\" must be a string, got {}",
            json_type(name)
        ));
    }
    let kind = match obj.get("type") {
        None | Some(Json::Null) => Kind::Any,
        Some(Json::String(t)) => kind(t)?,
        Some(other) => {
            return Err(format!(
                "\"type\" must be a string, got {}",
                json_type(other)
            ));
        }
    };
    Ok(obj.get("value").map(|v| (v, kind)))
}

fn kind(type_name: &str) -> Result<Kind, String> {
    let lower = type_name.to_ascii_lowercase();
    KINDS
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|(_, k)| *k)
        .ok_or_else(|| {
            format!(
                "unknown type {type_name:?}; use string, int, bool or double (or QString, qint64, qreal, …), list, map or any"
            )
        })
}

/// Converts `value` to `kind`; numbers and booleans given as strings are parsed, as Qt's
/// `QVariant` conversion of the reference implementation does.
fn convert(value: &Json, kind: Kind) -> Result<Value, String> {
    let mismatch = |want: &str| format!("value {} is not {want}", cut(&value.to_string()));
    match (kind, value) {
        (Kind::Any, v) => Ok(Value::from_json(v.clone())),
        (Kind::Text, Json::String(s)) => Ok(Value::Text(s.clone())),
        (Kind::Text, _) => Err(mismatch("a string")),
        (Kind::Int, Json::Number(n)) => int_number(n).ok_or_else(|| mismatch("an integer")),
        (Kind::Int, Json::String(s)) => int_text(s.trim()).ok_or_else(|| mismatch("an integer")),
        (Kind::Int, _) => Err(mismatch("an integer")),
        (Kind::Bool, Json::Bool(b)) => Ok(Value::Bool(*b)),
        (Kind::Bool, Json::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(mismatch("a bool (true or false)")),
        },
        (Kind::Bool, _) => Err(mismatch("a bool (true or false)")),
        (Kind::Float, Json::Number(n)) => n
            .as_f64()
            .map(Value::Float)
            .ok_or_else(|| mismatch("a number")),
        (Kind::Float, Json::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::Float)
            .ok_or_else(|| mismatch("a number")),
        (Kind::Float, _) => Err(mismatch("a number")),
        (Kind::List, Json::Array(_)) | (Kind::Map, Json::Object(_)) => {
            Ok(Value::from_json(value.clone()))
        }
        (Kind::List, _) => Err(mismatch("a list")),
        (Kind::Map, _) => Err(mismatch("a map")),
    }
}

/// A JSON number that is a whole number in i64 or u64 range (`2.0` counts, `2.5` does not).
fn int_number(n: &serde_json::Number) -> Option<Value> {
    if let Some(i) = n.as_i64() {
        return Some(Value::Int(i));
    }
    if let Some(u) = n.as_u64() {
        return Some(Value::from(u));
    }
    /// 2^63, the first whole f64 outside i64 (exactly representable).
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    let f = n.as_f64()?;
    // In range and whole, so the cast is exact.
    (f.fract() == 0.0 && f.abs() < TWO_POW_63).then_some(Value::Int(f as i64))
}

fn int_text(s: &str) -> Option<Value> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::Int(i));
    }
    s.parse::<u64>().ok().map(Value::from)
}

fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a bool",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// At most 60 characters of `s`, for messages.
fn cut(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// A call's result as the JSON text its callback receives.
pub(crate) fn result_json(v: &Value) -> String {
    v.to_json().to_string()
}

/// An event as the JSON text listeners receive: `{"event": NAME, "data": [..]}`.
pub(crate) fn event_json(event: &str, data: &[Value]) -> String {
    // Written by hand so that "event" comes first, as in the RFC (serde_json sorts keys).
    let data = Json::Array(data.iter().map(Value::to_json).collect());
    format!("{{\"event\":{},\"data\":{data}}}", Json::from(event))
}

/// The length of [`event_json`]'s text for this event, without building it: what the event
/// costs in the C API's byte budget. Exact for every value but floats (counted as 24, the
/// longest form) and text needing escapes (each escape adds to the real length; counted as
/// its raw length).
pub(crate) fn event_json_len(event: &str, data: &[Value]) -> usize {
    // {"event":"<event>","data":[<v>,<v>]}
    let items: usize = data.iter().map(value_json_len).sum();
    let commas = data.len().saturating_sub(1);
    r#"{"event":"","data":[]}"#.len() + event.len() + items + commas
}

fn value_json_len(v: &Value) -> usize {
    match v {
        Value::Null => 4,
        Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Int(i) => i.to_string().len(),
        Value::UInt(u) => u.to_string().len(),
        Value::Float(_) => 24,
        Value::Text(t) => t.len() + 2,
        // {"$bytes":"<hex>"}
        Value::Bytes(b) => r#"{"$bytes":""}"#.len() + 2 * b.len(),
        Value::List(items) => {
            2 + items.iter().map(value_json_len).sum::<usize>() + items.len().saturating_sub(1)
        }
        Value::Map(m) => {
            2 + m
                .iter()
                .map(|(k, v)| k.len() + 3 + value_json_len(v))
                .sum::<usize>()
                + m.len().saturating_sub(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Vec<Value> {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        parse(s).unwrap_err().to_string()
    }

    #[test]
    fn plain_values_are_taken_as_they_are() {
        assert_eq!(ok("[]"), vec![]);
        assert_eq!(
            ok(r#"["ada", 2, true, null, 1.5, [1], {"k": 1}]"#),
            vec![
                Value::from("ada"),
                Value::from(2),
                Value::Bool(true),
                Value::Null,
                Value::Float(1.5),
                Value::List(vec![Value::from(1)]),
                Value::from_json(serde_json::json!({"k": 1})),
            ]
        );
    }

    #[test]
    fn named_form_converts_by_type() {
        let args = ok(r#"[
            {"name": "channel", "value": "general", "type": "string"},
            {"name": "n", "value": 42, "type": "int"},
            {"name": "n", "value": "42", "type": "qint64"},
            {"name": "b", "value": "true", "type": "bool"},
            {"name": "b", "value": false, "type": "Boolean"},
            {"name": "d", "value": 2, "type": "double"},
            {"name": "d", "value": "2.5", "type": "qreal"},
            {"name": "s", "value": "x", "type": "QString"},
            {"name": "any", "value": {"a": [1]}},
            {"value": 3, "type": "int"},
            {"name": "i", "value": 2.0, "type": "int"},
            {"name": "u", "value": 18446744073709551615, "type": "quint64"}
        ]"#);
        assert_eq!(
            args,
            vec![
                Value::from("general"),
                Value::from(42),
                Value::from(42),
                Value::Bool(true),
                Value::Bool(false),
                Value::Float(2.0),
                Value::Float(2.5),
                Value::from("x"),
                Value::from_json(serde_json::json!({"a": [1]})),
                Value::from(3),
                Value::from(2),
                Value::UInt(u64::MAX),
            ]
        );
    }

    #[test]
    fn mismatches_are_errors_naming_the_element() {
        let e = err(r#"["ok", {"name": "n", "value": "abc", "type": "int"}]"#);
        assert_eq!(
            e,
            "invalid params_json: element 1: value \"abc\" is not an integer"
        );
        assert!(err(r#"[{"name":"n","value":2.5,"type":"int"}]"#).contains("not an integer"));
        assert!(err(r#"[{"name":"n","value":1,"type":"string"}]"#).contains("not a string"));
        assert!(err(r#"[{"name":"n","value":"yes","type":"bool"}]"#).contains("not a bool"));
        assert!(err(r#"[{"name":"n","value":"x","type":"double"}]"#).contains("not a number"));
        assert!(err(r#"[{"name":"n","value":1,"type":"blob"}]"#).contains("unknown type \"blob\""));
        assert!(err(r#"[{"name":1,"value":1}]"#).contains("\"name\" must be a string"));
        assert!(err(r#"[{"name":"n","value":1,"type":7}]"#).contains("\"type\" must be a string"));
    }

    #[test]
    fn other_objects_are_plain_maps() {
        // Extra keys, or no name/type: a map argument.
        let args = ok(r#"[{"value": 1}, {"name": "a", "value": 1, "extra": 2}]"#);
        assert_eq!(args[0], Value::from_json(serde_json::json!({"value": 1})));
        assert_eq!(
            args[1],
            Value::from_json(serde_json::json!({"name": "a", "value": 1, "extra": 2}))
        );
    }

    #[test]
    fn non_arrays_and_bad_json_are_refused() {
        assert!(err("").contains("not JSON"));
        assert!(err("{").contains("not JSON"));
        assert!(err(r#""ada""#).contains("expected a JSON array of arguments, got a string"));
        assert!(err("{}").contains("got an object"));
    }

    #[test]
    fn results_and_events_are_json() {
        assert_eq!(result_json(&Value::Null), "null");
        assert_eq!(result_json(&Value::from(5)), "5");
        assert_eq!(result_json(&Value::from("a\"b")), r#""a\"b""#);
        let e = event_json("chatMessage", &[Value::from(1), Value::from("ada")]);
        assert_eq!(e, r#"{"event":"chatMessage","data":[1,"ada"]}"#);
        let quoted = event_json("a\"b", &[]);
        let back: Json = serde_json::from_str(&quoted).unwrap();
        assert_eq!(back, serde_json::json!({"event": "a\"b", "data": []}));
    }

    #[test]
    fn event_sizes_match_the_json() {
        let data = vec![
            Value::from(1795258538033_i64),
            Value::from("ada"),
            Value::from(""),
            Value::Null,
            Value::Bool(true),
            Value::Bool(false),
            Value::from(-7),
            Value::UInt(u64::MAX),
            Value::Bytes(vec![1, 2, 255].into()),
            Value::List(vec![Value::from(1), Value::List(vec![])]),
            Value::from_json(serde_json::json!({"k": [1, "v"], "z": {}})),
        ];
        for (name, data) in [
            ("chatMessage", &data[..]),
            ("e", &data[..0]),
            ("", &data[1..2]),
        ] {
            assert_eq!(
                event_json_len(name, data),
                event_json(name, data).len(),
                "{name} {data:?}"
            );
        }
        let big = vec![Value::from("x".repeat(1 << 20))];
        assert_eq!(event_json_len("m", &big), event_json("m", &big).len());
    }
}
