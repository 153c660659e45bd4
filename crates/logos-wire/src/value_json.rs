//! JSON mapping of [`Value`] for people and JSON-speaking hosts (CLI, C API).
//!
//! JSON → Value: integers stay integers, other numbers become floats. Value → JSON: bytes become
//! `{"$bytes": "<lowercase hex>"}`, non-finite floats become null. The mapping is documented in
//! docs/protocol.md §JSON.

use crate::value::Value;

impl Value {
    /// Converts from JSON.
    pub fn from_json(json: serde_json::Value) -> Value {
        let _ = json;
        todo!("H1")
    }

    /// Converts to JSON (see module docs for bytes and non-finite floats).
    pub fn to_json(&self) -> serde_json::Value {
        todo!("H1")
    }
}
