//! Starting one module process per the module process contract (docs/architecture.md).
//!
//! Owns turning a manifest into a running, handshaken process: the control socketpair (fd 3),
//! the bound listening socket (fd 4), the command line (`logos_host` for a library, the
//! executable otherwise), the environment (an allowlist, never the runtime dir), the Landlock
//! ruleset and cgroup, resource limits, output capture, and waiting for the module's `hello`
//! while watching for an early exit or the start timeout. A library module is handed to the
//! spare host kept for it when there is one (`spare.rs`: the same descriptors, environment
//! and confinement, sent as an order), else started the cold way. Never decides what to do
//! after a failure (that is `supervisor/mod.rs`) and never accepts the handshake itself.
//!
//! The environment starts empty: a module gets `PATH`, `LANG` and `LOGOS_SHM` from the core's
//! environment (when set), its own `LOGOS_*` variables, and the `env` of its configuration. Nothing else
//! of the operator's environment reaches it, in particular not `LOGOS_RUNTIME_DIR` or anything
//! else naming where the operator's client token lives.

use crate::error::Error;
use crate::manifest::{Manifest, ModuleKind};
use crate::registry::ExitReport;
use crate::supervisor::child::{Spawn, Spawned};
use crate::supervisor::output::{self, Pipe, StderrTail};
use crate::supervisor::spare::{Next, Spares};
use crate::sys::{self, Cgroup, ChildSetup, Limits, ModuleChild as Child};
use futures::future::BoxFuture;
use logos_session::{BeatWatch, Config as SessionConfig};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime};
use tokio::task::JoinHandle;

/// How long a process whose control connection closed during the handshake has to exit by
/// itself before it is killed.
const EXIT_GRACE: Duration = Duration::from_millis(200);

/// Everything needed to start one module.
#[derive(Debug)]
pub(crate) struct SpawnRequest<'a> {
    pub manifest: &'a Manifest,
    /// The `logos_host` binary, for library modules.
    pub host: &'a Path,
    pub runtime_dir: &'a Path,
    /// Paths besides the runtime dir a confined module may not read (operator tokens).
    pub hidden: &'a [PathBuf],
    pub data_dir: PathBuf,
    pub socket_path: PathBuf,
    pub env: &'a [(String, String)],
    pub limits: Limits,
    pub log_filter: &'a str,
    pub start_timeout: Duration,
    /// The heartbeat interval: how often the module counts in its heartbeat page.
    pub heartbeat: Duration,
    pub session: SessionConfig,
    /// Apply the module's Landlock ruleset (where the kernel has Landlock).
    pub confine: bool,
    /// Refuse to start the module when it would run unconfined.
    pub strict: bool,
    /// The operator's file system grant for this module.
    pub grant: &'a crate::builder::FsGrant,
    /// The operator's network grant for this module.
    pub network: bool,
    /// Data dirs of the protected modules other than this one.
    pub protected_data: Vec<PathBuf>,
    /// The operator confirmed this module as protected.
    pub protected: bool,
    /// How the process may be created (`clone3` into its cgroup, or always the fallback).
    pub spawn_mode: sys::SpawnMode,
    /// The core's kept Landlock rulesets.
    pub rulesets: &'a sys::RulesetCache,
}

/// The Landlock ABI that scopes signals to a module's own domain.
const SIGNAL_SCOPE_ABI: u32 = 6;

/// Variables of the core's environment a module inherits (besides its own `LOGOS_*` ones and
/// its configured `env`). `LOGOS_SHM` is the operator's switch for shared frames
/// (docs/protocol.md §2.1), which only works if both ends of a connection see it.
const INHERITED_ENV: [&str; 3] = ["PATH", "LANG", "LOGOS_SHM"];

/// Real module processes: [`spawn`] behind the supervisor's [`Spawn`] seam, with the spare
/// host it keeps for the next library module (`spare.rs`).
#[derive(Debug, Default)]
pub(crate) struct Os {
    spares: Spares,
}

impl Spawn for Os {
    fn spawn<'a>(&'a self, req: SpawnRequest<'a>) -> BoxFuture<'a, Result<Spawned, Failure>> {
        Box::pin(spawn(req, &self.spares))
    }

    fn prepare(&self, next: Next) {
        self.spares.prepare(next);
    }

    fn release(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.spares.release())
    }
}

/// A module process as it is created (cold, or from a spare), before its `hello`.
pub(crate) struct Created {
    pub child: Child,
    /// The core's end of its control connection.
    pub control: std::os::unix::net::UnixStream,
    pub cgroup: Option<Cgroup>,
    /// The core's end of its heartbeat page (its fd 5).
    pub beat: BeatWatch,
}

/// A module process whose `hello` has arrived.
pub(crate) struct Process {
    child: Child,
    pid: u32,
    stderr: StderrTail,
    /// The stdout and stderr forwarders; they end when every writer of the pipes is gone.
    forwarders: Vec<JoinHandle<()>>,
    spawned_at: Instant,
    /// The module's cgroup, when the core can make one: dropping it kills everything left in
    /// it, so keep it until the process has been reaped.
    cgroup: Option<Cgroup>,
}

impl super::child::Child for Process {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn signal(&mut self, sig: sys::Signal) {
        // `id()` is `None` once the child has been reaped: its pid may be someone else's.
        if let Some(pid) = self.child.id() {
            sys::kill_group(pid, sig);
        }
    }

    fn wait(&mut self) -> BoxFuture<'_, ExitStatus> {
        Box::pin(async move {
            loop {
                match self.child.wait().await {
                    Ok(s) => return s,
                    Err(e) => {
                        tracing::error!("waiting for module process failed: {e}");
                        let _ = self.child.start_kill();
                    }
                }
            }
        })
    }

    fn finish(self: Box<Self>, status: ExitStatus) -> BoxFuture<'static, ExitReport> {
        Box::pin(async move {
            let Process {
                pid,
                stderr,
                forwarders,
                spawned_at,
                cgroup,
                ..
            } = *self;
            // Whatever the module started dies with it (a module dies alone, and leaves nothing
            // behind). The group cannot have been reused yet: a group id stays taken while any
            // member lives, and the leader was reaped only just now.
            sys::kill_group(pid, sys::Signal::Kill);
            // Children that left the group with setsid are still in the cgroup.
            drop(cgroup);
            // The last lines it wrote may still be in the pipe: read them for the report.
            let tail = drain_tail(forwarders, &stderr).await;
            report(status, spawned_at, tail)
        })
    }

    fn abandon(mut self: Box<Self>) -> BoxFuture<'static, Vec<String>> {
        Box::pin(async move {
            kill_and_reap(&mut self.child).await;
            self.stderr.snapshot()
        })
    }
}

/// Why a start failed, and how the process ended if it exited by itself before it was ready
/// (a crash at start, reported like any crash).
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: Error,
    pub exit: Option<ExitReport>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure { error, exit: None }
    }
}

/// Logs, once per core start, how modules will be confined: a warning when they will not be,
/// since then any module can read the operator's client token and act as the operator.
pub(crate) fn report_confinement(landlock: bool) {
    match sys::confinement(landlock) {
        sys::Confinement::None if !landlock => tracing::warn!(
            "Landlock is turned off for modules (LOGOS_LANDLOCK=off or Builder::landlock(false)): modules can read the operator's client token and act as the operator"
        ),
        sys::Confinement::None => tracing::warn!(
            "this kernel has no Landlock: modules can read the operator's client token and act as the operator; run a kernel with Landlock (Linux 5.13+, `lsm=...,landlock`) to confine them"
        ),
        level => tracing::info!(confinement = %level, "modules run confined"),
    }
}

/// Starts the process and waits for its `hello`.
///
/// # Errors
/// `Error::Spawn` if the process cannot be created, `Error::StartFailed` if it exits or breaks
/// the handshake, `Error::StartTimeout` if no `hello` arrives in time; the latter two carry the
/// process's last stderr lines. The process is killed and reaped on every error path. When it
/// exited by itself before its `hello`, [`Failure::exit`] says how.
pub(crate) async fn spawn(req: SpawnRequest<'_>, spares: &Spares) -> Result<Spawned, Failure> {
    let name = req.manifest.name.as_str().to_owned();
    let spawn_err = |what: &str, e: std::io::Error| {
        Failure::from(Error::Spawn {
            module: name.clone(),
            reason: format!("{what}: {e}"),
        })
    };

    std::fs::create_dir_all(&req.data_dir)
        .map_err(|e| spawn_err(&format!("creating data dir {}", req.data_dir.display()), e))?;
    let listener = bind_listener(&req.socket_path)
        .map_err(|e| spawn_err(&format!("binding {}", req.socket_path.display()), e))?;
    let (ruleset, seccomp) = confine(&req, &name).map_err(Failure::from)?;
    let env = module_env(&req, &name);
    let spared = match req.manifest.kind() {
        ModuleKind::Library => spares.take(req.host).await,
        ModuleKind::Executable => None,
    };
    let spawned_at = Instant::now();
    let assigned = match spared {
        None => None,
        Some(spare) => {
            use std::os::fd::AsFd;
            let order = super::spare::Order {
                library: &req.manifest.main,
                name: &name,
                version: req.manifest.version.to_string(),
                cwd: &req.data_dir,
                env: &env,
                limits: req.limits,
                seccomp: seccomp.as_ref(),
                listener: listener.as_fd(),
                ruleset: ruleset.as_ref().map(|r| r.0.as_fd()),
            };
            match spare.assign(&order) {
                Ok(assigned) => Some(assigned),
                Err(unused) => {
                    tracing::debug!(module = %name, "the spare host cannot take this order: {}; starting the cold way", unused.error);
                    spares.unused(unused).await;
                    None
                }
            }
        }
    };
    let from_spare = assigned.is_some();
    let Created {
        mut child,
        control: core_end,
        cgroup,
        beat,
    } = match assigned {
        Some(assigned) => assigned,
        None => cold(&req, &name, env, listener, ruleset, seccomp).map_err(|e| {
            spawn_err(
                &format!("starting {}", command_text(req.manifest, req.host)),
                e,
            )
        })?,
    };
    let pid = child.id().unwrap_or(0);
    tracing::debug!(module = %name, pid, created = ?child.created(), from_spare, "module process started");

    let stderr = StderrTail::default();
    let mut forwarders: Vec<JoinHandle<()>> = Vec::new();
    if let Some(out) = child.stdout.take() {
        forwarders.push(tokio::spawn(output::forward(
            name.clone(),
            Pipe::Stdout,
            out,
            stderr.clone(),
        )));
    }
    if let Some(err) = child.stderr.take() {
        forwarders.push(tokio::spawn(output::forward(
            name.clone(),
            Pipe::Stderr,
            err,
            stderr.clone(),
        )));
    }

    let stream = core_end
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(core_end))
        .map_err(|e| spawn_err("control socket", e))?;
    let mut cfg = req.session.clone();
    cfg.handshake_timeout = req.start_timeout;
    // Only this process holds the other end, so its hello (which carries the module's whole
    // interface) is not a pre-authentication frame: the full frame cap applies.
    cfg.max_handshake_frame = cfg.max_frame;

    let outcome = tokio::select! {
        hello = logos_session::read_hello(stream, cfg) => Ok(hello),
        status = child.wait() => Err(status),
    };
    match outcome {
        Ok(Ok(pending)) => Ok(Spawned {
            from_spare,
            beat: Some(beat),
            child: Box::new(Process {
                child,
                pid,
                stderr,
                forwarders,
                spawned_at,
                cgroup,
            }),
            pending,
        }),
        Ok(Err(logos_session::SessionError::HandshakeTimeout(_))) => {
            kill_and_reap(&mut child).await;
            let tail = drain_tail(forwarders, &stderr).await;
            Err(Error::StartTimeout {
                module: name,
                timeout: req.start_timeout,
                stderr_tail: tail,
            }
            .into())
        }
        Ok(Err(e)) => {
            // A control connection that closes or breaks usually means the process is
            // exiting: give it a moment, so a crash at start is reported with its own status.
            match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                Ok(Ok(status)) => {
                    Err(crashed_at_start(name, pid, status, spawned_at, forwarders, &stderr).await)
                }
                _ => {
                    let status = kill_and_reap(&mut child).await;
                    let tail = drain_tail(forwarders, &stderr).await;
                    Err(Error::StartFailed {
                        module: name,
                        reason: format!("handshake failed: {e}"),
                        status: status.map(|s| report(s, spawned_at, Vec::new()).status_text()),
                        stderr_tail: tail,
                    }
                    .into())
                }
            }
        }
        Err(Ok(status)) => {
            Err(crashed_at_start(name, pid, status, spawned_at, forwarders, &stderr).await)
        }
        Err(Err(e)) => {
            kill_and_reap(&mut child).await;
            let tail = drain_tail(forwarders, &stderr).await;
            Err(Error::StartFailed {
                module: name,
                reason: format!("waiting for the process failed: {e}"),
                status: None,
                stderr_tail: tail,
            }
            .into())
        }
    }
}

/// Starts the module's process the cold way: a new process that `exec`s `logos_host` or the
/// module's program, confined before the `exec`. Returns it with the core's end of its
/// control connection and its cgroup.
fn cold(
    req: &SpawnRequest<'_>,
    name: &str,
    env: Vec<(OsString, OsString)>,
    listener: std::os::unix::net::UnixListener,
    ruleset: Option<sys::PreparedRuleset>,
    seccomp: Option<sys::SeccompProgram>,
) -> std::io::Result<Created> {
    let (core_end, child_end) = std::os::unix::net::UnixStream::pair()?;
    let (beat, child_beat) = BeatWatch::create()?;
    let cgroup = Cgroup::create(req.runtime_dir, name);
    let (program, args) = match req.manifest.kind() {
        ModuleKind::Library => (
            req.host.to_path_buf(),
            vec![
                "--module".into(),
                req.manifest.main.clone().into_os_string(),
                "--name".into(),
                name.into(),
                "--module-version".into(),
                req.manifest.version.to_string().into(),
            ],
        ),
        ModuleKind::Executable => (req.manifest.main.clone(), Vec::new()),
    };
    let launch = sys::Launch {
        program,
        args,
        env,
        cwd: req.data_dir.clone(),
    };
    let setup = ChildSetup {
        fds: [child_end.into(), listener.into(), child_beat],
        limits: req.limits,
        ruleset,
        seccomp,
        drop_capabilities: sys::uid() == 0,
        cgroup: None,
    };
    // The child-side descriptors are moved into the setup and closed in this process once the
    // child has them.
    let child = sys::spawn_module(&launch, setup, cgroup.as_ref(), req.spawn_mode)?;
    Ok(Created {
        child,
        control: core_end,
        cgroup,
        beat,
    })
}

/// The variables of the core's environment every module inherits.
pub(crate) fn inherited_env() -> Vec<(OsString, OsString)> {
    INHERITED_ENV
        .iter()
        .filter_map(|var| Some((OsString::from(var), std::env::var_os(var)?)))
        .collect()
}

/// The module's whole environment: the allowlist of the core's, its `LOGOS_*` variables, its
/// configured `env` (which may override the others).
fn module_env(req: &SpawnRequest<'_>, name: &str) -> Vec<(OsString, OsString)> {
    let mut env = inherited_env();
    env.extend([
        ("LOGOS_MODULE".into(), name.into()),
        (
            "LOGOS_CONTROL_FD".into(),
            sys::CONTROL_FD.to_string().into(),
        ),
        ("LOGOS_LISTEN_FD".into(), sys::LISTEN_FD.to_string().into()),
        ("LOGOS_BEAT_FD".into(), sys::BEAT_FD.to_string().into()),
        (
            "LOGOS_HEARTBEAT_MS".into(),
            req.heartbeat.as_millis().max(1).to_string().into(),
        ),
        (
            "LOGOS_DATA_DIR".into(),
            req.data_dir.clone().into_os_string(),
        ),
        ("LOGOS_LOG".into(), req.log_filter.into()),
    ]);
    env.extend(req.env.iter().map(|(k, v)| (k.into(), v.into())));
    if req.protected {
        // Asks the SDK to make the process non-dumpable after exec (`exec` resets the flag).
        env.push(("LOGOS_PROTECTED".into(), "1".into()));
    }
    // One entry per name, the last one set winning, as `Command::env` does.
    let mut seen = std::collections::HashSet::new();
    let mut unique: Vec<(OsString, OsString)> = env
        .into_iter()
        .rev()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect();
    unique.reverse();
    unique
}

/// The module's Landlock ruleset (`None` where it runs without Landlock, refused in strict
/// mode) and seccomp filter (`None` where the kernel has no seccomp, also refused in strict
/// mode).
fn confine(
    req: &SpawnRequest<'_>,
    name: &str,
) -> Result<(Option<sys::PreparedRuleset>, Option<sys::SeccompProgram>), Error> {
    let withheld: Vec<&Path> = std::iter::once(req.runtime_dir)
        .chain(req.hidden.iter().map(PathBuf::as_path))
        .collect();
    // Checked even where nothing will enforce it: a declaration the operator did not grant
    // is refused the same on every kernel.
    let plan = crate::confine::plan(&crate::confine::Request {
        manifest: req.manifest,
        data_dir: &req.data_dir,
        host: req.host,
        withheld: &withheld,
        protected_data: &req.protected_data,
        grant: req.grant,
    })?;
    let network = crate::confine::network(req.manifest, req.network)?;
    if req.manifest.protected && !req.protected {
        return Err(Error::Unconfined {
            module: name.to_owned(),
            reason: format!(
                "its metadata says \"protected\": true and the operator has not confirmed it; confirm it with [modules.{name}] protected = true and list the modules that may call its write methods with writers = [...] (ModuleSettings::protected, ::writers), or remove it from {}",
                req.manifest.path.display()
            ),
        });
    }
    if req.protected {
        // Signals between modules of one uid are stopped only by Landlock's scoping.
        let level = sys::confinement(req.confine);
        if !matches!(level, sys::Confinement::Landlock { abi } if abi >= SIGNAL_SCOPE_ABI) {
            return Err(Error::Unconfined {
                module: name.to_owned(),
                reason: format!(
                    "it is protected, and with confinement {level} nothing keeps other modules from signalling it; protected modules need Landlock ABI {SIGNAL_SCOPE_ABI} or newer (Linux 6.12+)"
                ),
            });
        }
    }
    let ruleset = if req.confine {
        req.rulesets
            .prepare(&plan, network)
            .map_err(|e| Error::Spawn {
                module: name.to_owned(),
                reason: format!("preparing its Landlock ruleset: {e}"),
            })?
    } else {
        None
    };
    if ruleset.is_none() && req.strict {
        let why = if req.confine {
            "this kernel has no Landlock"
        } else {
            "Landlock is turned off (LOGOS_LANDLOCK=off or Builder::landlock(false))"
        };
        return Err(Error::Unconfined {
            module: name.to_owned(),
            reason: format!(
                "strict_confinement is on and {why}, so it would run unconfined; run a kernel with Landlock (Linux 5.13+, `lsm=...,landlock`) or turn strict_confinement off"
            ),
        });
    }
    let seccomp = if sys::seccomp_available() {
        Some(sys::seccomp_program(network).map_err(|e| Error::Spawn {
            module: name.to_owned(),
            reason: format!("compiling its seccomp filter: {e}"),
        })?)
    } else if req.strict {
        return Err(Error::Unconfined {
            module: name.to_owned(),
            reason: "strict_confinement is on and this kernel has no seccomp filters, so nothing would keep it from ptrace, mount or the network; run a kernel with CONFIG_SECCOMP_FILTER or turn strict_confinement off".to_owned(),
        });
    } else {
        None
    };
    Ok((ruleset, seccomp))
}

/// The failure of a process that exited by itself before its `hello`: a crash at start.
async fn crashed_at_start(
    name: String,
    pid: u32,
    status: ExitStatus,
    spawned_at: Instant,
    forwarders: Vec<JoinHandle<()>>,
    stderr: &StderrTail,
) -> Failure {
    // Whatever it started dies with it, so nothing holds the pipes open.
    sys::kill_group(pid, sys::Signal::Kill);
    let tail = drain_tail(forwarders, stderr).await;
    let exit = report(status, spawned_at, tail.clone());
    Failure {
        error: Error::StartFailed {
            module: name,
            reason: "exited before it became ready".to_owned(),
            status: Some(exit.status_text()),
            stderr_tail: tail,
        },
        exit: Some(exit),
    }
}

/// The command line, for messages.
fn command_text(m: &Manifest, host: &Path) -> String {
    match m.kind() {
        ModuleKind::Library => format!(
            "{} --module {} --name {} --module-version {}",
            host.display(),
            m.main.display(),
            m.name.as_str(),
            m.version
        ),
        ModuleKind::Executable => m.main.display().to_string(),
    }
}

/// Binds the module's listening socket with mode 0600, replacing a stale file.
fn bind_listener(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Kills the process group and reaps the child.
async fn kill_and_reap(child: &mut Child) -> Option<ExitStatus> {
    if let Some(pid) = child.id() {
        sys::kill_group(pid, sys::Signal::Kill);
    }
    let _ = child.start_kill();
    child.wait().await.ok()
}

/// Waits briefly for the output forwarders to reach end of file, then returns the stderr tail.
async fn drain_tail(forwarders: Vec<JoinHandle<()>>, tail: &StderrTail) -> Vec<String> {
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        for f in forwarders {
            let _ = f.await;
        }
    })
    .await;
    tail.snapshot()
}

/// Turns an exit status into a report.
fn report(status: ExitStatus, since: Instant, stderr_tail: Vec<String>) -> ExitReport {
    use std::os::unix::process::ExitStatusExt;
    ExitReport {
        code: status.code(),
        signal: status.signal(),
        uptime: since.elapsed(),
        stderr_tail,
        at: SystemTime::now(),
    }
}
