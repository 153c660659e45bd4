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
pub fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, WireError> {
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
