//! The far end of each raw-socket baseline, run as a separate process
//! (`logos-bench --child KIND SOCKET`).
//!
//! Owns the child side only: connect to the parent's socket, then answer in the simplest,
//! fastest way blocking std sockets allow. Never touches the logos runtime, so the baselines
//! measure nothing but the kernel and two processes.

use anyhow::{Context as _, Result};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// What a baseline child does with its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Reads 64-byte messages one at a time and writes each straight back.
    Pong,
    /// The same, waiting the way the runtime's session reader does (`poll_io`): polls the
    /// non-blocking socket for a short window after traffic, then blocks.
    PongPoll,
    /// Echoes whatever arrives, as it arrives (64 KiB reads): pipelined messages.
    Echo,
    /// Reads to the end, then writes the byte count (u64 LE).
    Sink,
}

impl Kind {
    /// The `--child` argument naming this kind.
    pub fn arg(self) -> &'static str {
        match self {
            Kind::Pong => "pong",
            Kind::PongPoll => "pong-poll",
            Kind::Echo => "echo",
            Kind::Sink => "sink",
        }
    }
}

/// Connects to `socket` and serves `kind` until the parent closes the connection.
///
/// # Errors
/// When the socket cannot be reached or breaks mid-message.
pub fn run(kind: Kind, socket: &Path, size: usize) -> Result<()> {
    let mut sock = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    match kind {
        Kind::Pong => {
            let mut buf = vec![0u8; size.max(1)];
            loop {
                match sock.read_exact(&mut buf) {
                    Ok(()) => sock.write_all(&buf)?,
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Kind::PongPoll => {
            let mut buf = vec![0u8; size.max(1)];
            let window = crate::poll_io::window();
            sock.set_nonblocking(true)?;
            loop {
                match crate::poll_io::read_exact(&mut sock, &mut buf, window) {
                    Ok(()) => crate::poll_io::write_all(&mut sock, &buf)?,
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Kind::Echo => {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = sock.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                sock.write_all(&buf[..n])?;
            }
        }
        Kind::Sink => {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total: u64 = 0;
            loop {
                let n = sock.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            sock.write_all(&total.to_le_bytes())?;
            Ok(())
        }
    }
}
