//! [`Transport`]: what a connection runs over — a Unix stream socket, or a TCP connection
//! carrying TLS (a remote module's control link, docs/remote-modules.md).
//!
//! Owns the four operations the rest of the crate needs from a socket: a non-blocking read
//! into a buffer, a non-blocking write, and waiting until either may make progress. For TLS
//! these drive `rustls`'s `Connection` over the non-blocking TCP socket directly, so the
//! session's write-through path (a frame written by the task that sent it, under the outbox
//! lock) and its reader work on TLS exactly as on a Unix socket, without a copy through a
//! socketpair. Never interprets the bytes and never decides anything; the TLS handshake
//! happens before (in `logos-remote`), this only carries the established connection.
//!
//! # TLS writes
//!
//! A write encrypts into `rustls`'s buffer and sends what the socket takes; when the socket
//! pushes back, the rest of the records stays buffered and is sent first by the next write,
//! or by a small flusher task waiting for writability, so a write reported done always
//! reaches the peer. A write is refused (`WouldBlock`) while records are still waiting, so
//! at most one write's worth (≤ 64 KiB of plaintext per call) is ever buffered here.

use crate::unix_socket::UnixSocket;
use bytes::BytesMut;
use std::io::{self, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Notify;

/// Most plaintext taken per TLS write (one record is at most 16 KiB; rustls splits).
const TLS_WRITE_MAX: usize = 64 * 1024;
/// TLS bytes read from the socket per read: `rustls` alone would read 4 KiB at a time.
const TLS_READ_CHUNK: usize = 64 * 1024;

/// The connection a session runs over. Build one with [`Transport::unix`] or
/// [`Transport::tls`].
pub struct Transport(pub(crate) Socket);

impl Transport {
    /// A Unix stream socket (a module's inherited control connection, a peer connection).
    /// Must be called within a Tokio runtime.
    ///
    /// # Errors
    /// The OS error of moving the socket to this crate's registration with the reactor.
    pub fn unix(stream: UnixStream) -> io::Result<Transport> {
        Ok(Transport(Socket::unix(stream)?))
    }

    /// An established TLS connection (handshake done) over `tcp`. Plaintext `rustls` already
    /// holds is read first. Must be called within a Tokio runtime (a flusher task is spawned).
    pub fn tls(tcp: TcpStream, conn: impl Into<rustls::Connection>) -> Transport {
        Transport(Socket::Tls(TlsSocket::new(tcp, conn.into())))
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Socket::Unix(_) => f.write_str("Transport::Unix"),
            Socket::Tls(_) => f.write_str("Transport::Tls"),
        }
    }
}

/// Where a read lands: a buffer lent for the one read only. A plain `&mut BytesMut`, or the
/// read state the reader task and a caller's thread share behind a lock (`reader.rs`),
/// which a waiting read must not hold while it waits.
pub(crate) trait ReadTarget {
    fn lend<R>(&mut self, read: impl FnOnce(&mut BytesMut) -> R) -> R;
}

impl ReadTarget for &mut BytesMut {
    fn lend<R>(&mut self, read: impl FnOnce(&mut BytesMut) -> R) -> R {
        read(self)
    }
}

pub(crate) enum Socket {
    Unix(UnixSocket),
    Tls(Arc<TlsSocket>),
}

impl Socket {
    /// A Unix stream socket, taken over from tokio's registration (see `unix_socket.rs`).
    pub(crate) fn unix(stream: UnixStream) -> io::Result<Socket> {
        UnixSocket::new(stream).map(Socket::Unix)
    }

    /// The writer has nothing queued (see [`UnixSocket::write_idle`]).
    pub(crate) fn write_idle(&self) {
        if let Socket::Unix(s) = self {
            s.write_idle();
        }
    }

    /// The reader's polling found data: no readiness events until it waits again (see
    /// [`UnixSocket::polling`]). A TLS link's TCP socket stays registered with tokio, which
    /// owns it; its reads ask the kernel all the same ([`TlsSocket::try_read_buf`]).
    pub(crate) fn polling(&self) {
        if let Socket::Unix(s) = self {
            s.polling();
        }
    }

    /// Reads what is there into `buf`'s spare capacity; `WouldBlock` when nothing is.
    pub(crate) fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => s.try_read_buf(buf),
            Socket::Tls(t) => t.try_read_buf(buf),
        }
    }

    /// Waits until there is something to read and reads it into `buf`'s spare capacity:
    /// data, `Ok(0)` at the end of the stream, or an error; never `WouldBlock`. Cancel-safe.
    /// `buf` is lent only for the read itself, never held while waiting.
    pub(crate) async fn read_buf_when_ready(&self, mut buf: impl ReadTarget) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => s.read_buf_when_ready(buf).await,
            // TLS may hold decrypted bytes the TCP socket no longer signals: read first.
            Socket::Tls(t) => match buf.lend(|b| t.try_read_buf(b)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Then wait, reading under the readiness guard: tokio clears a readiness
                    // event only when that read finds nothing (the kernel said EAGAIN), so an
                    // event is never lost between a read and the wait.
                    t.tcp
                        .async_io(Interest::READABLE, || buf.lend(|b| t.try_read_buf(b)))
                        .await
                }
                result => result,
            },
        }
    }

    /// Can this connection carry shared frames (descriptors beside the bytes)? Only a Unix
    /// socket can.
    pub(crate) fn carries_fds(&self) -> bool {
        matches!(self, Socket::Unix(_))
    }

    /// The next descriptor received with the bytes (see [`UnixSocket::take_fd`]).
    pub(crate) fn take_fd(&self) -> Option<OwnedFd> {
        match self {
            Socket::Unix(s) => s.take_fd(),
            Socket::Tls(_) => None,
        }
    }

    /// No descriptor is to come any more (see [`UnixSocket::no_more_fds`]).
    pub(crate) fn no_more_fds(&self) {
        if let Socket::Unix(s) = self {
            s.no_more_fds();
        }
    }

    /// [`Socket::try_write_vectored`] carrying descriptors with the first byte written (see
    /// [`UnixSocket::try_write_with_fds`]); refused over TLS, which cannot carry them.
    pub(crate) fn try_write_with_fds(
        &self,
        bufs: &[io::IoSlice<'_>],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => s.try_write_with_fds(bufs, fds),
            Socket::Tls(_) if fds.is_empty() => self.try_write_vectored(bufs),
            Socket::Tls(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a TLS connection cannot carry descriptors",
            )),
        }
    }

    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => s.try_write(buf),
            Socket::Tls(t) => t.try_write(buf),
        }
    }

    /// Writes what the socket takes now from `bufs` in order: one `writev` on a Unix socket;
    /// over TLS the first non-empty buffer (records are built from copies anyway).
    pub(crate) fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => s.try_write_vectored(bufs),
            Socket::Tls(t) => match bufs.iter().find(|b| !b.is_empty()) {
                Some(b) => t.try_write(b),
                None => Ok(0),
            },
        }
    }

    /// Waits until a write may make progress.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        match self {
            Socket::Unix(s) => s.writable().await,
            Socket::Tls(t) => t.tcp.writable().await,
        }
    }

    /// Writes all of `buf`, waiting for writability.
    pub(crate) async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.try_write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.write_idle();
        Ok(())
    }

    /// Closes the sending side: `shutdown(SHUT_WR)`, or a TLS close_notify.
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Socket::Unix(s) => s.shutdown_write(),
            Socket::Tls(t) => {
                t.close_notify();
                t.flush().await
            }
        }
    }

    /// The peer's pid and uid (`SO_PEERCRED`); none over TCP.
    pub(crate) fn peer_creds(&self) -> (Option<u32>, Option<u32>) {
        match self {
            Socket::Unix(s) => s.peer_creds(),
            Socket::Tls(_) => (None, None),
        }
    }
}

/// A TLS connection over a non-blocking TCP socket.
pub(crate) struct TlsSocket {
    tcp: TcpStream,
    conn: Mutex<rustls::Connection>,
    /// TLS bytes read from the socket and not yet taken by `rustls`, so that one read syscall
    /// takes up to [`TLS_READ_CHUNK`] (only the reader touches it).
    raw: Mutex<Raw>,
    /// Wakes the flusher: records are waiting for the socket.
    pending: Arc<Notify>,
}

/// Read-ahead of TLS bytes: `buf[start..end]` is unread.
struct Raw {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// The non-blocking socket as a `std::io::Write`, for `rustls`'s `write_tls`.
struct TcpIo<'a>(&'a TcpStream);

impl Write for TcpIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn lock(m: &Mutex<rustls::Connection>) -> std::sync::MutexGuard<'_, rustls::Connection> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TlsSocket {
    fn new(tcp: TcpStream, conn: rustls::Connection) -> Arc<TlsSocket> {
        let pending = Arc::new(Notify::new());
        let socket = Arc::new(TlsSocket {
            tcp,
            conn: Mutex::new(conn),
            raw: Mutex::new(Raw {
                buf: vec![0u8; TLS_READ_CHUNK].into_boxed_slice(),
                start: 0,
                end: 0,
            }),
            pending: Arc::clone(&pending),
        });
        tokio::spawn(flusher(Arc::downgrade(&socket), pending));
        socket
    }

    /// Sends buffered records until none is left (`Ok`) or the socket pushes back
    /// (`WouldBlock`).
    fn flush_locked(&self, conn: &mut rustls::Connection) -> io::Result<()> {
        while conn.wants_write() {
            conn.write_tls(&mut TcpIo(&self.tcp))?;
        }
        Ok(())
    }

    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        use std::io::BufRead as _;
        let mut raw = self
            .raw
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut conn = lock(&self.conn);
        loop {
            let mut reader = conn.reader();
            match reader.fill_buf() {
                Ok(chunk) => {
                    // Empty: the peer's close_notify, after everything it sent.
                    let n = chunk.len();
                    buf.extend_from_slice(chunk);
                    reader.consume(n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // No plaintext: take more records, from the read-ahead or the socket (WouldBlock
            // when neither has any).
            if raw.start == raw.end {
                let Raw { buf: chunk, .. } = &mut *raw;
                // Asks the kernel every time: tokio's `try_read` answers `WouldBlock` without
                // a system call while its cached readiness says "not readable", which only
                // a reactor turn refreshes, so a poll loop would pay an `epoll_wait` per
                // turn to see new data (as Unix sockets did, `unix_socket.rs`). The socket is
                // non-blocking (tokio made it so).
                let n = loop {
                    match rustix::io::read(&self.tcp, &mut chunk[..]) {
                        Err(rustix::io::Errno::INTR) => {}
                        read => break read.map_err(io::Error::from)?,
                    }
                };
                raw.start = 0;
                raw.end = n;
                if n == 0 {
                    // End of the TCP stream: rustls tells a clean close from a truncation.
                    conn.read_tls(&mut io::empty())?;
                }
            }
            if raw.start < raw.end {
                let Raw {
                    buf: chunk,
                    start,
                    end,
                } = &mut *raw;
                let taken = conn.read_tls(&mut &chunk[*start..*end])?;
                *start += taken;
            }
            if let Err(e) = conn.process_new_packets() {
                // Send the alert rustls queued, best effort.
                let _ = self.flush_locked(&mut conn);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if conn.wants_write() && self.flush_locked(&mut conn).is_err() {
                self.pending.notify_one();
            }
        }
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut conn = lock(&self.conn);
        // Records of an earlier write go first; while they wait, nothing more is taken.
        self.flush_locked(&mut conn)?;
        let take = buf.len().min(TLS_WRITE_MAX);
        let n = conn.writer().write(&buf[..take])?;
        if n == 0 && take > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.flush_locked(&mut conn) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.pending.notify_one(),
            Err(e) => return Err(e),
        }
        Ok(n)
    }

    fn close_notify(&self) {
        lock(&self.conn).send_close_notify();
    }

    /// Sends every buffered record, waiting for writability.
    async fn flush(&self) -> io::Result<()> {
        loop {
            let flushed = {
                let mut conn = lock(&self.conn);
                self.flush_locked(&mut conn)
            };
            match flushed {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.tcp.writable().await?,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for TlsSocket {
    fn drop(&mut self) {
        // A close_notify, best effort and without waiting: the peer learns the end was
        // deliberate. Then the flusher (holding only a weak reference) finds us gone.
        let mut conn = lock(&self.conn);
        conn.send_close_notify();
        let _ = self.flush_locked(&mut conn);
        drop(conn);
        self.pending.notify_one();
    }
}

/// Sends records a write left behind when the socket pushed back, once it takes them.
async fn flusher(socket: Weak<TlsSocket>, pending: Arc<Notify>) {
    loop {
        pending.notified().await;
        let Some(socket) = socket.upgrade() else {
            return;
        };
        if let Err(e) = socket.flush().await {
            tracing::debug!("TLS flush failed: {e}");
            return;
        }
    }
}
