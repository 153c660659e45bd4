//! [`UnixSocket`]: a Unix stream socket registered with the reactor for readability only.
//!
//! Owns the registration of a Unix connection with tokio's reactor and its three system
//! calls: `read` into a buffer's spare room, `write`, and waiting for either. Never buffers,
//! never interprets bytes, never decides when to wait: `reader.rs` and `writer.rs` do.
//!
//! # Why not `tokio::net::UnixStream`
//!
//! Two costs of tokio's stream, both measured (docs/performance.md, issue 17):
//!
//! - **A wake-up per frame the peer reads.** tokio registers every socket for readability and
//!   writability, edge-triggered. A Unix socket signals "writable" to its epoll waiters each
//!   time the *peer* consumes data (`unix_write_space`, unlike TCP, which only does so after
//!   the sender ran out of room), so every frame we send wakes our process once more when the
//!   peer reads it: an idle module answering a heartbeat woke twice, and the core twice per
//!   module per second. Here the socket is registered for readability only; a second,
//!   writable-only registration of a duplicate descriptor exists only while the writer waits
//!   for room ([`UnixSocket::writable`]) and is dropped when the writer goes idle
//!   ([`UnixSocket::write_idle`]).
//! - **No read without the reactor.** tokio's `try_read` returns `WouldBlock` without a
//!   system call while its cached readiness says "not readable", and that cache is refreshed
//!   only by a reactor turn (an `epoll_wait`). The session's poll loop (`Config::busy_poll`)
//!   therefore paid an `epoll_wait` per turn to see new data. [`UnixSocket::try_read_buf`]
//!   always asks the kernel, so polling costs one `recv` per turn, as in a raw ping-pong.
//!   [`UnixSocket::read_buf_when_ready`] stays correct with that: it reads under the
//!   readiness guard, which clears a readiness event only when that read finds nothing, so
//!   no event is lost between a failed read and the wait. (It used to peek under the guard
//!   and leave the read to the caller: two system calls per wake-up, and a module under its
//!   seccomp filter pays for each.)

use bytes::BytesMut;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A connected Unix stream socket (non-blocking), see the module docs.
pub(crate) struct UnixSocket {
    io: AsyncFd<StdUnixStream>,
    /// The writable-only registration, while the writer waits for room.
    write_wait: Mutex<Option<Arc<AsyncFd<OwnedFd>>>>,
    /// The peer's pid and uid, read at connection time (`SO_PEERCRED`).
    peer: (Option<u32>, Option<u32>),
}

impl UnixSocket {
    /// Takes over `stream` from tokio's reactor. Must be called within a tokio runtime.
    pub(crate) fn new(stream: tokio::net::UnixStream) -> io::Result<UnixSocket> {
        let peer = match stream.peer_cred() {
            Ok(cred) => (
                cred.pid().and_then(|pid| u32::try_from(pid).ok()),
                Some(cred.uid()),
            ),
            Err(e) => {
                tracing::debug!("SO_PEERCRED unavailable: {e}");
                (None, None)
            }
        };
        // `into_std` deregisters it and leaves it non-blocking.
        let std = stream.into_std()?;
        Ok(UnixSocket {
            io: register(std, Interest::READABLE)?,
            write_wait: Mutex::new(None),
            peer,
        })
    }

    /// Reads what is there into `buf`'s spare room; `WouldBlock` when nothing is. Always a
    /// system call: see "No read without the reactor".
    pub(crate) fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        read_into(self.io.get_ref(), buf)
    }

    /// Waits until the socket has something, then reads it into `buf`'s spare room: data
    /// (`Ok(n)`), the end of the stream (`Ok(0)`) or an error; never `WouldBlock`.
    ///
    /// The read is made under tokio's readiness guard, which clears the readiness only when
    /// that read finds nothing, so no event is lost between a failed read and the wait; and
    /// the read that confirms a wake-up is the one that takes the data (one system call per
    /// wake-up, where a peek followed by a read made two). Cancel-safe: the read happens
    /// within one poll, so a future dropped before it completes has taken nothing.
    pub(crate) async fn read_buf_when_ready(&self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            let mut guard = self.io.readable().await?;
            match guard.try_io(|s| read_into(s.get_ref(), buf)) {
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.io.get_ref().write(buf)
    }

    /// [`UnixSocket::try_write`] from several buffers in one `sendmsg`. With `MSG_NOSIGNAL`,
    /// as std's `write` sends: a peer gone is an `EPIPE` error, never a `SIGPIPE`, which would
    /// kill a process that does not ignore it (a C program embedding the C API).
    pub(crate) fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let flags = rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT;
        let mut control = rustix::net::SendAncillaryBuffer::default();
        Ok(rustix::net::sendmsg(
            self.io.get_ref(),
            bufs,
            &mut control,
            flags,
        )?)
    }

    /// Waits until a write may make progress, through a writable-only registration that
    /// lives until [`UnixSocket::write_idle`].
    pub(crate) async fn writable(&self) -> io::Result<()> {
        let registration = {
            let mut slot = self
                .write_wait
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match &*slot {
                Some(r) => Arc::clone(r),
                None => {
                    let dup = self.io.get_ref().as_fd().try_clone_to_owned()?;
                    let r = Arc::new(register(dup, Interest::WRITABLE)?);
                    *slot = Some(Arc::clone(&r));
                    r
                }
            }
        };
        loop {
            let mut guard = registration.writable().await?;
            match guard.try_io(|fd| room(fd.get_ref())) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// The writer has nothing queued: stop being woken when the peer reads.
    pub(crate) fn write_idle(&self) {
        let dropped = self
            .write_wait
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(dropped);
    }

    /// Closes the sending side.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        self.io.get_ref().shutdown(std::net::Shutdown::Write)
    }

    /// The peer's pid and uid (`SO_PEERCRED`), read when the connection was taken over.
    pub(crate) fn peer_creds(&self) -> (Option<u32>, Option<u32>) {
        self.peer
    }
}

/// Registers an owned descriptor with the reactor for `interest`.
fn register<T: std::os::fd::AsRawFd + OwnedDescriptor>(
    owned: T,
    interest: Interest,
) -> io::Result<AsyncFd<T>> {
    // SAFETY: `T` owns its descriptor (`OwnedDescriptor`: std's `UnixStream` and `OwnedFd`),
    // so the fd stays open, keeps referring to the same open file description and is what
    // `as_raw_fd` returns for as long as the `AsyncFd` owns it.
    unsafe { AsyncFd::register_with_interest(owned, interest) }.map_err(io::Error::from)
}

/// Types that own exactly one descriptor for their whole life (what `register` relies on).
trait OwnedDescriptor {}
impl OwnedDescriptor for StdUnixStream {}
impl OwnedDescriptor for OwnedFd {}

/// One `read` into `buf`'s spare room.
fn read_into(s: &StdUnixStream, buf: &mut BytesMut) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let (filled, _) = rustix::io::read(s, spare)?;
    let n = filled.len();
    // SAFETY: `rustix::io::read` returned the first `n` bytes of the spare capacity as
    // initialised (read(2) wrote them), so the length may grow over them.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// `Ok` when a write would not block (room, or an error the write will report).
fn room(fd: &OwnedFd) -> io::Result<()> {
    let mut fds = [rustix::event::PollFd::new(
        fd,
        rustix::event::PollFlags::OUT,
    )];
    let now = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&now)) {
        Ok(_) if fds[0].revents().is_empty() => Err(io::ErrorKind::WouldBlock.into()),
        Ok(_) => Ok(()),
        Err(e) if e == rustix::io::Errno::INTR => Err(io::ErrorKind::WouldBlock.into()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pair() -> (UnixSocket, UnixSocket) {
        let (a, b) = tokio::net::UnixStream::pair().expect("socketpair");
        (
            UnixSocket::new(a).expect("register a"),
            UnixSocket::new(b).expect("register b"),
        )
    }

    #[tokio::test]
    async fn a_read_asks_the_kernel_even_when_no_readiness_event_was_seen() {
        let (a, b) = pair();
        let mut buf = BytesMut::with_capacity(64);
        let e = a.try_read_buf(&mut buf).expect_err("nothing sent yet");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        b.try_write(b"ping").expect("write");
        // No reactor turn between the write and this read: tokio's stream would say
        // WouldBlock from its cached readiness here.
        assert_eq!(a.try_read_buf(&mut buf).expect("read"), 4);
        assert_eq!(&buf[..], b"ping");
    }

    #[tokio::test]
    async fn read_when_ready_wakes_for_data_sent_after_a_failed_read() {
        let (a, b) = pair();
        let mut buf = BytesMut::with_capacity(64);
        assert!(a.try_read_buf(&mut buf).is_err());
        let reader = async { a.read_buf_when_ready(&mut buf).await.expect("read") };
        let writer = async {
            tokio::task::yield_now().await;
            b.try_write(b"late").expect("write");
        };
        let (n, ()) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(reader, writer)
        })
        .await
        .expect("read_buf_when_ready never woke");
        assert_eq!(n, 4);
        assert_eq!(&buf[..], b"late");
    }

    #[tokio::test]
    async fn a_stale_readiness_does_not_end_the_wait_and_later_data_still_wakes_it() {
        let (a, b) = pair();
        let mut buf = BytesMut::with_capacity(64);
        // Readiness recorded by the reactor, then the data taken by a read outside the
        // guard: the readiness is stale now.
        b.try_write(b"one").expect("write");
        assert_eq!(
            a.read_buf_when_ready(&mut buf).await.expect("first read"),
            3
        );
        b.try_write(b"two").expect("write");
        tokio::task::yield_now().await;
        assert_eq!(a.try_read_buf(&mut buf).expect("second read"), 3);
        let early =
            tokio::time::timeout(Duration::from_millis(50), a.read_buf_when_ready(&mut buf)).await;
        assert!(early.is_err(), "returned without data: {early:?}");
        b.try_write(b"three").expect("write");
        let n = tokio::time::timeout(Duration::from_secs(10), a.read_buf_when_ready(&mut buf))
            .await
            .expect("no wake-up for data after the stale readiness was cleared")
            .expect("read");
        assert_eq!(n, 5);
        assert_eq!(&buf[..], b"onetwothree");
    }

    #[tokio::test]
    async fn read_when_ready_reports_the_end_of_the_stream() {
        let (a, b) = pair();
        drop(b);
        let mut buf = BytesMut::with_capacity(8);
        let n = tokio::time::timeout(Duration::from_secs(10), a.read_buf_when_ready(&mut buf))
            .await
            .expect("no wake-up for the peer's close")
            .expect("read");
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn writable_waits_for_room_and_write_idle_drops_the_registration() {
        let (a, b) = pair();
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0usize;
        loop {
            match a.try_write(&chunk) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        let drain = async {
            let mut buf = BytesMut::with_capacity(256 * 1024);
            let mut got = 0;
            while got < 1024 {
                buf.clear();
                got += b.read_buf_when_ready(&mut buf).await.expect("read");
            }
            got
        };
        let (ready, got) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(a.writable(), drain)
        })
        .await
        .expect("writable never fired");
        ready.expect("writable");
        assert!(got > 0 && sent > 0);
        assert!(a.write_wait.lock().expect("lock").is_some());
        a.write_idle();
        assert!(a.write_wait.lock().expect("lock").is_none());
    }
}
