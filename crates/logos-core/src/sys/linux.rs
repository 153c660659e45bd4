//! Linux implementation of the OS seam (see `sys/mod.rs`).
//!
//! Owns what happens in a module process between `fork` (or `clone3`, see `process.rs`) and
//! `exec` ([`Prepared::in_child`]): the parent-death signal, joining its cgroup (when it was
//! not created in it), its own process group, the Landlock ruleset, the fds of the module
//! process contract (control connection at fd 3, listening socket at fd 4, every other fd
//! closed at exec) and resource limits. Also owns signalling a module's process group, reading
//! what a process costs from `/proc` ([`process_usage`]), and creating private (0700 / 0600)
//! directories and files. Never decides which limits, fds or signals to use, and never spawns
//! by itself: `process.rs` creates the process and runs these steps in it.
//!
//! # Between fork and exec
//!
//! [`Prepared::in_child`] (installed with `pre_exec` on the fork path, called directly after
//! `clone3` on the other) runs in the child of a multi-threaded process, where
//! only async-signal-safe calls are allowed: no allocation, no locks, no `std::io` printing.
//! Everything it needs (the parent's pid, the clamped limits) is computed before the fork, and
//! it calls raw system calls only: rustix (its `linux_raw` backend issues syscalls directly) and
//! `libc::dup2`, `libc::syscall` for `landlock_restrict_self` and `close_range` (rustix wraps
//! neither). A failure there is returned as an `io::Error` built from the errno (no
//! allocation); std then reports it from `spawn` in the parent and the child exits. The
//! Landlock ruleset and the cgroup's `cgroup.procs` are opened in the parent for the same
//! reason: building a ruleset walks directories and allocates.
//!
//! rustix is used wherever it does not force a fiction: its `dup2` wants an `&mut OwnedFd` for
//! the target, which would claim ownership of fd 3 or 4 even when nothing is open there, so
//! that one call is `libc::dup2`.
//!
//! # Caveats
//!
//! - Linux sends the parent-death signal when the *thread* that forked the child exits, not the
//!   process. Spawn module processes from a thread that lives as long as the module should, e.g.
//!   a tokio worker of the core's runtime, never from `spawn_blocking` (its threads exit after
//!   being idle) or a short-lived helper thread.
//! - `RLIMIT_NPROC` counts every process and thread of the user (real uid), not just those of
//!   the module, and is not enforced for root. Set it well above what the user already runs.
//! - A limit above the current hard limit is clamped to it: the hard limit already restricts
//!   the module more, and raising it needs privileges.

use crate::error::Error;
use crate::sys::landlock::PreparedRuleset;
use rustix::process::{self, Pid, Resource, Rlimit};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The fd where a module process finds its control connection.
pub const CONTROL_FD: RawFd = 3;
/// The fd where a module process finds its listening socket.
pub const LISTEN_FD: RawFd = 4;
/// The fd where a module process finds its heartbeat page (`logos_session::Beater`).
pub const BEAT_FD: RawFd = 5;
/// How many fds a module process inherits: [`CONTROL_FD`], [`LISTEN_FD`], [`BEAT_FD`], in order.
pub const INHERITED_FDS: usize = 3;

/// Resource limits for a module process; `None` leaves the inherited limit.
///
/// Each limit is applied as both the soft and the hard limit, so the module cannot raise it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Virtual address space, in bytes (`RLIMIT_AS`). Caps the memory a module can map.
    pub address_space: Option<u64>,
    /// Open file descriptors (`RLIMIT_NOFILE`); fds numbered at or above it cannot be opened.
    pub open_files: Option<u64>,
    /// Processes and threads of the user (`RLIMIT_NPROC`); see the module caveats.
    pub processes: Option<u64>,
}

/// What [`crate::sys::spawn_module`] sets up in a module process.
#[derive(Debug)]
pub struct ChildSetup {
    /// Moved to fd 3 ([`CONTROL_FD`]), fd 4 ([`LISTEN_FD`]) and fd 5 ([`BEAT_FD`]) in the
    /// child, close-on-exec cleared. Closed in the parent when the `Command` is dropped.
    pub fds: [OwnedFd; INHERITED_FDS],
    /// Resource limits.
    pub limits: Limits,
    /// The Landlock ruleset to enforce ([`crate::sys::RulesetCache::prepare`]); `None` runs the
    /// module unconfined.
    pub ruleset: Option<PreparedRuleset>,
    /// The seccomp filter to install last ([`crate::sys::seccomp_program`]); `None` installs
    /// none.
    pub seccomp: Option<crate::sys::SeccompProgram>,
    /// Empty the capability bounding, inheritable and ambient sets, so the module (run by a
    /// core that is root) starts with no capability at all: no `CAP_KILL`, `CAP_SYS_PTRACE`,
    /// `CAP_DAC_OVERRIDE`, … to reach past its confinement.
    pub drop_capabilities: bool,
    /// `cgroup.procs` of the module's cgroup ([`Cgroup::procs`](crate::sys::Cgroup::procs)),
    /// which the child joins before anything else; `None` leaves it in the core's cgroup.
    /// `spawn_module` fills it itself when it must (it is given the cgroup).
    pub cgroup: Option<OwnedFd>,
}

/// Prepares `cmd` so the process it spawns follows the module process contract (the fork path
/// of [`crate::sys::spawn_module`], kept for the tests of these steps).
///
/// In the child, before `exec`, in this order (on the `clone3` path the same, step 2 done by
/// the clone):
/// 1. parent-death signal set to `SIGKILL`; if the parent already died (the child's parent pid
///    is no longer the pid captured here), the spawn fails with `ESRCH` and the child exits;
/// 2. joins `setup.cgroup` (writes `0` to that `cgroup.procs`);
/// 3. a process group of its own (a terminal's Ctrl-C reaches only the core; the supervisor
///    can signal the module and everything it started with [`kill_group`]);
/// 4. `PR_SET_NO_NEW_PRIVS` and `landlock_restrict_self` with `setup.ruleset`, before any of
///    the module's code runs (so scripts and interpreters are confined too);
/// 5. `setup.fds` moved to fds 3, 4 and 5 with close-on-exec cleared, whatever numbers they
///    had (3 to 5 included, swapped included);
/// 6. every fd from 6 up marked close-on-exec (`close_range(6, ~0, CLOSE_RANGE_CLOEXEC)`, or
///    one `fcntl` per fd below the open-files limit on a kernel before 5.11), so descriptors
///    the core opened without `O_CLOEXEC` never reach a module;
/// 7. the resource limits (last, so a low open-files limit cannot stop step 5).
///
#[cfg(test)]
pub fn configure_child(cmd: &mut Command, setup: ChildSetup) {
    configure_child_for_parent(cmd, setup, process::getpid());
}

/// [`configure_child`] with the parent pid to compare against given explicitly (tests pass a
/// wrong one to exercise the parent-died path).
#[cfg(test)]
fn configure_child_for_parent(cmd: &mut Command, setup: ChildSetup, parent: Pid) {
    install(cmd, Prepared::new(setup, parent));
}

/// Installs `prepared` as `cmd`'s pre-exec step.
pub(super) fn install(cmd: &mut Command, prepared: Prepared) {
    // SAFETY: `pre_exec` requires the closure to be safe to run between fork and exec in a
    // possibly multi-threaded process. `Prepared::in_child` allocates nothing, takes no lock
    // and makes only async-signal-safe system calls (prctl, getppid, write, setpgid,
    // landlock_restrict_self, fcntl, dup2, close_range, setrlimit); everything it reads was
    // computed before the fork and is owned by the closure, so it is valid in the child.
    unsafe {
        cmd.pre_exec(move || prepared.in_child());
    }
}

/// Everything the child needs, computed in the parent.
pub(super) struct Prepared {
    parent: Pid,
    limits: [Option<(Resource, Rlimit)>; 3],
    fds: [OwnedFd; INHERITED_FDS],
    ruleset: Option<OwnedFd>,
    seccomp: Option<Vec<libc::sock_filter>>,
    drop_capabilities: bool,
    /// `cgroup.procs` to join by writing `0`; `None` when the child was created in its
    /// cgroup (`clone3`, see `spawn.rs`) or runs without one.
    pub(super) cgroup: Option<OwnedFd>,
    /// Highest fd number to mark close-on-exec one by one when `close_range` is missing.
    fd_ceiling: RawFd,
}

impl Prepared {
    /// Computes what the child of this process (`parent`) will need, before it exists.
    pub(super) fn new(setup: ChildSetup, parent: Pid) -> Prepared {
        let ChildSetup {
            fds,
            limits,
            ruleset,
            seccomp,
            drop_capabilities,
            cgroup,
        } = setup;
        Prepared {
            parent,
            limits: prepare_limits(&limits),
            fds,
            ruleset: ruleset.map(|r| r.0),
            seccomp: seccomp.map(|p| p.0),
            drop_capabilities,
            cgroup,
            fd_ceiling: fd_ceiling(),
        }
    }

    /// Runs in the forked child. Async-signal-safe: see [`install`].
    pub(super) fn in_child(&self) -> io::Result<()> {
        process::set_parent_process_death_signal(Some(process::Signal::KILL))?;
        // The parent may have died before the signal was armed: then it never comes.
        if process::getppid() != Some(self.parent) {
            return Err(rustix::io::Errno::SRCH.into());
        }
        if let Some(procs) = &self.cgroup {
            // "0" is the writing process itself.
            rustix::io::write(procs, b"0")?;
        }
        process::setpgid(None, None)?;
        if let Some(ruleset) = &self.ruleset {
            restrict_self(ruleset.as_raw_fd())?;
        }
        move_fds(&mut Os, self.fds.each_ref().map(AsRawFd::as_raw_fd))?;
        cloexec_from(CONTROL_FD + INHERITED_FDS as RawFd, self.fd_ceiling)?;
        for (resource, limit) in self.limits.iter().flatten() {
            process::setrlimit(*resource, *limit)?;
        }
        if self.drop_capabilities {
            drop_capabilities()?;
        }
        // Last: from here on the filter applies, to these calls too.
        if let Some(filter) = &self.seccomp {
            install_seccomp(filter)?;
        }
        Ok(())
    }
}

/// `struct __user_cap_header_struct` of `<linux/capability.h>`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Empties the bounding, ambient and inheritable capability sets, so that `exec` gives the
/// process none (for uid 0, the new permitted set is the inheritable set plus the bounding
/// set). Needs `CAP_SETPCAP`, which a root core has. Async-signal-safe: raw system calls on
/// stack values.
fn drop_capabilities() -> io::Result<()> {
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    // 64 is beyond every capability (CAP_LAST_CAP is 40 in Linux 6.x): EINVAL ends the loop.
    for cap in 0..64 {
        // SAFETY: PR_CAPBSET_DROP takes a number and touches no memory of ours.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(e);
        }
    }
    // SAFETY: as above; clears the ambient set.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget writes two `CapData` (version 3) into `data` and may write the header's
    // version; both live on this stack frame for the call.
    if unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for d in &mut data {
        d.inheritable = 0;
    }
    // SAFETY: capset reads the header and two `CapData` from this stack frame.
    if unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Installs `filter` on this (single-threaded, forked) process. Async-signal-safe: the
/// program was compiled before the fork; this builds a two-field struct on the stack and
/// makes two system calls.
fn install_seccomp(filter: &[libc::sock_filter]) -> io::Result<()> {
    // Unprivileged processes may install a filter only under no_new_privs (Landlock set it
    // already when the module is confined; it costs nothing to set again).
    rustix::thread::set_no_new_privs(true)?;
    let len = libc::c_ushort::try_from(filter.len()).map_err(|_| rustix::io::Errno::INVAL)?;
    let prog = libc::sock_fprog {
        len,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: seccomp(SET_MODE_FILTER) reads `prog` and the `len` instructions it points to,
    // both alive for the call (`filter` is owned by the pre-exec closure); it writes nothing
    // of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_LOG,
            std::ptr::from_ref(&prog),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Enforces the Landlock ruleset `fd` on this (single-threaded, forked) process.
/// Async-signal-safe.
pub(super) fn restrict_self(fd: RawFd) -> io::Result<()> {
    // Landlock requires it of an unprivileged process; it also keeps set-uid programs from
    // lifting the module out of its confinement.
    rustix::thread::set_no_new_privs(true)?;
    // SAFETY: landlock_restrict_self takes an fd and flags and touches no memory of ours; `fd`
    // is the ruleset owned by the pre-exec closure, open for the call.
    let r = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Marks every fd from `first` up close-on-exec. Async-signal-safe.
fn cloexec_from(first: RawFd, ceiling: RawFd) -> io::Result<()> {
    let first_u = libc::c_uint::try_from(first).unwrap_or(0);
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes fd flags; it touches no memory.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first_u,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // Before Linux 5.11 (ENOSYS, or EINVAL for the flag): one fcntl per possible fd.
    for fd in first..=ceiling {
        // SAFETY: F_SETFD on any number has no memory-safety preconditions; EBADF for a
        // number that is not open is expected and ignored.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// The open-files soft limit, bounding the fallback of [`cloexec_from`].
fn fd_ceiling() -> RawFd {
    let soft = process::getrlimit(Resource::Nofile)
        .current
        .unwrap_or(1 << 20);
    RawFd::try_from(soft.min(1 << 20)).unwrap_or(RawFd::MAX)
}

/// Limits as (resource, soft = hard = value), clamped to the current hard limit.
fn prepare_limits(limits: &Limits) -> [Option<(Resource, Rlimit)>; 3] {
    let one = |resource: Resource, value: Option<u64>| {
        value.map(|v| {
            let v = match process::getrlimit(resource).maximum {
                Some(hard) => v.min(hard),
                None => v,
            };
            (
                resource,
                Rlimit {
                    current: Some(v),
                    maximum: Some(v),
                },
            )
        })
    };
    [
        one(Resource::As, limits.address_space),
        one(Resource::Nofile, limits.open_files),
        one(Resource::Nproc, limits.processes),
    ]
}

/// The fd operations `move_fds` needs: a test seam, so the shuffling can be checked against a
/// simulated fd table for every collision.
trait FdTable {
    /// Duplicates `fd` to the lowest free number ≥ `min`, close-on-exec set.
    fn dup_at_least(&mut self, fd: RawFd, min: RawFd) -> io::Result<RawFd>;
    /// Makes `dst` refer to what `src` refers to, close-on-exec cleared (`src != dst`).
    fn dup_to(&mut self, src: RawFd, dst: RawFd) -> io::Result<()>;
    /// Clears close-on-exec on `fd`.
    fn clear_cloexec(&mut self, fd: RawFd) -> io::Result<()>;
}

/// Moves `sources[i]` to fd [`CONTROL_FD`]` + i` (control, listening socket, heartbeat page),
/// close-on-exec cleared.
///
/// They are placed in order, so a source sitting at the target of one placed before it would
/// be overwritten: it is first copied above the targets (close-on-exec, so the copy vanishes
/// at exec). A source already at its target only has close-on-exec cleared, because
/// `dup2(fd, fd)` does nothing. Async-signal-safe.
fn move_fds(t: &mut impl FdTable, sources: [RawFd; INHERITED_FDS]) -> io::Result<()> {
    let above = CONTROL_FD + INHERITED_FDS as RawFd;
    let mut sources = sources;
    for (target, source) in (CONTROL_FD..).zip(sources.iter_mut()) {
        if (CONTROL_FD..target).contains(source) {
            *source = t.dup_at_least(*source, above)?;
        }
    }
    for (target, source) in (CONTROL_FD..).zip(sources) {
        place(t, source, target)?;
    }
    Ok(())
}

fn place(t: &mut impl FdTable, src: RawFd, dst: RawFd) -> io::Result<()> {
    if src == dst {
        t.clear_cloexec(dst)
    } else {
        t.dup_to(src, dst)
    }
}

/// The real fd table of this process.
struct Os;

impl FdTable for Os {
    fn dup_at_least(&mut self, fd: RawFd, min: RawFd) -> io::Result<RawFd> {
        // SAFETY: `fd` is one of `Prepared::fds`, owned by the pre-exec closure and open for
        // the whole call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let copy = rustix::io::fcntl_dupfd_cloexec(fd, min)?;
        // Leaked on purpose: it must stay open until it is moved to fd 4, and exec closes it.
        Ok(std::os::fd::IntoRawFd::into_raw_fd(copy))
    }

    fn dup_to(&mut self, src: RawFd, dst: RawFd) -> io::Result<()> {
        // SAFETY: dup2 has no memory-safety preconditions; `src` is open (owned by the
        // closure or the stashed copy) and `dst` is a plain number we mean to replace.
        if unsafe { libc::dup2(src, dst) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn clear_cloexec(&mut self, fd: RawFd) -> io::Result<()> {
        // SAFETY: `fd` equals one of `Prepared::fds` (or the stashed copy), open for the call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
        Ok(())
    }
}

/// A signal the supervisor sends to a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// `SIGTERM`: please stop.
    Term,
    /// `SIGKILL`: stop now.
    Kill,
}

impl Signal {
    /// The signal number.
    #[cfg(test)]
    pub fn as_raw(self) -> i32 {
        self.to_rustix().as_raw()
    }

    /// The signal with this number, if it is one of these.
    #[cfg(test)]
    pub fn from_raw(raw: i32) -> Option<Signal> {
        [Signal::Term, Signal::Kill]
            .into_iter()
            .find(|s| s.as_raw() == raw)
    }

    fn to_rustix(self) -> process::Signal {
        match self {
            Signal::Term => process::Signal::TERM,
            Signal::Kill => process::Signal::KILL,
        }
    }
}

/// Sends `signal` to the process group led by `pid` (a module process set up by
/// [`crate::sys::spawn_module`] leads its own group). Returns whether it was delivered; `false` when
/// the group no longer exists or `pid` is not a valid pid.
pub fn kill_group(pid: u32, signal: Signal) -> bool {
    match pid_of(pid) {
        Some(pid) => process::kill_process_group(pid, signal.to_rustix()).is_ok(),
        None => false,
    }
}

/// Whether any process is left in the group led by `pid` (zombies count until reaped).
#[cfg(test)]
pub fn group_exists(pid: u32) -> bool {
    pid_of(pid).is_some_and(|pid| process::test_kill_process_group(pid).is_ok())
}

/// `pid` as a process id; `None` for 0 and values beyond `i32` (never signal "everyone").
fn pid_of(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().and_then(Pid::from_raw)
}

/// Creates `path` (and missing parents) as a directory only this user can use (0700), or
/// checks that the existing one is.
///
/// # Errors
///
/// [`Error::Io`] if it cannot be created or inspected; [`Error::PrivateDir`] if it is a
/// symlink, not a directory, owned by another user, or accessible to group or others.
pub fn create_private_dir(path: &Path) -> Result<(), Error> {
    let created = DirBuilder::new().recursive(true).mode(0o700).create(path);
    let meta = match (created, std::fs::symlink_metadata(path)) {
        (_, Ok(meta)) => meta,
        (Err(source), Err(_)) | (Ok(()), Err(source)) => {
            return Err(Error::Io {
                what: format!("creating private directory {}", path.display()),
                source,
            });
        }
    };
    let problem = |problem: String| Error::PrivateDir {
        path: path.to_path_buf(),
        problem,
    };
    if meta.file_type().is_symlink() {
        return Err(problem(
            "it is a symlink; remove it or choose another directory".into(),
        ));
    }
    if !meta.is_dir() {
        return Err(problem(
            "it exists and is not a directory; remove it or choose another directory".into(),
        ));
    }
    let me = uid();
    if meta.uid() != me {
        return Err(problem(format!(
            "it is owned by uid {}, not by this user (uid {me}); remove it or choose another directory",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(problem(format!(
            "its mode is {mode:04o}, so others can use it; run `chmod 700 {}` or remove it",
            path.display()
        )));
    }
    Ok(())
}

/// The effective user id of this process, e.g. for a per-user default runtime dir.
pub fn uid() -> u32 {
    process::geteuid().as_raw()
}

/// Prepares `cmd` so its process starts a new session (`setsid`): no controlling terminal and
/// its own process group, so a terminal's Ctrl-C or hang-up does not reach it. Unlike
/// [`crate::sys::spawn_module`] it sets no parent-death signal: for helpers that must outlive the core
/// (the guardian that cleans up after a crashed core).
pub fn detach_session(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec; `setsid` is async-signal-safe, and the
    // closure captures nothing and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            process::setsid()?;
            Ok(())
        });
    }
}

/// Creates a new file readable and writable only by this user: mode 0600 and `O_EXCL` in the
/// same `open`, so it is never accessible to others and an existing file or symlink makes it
/// fail rather than be reused or followed.
///
/// # Errors
///
/// The OS error, `AlreadyExists` when `path` exists.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Type, permission bits and owner of an open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode {
    /// Whether it is a regular file.
    pub is_file: bool,
    /// Permission bits (`mode & 0o7777`).
    pub permissions: u32,
    /// Owner's uid.
    pub owner: u32,
}

/// The [`FileMode`] of an open file (no race with a rename, unlike a path lookup).
///
/// # Errors
///
/// The OS error of `fstat`.
pub fn file_mode(file: &File) -> io::Result<FileMode> {
    let meta = file.metadata()?;
    Ok(FileMode {
        is_file: meta.is_file(),
        permissions: meta.mode() & 0o7777,
        owner: meta.uid(),
    })
}

/// What one process costs right now, from `/proc/<pid>/stat` and `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessUsage {
    /// Resident memory (`VmRSS`), in bytes; `None` for a zombie or kernel thread.
    pub rss_bytes: Option<u64>,
    /// User plus system CPU time consumed so far.
    pub cpu_time: Duration,
    /// Threads (`num_threads`).
    pub threads: Option<u64>,
    /// Time since the process started.
    pub age: Option<Duration>,
}

/// Reads what process `pid` costs; `None` when it does not exist (any more) or its `/proc`
/// files cannot be read or parsed. Only reads files: never signals or waits.
pub fn process_usage(pid: u32) -> Option<ProcessUsage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let uptime = std::fs::read_to_string("/proc/uptime").ok();
    parse_usage(
        &stat,
        &status,
        uptime.as_deref(),
        rustix::param::clock_ticks_per_second(),
    )
}

/// The pure part of [`process_usage`]: `/proc/<pid>/stat`, `/proc/<pid>/status`,
/// `/proc/uptime` and the clock tick rate.
fn parse_usage(stat: &str, status: &str, uptime: Option<&str>, ticks: u64) -> Option<ProcessUsage> {
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // `rest[0]` is field 3 (state); utime/stime are fields 14/15, num_threads 20, starttime 22.
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let ticks = ticks.max(1);
    let to_duration = |t: u64| Duration::from_millis(t.saturating_mul(1000) / ticks);
    let cpu_time = to_duration(field(14)?.saturating_add(field(15)?));
    let age = uptime
        .and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok())
        .zip(field(22))
        .and_then(|(up, start)| Duration::try_from_secs_f64(up - start as f64 / ticks as f64).ok());
    Some(ProcessUsage {
        rss_bytes: kib_field(status, "VmRSS:").map(|kib| kib * 1024),
        cpu_time,
        threads: field(20),
        age,
    })
}

/// Proportional set size of process `pid` in bytes (`Pss` of `/proc/<pid>/smaps_rollup`: its
/// resident memory with each shared page divided among the processes sharing it); `None` when
/// it cannot be read. Costlier than [`process_usage`] (the kernel walks the page tables), so
/// kept apart for callers that measure memory on purpose, such as the benchmarks.
pub fn pss_bytes(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    kib_field(&rollup, "Pss:").map(|kib| kib * 1024)
}

/// A `Key:   123 kB` figure of a `/proc` file, in KiB.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::Stdio;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn process_usage_is_parsed_from_proc_files() {
        let stat = "4242 (logos host (x)) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 50 0 0 20 0 3 0 1000 1000000 300 18446744073709551615";
        let status = "Name:\tlogos_host\nVmRSS:\t   2048 kB\nThreads:\t3\n";
        let u = parse_usage(stat, status, Some("30.00 12.00"), 100);
        assert_eq!(
            u,
            Some(ProcessUsage {
                rss_bytes: Some(2 * 1024 * 1024),
                cpu_time: Duration::from_secs(2),
                threads: Some(3),
                age: Some(Duration::from_secs(20)),
            })
        );
        assert_eq!(parse_usage("garbage", "", None, 100), None);
        // A zombie has no VmRSS line.
        let zombie = parse_usage(stat, "Name:\tx\n", None, 100);
        assert_eq!(zombie.map(|u| (u.rss_bytes, u.age)), Some((None, None)));
    }

    #[test]
    fn our_own_usage_is_readable() {
        let u = process_usage(std::process::id());
        assert!(u.is_some_and(|u| u.rss_bytes.is_some_and(|r| r > 0)));
        assert!(u.is_some_and(|u| u.threads.is_some_and(|t| t >= 1)));
        assert_eq!(process_usage(u32::MAX), None);
        assert!(pss_bytes(std::process::id()).is_some_and(|p| p > 0));
        assert_eq!(pss_bytes(u32::MAX), None);
        assert_eq!(
            kib_field("Name:\tx\nVmRSS:\t  2048 kB\n", "VmRSS:"),
            Some(2048)
        );
    }

    /// fd number → (open file identity, close-on-exec).
    #[derive(Debug, Clone, PartialEq)]
    struct Sim(BTreeMap<RawFd, (char, bool)>);

    impl FdTable for Sim {
        fn dup_at_least(&mut self, fd: RawFd, min: RawFd) -> io::Result<RawFd> {
            let file = self.0.get(&fd).ok_or(io::ErrorKind::InvalidInput)?.0;
            let free = (min..).find(|n| !self.0.contains_key(n)).unwrap_or(min);
            self.0.insert(free, (file, true));
            Ok(free)
        }
        fn dup_to(&mut self, src: RawFd, dst: RawFd) -> io::Result<()> {
            assert_ne!(src, dst);
            let file = self.0.get(&src).ok_or(io::ErrorKind::InvalidInput)?.0;
            self.0.insert(dst, (file, false));
            Ok(())
        }
        fn clear_cloexec(&mut self, fd: RawFd) -> io::Result<()> {
            self.0.get_mut(&fd).ok_or(io::ErrorKind::InvalidInput)?.1 = false;
            Ok(())
        }
    }

    #[test]
    fn fd_moves_handle_every_collision() -> TestResult {
        // Sources anywhere in 0..9 (distinct), other fds open with close-on-exec.
        let names = ['C', 'L', 'B'];
        for c in 0..9 {
            for l in 0..9 {
                for b in 0..9 {
                    let sources = [c, l, b];
                    if c == l || c == b || l == b {
                        continue;
                    }
                    let mut sim = Sim((0..9).map(|n| (n, ('x', true))).collect());
                    for (fd, name) in sources.iter().zip(names) {
                        sim.0.insert(*fd, (name, true));
                    }
                    move_fds(&mut sim, sources)?;
                    for (target, name) in (3..).zip(names) {
                        assert_eq!(
                            sim.0.get(&target),
                            Some(&(name, false)),
                            "{sources:?}: {sim:?}"
                        );
                    }
                    // Nothing else became inheritable.
                    let inheritable: Vec<_> = sim
                        .0
                        .iter()
                        .filter(|(_, (_, c))| !c)
                        .map(|(n, _)| *n)
                        .collect();
                    assert_eq!(inheritable, vec![3, 4, 5], "{sources:?}");
                }
            }
        }
        Ok(())
    }

    /// The soft limit from a `/proc/<pid>/limits` dump.
    fn limits_of(out: &str, name: &str) -> Option<String> {
        out.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l[name.len()..].split_whitespace().next().map(str::to_owned))
    }

    #[test]
    fn child_gets_fds_limits_and_its_own_group() -> TestResult {
        let dir = tempfile::tempdir()?;
        let a = dir.path().join("control");
        let b = dir.path().join("listen");
        let c = dir.path().join("beat");
        std::fs::write(&a, "")?;
        std::fs::write(&b, "")?;
        std::fs::write(&c, "")?;
        let fa: OwnedFd = File::open(&a)?.into();
        let fb: OwnedFd = File::open(&b)?.into();
        let fc: OwnedFd = File::open(&c)?.into();

        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("cat /proc/$$/limits; echo fd3=$(readlink /proc/$$/fd/3); echo fd4=$(readlink /proc/$$/fd/4); echo fd5=$(readlink /proc/$$/fd/5); echo pgid=$(cut -d' ' -f5 /proc/$$/stat) pid=$$")
            .stdout(Stdio::piped());
        let limits = Limits {
            address_space: Some(1 << 30),
            open_files: Some(64),
            processes: Some(4096),
        };
        configure_child(
            &mut cmd,
            ChildSetup {
                fds: [fa, fb, fc],
                limits,
                ruleset: None,
                seccomp: None,
                drop_capabilities: false,
                cgroup: None,
            },
        );
        let out = cmd.output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");

        assert_eq!(
            limits_of(&text, "Max open files").as_deref(),
            Some("64"),
            "{text}"
        );
        assert_eq!(
            limits_of(&text, "Max address space").as_deref(),
            Some("1073741824"),
            "{text}"
        );
        let nproc_hard = process::getrlimit(Resource::Nproc)
            .maximum
            .unwrap_or(u64::MAX);
        assert_eq!(
            limits_of(&text, "Max processes"),
            Some(4096.min(nproc_hard).to_string()),
            "{text}"
        );
        assert!(text.contains(&format!("fd3={}", a.display())), "{text}");
        assert!(text.contains(&format!("fd4={}", b.display())), "{text}");
        assert!(text.contains(&format!("fd5={}", c.display())), "{text}");
        let ids = text
            .lines()
            .find(|l| l.starts_with("pgid="))
            .unwrap_or_default()
            .to_owned();
        let mut parts = ids
            .split(' ')
            .map(|p| p.split('=').nth(1).unwrap_or_default());
        assert_eq!(parts.next(), parts.next(), "own process group: {ids}");
        Ok(())
    }

    #[test]
    fn kill_group_reaches_the_child() -> TestResult {
        let (_keep, child_end) = std::os::unix::net::UnixStream::pair()?;
        let (_keep2, listen) = std::os::unix::net::UnixStream::pair()?;
        let (_keep3, beat) = std::os::unix::net::UnixStream::pair()?;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg("sleep 30");
        configure_child(
            &mut cmd,
            ChildSetup {
                fds: [child_end.into(), listen.into(), beat.into()],
                limits: Limits::default(),
                ruleset: None,
                seccomp: None,
                drop_capabilities: false,
                cgroup: None,
            },
        );
        let mut child = cmd.spawn()?;
        let pid = child.id();
        assert_eq!(
            process::getpgid(pid_of(pid)).map(Pid::as_raw_pid).ok(),
            i32::try_from(pid).ok()
        );
        assert!(group_exists(pid));
        assert!(kill_group(pid, Signal::Kill));
        let status = child.wait()?;
        assert_eq!(status.signal(), Some(Signal::Kill.as_raw()));
        assert!(
            !kill_group(0, Signal::Kill),
            "pid 0 must never be signalled"
        );
        assert!(!kill_group(u32::MAX, Signal::Term));
        Ok(())
    }

    #[test]
    fn child_dies_with_the_thread_that_spawned_it() -> TestResult {
        let (_keep, a) = std::os::unix::net::UnixStream::pair()?;
        let (_keep2, b) = std::os::unix::net::UnixStream::pair()?;
        let (_keep3, c) = std::os::unix::net::UnixStream::pair()?;
        let spawner = std::thread::spawn(move || {
            let mut cmd = Command::new("/bin/sleep");
            cmd.arg("10");
            configure_child(
                &mut cmd,
                ChildSetup {
                    fds: [a.into(), b.into(), c.into()],
                    limits: Limits::default(),
                    ruleset: None,
                    seccomp: None,
                    drop_capabilities: false,
                    cgroup: None,
                },
            );
            cmd.spawn()
        });
        let mut child = spawner.join().map_err(|_| "spawner thread panicked")??;
        // The spawning thread has exited: the parent-death signal fires.
        let status = child.wait()?;
        assert_eq!(status.signal(), Some(Signal::Kill.as_raw()), "{status:?}");
        Ok(())
    }

    #[test]
    fn spawn_fails_when_the_parent_is_already_gone() -> TestResult {
        let (_keep, a) = std::os::unix::net::UnixStream::pair()?;
        let (_keep2, b) = std::os::unix::net::UnixStream::pair()?;
        let (_keep3, c) = std::os::unix::net::UnixStream::pair()?;
        let mut cmd = Command::new("/bin/true");
        let not_the_parent = Pid::from_raw(1).ok_or("pid 1")?;
        configure_child_for_parent(
            &mut cmd,
            ChildSetup {
                fds: [a.into(), b.into(), c.into()],
                limits: Limits::default(),
                ruleset: None,
                seccomp: None,
                drop_capabilities: false,
                cgroup: None,
            },
            not_the_parent,
        );
        let err = cmd.spawn().err().ok_or("spawn succeeded")?;
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::SRCH.raw_os_error())
        );
        Ok(())
    }

    #[test]
    fn detached_child_leads_a_new_session() -> TestResult {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("cut -d' ' -f6 /proc/$$/stat; echo $$")
            .stdout(Stdio::piped());
        detach_session(&mut cmd);
        let out = cmd.output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], lines[1], "session id equals its pid: {text}");
        Ok(())
    }

    #[test]
    fn signals_round_trip() {
        for s in [Signal::Term, Signal::Kill] {
            assert_eq!(Signal::from_raw(s.as_raw()), Some(s));
        }
        assert_eq!(Signal::Kill.as_raw(), 9);
        assert_eq!(Signal::from_raw(0), None);
    }

    #[test]
    fn private_dir_is_created_0700_and_checked() -> TestResult {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("run/logos");
        create_private_dir(&dir)?;
        assert_eq!(std::fs::metadata(&dir)?.mode() & 0o7777, 0o700);
        create_private_dir(&dir)?; // existing and private: fine

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let msg = create_private_dir(&dir).err().map(|e| e.to_string());
        assert!(msg.is_some_and(|m| m.contains("0755") && m.contains("chmod 700")));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link)?;
        assert!(matches!(
            create_private_dir(&link),
            Err(Error::PrivateDir { .. })
        ));

        let file = tmp.path().join("file");
        std::fs::write(&file, "")?;
        assert!(matches!(
            create_private_dir(&file),
            Err(Error::PrivateDir { .. })
        ));

        // Another owner: only testable where chown works (as root).
        let theirs = tmp.path().join("theirs");
        std::fs::create_dir(&theirs)?;
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700))?;
        if std::os::unix::fs::chown(&theirs, Some(12345), None).is_ok() {
            let msg = create_private_dir(&theirs).err().map(|e| e.to_string());
            assert!(msg.is_some_and(|m| m.contains("owned by uid 12345")));
        }
        Ok(())
    }

    #[test]
    fn private_file_is_0600_and_exclusive() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("secret");
        let f = create_private_file(&path)?;
        let mode = file_mode(&f)?;
        assert!(mode.is_file);
        assert_eq!(mode.permissions, 0o600);
        assert_eq!(mode.owner, process::geteuid().as_raw());
        let again = create_private_file(&path).err().map(|e| e.kind());
        assert_eq!(again, Some(io::ErrorKind::AlreadyExists));
        Ok(())
    }
}
