//! What a module process inherits from the core, and the process set-up around it.
//!
//! Owns the contract's inputs (docs/architecture.md, "Module process contract" §2–3): the
//! control connection on `LOGOS_CONTROL_FD`, the listening socket on `LOGOS_LISTEN_FD` (both
//! checked to be open sockets, taken once per process, made close-on-exec), the heartbeat page
//! on `LOGOS_BEAT_FD` (optional), the data dir from `LOGOS_DATA_DIR`, and logging to stderr filtered by `LOGOS_LOG`. Never speaks the protocol
//! and never trusts the environment for identity: the control socket is the identity.

use crate::error::Error;
use logos_session::Beater;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};

/// Descriptor of the control connection unless `LOGOS_CONTROL_FD` says otherwise.
pub const DEFAULT_CONTROL_FD: RawFd = 3;
/// Descriptor of the listening socket unless `LOGOS_LISTEN_FD` says otherwise.
pub const DEFAULT_LISTEN_FD: RawFd = 4;

/// Set when a `run` took the inherited descriptors: they can be owned once per process.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// For a protected module (`LOGOS_PROTECTED=1`, docs/security.md "Protected modules"):
/// `PR_SET_DUMPABLE` 0, so processes of the same uid without `CAP_SYS_PTRACE` can neither
/// trace it nor read its memory, environment or descriptors through `/proc`, and it leaves no
/// core dump. Set here, after `exec`, because `exec` resets the flag. Returns whether it was
/// set.
pub(super) fn harden() -> bool {
    if std::env::var_os("LOGOS_PROTECTED").is_none_or(|v| v != "1") {
        return false;
    }
    // SAFETY: PR_SET_DUMPABLE takes a number and touches no memory of ours.
    let ok = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } == 0;
    if !ok {
        tracing::warn!(
            "could not make this protected module non-dumpable: {}",
            std::io::Error::last_os_error()
        );
    }
    ok
}

/// Logs to stderr (the core keeps its tail), filtered by `LOGOS_LOG` (default `info`).
///
/// The filter is `tracing_subscriber`'s `Targets` (`info`, `warn,my_module=debug`), not its
/// `EnvFilter`: `EnvFilter` and the regex engine it links were 0.55 MB of `probe`'s 3.2 MB of
/// text, for span and field filters modules do not use. A filter that cannot be read (such
/// as `[span]=debug`) is reported and logging stays at `info`.
pub(super) fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, bad) = log_filter(std::env::var("LOGOS_LOG").ok());
    // Under the core, stderr is a pipe the core reads line by line and stamps with its own
    // time; a line then starts with the level, which the core keeps. On a terminal, log in
    // full.
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(std::io::stderr)
        .with_ansi(terminal);
    let installed = if terminal {
        builder.finish().with(filter).try_init().is_ok()
    } else {
        builder
            .without_time()
            .finish()
            .with(filter)
            .try_init()
            .is_ok()
    };
    if installed && let Some((value, e)) = bad {
        tracing::warn!("LOGOS_LOG={value:?} is not a valid filter ({e}); logging at info");
    }
}

/// The filter `LOGOS_LOG` asks for: `info` when unset or empty; `info` and the value with the
/// reason when it cannot be read. `Targets` would take a span filter (`[span]=debug`) for a
/// target of that name and match nothing, so those are refused here by name.
fn log_filter(
    value: Option<String>,
) -> (
    tracing_subscriber::filter::Targets,
    Option<(String, String)>,
) {
    use tracing_subscriber::filter::Targets;
    let default = || Targets::new().with_default(tracing::Level::INFO);
    let Some(v) = value.filter(|v| !v.trim().is_empty()) else {
        return (default(), None);
    };
    if v.contains(['[', '{']) {
        let why = "span and field filters ([span], {field}) are not read by modules".to_owned();
        return (default(), Some((v, why)));
    }
    match v.parse::<Targets>() {
        Ok(f) => (f, None),
        Err(e) => (default(), Some((v, e.to_string()))),
    }
}

/// What the process inherited from the core.
pub(super) struct Inherited {
    pub(super) control: OwnedFd,
    pub(super) listen: OwnedFd,
    pub(super) data_dir: PathBuf,
    /// The heartbeat page and its interval, when the core gave one (`LOGOS_BEAT_FD`,
    /// `LOGOS_HEARTBEAT_MS`); without it the module answers the core's pings only.
    pub(super) beat: Option<(Beater, Duration)>,
}

impl Inherited {
    pub(super) fn take() -> Result<Inherited, Error> {
        if TAKEN.swap(true, Ordering::SeqCst) {
            return Err(Error::Descriptor {
                var: "LOGOS_CONTROL_FD",
                value: "(already taken)".to_owned(),
                reason: "the module runtime was started twice in one process".to_owned(),
            });
        }
        let control = take_fd("LOGOS_CONTROL_FD", DEFAULT_CONTROL_FD)?;
        let listen = take_fd("LOGOS_LISTEN_FD", DEFAULT_LISTEN_FD)?;
        let data_dir = match std::env::var_os("LOGOS_DATA_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        };
        let beat = take_beat([control.as_raw_fd(), listen.as_raw_fd()]);
        Ok(Inherited {
            control,
            listen,
            data_dir,
            beat,
        })
    }
}

/// The heartbeat page named by `LOGOS_BEAT_FD` and the interval `LOGOS_HEARTBEAT_MS`. Either
/// missing (a core before heartbeat pages, a module started by hand) means none. One that is
/// wrong is reported and ignored rather than failing the start: the core pings a module whose
/// page stays still, so the module is watched either way.
fn take_beat(taken: [RawFd; 2]) -> Option<(Beater, Duration)> {
    let fd = std::env::var("LOGOS_BEAT_FD").ok()?;
    let ms = std::env::var("LOGOS_HEARTBEAT_MS").ok()?;
    match beat_from(&fd, &ms, taken) {
        Ok(beat) => Some(beat),
        Err(e) => {
            tracing::warn!(
                "LOGOS_BEAT_FD={fd:?}, LOGOS_HEARTBEAT_MS={ms:?}: {e}; answering pings instead"
            );
            None
        }
    }
}

fn beat_from(fd: &str, ms: &str, taken: [RawFd; 2]) -> Result<(Beater, Duration), String> {
    let every = ms
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
        .ok_or("the interval is not a positive number of milliseconds")?;
    let fd: RawFd = fd
        .trim()
        .parse()
        .ok()
        .filter(|fd| *fd > 2 && !taken.contains(fd))
        .ok_or("not a descriptor number above 2 other than the control and listening sockets'")?;
    let fd = adopt(fd).map_err(|e| format!("descriptor {fd} is not open: {e}"))?;
    Ok((Beater::open(fd)?, every))
}

/// Marks inherited descriptor `fd` close-on-exec, so the module's own children never get it,
/// and takes ownership of it.
///
/// The caller guarantees the contract handed `fd` to the module for one purpose and nothing
/// else in the process uses it; `TAKEN` guarantees each is wrapped at most once. A number that
/// is not an open descriptor fails with `EBADF` and is never wrapped.
fn adopt(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_SETFD accepts any integer and reports EBADF for one that is not open; it only
    // changes the close-on-exec flag.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: open (checked above); by the caller's guarantee the `OwnedFd` is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Takes ownership of the socket descriptor named by `var` (or `default`), after checking
/// it is an open socket, and marks it close-on-exec so the module's own children never get it.
fn take_fd(var: &'static str, default: RawFd) -> Result<OwnedFd, Error> {
    let value = std::env::var(var).unwrap_or_else(|_| default.to_string());
    let fail = |reason: String| Error::Descriptor {
        var,
        value: value.clone(),
        reason,
    };
    let fd: RawFd = value
        .trim()
        .parse()
        .ok()
        .filter(|fd| *fd >= 0)
        .ok_or_else(|| fail("not a descriptor number".to_owned()))?;
    // SAFETY: `st` is a properly sized, writable `stat` buffer; `fstat` accepts any integer and
    // reports EBADF for one that is not an open descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: see above; `&mut st` is valid for the duration of the call.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(fail(format!("descriptor {fd} is not open: {e}")));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(fail(format!("descriptor {fd} is not a socket")));
    }
    adopt(fd).map_err(|e| fail(format!("cannot set close-on-exec on descriptor {fd}: {e}")))
}

/// Takes over the control connection as an async stream.
pub(super) fn adopt_stream(fd: OwnedFd) -> Result<UnixStream, Error> {
    let std_stream = std::os::unix::net::UnixStream::from(fd);
    std_stream
        .set_nonblocking(true)
        .and_then(|()| UnixStream::from_std(std_stream))
        .map_err(|e| Error::Descriptor {
            var: "LOGOS_CONTROL_FD",
            value: DEFAULT_CONTROL_FD.to_string(),
            reason: format!("cannot use it as a stream socket ({e})"),
        })
}

/// Takes over the listening socket the core bound. Calling `listen` again re-stamps the
/// socket's credentials with this process: a peer's `SO_PEERCRED` then reports this module's
/// pid (not the core's, which called `listen` first), which is what peers check before they
/// send a token (docs/architecture.md, "Module process contract").
pub(super) fn adopt_listener(fd: OwnedFd) -> Result<UnixListener, Error> {
    // SAFETY: listen(2) on an fd we own has no memory-safety preconditions.
    if unsafe { libc::listen(fd.as_raw_fd(), libc::SOMAXCONN) } != 0 {
        return Err(Error::Descriptor {
            var: "LOGOS_LISTEN_FD",
            value: DEFAULT_LISTEN_FD.to_string(),
            reason: format!("cannot listen on it ({})", std::io::Error::last_os_error()),
        });
    }
    let std_listener = std::os::unix::net::UnixListener::from(fd);
    std_listener
        .set_nonblocking(true)
        .and_then(|()| UnixListener::from_std(std_listener))
        .map_err(|e| Error::Descriptor {
            var: "LOGOS_LISTEN_FD",
            value: DEFAULT_LISTEN_FD.to_string(),
            reason: format!("cannot use it as a listening socket ({e})"),
        })
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing::Level;
    use tracing_subscriber::filter::LevelFilter;

    #[test]
    fn log_filters_read_levels_and_targets_and_name_what_they_cannot() {
        for unset in [None, Some(String::new()), Some("  ".to_owned())] {
            let (f, bad) = log_filter(unset);
            assert!(bad.is_none());
            assert!(f.would_enable("any", &Level::INFO) && !f.would_enable("any", &Level::DEBUG));
        }
        let (f, bad) = log_filter(Some("warn,my_module=debug".to_owned()));
        assert!(bad.is_none());
        assert!(f.would_enable("my_module::store", &Level::DEBUG));
        assert!(!f.would_enable("tokio", &Level::INFO) && f.would_enable("tokio", &Level::WARN));
        assert_eq!(
            log_filter(Some("debug".to_owned())).0.default_level(),
            Some(LevelFilter::DEBUG)
        );
        for unreadable in [
            "my_module=loud",
            "info,=debug,x=y=z",
            "[span]=debug",
            "my_module[span{id=1}]=trace",
        ] {
            let (f, bad) = log_filter(Some(unreadable.to_owned()));
            assert_eq!(bad.map(|(v, _)| v).as_deref(), Some(unreadable));
            assert_eq!(f.default_level(), Some(LevelFilter::INFO), "{unreadable}");
        }
    }
}
