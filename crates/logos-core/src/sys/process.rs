//! Creating a module process, and the handle the supervisor keeps for it ([`ModuleChild`]).
//!
//! Owns the two ways a module process comes to be. Where the module has a cgroup and the kernel
//! allows it, the process is created **inside** that cgroup by `clone3` with
//! `CLONE_INTO_CGROUP` (Linux 5.7+) and `CLONE_PIDFD`: no migration afterwards. Migrating a
//! running process (writing `0` to `cgroup.procs`, the other way) takes the cgroup threadgroup
//! lock for writing and waits for an RCU grace period: 0.25–0.43 ms on a quiet machine and
//! 4–35 ms under load, most of a module start (docs/performance.md). Everywhere else — no
//! cgroup, `clone3` refused (`ENOSYS` before 5.3, `EINVAL`/`E2BIG` before 5.7, `EPERM`/`EACCES`
//! without delegation, `EBUSY`/`EOPNOTSUPP` for a cgroup in the wrong mode), a program given
//! without a `/` (found on `PATH` by std) — it is started as before: std's `Command` (a `fork`,
//! since it has a pre-exec step) with the child joining its cgroup by writing `cgroup.procs`.
//! Never decides what to run or which limits apply: `supervisor/spawn.rs` does.
//!
//! # Between clone and exec
//!
//! On x86-64 the child shares the parent's memory until its `exec`, as with `posix_spawn`
//! (`CLONE_VM | CLONE_VFORK` on a stack of its own, `vfork.rs`): no copy of the core's page
//! tables to make and tear down again. Elsewhere it gets a copy, as after `fork`. Either way
//! it runs the parent's code with only the calling thread, so it may only make
//! async-signal-safe calls: no allocation, no locks, no writes outside its stack; every signal
//! is blocked until it has set the caught ones back to their default. Everything it touches
//! (the C strings of the command line, environment and working directory, the pipes, the
//! [`Prepared`] setup of `linux.rs`) is built before the clone. The child does what std's
//! `Command` does for a spawn (stdio onto fds 0–2, `chdir`, an empty signal mask and `SIGPIPE`
//! back to its default), then the same [`Prepared::in_child`] steps as the fallback
//! (parent-death signal, process group, Landlock, fds 3–5, close-on-exec, limits,
//! capabilities, seccomp last), then `execve`. So every confinement is in force before the
//! module's first instruction, on both paths. A failure is reported to the parent as an
//! errno over a close-on-exec pipe (end of file there means the exec happened), as std does.
//!
//! The handle waits with the pidfd (readable once the process exits, then `waitid(P_PIDFD)`),
//! so no signal handler is involved and no pid can be reused while it is held; the fallback's
//! handle is tokio's `Child`.

use super::cgroup::Cgroup;
use super::linux::{self, ChildSetup, Prepared};
use super::vfork;
use rustix::process::{WaitId, WaitIdOptions, WaitIdStatus};
use std::ffi::{CString, OsString, c_char};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

/// `struct clone_args` of `<linux/sched.h>` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`, 88 bytes).
/// The kernel's layout is the same on every architecture (all `__aligned_u64`); libc defines
/// it only for some targets, so it is spelled out here.
#[repr(C)]
#[derive(Default)]
pub(super) struct CloneArgs {
    pub(super) flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    pub(super) stack: u64,
    pub(super) stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_PIDFD: u64 = 0x1000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// What to run: the program, its arguments, its whole environment and its working directory.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The program; with a `/` in it for the `clone3` path (a bare name is looked up on `PATH`
    /// by the fallback).
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The complete environment: nothing else of this process's environment is passed on.
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
}

/// How [`spawn_module`] may create the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnMode {
    /// `clone3` into the cgroup where possible, else the fallback.
    Auto,
    /// Always std's `Command` with the child joining its cgroup itself (what `Auto` falls
    /// back to; tests force it to check that path).
    Migrate,
}

/// Which way a process was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// `clone3` straight into its cgroup.
    IntoCgroup,
    /// std's `Command`; the child joined its cgroup (if any) by writing `cgroup.procs`.
    Migrated,
}

/// A started module process. Dropping it before it was reaped kills it (and reaps it).
#[derive(Debug)]
pub struct ModuleChild {
    pid: u32,
    inner: Inner,
    /// The read ends of the process's stdout and stderr pipes, until taken.
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    created: Created,
}

#[derive(Debug)]
enum Inner {
    Pidfd {
        /// `None` only while being dropped.
        fd: Option<AsyncFd<OwnedFd>>,
        status: Option<ExitStatus>,
    },
    Forked(tokio::process::Child),
}

impl ModuleChild {
    /// The pid, unless the process has been reaped (then the number may be someone else's).
    pub fn id(&self) -> Option<u32> {
        match &self.inner {
            Inner::Pidfd { status: None, .. } => Some(self.pid),
            Inner::Pidfd { .. } => None,
            Inner::Forked(c) => c.id(),
        }
    }

    /// Which way it was created.
    pub fn created(&self) -> Created {
        self.created
    }

    /// Waits until the process exits and reaps it. Cancel safe: a later call resolves with the
    /// same status.
    ///
    /// # Errors
    /// The OS error of polling or `waitid`.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        match &mut self.inner {
            Inner::Forked(c) => c.wait().await,
            Inner::Pidfd {
                status: Some(s), ..
            } => Ok(*s),
            Inner::Pidfd { fd: None, .. } => Err(io::ErrorKind::NotFound.into()),
            Inner::Pidfd {
                fd: Some(fd),
                status,
            } => loop {
                let mut ready = fd.readable().await?;
                match reap(fd.get_ref().as_fd(), false)? {
                    Some(s) => {
                        *status = Some(s);
                        return Ok(s);
                    }
                    None => ready.clear_ready(),
                }
            },
        }
    }

    /// Sends `SIGKILL` to the process (not its group), unless it has been reaped.
    ///
    /// # Errors
    /// The OS error of sending it.
    pub fn start_kill(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Forked(c) => c.start_kill(),
            Inner::Pidfd {
                fd: Some(fd),
                status: None,
            } => Ok(rustix::process::pidfd_send_signal(
                fd.get_ref(),
                rustix::process::Signal::KILL,
            )?),
            Inner::Pidfd { .. } => Ok(()),
        }
    }
}

impl Drop for ModuleChild {
    fn drop(&mut self) {
        let Inner::Pidfd { fd, status: None } = &mut self.inner else {
            // Reaped, or tokio's `Child` with `kill_on_drop`.
            return;
        };
        let Some(fd) = fd.take() else { return };
        let _ = rustix::process::pidfd_send_signal(fd.get_ref(), rustix::process::Signal::KILL);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let mut fd = fd;
                    loop {
                        let Ok(mut ready) = fd.readable_mut().await else {
                            return;
                        };
                        match reap(ready.get_inner().as_fd(), false) {
                            Ok(None) => ready.clear_ready(),
                            _ => return,
                        }
                    }
                });
            }
            // Killed just now: it is gone in a moment.
            Err(_) => {
                let _ = reap(fd.get_ref().as_fd(), true);
            }
        }
    }
}

/// `waitid(P_PIDFD, WEXITED)`, without blocking unless `block`; `None` while it still runs.
fn reap(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<ExitStatus>> {
    let options = if block {
        WaitIdOptions::EXITED
    } else {
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG
    };
    loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd), options) {
            Ok(s) => return Ok(s.map(|s| exit_status(&s))),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The wait status `ExitStatus` is built from (`waitpid`'s encoding).
fn exit_status(s: &WaitIdStatus) -> ExitStatus {
    let raw = match (s.exit_status(), s.terminating_signal()) {
        (Some(code), _) => (code & 0xff) << 8,
        (None, Some(sig)) if s.dumped() => sig | 0x80,
        (None, Some(sig)) => sig,
        (None, None) => 0,
    };
    ExitStatus::from_raw(raw)
}

/// Starts `launch` with `setup` applied, in `cgroup` when given: by `clone3` into the cgroup
/// where `mode` and the kernel allow, else by std's `Command` (module docs). stdin is
/// `/dev/null`, stdout and stderr are pipes ([`ModuleChild::stdout`], `::stderr`).
///
/// Must run on a thread of a tokio runtime that lives as long as the module should (the
/// parent-death signal, see `linux.rs`).
///
/// # Errors
/// The OS error of creating the process or of a step of its setup (then it has exited and
/// been reaped), or of `exec`.
pub fn spawn_module(
    launch: &Launch,
    setup: ChildSetup,
    cgroup: Option<&Cgroup>,
    mode: SpawnMode,
) -> io::Result<ModuleChild> {
    let mut prepared = Prepared::new(setup, rustix::process::getpid());
    if let Some(cgroup) = cgroup {
        if mode == SpawnMode::Auto && launch.program.as_os_str().as_bytes().contains(&b'/') {
            match cgroup.dir_fd() {
                Ok(dir) => match clone_into(launch, &prepared, dir.as_fd()) {
                    Ok(child) => return Ok(child),
                    Err(CloneError::Refused(e)) => refused(&e),
                    Err(CloneError::Failed(e)) => return Err(e),
                },
                Err(e) => refused(&e),
            }
        }
        prepared.cgroup = match cgroup.procs() {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::warn!(
                    program = %launch.program.display(),
                    "cannot open a module's cgroup.procs: {e}; the module runs without its cgroup"
                );
                None
            }
        };
    }
    forked(launch, prepared)
}

/// Logs once why processes are not created in their cgroup.
fn refused(e: &io::Error) {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        tracing::info!(
            "module processes cannot be created in their cgroup (clone3 with CLONE_INTO_CGROUP: {e}); they join it after fork, which costs a cgroup migration per start"
        );
    });
}

/// The fallback: std's `Command` with the setup as its pre-exec step.
fn forked(launch: &Launch, prepared: Prepared) -> io::Result<ModuleChild> {
    let mut cmd = std::process::Command::new(&launch.program);
    cmd.args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&launch.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    linux::install(&mut cmd, prepared);
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    let stdout = child.stdout.take().map(|p| p.into_owned_fd());
    let stderr = child.stderr.take().map(|p| p.into_owned_fd());
    let mut module = ModuleChild {
        pid,
        inner: Inner::Forked(child),
        stdout: None,
        stderr: None,
        created: Created::Migrated,
    };
    module.stdout = stdout.transpose()?.map(receiver).transpose()?;
    module.stderr = stderr.transpose()?.map(receiver).transpose()?;
    Ok(module)
}

fn receiver(fd: OwnedFd) -> io::Result<pipe::Receiver> {
    pipe::Receiver::from_owned_fd(fd)
}

enum CloneError {
    /// `clone3` itself was refused: use the fallback.
    Refused(io::Error),
    /// The process was created and failed in its setup or `exec`.
    Failed(io::Error),
}

/// The command line, environment and working directory as C strings, with the pointer arrays
/// `execve` takes; built before the clone.
struct Image {
    program: CString,
    cwd: CString,
    _strings: Vec<CString>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
}

impl Image {
    fn new(launch: &Launch) -> io::Result<Image> {
        let c =
            |b: &[u8]| CString::new(b).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
        let program = c(launch.program.as_os_str().as_bytes())?;
        let cwd = c(launch.cwd.as_os_str().as_bytes())?;
        let mut strings = Vec::with_capacity(1 + launch.args.len() + launch.env.len());
        strings.push(program.clone());
        for a in &launch.args {
            strings.push(c(a.as_bytes())?);
        }
        for (k, v) in &launch.env {
            let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
            kv.extend_from_slice(k.as_bytes());
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            strings.push(c(&kv)?);
        }
        // The pointers point into the `CString`s' heap buffers, which do not move when the
        // vector holding them does.
        let argc = 1 + launch.args.len();
        let mut argv: Vec<*const c_char> = strings[..argc].iter().map(|s| s.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const c_char> = strings[argc..].iter().map(|s| s.as_ptr()).collect();
        envp.push(std::ptr::null());
        Ok(Image {
            program,
            cwd,
            _strings: strings,
            argv,
            envp,
        })
    }
}

/// The descriptors the child puts on 0, 1 and 2, and the parent's ends.
struct Stdio3 {
    null: OwnedFd,
    out: (OwnedFd, OwnedFd),
    err: (OwnedFd, OwnedFd),
}

fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Creates the process in the cgroup `dir` with `clone3`, sets it up and execs `launch`.
fn clone_into(
    launch: &Launch,
    prepared: &Prepared,
    dir: BorrowedFd<'_>,
) -> Result<ModuleChild, CloneError> {
    let failed = CloneError::Failed;
    let image = Image::new(launch).map_err(failed)?;
    let stdio = Stdio3 {
        null: rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| failed(e.into()))?,
        out: pipe_cloexec().map_err(failed)?,
        err: pipe_cloexec().map_err(failed)?,
    };
    let (report_r, report_w) = pipe_cloexec().map_err(failed)?;
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: CLONE_PIDFD | CLONE_INTO_CGROUP,
        pidfd: (&raw mut pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    let child = ChildArgs {
        image: &image,
        prepared,
        stdio: &stdio,
        report: report_w.as_raw_fd(),
    };
    let pid = vfork::clone3(&mut args, &child).map_err(CloneError::Refused)?;
    // SAFETY: with CLONE_PIDFD a successful clone3 stores a new descriptor in `pidfd`, which
    // nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let Stdio3 { null, out, err } = stdio;
    drop((null, out.1, err.1, report_w));
    if let Some(errno) = read_report(&report_r) {
        // The child exits right after its report.
        let _ = reap(pidfd.as_fd(), true);
        return Err(failed(io::Error::from_raw_os_error(errno)));
    }
    let kill = |e: io::Error| {
        let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
        let _ = reap(pidfd.as_fd(), true);
        failed(e)
    };
    let stdout = match receiver(out.0) {
        Ok(r) => r,
        Err(e) => return Err(kill(e)),
    };
    let stderr = match receiver(err.0) {
        Ok(r) => r,
        Err(e) => return Err(kill(e)),
    };
    // SAFETY: an `OwnedFd` stays open, always answers the same number and refers to the same
    // pidfd until the `AsyncFd` drops it.
    let registered =
        unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) };
    let fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            let (pidfd, e) = e.into_parts();
            let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
            let _ = reap(pidfd.as_fd(), true);
            return Err(failed(e));
        }
    };
    Ok(ModuleChild {
        pid,
        inner: Inner::Pidfd {
            fd: Some(fd),
            status: None,
        },
        stdout: Some(stdout),
        stderr: Some(stderr),
        created: Created::IntoCgroup,
    })
}

/// The child's errno, or `None` at end of file (the exec closed the pipe).
fn read_report(fd: &OwnedFd) -> Option<i32> {
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::read(fd, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Some(e.raw_os_error()),
        }
    }
    match got {
        0 => None,
        4 => Some(i32::from_ne_bytes(buf)),
        // A torn report: the child died while writing it.
        _ => Some(libc::EIO),
    }
}

/// What the child after `clone3` needs, all built before the clone.
struct ChildArgs<'a> {
    image: &'a Image,
    prepared: &'a Prepared,
    stdio: &'a Stdio3,
    /// The write end of the report pipe.
    report: RawFd,
}

impl vfork::Child for ChildArgs<'_> {
    fn run(&self) -> ! {
        child(self.image, self.prepared, self.stdio, self.report)
    }
}

/// The child after `clone3`: set up, exec, or report why not and exit. Async-signal-safe
/// (module docs).
fn child(image: &Image, prepared: &Prepared, stdio: &Stdio3, report: RawFd) -> ! {
    let errno = match child_setup(image, prepared, stdio) {
        Ok(()) => {
            // SAFETY: the three arguments are NUL-terminated strings and NULL-terminated
            // pointer arrays built before the clone, alive in this copy of the memory.
            unsafe {
                libc::execve(
                    image.program.as_ptr(),
                    image.argv.as_ptr(),
                    image.envp.as_ptr(),
                )
            };
            io::Error::last_os_error().raw_os_error()
        }
        Err(e) => e.raw_os_error(),
    }
    .unwrap_or(libc::EINVAL);
    // SAFETY: `report` is the write end of the report pipe, open in this process.
    let report = unsafe { BorrowedFd::borrow_raw(report) };
    let _ = rustix::io::write(report, &errno.to_ne_bytes());
    // SAFETY: `_exit` ends the process without running this copy's atexit handlers or
    // destructors, which belong to the parent.
    unsafe { libc::_exit(127) }
}

fn child_setup(image: &Image, prepared: &Prepared, stdio: &Stdio3) -> io::Result<()> {
    for (src, dst) in [
        (stdio.null.as_raw_fd(), 0),
        (stdio.out.1.as_raw_fd(), 1),
        (stdio.err.1.as_raw_fd(), 2),
    ] {
        if src == dst {
            // `dup2(fd, fd)` would leave close-on-exec set (only when the core runs with
            // fd 0, 1 or 2 closed).
            // SAFETY: `src` is open in this process for the call.
            let fd = unsafe { BorrowedFd::borrow_raw(src) };
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
        // SAFETY: dup2 has no memory-safety preconditions; `src` is open in this process and
        // `dst` is a plain number we mean to replace.
        } else if unsafe { libc::dup2(src, dst) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    rustix::process::chdir(image.cwd.as_c_str())?;
    // The child starts with every signal blocked (`vfork.rs`): first every caught signal back
    // to its default action, so that none runs this process's handler before the exec.
    vfork::reset_handlers();
    // As std does for a spawned process: no blocked signals, and SIGPIPE (which Rust programs
    // ignore) back to its default.
    // SAFETY: sigemptyset, pthread_sigmask and signal are async-signal-safe; `set` lives on
    // this stack frame.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        if libc::pthread_sigmask(libc::SIG_SETMASK, &raw const set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::signal(libc::SIGPIPE, libc::SIG_DFL) == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    prepared.in_child()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Limits;
    use tokio::io::AsyncReadExt;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn launch(script: &str) -> Launch {
        Launch {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("ONLY".into(), "this".into())],
            cwd: "/".into(),
        }
    }

    fn setup() -> io::Result<ChildSetup> {
        let (_, a) = std::os::unix::net::UnixStream::pair()?;
        let (_, b) = std::os::unix::net::UnixStream::pair()?;
        let (_, c) = std::os::unix::net::UnixStream::pair()?;
        Ok(ChildSetup {
            fds: [a.into(), b.into(), c.into()],
            limits: Limits {
                open_files: Some(64),
                ..Limits::default()
            },
            ruleset: None,
            seccomp: None,
            drop_capabilities: false,
            cgroup: None,
        })
    }

    async fn output(child: &mut ModuleChild) -> io::Result<String> {
        let mut text = String::new();
        if let Some(out) = child.stdout.as_mut() {
            out.read_to_string(&mut text).await?;
        }
        Ok(text)
    }

    /// Both ways of creating a process give the same process: in its cgroup, its own group,
    /// fds 3 to 5, the limits, only the given environment, stdin from /dev/null.
    #[tokio::test]
    async fn both_paths_start_the_process_in_its_cgroup_with_its_setup() -> TestResult {
        let runtime = tempfile::tempdir()?;
        for mode in [SpawnMode::Auto, SpawnMode::Migrate] {
            let cgroup = Cgroup::create(runtime.path(), "proc-test");
            let mut child = spawn_module(
                &launch(
                    "cat /proc/self/cgroup; echo pgid=$(cut -d' ' -f5 /proc/$$/stat) pid=$$; \
                     grep 'open files' /proc/$$/limits; env; \
                     test -S /proc/$$/fd/3 && test -S /proc/$$/fd/4 && test -S /proc/$$/fd/5 && echo fds=ok; \
                     read -r x || echo stdin=eof; pwd",
                ),
                setup()?,
                cgroup.as_ref(),
                mode,
            )?;
            let expected = match (&cgroup, mode) {
                (Some(_), SpawnMode::Auto) => Created::IntoCgroup,
                _ => Created::Migrated,
            };
            assert_eq!(child.created(), expected, "{mode:?}");
            let pid = child.id().ok_or("no pid")?;
            let text = output(&mut child).await?;
            let status = child.wait().await?;
            assert!(status.success(), "{mode:?}: {status:?}\n{text}");
            assert_eq!(child.id(), None, "reaped");
            if let Some(cg) = &cgroup {
                let name = cg
                    .path()
                    .file_name()
                    .ok_or("cgroup name")?
                    .to_string_lossy();
                assert!(
                    text.lines()
                        .any(|l| l.starts_with("0::") && l.ends_with(&*name)),
                    "{mode:?}: not in {name}:\n{text}"
                );
            }
            assert!(text.contains(&format!("pgid={pid} pid={pid}")), "{text}");
            assert!(
                text.lines()
                    .any(|l| l.starts_with("Max open files") && l.contains(" 64 ")),
                "{text}"
            );
            assert!(text.contains("ONLY=this"), "{text}");
            assert!(!text.contains("HOME="), "{text}");
            assert!(text.contains("fds=ok"), "{text}");
            assert!(text.contains("stdin=eof"), "{text}");
            assert!(text.trim_end().ends_with("\n/"), "{text}");
        }
        Ok(())
    }

    /// The calling thread's signal mask, as a list of blocked signal numbers.
    fn blocked_here() -> io::Result<Vec<i32>> {
        // SAFETY: pthread_sigmask with no new set only writes `set` on this frame;
        // sigismember reads it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let r = libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &raw mut set);
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
            Ok((1..=libc::SIGRTMAX())
                .filter(|s| libc::sigismember(&raw const set, *s) == 1)
                .collect())
        }
    }

    /// Every signal is blocked around the clone (a handler of this process must not run in
    /// a child that shares its memory): the module still starts with none blocked, SIGPIPE at
    /// its default, and the calling thread gets its own mask back.
    #[tokio::test]
    async fn the_child_starts_with_no_signal_blocked_and_the_caller_keeps_its_mask() -> TestResult {
        // A handler in this process, as the core's runtime installs them.
        let _caught =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
        let runtime = tempfile::tempdir()?;
        for mode in [SpawnMode::Auto, SpawnMode::Migrate] {
            let before = blocked_here()?;
            let cgroup = Cgroup::create(runtime.path(), "proc-test");
            let mut child = spawn_module(
                &launch("exec grep -E '^Sig(Blk|Ign)' /proc/self/status"),
                setup()?,
                cgroup.as_ref(),
                mode,
            )?;
            assert_eq!(
                blocked_here()?,
                before,
                "{mode:?}: the caller's mask changed"
            );
            let text = output(&mut child).await?;
            assert!(child.wait().await?.success(), "{mode:?}: {text}");
            let field = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
                    .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                    .ok_or(format!("{mode:?}: no {name} in {text}"))
            };
            assert_eq!(field("SigBlk:")?, 0, "{mode:?}: {text}");
            let sigpipe = 1u64 << (libc::SIGPIPE - 1);
            assert_eq!(field("SigIgn:")? & sigpipe, 0, "{mode:?}: {text}");
        }
        Ok(())
    }

    /// The child's own stack (`vfork.rs`) is unmapped once the child has exec'd: thirty
    /// starts leave no thirty 256 KiB mappings behind.
    #[cfg(target_arch = "x86_64")]
    #[tokio::test]
    async fn each_childs_stack_is_unmapped_after_its_exec() -> TestResult {
        let runtime = tempfile::tempdir()?;
        let Some(cgroup) = Cgroup::create(runtime.path(), "proc-test") else {
            eprintln!("no cgroup can be made here: processes take the fallback, with no stack");
            return Ok(());
        };
        // A stack is a `STACK_SIZE` read-write mapping right above a one-page guard.
        let stacks = || -> io::Result<usize> {
            let maps = std::fs::read_to_string("/proc/self/maps")?;
            let ranges: Vec<(u64, u64, bool)> = maps
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    let (lo, hi) = f.next()?.split_once('-')?;
                    let perms = f.next()?;
                    Some((
                        u64::from_str_radix(lo, 16).ok()?,
                        u64::from_str_radix(hi, 16).ok()?,
                        perms.starts_with("---"),
                    ))
                })
                .collect();
            Ok(ranges
                .windows(2)
                .filter(|w| {
                    w[0].2 && w[0].1 == w[1].0 && w[1].1 - w[1].0 == vfork::STACK_SIZE as u64
                })
                .count())
        };
        let before = stacks()?;
        for _ in 0..30 {
            let mut child =
                spawn_module(&launch("exit 0"), setup()?, Some(&cgroup), SpawnMode::Auto)?;
            assert_eq!(child.created(), Created::IntoCgroup);
            assert!(child.wait().await?.success());
        }
        // Other tests may be starting a process at this moment: allow a few.
        let after = stacks()?;
        assert!(
            after < before + 5,
            "{before} stacks before, {after} after 30 starts"
        );
        Ok(())
    }

    /// A `clone3` the kernel refuses (here: a directory that is not a cgroup) is a fallback,
    /// not a failure; a bare program name always takes the fallback.
    #[tokio::test]
    async fn a_refused_clone_falls_back() -> TestResult {
        let not_a_cgroup = tempfile::tempdir()?;
        let dir = std::fs::File::open(not_a_cgroup.path())?;
        let prepared = Prepared::new(setup()?, rustix::process::getpid());
        match clone_into(&launch("true"), &prepared, dir.as_fd()) {
            Err(CloneError::Refused(_)) => {}
            Err(CloneError::Failed(e)) => return Err(format!("failed instead: {e}").into()),
            Ok(_) => return Err("created in a directory that is no cgroup".into()),
        }
        let runtime = tempfile::tempdir()?;
        let cgroup = Cgroup::create(runtime.path(), "proc-test");
        let mut l = launch("exit 0");
        l.program = "sh".into();
        l.env.push(("PATH".into(), "/usr/bin:/bin".into()));
        let mut child = spawn_module(&l, setup()?, cgroup.as_ref(), SpawnMode::Auto)?;
        assert_eq!(child.created(), Created::Migrated);
        assert!(child.wait().await?.success());
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_exec_is_reported_on_both_paths() -> TestResult {
        let runtime = tempfile::tempdir()?;
        for mode in [SpawnMode::Auto, SpawnMode::Migrate] {
            let cgroup = Cgroup::create(runtime.path(), "proc-test");
            let mut l = launch("");
            l.program = "/nonexistent/program".into();
            let err = spawn_module(&l, setup()?, cgroup.as_ref(), mode)
                .err()
                .ok_or("spawned")?;
            assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{mode:?}: {err}");
            // A working directory that is not there fails in the child's setup.
            let mut l = launch("true");
            l.cwd = "/nonexistent/dir".into();
            let err = spawn_module(&l, setup()?, cgroup.as_ref(), mode)
                .err()
                .ok_or("spawned")?;
            assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{mode:?}: {err}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn exit_codes_signals_and_drop() -> TestResult {
        let runtime = tempfile::tempdir()?;
        for mode in [SpawnMode::Auto, SpawnMode::Migrate] {
            let cgroup = Cgroup::create(runtime.path(), "proc-test");
            let mut child = spawn_module(&launch("exit 3"), setup()?, cgroup.as_ref(), mode)?;
            assert_eq!(child.wait().await?.code(), Some(3), "{mode:?}");
            // Cancel safe: the same status again.
            assert_eq!(child.wait().await?.code(), Some(3), "{mode:?}");

            let mut child = spawn_module(&launch("sleep 30"), setup()?, cgroup.as_ref(), mode)?;
            child.start_kill()?;
            assert_eq!(
                child.wait().await?.signal(),
                Some(libc::SIGKILL),
                "{mode:?}"
            );

            // Dropped unreaped: killed and reaped.
            let child = spawn_module(&launch("sleep 30"), setup()?, cgroup.as_ref(), mode)?;
            let pid = child.id().ok_or("no pid")?;
            drop(child);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while std::path::Path::new(&format!("/proc/{pid}")).exists() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{mode:?}: {pid} lives on"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        Ok(())
    }
}
