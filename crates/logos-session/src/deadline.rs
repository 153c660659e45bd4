//! The deadline task: fails this connection's calls whose deadline has passed.
//!
//! Owns the one timer of a connection's outgoing calls. A call registers its deadline in
//! the pending map (`session.rs`) and waits on its answer alone; this task sleeps until the
//! earliest deadline it was told of ([`Pending::armed`](crate::session::Pending)), then drops
//! the answer channel of every call past its deadline, which its caller takes as a timeout.
//! So a call costs no timer of its own: registering a timer in tokio's wheel and taking it
//! out again when the answer came first was about a tenth of a module's part of a round
//! trip (docs/performance.md, seventeenth step). The task is woken only when a call's
//! deadline is earlier than the one it sleeps towards, which calls with one timeout each
//! never are; a deadline that passes after its call was answered costs one look over the
//! calls still waiting.
//!
//! Never answers a call itself and never talks to the peer: the caller, seeing its channel
//! dropped past its deadline, fails with `timeout` and sends the `cancel`. Ends when the
//! connection closes (closing fails every pending call itself).

use crate::session::{Inner, lock};
use std::sync::Arc;
use tokio::time::Instant;

/// The deadline task of one connection.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut reason = inner.reason.subscribe();
    loop {
        // Created before `armed` is read: a deadline registered after the read stores a
        // permit this future then takes, so no earlier deadline is missed.
        let rearmed = inner.rearm.notified();
        let armed = lock(&inner.pending).armed;
        match armed {
            None => tokio::select! {
                _ = rearmed => {}
                _ = reason.wait_for(Option::is_some) => return,
            },
            Some(at) => tokio::select! {
                () = tokio::time::sleep_until(at) => expire(&inner, Instant::now()),
                _ = rearmed => {}
                _ = reason.wait_for(Option::is_some) => return,
            },
        }
    }
}

/// Drops the answer channel of every call whose deadline is at or before `now`, and arms
/// the next deadline (or none).
fn expire(inner: &Inner, now: Instant) {
    let expired = lock(&inner.pending).expire(now);
    if !expired.is_empty() {
        tracing::debug!(
            session = inner.id,
            peer = %inner.peer.identity,
            calls = expired.len(),
            "calls passed their deadline"
        );
    }
    // Dropped here, outside the lock: each wakes its caller.
    drop(expired);
}
