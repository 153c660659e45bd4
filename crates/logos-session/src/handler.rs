//! [`Handler`]: what the local side does with what the peer sends, and [`Refuse`], the handler
//! that serves nothing.
//!
//! Owns the callback contract only. The session engine decides *when* each method runs (see
//! the method docs); a handler decides policy. Nothing here touches the socket.
//!
//! Threading: [`Handler::call_now`] runs on the reader; [`Handler::call`] futures (for the
//! calls it gives back) are first polled on the reader, then (if still pending) run in their
//! own tasks. Every other method is called
//! synchronously from the connection's reader task, in the order the peer's messages arrived,
//! so it must return quickly (record, forward to a channel, or spawn) and never block: while it
//! runs, nothing else from this peer is read. A panic in one of them is caught and logged; the
//! connection keeps serving.

use crate::{ByteStream, Fault, Session};
use futures::future::BoxFuture;
use logos_wire::{Call, ErrorCode, Value};
use std::time::Duration;

/// What the local side does with what the peer sends. One handler per connection; every
/// method has a refusing or ignoring default so a side implements only what it serves.
pub trait Handler: Send + Sync + 'static {
    /// Runs an incoming call. The future is polled once right away on the connection's
    /// reader; if it finishes there (most do: anything that does not wait for I/O) its reply
    /// is queued at once, otherwise it continues in its own task, so a handler may itself
    /// call (even back to this peer) without deadlock. Up to its first `.await` it therefore
    /// holds up reading from this peer: keep that part short. The future is dropped on
    /// `cancel` or when the deadline passes.
    ///
    /// A panic (while building or polling the future) is answered with `method_failed`
    /// ("method panicked: …"); the connection keeps serving.
    fn call(&self, session: Session, call: Call) -> BoxFuture<'static, Result<Value, Fault>> {
        let _ = session;
        Box::pin(async move {
            Err(Fault::new(
                ErrorCode::UnknownMethod,
                format!("{}.{} is not served here", call.target, call.method),
            ))
        })
    }
    /// Serves an incoming call at once, without a future, when the handler can: `Ok` with its
    /// result, which is answered as `call`'s future's would be, or `Err` giving the call back
    /// for [`Handler::call`]. Called on the connection's reader before `call`, so it holds up
    /// reading from this peer while it runs: only for work that never waits. A panic is
    /// answered with `method_failed`, as for `call`. The default gives every call back.
    fn call_now(&self, session: &Session, call: Call) -> Result<Result<Value, Fault>, Call> {
        let _ = session;
        Err(call)
    }
    /// The peer wants `event` of `source` (`""` = all). Record it to route later emits.
    fn subscribe(&self, session: &Session, source: &str, event: &str) {
        let _ = (session, source, event);
    }
    /// The peer no longer wants `event` of `source`.
    fn unsubscribe(&self, session: &Session, source: &str, event: &str) {
        let _ = (session, source, event);
    }
    /// An event arrived from the peer.
    fn event(&self, session: &Session, source: String, event: String, data: Vec<Value>) {
        let _ = (session, source, event, data);
    }
    /// The peer dropped `dropped` events of `source` because we read too slowly.
    fn lagged(&self, session: &Session, source: String, dropped: u64) {
        let _ = (session, source, dropped);
    }
    /// The peer opened a stream. Dropping `stream` without reading resets it.
    fn stream(&self, session: &Session, protocol: String, stream: ByteStream) {
        let _ = (session, protocol);
        stream.reset(ErrorCode::UnknownMethod, "streams are not accepted here");
    }
    /// Health reported in `pong`: `None` when healthy, else the reason.
    fn health(&self) -> Option<String> {
        None
    }
    /// The peer asked this side to shut down within `grace`.
    fn shutdown(&self, session: &Session, grace: Duration) {
        let _ = (session, grace);
    }
    /// The connection ended (called once, last).
    fn closed(&self, session: &Session, reason: &str) {
        let _ = (session, reason);
    }
}

/// A handler that serves nothing (every call `unknown_method`, events ignored).
#[derive(Debug, Default, Clone, Copy)]
pub struct Refuse;
impl Handler for Refuse {}
