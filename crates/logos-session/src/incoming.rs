//! Incoming calls: admission (id checks, the in-flight limit), one task per call, its
//! deadline, its cancellation, and its reply.
//!
//! Owns the table of the peer's calls in flight. Never blocks the reader: admission is a map
//! insert and a `tokio::spawn`. Each call runs in its own task so a method may call back into
//! this very peer (A→B→A) without deadlock.
//!
//! Outcomes, each exactly one of:
//! * the handler's value or [`Fault`] → `reply` / `error`;
//! * the handler panics (building or polling its future) → `error` `method_failed`
//!   "method panicked: …"; the connection keeps serving;
//! * the deadline (`timeout_ms`, or `Config::default_call_timeout` for 0) passes first →
//!   the future is dropped, `error` `timeout`;
//! * the peer sends `cancel` → the future is dropped and **nothing is sent**: the peer has
//!   already forgotten the id (it ignores answers to unknown ids), so a `cancelled` reply would
//!   only cost a frame;
//! * the connection closes → the future is dropped, nothing is sent.
//!
//! A call's entry is removed *before* its reply is queued, so the peer may reuse the id as
//! soon as it has the answer; until the reply is queued the call still counts against
//! `Config::max_calls_in_flight` (replies wait while the peer is not reading, see
//! `writer.rs`), so a peer that calls without reading meets `limit`, not our memory.

use crate::Fault;
use crate::reader::violation;
use crate::session::{Inner, Session, lock};
use crate::writer::{Lane, NotSent};
use futures::FutureExt;
use logos_wire::{Call, ErrorCode, Message};
use std::any::Any;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio::sync::oneshot;

/// The peer's calls in flight: id → (admission number, cancel switch).
#[derive(Default)]
pub(crate) struct Incoming {
    calls: HashMap<u64, (u64, oneshot::Sender<()>)>,
    /// Calls finished but whose reply is not queued yet (waiting for a peer that does not
    /// read). They still count against the in-flight limit, so such a peer cannot pile up
    /// tasks.
    replying: usize,
    admitted: u64,
    closed: bool,
}

/// Releases a `replying` slot when the reply is queued (or the task ends otherwise).
struct Replying<'a>(&'a Inner);

impl Drop for Replying<'_> {
    fn drop(&mut self) {
        let mut table = lock(&self.0.incoming);
        table.replying = table.replying.saturating_sub(1);
    }
}

impl Incoming {
    /// Marks the table closed and hands back the cancel switches; dropping them cancels
    /// every call.
    pub(crate) fn close(&mut self) -> HashMap<u64, (u64, oneshot::Sender<()>)> {
        self.closed = true;
        std::mem::take(&mut self.calls)
    }
}

/// Text of a panic payload.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("(non-text panic payload)")
    }
}

fn panicked(panic: &(dyn Any + Send)) -> Fault {
    Fault::new(
        ErrorCode::MethodFailed,
        format!("method panicked: {}", panic_message(panic)),
    )
}

/// Admits call `call` from the peer and spawns its task.
pub(crate) fn start(session: &Session, call: Call) -> ControlFlow<()> {
    let inner = &*session.inner;
    let id = call.id;
    if id == 0 {
        return violation(inner, "call with id 0 (ids start at 1)");
    }
    let max = inner.config.max_calls_in_flight;
    let (cancel_tx, cancel_rx) = oneshot::channel();
    let admitted = {
        let mut table = lock(&inner.incoming);
        if table.closed {
            return ControlFlow::Break(());
        }
        if table.calls.contains_key(&id) {
            drop(table);
            return violation(
                inner,
                format!("call id {id} reused while that call is in flight"),
            );
        }
        if table.calls.len() + table.replying >= max {
            drop(table);
            tracing::debug!(
                session = inner.id,
                id,
                "incoming call refused: in-flight limit"
            );
            let refusal = Message::Error {
                id,
                code: ErrorCode::Limit,
                message: format!(
                    "{}.{} refused: {max} calls already in flight on this connection; retry later",
                    call.target, call.method
                ),
            };
            return match inner.send_provoked(&refusal) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            };
        }
        table.admitted += 1;
        let admitted = table.admitted;
        table.calls.insert(id, (admitted, cancel_tx));
        admitted
    };
    let deadline = match call.timeout_ms {
        0 => inner.config.default_call_timeout,
        ms => Duration::from_millis(ms),
    };
    tokio::spawn(run(session.clone(), call, deadline, cancel_rx, admitted));
    ControlFlow::Continue(())
}

/// The peer cancelled its call `id`: drop the call's future. Unknown ids are ignored (the
/// call may have just finished).
pub(crate) fn cancel(inner: &Inner, id: u64) {
    let entry = lock(&inner.incoming).calls.remove(&id);
    if let Some((_, cancel)) = entry {
        tracing::debug!(session = inner.id, id, "incoming call cancelled by peer");
        let _ = cancel.send(());
    }
}

/// Moves call `id` from the table to the `replying` count if it is still the admission
/// `admitted`; `None` if it was cancelled (or the connection closed) meanwhile.
fn finish(inner: &Inner, id: u64, admitted: u64) -> Option<Replying<'_>> {
    let mut table = lock(&inner.incoming);
    match table.calls.get(&id) {
        Some((n, _)) if *n == admitted => {
            table.calls.remove(&id);
            table.replying += 1;
            Some(Replying(inner))
        }
        _ => None,
    }
}

/// One incoming call, from handler to reply.
async fn run(
    session: Session,
    call: Call,
    deadline: Duration,
    cancel: oneshot::Receiver<()>,
    admitted: u64,
) {
    let inner = session.inner.clone();
    let id = call.id;
    let label = format!("{}.{}", call.target, call.method);
    let handler = inner.handler.clone();
    let work = async move {
        let future =
            match std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(session, call))) {
                Ok(future) => future,
                Err(panic) => return Err(panicked(panic.as_ref())),
            };
        match AssertUnwindSafe(future).catch_unwind().await {
            Ok(result) => result,
            Err(panic) => Err(panicked(panic.as_ref())),
        }
    };
    let outcome = tokio::select! {
        biased;
        // A cancel, or the switch dropped because the connection closed.
        _ = cancel => return,
        outcome = tokio::time::timeout(deadline, work) => outcome,
    };
    let Some(_replying) = finish(&inner, id, admitted) else {
        return;
    };
    let reply = match outcome {
        Ok(Ok(value)) => Message::Reply { id, value },
        Ok(Err(fault)) => {
            if fault.code == ErrorCode::MethodFailed && fault.message.starts_with("method panicked")
            {
                tracing::warn!(session = inner.id, peer = %inner.peer.identity, call = %label, "{}", fault.message);
            }
            Message::Error {
                id,
                code: fault.code,
                message: fault.message,
            }
        }
        Err(_) => Message::Error {
            id,
            code: ErrorCode::Timeout,
            message: format!("{label} did not finish within {deadline:?}"),
        },
    };
    if let Err(NotSent::Unencodable(e)) = inner.send_wait(Lane::Ctrl, &reply).await {
        tracing::warn!(session = inner.id, call = %label, "reply cannot be sent: {e}");
        let refusal = Message::Error {
            id,
            code: e.code(),
            message: format!("{label} result cannot be sent: {e}"),
        };
        let _ = inner.send_wait(Lane::Ctrl, &refusal).await;
    }
}
