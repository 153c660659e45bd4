//! Framing and CBOR encoding of messages and values (docs/protocol.md §Framing, §Encoding).
//!
//! Owns the byte layout: a 4-byte big-endian length, then one CBOR item. Strict: definite
//! lengths only, no tags, no undefined, no duplicate map keys, no trailing bytes, nesting depth
//! capped; declared lengths are checked against the bytes left before anything is allocated.
//! Never touches a socket.

use crate::error::WireError;
use crate::message::Message;
use crate::value::Value;
use bytes::BytesMut;

/// Default cap on a frame body (16 MiB).
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
/// Size of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// Maximum nesting depth of lists and maps inside a value.
pub const MAX_DEPTH: usize = 64;

/// Appends one complete frame (length prefix + CBOR body) for `msg` to `out`.
pub fn encode_frame(msg: &Message, out: &mut Vec<u8>) {
    let _ = (msg, out);
    todo!("H1")
}

/// Appends the CBOR body of `msg` (no length prefix) to `out`.
pub fn encode_message(msg: &Message, out: &mut Vec<u8>) {
    let _ = (msg, out);
    todo!("H1")
}

/// Decodes one CBOR message body (no length prefix). The body must hold exactly one message.
///
/// # Errors
/// [`WireError::Malformed`] naming the field and byte offset.
pub fn decode_message(body: &[u8]) -> Result<Message, WireError> {
    let _ = body;
    todo!("H1")
}

/// Appends the CBOR encoding of a value.
pub fn encode_value(value: &Value, out: &mut Vec<u8>) {
    let _ = (value, out);
    todo!("H1")
}

/// Decodes exactly one CBOR value.
///
/// # Errors
/// [`WireError::Malformed`].
pub fn decode_value(bytes: &[u8]) -> Result<Value, WireError> {
    let _ = bytes;
    todo!("H1")
}

/// Incremental frame splitter for a byte stream, with a frame-size cap.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder { max_frame }
    }

    /// The cap this decoder enforces.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Takes one whole frame off the front of `buf` and decodes it; `Ok(None)` if `buf` does
    /// not yet hold a whole frame. The length is checked as soon as the 4 prefix bytes arrive,
    /// so an oversized frame is refused before its body is read.
    ///
    /// # Errors
    /// [`WireError::FrameTooLarge`], [`WireError::EmptyFrame`], [`WireError::Malformed`].
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Message>, WireError> {
        let _ = buf;
        todo!("H1")
    }
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_FRAME)
    }
}
