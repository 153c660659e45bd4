//! `logos-session`: one authenticated logos connection over a Unix socket.
//!
//! Both the core (`logos-core`) and modules (`logos-sdk`) speak the protocol through this crate,
//! so the hard parts live once: many calls in flight with replies in any order, per-call
//! deadlines and cancellation, bounded event queues with `lagged` notices, credit-controlled
//! byte streams with half-close and reset, ping/pong. A connection is symmetric after the
//! handshake: either side may call, subscribe, emit or open streams; what each side allows is
//! its [`Handler`]'s business. This crate decides no policy and knows nothing of processes.
//!
//! Handshake: the connecting side calls [`connect`] (sends `hello`, waits for `welcome`); the
//! accepting side calls [`read_hello`], inspects the [`PendingSession`] (hello, peer creds) and
//! then [`PendingSession::accept`]s or [`PendingSession::refuse`]s it.

// API sketch; the implementation follows.

use bytes::Bytes;
use futures::future::BoxFuture;
use logos_wire::{Attrs, Call, ErrorCode, Hello, Value, Welcome};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

/// Tunables of one connection. Every default is documented on its field.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Largest frame accepted (default 16 MiB). A bigger one closes the connection with `limit`.
    pub max_frame: usize,
    /// Incoming calls allowed to run at once (default 1024); more fail with `limit`.
    pub max_calls_in_flight: usize,
    /// Events queued for the peer before newer ones are dropped and counted in a `lagged`
    /// notice (default 1024).
    pub event_queue: usize,
    /// Initial credit per stream and direction (default 256 KiB).
    pub stream_window: u64,
    /// Time allowed for `hello`/`welcome` (default 5 s).
    pub handshake_timeout: Duration,
    /// Deadline for incoming calls that carry `timeout_ms = 0` (default 30 s).
    pub default_call_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame: logos_wire::codec::DEFAULT_MAX_FRAME,
            max_calls_in_flight: 1024,
            event_queue: 1024,
            stream_window: logos_wire::credit::DEFAULT_WINDOW,
            handshake_timeout: Duration::from_secs(5),
            default_call_timeout: Duration::from_secs(30),
        }
    }
}

/// A typed failure of a call: the code that crosses the wire plus a message for people.
/// Both what a [`Handler`] returns and what [`Session::call`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}

impl Fault {
    /// A fault with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Fault {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Fault {}

/// Errors of connection set-up and of the connection as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Socket I/O failed.
    #[error("connection i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] logos_wire::WireError),
    /// The peer refused the handshake (its `error` message).
    #[error("refused by peer: {0}")]
    Refused(Fault),
    /// The handshake did not finish in time.
    #[error("handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    /// The connection is closed.
    #[error("connection closed: {0}")]
    Closed(String),
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
}

/// What the local side does with what the peer sends. One handler per connection; every
/// method has a refusing or ignoring default so a side implements only what it serves.
pub trait Handler: Send + Sync + 'static {
    /// Runs an incoming call. Each call runs in its own task, so a handler may itself call
    /// (even back to this peer) without deadlock. The future is dropped on `cancel` or when
    /// the deadline passes.
    fn call(&self, session: Session, call: Call) -> BoxFuture<'static, Result<Value, Fault>> {
        let _ = session;
        Box::pin(async move {
            Err(Fault::new(
                ErrorCode::UnknownMethod,
                format!("{}.{} is not served here", call.target, call.method),
            ))
        })
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

/// Cloneable handle to one live connection.
#[derive(Clone)]
pub struct Session {
    _inner: Arc<()>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

/// Connects as the initiating side: sends `hello`, waits for `welcome`.
///
/// # Errors
/// [`SessionError::Refused`] with the peer's reason, [`SessionError::HandshakeTimeout`],
/// [`SessionError::Protocol`] (e.g. version mismatch).
pub async fn connect(
    stream: UnixStream,
    hello: Hello,
    handler: Arc<dyn Handler>,
    config: Config,
) -> Result<(Session, Welcome), SessionError> {
    let _ = (stream, hello, handler, config);
    todo!("H2")
}

/// Reads the peer's `hello` on an accepted socket (within the handshake timeout) and checks its
/// protocol version (a mismatch is refused on the wire and returned as an error).
///
/// # Errors
/// As for [`connect`].
pub async fn read_hello(stream: UnixStream, config: Config) -> Result<PendingSession, SessionError> {
    let _ = (stream, config);
    todo!("H2")
}

/// An accepted socket whose `hello` has been read but not yet answered.
pub struct PendingSession {
    /// The peer's hello.
    pub hello: Hello,
    /// Peer process id from SO_PEERCRED.
    pub pid: Option<u32>,
    /// Peer user id from SO_PEERCRED.
    pub uid: Option<u32>,
    _stream: UnixStream,
    _config: Config,
}

impl PendingSession {
    /// Sends `welcome` and starts the connection. `identity` becomes [`Peer::identity`].
    ///
    /// # Errors
    /// [`SessionError::Io`] if the welcome cannot be written.
    pub async fn accept(
        self,
        identity: String,
        welcome: Welcome,
        handler: Arc<dyn Handler>,
    ) -> Result<Session, SessionError> {
        let _ = (identity, welcome, handler);
        todo!("H2")
    }

    /// Sends `error` (id 0) with `fault` and closes.
    pub async fn refuse(self, fault: Fault) {
        let _ = fault;
        todo!("H2")
    }
}

impl Session {
    /// Unique id of this connection within the process (for maps keyed by connection).
    pub fn id(&self) -> u64 {
        todo!("H2")
    }
    /// Who is on the other end.
    pub fn peer(&self) -> &Peer {
        todo!("H2")
    }
    /// Calls `target.method(args)` on the peer and waits at most `timeout` (also sent as the
    /// call's `timeout_ms`). Dropping the future sends `cancel`.
    ///
    /// # Errors
    /// The peer's [`Fault`]; `timeout` when the deadline passes; `unavailable` when the
    /// connection closes first (never waits for the deadline then).
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
        let _ = (target, method, args, timeout);
        todo!("H2")
    }
    /// Queues an event for the peer without waiting. If the peer's event queue is full the
    /// event is dropped, counted, and reported to the peer as `lagged`; returns `false` then.
    pub fn send_event(&self, source: &str, event: &str, data: Vec<Value>) -> bool {
        let _ = (source, event, data);
        todo!("H2")
    }
    /// Asks the peer for `event` of `source` (`""` = all events of `source`).
    pub fn subscribe(&self, source: &str, event: &str) -> Result<(), SessionError> {
        let _ = (source, event);
        todo!("H2")
    }
    /// Withdraws a subscription.
    pub fn unsubscribe(&self, source: &str, event: &str) -> Result<(), SessionError> {
        let _ = (source, event);
        todo!("H2")
    }
    /// Opens a byte stream to the peer for `protocol`.
    ///
    /// # Errors
    /// [`SessionError::Closed`].
    pub fn open_stream(&self, protocol: &str) -> Result<ByteStream, SessionError> {
        let _ = protocol;
        todo!("H2")
    }
    /// Sends `ping` and waits for `pong`; `Ok(None)` healthy, `Ok(Some(reason))` unhealthy.
    ///
    /// # Errors
    /// `timeout` or `unavailable`.
    pub async fn ping(&self, timeout: Duration) -> Result<Option<String>, Fault> {
        let _ = timeout;
        todo!("H2")
    }
    /// Asks the peer to shut down within `grace`.
    pub fn send_shutdown(&self, grace: Duration) {
        let _ = grace;
        todo!("H2")
    }
    /// Sends `error` id 0 with `fault` (if still open) and closes the connection. Calls in
    /// flight fail with `unavailable`.
    pub fn close(&self, fault: Fault) {
        let _ = fault;
        todo!("H2")
    }
    /// `true` once the connection has ended.
    pub fn is_closed(&self) -> bool {
        todo!("H2")
    }
    /// Resolves when the connection has ended, with the reason.
    pub async fn closed(&self) -> String {
        todo!("H2")
    }
    /// Bytes queued for writing and not yet handed to the socket.
    pub fn queued_bytes(&self) -> usize {
        todo!("H2")
    }
}

/// One direction-pair byte stream between two connected peers, with credit flow control:
/// `AsyncRead` yields the peer's data in order, `AsyncWrite` sends (waiting for credit),
/// `shutdown` sends `stream_fin` (half-close), [`ByteStream::reset`] aborts. Dropping a stream
/// that is not finished in both directions resets it.
pub struct ByteStream {
    _inner: Arc<()>,
}

impl ByteStream {
    /// Stream id on its connection.
    pub fn id(&self) -> u64 {
        todo!("H2")
    }
    /// The protocol named at open.
    pub fn protocol(&self) -> &str {
        todo!("H2")
    }
    /// Aborts the stream in both directions; the peer sees `code`/`message`.
    pub fn reset(self, code: ErrorCode, message: &str) {
        let _ = (code, message);
        todo!("H2")
    }
    /// Bytes written by this side and not yet acknowledged by credit (always ≤ the window).
    pub fn unacknowledged(&self) -> u64 {
        todo!("H2")
    }
}

impl AsyncRead for ByteStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let _ = (cx, buf);
        todo!("H2")
    }
}

impl AsyncWrite for ByteStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let _ = (cx, buf);
        todo!("H2")
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let _ = cx;
        todo!("H2")
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let _ = cx;
        todo!("H2")
    }
}

#[doc(hidden)]
pub fn _unused(_: Bytes) {}
