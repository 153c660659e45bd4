//! Stable error codes carried by `error` messages (docs/protocol.md §Errors).
//!
//! Owns the closed list of codes and their wire spelling. Never decides which code a
//! failure maps to: that belongs to the layer that failed.

use std::fmt;

/// A stable, wire-visible error code. The wire spelling (`as_str`) never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No module of that name is known to the core.
    UnknownModule,
    /// The module is known but not loaded.
    NotLoaded,
    /// The target has no method of that name.
    UnknownMethod,
    /// The arguments do not match the method's parameters.
    InvalidArgs,
    /// The caller may not do this (policy, token, identity).
    Unauthorized,
    /// The call's deadline passed.
    Timeout,
    /// The target is down, restarting or the connection dropped.
    Unavailable,
    /// The module's own error; the message is the module's.
    MethodFailed,
    /// The caller cancelled the call.
    Cancelled,
    /// The peer broke the protocol (bad frame, bad handshake, version mismatch).
    ProtocolError,
    /// A limit was hit (frame size, calls in flight, queue).
    Limit,
}

impl ErrorCode {
    /// Every code, in wire order.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::UnknownModule,
        ErrorCode::NotLoaded,
        ErrorCode::UnknownMethod,
        ErrorCode::InvalidArgs,
        ErrorCode::Unauthorized,
        ErrorCode::Timeout,
        ErrorCode::Unavailable,
        ErrorCode::MethodFailed,
        ErrorCode::Cancelled,
        ErrorCode::ProtocolError,
        ErrorCode::Limit,
    ];

    /// The wire spelling, e.g. `"unknown_method"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnknownModule => "unknown_module",
            ErrorCode::NotLoaded => "not_loaded",
            ErrorCode::UnknownMethod => "unknown_method",
            ErrorCode::InvalidArgs => "invalid_args",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::MethodFailed => "method_failed",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::ProtocolError => "protocol_error",
            ErrorCode::Limit => "limit",
        }
    }

    /// Parses the wire spelling; `None` for anything else.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn spelling_round_trips() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
        }
        assert_eq!(ErrorCode::parse("nope"), None);
    }
}
