//! Typed conversion between Rust values and [`Value`] through serde.
//!
//! A type mismatch is an error naming expected and found types, never a silent default.

use crate::error::WireError;
use crate::value::Value;

/// Converts any `Serialize` into a [`Value`]. Tuples and sequences become lists, structs and
/// maps become maps (keys must be text), `Option::None` and `()` become null, byte buffers
/// (`serde_bytes`) become bytes.
///
/// # Errors
/// [`WireError::Value`] for non-text map keys or a failing `Serialize` impl.
pub fn to_value<T: serde::Serialize + ?Sized>(value: &T) -> Result<Value, WireError> {
    let _ = value;
    todo!("H1")
}

/// Converts a [`Value`] into any `Deserialize` type.
///
/// # Errors
/// [`WireError::Value`] naming the expected and the found type.
pub fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, WireError> {
    let _ = value;
    todo!("H1")
}
