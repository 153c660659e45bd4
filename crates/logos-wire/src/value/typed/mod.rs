//! Typed conversion between Rust values and [`Value`] through serde.
//!
//! Owns the mapping (docs/protocol.md §Typed mapping): tuples and sequences are lists, structs
//! and maps are maps with text keys, `()`/`None`/unit structs are null, newtype structs are
//! transparent, a unit enum variant is its name as text and any other variant a one-entry map
//! `{variant: content}`, byte buffers (`serde_bytes`) are bytes. `ser.rs` holds the serializer,
//! `de.rs` the deserializer, `impls.rs` `Serialize`/`Deserialize` for `Value` itself.
//! A type mismatch is an error naming expected and found types (and where, e.g.
//! `args[1].name: expected text, found int`), never a silent default.

mod de;
mod impls;
mod pass;
mod ser;

use crate::error::WireError;
use crate::value::Value;
use std::fmt::Display;

/// Converts any `Serialize` into a [`Value`]. Tuples and sequences become lists, structs and
/// maps become maps (keys must be text), `Option::None` and `()` become null, byte buffers
/// (`serde_bytes`) become bytes.
///
/// # Errors
/// [`WireError::Value`] for non-text map keys, integers outside the i64/u64 range, or a failing
/// `Serialize` impl.
///
/// # Examples
///
/// ```
/// use logos_wire::{Value, to_value};
/// #[derive(serde::Serialize)]
/// struct Point { x: i32, y: i32 }
/// let v = to_value(&Point { x: 1, y: -2 })?;
/// assert_eq!(v.get("y"), Some(&Value::Int(-2)));
/// # Ok::<(), logos_wire::WireError>(())
/// ```
pub fn to_value<T: serde::Serialize + ?Sized>(value: &T) -> Result<Value, WireError> {
    value.serialize(ser::Serializer)
}

/// Converts a [`Value`] into any `Deserialize` type.
///
/// Integers convert between widths when in range (`u8` from `Int(300)` is an error); a float
/// target accepts an integer that a double holds exactly; nothing else is coerced.
///
/// # Errors
/// [`WireError::Value`] naming the expected and the found type, prefixed by the path to the
/// offending item when it is nested.
///
/// # Examples
///
/// ```
/// use logos_wire::{Value, from_value};
/// let n: u8 = from_value(Value::Int(200))?;
/// assert_eq!(n, 200);
/// let e = from_value::<u8>(Value::Int(300)).unwrap_err();
/// assert_eq!(e.to_string(), "expected u8, found int 300 (out of range)");
/// let e = from_value::<(i64, String)>(Value::List(vec![1.into(), 2.into()])).unwrap_err();
/// assert_eq!(e.to_string(), "[1]: expected text, found int");
/// # Ok::<(), logos_wire::WireError>(())
/// ```
pub fn from_value<T: serde::de::DeserializeOwned>(mut value: Value) -> Result<T, WireError> {
    from_value_mut(&mut value)
}

/// Converts a [`Value`] in place into any `Deserialize` type, which may borrow from it:
/// `&str` from text, `&[u8]` from bytes, `#[serde(borrow)]` fields. What the target owns
/// (`String`, a byte buffer) is moved out rather than copied, and left empty in `value`: read
/// a value once. The rules and errors are those of [`from_value`].
///
/// # Errors
/// [`WireError::Value`], as for [`from_value`].
///
/// # Examples
///
/// ```
/// use logos_wire::{Value, from_value_mut};
/// let mut v = Value::List(vec!["chat".into(), Value::Bytes(vec![1, 2].into())]);
/// let (name, data): (&str, &[u8]) = from_value_mut(&mut v)?;
/// assert_eq!((name, data), ("chat", &[1u8, 2][..]));
/// # Ok::<(), logos_wire::WireError>(())
/// ```
pub fn from_value_mut<'de, T: serde::Deserialize<'de>>(
    value: &'de mut Value,
) -> Result<T, WireError> {
    T::deserialize(de::Deserializer::new(value)).map_err(de::Error::into_wire)
}

impl serde::ser::Error for WireError {
    fn custom<T: Display>(msg: T) -> Self {
        WireError::Value(msg.to_string())
    }
}

impl serde::de::Error for WireError {
    fn custom<T: Display>(msg: T) -> Self {
        WireError::Value(msg.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use std::collections::{BTreeMap, HashMap};

    fn map(entries: &[(&str, Value)]) -> Value {
        Value::Map(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    fn err<T: serde::de::DeserializeOwned + std::fmt::Debug>(v: Value) -> String {
        match from_value::<T>(v) {
            Err(WireError::Value(msg)) => msg,
            other => panic!("expected a Value error, got {other:?}"),
        }
    }

    /// A byte buffer that goes through `serialize_bytes`, as `serde_bytes::ByteBuf` does.
    #[derive(Debug, PartialEq)]
    struct Buf(Vec<u8>);

    impl Serialize for Buf {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    impl<'de> Deserialize<'de> for Buf {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Buf;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Buf, E> {
                    Ok(Buf(v))
                }
            }
            d.deserialize_byte_buf(V)
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Meters(f64);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Empty,
        Circle(Meters),
        Rect(u32, u32),
        Named { name: String, sides: u8 },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Doc {
        id: u64,
        title: String,
        tags: Vec<String>,
        body: Buf,
        shape: Shape,
        note: Option<String>,
        pair: (i8, bool),
        unit: (),
    }

    fn doc() -> Doc {
        Doc {
            id: u64::MAX,
            title: "t".into(),
            tags: vec!["a".into(), "b".into()],
            body: Buf(vec![1, 2, 3]),
            shape: Shape::Named {
                name: "tri".into(),
                sides: 3,
            },
            note: None,
            pair: (-1, true),
            unit: (),
        }
    }

    #[test]
    fn structs_become_maps_and_come_back() {
        let v = to_value(&doc()).unwrap();
        let want = map(&[
            ("id", Value::UInt(u64::MAX)),
            ("title", "t".into()),
            ("tags", Value::List(vec!["a".into(), "b".into()])),
            ("body", Value::Bytes(vec![1, 2, 3].into())),
            (
                "shape",
                map(&[("Named", map(&[("name", "tri".into()), ("sides", 3.into())]))]),
            ),
            ("note", Value::Null),
            ("pair", Value::List(vec![Value::Int(-1), Value::Bool(true)])),
            ("unit", Value::Null),
        ]);
        assert_eq!(v, want);
        assert_eq!(from_value::<Doc>(v).unwrap(), doc());
    }

    #[test]
    fn enums_map_by_variant_kind() {
        assert_eq!(to_value(&Shape::Empty).unwrap(), Value::from("Empty"));
        assert_eq!(
            to_value(&Shape::Circle(Meters(1.5))).unwrap(),
            map(&[("Circle", Value::Float(1.5))])
        );
        assert_eq!(
            to_value(&Shape::Rect(2, 3)).unwrap(),
            map(&[("Rect", Value::List(vec![2.into(), 3.into()]))])
        );
        for s in [
            Shape::Empty,
            Shape::Circle(Meters(2.0)),
            Shape::Rect(1, 2),
            Shape::Named {
                name: "x".into(),
                sides: 0,
            },
        ] {
            let v = to_value(&s).unwrap();
            assert_eq!(from_value::<Shape>(v).unwrap(), s);
        }
        assert!(err::<Shape>(Value::from("Hexagon")).contains("unknown variant \"Hexagon\""));
        assert!(err::<Shape>(Value::Int(1)).contains("expected enum Shape"));
        assert_eq!(
            err::<Shape>(map(&[("Rect", Value::List(vec![1.into(), "x".into()]))])),
            "Rect[1]: expected u32, found text"
        );
        assert!(err::<Shape>(Value::from("Circle")).contains("needs content (a value)"));
    }

    #[test]
    fn mismatches_name_expected_found_and_where() {
        assert_eq!(err::<i64>(Value::from("x")), "expected i64, found text");
        assert_eq!(
            err::<u8>(Value::Int(300)),
            "expected u8, found int 300 (out of range)"
        );
        assert_eq!(
            err::<u64>(Value::Int(-1)),
            "expected u64, found int -1 (out of range)"
        );
        assert_eq!(err::<String>(Value::Null), "expected text, found null");
        assert_eq!(err::<bool>(Value::Int(0)), "expected bool, found int");
        assert_eq!(err::<i64>(Value::Float(1.0)), "expected i64, found float");
        let mut v = to_value(&doc()).unwrap();
        if let Value::Map(m) = &mut v {
            m.insert("tags".into(), Value::List(vec!["a".into(), 5.into()]));
        }
        assert_eq!(err::<Doc>(v), "tags[1]: expected text, found int");
        let mut v = to_value(&doc()).unwrap();
        if let Value::Map(m) = &mut v {
            m.remove("title");
        }
        assert_eq!(err::<Doc>(v), "missing field \"title\"");
        assert_eq!(
            err::<(u8, u8)>(Value::List(vec![1.into(), 2.into(), 3.into()])),
            "expected a list of 2 items, found 3"
        );
        assert!(err::<(u8, u8)>(Value::List(vec![1.into()])).contains("found 1 items"));
    }

    #[test]
    fn integers_convert_across_widths_within_range() {
        assert_eq!(from_value::<u64>(Value::UInt(u64::MAX)).unwrap(), u64::MAX);
        assert_eq!(from_value::<i8>(Value::Int(-128)).unwrap(), -128);
        assert_eq!(
            from_value::<i128>(Value::UInt(u64::MAX)).unwrap(),
            i128::from(u64::MAX)
        );
        assert_eq!(from_value::<u128>(Value::Int(5)).unwrap(), 5);
        assert!(from_value::<u128>(Value::Int(-5)).is_err());
        assert_eq!(
            to_value(&i128::from(i64::MIN)).unwrap(),
            Value::Int(i64::MIN)
        );
        assert!(matches!(
            to_value(&u128::from(u64::MAX)).unwrap(),
            Value::UInt(u64::MAX)
        ));
        assert!(matches!(to_value(&7u64).unwrap(), Value::Int(7)));
        assert!(to_value(&(i128::from(i64::MIN) - 1)).is_err());
        assert!(to_value(&(u128::from(u64::MAX) + 1)).is_err());
        // Floats take exactly representable integers, nothing else is coerced.
        assert_eq!(from_value::<f64>(Value::Int(3)).unwrap(), 3.0);
        assert!(from_value::<f64>(Value::Int(i64::MAX)).is_err());
        assert!(from_value::<f64>(Value::from("3")).is_err());
    }

    #[test]
    fn options_units_and_newtypes() {
        assert_eq!(from_value::<Option<u8>>(Value::Null).unwrap(), None);
        assert_eq!(from_value::<Option<u8>>(Value::Int(4)).unwrap(), Some(4));
        assert_eq!(to_value(&None::<u8>).unwrap(), Value::Null);
        assert_eq!(to_value(&()).unwrap(), Value::Null);
        from_value::<()>(Value::Null).unwrap();
        assert_eq!(err::<()>(Value::Int(1)), "expected null, found int");
        assert_eq!(to_value(&Meters(2.5)).unwrap(), Value::Float(2.5));
        assert_eq!(
            from_value::<Meters>(Value::Float(2.5)).unwrap(),
            Meters(2.5)
        );
        assert_eq!(from_value::<char>(Value::from("é")).unwrap(), 'é');
        assert!(from_value::<char>(Value::from("ab")).is_err());
    }

    #[test]
    fn bytes_and_plain_byte_vectors() {
        assert_eq!(
            to_value(&Buf(vec![9])).unwrap(),
            Value::Bytes(vec![9].into())
        );
        assert_eq!(
            from_value::<Buf>(Value::Bytes(vec![9].into())).unwrap(),
            Buf(vec![9])
        );
        assert_eq!(err::<Buf>(Value::from("09")), "expected bytes, found text");
        // A plain Vec<u8> serializes as a list but reads bytes too.
        assert_eq!(
            to_value(&vec![1u8, 2]).unwrap(),
            Value::List(vec![1.into(), 2.into()])
        );
        assert_eq!(
            from_value::<Vec<u8>>(Value::Bytes(vec![1, 2].into())).unwrap(),
            [1, 2]
        );
        assert_eq!(
            from_value::<[u8; 2]>(Value::Bytes(vec![1, 2].into())).unwrap(),
            [1, 2]
        );
        assert_eq!(
            err::<[u8; 2]>(Value::Bytes(vec![1, 2, 3].into())),
            "expected a list of 2 items, found 3"
        );
    }

    #[test]
    fn map_keys_must_be_text() {
        let mut m = HashMap::new();
        m.insert(1u32, "x");
        assert_eq!(
            to_value(&m).unwrap_err(),
            WireError::Value("map keys must be text, found int".into())
        );
        let mut ok = BTreeMap::new();
        ok.insert("k".to_owned(), 1u8);
        let v = to_value(&ok).unwrap();
        assert_eq!(from_value::<BTreeMap<String, u8>>(v).unwrap(), ok);
    }

    #[test]
    fn value_is_its_own_serde_type() {
        let v = map(&[
            ("b", Value::Bytes(vec![0, 1].into())),
            ("big", Value::UInt(u64::MAX)),
            (
                "l",
                Value::List(vec![Value::Null, Value::Float(0.5), Value::Int(-3)]),
            ),
        ]);
        assert_eq!(to_value(&v).unwrap(), v);
        assert_eq!(from_value::<Value>(v.clone()).unwrap(), v);
        let args: Vec<Value> = from_value(Value::List(vec![1.into(), "a".into()])).unwrap();
        assert_eq!(args, vec![Value::Int(1), Value::from("a")]);
        assert_eq!(from_value::<Option<Value>>(Value::Null).unwrap(), None);
    }

    #[test]
    fn value_deserializes_from_json_text() {
        let v: Value = serde_json::from_str(
            r#"{"a": [1, -2, 18446744073709551615, 1.5, "s", null, true], "m": {}}"#,
        )
        .unwrap();
        assert_eq!(
            v,
            map(&[
                (
                    "a",
                    Value::List(vec![
                        Value::Int(1),
                        Value::Int(-2),
                        Value::UInt(u64::MAX),
                        Value::Float(1.5),
                        "s".into(),
                        Value::Null,
                        Value::Bool(true),
                    ])
                ),
                ("m", Value::Map(BTreeMap::new())),
            ])
        );
        assert!(serde_json::from_str::<Value>(r#"{"a": 1, "a": 2}"#).is_err());
        assert_eq!(
            serde_json::to_string(&map(&[("k", Value::List(vec![1.into()]))])).unwrap(),
            r#"{"k":[1]}"#
        );
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Borrowed<'a> {
        name: &'a str,
        #[serde(borrow)]
        data: &'a [u8],
        owned: String,
        tags: Vec<&'a str>,
    }

    #[test]
    fn in_place_conversion_lends_what_the_target_borrows_and_moves_what_it_owns() {
        let mut v = map(&[
            ("name", "chat".into()),
            ("data", Value::Bytes(vec![7, 8].into())),
            ("owned", "kept".into()),
            ("tags", Value::List(vec!["a".into(), "b".into()])),
        ]);
        let b: Borrowed<'_> = from_value_mut(&mut v).unwrap();
        assert_eq!(
            b,
            Borrowed {
                name: "chat",
                data: &[7, 8],
                owned: "kept".to_owned(),
                tags: vec!["a", "b"],
            }
        );
        // The owned text was moved out, not copied; the borrowed text is still there.
        assert_eq!(v.get("owned"), Some(&Value::from("")));
        assert_eq!(v.get("name"), Some(&Value::from("chat")));
        // Map keys lend too.
        let mut v = map(&[("x", 1.into()), ("y", 2.into())]);
        let m: HashMap<&str, i64> = from_value_mut(&mut v).unwrap();
        assert_eq!(m, HashMap::from([("x", 1), ("y", 2)]));
    }

    #[test]
    fn borrowing_targets_get_the_same_errors() {
        let mut v = Value::Int(5);
        let e = from_value_mut::<&str>(&mut v).unwrap_err();
        assert_eq!(e.to_string(), "expected text, found int");
        let mut v = Value::List(vec!["a".into(), Value::Bytes(vec![1].into())]);
        let e = from_value_mut::<(&str, &str)>(&mut v).unwrap_err();
        assert_eq!(e.to_string(), "[1]: expected text, found bytes");
        let mut v = map(&[("name", 1.into())]);
        let e = from_value_mut::<HashMap<&str, &[u8]>>(&mut v).unwrap_err();
        assert_eq!(e.to_string(), "name: expected bytes, found int");
    }

    #[test]
    fn value_bytes_pass_through_typed_conversion_shared_not_copied() {
        let big = bytes::Bytes::from(vec![7u8; 100_000]);
        let at = big.as_ptr();
        let v: Value = from_value(Value::Bytes(big.clone())).unwrap();
        assert!(matches!(&v, Value::Bytes(b) if b.as_ptr() == at && b.len() == 100_000));
        let v = to_value(&v).unwrap();
        assert!(matches!(&v, Value::Bytes(b) if b.as_ptr() == at));
        // Nested, and beside other values, in both directions.
        let list = Value::List(vec![Value::from(1), Value::Bytes(big.clone()), Value::Null]);
        let back: Vec<Value> = from_value(list.clone()).unwrap();
        assert!(matches!(&back[1], Value::Bytes(b) if b.as_ptr() == at));
        assert_eq!(to_value(&back).unwrap(), list);
        // Other targets read the same bytes as before.
        let raw: Vec<u8> = from_value(Value::Bytes(big.clone())).unwrap();
        assert_eq!(raw.len(), 100_000);
        let opt: Option<Value> = from_value(Value::Bytes(big.clone())).unwrap();
        assert_eq!(opt, Some(Value::Bytes(big.clone())));
    }

    #[test]
    fn other_serde_formats_see_values_as_before() {
        let v = Value::List(vec![Value::Bytes(vec![1, 2].into()), Value::from("x")]);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, r#"[[1,2],"x"]"#);
        let back: Value = serde_json::from_str(r#"{"a":[1,2],"b":null}"#).unwrap();
        assert_eq!(back.get("b"), Some(&Value::Null));
        // A bytes offer no serializer took is not left for the next conversion.
        let n: Value = from_value(Value::from(5)).unwrap();
        assert_eq!(n, Value::from(5));
    }
}
