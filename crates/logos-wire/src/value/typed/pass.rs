//! Byte strings that pass through typed conversion without a copy.
//!
//! Owns one thread-local hand-over slot. serde's data model has no way to hand a `Bytes` to a
//! visitor or take one from a serializer: without this, a `Value::Bytes` going through
//! [`from_value`](super::from_value) or [`to_value`](super::to_value) (every `Value` parameter
//! and result of a module method, through the SDK) was copied each way, a fresh allocation per
//! call (two 1 MiB copies per 1 MiB echo, and the heap growing and shrinking around them:
//! docs/performance.md, "Seventh step"). Never changes what a conversion produces, only
//! whether the bytes are shared or copied.
//!
//! - **Serializing**: `Value`'s `Serialize` offers its `Bytes` here before calling
//!   `serialize_bytes`, and clears the slot after. This crate's serializer takes the offer only
//!   if it is the very slice it was given (same address and length), so no other serializer,
//!   and no stale offer, can ever be confused by it.
//! - **Deserializing**: `Value`'s `Deserialize` asks for a newtype struct named [`TOKEN`]. This
//!   crate's deserializer answers a `Value::Bytes` by moving the `Bytes` into the slot and
//!   visiting a unit, which only `Value`'s visitor receives (nothing else asks for that name);
//!   it claims the slot at once. Any other deserializer treats the name as an ordinary
//!   newtype struct, and the visitor reads the value as usual.

use bytes::Bytes;
use std::cell::Cell;

/// The newtype-struct name by which `Value`'s `Deserialize` asks for a whole value.
pub(super) const TOKEN: &str = "$logos_wire::Value";

thread_local! {
    static SLOT: Cell<Option<Bytes>> = const { Cell::new(None) };
}

/// Puts `b` in the slot (replacing anything left there).
pub(super) fn offer(b: Bytes) {
    SLOT.with(|s| s.set(Some(b)));
}

/// Empties the slot.
pub(super) fn clear() {
    SLOT.with(Cell::take);
}

/// What the slot holds, if it is exactly `slice` (same address and length).
pub(super) fn claim(slice: &[u8]) -> Option<Bytes> {
    let b = SLOT.with(Cell::take)?;
    (b.as_ptr() == slice.as_ptr() && b.len() == slice.len()).then_some(b)
}

/// Whatever the slot holds (for the visitor of a [`TOKEN`] newtype struct).
pub(super) fn claim_any() -> Option<Bytes> {
    SLOT.with(Cell::take)
}
