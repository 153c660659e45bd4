//! Streams whose data the owner moves with calls (`{"via": "calls"}` on `accept` and
//! `openStream`), for callers that cannot take a runtime byte stream: modules in languages
//! without one, and operators (`logoscore call p2p read …`).
//!
//! The pump's owner side is then one end of an in-process pipe ([`CallOwner`]); the other
//! end ([`CallSide`]) is read and written by the methods `read`, `readExactly`, `readLp`,
//! `write`, `writeLp`, `close` and `closeWithEof`, with the SDK's [`Reader`] (the same
//! buffered reads a module gets from `logos_sdk::p2p::P2pStream`, so a read that times out
//! loses nothing). The pipe holds at most one window (256 KiB) each way, so a caller that
//! stops reading slows the remote writer through Yamux as a byte stream would.
//!
//! How the stream ended travels beside the pipe: the pump records it before it drops its
//! end, and a read that reaches the end of the pipe reports a reset as `reset` (or
//! `conn_down`, `node_stopped`) with its `by`, not as `eof`. Never touches libp2p or
//! ownership: the pump and the hub do.

use crate::pump::{By, End, Owner};
use logos_sdk::p2p::{P2pError, Reader, Source, encode_varint};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf, ReadHalf, WriteHalf};

/// Bytes the pipe holds each way: one window of a runtime byte stream.
const PIPE: usize = 256 * 1024;

/// How a stream ended, recorded by the pump for the call side.
type EndSlot = Arc<Mutex<Option<End>>>;

fn recorded(slot: &EndSlot) -> Option<End> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// A new pipe: the pump's end and the calls' end.
pub fn pipe() -> (CallOwner, Arc<CallSide>) {
    let (a, b) = tokio::io::duplex(PIPE);
    let end = EndSlot::default();
    let (read, write) = tokio::io::split(b);
    let side = CallSide {
        reader: tokio::sync::Mutex::new(Reader::new(CallRead {
            half: read,
            end: Arc::clone(&end),
        })),
        writer: tokio::sync::Mutex::new(Writer {
            half: write,
            closed: false,
        }),
        end: Arc::clone(&end),
    };
    (CallOwner { io: a, end }, Arc::new(side))
}

/// The pump's end of the pipe.
pub struct CallOwner {
    io: DuplexStream,
    end: EndSlot,
}

impl AsyncRead for CallOwner {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for CallOwner {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Owner for CallOwner {
    fn poll_aborted(&mut self, _cx: &mut Context<'_>) -> Poll<io::Error> {
        // The calls' side never aborts through the pipe: `reset` and `closeWithEof` reach
        // the pump as hub commands, and its owner's connection closing as owner death.
        Poll::Pending
    }

    fn is_reset(&self, _e: &io::Error) -> bool {
        // The calls' end of the pipe is gone: the hub let the stream go.
        true
    }

    fn ended(self, end: &End) {
        *self.end.lock().unwrap_or_else(PoisonError::into_inner) = Some(end.clone());
    }
}

/// The calls' read end, a [`Source`] for the SDK's [`Reader`].
pub struct CallRead {
    half: ReadHalf<DuplexStream>,
    end: EndSlot,
}

impl AsyncRead for CallRead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.half).poll_read(cx, buf)
    }
}

/// What a stream that ended with `end` fails with, if it did not finish cleanly.
fn failure(end: &End) -> Option<P2pError> {
    let (by, detail) = match end {
        End::Finished => return None,
        End::Released => (By::Local, "released by the module"),
        End::Reset(by, detail) => (*by, detail.as_str()),
    };
    let kind = match by {
        By::ConnDown => "conn_down",
        By::NodeShutdown => "node_stopped",
        _ => "reset",
    };
    Some(P2pError {
        kind: kind.into(),
        by: Some(by.name().into()),
        message: detail.to_owned(),
    })
}

impl Source for CallRead {
    fn error(&self, e: &io::Error) -> P2pError {
        recorded(&self.end)
            .as_ref()
            .and_then(failure)
            .unwrap_or_else(|| P2pError {
                kind: "reset".into(),
                by: None,
                message: e.to_string(),
            })
    }

    fn ended(&self) -> Option<P2pError> {
        recorded(&self.end).as_ref().and_then(failure)
    }
}

struct Writer {
    half: WriteHalf<DuplexStream>,
    /// `close` was called.
    closed: bool,
}

/// The calls' end of the pipe, shared by the methods working on one stream.
pub struct CallSide {
    /// Reads one at a time, in order.
    pub reader: tokio::sync::Mutex<Reader<CallRead>>,
    writer: tokio::sync::Mutex<Writer>,
    end: EndSlot,
}

impl CallSide {
    fn write_failed(&self, e: &io::Error) -> P2pError {
        recorded(&self.end)
            .as_ref()
            .and_then(failure)
            .unwrap_or_else(|| P2pError {
                kind: "reset".into(),
                by: None,
                message: format!("the stream ended: {e}"),
            })
    }

    /// Writes all of `data` within `timeout`, at the remote's pace.
    ///
    /// # Errors
    /// `closed` after `close`, `timeout` (what was written stays written), `reset`,
    /// `conn_down`, `node_stopped`.
    pub async fn write(&self, data: &[u8], timeout: Duration) -> Result<(), P2pError> {
        let mut w = self.writer.lock().await;
        if w.closed {
            return Err(P2pError {
                kind: "closed".into(),
                by: None,
                message: "the stream was closed for writing".into(),
            });
        }
        match tokio::time::timeout(timeout, w.half.write_all(data)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.write_failed(&e)),
            Err(_) => Err(P2pError {
                kind: "timeout".into(),
                by: None,
                message: format!(
                    "the remote did not take {} bytes within {} ms",
                    data.len(),
                    timeout.as_millis()
                ),
            }),
        }
    }

    /// Writes `data` prefixed with its unsigned-varint length.
    ///
    /// # Errors
    /// As [`CallSide::write`].
    pub async fn write_lp(&self, data: &[u8], timeout: Duration) -> Result<(), P2pError> {
        let mut framed = encode_varint(data.len() as u64);
        framed.extend_from_slice(data);
        self.write(&framed, timeout).await
    }

    /// Half-closes: the remote reads to its end; reads here go on. Closing twice is fine.
    ///
    /// # Errors
    /// `reset`, `conn_down`, `node_stopped` when the stream already ended that way.
    pub async fn close(&self) -> Result<(), P2pError> {
        let mut w = self.writer.lock().await;
        if w.closed {
            return Ok(());
        }
        w.closed = true;
        w.half.shutdown().await.map_err(|e| self.write_failed(&e))
    }
}
