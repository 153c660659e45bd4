//! Admission to the handshake on a listening socket: [`Acceptor`] accepts connections without
//! ever spinning when the process runs out of descriptors, and hands each one a [`Ticket`] that
//! bounds how many connections may wait for their `hello` at once.
//!
//! Owns the pre-authentication budget of one listening socket. Never reads or writes a
//! connection's bytes (`handshake.rs` does, see [`read_hello_admitted`](crate::read_hello_admitted))
//! and never decides who is welcome.
//!
//! # Design: evict the oldest, never stall the accept loop
//!
//! A semaphore around the handshake would let `max` idle connections (a peer that connects and
//! sends nothing) hold every slot until their handshake timeout, and a peer that keeps opening
//! them would keep real clients waiting for as long as it likes. Instead the accept loop never
//! waits for a slot: when `max` connections are already waiting for their hello, the one that
//! has waited longest is closed (told `limit`) to make room for the new one. A real client sends
//! its hello as soon as it has connected and holds its slot for about one round trip, so the
//! connections pushed out are the idle ones; to push out a real client a peer would have to
//! open `max` connections within that round trip. Memory before authentication stays bounded
//! by `max` × the handshake frame cap (`Config::max_handshake_frame`).
//!
//! # Accept errors
//!
//! `accept(2)` fails with `EMFILE`/`ENFILE` while the process (or the system) is out of
//! descriptors, and keeps failing at once, since the connection stays in the listen backlog:
//! retrying in a loop burns a whole CPU. [`Acceptor::accept`] backs off exponentially
//! ([`BACKOFF_FIRST`] doubling up to [`BACKOFF_MAX`]) and logs once per streak of failures.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use crate::session::lock;

/// Connections allowed to wait for their `hello` at once on one listening socket, by default.
pub const DEFAULT_MAX_HANDSHAKES: usize = 64;
/// First pause after a failed `accept`.
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// Longest pause between failed `accept`s.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// While failures go on, one warning per this many of them (about a minute at the longest
/// pause), so a long outage stays visible without flooding the log.
const WARN_EVERY: u32 = 64;

/// The connections of one listening socket that are waiting for their handshake, oldest
/// first (ids only grow).
#[derive(Debug, Default)]
struct Slots {
    next: u64,
    waiting: BTreeMap<u64, oneshot::Sender<()>>,
}

/// Hands out [`Ticket`]s, at most `max` of them alive: one more evicts the oldest.
#[derive(Debug, Clone)]
pub struct Admission {
    slots: Arc<Mutex<Slots>>,
    max: usize,
}

impl Admission {
    /// At most `max` (at least 1) connections waiting for their handshake at once.
    pub fn new(max: usize) -> Admission {
        Admission {
            slots: Arc::default(),
            max: max.max(1),
        }
    }

    /// Admits one more connection to its handshake. If `max` are already waiting, the one
    /// admitted longest ago is evicted: its [`Ticket::evicted`] resolves.
    pub fn enter(&self) -> Ticket {
        let (tx, rx) = oneshot::channel();
        let mut slots = lock(&self.slots);
        while slots.waiting.len() >= self.max {
            if let Some((_, oldest)) = slots.waiting.pop_first() {
                let _ = oldest.send(());
            }
        }
        let id = slots.next;
        slots.next += 1;
        slots.waiting.insert(id, tx);
        Ticket {
            id,
            slots: Arc::clone(&self.slots),
            evicted: rx,
            max: self.max,
        }
    }

    /// Connections waiting for their handshake now.
    pub fn waiting(&self) -> usize {
        lock(&self.slots).waiting.len()
    }

    /// The most that may wait at once.
    pub fn max(&self) -> usize {
        self.max
    }
}

/// One connection's place among those waiting for their handshake. Dropping it (once the
/// hello is in) frees the place.
#[derive(Debug)]
pub struct Ticket {
    id: u64,
    slots: Arc<Mutex<Slots>>,
    evicted: oneshot::Receiver<()>,
    max: usize,
}

impl Ticket {
    /// Resolves when newer connections pushed this one out.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn evicted(&mut self) {
        // The sender only goes away by being sent on (eviction) or with this ticket.
        let _ = (&mut self.evicted).await;
    }

    /// The most connections that may wait at once (for messages).
    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.slots).waiting.remove(&self.id);
    }
}

/// A listening socket's accept loop body: accepts with back-off on errors and admits each
/// connection to its handshake (see the module docs).
#[derive(Debug)]
pub struct Acceptor {
    listener: UnixListener,
    admission: Admission,
    /// Failed accepts since the last one that worked.
    failures: u32,
}

impl Acceptor {
    /// Accepts on `listener`, with at most `max_handshakes` connections waiting for their
    /// `hello` at once.
    pub fn new(listener: UnixListener, max_handshakes: usize) -> Acceptor {
        Acceptor {
            listener,
            admission: Admission::new(max_handshakes),
            failures: 0,
        }
    }

    /// The admission shared by the tickets this acceptor hands out.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// The next connection and its ticket. Waits through failed accepts, pausing longer after
    /// each (10 ms, doubling up to 1 s), so a process out of descriptors sleeps instead of
    /// spinning; a failure that concerns only the one connection (aborted before it was
    /// accepted, or an interrupted call) is retried at once.
    ///
    /// # Cancel safety
    /// Cancel safe: no connection is lost by dropping the future.
    pub async fn accept(&mut self) -> (UnixStream, Ticket) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    if self.failures > 0 {
                        tracing::info!(
                            failures = self.failures,
                            "accepting connections again after failed attempts"
                        );
                        self.failures = 0;
                    }
                    return (stream, self.admission.enter());
                }
                Err(e) if only_this_connection(&e) => {
                    tracing::debug!("accept: {e}; next");
                }
                Err(e) => {
                    self.failures = self.failures.saturating_add(1);
                    let pause = backoff(self.failures);
                    if self.failures % WARN_EVERY == 1 {
                        tracing::warn!(
                            failures = self.failures,
                            "accepting a connection failed: {e}; retrying in {pause:?} (out of file descriptors? raise the open files limit)"
                        );
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// Errors that concern one connection only, not the listener or the process.
fn only_this_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
    )
}

/// The pause after the `failures`-th failure in a row (1-based).
fn backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    BACKOFF_FIRST.saturating_mul(1 << shift).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), BACKOFF_FIRST);
        assert_eq!(backoff(2), BACKOFF_FIRST * 2);
        assert_eq!(backoff(4), BACKOFF_FIRST * 8);
        assert_eq!(backoff(100), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[tokio::test]
    async fn entering_beyond_max_evicts_the_oldest_ticket() {
        let admission = Admission::new(2);
        let mut a = admission.enter();
        let mut b = admission.enter();
        assert_eq!(admission.waiting(), 2);
        assert!(a.evicted().now_or_never().is_none());
        let mut c = admission.enter();
        assert_eq!(admission.waiting(), 2);
        assert!(a.evicted().now_or_never().is_some(), "the oldest goes");
        assert!(b.evicted().now_or_never().is_none());
        assert!(c.evicted().now_or_never().is_none());
        // A ticket that finished its handshake frees its place: nobody is evicted.
        drop(b);
        let _d = admission.enter();
        assert!(c.evicted().now_or_never().is_none());
        drop(a);
        assert_eq!(admission.waiting(), 2);
    }
}
