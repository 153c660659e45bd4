//! The pump: one task per stream that copies bytes between a libp2p stream and the owner
//! module's runtime byte stream, both ways, until both directions have finished or one side
//! resets.
//!
//! Back-pressure is the point: the pump reads from libp2p only when everything read before
//! has been written to the owner, and a byte-stream write completes only within the owner's
//! credit. So a slow module holds at most one 64 KiB chunk here plus its 256 KiB window, and
//! Yamux's window makes the remote writer wait. Half-close travels both ways (FIN ⇄
//! `stream_fin`); resets travel both ways with who caused them.
//!
//! rust-yamux reports a received RST as end of file. On end of file the pump probes the
//! write half with an empty write: a reset stream refuses it (and a closed connection also
//! fails a flush), a finished one accepts it — so `remote` resets and `conn_down` are told
//! apart from a clean finish while our write half is open. The probe may put one empty data
//! frame on the wire, which every Yamux reads as nothing.
//!
//! The owner's side is an [`Owner`]: the module's runtime byte stream, or for a module that
//! moves the data with calls, the in-process pipe of `calls.rs`.
//!
//! Never decides anything about ownership or limits: the hub (`hub.rs`) does, and tells the
//! pump through [`Command`].

use futures::{AsyncRead, AsyncWrite};
use libp2p::Stream;
use logos_sdk::{ByteStream, ErrorCode, StreamReset};
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::io::ReadBuf;
use tokio::sync::mpsc;

/// Bytes copied at a time, each way.
const CHUNK: usize = 64 * 1024;

/// Who ended a stream with a reset: the `by` of `streamReset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// The remote peer reset it.
    Remote,
    /// The owner module (or a call of its) reset it.
    Local,
    /// It waited for `accept` longer than the registration allows.
    Timeout,
    /// The node is shutting down.
    NodeShutdown,
    /// The connection to the peer went down.
    ConnDown,
    /// The owner module's connection to `p2p` closed.
    ModuleGone,
}

impl By {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            By::Remote => "remote",
            By::Local => "local",
            By::Timeout => "timeout",
            By::NodeShutdown => "node_shutdown",
            By::ConnDown => "conn_down",
            By::ModuleGone => "module_gone",
        }
    }
}

impl fmt::Display for By {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the hub asks of a running pump.
#[derive(Debug)]
pub enum Command {
    /// Reset both sides.
    Reset(By, String),
    /// Finish our write half to the remote and stop delivering to the owner (whose byte
    /// stream is reset with `local: released`).
    Release,
}

/// How a pump ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Both directions finished cleanly.
    Finished,
    /// Reset, by whom and why.
    Reset(By, String),
    /// Released by the owner.
    Released,
}

/// The owner's side of a pump.
pub trait Owner: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {
    /// Ready with an error once the owner aborted the stream or went away, also after it
    /// finished writing (when the pump no longer reads it).
    fn poll_aborted(&mut self, cx: &mut Context<'_>) -> Poll<io::Error>;

    /// Whether `e`, an error of this owner, is its own reset (else the owner is gone).
    fn is_reset(&self, e: &io::Error) -> bool;

    /// Tells the owner how the stream ended; dropped afterwards.
    fn ended(self, end: &End);
}

impl Owner for ByteStream {
    fn poll_aborted(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        ByteStream::poll_aborted(self, cx)
    }

    fn is_reset(&self, e: &io::Error) -> bool {
        StreamReset::of(e).is_some()
    }

    fn ended(self, end: &End) {
        match end {
            End::Finished => {}
            End::Released => self.reset(ErrorCode::Cancelled, "local: released by the module"),
            // The owner reset its byte stream or its connection is gone: nothing to tell it.
            End::Reset(By::Local | By::ModuleGone, _) => {}
            End::Reset(by, detail) => {
                self.reset(ErrorCode::Cancelled, &format!("{by}: {detail}"));
            }
        }
    }
}

/// Figures of one stream, shared with the hub for `streamInfo`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes from the remote delivered to the owner.
    pub bytes_in: AtomicU64,
    /// Bytes from the owner sent to the remote.
    pub bytes_out: AtomicU64,
    /// The remote finished its half.
    pub remote_closed: AtomicBool,
    /// We finished our half.
    pub local_closed: AtomicBool,
}

/// One direction's copy buffer.
struct Dir {
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    /// The source finished.
    eof: bool,
    /// The finish was passed on to the sink.
    done: bool,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            buf: vec![0u8; CHUNK].into_boxed_slice(),
            pos: 0,
            len: 0,
            eof: false,
            done: false,
        }
    }
}

/// Copies between `net` and `owner` until the stream ends; then resets what needs resetting.
/// `remote_fin` runs once when the remote finishes its half.
pub async fn run<O: Owner>(
    mut net: Stream,
    mut owner: O,
    mut commands: mpsc::Receiver<Command>,
    counters: Arc<Counters>,
    remote_fin: impl Fn(),
) -> End {
    let mut up = Dir::new();
    let mut down = Dir::new();
    let end = std::future::poll_fn(|cx| {
        poll_pump(
            cx,
            &mut net,
            &mut owner,
            &mut commands,
            &mut up,
            &mut down,
            &counters,
            &remote_fin,
        )
    })
    .await;
    owner.ended(&end);
    // Dropping a Yamux stream whose write half is open sends RST to the remote.
    drop(net);
    end
}

#[allow(clippy::too_many_arguments)]
fn poll_pump<O: Owner>(
    cx: &mut Context<'_>,
    net: &mut Stream,
    owner: &mut O,
    commands: &mut mpsc::Receiver<Command>,
    up: &mut Dir,
    down: &mut Dir,
    counters: &Counters,
    remote_fin: &dyn Fn(),
) -> Poll<End> {
    loop {
        let mut progress = false;
        match commands.poll_recv(cx) {
            Poll::Ready(Some(Command::Reset(by, why))) => return Poll::Ready(End::Reset(by, why)),
            Poll::Ready(Some(Command::Release)) => {
                if !down.done {
                    // Best effort: a FIN that cannot be queued now is a reset on drop.
                    let _ = Pin::new(&mut *net).poll_close(cx);
                }
                return Poll::Ready(End::Released);
            }
            Poll::Ready(None) | Poll::Pending => {}
        }

        // Remote → owner.
        if !up.done {
            if up.pos < up.len {
                match tokio::io::AsyncWrite::poll_write(
                    Pin::new(&mut *owner),
                    cx,
                    &up.buf[up.pos..up.len],
                ) {
                    Poll::Ready(Ok(n)) => {
                        up.pos += n;
                        counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(owner_failed(owner, &e)),
                    Poll::Pending => {}
                }
            } else if up.eof {
                match tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut *owner), cx) {
                    Poll::Ready(Ok(())) => {
                        up.done = true;
                        counters.remote_closed.store(true, Ordering::Relaxed);
                        remote_fin();
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(owner_failed(owner, &e)),
                    Poll::Pending => {}
                }
            } else {
                match Pin::new(&mut *net).poll_read(cx, &mut up.buf) {
                    Poll::Ready(Ok(0)) => {
                        if !down.done
                            && let Some(end) = probe(net, cx)
                        {
                            return Poll::Ready(end);
                        }
                        up.eof = true;
                        progress = true;
                    }
                    Poll::Ready(Ok(n)) => {
                        up.pos = 0;
                        up.len = n;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(net_failed(net, cx, &e)),
                    Poll::Pending => {}
                }
            }
        }

        // Owner → remote.
        if !down.done {
            if down.pos < down.len {
                match Pin::new(&mut *net).poll_write(cx, &down.buf[down.pos..down.len]) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        down.pos += n;
                        counters.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                        progress = true;
                    }
                    Poll::Ready(Ok(_)) => {
                        let e = io::Error::from(io::ErrorKind::WriteZero);
                        return Poll::Ready(net_failed(net, cx, &e));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(net_failed(net, cx, &e)),
                    Poll::Pending => {}
                }
            } else if down.eof {
                match Pin::new(&mut *net).poll_close(cx) {
                    Poll::Ready(Ok(())) => {
                        down.done = true;
                        counters.local_closed.store(true, Ordering::Relaxed);
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(net_failed(net, cx, &e)),
                    Poll::Pending => {}
                }
            } else {
                let mut rb = ReadBuf::new(&mut down.buf);
                match tokio::io::AsyncRead::poll_read(Pin::new(&mut *owner), cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            down.eof = true;
                        } else {
                            down.pos = 0;
                            down.len = n;
                        }
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(owner_failed(owner, &e)),
                    Poll::Pending => {}
                }
            }
        }

        // The owner finished its half but may still reset the stream (`closeWithEof` past
        // its deadline) or go away while the remote keeps its half open: notice it, or the
        // stream would wait on the remote forever.
        if down.eof
            && !up.done
            && let Poll::Ready(e) = owner.poll_aborted(cx)
        {
            return Poll::Ready(owner_failed(owner, &e));
        }

        if up.done && down.done {
            return Poll::Ready(End::Finished);
        }
        if !progress {
            return Poll::Pending;
        }
    }
}

/// End of file from libp2p with our write half open: `None` for a clean finish, else the
/// reset or connection loss it really was.
fn probe(net: &mut Stream, cx: &mut Context<'_>) -> Option<End> {
    match Pin::new(&mut *net).poll_write(cx, &[]) {
        Poll::Ready(Err(e)) => Some(net_failed(net, cx, &e)),
        _ => None,
    }
}

/// A write to libp2p failed: the connection is gone when its command channel refuses a
/// flush too, else the remote reset the stream.
fn net_failed(net: &mut Stream, cx: &mut Context<'_>, e: &io::Error) -> End {
    match Pin::new(&mut *net).poll_flush(cx) {
        Poll::Ready(Err(_)) => End::Reset(By::ConnDown, format!("the connection closed ({e})")),
        _ => End::Reset(By::Remote, "the remote peer reset the stream".to_owned()),
    }
}

/// The owner's side failed: it reset it, or its connection to `p2p` closed.
fn owner_failed<O: Owner>(owner: &O, e: &io::Error) -> End {
    if owner.is_reset(e) {
        End::Reset(By::Local, "reset by the module".to_owned())
    } else {
        End::Reset(
            By::ModuleGone,
            format!("the module's connection to p2p closed ({e})"),
        )
    }
}
