//! [`Session`]: the cloneable handle to one live connection, its shared state, the outgoing
//! call path (ids, pending map, deadlines, cancel) and the one way a connection ends.
//!
//! Owns the per-connection tables (pending calls and pings, incoming calls, streams) and
//! [`Inner::shut`], which closes all of them at once so nothing waits for a deadline on a dead
//! connection. Never touches the socket directly: bytes go out through `writer.rs` and come in
//! through `reader.rs`. Never panics on what the peer sent.
//!
//! A connection stays up while the peer keeps it open, even when every local `Session` handle
//! has been dropped (a serving side usually keeps none); call [`Session::close`] to end it.

use crate::incoming::Incoming;
use crate::reader::Inbound;
use crate::shm::Laps;
use crate::socket::Socket;
use crate::stream::{ByteStream, Streams};
use crate::writer::{Lane, NotSent, Outbox, Outgoing};
use crate::{Config, Fault, Handler, SessionError};
use bytes::BytesMut;
use logos_wire::{Attrs, CallRef, ErrorCode, Message, Value};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::Instant;

/// A map keyed by call id: ids are small integers (ours sequential, the peer's chosen by it),
/// which SipHash would hash at several times the cost of everything else done per call.
pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Hashes a `u64` id by a multiply and a fold: cheap, and mixed enough that ids the peer
/// picks with equal low bits still spread over the table.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b) ^ self.0.rotate_left(8));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let h = (n ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Process-wide source of [`Session::id`]s.
static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

/// `now + d`, saturating (a far-future instant) instead of overflowing on huge durations.
pub(crate) fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Locks `m`, ignoring poisoning: every critical section in this crate leaves its data
/// consistent before anything that could panic, so a poisoned lock is still usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Who is on the other end: the identity established by the handshake and the kernel's view of
/// the peer process (SO_PEERCRED).
#[derive(Debug, Clone)]
pub struct Peer {
    /// The peer's identity (from `hello` as accepted, or from `welcome`).
    pub identity: String,
    /// The peer process id, if the kernel reported one.
    pub pid: Option<u32>,
    /// The peer user id.
    pub uid: Option<u32>,
    /// Attributes the peer sent in its `hello`/`welcome`.
    pub attrs: Attrs,
    /// The protocol minor version the peer announced; nothing newer is sent to it (error
    /// codes are mapped down with [`ErrorCode::for_peer`]).
    pub minor: u16,
}

/// Our calls and pings waiting for the peer's answer.
#[derive(Default)]
pub(crate) struct Pending {
    calls: IdMap<Waiting>,
    pings: IdMap<oneshot::Sender<Option<String>>>,
    /// Set by [`Inner::shut`]; nothing is registered after it.
    closed: Option<Arc<str>>,
    /// The deadline the deadline task (`deadline.rs`) sleeps towards: no later than that of
    /// any call waiting, perhaps of one answered since. `None` while it waits for a call.
    pub(crate) armed: Option<Instant>,
}

impl Pending {
    /// Takes out every call whose deadline is at or before `now` (dropping them wakes their
    /// callers with a timeout) and arms the earliest deadline left.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Waiting> {
        let ids: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        let expired = ids.iter().filter_map(|id| self.calls.remove(id)).collect();
        self.armed = self.calls.values().map(|w| w.deadline).min();
        expired
    }
}

/// A call waiting for its answer.
pub(crate) struct Waiting {
    tx: oneshot::Sender<Result<Value, Fault>>,
    /// Its caller runs where the reader's polling after an answer helps it (see
    /// [`Inner::complete_call`]).
    nearby: bool,
    /// Past it the deadline task drops `tx`, and the caller fails with `timeout`.
    deadline: Instant,
}

thread_local! {
    /// This thread polls for its calls' answers itself ([`PollingCaller`]).
    static POLLS_ITSELF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The connection of the last call such a thread made, which it reads while it waits
    /// ([`PollingCaller::read_now`]); cleared with the outermost mark.
    static AWAITED: std::cell::RefCell<Option<Weak<Inner>>> = const { std::cell::RefCell::new(None) };
}

/// Marks the current thread, until dropped, as one that polls for its calls' answers itself
/// (the C API's caller thread spins on its answer before it sleeps). The reader then does not
/// poll its socket after handing such a caller its answer (`Config::busy_poll`): the caller's
/// polling already covers the next answer's arrival, and a reader polling on a worker beside
/// it would only take a CPU from it and from the peer. Three threads polling on two CPUs made
/// a C API call cost about 3× the Rust API's (docs/performance.md).
///
/// Between its polls such a thread calls [`PollingCaller::read_now`], which reads the
/// connection of its call on that thread, so the answer is taken off the socket where it is
/// awaited instead of by a worker thread that must first wake.
///
/// ```
/// use logos_session::PollingCaller;
///
/// let _polling = PollingCaller::mark();
/// // No call made on this thread yet: nothing to read for.
/// assert!(!PollingCaller::read_now());
/// ```
#[must_use = "the mark lasts until the guard is dropped"]
pub struct PollingCaller {
    was: bool,
}

impl PollingCaller {
    /// Marks the current thread (see the type's docs).
    pub fn mark() -> PollingCaller {
        PollingCaller {
            was: POLLS_ITSELF.with(|f| f.replace(true)),
        }
    }

    /// One turn of this thread's wait for the answer to the last call it made: reads that
    /// call's connection here, without waiting, and acts on what came (the answer is handed
    /// to its call, whose future is then ready; anything else is dispatched as the
    /// connection's reader task would). A call answered this way costs no wake-up of a
    /// worker thread and no hand-over between threads (docs/performance.md, thirteenth
    /// step).
    ///
    /// `true` when it read something; `false` when the socket had nothing, when the
    /// connection's reader task was reading it at that moment (that task then hands the
    /// answer over), when this thread is not marked or has made no call, or when it is not
    /// inside a tokio runtime's context (an incoming call it took would start a task there).
    /// Call it between polls of the call's future, inside the runtime's context
    /// (`Handle::enter`); it never blocks.
    pub fn read_now() -> bool {
        if !POLLS_ITSELF.with(std::cell::Cell::get) {
            return false;
        }
        let Some(inner) = AWAITED.with(|a| a.borrow().as_ref().and_then(Weak::upgrade)) else {
            return false;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return false;
        }
        unmarked(|| crate::reader::pump(&Session { inner }))
    }
}

/// Runs `f` with the current thread unmarked (and so not recording the connections of the
/// calls `f` makes), then restores the mark, even if `f` panics. What `read_now` dispatches
/// runs on the waiting thread: an incoming call's first poll, which may make calls of its
/// own (a relay), is not that thread's wait, and must neither be answered as a polling
/// caller's nor make the thread read another connection than its own call's.
fn unmarked<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            POLLS_ITSELF.with(|m| m.set(self.0));
        }
    }
    let _restore = Restore(POLLS_ITSELF.with(|m| m.replace(false)));
    f()
}

impl Drop for PollingCaller {
    fn drop(&mut self) {
        POLLS_ITSELF.with(|f| f.set(self.was));
        if !self.was {
            AWAITED.with(|a| a.borrow_mut().take());
        }
    }
}

impl fmt::Debug for PollingCaller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollingCaller").finish_non_exhaustive()
    }
}

/// Whether the caller of a call being made now is answered with the reader polling after it
/// (see [`PollingCaller`]): every caller but a thread marked as polling itself.
fn caller_nearby() -> bool {
    !POLLS_ITSELF.with(std::cell::Cell::get)
}

/// The state of one connection shared by the handle, the reader, the writer and the tasks
/// running incoming calls.
pub(crate) struct Inner {
    pub(crate) id: u64,
    pub(crate) peer: Peer,
    pub(crate) config: Config,
    pub(crate) handler: Arc<dyn Handler>,
    /// `true` on the side that called [`connect`](crate::connect) (opens odd stream ids).
    pub(crate) connector: bool,
    /// Frames waiting for the socket; see `writer.rs`.
    pub(crate) out: Mutex<Outbox>,
    /// Wakes the writer task (work queued, or the connection is closing).
    pub(crate) wake: Notify,
    /// Signalled (to all waiters) whenever queued bytes drop or the writer goes idle/exits.
    pub(crate) progress: Notify,
    /// Wakes the deadline task: a call's deadline is earlier than the one it sleeps towards.
    pub(crate) rearm: Notify,
    pub(crate) closed: AtomicBool,
    /// The close reason, `None` while open. Also what [`Session::closed`] waits on.
    pub(crate) reason: watch::Sender<Option<Arc<str>>>,
    pub(crate) pending: Mutex<Pending>,
    next_call: AtomicU64,
    next_nonce: AtomicU64,
    pub(crate) incoming: Mutex<Incoming>,
    pub(crate) streams: Mutex<Streams>,
    next_stream: AtomicU64,
    /// Set once [`Handler::closed`] has been called.
    pub(crate) handler_closed: AtomicBool,
    /// This side announced it takes shared frames (`shm.rs`), so the reader accepts them.
    pub(crate) shared_in: bool,
    /// How bodies go round both rings of this connection (`shm.rs`, "Short laps").
    pub(crate) ring_laps: Laps,
    /// Shared frames received (the writer counts those it sends in the outbox).
    pub(crate) shared_received: AtomicU64,
    /// The socket's inbound half, which the reader task reads (`reader.rs`).
    pub(crate) inbound: Inbound,
}

impl Inner {
    /// The close reason; "connection is closing" while the close is still under way.
    pub(crate) fn close_reason(&self) -> Arc<str> {
        self.reason
            .borrow()
            .clone()
            .unwrap_or_else(|| Arc::from("connection is closing"))
    }

    /// The fault every call on a closed connection fails with.
    pub(crate) fn unavailable(&self) -> Fault {
        Fault::new(
            ErrorCode::Unavailable,
            format!(
                "connection to {} closed: {}",
                self.peer.identity,
                self.close_reason()
            ),
        )
    }

    /// Ends the connection: the one place that does. `send` is written to the peer as
    /// `error` id 0 before the socket closes (bounded by `handshake_timeout`); without it
    /// everything still queued is discarded. Fails every pending call and ping with
    /// `unavailable` at once, cancels every incoming call, breaks every stream.
    ///
    /// Returns `false` if the connection was already closing (the first reason wins).
    pub(crate) fn shut(&self, reason: impl Into<String>, send: Option<Fault>) -> bool {
        if !lock(&self.out).begin_close(send) {
            return false;
        }
        self.wake.notify_one();
        self.closed.store(true, Ordering::Release);
        let reason: Arc<str> = Arc::from(reason.into());
        tracing::debug!(session = self.id, peer = %self.peer.identity, %reason, "connection closing");
        self.reason.send_replace(Some(reason.clone()));

        let (calls, pings) = {
            let mut p = lock(&self.pending);
            p.closed = Some(reason.clone());
            (std::mem::take(&mut p.calls), std::mem::take(&mut p.pings))
        };
        if !calls.is_empty() {
            let fault = self.unavailable();
            for (_, waiting) in calls {
                let _ = waiting.tx.send(Err(fault.clone()));
            }
        }
        // Dropping the senders wakes each ping with an error, i.e. `unavailable`.
        drop(pings);
        // Dropping the cancel senders aborts every incoming call (their futures are dropped).
        drop(lock(&self.incoming).close());
        let streams = lock(&self.streams).close();
        for s in streams {
            s.connection_closed(&reason);
        }
        self.progress.notify_waiters();
        true
    }

    /// Registers call `id`, answered through `tx` until `deadline`; `nearby` as
    /// [`caller_nearby`] says. `false` once the connection is closing.
    fn register_call(
        &self,
        id: u64,
        tx: oneshot::Sender<Result<Value, Fault>>,
        nearby: bool,
        deadline: Instant,
    ) -> bool {
        let rearm = {
            let mut p = lock(&self.pending);
            if p.closed.is_some() {
                return false;
            }
            p.calls.insert(
                id,
                Waiting {
                    tx,
                    nearby,
                    deadline,
                },
            );
            let rearm = p.armed.is_none_or(|armed| deadline < armed);
            if rearm {
                p.armed = Some(deadline);
            }
            rearm
        };
        if rearm {
            self.rearm.notify_one();
        }
        true
    }

    /// Removes call `id` from the pending map; `true` if it was still there.
    fn forget_call(&self, id: u64) -> bool {
        lock(&self.pending).calls.remove(&id).is_some()
    }

    /// Delivers the peer's answer to call `id`. Unknown ids are ignored: the call may have
    /// timed out or been cancelled, and its reply crossed our `cancel` on the wire.
    ///
    /// `true` when its caller is nearby ([`caller_nearby`]): only then is the answer call
    /// traffic worth polling after.
    pub(crate) fn complete_call(&self, id: u64, result: Result<Value, Fault>) -> bool {
        let waiting = lock(&self.pending).calls.remove(&id);
        match waiting {
            Some(Waiting { tx, nearby, .. }) => {
                let _ = tx.send(result);
                nearby
            }
            None => {
                tracing::debug!(session = self.id, id, "answer for unknown call id ignored");
                false
            }
        }
    }

    /// Delivers a `pong`. Unknown nonces are ignored.
    pub(crate) fn complete_ping(&self, nonce: u64, unhealthy: Option<String>) {
        if let Some(tx) = lock(&self.pending).pings.remove(&nonce) {
            let _ = tx.send(unhealthy);
        }
    }

    /// Half the stream window, at least 1: how much the application must consume before
    /// credit is returned to the peer.
    pub(crate) fn credit_threshold(&self) -> u64 {
        (self.config.stream_window / 2).max(1)
    }
}

/// Cloneable handle to one live connection.
#[derive(Clone)]
pub struct Session {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.inner.id)
            .field("peer", &self.inner.peer.identity)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// Removes an abandoned call from the pending map and tells the peer (`cancel`), whether it
/// was abandoned by timeout or by dropping the future.
struct CallGuard<'a> {
    inner: &'a Inner,
    id: u64,
    sent: bool,
    done: bool,
    /// The deadline task took the call out of the pending map: still tell the peer.
    expired: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if (self.inner.forget_call(self.id) || self.expired) && self.sent {
            let _ = self
                .inner
                .send(Lane::Ctrl, &Message::Cancel { id: self.id });
        }
    }
}

/// A `ping` sent and not yet answered ([`Session::send_ping`]): its answer is looked at
/// with [`PendingPing::answer`], without a task or a timer of its own. Dropping it forgets
/// the ping; a late `pong` is ignored.
pub struct PendingPing {
    inner: Arc<Inner>,
    nonce: u64,
    rx: oneshot::Receiver<Option<String>>,
}

impl PendingPing {
    /// The `pong`, if it came: `Some(Ok(None))` healthy, `Some(Ok(Some(reason)))`
    /// unhealthy, `Some(Err(unavailable))` when the connection ended first, `None` while
    /// unanswered.
    pub fn answer(&mut self) -> Option<Result<Option<String>, Fault>> {
        match self.rx.try_recv() {
            Ok(health) => Some(Ok(health)),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(self.inner.unavailable())),
        }
    }
}

impl fmt::Debug for PendingPing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingPing")
            .field("peer", &self.inner.peer.identity)
            .field("nonce", &self.nonce)
            .finish()
    }
}

impl Drop for PendingPing {
    fn drop(&mut self) {
        lock(&self.inner.pending).pings.remove(&self.nonce);
    }
}

impl Session {
    /// Starts the reader and writer tasks on an authenticated socket. `buf` holds bytes read
    /// past the handshake frame (the peer may pipeline calls right after it).
    pub(crate) fn start(
        stream: Socket,
        buf: BytesMut,
        peer: Peer,
        handler: Arc<dyn Handler>,
        config: Config,
        connector: bool,
    ) -> Session {
        let shared_in = announces_shared(&stream, &config);
        let announced = |attr: &str| peer.attrs.get(attr) == Some(&Value::Bool(true));
        let shared_out = if stream.carries_fds() && announced(logos_wire::SHARED_ATTR) {
            config.shared_min
        } else {
            None
        };
        // This side announces short laps with shared frames, so both rings use them exactly
        // when the peer announced them too.
        let ring_laps = if announced(logos_wire::SHARED_LAPS_ATTR) {
            Laps::Short
        } else {
            Laps::Whole
        };
        if !shared_in {
            // The peer was not offered shared frames, so it sends no descriptor.
            stream.no_more_fds();
        }
        let sock = Arc::new(stream);
        let inbound = Inbound::new(sock.clone(), buf, config.max_frame);
        let (reason, _) = watch::channel(None);
        let inner = Arc::new(Inner {
            id: NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed),
            peer,
            out: Mutex::new(Outbox::new(
                sock.clone(),
                config.max_frame,
                shared_out,
                ring_laps,
            )),
            config,
            handler,
            connector,
            wake: Notify::new(),
            progress: Notify::new(),
            rearm: Notify::new(),
            closed: AtomicBool::new(false),
            reason,
            pending: Mutex::new(Pending::default()),
            next_call: AtomicU64::new(1),
            next_nonce: AtomicU64::new(1),
            incoming: Mutex::new(Incoming::default()),
            streams: Mutex::new(Streams::default()),
            next_stream: AtomicU64::new(if connector { 1 } else { 2 }),
            handler_closed: AtomicBool::new(false),
            shared_in,
            ring_laps,
            shared_received: AtomicU64::new(0),
            inbound,
        });
        tracing::debug!(session = inner.id, peer = %inner.peer.identity, "connection started");
        tokio::spawn(crate::writer::run(inner.clone(), sock.clone()));
        tokio::spawn(crate::reader::run(inner.clone()));
        tokio::spawn(crate::deadline::run(inner.clone()));
        Session { inner }
    }

    /// Unique id of this connection within the process (for maps keyed by connection).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Who is on the other end.
    pub fn peer(&self) -> &Peer {
        &self.inner.peer
    }

    /// Frames that went through shared memory on this connection (docs/protocol.md §3.1):
    /// `(sent, received)`.
    pub fn shared_frames(&self) -> (u64, u64) {
        (
            lock(&self.inner.out).shared_sent(),
            self.inner.shared_received.load(Ordering::Relaxed),
        )
    }

    /// Calls `target.method(args)` on the peer and waits at most `timeout` (also sent as the
    /// call's `timeout_ms`). Dropping the future sends `cancel`.
    ///
    /// The deadline is enforced here, whatever the peer does: at expiry the call fails with
    /// `timeout` (naming `target.method` and the duration) and `cancel` is sent.
    ///
    /// # Errors
    /// The peer's [`Fault`]; `timeout` when the deadline passes; `unavailable` when the
    /// connection closes first (never waits for the deadline then); `limit` when the call does
    /// not fit in a frame (`Config::max_frame`) or nests too deep (nothing is sent then).
    ///
    /// # Cancel safety
    /// Dropping the future cancels the call on the peer.
    pub async fn call(
        &self,
        target: &str,
        method: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Value, Fault> {
        self.call_traced(target, method, args, timeout, None).await
    }

    /// [`Session::call`] carrying the caller's trace context (protocol 1.2). The context is
    /// left out for a peer that announced a minor below 2, which would refuse it.
    ///
    /// # Errors
    /// As for [`Session::call`].
    ///
    /// # Cancel safety
    /// Dropping the future cancels the call on the peer.
    pub async fn call_traced(
        &self,
        target: &str,
        method: &str,
        args: Vec<Value>,
        timeout: Duration,
        trace: Option<logos_wire::TraceContext>,
    ) -> Result<Value, Fault> {
        let inner = &*self.inner;
        let trace = trace.filter(|_| inner.peer.minor >= logos_wire::handshake::TRACE_MINOR);
        let deadline = deadline_after(timeout);
        let id = inner.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let nearby = caller_nearby();
        if !inner.register_call(id, tx, nearby, deadline) {
            return Err(inner.unavailable());
        }
        if !nearby {
            // A thread that polls for its answer reads this connection while it waits.
            AWAITED.with(|a| *a.borrow_mut() = Some(Arc::downgrade(&self.inner)));
        }
        let mut guard = CallGuard {
            inner,
            id,
            sent: false,
            done: false,
            expired: false,
        };
        let timeout_ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        // Encoded from where the names and arguments are: no `Call` built to be encoded.
        let msg = Outgoing::Call(CallRef {
            id,
            target,
            method,
            args: &args,
            timeout_ms,
            trace,
        });
        let timed_out = || {
            Fault::new(
                ErrorCode::Timeout,
                format!("{target}.{method} did not answer within {timeout:?}"),
            )
        };
        // The writer has room nearly always: send at once, and build the deadline's timer
        // only for a wait (a `Sleep` costs the runtime handle's lookup and its drop).
        let sent = match inner.send_if_room(Lane::Ctrl, msg) {
            Ok(true) => Ok(Ok(())),
            Ok(false) => tokio::time::timeout_at(deadline, inner.send_wait(Lane::Ctrl, msg)).await,
            Err(e) => Ok(Err(e)),
        };
        match sent {
            Ok(Ok(())) => guard.sent = true,
            Ok(Err(NotSent::Closed)) => {
                guard.done = true;
                inner.forget_call(id);
                return Err(inner.unavailable());
            }
            Ok(Err(NotSent::Unencodable(e))) => {
                guard.done = true;
                inner.forget_call(id);
                return Err(Fault::new(
                    e.code(),
                    format!("{target}.{method} not sent: {e}"),
                ));
            }
            Err(_) => return Err(timed_out()),
        }
        drop(args);
        // No timer here: past the deadline the deadline task drops `tx` (`deadline.rs`).
        match rx.await {
            Ok(result) => {
                guard.done = true;
                result
            }
            Err(_) if Instant::now() >= deadline => {
                guard.expired = true;
                Err(timed_out())
            }
            Err(_) => {
                guard.done = true;
                Err(inner.unavailable())
            }
        }
    }

    /// Queues an event for the peer without waiting. If the peer's event queue is full the
    /// event is dropped, counted, and reported to the peer as `lagged`; returns `false` then.
    ///
    /// The queue holds at most [`Config::event_queue`] events and
    /// [`Config::event_queue_bytes`] bytes of them; the `lagged` notice goes out
    /// just ahead of the next event that fits, so the peer sees delivered events in the order
    /// they were sent. Also returns `false` (without counting) once the connection is closed.
    pub fn send_event(&self, source: &str, event: &str, data: Vec<Value>) -> bool {
        self.inner.send_event(source, event, data)
    }

    /// Asks the peer for `event` of `source` (`""` = all events of `source`).
    ///
    /// # Errors
    /// [`SessionError::Closed`]; [`SessionError::Protocol`] if the names do not fit a frame.
    pub fn subscribe(&self, source: &str, event: &str) -> Result<(), SessionError> {
        self.send_or_closed(&Message::Subscribe {
            source: source.to_owned(),
            event: event.to_owned(),
        })
    }

    /// Withdraws a subscription.
    ///
    /// # Errors
    /// [`SessionError::Closed`]; [`SessionError::Protocol`] if the names do not fit a frame.
    pub fn unsubscribe(&self, source: &str, event: &str) -> Result<(), SessionError> {
        self.send_or_closed(&Message::Unsubscribe {
            source: source.to_owned(),
            event: event.to_owned(),
        })
    }

    fn send_or_closed(&self, msg: &Message) -> Result<(), SessionError> {
        self.inner.send(Lane::Ctrl, msg).map_err(|e| match e {
            NotSent::Closed => SessionError::Closed(self.inner.close_reason().to_string()),
            NotSent::Unencodable(e) => SessionError::Protocol(e),
        })
    }

    /// Opens a byte stream to the peer for `protocol`.
    ///
    /// The stream id is odd on the side that connected, even on the side that accepted. The
    /// peer may refuse the stream by resetting it; that shows up as an error on the first
    /// read or write after the reset arrives.
    ///
    /// # Errors
    /// [`SessionError::Closed`].
    pub fn open_stream(&self, protocol: &str) -> Result<ByteStream, SessionError> {
        let inner = &self.inner;
        let id = inner.next_stream.fetch_add(2, Ordering::Relaxed);
        let closed = || SessionError::Closed(inner.close_reason().to_string());
        let stream = ByteStream::register(inner, id, protocol.to_owned()).ok_or_else(closed)?;
        let open = Message::StreamOpen {
            stream: id,
            protocol: protocol.to_owned(),
        };
        if inner.send(Lane::Ctrl, &open).is_err() {
            return Err(closed());
        }
        Ok(stream)
    }

    /// Sends `ping` and waits for `pong`; `Ok(None)` healthy, `Ok(Some(reason))` unhealthy.
    ///
    /// # Errors
    /// `timeout` or `unavailable`.
    ///
    /// # Cancel safety
    /// Dropping the future forgets the ping; a late `pong` is ignored.
    pub async fn ping(&self, timeout: Duration) -> Result<Option<String>, Fault> {
        let mut ping = self.send_ping()?;
        match tokio::time::timeout(timeout, &mut ping.rx).await {
            Ok(Ok(health)) => Ok(health),
            Ok(Err(_)) => Err(self.inner.unavailable()),
            Err(_) => Err(Fault::new(
                ErrorCode::Timeout,
                format!(
                    "ping to {} not answered within {timeout:?}",
                    self.inner.peer.identity
                ),
            )),
        }
    }

    /// Sends `ping` and returns at once; the answer is read later from the
    /// [`PendingPing`]. For a caller that checks many connections on one timer (the core's
    /// heartbeats) instead of a task and a timeout per ping.
    ///
    /// # Errors
    /// `unavailable` when the connection has ended.
    pub fn send_ping(&self) -> Result<PendingPing, Fault> {
        let inner = &self.inner;
        let nonce = inner.next_nonce.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = lock(&inner.pending);
            if p.closed.is_some() {
                drop(p);
                return Err(inner.unavailable());
            }
            p.pings.insert(nonce, tx);
        }
        let ping = PendingPing {
            inner: Arc::clone(inner),
            nonce,
            rx,
        };
        if inner.send(Lane::Ctrl, &Message::Ping { nonce }).is_err() {
            return Err(inner.unavailable());
        }
        Ok(ping)
    }

    /// Asks the peer to shut down within `grace`. Ignored if the connection is closed.
    pub fn send_shutdown(&self, grace: Duration) {
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let _ = self.inner.send(Lane::Ctrl, &Message::Shutdown { grace_ms });
    }

    /// Sends `error` id 0 with `fault` (if still open) and closes the connection. Calls in
    /// flight fail with `unavailable`.
    ///
    /// Frames queued before this one are still written (within `handshake_timeout`), then the
    /// socket is closed.
    pub fn close(&self, fault: Fault) {
        let reason = format!("closed locally: {fault}");
        self.inner.shut(reason, Some(fault));
    }

    /// `true` once the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Resolves when the connection has ended, with the reason.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn closed(&self) -> String {
        let mut rx = self.inner.reason.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.as_deref().unwrap_or_default().to_owned(),
            // The sender lives in `Inner`, which `self` keeps alive.
            Err(_) => String::from("connection closed"),
        }
    }

    /// Calls made on this connection that have no answer yet (a hot swap waits for these
    /// before it asks the old process to stop, so none of them meets a closing peer).
    pub fn calls_pending(&self) -> usize {
        lock(&self.inner.pending).calls.len()
    }

    /// Bytes queued for writing and not yet handed to the socket.
    pub fn queued_bytes(&self) -> usize {
        lock(&self.inner.out).queued()
    }

    /// Events queued for the peer and not yet handed to the socket (at most
    /// [`Config::event_queue`]).
    pub fn queued_events(&self) -> usize {
        lock(&self.inner.out).queued_events().count
    }

    /// Bytes of the events queued for the peer and not yet handed to the socket (at most
    /// [`Config::event_queue_bytes`], or one event when a single one is bigger).
    pub fn queued_event_bytes(&self) -> usize {
        lock(&self.inner.out).queued_events().bytes
    }

    /// Resolves once nothing is queued any more (everything sent so far has been handed to the
    /// socket), or the connection has closed. While others keep sending, this may wait for
    /// their frames too.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn flush(&self) {
        self.inner.flushed().await;
    }
}

/// Does this side announce shared frames on `stream` (and so accept them)? Only over a Unix
/// socket, and only when `config` allows them.
pub(crate) fn announces_shared(stream: &Socket, config: &Config) -> bool {
    stream.carries_fds() && config.shared_min.is_some()
}

/// Puts the `"shm"` and `"shm_laps"` attributes in this side's `hello` or `welcome` when it
/// announces shared frames ([`announces_shared`]).
pub(crate) fn announce_shared(stream: &Socket, config: &Config, attrs: &mut Attrs) {
    if announces_shared(stream, config) {
        attrs.insert(logos_wire::SHARED_ATTR.into(), Value::Bool(true));
        attrs.insert(logos_wire::SHARED_LAPS_ATTR.into(), Value::Bool(true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    #[test]
    fn id_hashes_spread_sequential_and_strided_ids_over_low_bits() {
        let build = BuildHasherDefault::<IdHasher>::default();
        for stride in [1u64, 2, 1 << 10, 1 << 32] {
            let buckets: HashSet<u64> = (1..=256u64)
                .map(|i| build.hash_one(i * stride) & 255)
                .collect();
            // A perfect spread would fill all 256; identity-like hashing of strided ids
            // would fill one.
            assert!(
                buckets.len() > 128,
                "stride {stride}: {} buckets",
                buckets.len()
            );
        }
    }

    #[test]
    fn id_maps_behave_like_maps() {
        let mut map: IdMap<u64> = IdMap::default();
        for i in 0..1000 {
            map.insert(i * 7, i);
        }
        assert_eq!(map.len(), 1000);
        assert_eq!(map.remove(&(7 * 500)), Some(500));
        assert!(!map.contains_key(&(7 * 500)));
    }

    #[test]
    fn what_a_polling_thread_dispatches_runs_unmarked_and_the_mark_comes_back() {
        let _mark = PollingCaller::mark();
        assert!(!caller_nearby());
        assert!(
            unmarked(caller_nearby),
            "inside, calls are answered as anyone's"
        );
        assert!(!caller_nearby(), "the mark is back");
        let panicked = std::panic::catch_unwind(|| unmarked(|| panic!("a handler panicked")));
        assert!(panicked.is_err());
        assert!(!caller_nearby(), "the mark is back after a panic too");
    }

    #[test]
    fn only_a_thread_marked_as_polling_itself_is_answered_without_the_reader_polling() {
        assert!(caller_nearby());
        {
            let _outer = PollingCaller::mark();
            assert!(!caller_nearby());
            {
                let _inner = PollingCaller::mark();
                assert!(!caller_nearby());
            }
            assert!(!caller_nearby(), "still marked by the outer guard");
            std::thread::scope(|s| {
                s.spawn(|| assert!(caller_nearby(), "the mark is per thread"));
            });
        }
        assert!(caller_nearby());
    }
}
