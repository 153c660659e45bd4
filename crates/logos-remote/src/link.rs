//! The link handshake: after TLS, the remote side proves which module it is and says what the
//! link is for, in one logos `hello`/`welcome` exchange (docs/remote-modules.md).
//!
//! ```text
//! remote → core   hello   {identity: module, token: secret,
//!                          attrs: {"link": "control" | "call" | "accept",
//!                                  "target": text (call), "ticket": bytes (accept)}}
//! core → remote   welcome {identity: "core", attrs: {"heartbeatMs": int, "peer": text}}
//!              or error id 0 (code, reason), then close
//! ```
//!
//! After the welcome the link carries the ordinary protocol, unchanged: on a `control` link
//! the module's own `hello` (with its interface) follows, exactly as on an inherited fd 3; on
//! `call` and `accept` links, a peer connection's `hello` with a capability token.
//!
//! Owns the frames of that exchange over any byte stream (reads capped at the handshake cap,
//! 64 KiB, before authentication), and the client side, [`dial`]. Never decides whether a
//! credential is good: the core does.

use crate::bridge::tune;
use crate::credential::Credential;
use crate::error::DialError;
use bytes::{Bytes, BytesMut};
use logos_wire::{
    Attrs, ErrorCode, FrameDecoder, Hello, MAX_HANDSHAKE_FRAME, Message, PROTOCOL_MAJOR,
    PROTOCOL_MINOR, Value, Welcome, WireError, encode_frame,
};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The `hello` attribute naming the link's purpose.
pub const LINK: &str = "link";
/// The `welcome` attribute carrying the core's heartbeat interval in milliseconds.
pub const HEARTBEAT_MS: &str = "heartbeatMs";

/// What a link is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// The module's control connection: the core calls it, it calls the built-ins.
    Control,
    /// A peer connection from this module to `target`, relayed by the core.
    Call {
        /// The module to call.
        target: String,
    },
    /// A peer connection to this module, asked for by the core with `ticket` (`$dial`).
    Accept {
        /// The core's ticket.
        ticket: Vec<u8>,
    },
}

impl Purpose {
    /// The link `hello`'s attrs.
    pub fn attrs(&self) -> Attrs {
        let mut a = Attrs::new();
        match self {
            Purpose::Control => {
                a.insert(LINK.to_owned(), Value::from("control"));
            }
            Purpose::Call { target } => {
                a.insert(LINK.to_owned(), Value::from("call"));
                a.insert("target".to_owned(), Value::from(target.as_str()));
            }
            Purpose::Accept { ticket } => {
                a.insert(LINK.to_owned(), Value::from("accept"));
                a.insert("ticket".to_owned(), Value::Bytes(ticket.clone().into()));
            }
        }
        a
    }

    /// Reads the purpose from a link `hello`'s attrs; the error says what is wrong.
    ///
    /// # Errors
    /// A message for the refusal.
    pub fn from_attrs(attrs: &Attrs) -> Result<Purpose, String> {
        match attrs.get(LINK).and_then(Value::as_str) {
            Some("control") => Ok(Purpose::Control),
            Some("call") => match attrs.get("target").and_then(Value::as_str) {
                Some(t) if !t.is_empty() && t.len() <= 256 => Ok(Purpose::Call {
                    target: t.to_owned(),
                }),
                _ => Err("a call link needs attrs.target, a module name".to_owned()),
            },
            Some("accept") => match attrs.get("ticket") {
                Some(Value::Bytes(t)) if t.len() == 16 => Ok(Purpose::Accept {
                    ticket: t.to_vec(),
                }),
                _ => Err("an accept link needs attrs.ticket, 16 bytes from $dial".to_owned()),
            },
            Some(other) => Err(format!(
                "attrs.link {:?} is not a link purpose (control, call, accept)",
                other.chars().take(40).collect::<String>()
            )),
            None => Err(
                "this is the TLS listener for remote modules: the first hello must carry attrs.link (docs/remote-modules.md)"
                    .to_owned(),
            ),
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The stream failed.
    Io(io::Error),
    /// The bytes are not a valid frame (too large, malformed).
    Wire(WireError),
    /// The stream ended first.
    Eof,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Wire(e) => write!(f, "{e}"),
            ReadError::Eof => f.write_str("the peer closed the connection"),
        }
    }
}

/// Reads one whole frame into `buf` (which may hold bytes read earlier) and decodes it; bytes
/// after it stay in `buf`. Returns the message and the frame's bytes, prefix included, so a
/// relay can pass the frame on unchanged.
///
/// # Errors
/// [`ReadError`]; a length prefix above `cap` is refused before its body is read.
///
/// # Cancel safety
/// Not cancel safe: bytes read so far stay in `buf`, but the caller usually drops the stream.
pub async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    cap: usize,
) -> Result<(Message, Bytes), ReadError> {
    let decoder = FrameDecoder::new(cap);
    loop {
        if let Some(head) = buf.first_chunk::<4>() {
            let len = u32::from_be_bytes(*head) as usize;
            if len <= cap && buf.len() >= 4 + len {
                let raw = Bytes::copy_from_slice(&buf[..4 + len]);
                return match decoder.decode(buf) {
                    Ok(Some(msg)) => Ok((msg, raw)),
                    Ok(None) => Err(ReadError::Eof),
                    Err(e) => Err(ReadError::Wire(e)),
                };
            }
            // Too large: let the decoder refuse it from the prefix alone.
            if len > cap || len == 0 {
                return match decoder.decode(buf) {
                    Err(e) => Err(ReadError::Wire(e)),
                    _ => Err(ReadError::Eof),
                };
            }
        }
        buf.reserve(16 * 1024);
        match stream.read_buf(buf).await {
            Ok(0) => return Err(ReadError::Eof),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// Writes one message as a frame and flushes it.
///
/// # Errors
/// The stream's error; `InvalidData` when the message cannot be encoded.
pub async fn write_message<S: AsyncWrite + Unpin>(stream: &mut S, msg: &Message) -> io::Result<()> {
    let mut frame = Vec::new();
    encode_frame(msg, &mut frame).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    stream.write_all(&frame).await?;
    stream.flush().await
}

/// Sends `error` id 0 and closes the sending side (TLS close_notify), best effort within
/// `limit`: how the core refuses a link.
pub async fn refuse<S: AsyncWrite + Unpin>(
    stream: &mut S,
    code: ErrorCode,
    message: &str,
    limit: Duration,
) {
    let msg = Message::Error {
        id: 0,
        code,
        message: message.to_owned(),
    };
    let _ = tokio::time::timeout(limit, async {
        write_message(stream, &msg).await?;
        stream.shutdown().await
    })
    .await;
}

/// The link `welcome` the core sends.
pub fn welcome(heartbeat: Duration, peer: SocketAddr) -> Message {
    let mut attrs = Attrs::new();
    attrs.insert(
        HEARTBEAT_MS.to_owned(),
        Value::from(u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX)),
    );
    attrs.insert("peer".to_owned(), Value::from(peer.to_string()));
    Message::Welcome(Welcome {
        major: PROTOCOL_MAJOR,
        minor: PROTOCOL_MINOR,
        identity: "core".to_owned(),
        attrs,
    })
}

/// A link opened by [`dial`]: the TLS stream after the link welcome, any bytes the core sent
/// after it, and the welcome.
pub struct Dialed {
    /// The TLS stream.
    pub stream: TlsStream<TcpStream>,
    /// Bytes read past the welcome.
    pub leftover: BytesMut,
    /// The core's link welcome.
    pub welcome: Welcome,
    /// The address that answered.
    pub addr: String,
}

impl Dialed {
    /// The core's heartbeat interval from the welcome, if it sent one.
    pub fn heartbeat(&self) -> Option<Duration> {
        self.welcome
            .attrs
            .get(HEARTBEAT_MS)
            .and_then(Value::as_u64)
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
    }
}

/// Opens a link for `purpose` to the first address of `credential.core` that answers:
/// TCP (no delay, keepalive), TLS 1.3 with the pinned certificate, then the link handshake,
/// all within `limit` per address.
///
/// # Errors
/// The last address's [`DialError`]; a permanent one ([`DialError::is_permanent`]) is returned
/// at once without trying further addresses.
///
/// # Cancel safety
/// Cancel safe: nothing is kept.
pub async fn dial(
    credential: &Credential,
    purpose: &Purpose,
    limit: Duration,
) -> Result<Dialed, DialError> {
    let config = crate::tls::client_config(credential.pin).map_err(|e| DialError::Tls {
        addr: String::new(),
        source: io::Error::other(e),
        pin: false,
    })?;
    let connector = TlsConnector::from(config);
    let mut last = None;
    for addr in &credential.core {
        match tokio::time::timeout(limit, dial_one(&connector, credential, purpose, addr)).await {
            Ok(Ok(d)) => return Ok(d),
            Ok(Err(e)) if e.is_permanent() => return Err(e),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(DialError::Timeout {
                    addr: addr.clone(),
                    after: limit,
                });
            }
        }
    }
    Err(last.unwrap_or_else(|| DialError::Protocol {
        addr: String::new(),
        reason: "the credential lists no address".to_owned(),
    }))
}

async fn dial_one(
    connector: &TlsConnector,
    credential: &Credential,
    purpose: &Purpose,
    addr: &str,
) -> Result<Dialed, DialError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| DialError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    tune(&tcp);
    let mut tls = connector
        .connect(crate::tls::server_name(), tcp)
        .await
        .map_err(|source| match crate::tls::pin_mismatch(&source) {
            Some(m) => DialError::Tls {
                addr: addr.to_owned(),
                source: io::Error::new(io::ErrorKind::PermissionDenied, m.to_string()),
                pin: true,
            },
            None => DialError::Tls {
                addr: addr.to_owned(),
                source,
                pin: false,
            },
        })?;
    let hello = Message::Hello(Hello {
        major: PROTOCOL_MAJOR,
        minor: PROTOCOL_MINOR,
        identity: credential.module.clone(),
        token: Bytes::copy_from_slice(credential.secret.as_bytes()),
        attrs: purpose.attrs(),
    });
    let lost = |e: io::Error| DialError::Connect {
        addr: addr.to_owned(),
        source: e,
    };
    write_message(&mut tls, &hello).await.map_err(lost)?;
    let mut buf = BytesMut::new();
    let (msg, _) = match read_frame(&mut tls, &mut buf, MAX_HANDSHAKE_FRAME).await {
        Ok(m) => m,
        Err(ReadError::Io(e)) => return Err(lost(e)),
        Err(ReadError::Eof) => {
            return Err(lost(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the core closed the link before answering",
            )));
        }
        Err(ReadError::Wire(e)) => {
            return Err(DialError::Protocol {
                addr: addr.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    match msg {
        Message::Welcome(welcome) => Ok(Dialed {
            stream: tls,
            leftover: buf,
            welcome,
            addr: addr.to_owned(),
        }),
        Message::Error { code, message, .. } => Err(DialError::Refused {
            addr: addr.to_owned(),
            code,
            message,
        }),
        other => Err(DialError::Protocol {
            addr: addr.to_owned(),
            reason: format!("expected welcome, got {}", other.kind_name()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_round_trip_through_attrs() {
        for p in [
            Purpose::Control,
            Purpose::Call {
                target: "calc".to_owned(),
            },
            Purpose::Accept {
                ticket: vec![1; 16],
            },
        ] {
            assert_eq!(Purpose::from_attrs(&p.attrs()), Ok(p));
        }
        let e = Purpose::from_attrs(&Attrs::new()).unwrap_err();
        assert!(e.contains("attrs.link"), "{e}");
    }

    #[tokio::test]
    async fn frames_are_read_whole_and_the_rest_kept() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let ping = Message::Ping { nonce: 7 };
        let mut two = Vec::new();
        encode_frame(&ping, &mut two).unwrap();
        encode_frame(&Message::Ping { nonce: 8 }, &mut two).unwrap();
        a.write_all(&two).await.unwrap();
        let mut buf = BytesMut::new();
        let (msg, raw) = read_frame(&mut b, &mut buf, 1024).await.unwrap();
        assert_eq!(msg, ping);
        assert_eq!(raw.len(), two.len() / 2);
        assert_eq!(buf.len(), two.len() / 2, "the second frame stays buffered");
        a.write_all(&[0, 1, 0, 0]).await.unwrap();
        let (second, _) = read_frame(&mut b, &mut buf, 1024).await.unwrap();
        assert_eq!(second, Message::Ping { nonce: 8 });
        let e = read_frame(&mut b, &mut buf, 1024).await.unwrap_err();
        assert!(matches!(e, ReadError::Wire(_)), "{e}");
    }
}
