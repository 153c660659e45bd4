//! The one local error type of `logos-sdk`.
//!
//! Owns what can go wrong on the module side outside a call: a process not started per the
//! contract, a failed handshake with the core, a failing constructor, an event that cannot be
//! encoded. Failures of calls are [`Fault`]s (code + message, they cross the wire) and never
//! live here; `From<Error> for Fault` and `From<Error> for String` exist so handlers can use
//! `?` on SDK results (`ctx.emit(..)?`) in methods returning `Result<_, Fault>` or
//! `Result<_, String>`.

use logos_session::{Fault, SessionError};
use logos_wire::{ErrorCode, WireError};
use thiserror::Error;

/// Everything the SDK reports outside a call.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// An inherited descriptor named by the contract is missing or not a socket.
    #[error(
        "{var}={value}: {reason}; this program is a logos module and must be started by the core (docs/architecture.md, \"Module process contract\")"
    )]
    Descriptor {
        /// The environment variable naming the descriptor (`LOGOS_CONTROL_FD`, `LOGOS_LISTEN_FD`).
        var: &'static str,
        /// Its value (or the default used).
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The async runtime could not be built.
    #[error("cannot start the module runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The `hello`/`welcome` exchange with the core failed or was refused.
    #[error("handshake with the core failed for module \"{module}\": {source}")]
    Handshake {
        /// This module's name.
        module: String,
        /// What the session layer reported (a refusal carries the core's reason).
        #[source]
        source: SessionError,
    },
    /// Running as a remote module (`LOGOS_REMOTE`) is impossible as configured: an unusable
    /// credential file, one for another module, or a core that refuses it for good.
    #[error("remote module \"{module}\": {reason}")]
    Remote {
        /// This module's name.
        module: String,
        /// What is wrong, and how to fix it.
        reason: String,
    },
    /// The module's `#[init]` constructor failed.
    #[error("module \"{module}\" failed to initialise: {message}")]
    Init {
        /// This module's name.
        module: String,
        /// The constructor's error, rendered.
        message: String,
    },
    /// An event's fields could not be encoded as `Value`s.
    #[error("cannot encode event \"{event}\": {source}")]
    EncodeEvent {
        /// The event's wire name.
        event: String,
        /// The encoding failure.
        #[source]
        source: WireError,
    },
    /// The connection something was to be sent on has closed.
    #[error("connection closed: {0}")]
    Closed(String),
}

impl From<Error> for Fault {
    /// Any SDK error surfacing inside a method fails that call with `method_failed`.
    fn from(e: Error) -> Fault {
        Fault::new(ErrorCode::MethodFailed, e.to_string())
    }
}

impl From<Error> for String {
    /// The message, so `ctx.emit(..)?` works in a method returning `Result<_, String>` (the
    /// call then fails with `method_failed` and this text).
    fn from(e: Error) -> String {
        e.to_string()
    }
}
