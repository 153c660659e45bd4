//! Stream flow-control constants and the per-direction credit window arithmetic.
//!
//! Owns the numbers every implementation must agree on (docs/protocol.md §Streams) and a small
//! pure window type. Never buffers data itself.

/// Credit each side starts with on a new stream, per direction (256 KiB).
pub const DEFAULT_WINDOW: u64 = 256 * 1024;
/// Largest `stream_data` payload (64 KiB).
pub const MAX_CHUNK: usize = 64 * 1024;
