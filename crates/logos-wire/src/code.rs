//! Stable error codes carried by `error` messages (docs/protocol.md §Errors).
//!
//! Owns the closed list of codes, their wire spelling, and the protocol minor version that
//! introduced each (a code newer than the peer's minor is sent as an older one it knows, see
//! [`ErrorCode::for_peer`]). Never decides which code a failure maps to: that belongs to the
//! layer that failed.

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
    /// A module directory of that name exists but its `metadata.json` is invalid (or names
    /// something unknown), so the module cannot be loaded; the message names the file, the
    /// field and the fix. Since protocol 1.1; a 1.0 peer receives `unknown_module` instead.
    InvalidMetadata,
}

impl ErrorCode {
    /// Every code, in wire order.
    pub const ALL: [ErrorCode; 12] = [
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
        ErrorCode::InvalidMetadata,
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
            ErrorCode::InvalidMetadata => "invalid_metadata",
        }
    }

    /// The protocol minor version that introduced this code (every code of 1.0 says 0).
    pub const fn since_minor(self) -> u16 {
        match self {
            ErrorCode::InvalidMetadata => 1,
            _ => 0,
        }
    }

    /// The code to send to a peer that announced protocol minor `peer_minor`: this code if
    /// the peer knows it, else the nearest code of the peer's version (docs/protocol.md §5.2:
    /// nothing newer than the peer's minor may be sent to it).
    ///
    /// # Examples
    ///
    /// ```
    /// use logos_wire::ErrorCode;
    ///
    /// assert_eq!(ErrorCode::InvalidMetadata.for_peer(0), ErrorCode::UnknownModule);
    /// assert_eq!(ErrorCode::InvalidMetadata.for_peer(1), ErrorCode::InvalidMetadata);
    /// assert_eq!(ErrorCode::Timeout.for_peer(0), ErrorCode::Timeout);
    /// ```
    pub const fn for_peer(self, peer_minor: u16) -> ErrorCode {
        if peer_minor >= self.since_minor() {
            return self;
        }
        match self {
            // A module whose metadata is invalid is not registered: to a 1.0 peer it does
            // not exist, which is what the core answered before 1.1.
            ErrorCode::InvalidMetadata => ErrorCode::UnknownModule,
            other => other,
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
mod tests {
    use super::*;

    #[test]
    fn spelling_round_trips() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
        }
        assert_eq!(ErrorCode::parse("nope"), None);
    }

    #[test]
    fn every_code_reaches_a_peer_of_any_minor_as_a_code_it_knows() {
        for c in ErrorCode::ALL {
            for minor in 0..=crate::PROTOCOL_MINOR {
                let sent = c.for_peer(minor);
                assert!(
                    sent.since_minor() <= minor,
                    "{c} to a 1.{minor} peer: {sent}"
                );
            }
            assert_eq!(c.for_peer(crate::PROTOCOL_MINOR), c);
        }
    }
}
