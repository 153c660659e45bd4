//! The reader task: reads the socket, splits frames with `logos_wire::FrameDecoder`, and
//! dispatches each message to the call tables, the streams or the [`Handler`](crate::Handler).
//! A thread polling for its own call's answer may do the same between its polls ([`pump`],
//! for [`crate::PollingCaller::read_now`]), under the same lock, so frames are still acted
//! on once each and in order.
//!
//! Owns the inbound half of one connection and the moment [`Handler::closed`](crate::Handler)
//! runs (exactly once, when this task ends, however it ends: a polling thread that finds the
//! connection over only shuts it, and this task ends on that). Never writes to the socket itself
//! and never waits on anything the peer controls except the socket: incoming calls run in
//! their own tasks (`incoming.rs`), so a slow method never stops the reader. Never panics on
//! peer input: a frame that is oversized closes the connection with `limit`, one that is
//! undecodable or breaks the protocol closes it with `protocol_error`, each logged as a
//! warning naming the peer.

use crate::session::{Inner, Session, lock};
use crate::shared_cpu::SharedCpu;
use crate::shm::{Lease, RingIn};
use crate::socket::{ReadTarget, Socket};
use crate::{Fault, incoming, stream};
use bytes::BytesMut;
use logos_wire::{ErrorCode, Frame, FrameDecoder, Message, WireError};
use std::io;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Spare room kept in the read buffer before each read.
const READ_CHUNK: usize = 64 * 1024;

/// Closes the connection because the peer broke the protocol.
pub(crate) fn violation(inner: &Inner, message: impl Into<String>) -> ControlFlow<()> {
    let message = message.into();
    tracing::warn!(
        session = inner.id,
        peer = %inner.peer.identity,
        "protocol error from peer: {message}"
    );
    inner.shut(
        format!("{}: {message}", ErrorCode::ProtocolError),
        Some(Fault::new(ErrorCode::ProtocolError, message)),
    );
    ControlFlow::Break(())
}

/// Runs a synchronous handler callback; a panic in it is logged, not propagated.
pub(crate) fn guarded<R>(inner: &Inner, what: &str, f: impl FnOnce() -> R) -> Option<R> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(panic) => {
            tracing::warn!(
                session = inner.id,
                peer = %inner.peer.identity,
                "handler {what} panicked: {}",
                incoming::panic_message(panic.as_ref())
            );
            None
        }
    }
}

/// Calls [`Handler::closed`](crate::Handler::closed) once when the reader task ends, even
/// if it ends because the runtime shut down.
struct ClosedGuard(Session);

impl Drop for ClosedGuard {
    fn drop(&mut self) {
        let inner = &self.0.inner;
        inner.shut("connection task ended", None);
        inner.inbound.let_go();
        if !inner.handler_closed.swap(true, Ordering::AcqRel) {
            let reason = inner.close_reason();
            tracing::debug!(session = inner.id, peer = %inner.peer.identity, %reason, "connection closed");
            guarded(inner, "closed", || inner.handler.closed(&self.0, &reason));
        }
    }
}

/// The inbound half of a connection: its socket, and what has been read from it and not
/// yet taken as frames.
///
/// The reader task reads it; so may a thread that waits for its own call's answer and
/// polls for it ([`crate::PollingCaller::read_now`]), which then takes the answer off the
/// socket itself instead of waiting for a worker thread to wake, read it and hand it over
/// (docs/performance.md, thirteenth step). Reading and taking frames happen under one
/// lock, so frames are acted on once each and in the order they came, whoever reads them.
/// The lock is never held while waiting.
pub(crate) struct Inbound {
    decoder: FrameDecoder,
    state: Mutex<ReadState>,
}

/// The socket while the reader task runs (it lets go when it ends, so the connection's
/// descriptor closes however long the handle lives), and what was read from it.
struct ReadState {
    sock: Option<Arc<Socket>>,
    frames: Frames,
}

/// Bytes read and not yet taken as frames; the peer's ring with the buffer its bodies are
/// copied into (kept, like `buf`, so copies land in warm memory).
struct Frames {
    buf: BytesMut,
    ring: Option<RingIn>,
    ring_buf: BytesMut,
}

impl Frames {
    /// The read buffer, with room made for the next read.
    fn room(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        &mut self.buf
    }
}

/// The reader task's wait lends the shared buffer for its read alone.
impl ReadTarget for &Mutex<ReadState> {
    fn lend<R>(&mut self, read: impl FnOnce(&mut BytesMut) -> R) -> R {
        read(lock(self).frames.room())
    }
}

impl Inbound {
    /// `buf` may already hold bytes read past the handshake.
    pub(crate) fn new(sock: Arc<Socket>, buf: BytesMut, max_frame: usize) -> Inbound {
        Inbound {
            decoder: FrameDecoder::new(max_frame),
            state: Mutex::new(ReadState {
                sock: Some(sock),
                frames: Frames {
                    buf,
                    ring: None,
                    ring_buf: BytesMut::new(),
                },
            }),
        }
    }

    /// The socket, for the reader task to own while it runs.
    fn socket(&self) -> Option<Arc<Socket>> {
        lock(&self.state).sock.clone()
    }

    /// The reader task has ended: nothing reads the socket any more.
    fn let_go(&self) {
        lock(&self.state).sock = None;
    }
}

/// What taking frames saw, for the reader task's poll window.
#[derive(Default)]
struct Seen {
    /// Traffic worth polling after, as the next frame usually follows at once: a call, an
    /// answer whose caller is nearby (`Inner::complete_call`), a stream's data or credit (a
    /// stream's reader that slept between chunks paid a wake-up per chunk: 3.0–3.5 GiB/s
    /// against 6.0–8.8 GiB/s polling, docs/performance.md, eighteenth step).
    calls: bool,
    /// A caller was handed its answer (see `PollTurn::after_answer`).
    answered: bool,
}

/// Takes every whole frame in the buffer and acts on it, in order. `Break` when the
/// connection is closing.
fn take_frames(
    session: &Session,
    sock: &Socket,
    frames: &mut Frames,
    seen: &mut Seen,
) -> ControlFlow<()> {
    let inner = &*session.inner;
    let inbound = &inner.inbound;
    loop {
        let frame = inbound
            .decoder
            .decode_frame(&mut frames.buf, inner.shared_in);
        let frame = match frame {
            Ok(Some(Frame::Shared { len })) => {
                shared(inner, sock, (&mut frames.ring, &mut frames.ring_buf), len).map(Some)
            }
            Ok(Some(Frame::Message(msg))) => Ok(Some(In::Message(msg))),
            Ok(None) => Ok(None),
            Err(e) => Err(Some(e)),
        };
        let flow = match frame {
            Ok(Some(In::Lent(id, payload))) => {
                seen.calls = true;
                stream::on_chunk(inner, id, stream::Chunk::Lent(payload))
            }
            Ok(Some(In::Message(msg))) => {
                let answer = match msg {
                    Message::Reply { id, value } => Ok((id, Ok(value))),
                    Message::Error { id, code, message } if id != 0 => {
                        Ok((id, Err(Fault { code, message })))
                    }
                    msg => Err(msg),
                };
                match answer {
                    Ok((id, result)) => {
                        let nearby = inner.complete_call(id, result);
                        seen.answered |= nearby;
                        seen.calls |= nearby;
                        ControlFlow::Continue(())
                    }
                    Err(msg) => {
                        seen.calls |= matches!(
                            msg,
                            Message::Call(_)
                                | Message::StreamData { .. }
                                | Message::StreamCredit { .. }
                        );
                        dispatch(session, msg)
                    }
                }
            }
            Ok(None) => return ControlFlow::Continue(()),
            Err(Some(e)) => {
                frame_error(inner, &e);
                return ControlFlow::Break(());
            }
            // Already closed with the reason.
            Err(None) => return ControlFlow::Break(()),
        };
        if flow.is_break() || inner.closed.load(Ordering::Acquire) {
            return ControlFlow::Break(());
        }
    }
}

/// What a read that found no data means: `Ok(0)` is the end of the stream, `InvalidData`
/// descriptors beyond what the protocol allows (`unix_socket.rs`), any other error but
/// `WouldBlock` and `Interrupted` a broken socket. Each closes the connection with its
/// reason (`Break`); `pending` gives the length of the frame the buffer still holds,
/// asked only at the end of the stream.
fn read_ended(
    inner: &Inner,
    read: &io::Result<usize>,
    pending: impl FnOnce() -> usize,
) -> ControlFlow<()> {
    match read {
        Ok(0) => match pending() {
            0 => {
                inner.shut("peer closed the connection", None);
            }
            pending => {
                let message =
                    format!("connection ended inside a frame ({pending} bytes of it received)");
                let _ = violation(inner, message);
            }
        },
        Ok(_) => return ControlFlow::Continue(()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            return ControlFlow::Continue(());
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            let _ = violation(inner, e.to_string());
        }
        Err(e) => {
            inner.shut(format!("read failed: {e}"), None);
        }
    }
    ControlFlow::Break(())
}

/// One turn of a thread waiting for its call's answer ([`crate::PollingCaller::read_now`]):
/// takes the frames already read, reads once without waiting, and takes what that brought.
/// Does nothing while the reader task holds the connection (it will hand the answer over).
/// `true` when it read bytes.
///
/// Must run inside the runtime's context: an incoming call it takes starts a task. Never
/// ends the reader task itself: a connection it finds broken or closed is shut, and the
/// reader task, woken by the close, ends and runs `Handler::closed` as always.
pub(crate) fn pump(session: &Session) -> bool {
    let inner = &*session.inner;
    if inner.closed.load(Ordering::Acquire) {
        return false;
    }
    let Ok(mut st) = inner.inbound.state.try_lock() else {
        return false;
    };
    let ReadState { sock, frames } = &mut *st;
    let Some(sock) = sock.as_deref() else {
        return false;
    };
    let mut seen = Seen::default();
    // As the reader task ends on a `Break`: the connection is shut (`shut` takes no lock
    // this one guards).
    let mut take = |frames: &mut Frames| {
        let flow = take_frames(session, sock, frames, &mut seen);
        if flow.is_break() {
            inner.shut("connection task ended", None);
        }
        flow
    };
    if take(frames).is_break() {
        return false;
    }
    let read = sock.try_read_buf(frames.room());
    if read_ended(inner, &read, || frames.buf.len()).is_break() || !matches!(read, Ok(n) if n > 0) {
        return false;
    }
    let _ = take(frames);
    true
}

/// The reader task.
pub(crate) async fn run(inner: Arc<Inner>) {
    let session = Session {
        inner: inner.clone(),
    };
    let _closed = ClosedGuard(session.clone());
    let inbound = &inner.inbound;
    let Some(sock) = inbound.socket() else {
        return;
    };
    let mut reason = inner.reason.subscribe();
    // Poll instead of sleeping until then (see `Config::busy_poll`); set from `seen.calls`
    // when the socket runs dry, so the clock is read once per read, not once per frame.
    let mut poll_until: Option<Instant> = None;
    let mut seen = Seen::default();
    // The last read found nothing and the poll window is over: the next read waits.
    let mut sleeping = false;
    // The socket may signal readiness (it does from each wait until polling finds data).
    let mut signalled = true;
    let poll_turn = PollTurn::choose();
    // Its yields are judged only where the thread may move: on one side of a connection (the
    // one that connected: a module's caller side), or two polling peers on one CPU would
    // both move, to the same other CPU.
    let mut cpu = (poll_turn.may_move() && inner.connector).then(SharedCpu::default);
    loop {
        // The frames read last (here, or by a caller's thread), then a read without waiting
        // unless a caller was just answered or the poll window is over, all under the lock.
        let next = {
            let mut st = lock(&inbound.state);
            let frames = &mut st.frames;
            if take_frames(&session, &sock, frames, &mut seen).is_break()
                || inner.closed.load(Ordering::Acquire)
            {
                return;
            }
            let mut answered = false;
            if seen.calls && !inner.config.busy_poll.is_zero() {
                // Call traffic: look again without waiting, and poll if it ran dry (below).
                sleeping = false;
                answered = std::mem::take(&mut seen.answered);
            }
            if answered {
                // A caller was just answered: it runs (and sends its next call) before this
                // task reads again, so no read that finds nothing stands between an answer
                // and the next call.
                Next::AfterAnswer
            } else if sleeping {
                Next::Wait
            } else {
                let read = sock.try_read_buf(frames.room());
                let ended = read_ended(&inner, &read, || frames.buf.len());
                Next::Read(read, ended)
            }
        };
        let (read, ended) = match next {
            Next::AfterAnswer => {
                PollTurn::after_answer().await;
                continue;
            }
            Next::Read(read, ended) => (read, ended),
            // Sleeping (the poll window is over): wait and read in one step, so a wake-up
            // costs one `read`, and a read that finds nothing is the one that re-arms the
            // wait.
            Next::Wait => {
                signalled = true;
                let read = tokio::select! {
                    biased;
                    _ = reason.wait_for(Option::is_some) => return,
                    read = sock.read_buf_when_ready(&inbound.state) => read,
                };
                let ended = read_ended(&inner, &read, || lock(&inbound.state).frames.buf.len());
                (read, ended)
            }
        };
        if ended.is_break() {
            return;
        }
        match read {
            Ok(n) => {
                tracing::trace!(session = inner.id, bytes = n, "read");
                if signalled && poll_until.is_some() {
                    // Polling pays off (a call loop): readiness events would only cost
                    // the peer's sends and our reactor turns until this task waits again.
                    sock.polling();
                    signalled = false;
                }
                // A peer that never pauses must not monopolise this worker thread.
                tokio::task::consume_budget().await;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if std::mem::take(&mut seen.calls) && !inner.config.busy_poll.is_zero() {
                    poll_until = Instant::now().checked_add(inner.config.busy_poll);
                }
                let now = Instant::now();
                if poll_until.is_some_and(|until| now < until) {
                    // Let another process on this CPU run (the peer, perhaps), then let the
                    // runtime run the tasks that are ready (the call just dispatched)
                    // before reading again.
                    match &mut cpu {
                        Some(cpu) => {
                            if cpu.take_shared() && cpu.move_off() {
                                tracing::trace!(session = inner.id, "moved off a shared CPU");
                            }
                            cpu.yield_now(now);
                        }
                        None => std::thread::yield_now(),
                    }
                    poll_turn.pass().await;
                    continue;
                }
                poll_until = None;
                sleeping = true;
            }
            // `Interrupted`: read again.
            Err(_) => {}
        }
    }
}

/// What the reader task does after taking the frames it has.
enum Next {
    /// Lets the caller it just answered run first (`PollTurn::after_answer`).
    AfterAnswer,
    /// Read without waiting, under the same lock as the frames taken: what it gave, and
    /// whether it ended the connection.
    Read(io::Result<usize>, ControlFlow<()>),
    /// Waits for the socket, then reads (the poll window is over).
    Wait,
}

/// How the poll loop gives the other tasks of its runtime their turn.
///
/// `tokio::task::yield_now` defers the task's wake-up until the runtime has looked at its
/// sockets and timers, which costs a zero-timeout `epoll_wait` on every turn of the loop: a
/// third system call beside the `recv` that found nothing and the `sched_yield` (10 % of a
/// module's CPU in the round-trip profile, docs/perf/rtt.svg). This loop reads the kernel
/// directly on either transport (`unix_socket.rs`; `TlsSocket::try_read_buf` for TLS), so it
/// does not need the reactor's turn; on a current-thread runtime (every
/// module's, see `logos_sdk::serve`) a task that wakes itself goes to the back of the run
/// queue, behind every task that is ready, and the runtime still polls its reactor every
/// `event_interval` ticks, so other sockets and timers wait at most that long, and only
/// within the `busy_poll` window. A multi-threaded runtime (the core's) keeps
/// `yield_now`: there a self-woken task can land in the worker's LIFO slot and be polled
/// again before the tasks it should let run.
#[derive(Clone, Copy)]
enum PollTurn {
    SelfWake,
    Deferred,
}

impl PollTurn {
    fn choose() -> Self {
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        match flavor {
            Ok(tokio::runtime::RuntimeFlavor::CurrentThread) => PollTurn::SelfWake,
            _ => PollTurn::Deferred,
        }
    }

    /// The turn right after a reply was handed to its caller. The caller may be the future
    /// a current-thread runtime's `block_on` drives (an embedder's `main` calling
    /// `Core::call` in a loop, the benchmark's `rust_api` row), which that runtime polls
    /// only when no task is ready: a reader that woke itself would keep it waiting for the
    /// whole poll window, by when the peer had stopped polling too, and every call paid
    /// two wake-ups (110 µs against 17 µs through the C API). `yield_now` defers this
    /// task's wake-up past the runtime's next look at its sockets, so the caller runs
    /// first. No `sched_yield` on this turn: the peer has just answered, and giving it the
    /// CPU helps nobody. (The zero-timeout `epoll_wait` this costs replaces it.)
    async fn after_answer() {
        tokio::task::yield_now().await
    }

    /// Whether the poll loop may move its thread off a CPU it shares with another busy
    /// thread (`SharedCpu::move_off`): only a module's, whose runtime has this one thread.
    /// A multi-threaded runtime is the core's or an embedder's, whose threads are theirs to
    /// place.
    fn may_move(self) -> bool {
        matches!(self, PollTurn::SelfWake)
    }

    async fn pass(self) {
        match self {
            PollTurn::SelfWake => {
                let mut woken = false;
                std::future::poll_fn(|cx| {
                    if std::mem::replace(&mut woken, true) {
                        std::task::Poll::Ready(())
                    } else {
                        cx.waker().wake_by_ref();
                        std::task::Poll::Pending
                    }
                })
                .await
            }
            PollTurn::Deferred => tokio::task::yield_now().await,
        }
    }
}

/// A frame as the reader takes it.
enum In {
    /// Decoded.
    Message(Message),
    /// A `stream_data` whose payload stays in the peer's ring until the stream's reader
    /// copies it out: the stream and the payload.
    Lent(u64, Lease),
}

/// A shared frame of `len` bytes out of the peer's ring (`shm.rs`), which the first shared
/// frame's descriptor brings: a stream chunk's payload lent where it lies, anything else
/// copied out and decoded. `Err(None)` when the connection was closed for a missing or bad
/// ring; `Err(Some(_))` for a body that does not decode.
fn shared(
    inner: &Inner,
    sock: &Socket,
    (ring, buf): (&mut Option<RingIn>, &mut BytesMut),
    len: usize,
) -> Result<In, Option<WireError>> {
    let ring = match ring {
        Some(ring) => ring,
        None => {
            let Some(fd) = sock.take_fd() else {
                let _ = violation(
                    inner,
                    format!("a shared frame of {len} bytes came without the ring it is in"),
                );
                return Err(None);
            };
            let opened = RingIn::open(fd, inner.ring_laps).map_err(|message| {
                let _ = violation(inner, message);
                None
            })?;
            // The ring's descriptor was the one a peer sends.
            sock.no_more_fds();
            ring.insert(opened)
        }
    };
    let refuse = |message: String| {
        let _ = violation(inner, message);
        None
    };
    // The head is decoded from a copy of its own (the peer can change the ring at any time).
    let mut head = [0u8; logos_wire::STREAM_DATA_HEAD_MAX];
    let head = ring.peek(len, &mut head).map_err(refuse)?;
    if let Some((id, offset)) = logos_wire::stream_data_payload(head, len) {
        let payload = ring.lend(len, offset).map_err(refuse)?;
        inner.shared_received.fetch_add(1, Ordering::Relaxed);
        return Ok(In::Lent(id, payload));
    }
    let body = ring.take(len, buf).map_err(refuse)?;
    inner.shared_received.fetch_add(1, Ordering::Relaxed);
    logos_wire::decode_body(&body)
        .map(In::Message)
        .map_err(Some)
}

/// An undecodable or oversized frame: answer with `limit` or `protocol_error`, then close.
fn frame_error(inner: &Inner, e: &WireError) {
    let code = match e {
        WireError::FrameTooLarge { .. } => ErrorCode::Limit,
        _ => ErrorCode::ProtocolError,
    };
    tracing::warn!(
        session = inner.id,
        peer = %inner.peer.identity,
        "bad frame from peer: {e}"
    );
    inner.shut(
        format!("{code}: {e}"),
        Some(Fault::new(code, e.to_string())),
    );
}

/// Acts on one message from the peer, other than an answer (a reply, or an error with a call
/// id), which `run` hands to its caller itself. `Break` when the connection is closing.
fn dispatch(session: &Session, msg: Message) -> ControlFlow<()> {
    let inner = &*session.inner;
    tracing::debug!(session = inner.id, kind = msg.kind_name(), "frame in");
    match msg {
        Message::Call(call) => return incoming::start(session, call),
        Message::Error {
            id: 0,
            code,
            message,
        } => {
            tracing::debug!(session = inner.id, peer = %inner.peer.identity, %code, %message, "peer closed the connection");
            inner.shut(format!("closed by peer: {code}: {message}"), None);
            return ControlFlow::Break(());
        }
        Message::Cancel { id } => incoming::cancel(inner, id),
        Message::Subscribe { source, event } => {
            guarded(inner, "subscribe", || {
                inner.handler.subscribe(session, &source, &event);
            });
        }
        Message::Unsubscribe { source, event } => {
            guarded(inner, "unsubscribe", || {
                inner.handler.unsubscribe(session, &source, &event);
            });
        }
        Message::Event {
            source,
            event,
            data,
        } => {
            guarded(inner, "event", || {
                inner.handler.event(session, source, event, data);
            });
        }
        Message::Lagged { source, dropped } => {
            guarded(inner, "lagged", || {
                inner.handler.lagged(session, source, dropped);
            });
        }
        Message::StreamOpen { stream, protocol } => {
            return stream::on_open(session, stream, protocol);
        }
        Message::StreamData { stream, data } => return stream::on_data(inner, stream, data),
        Message::StreamCredit { stream, bytes } => {
            return stream::on_credit(inner, stream, bytes);
        }
        Message::StreamFin { stream } => return stream::on_fin(inner, stream),
        Message::StreamReset {
            stream,
            code,
            message,
        } => stream::on_reset(inner, stream, code, message),
        Message::Ping { nonce } => {
            let unhealthy = guarded(inner, "health", || inner.handler.health())
                .unwrap_or_else(|| Some(String::from("health check panicked")));
            if inner
                .send_provoked(&Message::Pong { nonce, unhealthy })
                .is_err()
            {
                return ControlFlow::Break(());
            }
        }
        Message::Pong { nonce, unhealthy } => inner.complete_ping(nonce, unhealthy),
        Message::Shutdown { grace_ms } => {
            guarded(inner, "shutdown", || {
                inner
                    .handler
                    .shutdown(session, Duration::from_millis(grace_ms));
            });
        }
        other => {
            return violation(
                inner,
                format!("unexpected {} after the handshake", other.kind_name()),
            );
        }
    }
    ControlFlow::Continue(())
}
