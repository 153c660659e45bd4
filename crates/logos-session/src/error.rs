//! [`SessionError`]: failures of connection set-up and of the connection as a whole.
//!
//! Owns the error enum of this crate. A failure of one call is a [`Fault`](crate::Fault)
//! instead, never a `SessionError`.

use crate::Fault;
use std::time::Duration;

/// Errors of connection set-up and of the connection as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Socket I/O failed.
    #[error("connection i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] logos_wire::WireError),
    /// The peer refused the handshake (its `error` message).
    #[error("refused by peer: {0}")]
    Refused(Fault),
    /// The handshake did not finish in time.
    #[error("handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    /// The connection is closed.
    #[error("connection closed: {0}")]
    Closed(String),
    /// The peer sent no hello before this many newer connections were waiting for theirs on
    /// the same socket, and was closed to make room (see [`Acceptor`](crate::Acceptor)).
    #[error("closed before its hello: {0} newer connections were waiting for their handshake")]
    Evicted(usize),
}
