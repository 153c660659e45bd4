//! Reading and writing a Unix socket the way the runtime's session reader waits: after
//! traffic, poll the non-blocking socket (yielding the CPU between tries) for a short
//! window, and only then block. The spinning raw baseline uses it, so the call round trip
//! is compared with a ping-pong that waits the same way, not only with one that sleeps.
//!
//! Owns the waiting loop only. The socket must be in non-blocking mode; it is switched to
//! blocking for the duration of one read when the window runs out, and back.

use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// How long to poll after the last traffic: the session's default (`busy_poll`).
pub fn window() -> Duration {
    logos_session::Config::default().busy_poll
}

/// Fills `buf`, polling for up to `window` after each piece of traffic, then blocking.
///
/// # Errors
/// `UnexpectedEof` when the peer closes first; any other socket error.
pub fn read_exact(sock: &mut UnixStream, buf: &mut [u8], window: Duration) -> io::Result<()> {
    let mut got = 0;
    let mut until = Instant::now() + window;
    while got < buf.len() {
        let n = match sock.read(&mut buf[got..]) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < until => {
                std::thread::yield_now();
                continue;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                sock.set_nonblocking(false)?;
                let r = sock.read(&mut buf[got..]);
                sock.set_nonblocking(true)?;
                r?
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        got += n;
        until = Instant::now() + window;
    }
    Ok(())
}

/// Writes all of `buf`, yielding while the socket buffer is full.
///
/// # Errors
/// Any socket error but `WouldBlock` and `Interrupted`.
pub fn write_all(sock: &mut UnixStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match sock.write(buf) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
