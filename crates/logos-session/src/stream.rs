//! [`ByteStream`]: one credit-controlled byte stream on a connection, and the reader's side of
//! stream frames (`stream_open`, `stream_data`, `stream_credit`, `stream_fin`, `stream_reset`).
//!
//! Owns per-stream state: the receive buffer (never more than one window: the peer may only
//! send within the credit we granted, and data beyond it closes the connection with
//! `protocol_error`), the send credit (a writer with none gets `Pending` and is woken when
//! `stream_credit` arrives; credit beyond what we sent plus one window is a `protocol_error`),
//! half-close and reset. Never buffers outgoing data itself: each `poll_write` becomes at most
//! one `stream_data` frame (≤ 64 KiB, within credit) in the connection's stream lane, which
//! `writer.rs` interleaves fairly with control traffic and bounds (a writer waits while the
//! lane is over its high-water mark).
//!
//! Credit goes back to the peer as the application reads: once at least half a window has
//! been consumed, one `stream_credit` returns all of it.

use crate::reader::violation;
use crate::session::{Inner, Session, lock};
use crate::shm::Lease;
use crate::writer::Lane;
use bytes::{Buf, Bytes, BytesMut};
use logos_wire::credit::MAX_CHUNK;
use logos_wire::{ErrorCode, Message};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Streams open on a connection.
#[derive(Default)]
pub(crate) struct Streams {
    map: HashMap<u64, Arc<Shared>>,
    closed: bool,
}

impl Streams {
    /// Marks the table closed and hands back every stream, to be told.
    pub(crate) fn close(&mut self) -> Vec<Arc<Shared>> {
        self.closed = true;
        self.map.drain().map(|(_, s)| s).collect()
    }
}

/// Who aborted a stream.
enum Reset {
    Local,
    Peer { code: ErrorCode, message: String },
}

/// What a reset stream's reads and writes fail with: the inner error of their
/// [`io::ErrorKind::ConnectionReset`] errors, so a reader can learn who reset the stream and
/// with which code and message (`e.get_ref().and_then(|e| e.downcast_ref::<StreamReset>())`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReset {
    /// The stream's id on its connection.
    pub stream: u64,
    /// `true` when the peer reset it (then `code` and `message` are the peer's), `false` when
    /// this side did.
    pub by_peer: bool,
    /// The peer's code (`cancelled` for a local reset).
    pub code: ErrorCode,
    /// The peer's message (empty for a local reset).
    pub message: String,
}

impl fmt::Display for StreamReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.by_peer {
            write!(
                f,
                "stream {} reset by peer: {}: {}",
                self.stream, self.code, self.message
            )
        } else {
            write!(f, "stream {} was reset", self.stream)
        }
    }
}

impl std::error::Error for StreamReset {}

impl StreamReset {
    /// The reset behind `e`, if `e` is a reset stream's error.
    pub fn of(e: &io::Error) -> Option<&StreamReset> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<StreamReset>())
    }
}

/// Received bytes not yet read by the application.
pub(crate) enum Chunk {
    /// A copy of its own.
    Own(Bytes),
    /// A payload left in the peer's ring of shared memory, copied out only when read
    /// (`shm.rs`): the receiving side's one copy.
    Lent(Lease),
}

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Chunk::Own(b) => b.len(),
            Chunk::Lent(l) => l.len(),
        }
    }

    /// Moves the next bytes into `buf`, as many as fit.
    fn read_into(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.len().min(buf.remaining());
        match self {
            Chunk::Own(b) => {
                buf.put_slice(&b[..n]);
                b.advance(n);
            }
            Chunk::Lent(l) => {
                let copied = l.copy_to(buf.initialize_unfilled_to(n));
                buf.advance(copied);
            }
        }
    }
}

/// State of one stream shared by its [`ByteStream`] and the connection's reader.
struct State {
    /// Received data not yet read by the application.
    recv: VecDeque<Chunk>,
    /// Bytes the peer may still send (credit we granted and it has not used).
    recv_allowed: u64,
    /// Bytes the application read that have not been returned as credit yet.
    unreturned: u64,
    /// The peer sent `stream_fin`.
    recv_fin: bool,
    read_waker: Option<Waker>,
    /// Bytes we may still send.
    send_credit: u64,
    /// Bytes sent, and credit the peer returned, since the start.
    written: u64,
    acked: u64,
    /// We sent `stream_fin`.
    send_fin: bool,
    write_waker: Option<Waker>,
    reset: Option<Reset>,
    /// The connection closed, with this reason.
    conn_closed: Option<Arc<str>>,
}

pub(crate) struct Shared {
    id: u64,
    protocol: String,
    state: Mutex<State>,
}

impl Shared {
    fn new(id: u64, protocol: String, window: u64) -> Shared {
        Shared {
            id,
            protocol,
            state: Mutex::new(State {
                recv: VecDeque::new(),
                recv_allowed: window,
                unreturned: 0,
                recv_fin: false,
                read_waker: None,
                send_credit: window,
                written: 0,
                acked: 0,
                send_fin: false,
                write_waker: None,
                reset: None,
                conn_closed: None,
            }),
        }
    }

    /// The connection closed: wake both directions so they report it.
    pub(crate) fn connection_closed(&self, reason: &Arc<str>) {
        let (r, w) = {
            let mut st = lock(&self.state);
            st.conn_closed = Some(reason.clone());
            (st.read_waker.take(), st.write_waker.take())
        };
        wake(r, w);
    }
}

fn wake(read: Option<Waker>, write: Option<Waker>) {
    if let Some(w) = read {
        w.wake();
    }
    if let Some(w) = write {
        w.wake();
    }
}

fn store_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// One direction-pair byte stream between two connected peers, with credit flow control:
/// `AsyncRead` yields the peer's data in order, `AsyncWrite` sends (waiting for credit),
/// `shutdown` sends `stream_fin` (half-close), [`ByteStream::reset`] aborts. Dropping a stream
/// that is not finished in both directions resets it.
///
/// Reads return EOF after the peer's `stream_fin`. After the peer's `stream_reset`, reads and
/// writes fail with [`io::ErrorKind::ConnectionReset`] naming the peer's code and message;
/// after the connection closes they fail with [`io::ErrorKind::ConnectionAborted`] (reads
/// still return data that had arrived, and EOF if the peer had finished).
///
/// `poll_flush` completes at once: each accepted write is already queued, in order, on the
/// connection (see [`Session::flush`](crate::Session::flush) to wait for the socket).
pub struct ByteStream {
    shared: Arc<Shared>,
    inner: Arc<Inner>,
    /// Where written bytes are copied before they are sent (`AsyncWrite` lends them), unless
    /// the chunk goes through the ring of shared memory, which takes them straight from the
    /// writer's buffer: chunks are split off it, and it is refilled [`SEND_ARENA`] at a time,
    /// so a bulk writer copies into warm memory instead of a fresh allocation (and fresh
    /// pages) per chunk.
    send_buf: BytesMut,
}

/// How much [`ByteStream::send_buf`] reserves when it runs out: one window. Pages a stream
/// never writes to are never touched, so a stream that writes little costs little.
const SEND_ARENA: usize = 256 * 1024;

impl fmt::Debug for ByteStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteStream")
            .field("id", &self.shared.id)
            .field("protocol", &self.shared.protocol)
            .finish_non_exhaustive()
    }
}

impl ByteStream {
    /// Creates stream `id` and enters it in the connection's table; `None` if the connection
    /// is closed.
    pub(crate) fn register(inner: &Arc<Inner>, id: u64, protocol: String) -> Option<ByteStream> {
        let shared = Arc::new(Shared::new(id, protocol, inner.config.stream_window));
        {
            let mut streams = lock(&inner.streams);
            if streams.closed {
                return None;
            }
            streams.map.insert(id, shared.clone());
        }
        if let Some(t) = &inner.config.traffic {
            t.stream_opened();
        }
        Some(ByteStream {
            send_buf: BytesMut::new(),
            shared,
            inner: inner.clone(),
        })
    }

    /// Stream id on its connection.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The protocol named at open.
    pub fn protocol(&self) -> &str {
        &self.shared.protocol
    }

    /// Aborts the stream in both directions; the peer sees `code`/`message`.
    pub fn reset(self, code: ErrorCode, message: &str) {
        let send = {
            let mut st = lock(&self.shared.state);
            let send = st.reset.is_none() && st.conn_closed.is_none();
            if st.reset.is_none() {
                st.reset = Some(Reset::Local);
            }
            send
        };
        self.forget();
        if send {
            let _ = self.inner.send(
                Lane::Ctrl,
                &Message::StreamReset {
                    stream: self.shared.id,
                    code,
                    message: message.to_owned(),
                },
            );
        }
        // `Drop` sees the reset and sends nothing more.
    }

    /// Ready with the error once the stream is reset (by either side) or its connection
    /// closes, whatever its halves did: for a relay that has read this stream to its end and
    /// must still notice it being aborted. It shares the read side's waker, so call it only
    /// once reading is over (after end of file).
    pub fn poll_aborted(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let mut st = lock(&self.shared.state);
        if let Some(e) = self.error(&st) {
            return Poll::Ready(e);
        }
        if let Some(reason) = &st.conn_closed {
            return Poll::Ready(self.closed_error(reason));
        }
        store_waker(&mut st.read_waker, cx);
        Poll::Pending
    }

    /// Bytes written by this side and not yet acknowledged by credit (always ≤ the window).
    pub fn unacknowledged(&self) -> u64 {
        let st = lock(&self.shared.state);
        st.written.saturating_sub(st.acked)
    }

    /// Removes this stream from the connection's table (if it is still this one).
    fn forget(&self) {
        let mut streams = lock(&self.inner.streams);
        if streams
            .map
            .get(&self.shared.id)
            .is_some_and(|s| Arc::ptr_eq(s, &self.shared))
        {
            streams.map.remove(&self.shared.id);
        }
    }

    fn error(&self, st: &State) -> Option<io::Error> {
        let stream = self.shared.id;
        let reset = match &st.reset {
            Some(Reset::Peer { code, message }) => StreamReset {
                stream,
                by_peer: true,
                code: *code,
                message: message.clone(),
            },
            Some(Reset::Local) => StreamReset {
                stream,
                by_peer: false,
                code: ErrorCode::Cancelled,
                message: String::new(),
            },
            None => return None,
        };
        Some(io::Error::new(io::ErrorKind::ConnectionReset, reset))
    }

    fn closed_error(&self, reason: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("stream {}: connection closed: {reason}", self.shared.id),
        )
    }
}

impl Drop for ByteStream {
    fn drop(&mut self) {
        if let Some(t) = &self.inner.config.traffic {
            t.stream_closed();
        }
        let send = {
            let mut st = lock(&self.shared.state);
            if st.reset.is_some() || st.conn_closed.is_some() || (st.send_fin && st.recv_fin) {
                false
            } else {
                st.reset = Some(Reset::Local);
                true
            }
        };
        self.forget();
        if send {
            tracing::debug!(
                session = self.inner.id,
                stream = self.shared.id,
                "unfinished stream dropped: reset"
            );
            let _ = self.inner.send(
                Lane::Ctrl,
                &Message::StreamReset {
                    stream: self.shared.id,
                    code: ErrorCode::Cancelled,
                    message: String::from("stream dropped before it was finished"),
                },
            );
        }
    }
}

impl AsyncRead for ByteStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut st = lock(&this.shared.state);
        if let Some(e) = this.error(&st) {
            return Poll::Ready(Err(e));
        }
        if !st.recv.is_empty() {
            let mut read = 0usize;
            while buf.remaining() > 0 {
                let Some(front) = st.recv.front_mut() else {
                    break;
                };
                let before = buf.filled().len();
                front.read_into(buf);
                read += buf.filled().len() - before;
                if front.len() == 0 {
                    st.recv.pop_front();
                }
            }
            st.unreturned += read as u64;
            if let Some(t) = &this.inner.config.traffic {
                t.read(read);
            }
            let mut grant = 0;
            if st.unreturned >= this.inner.credit_threshold() && !st.recv_fin {
                grant = std::mem::take(&mut st.unreturned);
                st.recv_allowed += grant;
            }
            drop(st);
            if grant > 0 {
                let _ = this.inner.send(
                    Lane::Ctrl,
                    &Message::StreamCredit {
                        stream: this.shared.id,
                        bytes: grant,
                    },
                );
            }
            return Poll::Ready(Ok(()));
        }
        if st.recv_fin {
            return Poll::Ready(Ok(()));
        }
        if let Some(reason) = &st.conn_closed {
            return Poll::Ready(Err(this.closed_error(reason)));
        }
        store_waker(&mut st.read_waker, cx);
        Poll::Pending
    }
}

impl AsyncWrite for ByteStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Wait while the connection's stream lane is full (a peer that does not read the
        // socket must not make us queue a window per stream); checked before taking credit,
        // so a write that waits here has used none.
        if this.inner.poll_stream_room(cx).is_pending() {
            // Also woken by a reset or the connection closing, which it then reports.
            let mut st = lock(&this.shared.state);
            if let Some(e) = this.error(&st) {
                return Poll::Ready(Err(e));
            }
            store_waker(&mut st.write_waker, cx);
            return Poll::Pending;
        }
        let n = {
            let mut st = lock(&this.shared.state);
            if let Some(e) = this.error(&st) {
                return Poll::Ready(Err(e));
            }
            if let Some(reason) = &st.conn_closed {
                return Poll::Ready(Err(this.closed_error(reason)));
            }
            if st.send_fin {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    format!("stream {}: write after shutdown", this.shared.id),
                )));
            }
            if buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            if st.send_credit == 0 {
                store_waker(&mut st.write_waker, cx);
                return Poll::Pending;
            }
            // Leave room for the frame's own bytes when `max_frame` is tiny.
            let chunk = MAX_CHUNK.min(this.inner.config.max_frame.saturating_sub(32).max(1));
            let n = buf
                .len()
                .min(chunk)
                .min(usize::try_from(st.send_credit).unwrap_or(usize::MAX));
            st.send_credit -= n as u64;
            st.written += n as u64;
            n
        };
        // Through the ring when the chunk goes shared: copied there from `buf` itself.
        let sent = match this.inner.send_stream_shared(this.shared.id, &buf[..n]) {
            Some(sent) => sent,
            None => {
                if this.send_buf.capacity() < n {
                    this.send_buf.reserve(SEND_ARENA.max(n));
                }
                this.send_buf.extend_from_slice(&buf[..n]);
                let frame = Message::StreamData {
                    stream: this.shared.id,
                    data: this.send_buf.split().freeze(),
                };
                this.inner.send(Lane::Stream, &frame)
            }
        };
        match sent {
            Ok(()) => {
                if let Some(t) = &this.inner.config.traffic {
                    t.wrote(n);
                }
                Poll::Ready(Ok(n))
            }
            Err(_) => Poll::Ready(Err(this.closed_error(&this.inner.close_reason()))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let st = lock(&self.shared.state);
        match self.error(&st) {
            Some(e) => Poll::Ready(Err(e)),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        {
            let mut st = lock(&this.shared.state);
            if let Some(e) = this.error(&st) {
                return Poll::Ready(Err(e));
            }
            if st.send_fin {
                return Poll::Ready(Ok(()));
            }
            if let Some(reason) = &st.conn_closed {
                return Poll::Ready(Err(this.closed_error(reason)));
            }
            st.send_fin = true;
        }
        let fin = Message::StreamFin {
            stream: this.shared.id,
        };
        match this.inner.send(Lane::Stream, &fin) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(_) => Poll::Ready(Err(this.closed_error(&this.inner.close_reason()))),
        }
    }
}

/// Looks up stream `id`.
fn find(inner: &Inner, id: u64) -> Option<Arc<Shared>> {
    lock(&inner.streams).map.get(&id).cloned()
}

/// `stream_open` from the peer.
pub(crate) fn on_open(session: &Session, id: u64, protocol: String) -> ControlFlow<()> {
    let inner = &session.inner;
    // The connecting side opens odd ids, the accepting side even ones.
    let peer_parity = if inner.connector { 0 } else { 1 };
    if id == 0 || id % 2 != peer_parity {
        return violation(
            inner,
            format!("stream_open with id {id}, which this side allocates"),
        );
    }
    {
        let streams = lock(&inner.streams);
        if streams.closed {
            return ControlFlow::Break(());
        }
        if streams.map.contains_key(&id) {
            drop(streams);
            return violation(inner, format!("stream_open for stream {id}, already open"));
        }
        if streams.map.len() >= inner.config.max_streams {
            drop(streams);
            let refusal = Message::StreamReset {
                stream: id,
                code: ErrorCode::Limit,
                message: format!(
                    "{} streams already open on this connection",
                    inner.config.max_streams
                ),
            };
            return match inner.send_provoked(&refusal) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            };
        }
    }
    let Some(stream) = ByteStream::register(inner, id, protocol.clone()) else {
        return ControlFlow::Break(());
    };
    tracing::debug!(session = inner.id, stream = id, %protocol, "stream opened by peer");
    crate::reader::guarded(inner, "stream", || {
        inner.handler.stream(session, protocol, stream);
    });
    ControlFlow::Continue(())
}

/// `stream_data` from the peer.
pub(crate) fn on_data(inner: &Inner, id: u64, data: Bytes) -> ControlFlow<()> {
    // Copied out of the frame buffer: a small unread chunk must not keep a large read
    // allocation alive, or a peer could pin far more memory than the window.
    on_chunk(inner, id, Chunk::Own(Bytes::copy_from_slice(&data)))
}

/// `stream_data` on stream `id`, its payload `data`.
pub(crate) fn on_chunk(inner: &Inner, id: u64, data: Chunk) -> ControlFlow<()> {
    let Some(shared) = find(inner, id) else {
        // Reset (or dropped) here while the data was on its way.
        tracing::debug!(
            session = inner.id,
            stream = id,
            "data for unknown stream ignored"
        );
        return ControlFlow::Continue(());
    };
    let len = data.len() as u64;
    let waker = {
        let mut st = lock(&shared.state);
        if st.recv_fin {
            drop(st);
            return violation(
                inner,
                format!("stream_data on stream {id} after its stream_fin"),
            );
        }
        if data.len() > MAX_CHUNK {
            drop(st);
            return violation(
                inner,
                format!(
                    "stream_data of {} bytes on stream {id}, more than {MAX_CHUNK}",
                    data.len()
                ),
            );
        }
        if len > st.recv_allowed {
            let allowed = st.recv_allowed;
            drop(st);
            return violation(
                inner,
                format!(
                    "stream_data of {len} bytes on stream {id} with only {allowed} bytes of credit"
                ),
            );
        }
        st.recv_allowed -= len;
        if len > 0 {
            st.recv.push_back(data);
        }
        st.read_waker.take()
    };
    wake(waker, None);
    ControlFlow::Continue(())
}

/// `stream_credit` from the peer.
pub(crate) fn on_credit(inner: &Inner, id: u64, bytes: u64) -> ControlFlow<()> {
    let Some(shared) = find(inner, id) else {
        return ControlFlow::Continue(());
    };
    let waker = {
        let mut st = lock(&shared.state);
        // Credit returns data the peer has received, so all credit granted (the window plus
        // what came back) is at most what we wrote plus one window. More would let the peer
        // make us queue without bound; overflowing 2^64 is a special case of it.
        let unacknowledged = st.written - st.acked;
        if bytes > unacknowledged {
            drop(st);
            return violation(
                inner,
                format!(
                    "stream_credit of {bytes} bytes on stream {id}, but only {unacknowledged} bytes were sent and not credited back yet: credit beyond the data sent plus one window"
                ),
            );
        }
        st.send_credit += bytes;
        st.acked += bytes;
        st.write_waker.take()
    };
    wake(None, waker);
    ControlFlow::Continue(())
}

/// `stream_fin` from the peer: it sends no more; reads end after the buffered data.
pub(crate) fn on_fin(inner: &Inner, id: u64) -> ControlFlow<()> {
    if let Some(shared) = find(inner, id) {
        let waker = {
            let mut st = lock(&shared.state);
            st.recv_fin = true;
            st.read_waker.take()
        };
        wake(waker, None);
    }
    ControlFlow::Continue(())
}

/// `stream_reset` from the peer: both directions fail from now on.
pub(crate) fn on_reset(inner: &Inner, id: u64, code: ErrorCode, message: String) {
    let shared = lock(&inner.streams).map.remove(&id);
    if let Some(shared) = shared {
        tracing::debug!(session = inner.id, stream = id, %code, %message, "stream reset by peer");
        let (r, w) = {
            let mut st = lock(&shared.state);
            st.reset = Some(Reset::Peer { code, message });
            st.recv.clear();
            (st.read_waker.take(), st.write_waker.take())
        };
        wake(r, w);
    }
}
