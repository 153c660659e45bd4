//! [`UnixSocket`]: a Unix stream socket registered with the reactor only while someone waits
//! on it, and then for that one direction.
//!
//! Owns the registrations of a Unix connection with tokio's reactor and its three system
//! calls: a read into a buffer's spare room (`recvmsg`, keeping the descriptors of shared
//! frames that come with the bytes, in order, see `shm.rs`; a plain `read` once none can
//! come, [`UnixSocket::no_more_fds`]), a write (optionally carrying
//! descriptors), and waiting for either. Never buffers bytes, never interprets them, never
//! decides when to wait: `reader.rs` and `writer.rs` do.
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
//!   module per second. Here the socket is registered for readability only, and only while
//!   the reader may wait (below); a writable-only registration of a duplicate descriptor
//!   (one epoll set takes a descriptor once) exists only while the writer waits for room
//!   ([`UnixSocket::writable`]) and is dropped when the writer goes idle
//!   ([`UnixSocket::write_idle`]).
//! - **No read without the reactor.** tokio's `try_read` returns `WouldBlock` without a
//!   system call while its cached readiness says "not readable", and that cache is refreshed
//!   only by a reactor turn (an `epoll_wait`). The session's poll loop (`Config::busy_poll`)
//!   therefore paid an `epoll_wait` per turn to see new data. [`UnixSocket::try_read_buf`]
//!   always asks the kernel, so polling costs one `recv` per turn, as in a raw ping-pong.
//!   [`UnixSocket::read_buf_when_ready`] stays correct with that: it reads under the
//!   readiness guard, which clears a readiness event only when that read finds nothing or
//!   drains the socket (a short read), so no event is lost between a read and the wait. (It used to peek under the guard
//!   and leave the read to the caller: two system calls per wake-up, and a module under its
//!   seccomp filter pays for each.)
//!
//! # No readiness events while polling
//!
//! A socket in an epoll set costs every `send` of the peer a call into epoll (queueing the
//! event, waking waiters), and the reactor's next `epoll_wait` then hands over that event,
//! which nobody waits for while the reader polls (`Config::busy_poll`). In a call loop that is
//! every message. So the readability registration lives only while the reader may sleep:
//! [`UnixSocket::read_buf_when_ready`] makes it, [`UnixSocket::polling`] drops it once
//! polling has found data (the sign of a call loop). It is the socket's own descriptor that
//! is registered, so an idle connection holds one descriptor.
//! Bytes that arrive while there is none are read by the polling reader; a registration made
//! when the socket already holds data reports it at once, so the wait that follows misses
//! nothing. A connection that sleeps between single calls (an idle module's heartbeat) never
//! drops it.

use crate::socket::ReadTarget;
use bytes::BytesMut;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Most descriptors one write carries, and so the most one read may bring (the writer never
/// attaches more, `writer.rs`); a read whose descriptors did not fit is a protocol breach.
const MAX_FDS_PER_WRITE: usize = 16;
/// Most descriptors received and not yet claimed by their shared frames. A peer that sends
/// more ahead of their frames is cut off.
const MAX_QUEUED_FDS: usize = 4 * MAX_FDS_PER_WRITE;
/// `cmsghdr` (16 bytes) plus `MAX_FDS_PER_WRITE` descriptors, in 8-byte words for alignment.
const CONTROL_WORDS: usize = 2 + MAX_FDS_PER_WRITE / 2;

/// A connected Unix stream socket (non-blocking), see the module docs.
pub(crate) struct UnixSocket {
    /// The readable-only registration of `stream`'s own descriptor, while the reader may
    /// wait (see "No readiness events while polling"). Declared before `stream`, so it is
    /// dropped (deregistered) before the descriptor closes.
    read_wait: Mutex<Option<Arc<AsyncFd<Lent>>>>,
    stream: StdUnixStream,
    /// The writable-only registration, while the writer waits for room.
    write_wait: Mutex<Option<Arc<AsyncFd<OwnedFd>>>>,
    /// The peer's pid and uid, read at connection time (`SO_PEERCRED`).
    peer: (Option<u32>, Option<u32>),
    /// Descriptors received with the bytes (shared frames' memory files), oldest first.
    fds: Mutex<VecDeque<OwnedFd>>,
    /// Whether the peer may still send a descriptor; see [`UnixSocket::no_more_fds`].
    fds_expected: AtomicBool,
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
        let stream = stream.into_std()?;
        Ok(UnixSocket {
            read_wait: Mutex::new(None),
            stream,
            write_wait: Mutex::new(None),
            peer,
            fds: Mutex::new(VecDeque::new()),
            fds_expected: AtomicBool::new(true),
        })
    }

    /// Reads what is there into `buf`'s spare room; `WouldBlock` when nothing is. Always a
    /// system call: see "No read without the reactor".
    pub(crate) fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        self.read_into(buf).map(|r| r.bytes)
    }

    /// No descriptor is to come any more: the peer's ring is open (its one descriptor came),
    /// or this side announced no shared frames. Reads from now on are plain `read`s, which
    /// cost the kernel less than a `recvmsg` (no header or control buffer to copy in and
    /// out: 45–65 ns a read here, paid by every turn of a polling reader). A descriptor a
    /// peer sends anyway is closed by the kernel when its bytes are read (a `read` has no
    /// room for it), so it cannot pile up either.
    pub(crate) fn no_more_fds(&self) {
        self.fds_expected.store(false, Ordering::Relaxed);
    }

    /// One read into `buf`'s spare room: [`read_with_fds`] while descriptors may come, a
    /// plain `read` after [`UnixSocket::no_more_fds`].
    fn read_into(&self, buf: &mut BytesMut) -> io::Result<Received> {
        if self.fds_expected.load(Ordering::Relaxed) {
            return read_with_fds(&self.stream, buf, &self.fds);
        }
        let spare = buf.spare_capacity_mut();
        // SAFETY: the pointer and length are those of `buf`'s spare capacity, writable and
        // live for the call; the descriptor is owned by `stream`.
        let n = unsafe {
            libc::read(
                self.stream.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        // SAFETY: read wrote the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        Ok(Received { bytes: n, fds: 0 })
    }

    /// The oldest descriptor received and not yet taken: the memory file of the next shared
    /// frame (descriptors come with, or ahead of, the bytes of their frame).
    pub(crate) fn take_fd(&self) -> Option<OwnedFd> {
        self.fds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }

    /// Waits until the socket has something, then reads it into `buf`'s spare room: data
    /// (`Ok(n)`), the end of the stream (`Ok(0)`) or an error; never `WouldBlock`.
    ///
    /// The read is made under tokio's readiness guard, so the read that confirms a wake-up is
    /// the one that takes the data (one system call per wake-up, where a peek followed by a
    /// read made two). The readiness is cleared when that read finds nothing, or when it
    /// *drained* the socket: a read that filled less than the room it was given, carrying no
    /// descriptors. A Unix stream read stops early only at the end of the queued data or after
    /// a message that carries descriptors (no `SO_PASSCRED` here, so never at a credentials
    /// boundary), and the registration is edge-triggered, so data that arrives after the read
    /// raises a new event; tokio clears only the event the guard saw, never a newer one (its
    /// own `PollEvented` reads make the same use of a short read). An idle module's
    /// heartbeat so costs one read, not a read and a second that finds nothing.
    /// Cancel-safe: the read happens within one poll, so a future dropped before it
    /// completes has taken nothing. `buf` is lent for the read alone ([`ReadTarget`]), so
    /// the reader task can wait here while a caller's thread reads into the same buffer.
    pub(crate) async fn read_buf_when_ready(&self, mut buf: impl ReadTarget) -> io::Result<usize> {
        let registration = self.read_registration()?;
        loop {
            let mut guard = registration.readable().await?;
            let read = guard.try_io(|_| {
                buf.lend(|buf| {
                    let room = buf.spare_capacity_mut().len();
                    self.read_into(buf)
                        .map(|read| (read.bytes, read.drained(room)))
                })
            });
            match read {
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Ok((bytes, drained))) => {
                    if drained {
                        guard.clear_ready();
                    }
                    return Ok(bytes);
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        (&self.stream).write(buf)
    }

    /// [`UnixSocket::try_write`] from several buffers in one `sendmsg`. With `MSG_NOSIGNAL`,
    /// as std's `write` sends: a peer gone is an `EPIPE` error, never a `SIGPIPE`, which would
    /// kill a process that does not ignore it (a C program embedding the C API).
    pub(crate) fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.try_write_with_fds(bufs, &[])
    }

    /// [`UnixSocket::try_write_vectored`], carrying `fds` (`SCM_RIGHTS`, at most
    /// [`MAX_FDS_PER_WRITE`]) with the first byte written: when it writes anything, the peer
    /// receives them with that byte, and they must not be sent again.
    pub(crate) fn try_write_with_fds(
        &self,
        bufs: &[io::IoSlice<'_>],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<usize> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        if fds.len() > MAX_FDS_PER_WRITE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} descriptors in one write (at most {MAX_FDS_PER_WRITE})",
                    fds.len()
                ),
            ));
        }
        let flags = SendFlags::NOSIGNAL | SendFlags::DONTWAIT;
        let mut space = [std::mem::MaybeUninit::<u8>::uninit();
            rustix::cmsg_space!(ScmRights(MAX_FDS_PER_WRITE))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(io::Error::other(
                "descriptors do not fit the control buffer",
            ));
        }
        Ok(rustix::net::sendmsg(
            &self.stream,
            bufs,
            &mut control,
            flags,
        )?)
    }

    /// Waits until a write may make progress, through a writable-only registration that
    /// lives until [`UnixSocket::write_idle`].
    pub(crate) async fn writable(&self) -> io::Result<()> {
        let registration = registration(&self.write_wait, || {
            // A duplicate: one epoll set takes a descriptor once, and the reader's
            // registration may hold the socket's own.
            let dup = self.stream.as_fd().try_clone_to_owned()?;
            register(dup, Interest::WRITABLE)
        })?;
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
        drop(take(&self.write_wait));
    }

    /// The reader polls and has found data by polling: stop readiness events until it waits
    /// again (see "No readiness events while polling").
    pub(crate) fn polling(&self) {
        drop(take(&self.read_wait));
    }

    /// The reader's registration, made if there is none: of the socket's own descriptor, so
    /// an idle connection holds one descriptor, not two.
    fn read_registration(&self) -> io::Result<Arc<AsyncFd<Lent>>> {
        registration(&self.read_wait, || {
            let lent = Lent(self.stream.as_raw_fd());
            // SAFETY: `lent` names `stream`'s descriptor, which stays open and refers to the
            // same socket for as long as this `UnixSocket` lives. The registration lives in
            // `read_wait` (dropped before `stream`, by field order) and in the `Arc` clones
            // `read_buf_when_ready` holds while it borrows `self`, so it never outlives the
            // descriptor.
            unsafe { AsyncFd::register_with_interest(lent, Interest::READABLE) }
                .map_err(io::Error::from)
        })
    }

    /// Closes the sending side.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        self.stream.shutdown(std::net::Shutdown::Write)
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
impl OwnedDescriptor for OwnedFd {}

/// A descriptor lent to a registration by its owner, which outlives the registration (see
/// `UnixSocket::read_registration`); dropping it closes nothing.
struct Lent(RawFd);

impl AsRawFd for Lent {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// The registration in `slot`, made by `make` if there is none.
fn registration<T: AsRawFd>(
    slot: &Mutex<Option<Arc<AsyncFd<T>>>>,
    make: impl FnOnce() -> io::Result<AsyncFd<T>>,
) -> io::Result<Arc<AsyncFd<T>>> {
    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(r) = &*slot {
        return Ok(Arc::clone(r));
    }
    let r = Arc::new(make()?);
    *slot = Some(Arc::clone(&r));
    Ok(r)
}

/// Empties a registration slot; the registration ends when its last user lets go.
fn take<T: AsRawFd>(slot: &Mutex<Option<Arc<AsyncFd<T>>>>) -> Option<Arc<AsyncFd<T>>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// What one read took.
struct Received {
    bytes: usize,
    fds: usize,
}

impl Received {
    /// The socket had nothing more when this read returned: some bytes, fewer than `room`,
    /// and no descriptors (a read stops after a message carrying descriptors even if more
    /// data waits behind it).
    fn drained(&self, room: usize) -> bool {
        self.bytes > 0 && self.bytes < room && self.fds == 0
    }
}

/// One `recvmsg` into `buf`'s spare room; descriptors that came with the bytes go to the back
/// of `fds`. An error (`InvalidData`) when they did not fit the control buffer or overflow
/// [`MAX_QUEUED_FDS`]: either is a peer breaking the protocol.
///
/// `libc::recvmsg`, not rustix's: the data goes straight into the uninitialised spare room,
/// as a `read` would, where rustix's `recvmsg` takes initialised buffers only.
fn read_with_fds(
    s: &StdUnixStream,
    buf: &mut BytesMut,
    fds: &Mutex<VecDeque<OwnedFd>>,
) -> io::Result<Received> {
    let spare = buf.spare_capacity_mut();
    let mut iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    let mut control = [0u64; CONTROL_WORDS];
    // SAFETY: `msghdr` is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at one iovec over `buf`'s spare capacity (writable, `iov_len`
    // bytes) and at `control` (writable, `msg_controllen` bytes), all live for the call; the
    // socket is owned by the caller's `UnixStream`.
    let n = unsafe {
        libc::recvmsg(
            s.as_raw_fd(),
            &mut msg,
            libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: recvmsg wrote the first `n` bytes of the spare capacity, so the length may grow
    // over them.
    unsafe { buf.set_len(buf.len() + n) };
    let mut got = Vec::new();
    // SAFETY: `msg` is the header recvmsg filled; the CMSG_* macros walk its control buffer
    // (still live) within `msg_controllen`.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and points at a header inside `control` (CMSG_FIRSTHDR /
        // CMSG_NXTHDR check the bounds).
        let (level, kind, len) =
            unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len) };
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) is a constant computation.
            let head = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = len.saturating_sub(head) / std::mem::size_of::<libc::c_int>();
            // SAFETY: an SCM_RIGHTS message's data holds `count` descriptors, inside `control`.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
            for i in 0..count {
                // SAFETY: within the message's data (above); unaligned read as the data of a
                // control message is not guaranteed to be aligned for `c_int`.
                let raw = unsafe { data.add(i).read_unaligned() };
                // SAFETY: the kernel installed `raw` in this process for us (SCM_RIGHTS) and
                // nothing else refers to it: this is its only owner.
                got.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the peer sent more than {MAX_FDS_PER_WRITE} descriptors in one write"),
        ));
    }
    let received = Received {
        bytes: n,
        fds: got.len(),
    };
    if !got.is_empty() {
        let mut queue = fds.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.len() + got.len() > MAX_QUEUED_FDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the peer sent more than {MAX_QUEUED_FDS} descriptors ahead of their frames"
                ),
            ));
        }
        queue.extend(got);
    }
    Ok(received)
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
    async fn data_that_came_while_polling_without_a_registration_wakes_the_next_wait() {
        let (a, b) = pair();
        let mut buf = BytesMut::with_capacity(64);
        b.try_write(b"one").expect("write");
        assert_eq!(a.read_buf_when_ready(&mut buf).await.expect("read"), 3);
        let registered = a.read_registration().expect("registration");
        assert_eq!(
            registered.get_ref().as_raw_fd(),
            a.stream.as_raw_fd(),
            "the reader's registration must not cost a second descriptor"
        );
        drop(registered);
        a.polling();
        assert!(
            take(&a.read_wait).is_none(),
            "polling keeps the registration"
        );
        // Sent while nothing is registered: no event is raised for it anywhere.
        b.try_write(b"two").expect("write");
        tokio::task::yield_now().await;
        let n = tokio::time::timeout(Duration::from_secs(10), a.read_buf_when_ready(&mut buf))
            .await
            .expect("the wait after polling missed data already there")
            .expect("read");
        assert_eq!(n, 3);
        assert_eq!(&buf[..], b"onetwo");
        // And the registration the wait made serves the next wait as before.
        let later = async {
            tokio::task::yield_now().await;
            b.try_write(b"three").expect("write");
        };
        let (n, ()) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(
                async { a.read_buf_when_ready(&mut buf).await.expect("read") },
                later
            )
        })
        .await
        .expect("no wake-up after the registration was made again");
        assert_eq!(n, 5);
    }

    #[tokio::test]
    async fn a_draining_read_clears_the_readiness_and_later_data_still_wakes_it() {
        let (a, b) = pair();
        let mut buf = BytesMut::with_capacity(64);
        b.try_write(b"one").expect("write");
        assert_eq!(a.read_buf_when_ready(&mut buf).await.expect("read"), 3);
        // The short read cleared the readiness: waiting again makes no read that finds
        // nothing...
        let registration = a.read_registration().expect("registration");
        let still_ready = tokio::select! {
            biased;
            _ = registration.readable() => true,
            () = std::future::ready(()) => false,
        };
        assert!(!still_ready, "a draining read left the readiness set");
        let early =
            tokio::time::timeout(Duration::from_millis(50), a.read_buf_when_ready(&mut buf)).await;
        assert!(early.is_err(), "returned without data: {early:?}");
        // ...and data written after it raises a new event.
        b.try_write(b"two").expect("write");
        let n = tokio::time::timeout(Duration::from_secs(10), a.read_buf_when_ready(&mut buf))
            .await
            .expect("no wake-up for data after a draining read")
            .expect("read");
        assert_eq!(n, 3);
        assert_eq!(&buf[..], b"onetwo");
    }

    #[tokio::test]
    async fn a_read_that_fills_its_room_keeps_the_readiness_for_the_rest() {
        let (a, b) = pair();
        b.try_write(&[1u8; 96]).expect("write");
        let mut first = BytesMut::with_capacity(32);
        let room = first.spare_capacity_mut().len();
        assert_eq!(a.read_buf_when_ready(&mut first).await.expect("read"), room);
        // No new data will come: if the full read had cleared the readiness, this would wait
        // for an event that never arrives.
        let mut rest = BytesMut::with_capacity(256);
        let n = tokio::time::timeout(Duration::from_secs(10), a.read_buf_when_ready(&mut rest))
            .await
            .expect("the rest of the data was stranded")
            .expect("read");
        assert_eq!(room + n, 96);
    }

    #[tokio::test]
    async fn a_short_read_that_carries_descriptors_keeps_the_readiness() {
        let (a, b) = pair();
        let file = std::fs::File::open("/dev/null").expect("open");
        // The kernel ends a read after the bytes that came with descriptors, so this read is
        // short although "two" waits behind it.
        b.try_write_with_fds(&[io::IoSlice::new(b"one")], &[file.as_fd()])
            .expect("write with a descriptor");
        b.try_write(b"two").expect("write");
        let mut buf = BytesMut::with_capacity(64);
        assert_eq!(a.read_buf_when_ready(&mut buf).await.expect("read"), 3);
        assert!(a.take_fd().is_some(), "the descriptor was not queued");
        let n = tokio::time::timeout(Duration::from_secs(10), a.read_buf_when_ready(&mut buf))
            .await
            .expect("the bytes behind the descriptors were stranded")
            .expect("read");
        assert_eq!(n, 3);
        assert_eq!(&buf[..], b"onetwo");
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
