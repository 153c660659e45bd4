//! Shared test fixtures: a connected pair of sessions over `UnixStream::pair()`, a recording
//! [`Probe`] handler, and a [`RawPeer`] that speaks frames by hand (for hostile input).
//!
//! Owns no assertions of its own beyond "this must arrive within a deadline"; never sleeps to
//! synchronise.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use futures::future::BoxFuture;
use logos_session::{ByteStream, Config, Fault, Handler, Session};
use logos_wire::{
    Call, ErrorCode, Frame, FrameDecoder, Hello, Message, PROTOCOL_MAJOR, PROTOCOL_MINOR, Value,
    Welcome, encode_frame,
};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use std::future::Future;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// Generous upper bound for anything that should happen "soon".
pub const SOON: Duration = Duration::from_secs(10);

/// Awaits `f` or panics naming `what` after [`SOON`].
pub async fn soon<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(SOON, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

pub fn hello(identity: &str) -> Hello {
    Hello {
        major: PROTOCOL_MAJOR,
        minor: PROTOCOL_MINOR,
        identity: identity.to_owned(),
        token: bytes::Bytes::from_static(&[7; 32]),
        attrs: [("role".to_owned(), Value::from("client"))].into(),
    }
}

pub fn welcome(identity: &str) -> Welcome {
    Welcome {
        major: PROTOCOL_MAJOR,
        minor: PROTOCOL_MINOR,
        identity: identity.to_owned(),
        attrs: [("role".to_owned(), Value::from("server"))].into(),
    }
}

/// What a [`Probe`] saw, in order.
#[derive(Debug)]
pub enum Seen {
    Subscribe(String, String),
    Unsubscribe(String, String),
    Event(String, String, Vec<Value>),
    Lagged(String, u64),
    Stream(String, ByteStream),
    Shutdown(Duration),
    Closed(String),
}

type CallFn = dyn Fn(Session, Call) -> BoxFuture<'static, Result<Value, Fault>> + Send + Sync;
type EventHook = dyn Fn(&str, &[Value]) + Send + Sync;

/// A handler that records everything into a channel and runs calls through a closure.
pub struct Probe {
    seen: mpsc::UnboundedSender<Seen>,
    calls: Box<CallFn>,
    health: Mutex<Option<String>>,
    /// Runs (in the reader task) before an event is recorded.
    pub on_event: Option<Box<EventHook>>,
}

impl Probe {
    /// A probe serving calls with `calls`, and the receiver of what it sees.
    pub fn new<F, Fut>(calls: F) -> (Probe, mpsc::UnboundedReceiver<Seen>)
    where
        F: Fn(Session, Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, Fault>> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let probe = Probe {
            seen: tx,
            calls: Box::new(move |s, c| Box::pin(calls(s, c))),
            health: Mutex::new(None),
            on_event: None,
        };
        (probe, rx)
    }

    /// A probe whose calls all fail with `unknown_method`.
    pub fn quiet() -> (Probe, mpsc::UnboundedReceiver<Seen>) {
        Probe::new(
            |_, call: Call| async move { Err(Fault::new(ErrorCode::UnknownMethod, call.method)) },
        )
    }

    pub fn set_health(&self, h: Option<&str>) {
        *self.health.lock().unwrap() = h.map(str::to_owned);
    }
}

impl Handler for Probe {
    fn call(&self, session: Session, call: Call) -> BoxFuture<'static, Result<Value, Fault>> {
        (self.calls)(session, call)
    }
    fn subscribe(&self, _: &Session, source: &str, event: &str) {
        let _ = self.seen.send(Seen::Subscribe(source.into(), event.into()));
    }
    fn unsubscribe(&self, _: &Session, source: &str, event: &str) {
        let _ = self
            .seen
            .send(Seen::Unsubscribe(source.into(), event.into()));
    }
    fn event(&self, _: &Session, source: String, event: String, data: Vec<Value>) {
        if let Some(hook) = &self.on_event {
            hook(&event, &data);
        }
        let _ = self.seen.send(Seen::Event(source, event, data));
    }
    fn lagged(&self, _: &Session, source: String, dropped: u64) {
        let _ = self.seen.send(Seen::Lagged(source, dropped));
    }
    fn stream(&self, _: &Session, protocol: String, stream: ByteStream) {
        let _ = self.seen.send(Seen::Stream(protocol, stream));
    }
    fn health(&self) -> Option<String> {
        self.health.lock().unwrap().clone()
    }
    fn shutdown(&self, _: &Session, grace: Duration) {
        let _ = self.seen.send(Seen::Shutdown(grace));
    }
    fn closed(&self, _: &Session, reason: &str) {
        let _ = self.seen.send(Seen::Closed(reason.into()));
    }
}

/// Connects two sessions over a socket pair: `a` connected ("alice"), `b` accepted ("bob").
pub async fn pair_with(
    a: Arc<dyn Handler>,
    b: Arc<dyn Handler>,
    config: Config,
) -> (Session, Session) {
    let (sa, sb) = UnixStream::pair().unwrap();
    let cfg = config.clone();
    let server = tokio::spawn(async move {
        let pending = logos_session::read_hello(sb, cfg).await.unwrap();
        assert_eq!(pending.hello.identity, "alice");
        pending
            .accept("alice".into(), welcome("bob"), b)
            .await
            .unwrap()
    });
    let (alice, w) = soon(
        "connect",
        logos_session::connect(sa, hello("alice"), a, config),
    )
    .await
    .unwrap();
    assert_eq!(w.identity, "bob");
    let bob = soon("accept", server).await.unwrap();
    (alice, bob)
}

pub async fn pair(a: Arc<dyn Handler>, b: Arc<dyn Handler>) -> (Session, Session) {
    pair_with(a, b, Config::default()).await
}

/// Waits for the next [`Seen`] that `pick` accepts, skipping others.
pub async fn next_seen<T>(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    mut pick: impl FnMut(Seen) -> Option<T>,
) -> T {
    soon("handler notification", async {
        loop {
            let seen = rx.recv().await.expect("probe dropped");
            if let Some(t) = pick(seen) {
                return t;
            }
        }
    })
    .await
}

/// A peer that writes frames (or bytes) by hand and reads what the session sends back.
pub struct RawPeer {
    pub sock: UnixStream,
    buf: BytesMut,
    dec: FrameDecoder,
}

impl RawPeer {
    pub fn new(sock: UnixStream) -> RawPeer {
        RawPeer {
            sock,
            buf: BytesMut::new(),
            dec: FrameDecoder::default(),
        }
    }

    pub async fn send(&mut self, msg: &Message) {
        let mut out = Vec::new();
        encode_frame(msg, &mut out).unwrap();
        self.sock.write_all(&out).await.unwrap();
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).await.unwrap();
    }

    /// Next frame from the session; `None` at EOF or connection reset.
    pub async fn recv(&mut self) -> Option<Message> {
        soon("a frame from the session", async {
            loop {
                if let Some(m) = self.dec.decode(&mut self.buf).unwrap() {
                    return Some(m);
                }
                // Descriptors are not this peer's business here: they are closed.
                self.read_more(&mut Vec::new()).await?;
            }
        })
        .await
    }

    /// Next frame from the session, a shared frame's prefix included (this peer announced
    /// them), with the descriptors that came with its bytes added to `fds`; `None` at EOF or
    /// connection reset.
    pub async fn recv_frame(&mut self, fds: &mut Vec<OwnedFd>) -> Option<Frame> {
        soon("a frame from the session", async {
            loop {
                if let Some(f) = self.dec.decode_frame(&mut self.buf, true).unwrap() {
                    return Some(f);
                }
                self.read_more(fds).await?;
            }
        })
        .await
    }

    /// Waits for the socket and appends what one `recvmsg` gives to the buffer, and the
    /// descriptors that came with it to `fds`; `None` at EOF or connection reset.
    async fn read_more(&mut self, fds: &mut Vec<OwnedFd>) -> Option<()> {
        self.sock.readable().await.unwrap();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(16))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = self.sock.try_io(Interest::READABLE, || {
            rustix::net::recvmsg(
                &self.sock,
                &mut [IoSliceMut::new(&mut chunk)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )
            .map_err(std::io::Error::from)
        });
        match got {
            Ok(msg) if msg.bytes == 0 => None,
            Ok(msg) => {
                for m in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(r) = m {
                        fds.extend(r);
                    }
                }
                self.buf.extend_from_slice(&chunk[..msg.bytes]);
                Some(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Some(()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("raw recvmsg failed: {e}"),
        }
    }

    /// Skips frames until `pick` accepts one; panics at EOF.
    pub async fn recv_until<T>(&mut self, mut pick: impl FnMut(Message) -> Option<T>) -> T {
        loop {
            let m = self.recv().await.expect("connection closed while waiting");
            if let Some(t) = pick(m) {
                return t;
            }
        }
    }

    /// Reads until EOF, returning the `error` id 0 seen on the way (if any).
    pub async fn closing_error(&mut self) -> Option<(ErrorCode, String)> {
        let mut found = None;
        while let Some(m) = self.recv().await {
            if let Message::Error {
                id: 0,
                code,
                message,
            } = m
            {
                found = Some((code, message));
            }
        }
        found
    }
}

/// A session accepted from a raw peer that has already done its side of the handshake.
pub async fn raw_client(handler: Arc<dyn Handler>, config: Config) -> (RawPeer, Session) {
    raw_client_with(handler, config, &[]).await
}

/// [`raw_client`], the raw peer's `hello` carrying `attrs` too (e.g. announcing shared frames).
pub async fn raw_client_with(
    handler: Arc<dyn Handler>,
    config: Config,
    attrs: &[(&str, Value)],
) -> (RawPeer, Session) {
    let (sa, sb) = UnixStream::pair().unwrap();
    let mut raw = RawPeer::new(sa);
    let mut h = hello("raw");
    for (k, v) in attrs {
        h.attrs.insert((*k).to_owned(), v.clone());
    }
    raw.send(&Message::Hello(h)).await;
    let pending = soon("read_hello", logos_session::read_hello(sb, config))
        .await
        .unwrap();
    let session = pending
        .accept("raw".into(), welcome("session"), handler)
        .await
        .unwrap();
    match raw.recv().await {
        Some(Message::Welcome(w)) => assert_eq!(w.identity, "session"),
        other => panic!("expected welcome, got {other:?}"),
    }
    (raw, session)
}
