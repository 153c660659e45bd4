//! A typed helper for modules that speak their own libp2p protocols through the `p2p` module
//! (docs/p2p.md): register protocols, accept and open streams, read and write them the way
//! nim-libp2p's `LPStream` does (`read`, `read_exactly`, `read_lp`, `write`, `write_lp`,
//! `close`, `close_with_eof`, `reset`).
//!
//! Owns the owner's side only: calls to `p2p`, taking the runtime byte stream `p2p/<id>` that
//! `p2p` opens back on the same connection, buffered reads that never lose a byte to a
//! timeout, and turning faults and stream resets into [`P2pError`]s with their stable names.
//! Never talks libp2p itself: the `p2p` module's pump does.
//!
//! ```no_run
//! # async fn f(ctx: &logos_sdk::Context) -> Result<(), logos_sdk::p2p::P2pError> {
//! use logos_sdk::p2p::{Options, P2p};
//! use std::time::Duration;
//! let reg = P2p::new(ctx).register(&["/logos/echo/1.0.0"], Options::default()).await?;
//! loop {
//!     let mut s = reg.accept(Duration::from_secs(3600)).await?;
//!     tokio::spawn(async move {
//!         if let Ok(data) = s.read_to_end(1 << 20, None).await {
//!             let _ = s.write(&data).await;
//!             let _ = s.close().await;
//!         }
//!     });
//! }
//! # }
//! ```

use crate::client::Client;
use crate::context::Context;
use logos_session::{ByteStream, Fault, StreamReset};
use logos_wire::{ErrorCode, Value};
use serde::Deserialize;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The module name of the libp2p node.
pub const P2P_MODULE: &str = "p2p";
/// Deadline of each call to `p2p` besides `accept` and `open_stream` (their own plus this).
const CALL_SLACK: Duration = Duration::from_secs(10);
/// How long the byte stream of an accepted or opened stream may take to arrive after the
/// answer (it is sent before the answer on the same connection, so this is slack only).
const STREAM_ARRIVAL: Duration = Duration::from_secs(10);
/// The largest unsigned varint `read_lp` accepts: 10 bytes (64 bits).
const MAX_VARINT: usize = 10;

/// The stable error names of docs/p2p.md.
pub const ERROR_NAMES: [&str; 15] = [
    "eof",
    "reset",
    "closed",
    "conn_down",
    "incomplete",
    "limit",
    "invalid_varint",
    "timeout",
    "unsupported_protocol",
    "dial_failed",
    "not_found",
    "node_stopped",
    "already_registered",
    "unauthorized",
    "invalid_args",
];

/// A failed p2p operation: its stable name (`kind`, one of [`ERROR_NAMES`] or a wire error
/// code such as `unavailable`) and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct P2pError {
    /// The stable name: `eof`, `reset`, `timeout`, …
    pub kind: String,
    /// For `reset`: who reset the stream (`remote`, `local`, `timeout`, `node_shutdown`,
    /// `conn_down`, `module_gone`), when known.
    pub by: Option<String>,
    /// What happened.
    pub message: String,
}

impl P2pError {
    fn new(kind: &str, message: impl Into<String>) -> P2pError {
        P2pError {
            kind: kind.to_owned(),
            by: None,
            message: message.into(),
        }
    }

    /// `true` when this is the error named `kind`.
    pub fn is(&self, kind: &str) -> bool {
        self.kind == kind
    }

    /// Reads a fault from `p2p`: its message starts with the stable name.
    fn from_fault(f: Fault) -> P2pError {
        if let Some((name, rest)) = f.message.split_once(": ")
            && ERROR_NAMES.contains(&name)
        {
            return P2pError::new(name, rest);
        }
        let kind = match f.code {
            ErrorCode::InvalidArgs => "invalid_args",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Unavailable | ErrorCode::NotLoaded | ErrorCode::UnknownModule => {
                "node_stopped"
            }
            _ => "failed",
        };
        P2pError::new(kind, f.to_string())
    }

    /// Reads an I/O error of the byte stream.
    fn from_io(e: &io::Error) -> P2pError {
        if let Some(r) = StreamReset::of(e) {
            if !r.by_peer {
                return P2pError {
                    kind: "reset".into(),
                    by: Some("local".into()),
                    message: "the stream was reset by this module".into(),
                };
            }
            // `p2p` resets with "<by>: <detail>".
            let (by, detail) = r
                .message
                .split_once(": ")
                .unwrap_or((r.message.as_str(), ""));
            let kind = match by {
                "conn_down" => "conn_down",
                "node_shutdown" => "node_stopped",
                _ => "reset",
            };
            return P2pError {
                kind: kind.into(),
                by: Some(by.to_owned()),
                message: if detail.is_empty() {
                    r.message.clone()
                } else {
                    detail.to_owned()
                },
            };
        }
        match e.kind() {
            io::ErrorKind::ConnectionAborted => {
                P2pError::new("node_stopped", format!("the connection to p2p closed: {e}"))
            }
            io::ErrorKind::BrokenPipe => P2pError::new("closed", e.to_string()),
            _ => P2pError::new("reset", e.to_string()),
        }
    }
}

impl From<P2pError> for Fault {
    /// A method that fails with a p2p error answers `method_failed` with the name first.
    fn from(e: P2pError) -> Fault {
        Fault::new(ErrorCode::MethodFailed, e.to_string())
    }
}

impl From<P2pError> for String {
    fn from(e: P2pError) -> String {
        e.to_string()
    }
}

/// The limits of a registration (`registerProtocol`'s options); the defaults are the issue's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Inbound streams waiting for `accept`; more are reset (default 32).
    pub max_pending_inbound: u32,
    /// Inbound streams accepted and still open plus pending ones; more are reset (256).
    pub max_open_inbound: u32,
    /// How long an inbound stream waits for `accept` before it is reset (10 s).
    pub accept_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_pending_inbound: 32,
            max_open_inbound: 256,
            accept_timeout: Duration::from_secs(10),
        }
    }
}

impl Options {
    fn value(&self) -> Value {
        Value::Map(
            [
                (
                    "maxPendingInbound".to_owned(),
                    Value::from(self.max_pending_inbound),
                ),
                (
                    "maxOpenInbound".to_owned(),
                    Value::from(self.max_open_inbound),
                ),
                (
                    "acceptTimeoutMs".to_owned(),
                    Value::from(u64::try_from(self.accept_timeout.as_millis()).unwrap_or(u64::MAX)),
                ),
            ]
            .into(),
        )
    }
}

/// A handle to the `p2p` module for this module.
#[derive(Clone, Debug)]
pub struct P2p {
    client: Client,
}

/// What `accept` and `openStream` answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Opened {
    stream_id: u64,
    protocol: String,
    peer: String,
}

impl P2p {
    /// The node of this module's core (the module named `p2p`). This module may call the
    /// methods of `p2p` its permissions and the operator's grants name: `"p2p"` (all of them,
    /// as a dependency does), or e.g. `"p2p.registerProtocol"`, `"p2p.accept"` to serve and
    /// `"p2p.openStream"` to dial (docs/p2p.md, "Access").
    pub fn new(ctx: &Context) -> P2p {
        P2p {
            client: ctx.client(P2P_MODULE),
        }
    }

    async fn call<R: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        args: Vec<Value>,
        deadline: Duration,
    ) -> Result<R, P2pError> {
        let raw = self
            .client
            .clone()
            .with_timeout(deadline)
            .call_raw(method, args)
            .await
            .map_err(P2pError::from_fault)?;
        logos_wire::from_value(raw).map_err(|e| {
            P2pError::new(
                "invalid_args",
                format!("p2p.{method} answered unexpectedly: {e}"),
            )
        })
    }

    /// The node's peer id.
    ///
    /// # Errors
    /// `node_stopped` when `p2p` is not running.
    pub async fn peer_id(&self) -> Result<String, P2pError> {
        self.call("peerId", vec![], CALL_SLACK).await
    }

    /// The node's listen addresses, each ending in `/p2p/<peer id>`.
    ///
    /// # Errors
    /// As [`P2p::peer_id`].
    pub async fn listen_addrs(&self) -> Result<Vec<String>, P2pError> {
        self.call("listenAddrs", vec![], CALL_SLACK * 2).await
    }

    /// Registers `protocols` for this module: inbound streams for them wait for
    /// [`Registration::accept`]. The registration ends with this module's connection to `p2p`
    /// (exit, restart, unload) or with [`Registration::unregister`].
    ///
    /// # Errors
    /// `already_registered`, `unauthorized` (`p2p.registerProtocol` not granted), `invalid_args`,
    /// `node_stopped`.
    pub async fn register(
        &self,
        protocols: &[&str],
        options: Options,
    ) -> Result<Registration, P2pError> {
        let list = Value::List(protocols.iter().map(|p| Value::from(*p)).collect());
        let id: u64 = self
            .call("registerProtocol", vec![list, options.value()], CALL_SLACK)
            .await?;
        Ok(Registration {
            p2p: self.clone(),
            id,
        })
    }

    /// Opens a stream to `peer` for the first of `protocols` it supports, dialling `addrs`
    /// (and any address the node knows) when it is not connected.
    ///
    /// # Errors
    /// `unsupported_protocol`, `dial_failed`, `timeout`, `unauthorized` (`p2p.openStream`
    /// not granted), `node_stopped`.
    pub async fn open_stream(
        &self,
        peer: &str,
        protocols: &[&str],
        addrs: &[&str],
        timeout: Duration,
    ) -> Result<P2pStream, P2pError> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let args = vec![
            Value::from(peer),
            Value::List(protocols.iter().map(|p| Value::from(*p)).collect()),
            Value::List(addrs.iter().map(|a| Value::from(*a)).collect()),
            Value::from(ms),
        ];
        let opened: Opened = self.call("openStream", args, timeout + CALL_SLACK).await?;
        self.bind(opened).await
    }

    /// Takes the byte stream `p2p` opened for `opened`.
    async fn bind(&self, opened: Opened) -> Result<P2pStream, P2pError> {
        let name = format!("p2p/{}", opened.stream_id);
        let io = self
            .client
            .take_stream(&name, STREAM_ARRIVAL)
            .await
            .map_err(P2pError::from_fault)?;
        Ok(P2pStream {
            p2p: self.clone(),
            id: opened.stream_id,
            protocol: opened.protocol,
            peer: opened.peer,
            r: Reader::new(io),
        })
    }

    /// `streamInfo(id)` as `p2p` answers it.
    ///
    /// # Errors
    /// `not_found`, `unauthorized`, `node_stopped`.
    pub async fn stream_info(&self, id: u64) -> Result<Value, P2pError> {
        self.call("streamInfo", vec![Value::from(id)], CALL_SLACK)
            .await
    }
}

/// Protocols registered by this module.
#[derive(Debug)]
pub struct Registration {
    p2p: P2p,
    id: u64,
}

impl Registration {
    /// The registration id `p2p` gave.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next inbound stream, waiting at most `timeout` for one.
    ///
    /// # Errors
    /// `timeout`, `not_found` (the registration ended), `node_stopped`.
    pub async fn accept(&self, timeout: Duration) -> Result<P2pStream, P2pError> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let opened: Opened = self
            .p2p
            .call(
                "accept",
                vec![Value::from(self.id), Value::from(ms)],
                timeout + CALL_SLACK,
            )
            .await?;
        self.p2p.bind(opened).await
    }

    /// Ends the registration: its protocols are no longer offered, its pending streams reset.
    ///
    /// # Errors
    /// `not_found`, `node_stopped`.
    pub async fn unregister(self) -> Result<(), P2pError> {
        self.p2p
            .call::<Value>("unregisterProtocol", vec![Value::from(self.id)], CALL_SLACK)
            .await
            .map(drop)
    }
}

/// One libp2p stream handled by this module, over its runtime byte stream. Reads are
/// buffered here, so a read that times out never loses or reorders bytes: the next read
/// gets them.
#[derive(Debug)]
pub struct P2pStream {
    p2p: P2p,
    id: u64,
    protocol: String,
    peer: String,
    r: Reader<ByteStream>,
}

/// Where a [`Reader`] reads from: the owner's runtime byte stream ([`P2pStream`]), or the
/// `p2p` module's own end of a stream whose data moves by calls.
pub trait Source: tokio::io::AsyncRead + Unpin {
    /// What a read error of this source means.
    fn error(&self, e: &io::Error) -> P2pError;

    /// At end of file: `None` for a clean finish of the remote, else the error the end
    /// really was (a reset this source learns of only then).
    fn ended(&self) -> Option<P2pError> {
        None
    }
}

impl Source for ByteStream {
    fn error(&self, e: &io::Error) -> P2pError {
        P2pError::from_io(e)
    }
}

/// Buffered reads of one stream the way nim's `LPStream` reads (`read`, `read_exactly`,
/// `read_lp`, `read_to_end`), each with an optional timeout. A read that times out loses
/// nothing: what arrived stays buffered for the next read.
#[derive(Debug)]
pub struct Reader<S> {
    io: S,
    /// Bytes read from `io` and not handed out yet.
    buf: Vec<u8>,
    /// The remote finished (end of file seen on `io`).
    eof: bool,
}

impl<S: Source> Reader<S> {
    /// A reader of `io`, with nothing buffered.
    pub fn new(io: S) -> Reader<S> {
        Reader {
            io,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// The source, for writes and resets.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// The source and the bytes buffered but not read yet.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.io, self.buf)
    }

    /// Reads more into the buffer; `Ok(false)` at end of file.
    async fn fill(&mut self) -> Result<bool, P2pError> {
        if self.eof {
            return Ok(false);
        }
        let mut chunk = vec![0u8; 64 * 1024];
        let n = self
            .io
            .read(&mut chunk)
            .await
            .map_err(|e| self.io.error(&e))?;
        if n == 0 {
            self.eof = true;
            return match self.io.ended() {
                Some(e) => Err(e),
                None => Ok(false),
            };
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(true)
    }

    async fn within<T>(
        timeout: Option<Duration>,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, P2pError>>,
    ) -> Result<T, P2pError> {
        match timeout {
            None => fut.await,
            Some(t) => tokio::time::timeout(t, fut).await.unwrap_or_else(|_| {
                Err(P2pError::new(
                    "timeout",
                    format!("{what} did not finish within {} ms", t.as_millis()),
                ))
            }),
        }
    }

    /// At least one and at most `max` bytes (nim `readOnce`).
    ///
    /// # Errors
    /// `eof` when the remote finished and nothing is left; `timeout` (nothing is lost);
    /// `reset`, `conn_down`, `node_stopped`.
    pub async fn read(
        &mut self,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, P2pError> {
        Self::within(timeout, "read", async {
            while self.buf.is_empty() {
                if !self.fill().await? {
                    return Err(P2pError::new("eof", "the remote finished the stream"));
                }
            }
            let n = max.max(1).min(self.buf.len());
            Ok(self.buf.drain(..n).collect())
        })
        .await
    }

    /// Exactly `n` bytes (nim `readExactly`).
    ///
    /// # Errors
    /// `incomplete` when the remote finished first (the bytes stay readable), else as
    /// [`Reader::read`].
    pub async fn read_exactly(
        &mut self,
        n: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, P2pError> {
        Self::within(timeout, "readExactly", async {
            while self.buf.len() < n {
                if !self.fill().await? {
                    return Err(P2pError::new(
                        "incomplete",
                        format!("the remote finished after {} of {n} bytes", self.buf.len()),
                    ));
                }
            }
            Ok(self.buf.drain(..n).collect())
        })
        .await
    }

    /// One message prefixed with its length as an unsigned varint (nim `readLp`), at most
    /// `max_size` bytes.
    ///
    /// # Errors
    /// `invalid_varint`, `limit` (the prefix announces more than `max_size`), `incomplete`,
    /// `eof` (finished before any byte of a message), else as [`Reader::read`].
    pub async fn read_lp(
        &mut self,
        max_size: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, P2pError> {
        Self::within(timeout, "readLp", async {
            let (len, prefix) = loop {
                match decode_varint(&self.buf) {
                    Varint::Done(len, prefix) => break (len, prefix),
                    Varint::Invalid => {
                        return Err(P2pError::new(
                            "invalid_varint",
                            "the length prefix is not an unsigned varint of at most 64 bits",
                        ));
                    }
                    Varint::More => {
                        if !self.fill().await? {
                            return Err(if self.buf.is_empty() {
                                P2pError::new("eof", "the remote finished the stream")
                            } else {
                                P2pError::new(
                                    "incomplete",
                                    "the remote finished inside a length prefix",
                                )
                            });
                        }
                    }
                }
            };
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > max_size {
                return Err(P2pError::new(
                    "limit",
                    format!("a message of {len} bytes, more than the {max_size} allowed"),
                ));
            }
            while self.buf.len() < prefix + len {
                if !self.fill().await? {
                    return Err(P2pError::new(
                        "incomplete",
                        format!(
                            "the remote finished after {} of {len} bytes of a message",
                            self.buf.len() - prefix
                        ),
                    ));
                }
            }
            let msg = self.buf[prefix..prefix + len].to_vec();
            self.buf.drain(..prefix + len);
            Ok(msg)
        })
        .await
    }

    /// Everything until the remote finishes, at most `limit` bytes.
    ///
    /// # Errors
    /// `limit` when more arrives, else as [`Reader::read`] (never `eof`).
    pub async fn read_to_end(
        &mut self,
        limit: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, P2pError> {
        Self::within(timeout, "readToEnd", async {
            while self.fill().await? {
                if self.buf.len() > limit {
                    return Err(P2pError::new(
                        "limit",
                        format!("more than {limit} bytes before the end of the stream"),
                    ));
                }
            }
            Ok(std::mem::take(&mut self.buf))
        })
        .await
    }

    /// Reads and discards everything until the remote finishes (for `closeWithEof`).
    ///
    /// # Errors
    /// As [`Reader::read`] (never `eof`).
    pub async fn drain(&mut self) -> Result<(), P2pError> {
        self.buf.clear();
        while self.fill().await? {
            self.buf.clear();
        }
        Ok(())
    }
}

impl P2pStream {
    /// The stream id in `p2p`.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The negotiated protocol.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The remote peer's id.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// At least one and at most `max` bytes (nim `readOnce`).
    ///
    /// # Errors
    /// `eof` when the remote finished and nothing is left; `timeout` (nothing is lost);
    /// `reset`, `conn_down`, `node_stopped`.
    pub async fn read(
        &mut self,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, P2pError> {
        self.r.read(max, timeout).await
    }

    /// Exactly `n` bytes (nim `readExactly`).
    ///
    /// # Errors
    /// As [`Reader::read_exactly`].
    pub async fn read_exactly(
        &mut self,
        n: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, P2pError> {
        self.r.read_exactly(n, timeout).await
    }

    /// One length-prefixed message of at most `max_size` bytes (nim `readLp`).
    ///
    /// # Errors
    /// As [`Reader::read_lp`].
    pub async fn read_lp(
        &mut self,
        max_size: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, P2pError> {
        self.r.read_lp(max_size, timeout).await
    }

    /// Everything until the remote finishes, at most `limit` bytes.
    ///
    /// # Errors
    /// As [`Reader::read_to_end`].
    pub async fn read_to_end(
        &mut self,
        limit: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, P2pError> {
        self.r.read_to_end(limit, timeout).await
    }

    /// Writes all of `data`, waiting for credit (the remote's pace).
    ///
    /// # Errors
    /// `closed` after [`P2pStream::close`], `reset`, `conn_down`, `node_stopped`.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), P2pError> {
        self.r
            .io
            .write_all(data)
            .await
            .map_err(|e| P2pError::from_io(&e))
    }

    /// Writes `data` prefixed with its length as an unsigned varint (nim `writeLp`).
    ///
    /// # Errors
    /// As [`P2pStream::write`].
    pub async fn write_lp(&mut self, data: &[u8]) -> Result<(), P2pError> {
        let mut framed = encode_varint(data.len() as u64);
        framed.extend_from_slice(data);
        self.write(&framed).await
    }

    /// Half-closes: no more writes from here; reads go on (nim `close`).
    ///
    /// # Errors
    /// `reset`, `node_stopped`.
    pub async fn close(&mut self) -> Result<(), P2pError> {
        self.r
            .io
            .shutdown()
            .await
            .map_err(|e| P2pError::from_io(&e))
    }

    /// Half-closes and waits for the remote to finish too, discarding what it still sends
    /// (nim `closeWithEOF`); past `timeout` the stream is reset.
    ///
    /// # Errors
    /// `timeout` (then reset), `reset`, `node_stopped`.
    pub async fn close_with_eof(mut self, timeout: Duration) -> Result<(), P2pError> {
        self.close().await?;
        let drained = tokio::time::timeout(timeout, self.r.drain()).await;
        match drained {
            Ok(r) => r,
            Err(_) => {
                self.reset();
                Err(P2pError::new(
                    "timeout",
                    format!(
                        "the remote did not finish within {} ms; the stream was reset",
                        timeout.as_millis()
                    ),
                ))
            }
        }
    }

    /// Aborts the stream both ways; the remote sees a reset (nim `reset`).
    pub fn reset(self) {
        self.r
            .io
            .reset(ErrorCode::Cancelled, "local: reset by the module");
    }

    /// `streamInfo` of this stream.
    ///
    /// # Errors
    /// As [`P2p::stream_info`].
    pub async fn info(&self) -> Result<Value, P2pError> {
        self.p2p.stream_info(self.id).await
    }

    /// The runtime byte stream underneath, for `AsyncRead`/`AsyncWrite` use. Bytes already
    /// buffered by reads of this helper are returned with it.
    pub fn into_inner(self) -> (ByteStream, Vec<u8>) {
        self.r.into_parts()
    }
}

/// The unsigned varint encoding of `n` (LEB128, as multiformats' unsigned-varint).
pub fn encode_varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_VARINT);
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// The outcome of decoding a varint at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
enum Varint {
    /// The value and how many bytes it took.
    Done(u64, usize),
    /// The buffer ends inside it.
    More,
    /// Longer than 64 bits, or not minimal.
    Invalid,
}

fn decode_varint(buf: &[u8]) -> Varint {
    let mut n: u64 = 0;
    for (i, b) in buf.iter().enumerate().take(MAX_VARINT) {
        let part = u64::from(b & 0x7f);
        if i == MAX_VARINT - 1 && part > 1 {
            return Varint::Invalid;
        }
        n |= part << (7 * i);
        if b & 0x80 == 0 {
            // unsigned-varint requires the minimal encoding: no trailing zero group.
            if i > 0 && *b == 0 {
                return Varint::Invalid;
            }
            return Varint::Done(n, i + 1);
        }
    }
    if buf.len() >= MAX_VARINT {
        Varint::Invalid
    } else {
        Varint::More
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_bad_ones_are_refused() {
        for n in [0u64, 1, 127, 128, 300, 1 << 20, u64::MAX] {
            let e = encode_varint(n);
            assert_eq!(decode_varint(&e), Varint::Done(n, e.len()), "{n}");
            // Cut short, every prefix (the empty one included) asks for more.
            assert_eq!(decode_varint(&e[..e.len() - 1]), Varint::More);
        }
        assert_eq!(decode_varint(&[0x80, 0x00]), Varint::Invalid);
        assert_eq!(decode_varint(&[0xff; 11]), Varint::Invalid);
        assert_eq!(
            decode_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Varint::Invalid
        );
    }

    #[test]
    fn faults_from_p2p_keep_their_name() {
        let e = P2pError::from_fault(Fault::new(ErrorCode::MethodFailed, "dial_failed: no route"));
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("dial_failed", "no route")
        );
        let e = P2pError::from_fault(Fault::new(ErrorCode::Unavailable, "p2p is down"));
        assert_eq!(e.kind, "node_stopped");
    }
}
