//! The seam between lifecycle decisions and the operating system: [`Spawn`] starts a module's
//! process and hands back its [`Child`] with the `hello` it sent; a [`Child`] takes signals and
//! is waited for.
//!
//! The supervisor's logic (start order and rollback, stop escalation, crash handling, restart
//! policy, backoff, budget, heartbeat) runs against these two traits only, so its unit tests
//! drive it with fake children: no process, a socketpair for the control connection. The real
//! implementation is `spawn.rs` ([`super::spawn::Os`]). Never decides anything and never
//! touches the registry; private to the supervisor (tokio's `Kill`/`Wait` seams are the model).

use super::spare::Next;
use super::spawn::{Failure, SpawnRequest};
use crate::registry::ExitReport;
use crate::sys::Signal;
use futures::future::BoxFuture;
use logos_session::PendingSession;
use std::process::ExitStatus;

/// Starts module processes.
pub(crate) trait Spawn: Send + Sync + 'static {
    /// Starts the process `req` describes and waits for its `hello`.
    ///
    /// # Errors
    /// As `spawn::spawn`: the process is gone on every error path, and [`Failure::exit`] says
    /// how it ended when it exited by itself before its `hello`.
    fn spawn<'a>(&'a self, req: SpawnRequest<'a>) -> BoxFuture<'a, Result<Spawned, Failure>>;

    /// Gets ready for the next start of a library module (a spare host, `spare.rs`), in the
    /// background. Called after a library module's start, so the work is off its path.
    fn prepare(&self, _next: Next) {}

    /// Lets go of what [`Spawn::prepare`] made (the core is stopping).
    fn release(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// A process that sent its `hello`, not accepted yet.
pub(crate) struct Spawned {
    pub child: Box<dyn Child>,
    pub pending: PendingSession,
    /// It started in a spare host (`spare.rs`) rather than the cold way.
    pub from_spare: bool,
    /// Its heartbeat page, where it counts while it runs (`heartbeat.rs`); `None` for a
    /// process given none, which is watched by pings alone.
    pub beat: Option<logos_session::BeatWatch>,
}

/// One running module process, owned by whoever waits for it, so a signal can never reach a
/// recycled pid.
pub(crate) trait Child: Send + 'static {
    fn pid(&self) -> u32;

    /// Delivers `sig` to the process and what it started, unless it has been reaped.
    fn signal(&mut self, sig: Signal);

    /// Resolves when the process has exited and been reaped.
    ///
    /// # Cancel safety
    /// Cancel safe: a later call resolves with the same status.
    fn wait(&mut self) -> BoxFuture<'_, ExitStatus>;

    /// After [`Child::wait`]: kills whatever the process left behind and reports how it ended,
    /// with its last stderr lines.
    fn finish(self: Box<Self>, status: ExitStatus) -> BoxFuture<'static, ExitReport>;

    /// Gives up a start: kills and reaps the process; returns its last stderr lines.
    fn abandon(self: Box<Self>) -> BoxFuture<'static, Vec<String>>;
}
