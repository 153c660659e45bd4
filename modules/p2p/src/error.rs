//! [`P2pError`]: every way a `p2p` method fails, under the stable names of docs/p2p.md.
//!
//! Owns the names (`eof`, `reset`, `dial_failed`, …) and how each crosses the wire: a
//! `method_failed` fault whose message starts with the name and a colon, so callers in any
//! language match on the prefix and people read the rest. Never decides *when* something
//! fails; the node, the registry and the streams do.

use logos_sdk::{ErrorCode, Fault};

/// A failed `p2p` call. The variant's [`P2pError::name`] is the stable part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum P2pError {
    /// The stream's remote side finished (or reset) before any byte could be read.
    #[error("eof: {0}")]
    Eof(String),
    /// The stream was reset (by the remote, locally, on a timeout, …).
    #[error("reset: {0}")]
    Reset(String),
    /// The stream's write side is closed.
    #[error("closed: {0}")]
    Closed(String),
    /// The connection under the stream went down.
    #[error("conn_down: {0}")]
    ConnDown(String),
    /// EOF in the middle of a length-prefixed message or an exact read.
    #[error("incomplete: {0}")]
    Incomplete(String),
    /// A configured bound (pending or open streams, message size) was reached.
    #[error("limit: {0}")]
    Limit(String),
    /// A length prefix that is not a valid unsigned varint.
    #[error("invalid_varint: {0}")]
    InvalidVarint(String),
    /// The operation did not finish within its deadline.
    #[error("timeout: {0}")]
    Timeout(String),
    /// The remote supports none of the protocols asked for.
    #[error("unsupported_protocol: {0}")]
    UnsupportedProtocol(String),
    /// No connection to the peer could be made.
    #[error("dial_failed: {0}")]
    DialFailed(String),
    /// No such registration, stream or peer.
    #[error("not_found: {0}")]
    NotFound(String),
    /// The node is stopping or stopped.
    #[error("node_stopped: {0}")]
    NodeStopped(String),
    /// Another module owns one of the protocols.
    #[error("already_registered: {0}")]
    AlreadyRegistered(String),
    /// The caller lacks the permission or does not own the registration or stream.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// An argument is malformed (a multiaddr, a peer id, a protocol name, an option).
    #[error("invalid_args: {0}")]
    InvalidArgs(String),
}

impl P2pError {
    /// The stable name, as documented in docs/p2p.md.
    pub fn name(&self) -> &'static str {
        match self {
            P2pError::Eof(_) => "eof",
            P2pError::Reset(_) => "reset",
            P2pError::Closed(_) => "closed",
            P2pError::ConnDown(_) => "conn_down",
            P2pError::Incomplete(_) => "incomplete",
            P2pError::Limit(_) => "limit",
            P2pError::InvalidVarint(_) => "invalid_varint",
            P2pError::Timeout(_) => "timeout",
            P2pError::UnsupportedProtocol(_) => "unsupported_protocol",
            P2pError::DialFailed(_) => "dial_failed",
            P2pError::NotFound(_) => "not_found",
            P2pError::NodeStopped(_) => "node_stopped",
            P2pError::AlreadyRegistered(_) => "already_registered",
            P2pError::Unauthorized(_) => "unauthorized",
            P2pError::InvalidArgs(_) => "invalid_args",
        }
    }
}

impl From<P2pError> for Fault {
    /// Malformed arguments are the wire's `invalid_args`; everything else is `method_failed`
    /// with the stable name first in the message (`"dial_failed: …"`).
    fn from(e: P2pError) -> Fault {
        match e {
            P2pError::InvalidArgs(m) => Fault::new(ErrorCode::InvalidArgs, m),
            other => Fault::new(ErrorCode::MethodFailed, other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_leads_the_message() {
        let f = Fault::from(P2pError::DialFailed("no route".into()));
        assert_eq!(f.code, ErrorCode::MethodFailed);
        assert_eq!(f.message, "dial_failed: no route");
        let f = Fault::from(P2pError::InvalidArgs("bad multiaddr".into()));
        assert_eq!(f.code, ErrorCode::InvalidArgs);
        for e in [
            P2pError::Eof(String::new()),
            P2pError::NodeStopped(String::new()),
            P2pError::AlreadyRegistered(String::new()),
        ] {
            assert!(e.to_string().starts_with(e.name()));
        }
    }
}
