//! A module process started with no core: `posix_spawn` of the module's program, with a
//! control socket and a listening socket, until its `hello` arrives.
//!
//! The `start` rows time a whole start (the core's preparation, Landlock ruleset, cgroup,
//! `clone3`, confinement, handshake) against spawning `/bin/true`. This figure splits that
//! ratio: what the module process itself costs (exec, dynamic loading, the library's
//! constructors, the SDK's runtime, encoding its interface) before the core does anything, and
//! so the part of the ratio no change in the core can remove. The process is spawned the way
//! the baseline spawns `/bin/true` (std's `Command`, which uses `posix_spawn` when it has no
//! pre-exec step), so the two differ only in what runs. Never used by a core, never confined:
//! it measures the module's own start and nothing else.

use anyhow::{Context, Result, anyhow, bail};
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a module may take to send its `hello`, or to exit once its control socket is
/// closed, before the measurement fails (it is then killed).
const PATIENCE: Duration = Duration::from_secs(10);

/// One module's program as the core would run it.
pub struct Program {
    pub name: String,
    /// The program; its file name is its `argv[0]` (the benchmark binary serves as a module
    /// only under the module link's name, so that is the path given).
    pub path: PathBuf,
    pub args: Vec<OsString>,
}

/// Starts `program` `n` times, each until its `hello` arrives; nanoseconds each. `dir` holds
/// the listening socket and serves as the module's data dir.
///
/// # Errors
/// When the sockets cannot be made, the process cannot be started, or it exits or stays
/// silent instead of sending its `hello`.
pub fn spawn_to_hello(program: &Program, dir: &Path, n: usize) -> Result<Vec<f64>> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        samples.push(once(program, dir)?);
    }
    Ok(samples)
}

fn once(program: &Program, dir: &Path) -> Result<f64> {
    let socket = dir.join("alone.sock");
    let _ = std::fs::remove_file(&socket);
    let listener =
        UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    let (mut ours, theirs) = UnixStream::pair().context("socketpair")?;
    inheritable(&theirs)?;
    inheritable(&listener)?;
    let mut cmd = Command::new(&program.path);
    cmd.args(&program.args)
        .env_clear()
        .env("LOGOS_MODULE", &program.name)
        .env("LOGOS_CONTROL_FD", theirs.as_raw_fd().to_string())
        .env("LOGOS_LISTEN_FD", listener.as_raw_fd().to_string())
        .env("LOGOS_DATA_DIR", dir)
        .env("LOGOS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", program.path.display()))?;
    // Only the child holds these now: its exit closes the control socket.
    drop(theirs);
    drop(listener);
    ours.set_read_timeout(Some(PATIENCE))?;
    let mut first = [0u8; 4096];
    let read = ours.read(&mut first);
    let elapsed = start.elapsed().as_nanos() as f64;
    // Closing the control socket ends the handshake: the module exits.
    drop(ours);
    let ended = reap(&mut child);
    let _ = std::fs::remove_file(&socket);
    match read {
        Ok(0) => bail!(
            "{} exited before its hello ({})",
            program.name,
            ended.unwrap_or_else(|e| e.to_string())
        ),
        Ok(_) => Ok(elapsed),
        Err(e) => Err(anyhow!("{} sent no hello: {e}", program.name)),
    }
}

/// Clears close-on-exec, so the spawned module inherits the descriptor under its own number.
fn inheritable(fd: &impl AsRawFd) -> Result<()> {
    // SAFETY: F_SETFD on a descriptor this process owns (borrowed for the call) changes only
    // its close-on-exec flag; no memory is passed.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) };
    if rc == -1 {
        return Err(std::io::Error::last_os_error()).context("clearing close-on-exec");
    }
    Ok(())
}

/// Waits for the module to exit, killing it after [`PATIENCE`]; how it ended.
fn reap(child: &mut Child) -> Result<String, std::io::Error> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.to_string());
        }
        if Instant::now() > deadline {
            child.kill()?;
            return child
                .wait()
                .map(|s| format!("killed after {PATIENCE:?}: {s}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
