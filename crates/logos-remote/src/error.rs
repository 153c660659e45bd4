//! [`Error`] (a credential file) and [`DialError`] (a link that could not be opened), each
//! saying what failed, where, and whether trying again can help.
//!
//! Never logs: callers decide how loud a failure is.

use std::path::PathBuf;
use std::time::Duration;

/// A credential file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted, naming the file.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a usable credential.
    #[error("credential file {}: {problem}", path.display())]
    Credential {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        problem: String,
    },
}

/// Why a link to the core could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// No TCP connection (refused, unreachable, unresolvable).
    #[error("cannot connect to the core at {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting, the TLS handshake or the link handshake took too long.
    #[error("the core at {addr} did not complete the link handshake within {after:?}")]
    Timeout {
        /// The address tried.
        addr: String,
        /// The deadline.
        after: Duration,
    },
    /// The TLS handshake failed; `pin` when the core's certificate is not the pinned one.
    #[error("TLS with the core at {addr} failed: {source}")]
    Tls {
        /// The address tried.
        addr: String,
        /// The handshake error.
        #[source]
        source: std::io::Error,
        /// The certificate is not the one the credential pins.
        pin: bool,
    },
    /// The core refused the link (`error` id 0): the code and its reason.
    #[error("the core at {addr} refused the link ({code}): {message}")]
    Refused {
        /// The address tried.
        addr: String,
        /// The wire error code.
        code: logos_wire::ErrorCode,
        /// The core's reason.
        message: String,
    },
    /// The core answered something that is not a link welcome.
    #[error("the core at {addr} broke the link handshake: {reason}")]
    Protocol {
        /// The address tried.
        addr: String,
        /// What was wrong.
        reason: String,
    },
}

impl DialError {
    /// Whether trying again later cannot help: the core is not the pinned one, or it refused
    /// the credential (unknown, revoked, expired, another module's, the protocol).
    pub fn is_permanent(&self) -> bool {
        use logos_wire::ErrorCode;
        match self {
            DialError::Tls { pin, .. } => *pin,
            DialError::Refused { code, .. } => {
                matches!(code, ErrorCode::Unauthorized | ErrorCode::ProtocolError)
            }
            DialError::Protocol { .. } => true,
            DialError::Connect { .. } | DialError::Timeout { .. } => false,
        }
    }
}
