//! The parent side of the raw baselines: the same work as a runtime row, done with blocking
//! std Unix sockets between this process and a child (`child.rs`), or with a bare process
//! spawn.
//!
//! Owns spawning and reaping those children and timing the exchanges. Blocking: call these
//! from `spawn_blocking`, never on the runtime's thread. Never touches the logos runtime.

use crate::child::Kind;
use anyhow::{Context as _, Result, bail};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a child has to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A baseline child process with its connection; killed and reaped on drop.
struct Child {
    process: std::process::Child,
    sock: UnixStream,
    _dir: tempfile::TempDir,
}

impl Child {
    /// Starts `logos-bench --child KIND SOCKET` and accepts its connection.
    fn start(kind: Kind, size: usize) -> Result<Child> {
        let dir = tempfile::Builder::new()
            .prefix("logos-bench-raw-")
            .tempdir()
            .context("creating a temp dir for the baseline socket")?;
        let path = dir.path().join("raw.sock");
        let listener =
            UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        listener.set_nonblocking(true)?;
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut process = Command::new(&exe)
            .arg("--child")
            .arg(kind.arg())
            .arg(&path)
            .arg("--size")
            .arg(size.to_string())
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} --child {}", exe.display(), kind.arg()))?;
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let sock = loop {
            match listener.accept() {
                Ok((sock, _)) => break sock,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Some(status) = process.try_wait()? {
                        bail!("the {} baseline child exited early ({status})", kind.arg());
                    }
                    if Instant::now() > deadline {
                        let _ = process.kill();
                        let _ = process.wait();
                        bail!("the {} baseline child did not connect", kind.arg());
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e.into()),
            }
        };
        sock.set_nonblocking(false)?;
        Ok(Child {
            process,
            sock,
            _dir: dir,
        })
    }

    /// Closes the connection and reaps the child.
    fn finish(mut self) -> Result<()> {
        self.sock.shutdown(std::net::Shutdown::Both)?;
        let status = self.process.wait()?;
        if !status.success() {
            bail!("a baseline child failed ({status})");
        }
        Ok(())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.process.try_wait() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// How a raw ping-pong waits for the other side's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Blocking reads: the process sleeps until the kernel wakes it.
    Block,
    /// As the runtime's session reader: poll for a short window after traffic, then block.
    Poll,
}

/// What a run of round trips measured.
#[derive(Debug, Default)]
pub struct Trips {
    /// Nanoseconds of each timed round trip.
    pub samples: Vec<f64>,
    /// CPU time both ends spent during the timed round trips, when it could be read.
    pub cpu_ns: Option<u64>,
}

/// `n` round trips of a `size`-byte message, one at a time, after a warm-up, waiting as
/// `wait` says; nanoseconds each and the CPU both processes spent on them.
///
/// # Errors
/// When the child cannot be started or the exchange breaks.
pub fn round_trips(n: usize, size: usize, wait: Wait) -> Result<Trips> {
    let kind = match wait {
        Wait::Block => Kind::Pong,
        Wait::Poll => Kind::PongPoll,
    };
    let mut child = Child::start(kind, size)?;
    let mut buf = vec![0x5au8; size.max(1)];
    let window = crate::poll_io::window();
    if wait == Wait::Poll {
        child.sock.set_nonblocking(true)?;
    }
    let sock = &mut child.sock;
    let mut exchange = |buf: &mut [u8]| -> std::io::Result<()> {
        match wait {
            Wait::Block => {
                sock.write_all(buf)?;
                sock.read_exact(buf)
            }
            Wait::Poll => {
                crate::poll_io::write_all(sock, buf)?;
                crate::poll_io::read_exact(sock, buf, window)
            }
        }
    };
    for _ in 0..(n / 10).clamp(10, 2_000) {
        exchange(&mut buf)?;
    }
    let pid = child.process.id();
    let cpu_before = crate::cpu::thread_ns().zip(crate::cpu::process_ns(pid));
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        exchange(&mut buf)?;
        samples.push(start.elapsed().as_nanos() as f64);
    }
    let cpu_after = crate::cpu::thread_ns().zip(crate::cpu::process_ns(pid));
    let cpu_ns = match (cpu_before, cpu_after) {
        (Some((t0, c0)), Some((t1, c1))) => Some(t1.saturating_sub(t0) + c1.saturating_sub(c0)),
        _ => None,
    };
    child.sock.set_nonblocking(false)?;
    child.finish()?;
    Ok(Trips { samples, cpu_ns })
}

/// `n` messages of `size` bytes written back to back (one `write` each) while another thread
/// reads the echoes; messages per second.
///
/// # Errors
/// When the child cannot be started or the exchange breaks.
pub fn pipelined(n: usize, size: usize) -> Result<f64> {
    let child = Child::start(Kind::Echo, size)?;
    let mut reader = child.sock.try_clone()?;
    let expected = (n * size) as u64;
    let msg = vec![0x5au8; size];
    let start = Instant::now();
    let echoes = std::thread::spawn(move || -> std::io::Result<u64> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got: u64 = 0;
        while got < expected {
            let r = reader.read(&mut buf)?;
            if r == 0 {
                break;
            }
            got += r as u64;
        }
        Ok(got)
    });
    let mut writer = &child.sock;
    for _ in 0..n {
        writer.write_all(&msg)?;
    }
    let got = echoes
        .join()
        .map_err(|_| anyhow::anyhow!("the echo reader panicked"))??;
    let elapsed = start.elapsed();
    if got != expected {
        bail!("raw pipelined: {got} of {expected} bytes came back");
    }
    child.finish()?;
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// Copies `bytes` bytes in 64 KiB writes to a child that reads them to the end and answers
/// with the count; bytes per second.
///
/// # Errors
/// When the child cannot be started, the copy breaks or the count is wrong.
pub fn stream(bytes: u64) -> Result<f64> {
    let mut child = Child::start(Kind::Sink, 0)?;
    let chunk = vec![0xa5u8; 64 * 1024];
    let start = Instant::now();
    let mut sent: u64 = 0;
    while sent < bytes {
        let n = usize::try_from(bytes - sent).map_or(chunk.len(), |r| r.min(chunk.len()));
        child.sock.write_all(&chunk[..n])?;
        sent += n as u64;
    }
    child.sock.shutdown(std::net::Shutdown::Write)?;
    let mut count = [0u8; 8];
    child.sock.read_exact(&mut count)?;
    let elapsed = start.elapsed();
    if u64::from_le_bytes(count) != bytes {
        bail!(
            "raw stream: the child counted {} of {bytes} bytes",
            u64::from_le_bytes(count)
        );
    }
    child.finish()?;
    Ok(bytes as f64 / elapsed.as_secs_f64())
}

/// How a baseline process is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spawn {
    /// The std default (`posix_spawn`, a vfork-like clone: no page tables copied).
    Plain,
    /// With a (no-op) `pre_exec` hook, which forces a full `fork`: how the core's fallback
    /// (std's `Command`) starts modules, and its `clone3` on architectures other than x86-64;
    /// on x86-64 that `clone3` shares memory as `posix_spawn` does (`logos-core`'s
    /// `sys/vfork.rs`).
    Fork,
}

/// Spawns and reaps `program` `n` times; nanoseconds each.
///
/// # Errors
/// When it cannot be started or fails.
pub fn spawn_and_reap(program: &Path, n: usize, how: Spawn) -> Result<Vec<f64>> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if how == Spawn::Fork {
            use std::os::unix::process::CommandExt;
            // SAFETY: the hook does nothing, so it cannot break the forked child's state
            // (it calls no allocator and takes no lock).
            unsafe { cmd.pre_exec(|| Ok(())) };
        }
        let status = cmd
            .status()
            .with_context(|| format!("starting {}", program.display()))?;
        samples.push(start.elapsed().as_nanos() as f64);
        if !status.success() {
            bail!("{} failed ({status})", program.display());
        }
    }
    Ok(samples)
}
