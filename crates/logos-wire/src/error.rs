//! The one error type of `logos-wire`.
//!
//! Owns the ways protocol data can be refused and the single mapping from each to a wire
//! [`ErrorCode`]. Never decides what a connection does about an error: the session closes, the
//! SDK replies `invalid_args`, and so on.

use crate::code::ErrorCode;
use thiserror::Error;

/// Everything that can go wrong while checking, encoding or decoding protocol data.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum WireError {
    /// The peer speaks another protocol major version.
    #[error(
        "protocol version {peer_major}.{peer_minor} is not supported: this side speaks {}.x",
        crate::handshake::PROTOCOL_MAJOR
    )]
    VersionMismatch { peer_major: u16, peer_minor: u16 },
    /// A frame's length prefix (or an encoded body) exceeds the cap.
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
    /// A message or value breaks a protocol limit and was not encoded (nothing was written).
    #[error("cannot encode {what}: {reason}")]
    Unencodable {
        /// What was being encoded, e.g. `"reply.value"` or `"stream_data.data"`.
        what: String,
        /// Which limit it breaks.
        reason: String,
    },
}

impl WireError {
    /// The wire error code a peer should be told when this error ends a call or a connection.
    ///
    /// Frame and encoding limits are [`ErrorCode::Limit`], a failed typed conversion is
    /// [`ErrorCode::InvalidArgs`], everything else breaks the protocol
    /// ([`ErrorCode::ProtocolError`]).
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::FrameTooLarge { .. } | WireError::Unencodable { .. } => ErrorCode::Limit,
            WireError::Value(_) => ErrorCode::InvalidArgs,
            WireError::VersionMismatch { .. }
            | WireError::EmptyFrame
            | WireError::Malformed { .. } => ErrorCode::ProtocolError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_one_code() {
        assert_eq!(WireError::EmptyFrame.code(), ErrorCode::ProtocolError);
        assert_eq!(
            WireError::FrameTooLarge { len: 2, max: 1 }.code(),
            ErrorCode::Limit
        );
        assert_eq!(WireError::Value("x".into()).code(), ErrorCode::InvalidArgs);
        let e = WireError::Malformed {
            what: "call.method".into(),
            offset: 7,
            reason: "expected text, found unsigned integer".into(),
        };
        assert_eq!(e.code(), ErrorCode::ProtocolError);
        assert_eq!(
            e.to_string(),
            "invalid call.method at byte 7: expected text, found unsigned integer"
        );
    }
}
