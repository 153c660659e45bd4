//! Reading and writing a socket the way the runtime's session reader waits: after traffic,
//! poll the non-blocking socket (yielding the CPU between tries) for a short window, and only
//! then block. The spinning raw baselines use it (Unix sockets, and TCP under the TLS
//! baseline of the remote rows), so a call round trip is compared with a ping-pong that waits
//! the same way, not only with one that sleeps.
//!
//! Owns the waiting loop only. The socket must be in non-blocking mode; it is switched to
//! blocking for the duration of one read when the window runs out, and back.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// How long to poll after the last traffic: the session's default (`busy_poll`).
pub fn window() -> Duration {
    logos_session::Config::default().busy_poll
}

/// A stream socket whose blocking mode can be switched.
pub trait Socket: Read + Write {
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
}

impl Socket for UnixStream {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        UnixStream::set_nonblocking(self, on)
    }
}

impl Socket for TcpStream {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        TcpStream::set_nonblocking(self, on)
    }
}

/// One read of what is there (at least a byte, or 0 at the end), polling for up to `window`
/// first, then blocking.
///
/// # Errors
/// Any socket error but `WouldBlock`; `Interrupted` only from the blocking read.
pub fn read_some<S: Socket>(sock: &mut S, buf: &mut [u8], window: Duration) -> io::Result<usize> {
    let until = Instant::now() + window;
    loop {
        match sock.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < until => {
                std::thread::yield_now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                sock.set_nonblocking(false)?;
                let r = sock.read(buf);
                sock.set_nonblocking(true)?;
                return r;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Fills `buf`, polling for up to `window` after each piece of traffic, then blocking.
///
/// # Errors
/// `UnexpectedEof` when the peer closes first; any other socket error.
pub fn read_exact<S: Socket>(sock: &mut S, buf: &mut [u8], window: Duration) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match read_some(sock, &mut buf[got..], window) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One write of what the socket takes, yielding while its buffer is full.
fn write_some<S: Socket>(sock: &mut S, buf: &[u8]) -> io::Result<usize> {
    loop {
        match sock.write(buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// Writes all of `buf`, yielding while the socket buffer is full.
///
/// # Errors
/// Any socket error but `WouldBlock` and `Interrupted`.
pub fn write_all<S: Socket>(sock: &mut S, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match write_some(sock, buf)? {
            0 => return Err(ErrorKind::WriteZero.into()),
            n => buf = &buf[n..],
        }
    }
    Ok(())
}

/// A socket that waits the runtime's way inside `Read` and `Write`, for code that drives a
/// socket through those traits (rustls's `StreamOwned`): it never sees `WouldBlock`.
pub struct Polling<S: Socket> {
    sock: S,
    window: Duration,
}

impl<S: Socket> Polling<S> {
    /// Switches `sock` to non-blocking mode and polls for [`window`] after traffic.
    ///
    /// # Errors
    /// When the socket's mode cannot be set.
    pub fn new(sock: S) -> io::Result<Polling<S>> {
        sock.set_nonblocking(true)?;
        Ok(Polling {
            sock,
            window: window(),
        })
    }
}

impl<S: Socket> Read for Polling<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        read_some(&mut self.sock, buf, self.window)
    }
}

impl<S: Socket> Write for Polling<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_some(&mut self.sock, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_polling_socket_reads_and_writes_and_sees_the_end() {
        let (a, b) = UnixStream::pair().expect("socket pair");
        // No window: a read that finds nothing blocks at once, so the reader below waits in
        // a blocking read unless the write beat it there; either way it must get the bytes.
        let mut a = Polling {
            sock: a,
            window: Duration::ZERO,
        };
        a.sock.set_nonblocking(true).expect("non-blocking");
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4];
            a.read_exact(&mut buf).map(|()| (a, buf))
        });
        let mut b = b;
        b.write_all(b"ping").expect("write");
        let (mut a, buf) = reader.join().expect("reader").expect("read");
        assert_eq!(&buf, b"ping");
        // The socket is back in non-blocking mode after the blocking read.
        let mut none = [0u8; 1];
        assert_eq!(
            a.sock.read(&mut none).map_err(|e| e.kind()),
            Err(ErrorKind::WouldBlock)
        );
        a.write_all(b"pong").expect("write back");
        let mut back = [0u8; 4];
        b.read_exact(&mut back).expect("read back");
        assert_eq!(&back, b"pong");
        drop(b);
        let mut rest = Vec::new();
        assert_eq!(a.read_to_end(&mut rest).expect("read to the end"), 0);
    }
}
