//! Incoming calls: admission (id checks, the in-flight limit), the first poll of each call on
//! the reader, a task for the calls that do not finish in it, their deadline, their
//! cancellation, and every reply.
//!
//! Owns the table of the peer's calls in flight. Never waits on the reader: admission is a
//! few checks, then the handler's future is polled once right there. Most methods finish in
//! that poll (anything that does not wait for I/O), and their reply is queued at once: no task,
//! no timer, no table entry, no wake-up. A call still pending after it moves to its own task,
//! so a method may call back into this very peer (A→B→A) without deadlock. Only a peer that
//! stops reading makes a finished call wait: past the writer's high-water mark its reply goes
//! to a task that waits for room, still counted against the in-flight limit.
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
use crate::session::{IdMap, Inner, Session, lock};
use crate::writer::{Lane, NotSent};
use futures::FutureExt;
use futures::future::BoxFuture;
use logos_wire::{Call, ErrorCode, Message, Value};
use std::any::Any;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::oneshot;

/// The peer's calls in flight: id → (admission number, cancel switch).
#[derive(Default)]
pub(crate) struct Incoming {
    calls: IdMap<(u64, oneshot::Sender<()>)>,
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
    pub(crate) fn close(&mut self) -> IdMap<(u64, oneshot::Sender<()>)> {
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

/// Admits call `call` from the peer, polls it once, and queues its reply or spawns its task.
pub(crate) fn start(session: &Session, call: Call) -> ControlFlow<()> {
    let inner = &*session.inner;
    let id = call.id;
    if id == 0 {
        return violation(inner, "call with id 0 (ids start at 1)");
    }
    let max = inner.config.max_calls_in_flight;
    {
        let table = lock(&inner.incoming);
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
    }
    let deadline = match call.timeout_ms {
        0 => inner.config.default_call_timeout,
        ms => Duration::from_millis(ms),
    };
    let label = label_of(&call);
    // A call the handler serves at once needs no future, box or poll.
    let now = std::panic::catch_unwind(AssertUnwindSafe(|| inner.handler.call_now(session, call)));
    let call = match now {
        Ok(Ok(result)) => {
            reply(session, id, label, result);
            return ControlFlow::Continue(());
        }
        Ok(Err(call)) => call,
        Err(panic) => {
            reply(session, id, label, Err(panicked(panic.as_ref())));
            return ControlFlow::Continue(());
        }
    };
    let built = std::panic::catch_unwind(AssertUnwindSafe(|| {
        inner.handler.call(session.clone(), call)
    }));
    let mut future = match built {
        Ok(future) => future,
        Err(panic) => {
            reply(session, id, label, Err(panicked(panic.as_ref())));
            return ControlFlow::Continue(());
        }
    };
    // The first poll, here on the reader. A waker is needed only by a future that is still
    // pending afterwards, and that one is polled again at once by its own task, which
    // registers the task's waker: nothing can be missed in between.
    let mut cx = Context::from_waker(Waker::noop());
    match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))) {
        Ok(Poll::Ready(result)) => {
            reply(session, id, label, result);
            ControlFlow::Continue(())
        }
        Err(panic) => {
            reply(session, id, label, Err(panicked(panic.as_ref())));
            ControlFlow::Continue(())
        }
        Ok(Poll::Pending) => {
            let (cancel_tx, cancel_rx) = oneshot::channel();
            let admitted = {
                let mut table = lock(&inner.incoming);
                if table.closed {
                    return ControlFlow::Break(());
                }
                table.admitted += 1;
                let admitted = table.admitted;
                table.calls.insert(id, (admitted, cancel_tx));
                admitted
            };
            let pending = Pending {
                id,
                label,
                future,
                deadline,
                admitted,
            };
            tokio::spawn(run(session.inner.clone(), pending, cancel_rx));
            ControlFlow::Continue(())
        }
    }
}

/// `target.method`, for messages.
fn label_of(call: &Call) -> String {
    let mut label = String::with_capacity(call.target.len() + 1 + call.method.len());
    label.push_str(&call.target);
    label.push('.');
    label.push_str(&call.method);
    label
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

/// A call still running after its first poll.
struct Pending {
    id: u64,
    label: String,
    future: BoxFuture<'static, Result<Value, Fault>>,
    deadline: Duration,
    admitted: u64,
}

/// The rest of one incoming call, in its own task: deadline, cancel, reply.
async fn run(inner: Arc<Inner>, call: Pending, cancel: oneshot::Receiver<()>) {
    let Pending {
        id,
        label,
        future,
        deadline,
        admitted,
    } = call;
    let work = async move {
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
    let answer = match outcome {
        Ok(result) => answer(&inner, id, &label, result),
        Err(_) => Message::Error {
            id,
            code: ErrorCode::Timeout,
            message: format!("{label} did not finish within {deadline:?}"),
        },
    };
    send_reply(&inner, id, &label, answer).await;
}

/// The `reply` or `error` that answers call `id` with `result`.
fn answer(inner: &Inner, id: u64, label: &str, result: Result<Value, Fault>) -> Message {
    match result {
        Ok(value) => Message::Reply { id, value },
        Err(fault) => {
            if fault.code == ErrorCode::MethodFailed && fault.message.starts_with("method panicked")
            {
                tracing::warn!(session = inner.id, peer = %inner.peer.identity, call = %label, "{}", fault.message);
            }
            Message::Error {
                id,
                // A code newer than the peer's protocol minor goes out as one it knows.
                code: fault.code.for_peer(inner.peer.minor),
                message: fault.message,
            }
        }
    }
}

/// The `error` sent instead of an answer that cannot be encoded.
fn unencodable(inner: &Inner, id: u64, label: &str, e: &logos_wire::WireError) -> Message {
    tracing::warn!(session = inner.id, call = %label, "reply cannot be sent: {e}");
    Message::Error {
        id,
        code: e.code(),
        message: format!("{label} result cannot be sent: {e}"),
    }
}

/// Queues the answer of a call that finished on its first poll: at once while the writer has
/// room, else from a task that waits for room (counted as `replying`, like any call whose
/// reply waits).
fn reply(session: &Session, id: u64, label: String, result: Result<Value, Fault>) {
    let inner = &*session.inner;
    let mut msg = answer(inner, id, &label, result);
    match inner.send_if_room(Lane::Ctrl, &msg) {
        Ok(true) | Err(NotSent::Closed) => return,
        Ok(false) => {}
        Err(NotSent::Unencodable(e)) => {
            msg = unencodable(inner, id, &label, &e);
            match inner.send_if_room(Lane::Ctrl, &msg) {
                Ok(false) => {}
                Ok(true) | Err(_) => return,
            }
        }
    }
    lock(&inner.incoming).replying += 1;
    let inner = session.inner.clone();
    tokio::spawn(async move {
        let _replying = Replying(&inner);
        send_reply(&inner, id, &label, msg).await;
    });
}

/// Queues an answer, waiting while the writer is over its high-water mark.
async fn send_reply(inner: &Inner, id: u64, label: &str, msg: Message) {
    if let Err(NotSent::Unencodable(e)) = inner.send_wait(Lane::Ctrl, &msg).await {
        let refusal = unencodable(inner, id, label, &e);
        let _ = inner.send_wait(Lane::Ctrl, &refusal).await;
    }
}
