//! The handshake: [`connect`] (send `hello`, await `welcome`), [`read_hello`] and the
//! [`PendingSession`] it yields ([`accept`](PendingSession::accept) or
//! [`refuse`](PendingSession::refuse)).
//!
//! Owns the socket until the connection is accepted, then hands it, with any bytes the peer
//! already pipelined, to [`Session::start`]. Every read is bounded by
//! `Config::handshake_timeout`; every refusal is told to the peer as `error` id 0 before the
//! socket closes. Never decides whether a peer is welcome: the caller of `read_hello` does.

use crate::admission::Ticket;
use crate::session::{Peer, Session};
use crate::socket::{Socket, Transport};
use crate::{Config, Fault, Handler, SessionError};
use bytes::BytesMut;
use logos_wire::handshake::check_version;
use logos_wire::{ErrorCode, FrameDecoder, Hello, Message, Welcome, WireError, encode_frame};
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixStream;

/// Bytes read per attempt while waiting for the handshake frame.
const READ_CHUNK: usize = 16 * 1024;

/// Why reading the handshake frame failed.
enum ReadFailure {
    Io(io::Error),
    Wire(WireError),
    Eof,
}

/// Reads until one whole frame is in `buf` and decodes it, leaving any further bytes in `buf`.
async fn read_message(
    stream: &Socket,
    buf: &mut BytesMut,
    decoder: &FrameDecoder,
) -> Result<Message, ReadFailure> {
    loop {
        match decoder.decode(buf) {
            Ok(Some(msg)) => return Ok(msg),
            Ok(None) => {}
            Err(e) => return Err(ReadFailure::Wire(e)),
        }
        buf.reserve(READ_CHUNK);
        match stream.read_buf_when_ready(&mut *buf).await {
            Ok(0) => return Err(ReadFailure::Eof),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadFailure::Io(e)),
        }
    }
}

/// Writes one frame, bounded by `limit`. A message that cannot be encoded (e.g. attrs nested
/// too deep) is a [`SessionError::Protocol`].
async fn write_message(
    stream: &Socket,
    msg: &Message,
    limit: Duration,
) -> Result<(), SessionError> {
    let mut frame = Vec::new();
    encode_frame(msg, &mut frame)?;
    match tokio::time::timeout(limit, stream.write_all(&frame)).await {
        Ok(result) => result.map_err(SessionError::Io),
        Err(_) => Err(SessionError::HandshakeTimeout(limit)),
    }
}

/// Tells the peer why (`error` id 0) and closes our sending side. Best effort: the peer may
/// already be gone.
async fn send_refusal(mut stream: Socket, fault: Fault, limit: Duration) {
    let msg = Message::Error {
        id: 0,
        code: fault.code,
        message: fault.message,
    };
    if write_message(&stream, &msg, limit).await.is_ok() {
        let _ = tokio::time::timeout(limit, stream.shutdown()).await;
    }
}

/// Maps a failed handshake read to the error returned, telling the peer first where that
/// makes sense.
async fn read_failed(
    stream: Socket,
    failure: ReadFailure,
    limit: Duration,
    waiting_for: &str,
) -> SessionError {
    match failure {
        ReadFailure::Io(e) => SessionError::Io(e),
        ReadFailure::Eof => SessionError::Closed(format!(
            "peer closed the connection before sending {waiting_for}"
        )),
        ReadFailure::Wire(e) => {
            let (code, message) = match e {
                WireError::FrameTooLarge { len, max } => (
                    ErrorCode::Limit,
                    format!(
                        "{waiting_for} of {len} bytes exceeds the limit of {max} bytes before authentication"
                    ),
                ),
                _ => (ErrorCode::ProtocolError, e.to_string()),
            };
            tracing::warn!("bad handshake frame from peer: {message}");
            send_refusal(stream, Fault::new(code, message), limit).await;
            SessionError::Protocol(e)
        }
    }
}

fn unexpected(expected: &str, got: &Message) -> WireError {
    WireError::Malformed {
        what: String::from("handshake"),
        offset: 0,
        reason: format!("expected {expected}, got {}", got.kind_name()),
    }
}

/// The decoder for a handshake frame: the pre-authentication cap (never above the frame cap).
fn handshake_decoder(config: &Config) -> FrameDecoder {
    FrameDecoder::new(config.max_handshake_frame.min(config.max_frame))
}

/// Connects as the initiating side: sends `hello`, waits for `welcome`.
///
/// Bytes the peer sends right after its `welcome` are kept for the session.
///
/// # Errors
/// [`SessionError::Refused`] with the peer's reason, [`SessionError::HandshakeTimeout`],
/// [`SessionError::Protocol`] (e.g. version mismatch, or a first message other than
/// `welcome`/`error`), [`SessionError::Closed`] if the peer hangs up, [`SessionError::Io`].
///
/// # Cancel safety
/// Not cancel safe: dropping the future drops the socket.
///
/// # Examples
///
/// ```no_run
/// # async fn f() -> Result<(), logos_session::SessionError> {
/// use logos_wire::{Hello, PROTOCOL_MAJOR, PROTOCOL_MINOR};
/// use std::sync::Arc;
/// let socket = tokio::net::UnixStream::connect("/run/logos/modules/chat.sock").await?;
/// let hello = Hello {
///     major: PROTOCOL_MAJOR,
///     minor: PROTOCOL_MINOR,
///     identity: "wallet".into(),
///     token: bytes::Bytes::new(),
///     attrs: Default::default(),
/// };
/// let (session, welcome) = logos_session::connect(
///     socket,
///     hello,
///     Arc::new(logos_session::Refuse),
///     logos_session::Config::default(),
/// )
/// .await?;
/// println!("connected to {}", welcome.identity);
/// # drop(session); Ok(()) }
/// ```
pub async fn connect(
    stream: UnixStream,
    hello: Hello,
    handler: Arc<dyn Handler>,
    config: Config,
) -> Result<(Session, Welcome), SessionError> {
    connect_over(
        Transport::unix(stream)?,
        BytesMut::new(),
        hello,
        handler,
        config,
    )
    .await
}

/// [`connect`] over any [`Transport`] (e.g. an established TLS connection); `buf` holds bytes
/// of the stream already read (they come before anything read from `transport`).
///
/// # Errors
/// As for [`connect`].
///
/// # Cancel safety
/// Not cancel safe: dropping the future drops the transport.
pub async fn connect_over(
    transport: Transport,
    mut buf: BytesMut,
    hello: Hello,
    handler: Arc<dyn Handler>,
    config: Config,
) -> Result<(Session, Welcome), SessionError> {
    let stream = transport.0;
    let limit = config.handshake_timeout;
    let decoder = handshake_decoder(&config);
    let exchange = async {
        let mut hello = hello;
        crate::session::announce_shared(&stream, &config, &mut hello.attrs);
        write_message(&stream, &Message::Hello(hello), limit).await?;
        Ok::<_, SessionError>(read_message(&stream, &mut buf, &decoder).await)
    };
    let read = match tokio::time::timeout(limit, exchange).await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(SessionError::HandshakeTimeout(limit)),
    };
    let msg = match read {
        Ok(msg) => msg,
        Err(failure) => return Err(read_failed(stream, failure, limit, "welcome").await),
    };
    match msg {
        Message::Welcome(welcome) => {
            if let Err(e) = check_version(welcome.major, welcome.minor) {
                let fault = Fault::new(ErrorCode::ProtocolError, e.to_string());
                send_refusal(stream, fault, limit).await;
                return Err(SessionError::Protocol(e));
            }
            let (pid, uid) = stream.peer_creds();
            let peer = Peer {
                identity: welcome.identity.clone(),
                pid,
                uid,
                attrs: welcome.attrs.clone(),
                minor: welcome.minor,
            };
            let session = Session::start(stream, buf, peer, handler, config, true);
            Ok((session, welcome))
        }
        Message::Error { code, message, .. } => Err(SessionError::Refused(Fault { code, message })),
        other => {
            let e = unexpected("welcome", &other);
            tracing::warn!("handshake: {e}");
            let fault = Fault::new(ErrorCode::ProtocolError, e.to_string());
            send_refusal(stream, fault, limit).await;
            Err(SessionError::Protocol(e))
        }
    }
}

/// Reads the peer's `hello` on an accepted socket (within the handshake timeout) and checks its
/// protocol version (a mismatch is refused on the wire and returned as an error).
///
/// Also records the peer's pid and uid (SO_PEERCRED). Anything but `hello` first is refused
/// with `protocol_error`; a hello longer than `Config::max_handshake_frame` is refused with
/// `limit` as soon as its length prefix arrives. On a listening socket, prefer
/// [`read_hello_admitted`], which also bounds how many peers wait for their hello at once.
///
/// # Errors
/// As for [`connect`].
///
/// # Cancel safety
/// Not cancel safe: dropping the future drops the socket.
pub async fn read_hello(
    stream: UnixStream,
    config: Config,
) -> Result<PendingSession, SessionError> {
    read_hello_until(Socket::unix(stream)?, BytesMut::new(), config, None).await
}

/// [`read_hello`] over any [`Transport`] (e.g. an established TLS connection); `buf` holds
/// bytes of the stream already read.
///
/// # Errors
/// As for [`read_hello`].
///
/// # Cancel safety
/// Not cancel safe: dropping the future drops the transport.
pub async fn read_hello_over(
    transport: Transport,
    buf: BytesMut,
    config: Config,
) -> Result<PendingSession, SessionError> {
    read_hello_until(transport.0, buf, config, None).await
}

/// [`read_hello`] for a connection accepted by an [`Acceptor`](crate::Acceptor): gives up
/// when `ticket` is evicted by newer connections (the peer is told `limit`), and frees the
/// ticket's place once the hello is in.
///
/// # Errors
/// As for [`read_hello`], and [`SessionError::Evicted`].
///
/// # Cancel safety
/// Not cancel safe: dropping the future drops the socket.
pub async fn read_hello_admitted(
    stream: UnixStream,
    config: Config,
    mut ticket: Ticket,
) -> Result<PendingSession, SessionError> {
    read_hello_until(
        Socket::unix(stream)?,
        BytesMut::new(),
        config,
        Some(&mut ticket),
    )
    .await
}

async fn read_hello_until(
    stream: Socket,
    mut buf: BytesMut,
    config: Config,
    ticket: Option<&mut Ticket>,
) -> Result<PendingSession, SessionError> {
    let limit = config.handshake_timeout;
    let decoder = handshake_decoder(&config);
    let max = ticket.as_ref().map_or(0, |t| t.max());
    let evicted = async move {
        match ticket {
            Some(t) => t.evicted().await,
            None => std::future::pending().await,
        }
    };
    let read = tokio::select! {
        read = tokio::time::timeout(limit, read_message(&stream, &mut buf, &decoder)) => Some(read),
        () = evicted => None,
    };
    let read = match read {
        Some(Ok(read)) => read,
        None => {
            let fault = Fault::new(
                ErrorCode::Limit,
                format!(
                    "{max} newer connections are waiting for their handshake here; this one, still without a complete hello, is closed to make room"
                ),
            );
            send_refusal(stream, fault, Duration::from_millis(100)).await;
            return Err(SessionError::Evicted(max));
        }
        Some(Err(_)) => {
            let fault = Fault::new(
                ErrorCode::ProtocolError,
                format!("no hello within {limit:?}"),
            );
            // Short: the peer is probably not reading either.
            send_refusal(stream, fault, Duration::from_millis(100)).await;
            return Err(SessionError::HandshakeTimeout(limit));
        }
    };
    let msg = match read {
        Ok(msg) => msg,
        Err(failure) => return Err(read_failed(stream, failure, limit, "hello").await),
    };
    match msg {
        Message::Hello(hello) => {
            if let Err(e) = check_version(hello.major, hello.minor) {
                tracing::warn!(identity = %hello.identity, "handshake refused: {e}");
                let fault = Fault::new(ErrorCode::ProtocolError, e.to_string());
                send_refusal(stream, fault, limit).await;
                return Err(SessionError::Protocol(e));
            }
            let (pid, uid) = stream.peer_creds();
            Ok(PendingSession {
                hello,
                pid,
                uid,
                stream,
                config,
                buf,
            })
        }
        other => {
            let e = unexpected("hello", &other);
            tracing::warn!("handshake: {e}");
            let fault = Fault::new(ErrorCode::ProtocolError, e.to_string());
            send_refusal(stream, fault, limit).await;
            Err(SessionError::Protocol(e))
        }
    }
}

/// An accepted socket whose `hello` has been read but not yet answered.
pub struct PendingSession {
    /// The peer's hello.
    pub hello: Hello,
    /// Peer process id from SO_PEERCRED.
    pub pid: Option<u32>,
    /// Peer user id from SO_PEERCRED.
    pub uid: Option<u32>,
    stream: Socket,
    config: Config,
    /// Bytes the peer sent after its hello.
    buf: BytesMut,
}

impl fmt::Debug for PendingSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingSession")
            .field("identity", &self.hello.identity)
            .field("pid", &self.pid)
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

impl PendingSession {
    /// Sends `welcome` and starts the connection. `identity` becomes [`Peer::identity`].
    ///
    /// # Errors
    /// [`SessionError::Io`] if the welcome cannot be written,
    /// [`SessionError::HandshakeTimeout`] if the peer does not take it in time.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future drops the socket.
    pub async fn accept(
        self,
        identity: String,
        welcome: Welcome,
        handler: Arc<dyn Handler>,
    ) -> Result<Session, SessionError> {
        let PendingSession {
            hello,
            pid,
            uid,
            stream,
            config,
            buf,
        } = self;
        let mut welcome = welcome;
        crate::session::announce_shared(&stream, &config, &mut welcome.attrs);
        write_message(
            &stream,
            &Message::Welcome(welcome),
            config.handshake_timeout,
        )
        .await?;
        let peer = Peer {
            identity,
            pid,
            uid,
            minor: hello.minor,
            attrs: hello.attrs,
        };
        Ok(Session::start(stream, buf, peer, handler, config, false))
    }

    /// Sends `error` (id 0) with `fault` and closes. Best effort, bounded by the handshake
    /// timeout: a peer that has gone or does not read just gets the closed socket.
    ///
    /// # Cancel safety
    /// Dropping the future closes the socket, possibly before the `error` was written.
    pub async fn refuse(self, fault: Fault) {
        tracing::debug!(identity = %self.hello.identity, %fault, "handshake refused");
        send_refusal(self.stream, fault, self.config.handshake_timeout).await;
    }
}
