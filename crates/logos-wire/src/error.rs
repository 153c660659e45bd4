//! The one error type of `logos-wire`.

use thiserror::Error;

/// Everything that can go wrong while checking or decoding protocol data.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum WireError {
    /// The peer speaks another protocol major version.
    #[error(
        "protocol version {peer_major}.{peer_minor} is not supported: this side speaks {}.x",
        crate::handshake::PROTOCOL_MAJOR
    )]
    VersionMismatch { peer_major: u16, peer_minor: u16 },
    /// A frame's length prefix exceeds the configured cap.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    /// A frame's length prefix is zero.
    #[error("empty frame (length 0)")]
    EmptyFrame,
    /// The CBOR body of a frame is not a valid message.
    #[error("invalid {what} at byte {offset}: {reason}")]
    Malformed {
        /// What was being decoded, e.g. `"call.args"` or `"value"`.
        what: String,
        /// Byte offset into the frame body.
        offset: usize,
        /// Why it is invalid.
        reason: String,
    },
    /// A typed conversion to or from `Value` failed.
    #[error("{0}")]
    Value(String),
}
