//! The one core behind the C API, and the tokio runtime it runs on.
//!
//! Owns the process-wide state: the settings gathered before start (modules dirs, `logos_host`),
//! and once started the [`logos::Core`], the multi-thread runtime that drives it (created by
//! start, shut down by cleanup), and the private runtime dir. Every operation takes a clone of
//! the running core out of the state lock and runs on the runtime's worker threads, never on the
//! caller's thread: module processes carry a parent-death signal tied to the thread that spawned
//! them, and the workers live exactly as long as the core; a short-lived application thread
//! that happened to load a module would otherwise take the module down when it exits. The
//! caller waits on a plain channel (polling it briefly, then blocking), so a call that the core
//! drops (cleanup under it) ends with an error instead of a hang, and a host that calls us from inside its own async runtime is not
//! refused. The state lock is never held across an operation, except by start (so two starts
//! never race); cleanup takes the core out first, so concurrent calls fail with "not started"
//! rather than wait.
//!
//! Settings (documented in docs/c-api.md): runtime dir `$LOGOS_RUNTIME_DIR`, else a fresh
//! private temp dir per start, removed at cleanup (several applications, or an application and a
//! `logoscore run`, never collide); data dir `$LOGOS_DATA_DIR`, else the core's default;
//! `logos_host` as `host.rs` finds it; `$LOGOS_LOG` (a tracing filter) prints the core's and the
//! modules' logs on stderr.

use crate::access_policy;
use crate::callback::{self, QUEUE, Reply};
use crate::error::Error;
use crate::host;
use crate::introspect::{self, Graph, ModuleRow, Usage};
use crate::strings::Callback;
use logos::{CORE_MODULE, Core, Value};
use std::ffi::c_int;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// Worker threads of the core's runtime: the core's work is I/O and bookkeeping.
const WORKERS: usize = 2;
/// How long a C caller's thread polls for an operation's answer before it sleeps: the same
/// window as `logos_session::Config::busy_poll`, for the same reason (docs/performance.md).
const ANSWER_POLL: Duration = Duration::from_micros(50);
/// How long cleanup waits for the runtime's tasks to end after the core has shut down.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(5);

/// Settings gathered before start.
#[derive(Debug, Default)]
struct Config {
    modules_dirs: Vec<PathBuf>,
    host: Option<PathBuf>,
    /// `logos_core_set_persistence_base_path`: the data dir, over `$LOGOS_DATA_DIR`.
    data_dir: Option<PathBuf>,
    /// `logos_core_set_access_policy`: targets and the only callers they accept.
    restrictions: Vec<access_policy::Restriction>,
}

/// A started core.
struct Running {
    runtime: tokio::runtime::Runtime,
    live: Live,
    /// The private runtime dir when `$LOGOS_RUNTIME_DIR` is not set; removed on drop.
    temp: Option<tempfile::TempDir>,
}

/// What an operation needs of the running core; cheap to clone out of the lock.
#[derive(Clone)]
struct Live {
    core: Core,
    rt: tokio::runtime::Handle,
    /// Room for events waiting for delivery (see `callback::Budget`).
    budget: Arc<callback::Budget>,
    /// Set when the core has stopped (cleanup, or `logoscore stop` from outside).
    stopped: Arc<AtomicBool>,
    /// Modules dirs added after start: the core scans only those it started with, so these
    /// are registered module by module, again at each refresh.
    added_dirs: Arc<Mutex<Vec<PathBuf>>>,
    /// CPU time per module process at the last `logos_core_get_module_stats`.
    cpu_samples: Arc<Mutex<introspect::Samples>>,
}

#[derive(Default)]
struct Global {
    config: Config,
    running: Option<Running>,
}

static GLOBAL: Mutex<Option<Global>> = Mutex::new(None);

/// The state, created on first use (`logos_core_initialize` or any call that implies it).
fn global() -> MutexGuard<'static, Option<Global>> {
    // Every update below is a single assignment, so a poisoned lock holds consistent data.
    GLOBAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn with_global<R>(f: impl FnOnce(&mut Global) -> R) -> R {
    let mut g = global();
    f(g.get_or_insert_with(Global::default))
}

/// Locks one of `Live`'s small tables (each update is a single assignment or push, so a
/// poisoned lock holds consistent data).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running core, or [`Error::NotStarted`].
fn live() -> Result<Live, Error> {
    with_global(|g| g.running.as_ref().map(|r| r.live.clone())).ok_or(Error::NotStarted)
}

impl Live {
    /// Runs `fut` on the core's runtime and waits for it on this thread.
    ///
    /// # Errors
    /// [`Error::CleanedUp`] when the runtime drops the task unfinished (cleanup).
    fn run<T: Send + 'static>(
        &self,
        what: impl Into<String>,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, Error> {
        run_on(&self.rt, what, fut)
    }
}

fn run_on<T: Send + 'static>(
    rt: &tokio::runtime::Handle,
    what: impl Into<String>,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    // Most operations (a call above all) finish within microseconds: poll for the answer
    // before sleeping, as the core's connections do after traffic (`busy_poll`), so the
    // answer does not also pay for waking this thread (tens of µs on an idle virtual CPU).
    // Yielding between tries leaves the CPU to the worker that produces the answer.
    let until = Instant::now() + ANSWER_POLL;
    while Instant::now() < until {
        match rx.try_recv() {
            Ok(v) => return Ok(v),
            Err(std::sync::mpsc::TryRecvError::Empty) => std::thread::yield_now(),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                return Err(Error::CleanedUp { what: what.into() });
            }
        }
    }
    rx.recv()
        .map_err(|_| Error::CleanedUp { what: what.into() })
}

/// Polls `fut` to completion on the calling thread, inside the runtime's context: the
/// sockets and timers it uses are driven by the runtime's workers, and whatever it spawns
/// runs there, but the future itself runs here, so a call costs no wake-up of a worker to
/// start it and none of this thread to end it when the answer comes within [`ANSWER_POLL`]
/// (this thread polls that long before it parks). Only for operations that start no
/// process (a module's parent-death signal follows the thread that spawned it). Give it an
/// `async` block: tokio timers and sockets must be made inside it, where the runtime's context
/// is entered, not before the call.
fn drive<T>(rt: &tokio::runtime::Handle, fut: impl Future<Output = T>) -> T {
    let _context = rt.enter();
    // This thread polls for the answer itself (below), so the connection's reader need not.
    let _polling = logos::PollingCaller::mark();
    let signal = Arc::new(Signal {
        woken: AtomicBool::new(false),
        thread: std::thread::current(),
    });
    let waker = std::task::Waker::from(Arc::clone(&signal));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        let until = Instant::now() + ANSWER_POLL;
        while !signal.woken.swap(false, Ordering::AcqRel) {
            if Instant::now() < until {
                // Read the connection the answer comes on here, rather than wait for a
                // worker thread to wake, read it and hand it over; nothing there: let
                // another thread (the peer, perhaps) have the CPU.
                if !logos::PollingCaller::read_now() {
                    std::thread::yield_now();
                }
            } else {
                // An unpark that came first is remembered: no wake-up is lost.
                std::thread::park();
            }
        }
    }
}

/// Wakes the thread that drives a future: a flag it polls, and an unpark for when it sleeps.
struct Signal {
    woken: AtomicBool,
    thread: std::thread::Thread,
}

impl std::task::Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Sets up the process-wide state; a no-op when it exists (also while started).
pub(crate) fn initialize() {
    with_global(|_| ());
}

/// Replaces the modules dirs with `dir`.
///
/// # Errors
/// [`Error::Started`], [`Error::Invalid`] when `dir` is not a directory.
pub(crate) fn set_modules_dir(dir: &str) -> Result<(), Error> {
    let dir = existing_dir(dir)?;
    with_global(|g| {
        if g.running.is_some() {
            return Err(Error::Started {
                function: "logos_core_set_plugins_dir",
            });
        }
        g.config.modules_dirs = vec![dir];
        Ok(())
    })
}

/// Adds `dir` to the modules dirs; once started, registers the modules found in it (except
/// those loaded now, which keep running as they are).
///
/// # Errors
/// [`Error::Invalid`] when `dir` is not a directory; once started, the registration errors
/// of its modules (the others are registered).
pub(crate) fn add_modules_dir(dir: &str) -> Result<(), Error> {
    let dir = existing_dir(dir)?;
    let running = with_global(|g| {
        if let Some(r) = &g.running {
            return Some(r.live.clone());
        }
        if !g.config.modules_dirs.contains(&dir) {
            g.config.modules_dirs.push(dir.clone());
        }
        None
    });
    let Some(live) = running else {
        return Ok(());
    };
    {
        let mut added = lock(&live.added_dirs);
        if !added.contains(&dir) {
            added.push(dir.clone());
        }
    }
    register_dir(&live, &dir)
}

/// Registers every module in `dir` that is not loaded now.
///
/// # Errors
/// [`Error::Os`] when `dir` cannot be read, [`Error::Invalid`] listing the modules that could
/// not be registered (the others are).
fn register_dir(live: &Live, dir: &Path) -> Result<(), Error> {
    let mut failures = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Os {
        what: format!("reading modules dir {}", dir.display()),
        source,
    })?;
    let mut module_dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("metadata.json").is_file())
        .collect();
    module_dirs.sort();
    for m in module_dirs {
        if loaded_from(live, &m) {
            continue;
        }
        if let Err(e) = register(live, &m) {
            failures.push(e.to_string());
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid {
            name: "plugins_dir",
            reason: format!(
                "some modules in {} were not registered: {}",
                dir.display(),
                failures.join("; ")
            ),
        })
    }
}

/// Whether the module in `dir` is loaded now (it keeps running on the metadata it started
/// with; registering it again would be refused).
fn loaded_from(live: &Live, dir: &Path) -> bool {
    let name = std::fs::read_to_string(dir.join("metadata.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|j| j.get("name").and_then(|n| n.as_str()).map(str::to_owned));
    name.is_some_and(|n| live.core.module(&n).is_ok_and(|m| m.state.is_loaded()))
}

fn existing_dir(dir: &str) -> Result<PathBuf, Error> {
    let path = PathBuf::from(dir);
    if path.is_dir() {
        Ok(std::fs::canonicalize(&path).unwrap_or(path))
    } else {
        Err(Error::Invalid {
            name: "plugins_dir",
            reason: format!("{dir:?} is not a directory; pass a dir holding <name>/metadata.json"),
        })
    }
}

/// Uses `path` as `logos_host`.
///
/// # Errors
/// [`Error::Started`], [`Error::Invalid`] when `path` is not a file.
pub(crate) fn set_host_binary(path: &str) -> Result<(), Error> {
    let p = PathBuf::from(path);
    if !p.is_file() {
        return Err(Error::Invalid {
            name: "path",
            reason: format!("{path:?} is not a file; pass the path of the logos_host executable"),
        });
    }
    with_global(|g| {
        if g.running.is_some() {
            return Err(Error::Started {
                function: "logos_core_set_host_binary",
            });
        }
        g.config.host = Some(p);
        Ok(())
    })
}

/// Starts the core: runtime, runtime dir, discovery, control endpoint. A no-op when started.
///
/// # Errors
/// [`Error::Os`] when threads or the temp dir cannot be created; the core's start errors
/// (e.g. another core already serves `$LOGOS_RUNTIME_DIR`).
pub(crate) fn start() -> Result<(), Error> {
    let mut guard = global();
    let g = guard.get_or_insert_with(Global::default);
    if g.running.is_some() {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name("logos-core")
        .enable_all()
        .build()
        .map_err(|source| Error::Os {
            what: "starting the core's threads".to_owned(),
            source,
        })?;
    let (runtime_dir, temp) = match std::env::var_os("LOGOS_RUNTIME_DIR").filter(|d| !d.is_empty())
    {
        Some(d) => (PathBuf::from(d), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("logos-core-")
                .permissions(std::fs::Permissions::from_mode(0o700))
                .tempdir()
                .map_err(|source| Error::Os {
                    what: "creating a private runtime dir in the temp dir".to_owned(),
                    source,
                })?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let mut builder = Core::builder().runtime_dir(&runtime_dir);
    for d in &g.config.modules_dirs {
        builder = builder.modules_dir(d);
    }
    if let Some(d) = g.config.data_dir.clone().or_else(|| {
        std::env::var_os("LOGOS_DATA_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
    }) {
        builder = builder.data_dir(d);
    }
    for (target, callers) in &g.config.restrictions {
        builder = builder.restrict(target, callers);
    }
    if let Some(filter) = std::env::var("LOGOS_LOG")
        .ok()
        .filter(|f| !f.trim().is_empty())
    {
        // Logs of the core and its modules on stderr, for people debugging an application;
        // an application that installed its own tracing subscriber keeps it.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(&filter))
            .with_writer(std::io::stderr)
            .try_init();
        builder = builder.module_log(filter);
    }
    if let Some(h) = host::find(g.config.host.as_deref(), &g.config.modules_dirs) {
        builder = builder.host_binary(h);
    }
    let core = builder.build()?;
    let core = run_on(runtime.handle(), "starting the core", core.start())??;
    let stopped = Arc::new(AtomicBool::new(false));
    let (watch, flag) = (core.clone(), Arc::clone(&stopped));
    runtime.spawn(async move {
        watch.stopped().await;
        // Stopped from outside (`logoscore stop`): end a waiting exec. Cleanup sets the flag
        // before it stops the core and ends the epoch itself.
        if !flag.swap(true, Ordering::SeqCst) {
            QUEUE.end_epoch();
        }
    });
    g.running = Some(Running {
        live: Live {
            core,
            rt: runtime.handle().clone(),
            budget: callback::Budget::new(),
            stopped,
            added_dirs: Arc::default(),
            cpu_samples: Arc::default(),
        },
        runtime,
        temp,
    });
    Ok(())
}

/// Stops every module, shuts the runtime down, removes the private runtime dir and forgets all
/// settings. A no-op when nothing was started.
pub(crate) fn cleanup() {
    let running = global().take().and_then(|g| g.running);
    // From here on no listener callback runs: the application may free their user_data once
    // cleanup returns (docs/c-api.md, "Threading and callbacks").
    QUEUE.forget_listeners();
    // Ends a waiting exec now, even when shutdown takes a while.
    QUEUE.end_epoch();
    let Some(Running {
        runtime,
        live,
        temp,
    }) = running
    else {
        return;
    };
    live.stopped.store(true, Ordering::SeqCst);
    let core = live.core.clone();
    // In-flight calls fail with `unavailable` as their modules stop, and their callbacks are
    // queued; anything the runtime then drops unfinished is reported by `Reply`'s drop.
    let _ = live.run("shutting down", async move { core.shutdown().await });
    drop(live);
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    drop(temp);
}

/// Blocks delivering callbacks until cleanup, an exit request, or the core stopping.
///
/// # Errors
/// [`Error::NotStarted`].
pub(crate) fn exec() -> Result<c_int, Error> {
    // Read the epoch before checking the core, so a cleanup in between is seen by exec.
    let epoch = QUEUE.epoch();
    let live = live()?;
    if live.stopped.load(Ordering::SeqCst) {
        return Ok(0);
    }
    drop(live);
    Ok(QUEUE.exec(epoch))
}

/// Names of the loaded modules (starting, ready, or restarting after a crash).
///
/// # Errors
/// [`Error::NotStarted`].
pub(crate) fn loaded() -> Result<Vec<String>, Error> {
    let live = live()?;
    Ok(live
        .core
        .modules()
        .into_iter()
        .filter(|m| m.state.is_loaded())
        .map(|m| m.name)
        .collect())
}

/// Names of every known module.
///
/// # Errors
/// [`Error::NotStarted`].
pub(crate) fn known() -> Result<Vec<String>, Error> {
    Ok(live()?.core.modules().into_iter().map(|m| m.name).collect())
}

/// Loads `name` and its dependencies; returns when all are ready.
///
/// # Errors
/// [`Error::NotStarted`], the core's load errors.
pub(crate) fn load(name: &str) -> Result<(), Error> {
    let live = live()?;
    let (core, n) = (live.core.clone(), name.to_owned());
    live.run(
        format!("loading {name}"),
        async move { core.load(&n).await },
    )??;
    Ok(())
}

/// Loads `name` in the background; `reply` gets `true` or the error.
///
/// # Errors
/// [`Error::NotStarted`] (also delivered to `reply`).
pub(crate) fn load_async(name: &str, reply: Reply) -> Result<(), Error> {
    let live = match live() {
        Ok(l) => l,
        Err(e) => {
            reply.fail(&e);
            return Err(e);
        }
    };
    let (core, n) = (live.core.clone(), name.to_owned());
    live.rt.spawn(async move {
        let outcome = core.load(&n).await.map(|()| Value::Bool(true));
        reply.send(outcome.map_err(Error::Core));
    });
    Ok(())
}

/// Unloads `name`; with `cascade`, its loaded dependents first (else they make it fail).
///
/// # Errors
/// [`Error::NotStarted`], the core's unload errors (e.g. loaded dependents).
pub(crate) fn unload(name: &str, cascade: bool) -> Result<(), Error> {
    let live = live()?;
    let (core, n) = (live.core.clone(), name.to_owned());
    live.run(format!("unloading {name}"), async move {
        core.unload(&n, cascade).await
    })??;
    Ok(())
}

/// Registers the module at `path` (its dir, its metadata.json, or its library file beside the
/// metadata); returns its name.
///
/// # Errors
/// [`Error::NotStarted`], the core's `processPlugin` errors.
pub(crate) fn process_plugin(path: &str) -> Result<String, Error> {
    let live = live()?;
    register(&live, Path::new(path))
}

fn register(live: &Live, path: &Path) -> Result<String, Error> {
    // The RFC's applications pass the plugin's library file; the metadata is beside it.
    let dir = if path.is_file() && path.file_name().is_some_and(|f| f != "metadata.json") {
        path.parent().unwrap_or(path)
    } else {
        path
    };
    let arg = Value::from(dir.to_string_lossy().into_owned());
    let core = live.core.clone();
    let name = live.run("registering a module", async move {
        core.call(CORE_MODULE, "processPlugin", vec![arg]).await
    })??;
    Ok(name.as_str().unwrap_or_default().to_owned())
}

/// The token for `key`: `"client"` (or `"core"`) gives the client token of the core's control
/// socket; module tokens are never handed out.
///
/// # Errors
/// [`Error::NotStarted`], [`Error::Token`] for a module, unknown_module for anything else.
pub(crate) fn token(key: &str) -> Result<String, Error> {
    let live = live()?;
    if key == "client" || key == CORE_MODULE {
        let path = live.core.client_token_path();
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Os {
            what: format!("reading the client token {}", path.display()),
            source,
        })?;
        return Ok(text.trim().to_owned());
    }
    live.core.manifest(key)?;
    Err(Error::Token {
        reason: format!(
            "tokens of module {key} are bound to one (caller, target) pair and held by modules only; the application calls {key} through logos_core_call_plugin_method* without a token, and logos_core_get_token(\"client\") gives the token of the core's control socket"
        ),
    })
}

/// The core's runtime dir (control socket `core.sock`, `client.token`).
///
/// # Errors
/// [`Error::NotStarted`].
pub(crate) fn runtime_dir() -> Result<String, Error> {
    Ok(live()?.core.runtime_dir().to_string_lossy().into_owned())
}

/// Calls `plugin.method(args)` in the background; `reply` gets the outcome.
///
/// # Errors
/// [`Error::NotStarted`] (also delivered to `reply`).
pub(crate) fn call_async(
    plugin: &str,
    method: &str,
    args: Vec<Value>,
    reply: Reply,
) -> Result<(), Error> {
    let live = match live() {
        Ok(l) => l,
        Err(e) => {
            reply.fail(&e);
            return Err(e);
        }
    };
    let (core, p, m) = (live.core.clone(), plugin.to_owned(), method.to_owned());
    live.rt.spawn(async move {
        let outcome = core.call(&p, &m, args).await;
        reply.send(outcome.map_err(Error::Core));
    });
    Ok(())
}

/// Calls `plugin.method(args)` and waits, at most `timeout_ms` when positive.
///
/// # Errors
/// [`Error::NotStarted`], [`Error::Timeout`], the call's error.
pub(crate) fn call(
    plugin: &str,
    method: &str,
    args: Vec<Value>,
    timeout_ms: i64,
) -> Result<Value, Error> {
    let live = live()?;
    let (core, p, m) = (live.core.clone(), plugin.to_owned(), method.to_owned());
    let deadline = u64::try_from(timeout_ms).ok().filter(|ms| *ms > 0);
    // A call starts no process and spawns nothing that must outlive it, so it is driven on
    // the caller's thread: no hand-off to a worker and back (see `drive`).
    drive(&live.rt, async move {
        let call = core.call(&p, &m, args);
        match deadline {
            None => call.await.map_err(Error::Core),
            Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), call).await {
                Ok(outcome) => outcome.map_err(Error::Core),
                Err(_) => Err(Error::Timeout {
                    target: p,
                    method: m,
                    ms,
                }),
            },
        }
    })
}

/// Subscribes `cb` to `event` of `plugin` (`""`: every event of it) until cleanup; from then
/// on no callback of it runs.
///
/// # Errors
/// [`Error::NotStarted`], unknown_module.
pub(crate) fn listen(plugin: &str, event: &str, cb: Callback) -> Result<(), Error> {
    // Before `live()`: a cleanup that starts in between makes this listener stale at once.
    let generation = QUEUE.listener_generation();
    let live = live()?;
    let (core, p, e) = (live.core.clone(), plugin.to_owned(), event.to_owned());
    let sub = live.run(format!("subscribing to {plugin}.{event}"), async move {
        core.subscribe(&p, &e)
    })??;
    live.rt.spawn(callback::forward(
        sub,
        cb,
        Arc::clone(&live.budget),
        generation,
        plugin.to_owned(),
        event.to_owned(),
    ));
    Ok(())
}

/// `logos_core_load_module`: makes sure `name` is loaded ("ensure loaded": already loaded is
/// success). With `with_dependencies`, loads what it needs first; without, its dependencies
/// must be loaded already.
///
/// # Errors
/// [`Error::NotStarted`], unknown_module, [`Error::DependenciesNotLoaded`], the core's load
/// errors.
pub(crate) fn load_module(name: &str, with_dependencies: bool) -> Result<(), Error> {
    let live = live()?;
    let manifest = live.core.manifest(name)?;
    if live.core.module(name)?.state.is_loaded() {
        return Ok(());
    }
    if !with_dependencies {
        let missing: Vec<String> = manifest
            .dependencies
            .keys()
            .map(|d| d.as_str())
            .filter(|d| !live.core.module(d).is_ok_and(|m| m.state.is_loaded()))
            .map(str::to_owned)
            .collect();
        if !missing.is_empty() {
            return Err(Error::DependenciesNotLoaded {
                module: name.to_owned(),
                missing,
            });
        }
    }
    drop(live);
    load(name)
}

/// The dependency graph of every known module.
fn graph(live: &Live) -> Graph {
    Graph::new(live.core.modules().into_iter().filter_map(|m| {
        let deps = live.core.manifest(&m.name).ok()?.dependencies;
        Some((m.name, deps.keys().map(|d| d.as_str().to_owned()).collect()))
    }))
}

/// What `name` depends on (`dependents`: what depends on it), directly or, with
/// `recursive`, transitively.
///
/// # Errors
/// [`Error::NotStarted`]; unknown_module (the reference answers an empty list, which the
/// caller returns beside this error).
pub(crate) fn relatives(
    name: &str,
    dependents: bool,
    recursive: bool,
) -> Result<Vec<String>, Error> {
    let live = live()?;
    let graph = graph(&live);
    if !graph.knows(name) {
        // unknown_module, with the closest name.
        live.core.manifest(name)?;
    }
    Ok(if dependents {
        graph.dependents(name, recursive)
    } else {
        graph.dependencies(name, recursive)
    })
}

/// `logos_core_get_modules_info`: every known module as JSON.
///
/// # Errors
/// [`Error::NotStarted`].
pub(crate) fn modules_info() -> Result<String, Error> {
    let live = live()?;
    let graph = graph(&live);
    let now = SystemTime::now();
    let rows: Vec<ModuleRow> = live
        .core
        .modules()
        .into_iter()
        .filter_map(|m| {
            let manifest = live.core.manifest(&m.name).ok()?;
            let loaded = m.state.is_loaded();
            let loaded_at = m
                .uptime
                .filter(|_| loaded)
                .and_then(|u| now.checked_sub(u))
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            Some(ModuleRow {
                version: m.version,
                state: m.state.as_str().to_owned(),
                loaded,
                path: manifest.main.to_string_lossy().into_owned(),
                loaded_at,
                metadata: manifest.raw,
                name: m.name,
            })
        })
        .collect();
    Ok(introspect::modules_info(&rows, &graph))
}

/// `logos_core_get_module_stats`: CPU and memory of every module process, as JSON.
///
/// # Errors
/// [`Error::NotStarted`], [`Error::CleanedUp`].
pub(crate) fn module_stats() -> Result<String, Error> {
    let live = live()?;
    let core = live.core.clone();
    let stats = live.run("collecting module stats", async move { core.stats().await })?;
    let usage: Vec<Usage> = stats
        .into_iter()
        .filter_map(|s| {
            Some(Usage {
                pid: s.pid?,
                name: s.name,
                cpu_time: s.cpu_time,
                rss_bytes: s.rss_bytes,
                threads: s.threads,
                uptime: s.uptime,
                calls: s.calls,
                errors: s.errors,
            })
        })
        .collect();
    let mut samples = lock(&live.cpu_samples);
    Ok(introspect::module_stats(
        &usage,
        &mut samples,
        Instant::now(),
    ))
}

/// `logos_core_set_persistence_base_path`: the parent of each module's data dir.
///
/// # Errors
/// [`Error::Started`], [`Error::Invalid`] for an empty path or one that is not a directory.
pub(crate) fn set_data_dir(path: &str) -> Result<(), Error> {
    // Relative to the application's working directory now, not to each module's later.
    let p = std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path));
    if path.is_empty() || (p.exists() && !p.is_dir()) {
        return Err(Error::Invalid {
            name: "path",
            reason: format!(
                "{path:?} is not a directory; pass the dir that will hold <dir>/<module> for each module's data"
            ),
        });
    }
    with_global(|g| {
        if g.running.is_some() {
            return Err(Error::Started {
                function: "logos_core_set_persistence_base_path",
            });
        }
        g.config.data_dir = Some(p);
        Ok(())
    })
}

/// `logos_core_set_access_policy`: the restrictions the core will start with (`None`: none).
///
/// # Errors
/// [`Error::Started`].
pub(crate) fn set_restrictions(
    restrictions: Option<Vec<access_policy::Restriction>>,
) -> Result<(), Error> {
    with_global(|g| {
        if g.running.is_some() {
            return Err(Error::Started {
                function: "logos_core_set_access_policy",
            });
        }
        g.config.restrictions = restrictions.unwrap_or_default();
        Ok(())
    })
}

/// `logos_core_refresh_modules`: scans every modules dir again (see `Core::refresh`), and
/// registers again the modules of dirs added after start.
///
/// # Errors
/// [`Error::NotStarted`]; [`Error::Invalid`] listing the modules that are not registered
/// because of their metadata (everything else is refreshed).
pub(crate) fn refresh() -> Result<(), Error> {
    let live = live()?;
    let core = live.core.clone();
    live.run("refreshing modules", async move { core.refresh().await })??;
    let mut problems = live.core.faults();
    let added = lock(&live.added_dirs).clone();
    for dir in added {
        if let Err(e) = register_dir(&live, &dir) {
            problems.push(e.to_string());
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid {
            name: "modules",
            reason: format!(
                "the modules dirs were scanned again, but some modules are not registered: {}",
                problems.join("; ")
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime")
    }

    #[test]
    fn drive_finishes_futures_woken_by_the_runtime_soon_or_late() {
        let rt = runtime();
        // Ready at once, woken within the polling window, and woken after this thread parked.
        assert_eq!(drive(rt.handle(), async { 1 }), 1);
        for delay in [Duration::ZERO, Duration::from_millis(30)] {
            let (tx, rx) = tokio::sync::oneshot::channel();
            rt.spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tx.send(7);
            });
            assert_eq!(drive(rt.handle(), rx), Ok(7));
        }
        // The runtime's timers work for a driven future (made inside it, in the context).
        let t = Instant::now();
        drive(rt.handle(), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
        });
        assert!(t.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn drive_works_for_a_caller_inside_its_own_async_runtime() {
        let core_rt = runtime();
        let handle = core_rt.handle().clone();
        let host = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the host's runtime");
        let got = host.block_on(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            handle.spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let _ = tx.send("answer");
            });
            drive(&handle, rx)
        });
        assert_eq!(got, Ok("answer"));
    }
}
