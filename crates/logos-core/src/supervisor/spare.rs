//! Spare hosts: one `logos_host --spare` started ahead of need, so that the next start of a
//! library module skips creating a process, `exec` and the loader (docs/architecture.md,
//! "Spare hosts"; issue 17).
//!
//! Owns starting a spare with everything of a module process that does not depend on the
//! module (its own process group and cgroup, the parent-death signal, fd 3 for the control
//! connection, no capabilities, no other descriptor, nothing of the operator's environment),
//! keeping at most one, and handing it its module: the [`Order`] (library, environment,
//! working directory, limits, seccomp filter) with the listening socket and the Landlock
//! ruleset attached, over a `SOCK_SEQPACKET` socket at the spare's fd 4. The spare applies it
//! before it opens the library (`logos-host/src/spare.rs`), so the module's first instruction
//! runs confined, as on the cold path.
//!
//! A spare is only used for the `logos_host` it was started from: if that file was replaced
//! since (an upgrade), the spare is dropped and the start goes the cold way. One that died
//! while waiting is found out when its order cannot be sent; the start goes the cold way too.
//! Never decides when to prepare one (the supervisor does, after a library module's start)
//! nor what a module's confinement is (`spawn.rs` does).

use super::spawn::Created;
use crate::sys::{self, Cgroup, ChildSetup, Launch, ModuleChild, SpawnMode};
use logos_session::BeatWatch;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the supervisor tells [`Spares::prepare`] about the next start.
#[derive(Debug, Clone)]
pub(crate) struct Next {
    pub host: PathBuf,
    pub runtime_dir: PathBuf,
    pub spawn_mode: SpawnMode,
    /// The core's environment variables every module gets (`PATH`, `LANG`, `LOGOS_SHM`).
    pub env: Vec<(OsString, OsString)>,
}

/// The spare the core keeps: none, or one.
#[derive(Debug, Default)]
pub(crate) struct Spares {
    /// Locked from the moment a spare is asked for until it is there, so a start that comes
    /// in between waits for it rather than going the cold way beside it.
    slot: Arc<tokio::sync::Mutex<Option<Spare>>>,
    /// Set by [`Spares::release`]: a spare being prepared then is let go, not kept.
    released: Arc<AtomicBool>,
    /// Where [`Spares::prepare`] sends its jobs: the maker thread, started with the first.
    maker: std::sync::Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    /// A `logos_host` whose spare ended before it was ready (an older one without
    /// `--spare`, a broken one): no spare is made of that file again. Another file there (an
    /// upgrade) is tried afresh.
    unsupported: Arc<std::sync::Mutex<Option<Identity>>>,
}

/// One spare to make, and the slot (locked) to put it in.
struct Job {
    next: Next,
    slot: tokio::sync::OwnedMutexGuard<Option<Spare>>,
    runtime: tokio::runtime::Handle,
    released: Arc<AtomicBool>,
    unsupported: Arc<std::sync::Mutex<Option<Identity>>>,
}

impl Spares {
    /// Takes the spare if it was started from `host` as that file is now; a spare of another
    /// or a replaced `logos_host` is let go. Waits for a spare being started.
    pub(crate) async fn take(&self, host: &Path) -> Option<Spare> {
        let spare = self.slot.lock().await.take()?;
        if spare.host == host && Identity::of(host).is_some_and(|now| now == spare.identity) {
            Some(spare)
        } else {
            tracing::debug!(host = %host.display(), "the spare host's program changed; it is let go");
            None
        }
    }

    /// Has a spare made for the next start, unless one is kept or being made already.
    ///
    /// It is made on a thread of its own, the **maker**, never on one of the runtime's:
    /// creating a process blocks the creating thread until the child's `exec` (a `vfork`,
    /// `sys/process.rs`), and a start's caller resuming on that thread would wait for it. The
    /// maker also lives as long as the core, which a spare's parent-death signal needs (it
    /// follows the creating thread, `sys/linux.rs`).
    pub(crate) fn prepare(&self, next: Next) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Locked here, not on the maker: a start asked for after this returns waits for it.
        let Ok(slot) = Arc::clone(&self.slot).try_lock_owned() else {
            return;
        };
        if slot.is_some() || self.released.load(Ordering::SeqCst) {
            return;
        }
        let unsupported = *self
            .unsupported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if unsupported.is_some() && unsupported == Identity::of(&next.host) {
            return;
        }
        let job = Job {
            next,
            slot,
            runtime,
            released: Arc::clone(&self.released),
            unsupported: Arc::clone(&self.unsupported),
        };
        let mut maker = self
            .maker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let sender = match maker.as_ref() {
            Some(s) => s.clone(),
            None => match start_maker() {
                Ok(s) => maker.insert(s).clone(),
                Err(e) => {
                    tracing::warn!(
                        "cannot start the thread that makes spare hosts: {e}; library modules start the cold way"
                    );
                    return;
                }
            },
        };
        // A maker that is gone (it cannot be, while this holds its sender) drops the job,
        // and with it the slot's lock.
        let _ = sender.send(job);
    }

    /// A spare that could not take its order. One whose order could not be encoded is kept
    /// for the next start; one that was gone (killed while it waited) is reaped.
    pub(crate) async fn unused(&self, unused: Unused) {
        let Unused { spare, sent, .. } = unused;
        if !sent {
            let mut slot = self.slot.lock().await;
            if slot.is_none() && !self.released.load(Ordering::SeqCst) {
                *slot = Some(*spare);
            }
        }
    }

    /// Lets the kept spare go (the core is stopping): it is killed and reaped before this
    /// returns, and its cgroup removed.
    pub(crate) async fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
        // The maker ends once it has no sender: after the job it may be on.
        self.maker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let spare = self.slot.lock().await.take();
        if let Some(mut spare) = spare {
            let _ = spare.child.start_kill();
            let _ = spare.child.wait().await;
        }
    }
}

/// Logs why a spare ended before it was ready: its exit and its first stderr line.
async fn report_ended(mut spare: Spare) {
    let status = spare.child.wait().await.ok();
    let mut said = String::new();
    if let Some(mut err) = spare.child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(READY_WAIT, err.read_to_end(&mut buf)).await;
        said = String::from_utf8_lossy(&buf)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
    }
    tracing::warn!(
        host = %spare.host.display(),
        status = ?status,
        stderr = %said,
        "a spare host ended before it was ready (an older logos_host without --spare?); no spare of this logos_host is made again, and library modules start the cold way until it is replaced"
    );
}

/// Starts the maker thread; it makes one spare per job and ends when its sender is dropped.
fn start_maker() -> io::Result<std::sync::mpsc::Sender<Job>> {
    let (sender, jobs) = std::sync::mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("logos-spare".into())
        .spawn(move || {
            for Job {
                next,
                mut slot,
                runtime,
                released,
                unsupported,
            } in jobs
            {
                // The child's handle waits on a pidfd registered with the runtime's reactor.
                let _runtime = runtime.enter();
                match Spare::start(&next) {
                    Ok(Made::Ready(spare)) if !released.load(Ordering::SeqCst) => {
                        *slot = Some(spare);
                    }
                    Ok(Made::Ready(_)) => {}
                    Ok(Made::Ended(spare)) => {
                        *unsupported
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some(spare.identity);
                        runtime.spawn(report_ended(spare));
                    }
                    Err(e) => tracing::debug!(
                        host = %next.host.display(),
                        "cannot start a spare host: {e}; library modules start the cold way"
                    ),
                }
            }
        })?;
    Ok(sender)
}

/// Which file a program was: a replaced `logos_host` is another file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    size: u64,
}

impl Identity {
    fn of(path: &Path) -> Option<Identity> {
        let m = std::fs::metadata(path).ok()?;
        Some(Identity {
            dev: m.dev(),
            ino: m.ino(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            size: m.size(),
        })
    }
}

/// A `logos_host --spare` waiting for its order.
///
/// Its cgroup becomes its module's as it is: cgroup v2 cannot rename a cgroup, and moving the
/// process to a new one costs what the spare saves (`sys/process.rs`). So a module started in
/// a spare runs in `<prefix>spare-<n>`, which the guardian's pattern covers like any other.
#[derive(Debug)]
pub(crate) struct Spare {
    child: ModuleChild,
    /// The core's end of the spare's fd 3: the module's control connection to be.
    control: UnixStream,
    /// The core's end of the spare's fd 4, where the order goes.
    order: OwnedFd,
    cgroup: Option<Cgroup>,
    /// The spare's fd 5: the heartbeat page of the module it will run.
    beat: BeatWatch,
    host: PathBuf,
    identity: Identity,
}

/// How long the maker waits for a new spare to say it is ready (it takes about a
/// millisecond); one that has not by then is let go, and no spare is kept this time.
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// What a spare sends on its order socket once it waits for its order
/// (`logos-host/src/spare.rs`).
const READY: &[u8] = b"ready";

/// A spare that did not take its order ([`Spare::assign`]), for [`Spares::unused`].
pub(crate) struct Unused {
    pub error: io::Error,
    spare: Box<Spare>,
    /// Whether the send was tried (and failed): the spare is gone. Otherwise the order could
    /// not be encoded and the spare is as good as before.
    sent: bool,
}

/// What a spare is told, besides the two descriptors.
pub(crate) struct Order<'a> {
    pub library: &'a Path,
    pub name: &'a str,
    pub version: String,
    pub cwd: &'a Path,
    pub env: &'a [(OsString, OsString)],
    pub limits: sys::Limits,
    pub seccomp: Option<&'a sys::SeccompProgram>,
    pub listener: BorrowedFd<'a>,
    pub ruleset: Option<BorrowedFd<'a>>,
}

/// A spare as [`Spare::start`] leaves it.
enum Made {
    /// It waits for its order.
    Ready(Spare),
    /// It ended before it was ready.
    Ended(Spare),
}

impl Spare {
    /// Starts one and waits until it says it is ready.
    fn start(next: &Next) -> io::Result<Made> {
        use rustix::net::{AddressFamily, SocketFlags, SocketType};
        let identity = Identity::of(&next.host).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} cannot be read", next.host.display()),
            )
        })?;
        let (control, child_control) = UnixStream::pair()?;
        let (order, child_order) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        let cgroup = Cgroup::create(&next.runtime_dir, "spare");
        let (beat, child_beat) = BeatWatch::create()?;
        let launch = Launch {
            program: next.host.clone(),
            args: vec!["--spare".into()],
            env: next.env.clone(),
            cwd: PathBuf::from("/"),
        };
        let setup = ChildSetup {
            fds: [child_control.into(), child_order, child_beat],
            limits: sys::Limits::default(),
            ruleset: None,
            seccomp: None,
            drop_capabilities: sys::uid() == 0,
            cgroup: None,
        };
        let child = sys::spawn_module(&launch, setup, cgroup.as_ref(), next.spawn_mode)?;
        let spare = Spare {
            child,
            control,
            order,
            cgroup,
            beat,
            host: next.host.clone(),
            identity,
        };
        // Only a spare that said it waits is kept: one that is still starting could yet
        // fail, and would fail its module's start with it.
        rustix::net::sockopt::set_socket_timeout(
            &spare.order,
            rustix::net::sockopt::Timeout::Recv,
            Some(READY_WAIT),
        )?;
        let mut said = [0u8; 16];
        match rustix::net::recv(&spare.order, &mut said, rustix::net::RecvFlags::empty()) {
            Ok((n, _)) if said.get(..n) == Some(READY) => {
                tracing::debug!(pid = spare.child.id().unwrap_or(0), "spare host ready");
                Ok(Made::Ready(spare))
            }
            Ok((0, _)) => Ok(Made::Ended(spare)),
            Ok(_) => Err(io::Error::other(
                "the spare host said something else than ready",
            )),
            Err(e) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no word from the spare host within {READY_WAIT:?}: {e}"),
            )),
        }
    }

    /// Hands the spare its module: after this it is that module's process, with `control`
    /// its control connection.
    ///
    /// # Errors
    /// The order cannot be encoded (a path or variable that is not UTF-8; the spare is
    /// unharmed) or sent (the spare is gone). Either way the start goes the cold way, and
    /// the spare goes to [`Spares::unused`].
    pub(crate) fn assign(self, order: &Order<'_>) -> Result<Created, Unused> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let text = match encode(order) {
            Ok(t) => t,
            Err(error) => {
                return Err(Unused {
                    error,
                    spare: Box::new(self),
                    sent: false,
                });
            }
        };
        let mut fds = vec![order.listener];
        fds.extend(order.ruleset);
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut ancillary = SendAncillaryBuffer::new(&mut space);
        if !ancillary.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(Unused {
                error: io::Error::other("no room for the order's descriptors"),
                spare: Box::new(self),
                sent: false,
            });
        }
        let sent = rustix::net::sendmsg(
            self.order.as_fd(),
            &[io::IoSlice::new(&text)],
            &mut ancillary,
            SendFlags::NOSIGNAL,
        )
        .map_err(io::Error::from);
        match sent {
            Ok(n) if n == text.len() => Ok(Created {
                child: self.child,
                control: self.control,
                cgroup: self.cgroup,
                beat: self.beat,
            }),
            Ok(n) => Err(Unused {
                error: io::Error::other(format!(
                    "the order went out short: {n} of {} bytes",
                    text.len()
                )),
                spare: Box::new(self),
                sent: true,
            }),
            Err(error) => Err(Unused {
                error,
                spare: Box::new(self),
                sent: true,
            }),
        }
    }
}

/// The order as the spare reads it (`logos-host/src/spare.rs` documents the format).
fn encode(order: &Order<'_>) -> io::Result<Vec<u8>> {
    let text = |what: &str, s: &std::ffi::OsStr| {
        s.to_str().map(str::to_owned).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} {s:?} is not UTF-8"),
            )
        })
    };
    let env = order
        .env
        .iter()
        .map(|(k, v)| {
            Ok(serde_json::json!([
                text("variable", k)?,
                text(&format!("{k:?}"), v)?
            ]))
        })
        .collect::<io::Result<Vec<_>>>()?;
    let mut limits = serde_json::Map::new();
    let sys::Limits {
        address_space,
        open_files,
        processes,
    } = order.limits;
    for (key, value) in [
        ("address_space", address_space),
        ("open_files", open_files),
        ("processes", processes),
    ] {
        if let Some(v) = value {
            limits.insert(key.to_owned(), v.into());
        }
    }
    let doc = serde_json::json!({
        "module": text("library", order.library.as_os_str())?,
        "name": order.name,
        "version": order.version,
        "cwd": text("data dir", order.cwd.as_os_str())?,
        "env": env,
        "limits": limits,
        "ruleset": order.ruleset.is_some(),
        "seccomp": order.seccomp.map(sys::SeccompProgram::words).unwrap_or_default(),
    });
    serde_json::to_vec(&doc).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::{Order, encode};
    use std::ffi::OsString;
    use std::os::fd::AsFd;
    use std::os::unix::ffi::OsStringExt;
    use std::path::Path;

    #[test]
    fn the_order_names_everything_and_refuses_what_json_cannot_carry() {
        let listener = std::fs::File::open("/dev/null").unwrap();
        let env = vec![(OsString::from("LOGOS_MODULE"), OsString::from("calc"))];
        let mut order = Order {
            library: Path::new("/m/libcalc.so"),
            name: "calc",
            version: "1.2.0".into(),
            cwd: Path::new("/data/calc"),
            env: &env,
            limits: crate::sys::Limits {
                open_files: Some(64),
                ..Default::default()
            },
            seccomp: None,
            listener: listener.as_fd(),
            ruleset: None,
        };
        let doc: serde_json::Value = serde_json::from_slice(&encode(&order).unwrap()).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({
                "module": "/m/libcalc.so", "name": "calc", "version": "1.2.0",
                "cwd": "/data/calc", "env": [["LOGOS_MODULE", "calc"]],
                "limits": {"open_files": 64}, "ruleset": false, "seccomp": [],
            })
        );
        // Not UTF-8: the start goes the cold way, which passes bytes as they are.
        let odd = vec![(OsString::from("X"), OsString::from_vec(vec![0xff, 0xfe]))];
        order.env = &odd;
        let e = encode(&order).expect_err("not UTF-8");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("\"X\""), "{e}");
    }
}
