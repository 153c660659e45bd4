//! [`Caller`]: the connection a method call arrived on, for modules that keep state per
//! caller (a registration that must die with the module that made it, a stream handed back
//! to it).
//!
//! Owns the task-local through which `serve/conn.rs` hands each running call its connection,
//! and what a module may do with that connection: learn the caller's name (from the
//! connection's authenticated `hello`, never from the call), notice that it closed, open a
//! byte stream back to it, and send it an event it subscribed to. Never admits connections or
//! decides policy.

use crate::error::Error;
use logos_session::{ByteStream, Session};
use std::future::Future;

tokio::task_local! {
    static CURRENT: Caller;
}

/// The connection a call came in on: another module's peer connection, or the core's control
/// connection (calls from operators and embedders, named `core`).
///
/// Cheap to clone; clones are the same connection. A module may keep it past the call, e.g.
/// to tie state to the caller's lifetime with [`Caller::closed`].
#[derive(Clone)]
pub struct Caller {
    session: Session,
    control: bool,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("name", &self.name())
            .field("connection", &self.connection())
            .finish()
    }
}

impl Caller {
    pub(crate) fn new(session: Session, control: bool) -> Caller {
        Caller { session, control }
    }

    /// Runs `fut` (a method call) with `caller` as [`crate::Context::caller`].
    pub(crate) fn scope<F: Future>(caller: Caller, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(caller, fut)
    }

    /// Runs `f` with `caller` as the caller of the method it runs (a synchronous method
    /// served at once, see `serve/conn.rs`).
    pub(crate) fn sync_scope<R>(caller: Caller, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(caller, f)
    }

    /// The caller of the method running in this task, if any.
    pub(crate) fn current() -> Option<Caller> {
        CURRENT.try_with(Caller::clone).ok()
    }

    /// The calling module's name, as its connection authenticated it (`core` for the
    /// control connection).
    pub fn name(&self) -> &str {
        &self.session.peer().identity
    }

    /// `true` for the core's control connection (operators, embedders, the core itself).
    pub fn is_core(&self) -> bool {
        self.control
    }

    /// An id of the connection, unique within this process for its lifetime.
    pub fn connection(&self) -> u64 {
        self.session.id()
    }

    /// `true` once the connection has closed (the caller exited, was unloaded or restarted,
    /// its token was revoked, or its remote link dropped).
    pub fn is_closed(&self) -> bool {
        self.session.is_closed()
    }

    /// Resolves when the connection closes, with the reason.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn closed(&self) -> String {
        self.session.closed().await
    }

    /// Opens a byte stream to the caller on its own connection, for `protocol`. The caller
    /// receives it through [`crate::Context::on_stream`] or [`crate::Client::take_stream`].
    ///
    /// # Errors
    /// [`Error::Closed`] when the connection has closed.
    pub fn open_stream(&self, protocol: &str) -> Result<ByteStream, Error> {
        self.session
            .open_stream(protocol)
            .map_err(|e| Error::Closed(format!("connection to {}: {e}", self.name())))
    }

    pub(crate) fn session(&self) -> &Session {
        &self.session
    }
}
