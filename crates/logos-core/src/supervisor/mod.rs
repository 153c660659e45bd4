//! The lifecycle of module processes: start plans, stop, crash handling, restart, heartbeat,
//! and start-up and shutdown of the core itself.
//!
//! Decides every state transition of DESIGN.md §4 (the `registry` checks and records them)
//! and is the only code that signals processes. Plans come from `resolver`, processes from a
//! [`child::Spawn`] (real ones from `spawn`, fakes in this file's tests); this file decides
//! order, rollback, and what a crash leads to. Every operation that changes what runs takes
//! the lifecycle lock here, inside its own task (see `operation`), so a caller that goes away
//! never leaves one half done. Never parses metadata and never routes calls.

pub(crate) mod backoff;
pub(crate) mod child;
pub(crate) mod guardian;
pub(crate) mod heartbeat;
pub(crate) mod output;
pub(crate) mod remote;
pub(crate) mod spare;
pub(crate) mod spawn;

use crate::conn::ModuleConn;
use crate::error::Error;
use crate::manifest::{METADATA_FILE, Manifest};
use crate::name::CORE_MODULE;
use crate::registry::{ExitReport, Running, State, Transition};
use crate::state::Inner;
use crate::sys::{self, Signal};
use guardian::Guardian;
use logos_session::Fault;
use logos_wire::{ErrorCode, Value, Welcome};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Time a module gets after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// Heartbeats a module may miss in a row before it is killed.
const MISSED_HEARTBEATS: u32 = 3;

/// Sets up the runtime dir, discovers modules, opens the control endpoint, starts the guardian.
pub(crate) async fn start_core(inner: &Arc<Inner>) -> Result<(), Error> {
    if inner.started.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let result = start_core_inner(inner).await;
    if result.is_err() {
        inner.started.store(false, Ordering::SeqCst);
    }
    result
}

async fn start_core_inner(inner: &Arc<Inner>) -> Result<(), Error> {
    let _ops = inner.ops.lock().await;
    let s = &inner.settings;
    sys::create_private_dir(&s.runtime_dir)?;
    let sock = inner.control_socket();
    if tokio::net::UnixStream::connect(&sock).await.is_ok() {
        return Err(Error::AlreadyRunning { socket: sock });
    }
    sys::create_private_dir(&inner.modules_socket_dir())?;
    spawn::report_confinement(s.landlock);
    *inner.host.lock() = find_host(s.host.as_deref());
    rediscover(inner);

    let token = crate::token::create_client_token(&inner.client_token_path())?;
    *inner.client_secret.lock() = Some(token);

    let guardian = Guardian::start(&s.runtime_dir).map_err(|e| Error::Io {
        what: "starting the guardian process (/bin/sh)".to_owned(),
        source: e,
    })?;
    *inner.guardian.lock() = Some(guardian);

    let accept = crate::conn::listen(inner)?;
    if let Some(g) = inner.guardian.lock().as_mut() {
        g.owns("core.sock");
    }
    inner.tasks.lock().push(accept);
    crate::remote::start(inner).await?;
    tracing::info!(
        runtime_dir = %s.runtime_dir.display(),
        modules = inner.registry().known().len(),
        "core started"
    );
    Ok(())
}

/// Reads every modules dir again; loaded modules keep running on the manifest they started with.
fn rediscover(inner: &Inner) {
    let found = crate::discovery::discover(&inner.settings.modules_dirs);
    let mut registry = inner.registry();
    registry.rediscovered(found);
    for f in registry.faults() {
        tracing::warn!("module not registered: {f}");
    }
}

/// `logos_host` location: configured, `$LOGOS_HOST`, beside the executable or its parent dir
/// (test binaries live in `target/*/deps`), else looked up on `PATH` at spawn time.
fn find_host(configured: Option<&std::path::Path>) -> std::path::PathBuf {
    if let Some(p) = configured {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("LOGOS_HOST").filter(|p| !p.is_empty()) {
        return p.into();
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join("logos_host");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    "logos_host".into()
}

/// Runs one lifecycle operation (load, unload, reload, register, shutdown) in its own task
/// under the lifecycle lock; the caller only awaits its outcome.
///
/// So an operation is never cut in half: when the caller goes away (a client's Ctrl-C or
/// deadline, a dropped Rust future) the operation still runs to its end, a load finishing
/// (or rolling back) and an unload reaping the process, and no module is left `starting` or
/// `stopping` with nobody to finish the job. The lock is taken here and only here (and by a
/// crash restart, in `backoff`), so two plans never interleave, whoever asked.
///
/// # Cancel safety
/// Cancel safe in the sense above: dropping the returned future abandons only the wait.
async fn operation<T, F, Fut>(inner: &Arc<Inner>, op: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(Arc<Inner>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, Error>> + Send + 'static,
{
    let inner = Arc::clone(inner);
    let task = tokio::spawn(async move {
        let _ops = inner.ops.lock().await;
        op(Arc::clone(&inner)).await
    });
    match task.await {
        Ok(result) => result,
        // A bug inside the operation: let it surface where it would have without the task.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down and dropped the task.
        Err(_) => Err(Error::ShutDown),
    }
}

/// Loads `names` and their dependencies (see [`operation`]).
pub(crate) async fn load(inner: &Arc<Inner>, names: &[&str]) -> Result<(), Error> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    operation(inner, move |inner| async move {
        refuse_after_shutdown(&inner)?;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        load_locked(&inner, &names).await
    })
    .await
}

/// Unloads `name`, with `cascade` its loaded dependents first (see [`operation`]).
pub(crate) async fn unload(inner: &Arc<Inner>, name: &str, cascade: bool) -> Result<(), Error> {
    let name = name.to_owned();
    operation(inner, move |inner| async move {
        refuse_after_shutdown(&inner)?;
        unload_locked(&inner, &name, cascade).await
    })
    .await
}

/// Restarts `name` by hand (see [`operation`]).
pub(crate) async fn reload(inner: &Arc<Inner>, name: &str) -> Result<(), Error> {
    let name = name.to_owned();
    operation(inner, move |inner| async move {
        refuse_after_shutdown(&inner)?;
        reload_locked(&inner, &name).await
    })
    .await
}

/// Hot-swaps `name` (see [`operation`] and [`reload_hot_locked`]).
pub(crate) async fn reload_hot(inner: &Arc<Inner>, name: &str) -> Result<SwapReport, Error> {
    let name = name.to_owned();
    operation(inner, move |inner| async move {
        refuse_after_shutdown(&inner)?;
        reload_hot_locked(&inner, &name).await
    })
    .await
}

/// Adds (or replaces) a known module from its manifest (`core.processPlugin`), under the
/// lifecycle lock so no plan sees the set change midway. `Ok(Err(state))` when the module is
/// loaded (or stopping) and so keeps the manifest it runs with.
pub(crate) async fn register(
    inner: &Arc<Inner>,
    manifest: Manifest,
) -> Result<Result<String, State>, Error> {
    operation(inner, move |inner| async move {
        refuse_after_shutdown(&inner)?;
        Ok(inner.registry().register(manifest))
    })
    .await
}

/// Scans the modules dirs again and forgets the modules whose `metadata.json` is gone, unless
/// they are loaded (see [`operation`]).
pub(crate) async fn refresh(inner: &Arc<Inner>) -> Result<(), Error> {
    operation(inner, |inner| async move {
        refuse_after_shutdown(&inner)?;
        rediscover(&inner);
        let gone = inner
            .registry()
            .forget_where(|manifest| !manifest.dir.join(METADATA_FILE).exists());
        for name in gone {
            tracing::info!(module = %name, "module forgotten: its metadata.json is gone");
        }
        Ok(())
    })
    .await
}

/// An operation that waited for the lock while the core shut down has nothing left to act on.
fn refuse_after_shutdown(inner: &Inner) -> Result<(), Error> {
    if inner.stopping.load(Ordering::SeqCst) {
        Err(Error::ShutDown)
    } else {
        Ok(())
    }
}

/// Stops every loaded module and the core (see [`operation`]). Idempotent.
pub(crate) async fn shutdown(inner: &Arc<Inner>) {
    let _ = operation(inner, |inner| async move {
        shutdown_locked(&inner).await;
        Ok(())
    })
    .await;
}

/// Loads `names` and their dependencies, layer by layer; on any failure stops what it started.
async fn load_locked(inner: &Arc<Inner>, names: &[&str]) -> Result<(), Error> {
    let plan = {
        let registry = inner.registry();
        if let Some(n) = names.iter().find(|n| !registry.is_known(n)) {
            return Err(registry.unknown(n));
        }
        let plan = crate::resolver::Resolver::new(registry.known())
            .plan_load(&registry.loaded_versions(), names);
        registry.check_plan(names, plan)?
    };
    let mut started: Vec<String> = Vec::new();
    for layer in plan {
        let starts = layer.iter().map(|n| start_module(inner, n.as_str()));
        let results = futures::future::join_all(starts).await;
        let mut first_err = None;
        for (name, r) in layer.iter().zip(results) {
            match r {
                Ok(()) => started.push(name.as_str().to_owned()),
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
        if let Some(e) = first_err {
            for name in started.iter().rev() {
                stop_module(inner, name, inner.settings.stop_grace).await;
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Unloads `name` (and, with `cascade`, its loaded dependents first).
async fn unload_locked(inner: &Arc<Inner>, name: &str, cascade: bool) -> Result<(), Error> {
    let order = {
        let registry = inner.registry();
        if !registry.is_known(name) {
            return Err(registry.unknown(name));
        }
        if !registry.state(name).is_loaded() {
            return Err(Error::NotLoaded {
                name: name.to_owned(),
            });
        }
        let loaded: Vec<String> = registry.loaded_versions().into_keys().collect();
        crate::resolver::Resolver::new(registry.known()).plan_unload(&loaded, name, cascade)?
    };
    for n in order {
        stop_module(inner, n.as_str(), inner.settings.stop_grace).await;
    }
    Ok(())
}

/// Manual restart: stop if loaded, read metadata again, start; clears `failed` and the budget.
async fn reload_locked(inner: &Arc<Inner>, name: &str) -> Result<(), Error> {
    if inner.registry().is_remote(name) {
        return Err(Error::Remote {
            module: name.to_owned(),
            action: "reload",
        });
    }
    if !inner.registry().is_known(name) {
        rediscover(inner);
        let registry = inner.registry();
        if !registry.is_known(name) {
            return Err(registry.unknown(name));
        }
    }
    let state = inner.registry().state(name);
    if state.is_loaded() {
        stop_module(inner, name, inner.settings.stop_grace).await;
    }
    rediscover(inner);
    let change = inner.registry().reset_budget(name);
    announce(inner, change);
    load_locked(inner, &[name]).await
}

/// What a hot swap did and how long its steps took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapReport {
    /// The process that served before (gone when the report is made).
    pub old_pid: Option<u32>,
    /// The process that serves now.
    pub new_pid: Option<u32>,
    /// From asking for the new process to its handshake: the part a cold start also pays,
    /// during which the old process kept serving.
    pub start: Duration,
    /// From the switch until the old process had answered every call it had been sent and
    /// exited.
    pub retire: Duration,
}

/// Hot swap: starts a new process of `name` (metadata read again) beside the serving one,
/// makes it ready, switches calls to it in one step under the registry lock, then lets the
/// old process finish what it was sent and stops it. The module never leaves `ready`, so no
/// call meets `unavailable`. If the new process fails to become ready it is gone, the old one
/// still serves, and the error says why. A module that is not loaded is loaded (cold).
async fn reload_hot_locked(inner: &Arc<Inner>, name: &str) -> Result<SwapReport, Error> {
    if inner.registry().is_remote(name) {
        return Err(Error::Remote {
            module: name.to_owned(),
            action: "reload",
        });
    }
    rediscover(inner);
    let plan = {
        let registry = inner.registry();
        if !registry.is_known(name) {
            return Err(registry.unknown(name));
        }
        let state = registry.state(name);
        if !state.is_loaded() && state != State::Stopping {
            None
        } else {
            Some(swap_plan(&registry, name)?)
        }
    };
    let Some((manifest, old_generation, old_pid)) = plan else {
        let started = std::time::Instant::now();
        load_locked(inner, &[name]).await?;
        return Ok(SwapReport {
            old_pid: None,
            new_pid: inner.registry().record(name).and_then(|r| r.pid()),
            start: started.elapsed(),
            retire: Duration::ZERO,
        });
    };
    let started = std::time::Instant::now();
    let retired =
        match start_process(inner, &manifest, old_generation + 1, Some(old_generation)).await {
            Ok(Some(retired)) => retired,
            Ok(None) => {
                return Err(Error::HotSwap {
                    module: name.to_owned(),
                    old_pid,
                    reason:
                        "the new process became ready without a switch; this is a bug in logos-core"
                            .to_owned(),
                });
            }
            Err(spawn::Failure { error, .. }) => {
                let _ = std::fs::remove_file(swap_socket_path(inner, name));
                tracing::warn!(
                    module = name,
                    "hot swap failed; the old process keeps serving: {error}"
                );
                return Err(Error::HotSwap {
                    module: name.to_owned(),
                    old_pid,
                    reason: error.to_string(),
                });
            }
        };
    let start = started.elapsed();
    let switched = std::time::Instant::now();
    retire(name, retired, inner.settings.stop_grace).await;
    let retire = switched.elapsed();
    // Dependents reconnect to the new process on their next call; `moduleUp` also tells
    // their clients to subscribe again now rather than after their backoff.
    inner
        .hub
        .publish(CORE_MODULE, "moduleUp", &[Value::from(name)]);
    let new_pid = inner.registry().record(name).and_then(|r| r.pid());
    tracing::info!(
        module = name,
        ?old_pid,
        ?new_pid,
        start_ms = start.as_millis() as u64,
        retire_ms = retire.as_millis() as u64,
        "hot swap done"
    );
    Ok(SwapReport {
        old_pid,
        new_pid,
        start,
        retire,
    })
}

/// What a hot swap of a loaded `name` starts from: the re-read manifest, the serving
/// process's generation and pid; refused when the module is not `ready` or the manifest does
/// not fit the loaded set.
fn swap_plan(
    registry: &crate::registry::Registry,
    name: &str,
) -> Result<(Manifest, u64, Option<u32>), Error> {
    let old_pid = registry.record(name).and_then(|r| r.pid());
    let old_generation = registry.begin_swap(name).map_err(|state| Error::HotSwap {
        module: name.to_owned(),
        old_pid,
        reason: format!(
            "it is {state}, and only a ready module can be swapped; use `reload` without --hot"
        ),
    })?;
    let loaded = registry
        .manifest(name)
        .ok_or_else(|| registry.unknown(name))?;
    // A loaded module keeps the manifest it runs with across rescans; the swap is when the
    // new version's metadata takes over, so it is read again here.
    let manifest = Manifest::load(&loaded.dir).map_err(|e| Error::HotSwap {
        module: name.to_owned(),
        old_pid,
        reason: format!("its metadata cannot be read again: {e}"),
    })?;
    if manifest.name != loaded.name {
        return Err(Error::HotSwap {
            module: name.to_owned(),
            old_pid,
            reason: format!(
                "{} now names the module \"{}\"; a swap keeps the name (unload and load instead)",
                manifest.path.display(),
                manifest.name.as_str()
            ),
        });
    }
    swap_fits(registry, &manifest).map_err(|reason| Error::HotSwap {
        module: name.to_owned(),
        old_pid,
        reason,
    })?;
    Ok((manifest, old_generation, old_pid))
}

/// Whether the re-read manifest of a loaded module can replace it in place: its own
/// dependencies are loaded in versions it accepts, and its loaded dependents accept its
/// (possibly new) version. The reason when not.
fn swap_fits(registry: &crate::registry::Registry, manifest: &Manifest) -> Result<(), String> {
    let name = manifest.name.as_str();
    let loaded = registry.loaded_versions();
    for (dep, range) in &manifest.dependencies {
        match loaded.get(dep.as_str()) {
            None => return Err(format!("its dependency {dep} is not loaded")),
            Some(v) if !range.matches(v) => {
                return Err(format!("it needs {dep} {range}, and {dep} {v} is loaded"));
            }
            Some(_) => {}
        }
    }
    for (other, m) in registry.known() {
        if other == name || !loaded.contains_key(other.as_str()) {
            continue;
        }
        if let Some(range) = m.dependencies.get(name)
            && !range.matches(&manifest.version)
        {
            return Err(format!(
                "loaded module {other} needs {name} {range}, and the new version is {}",
                manifest.version
            ));
        }
    }
    Ok(())
}

/// Where the new process of a hot swap listens until the switch moves it to the module's
/// socket path (a name no module's socket can have: module socket names end in `.sock`).
fn swap_socket_path(inner: &Inner, name: &str) -> std::path::PathBuf {
    inner.modules_socket_dir().join(format!("{name}.sock.next"))
}

/// Stops the process a hot swap replaced: waits (up to `grace`) until every call the core
/// sent it has its answer, then `shutdown` with `grace` (the SDK finishes calls of peers in
/// flight), then SIGTERM and SIGKILL like [`stop_module`]. Its exit is an older
/// generation's, so it is neither a crash nor a change of the module's state.
async fn retire(name: &str, old: crate::registry::Retired, grace: Duration) {
    let crate::registry::Retired {
        session,
        kill,
        exited,
        ..
    } = old;
    if let Some(s) = &session {
        let deadline = tokio::time::Instant::now() + grace;
        while s.calls_pending() > 0 && !s.is_closed() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        s.send_shutdown(grace);
    }
    let Some(mut exited) = exited else {
        return;
    };
    let send = |sig| {
        if let Some(k) = &kill {
            let _ = k.send(sig);
        }
    };
    if tokio::time::timeout(grace, exited.wait_for(|e| *e))
        .await
        .is_err()
    {
        tracing::warn!(
            module = name,
            "replaced process did not exit within {grace:?} of shutdown; sending SIGTERM"
        );
        send(Signal::Term);
        if tokio::time::timeout(TERM_GRACE, exited.wait_for(|e| *e))
            .await
            .is_err()
        {
            send(Signal::Kill);
            let _ = exited.wait_for(|e| *e).await;
        }
    }
    if let Some(s) = session {
        s.close(Fault::new(
            ErrorCode::Unavailable,
            format!("this process of module {name} was replaced by a hot swap"),
        ));
    }
}

/// Stops every loaded module, leaves first, then closes the endpoint and removes files.
async fn shutdown_locked(inner: &Arc<Inner>) {
    if inner.stopping.swap(true, Ordering::SeqCst) {
        return;
    }
    tracing::info!("core shutting down");
    let layers = {
        let registry = inner.registry();
        crate::resolver::Resolver::new(registry.known()).shutdown_layers(&registry.loaded())
    };
    for layer in layers {
        let stops = layer
            .iter()
            .map(|n| stop_module(inner, n.as_str(), inner.settings.stop_grace));
        futures::future::join_all(stops).await;
    }
    for t in inner.tasks.lock().drain(..) {
        t.abort();
    }
    inner.spawn.release().await;
    let _ = std::fs::remove_file(inner.control_socket());
    let _ = std::fs::remove_file(inner.client_token_path());
    let _ = std::fs::remove_dir(inner.modules_socket_dir());
    let _ = std::fs::remove_dir(&inner.settings.runtime_dir);
    if let Some(g) = inner.guardian.lock().take() {
        g.finish();
    }
    inner.stopped_tx.send_replace(true);
    tracing::info!("core stopped");
}

/// Resolves once shutdown has finished.
pub(crate) async fn wait_stopped(inner: &Arc<Inner>) {
    let mut rx = inner.stopped_tx.subscribe();
    let _ = rx.wait_for(|s| *s).await;
}

/// Publishes `core.stateChanged` for a change the registry made (its lock released).
fn announce(inner: &Inner, change: Option<Transition>) {
    if let Some(t) = change {
        inner.hub.publish(
            CORE_MODULE,
            "stateChanged",
            &[
                Value::from(t.name.as_str()),
                Value::from(t.from.as_str()),
                Value::from(t.to.as_str()),
            ],
        );
    }
}

/// Starts one module whose dependencies are ready; returns when it is ready. On failure the
/// module is left `stopped`.
async fn start_module(inner: &Arc<Inner>, name: &str) -> Result<(), Error> {
    start_module_or(inner, name, State::Stopped).await
}

/// [`start_module`], leaving the module in `failed_state` when the start fails (a crash
/// restart leaves it `crashed`, so it never looks stopped on request in between).
async fn start_module_or(inner: &Arc<Inner>, name: &str, failed_state: State) -> Result<(), Error> {
    let (manifest, generation, change) = {
        let mut registry = inner.registry();
        let Some(manifest) = registry.manifest(name).cloned() else {
            return Err(registry.unknown(name));
        };
        if registry.is_remote(name) {
            return Err(Error::Remote {
                module: name.to_owned(),
                action: "start",
            });
        }
        let (generation, change) = registry.begin_start(name);
        (manifest, generation, change)
    };
    announce(inner, change);
    match start_process(inner, &manifest, generation, None).await {
        Ok(_) => Ok(()),
        Err(spawn::Failure { error, exit }) => {
            tracing::warn!(module = name, "start failed: {error}");
            let change = inner
                .registry()
                .start_failed(name, generation, exit, failed_state);
            announce(inner, change);
            Err(error)
        }
    }
}

/// Spawns the process of start `generation`, checks who it says it is, accepts its handshake
/// and makes the module `ready`. On failure the process is gone; how it ended, if it ran and
/// died by itself, comes with the error.
///
/// With `swap` (the generation of the process serving now) this is a hot swap's start: the
/// new process listens on a side path, and instead of `ready` the registry switches the
/// module to it ([`crate::registry::Registry::swap`]); the replaced process comes back.
async fn start_process(
    inner: &Arc<Inner>,
    manifest: &Manifest,
    generation: u64,
    swap: Option<u64>,
) -> Result<Option<crate::registry::Retired>, spawn::Failure> {
    let name = manifest.name.as_str().to_owned();
    let overrides = inner
        .settings
        .modules
        .get(&name)
        .cloned()
        .unwrap_or_default();
    let host = inner.host.lock().clone();
    // Whatever the outcome, a spare host is made ready for the next library module once this
    // start is over (off its path).
    let _next = (inner.settings.spare_host
        && manifest.kind() == crate::manifest::ModuleKind::Library)
        .then(|| PrepareSpare {
            inner: Arc::clone(inner),
            next: Some(spare::Next {
                host: host.clone(),
                runtime_dir: inner.settings.runtime_dir.clone(),
                spawn_mode: inner.settings.spawn_mode,
                env: spawn::inherited_env(),
            }),
        });
    let spawned = inner
        .spawn
        .spawn(spawn::SpawnRequest {
            manifest,
            host: &host,
            runtime_dir: &inner.settings.runtime_dir,
            hidden: &inner.settings.hidden,
            data_dir: inner.settings.data_dir.join(&name),
            socket_path: match swap {
                None => inner.socket_path(&name),
                Some(_) => swap_socket_path(inner, &name),
            },
            env: &overrides.env,
            limits: overrides.limits,
            log_filter: &inner.settings.module_log,
            start_timeout: inner.settings.start_timeout,
            heartbeat: inner.settings.heartbeat,
            session: inner.settings.session.clone(),
            confine: inner.settings.landlock,
            strict: inner.settings.strict_confinement,
            grant: &overrides.filesystem,
            network: overrides.network,
            protected_data: inner
                .settings
                .modules
                .iter()
                .filter(|(n, m)| m.protected && n.as_str() != name.as_str())
                .map(|(n, _)| inner.settings.data_dir.join(n))
                .collect(),
            protected: overrides.protected,
            spawn_mode: inner.settings.spawn_mode,
            rulesets: &inner.rulesets,
        })
        .await;
    let child::Spawned {
        child,
        pending,
        from_spare,
        beat,
    } = spawned?;
    inner.counters.started(from_spare);
    let pid = child.pid();

    if pending.hello.identity != name {
        let fault = Fault::new(
            ErrorCode::Unauthorized,
            format!(
                "this process was started as module {name:?} but says it is {:?}",
                pending.hello.identity
            ),
        );
        let reason = fault.message.clone();
        pending.refuse(fault).await;
        let stderr_tail = child.abandon().await;
        return Err(Error::StartFailed {
            module: name,
            reason,
            status: None,
            stderr_tail,
        }
        .into());
    }
    // The version it says (for an SDK module, its Cargo.toml's) must be the metadata's, which
    // dependents were resolved against. A hello without one is taken as the metadata says.
    let said = pending.hello.attrs.get("version");
    let agrees = match said {
        None => true,
        Some(Value::Text(v)) => semver::Version::parse(v).is_ok_and(|v| v == manifest.version),
        Some(_) => false,
    };
    if let Some(said) = said.filter(|_| !agrees) {
        let said = said
            .as_str()
            .map_or_else(|| said.to_string(), str::to_owned);
        let reason = format!(
            "module {name:?} says it is version {said} (its hello; for a Rust module, the version in its Cargo.toml) but {} says {}; make the two agree",
            manifest.path.display(),
            manifest.version
        );
        pending
            .refuse(Fault::new(ErrorCode::Unauthorized, reason.clone()))
            .await;
        let stderr_tail = child.abandon().await;
        return Err(Error::StartFailed {
            module: name,
            reason,
            status: None,
            stderr_tail,
        }
        .into());
    }
    let (interface, accepted) = welcome_module(inner, &name, pending).await;
    let session = match accepted {
        Ok(s) => s,
        Err(e) => {
            let stderr_tail = child.abandon().await;
            return Err(Error::StartFailed {
                module: name,
                reason: format!("handshake failed: {e}"),
                status: None,
                stderr_tail,
            }
            .into());
        }
    };

    let (kill_tx, kill_rx) = mpsc::unbounded_channel();
    let (exit_tx, exit_rx) = watch::channel(false);
    let running = Running {
        pid,
        session: session.clone(),
        interface,
        kill: kill_tx,
        exited: exit_rx,
    };
    let (change, retired) = match swap {
        None => (inner.registry().ready(&name, running), None),
        Some(old_generation) => {
            let swapped = {
                let mut registry = inner.registry();
                // Under the registry's lock, so `requestModule` never pairs one process's pid
                // with the other's socket.
                match std::fs::rename(swap_socket_path(inner, &name), inner.socket_path(&name)) {
                    Ok(()) => registry
                        .swap(&name, old_generation, running, manifest.clone())
                        .ok_or_else(|| {
                            "the old process stopped serving during the swap".to_owned()
                        }),
                    Err(e) => Err(format!(
                        "cannot move the new process's socket in place: {e}"
                    )),
                }
            };
            match swapped {
                Ok(retired) => (None, Some(retired)),
                Err(reason) => {
                    session.close(Fault::new(ErrorCode::Unavailable, "hot swap abandoned"));
                    let stderr_tail = child.abandon().await;
                    return Err(Error::StartFailed {
                        module: name,
                        reason,
                        status: None,
                        stderr_tail,
                    }
                    .into());
                }
            }
        }
    };
    if let Some(g) = inner.guardian.lock().as_mut() {
        g.started(pid, &name);
    }
    // Ready before the watcher exists, so an exit right away is always seen as a crash of a
    // ready module (never overwritten by a late `ready`), and `moduleUp` precedes its
    // `moduleDown`.
    announce(inner, change);
    if inner.hub.has_subscribers(&name) {
        let _ = session.subscribe(&name, "");
    }
    if retired.is_none() {
        inner
            .hub
            .publish(CORE_MODULE, "moduleUp", &[Value::from(name.as_str())]);
    }
    let watcher_inner = Arc::clone(inner);
    let watcher_name = name.clone();
    tokio::spawn(async move {
        let mut child = child;
        let status = watch_child(child.as_mut(), kill_rx).await;
        let report = child.finish(status).await;
        let crashed = record_exit(&watcher_inner, &watcher_name, generation, pid, &report);
        exit_tx.send_replace(true);
        if crashed {
            on_crash(&watcher_inner, &watcher_name, generation, report).await;
        }
    });
    heartbeat::watch(inner, name.clone(), generation, session.clone(), beat);
    Ok(retired)
}

/// Asks the spawner to prepare a spare host when dropped: at the end of a library module's
/// start, on every path out of it.
struct PrepareSpare {
    inner: Arc<Inner>,
    next: Option<spare::Next>,
}

impl Drop for PrepareSpare {
    fn drop(&mut self) {
        if let Some(next) = self.next.take()
            && !self.inner.stopping.load(Ordering::SeqCst)
        {
            self.inner.spawn.prepare(next);
        }
    }
}

/// The core's side of a module's handshake, the same for a process it started and a remote
/// module that joined: the interface the module declared in its hello (`null` if none), and
/// the session once the core's welcome naming the module is taken.
pub(super) async fn welcome_module(
    inner: &Arc<Inner>,
    name: &str,
    mut pending: logos_session::PendingSession,
) -> (
    Value,
    Result<logos_session::Session, logos_session::SessionError>,
) {
    // Taken, not copied: nothing reads it from the session's peer attributes, and a large
    // interface would be copied (and kept twice) on every start.
    let interface = pending
        .hello
        .attrs
        .remove("interface")
        .unwrap_or(Value::Null);
    let welcome = Welcome {
        major: logos_wire::PROTOCOL_MAJOR,
        minor: logos_wire::PROTOCOL_MINOR,
        identity: CORE_MODULE.to_owned(),
        // `spans`: whether the module should report spans of its calls; `span_rows`: that
        // they may come as rows (docs/tracing.md, "The report format").
        attrs: [
            ("module".to_owned(), Value::from(name)),
            ("spans".to_owned(), Value::Bool(inner.spans.enabled())),
            ("span_rows".to_owned(), Value::Bool(true)),
        ]
        .into_iter()
        .collect(),
    };
    let handler = Arc::new(ModuleConn::new(inner, name));
    let accepted = pending.accept(name.to_owned(), welcome, handler).await;
    (interface, accepted)
}

/// Waits for the child to exit, delivering signals asked for meanwhile. Owning the child until
/// it is reaped guarantees a signal never reaches a recycled pid.
async fn watch_child(
    child: &mut dyn child::Child,
    mut kill_rx: mpsc::UnboundedReceiver<Signal>,
) -> std::process::ExitStatus {
    loop {
        tokio::select! {
            status = child.wait() => return status,
            Some(sig) = kill_rx.recv() => child.signal(sig),
        }
    }
}

fn current_generation(inner: &Inner, name: &str) -> Option<u64> {
    inner.registry().record(name).map(|r| r.generation())
}

fn signal(inner: &Inner, name: &str, sig: Signal) {
    let killer = inner.registry().killer(name);
    if let Some(k) = killer {
        let _ = k.send(sig);
    }
}

/// Forgets the tokens naming `name`, and tells each module that was granted one of `name`'s
/// tokens (a target it was allowed to call) to forget them and close its connections.
///
/// Only those modules hold anything of `name`'s: every token is minted here
/// (`requestModule`) and granted to its target alone. Telling every loaded module, as the
/// core once did, woke each of them on every stop of any module: an idle benchmark module
/// made 1249 system calls a second during the `start` row, 136 since (docs/performance.md,
/// twenty-third step).
async fn revoke(inner: &Arc<Inner>, name: &str) {
    let holders: std::collections::BTreeSet<_> = inner
        .tokens()
        .revoke_module(name)
        .into_iter()
        .filter(|(caller, _)| caller.as_str() == name)
        .map(|(_, target)| target)
        .collect();
    let others: Vec<(String, logos_session::Session)> = {
        let registry = inner.registry();
        holders
            .iter()
            .filter_map(|target| {
                let record = registry.record(target.as_str())?;
                let session = record
                    .session()
                    .filter(|_| record.state() == State::Ready)?;
                Some((target.to_string(), session.clone()))
            })
            .collect()
    };
    let calls = others.iter().map(|(n, s)| async move {
        if let Err(f) = s
            .call(
                n,
                "$revoke",
                vec![Value::from(name)],
                Duration::from_secs(2),
            )
            .await
        {
            tracing::debug!(module = %n, "revoking tokens of {name} failed: {f}");
        }
    });
    futures::future::join_all(calls).await;
}

/// Stops one module: `shutdown` with grace, then SIGTERM, then SIGKILL; always reaps it.
async fn stop_module(inner: &Arc<Inner>, name: &str, grace: Duration) {
    let Some(crate::registry::Stopping {
        session,
        exited,
        change,
    }) = inner.registry().begin_stop(name)
    else {
        return;
    };
    announce(inner, change);
    inner.hub.publish(
        CORE_MODULE,
        "moduleDown",
        &[Value::from(name), Value::from("unloaded")],
    );
    revoke(inner, name).await;
    if inner.registry().is_remote(name) {
        if inner.stopping.load(Ordering::SeqCst) {
            // The core goes away, not the module: close its link without `shutdown`, so it
            // keeps running and connects again when the core is back.
            if let Some(s) = &session {
                s.close(Fault::new(
                    ErrorCode::Unavailable,
                    "the core is shutting down",
                ));
            }
        }
        remote::stop(session, exited, grace, name).await;
    } else if let Some(mut exited) = exited {
        if let Some(s) = &session {
            s.send_shutdown(grace);
        }
        let waited = tokio::time::timeout(grace, exited.wait_for(|e| *e))
            .await
            .is_ok();
        if !waited {
            tracing::warn!(
                module = name,
                "did not exit within {grace:?} of shutdown; sending SIGTERM"
            );
            signal(inner, name, Signal::Term);
            let termed = tokio::time::timeout(TERM_GRACE, exited.wait_for(|e| *e))
                .await
                .is_ok();
            if !termed {
                tracing::warn!(
                    module = name,
                    "did not exit within {TERM_GRACE:?} of SIGTERM; sending SIGKILL"
                );
                signal(inner, name, Signal::Kill);
                let _ = exited.wait_for(|e| *e).await;
            }
        }
    }
    let change = inner.registry().stopped(name);
    announce(inner, change);
}

/// The process of `name` (start `generation`) ended: records it and tells whether nobody
/// asked for it (a crash). Runs before anyone waiting for the exit is woken.
fn record_exit(inner: &Inner, name: &str, generation: u64, pid: u32, report: &ExitReport) -> bool {
    if let Some(g) = inner.guardian.lock().as_mut() {
        g.ended(pid);
    }
    let core_stopping = inner.stopping.load(Ordering::SeqCst);
    let Some(exited) = inner
        .registry()
        .exited(name, generation, report, core_stopping)
    else {
        // A newer process of this module owns the socket path now: leave its socket be.
        return false;
    };
    let _ = std::fs::remove_file(inner.socket_path(name));
    if let Some(s) = exited.session {
        s.close(Fault::new(
            ErrorCode::Unavailable,
            format!("module {name} exited"),
        ));
    }
    if exited.crash.is_none() {
        tracing::info!(module = name, status = %report.status_text(), "module exited");
        return false;
    }
    announce(inner, exited.crash);
    true
}

/// A crash: report it everywhere, revoke tokens, let the restart policy decide.
async fn on_crash(inner: &Arc<Inner>, name: &str, generation: u64, report: ExitReport) {
    tracing::warn!(
        module = name,
        status = %report.status_text(),
        uptime_ms = report.uptime.as_millis() as u64,
        stderr = ?report.stderr_tail,
        restarts = restarts(inner, name),
        "module crashed"
    );
    publish_crash(inner, name, &report);
    inner.hub.publish(
        CORE_MODULE,
        "moduleDown",
        &[Value::from(name), Value::from("crashed")],
    );
    revoke(inner, name).await;
    backoff::after_crash(Arc::clone(inner), name.to_owned(), generation, report).await;
}

/// `core.moduleCrashed(name, status, uptimeMs, stderr, restarts)`, `restarts` being the crash
/// restarts attempted before this crash. The stderr lines go to operators and to the module
/// itself; other modules get an empty list (they may hold that module's secrets).
fn publish_crash(inner: &Inner, name: &str, report: &ExitReport) {
    let restarts = restarts(inner, name);
    let with_stderr = |lines: Vec<Value>| {
        [
            Value::from(name),
            Value::from(report.status_text()),
            Value::from(report.uptime.as_millis() as u64),
            Value::List(lines),
            Value::from(restarts),
        ]
    };
    let full = with_stderr(
        report
            .stderr_tail
            .iter()
            .map(|l| Value::from(l.as_str()))
            .collect(),
    );
    let redacted = with_stderr(Vec::new());
    inner
        .hub
        .publish_private(CORE_MODULE, "moduleCrashed", &full, name, &redacted);
}

/// Crash restarts of `name` attempted so far.
fn restarts(inner: &Inner, name: &str) -> u32 {
    inner.registry().record(name).map_or(0, |r| r.restarts())
}

/// The lifecycle against fake children (`child.rs`'s seam): no process is started, each fake
/// speaks the protocol over a socketpair, so restart policy, backoff, budget, heartbeat and
/// stop escalation are checked in milliseconds. The real-process tests are in `tests/`.
#[cfg(test)]
mod tests {
    use super::child::{Child, Spawn, Spawned};
    use super::spawn::{Failure, SpawnRequest};
    use super::*;
    use crate::builder::RestartSettings;
    use crate::manifest::{Manifest, RestartPolicy};
    use futures::FutureExt as _;
    use futures::future::BoxFuture;
    use logos_session::{Handler, Session};
    use logos_wire::{Hello, Message};
    use parking_lot::Mutex;
    use std::collections::{HashMap, VecDeque};
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::ExitStatus;
    use std::time::Instant;
    use tokio::io::AsyncWriteExt as _;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// What one fake process does.
    #[derive(Debug, Clone, PartialEq)]
    enum Fake {
        /// Handshakes, answers pings with this health, exits 0 when asked to shut down, dies
        /// on SIGTERM and SIGKILL.
        Healthy(Option<String>),
        /// Exits with this code before its `hello` (a crash at start).
        DiesAtStart(i32),
        /// Sends its `hello`, then reads nothing: misses every ping, ignores `shutdown` and
        /// SIGTERM (a hung event loop); only SIGKILL ends it.
        Hung,
        /// [`Fake::Hung`] whose heartbeat page counts on: its runtime turns, its control
        /// connection's reader does not (stuck behind an `await`).
        CountingButDeaf,
    }

    /// The fakes' world, shared by the spawner (inside the core) and the test.
    #[derive(Default)]
    struct World {
        /// Per module, what its next starts do; a module with none left starts healthy.
        plan: Mutex<HashMap<String, VecDeque<Fake>>>,
        /// Exit switch of every process started, by pid.
        processes: Mutex<HashMap<u32, watch::Sender<Option<ExitStatus>>>>,
        /// Every signal delivered, in order.
        signals: Mutex<Vec<(u32, Signal)>>,
        /// Processes started, per module.
        starts: Mutex<HashMap<String, u32>>,
        next_pid: Mutex<u32>,
        /// Pings answered by healthy fakes, all modules together.
        pongs: std::sync::atomic::AtomicU64,
    }

    impl World {
        fn plan(&self, module: &str, fakes: impl IntoIterator<Item = Fake>) {
            self.plan
                .lock()
                .entry(module.to_owned())
                .or_default()
                .extend(fakes);
        }

        fn starts(&self, module: &str) -> u32 {
            self.starts.lock().get(module).copied().unwrap_or(0)
        }

        /// Makes process `pid` exit by itself with `code`.
        fn exit(&self, pid: u32, code: i32) {
            if let Some(p) = self.processes.lock().get(&pid) {
                end(p, ExitStatus::from_raw(code << 8));
            }
        }

        fn signals(&self) -> Vec<(u32, Signal)> {
            self.signals.lock().clone()
        }

        fn pongs(&self) -> u64 {
            self.pongs.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    /// Sets a process's exit status unless it has one: a process ends once.
    fn end(process: &watch::Sender<Option<ExitStatus>>, status: ExitStatus) {
        process.send_if_modified(|s| {
            let first = s.is_none();
            if first {
                *s = Some(status);
            }
            first
        });
    }

    struct Spawner(Arc<World>);

    impl Spawn for Spawner {
        fn spawn<'a>(&'a self, req: SpawnRequest<'a>) -> BoxFuture<'a, Result<Spawned, Failure>> {
            Box::pin(async move {
                let world = Arc::clone(&self.0);
                let name = req.manifest.name.as_str().to_owned();
                let fake = world
                    .plan
                    .lock()
                    .get_mut(&name)
                    .and_then(VecDeque::pop_front)
                    .unwrap_or(Fake::Healthy(None));
                *world.starts.lock().entry(name.clone()).or_default() += 1;
                let pid = {
                    let mut next = world.next_pid.lock();
                    *next += 1;
                    1000 + *next
                };
                if let Fake::DiesAtStart(code) = fake {
                    let exit = ExitReport {
                        code: Some(code),
                        signal: None,
                        uptime: Duration::ZERO,
                        stderr_tail: vec![format!("fake {name} refuses to start")],
                        at: std::time::SystemTime::now(),
                    };
                    return Err(Failure {
                        error: Error::StartFailed {
                            module: name,
                            reason: "exited before it became ready".to_owned(),
                            status: Some(exit.status_text()),
                            stderr_tail: exit.stderr_tail.clone(),
                        },
                        exit: Some(exit),
                    });
                }
                let (core_end, module_end) = tokio::net::UnixStream::pair().map_err(|e| {
                    Failure::from(Error::Spawn {
                        module: name.clone(),
                        reason: e.to_string(),
                    })
                })?;
                let (exit_tx, exit_rx) = watch::channel(None);
                world.processes.lock().insert(pid, exit_tx.clone());
                let hello = Hello {
                    major: logos_wire::PROTOCOL_MAJOR,
                    minor: logos_wire::PROTOCOL_MINOR,
                    identity: name.clone(),
                    token: Default::default(),
                    attrs: [("interface".to_owned(), Value::from("fake"))]
                        .into_iter()
                        .collect(),
                };
                let beat = match fake {
                    Fake::CountingButDeaf => {
                        let (watch, fd) = logos_session::BeatWatch::create().map_err(|e| {
                            Failure::from(Error::Spawn {
                                module: name.clone(),
                                reason: e.to_string(),
                            })
                        })?;
                        let beater = logos_session::Beater::open(fd).map_err(|reason| {
                            Failure::from(Error::Spawn {
                                module: name.clone(),
                                reason,
                            })
                        })?;
                        let mut dead = exit_tx.subscribe();
                        tokio::spawn(async move {
                            loop {
                                tokio::select! {
                                    _ = tokio::time::sleep(Duration::from_millis(5)) => beater.beat(),
                                    _ = dead.wait_for(Option::is_some) => return,
                                }
                            }
                        });
                        Some(watch)
                    }
                    _ => None,
                };
                tokio::spawn(run_fake(
                    fake.clone(),
                    module_end,
                    hello,
                    exit_tx.clone(),
                    Arc::clone(&world),
                ));
                let mut cfg = req.session.clone();
                cfg.handshake_timeout = req.start_timeout;
                let pending = logos_session::read_hello(core_end, cfg)
                    .await
                    .map_err(|e| {
                        Failure::from(Error::StartFailed {
                            module: name.clone(),
                            reason: format!("handshake failed: {e}"),
                            status: None,
                            stderr_tail: Vec::new(),
                        })
                    })?;
                let child = FakeChild {
                    pid,
                    fake,
                    exit_tx,
                    exit_rx,
                    world,
                    started: Instant::now(),
                };
                Ok(Spawned {
                    from_spare: false,
                    child: Box::new(child),
                    pending,
                    beat,
                })
            })
        }
    }

    /// The module side of a fake: speaks until its process ends, then its end of the
    /// connection closes, as a dead process's would.
    async fn run_fake(
        fake: Fake,
        mut stream: tokio::net::UnixStream,
        hello: Hello,
        exit: watch::Sender<Option<ExitStatus>>,
        world: Arc<World>,
    ) {
        let mut dead = exit.subscribe();
        match fake {
            Fake::Healthy(health) => {
                let handler = Arc::new(FakeModule {
                    health,
                    exit: exit.clone(),
                    world,
                });
                let Ok((session, _)) =
                    logos_session::connect(stream, hello, handler, Default::default()).await
                else {
                    return;
                };
                let _ = dead.wait_for(Option::is_some).await;
                session.close(Fault::new(ErrorCode::Unavailable, "process ended"));
            }
            Fake::Hung | Fake::CountingButDeaf => {
                let mut frame = Vec::new();
                if logos_wire::encode_frame(&Message::Hello(hello), &mut frame).is_err()
                    || stream.write_all(&frame).await.is_err()
                {
                    return;
                }
                let _ = dead.wait_for(Option::is_some).await;
                drop(stream);
            }
            Fake::DiesAtStart(_) => {}
        }
    }

    /// What a healthy fake module serves: health in pongs, exit on `shutdown`.
    struct FakeModule {
        health: Option<String>,
        exit: watch::Sender<Option<ExitStatus>>,
        world: Arc<World>,
    }

    impl Handler for FakeModule {
        fn health(&self) -> Option<String> {
            // Asked once per ping, just before the pong.
            self.world
                .pongs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.health.clone()
        }

        fn shutdown(&self, _session: &Session, _grace: Duration) {
            end(&self.exit, ExitStatus::from_raw(0));
        }
    }

    struct FakeChild {
        pid: u32,
        fake: Fake,
        exit_tx: watch::Sender<Option<ExitStatus>>,
        exit_rx: watch::Receiver<Option<ExitStatus>>,
        world: Arc<World>,
        started: Instant,
    }

    impl Child for FakeChild {
        fn pid(&self) -> u32 {
            self.pid
        }

        fn signal(&mut self, sig: Signal) {
            if self.exit_rx.borrow().is_some() {
                return;
            }
            self.world.signals.lock().push((self.pid, sig));
            match (sig, &self.fake) {
                (Signal::Term, Fake::Hung) => {}
                (Signal::Term, _) => end(&self.exit_tx, ExitStatus::from_raw(15)),
                (Signal::Kill, _) => end(&self.exit_tx, ExitStatus::from_raw(9)),
            }
        }

        fn wait(&mut self) -> BoxFuture<'_, ExitStatus> {
            Box::pin(async move {
                match self.exit_rx.wait_for(Option::is_some).await {
                    Ok(s) => (*s).unwrap_or(ExitStatus::from_raw(9)),
                    Err(_) => ExitStatus::from_raw(9),
                }
            })
        }

        fn finish(self: Box<Self>, status: ExitStatus) -> BoxFuture<'static, ExitReport> {
            let uptime = self.started.elapsed();
            Box::pin(async move {
                ExitReport {
                    code: status.code(),
                    signal: status.signal(),
                    uptime,
                    stderr_tail: Vec::new(),
                    at: std::time::SystemTime::now(),
                }
            })
        }

        fn abandon(mut self: Box<Self>) -> BoxFuture<'static, Vec<String>> {
            self.signal(Signal::Kill);
            Box::pin(async { Vec::new() })
        }
    }

    /// A known module of a test: name, restart policy, dependencies (name, range).
    type Known<'a> = (&'a str, RestartPolicy, &'a [(&'a str, &'a str)]);

    /// A core whose module processes are fakes, with `modules` known.
    fn core(
        builder: crate::Builder,
        modules: &[Known<'_>],
    ) -> Result<(crate::Core, Arc<World>), Error> {
        let world = Arc::new(World::default());
        let core = builder
            .build()?
            .with_spawn(Box::new(Spawner(Arc::clone(&world))));
        for (name, restart, deps) in modules {
            let mut m = Manifest::for_test(name, "1.0.0", deps);
            m.restart = *restart;
            if core.inner.registry().register(m).is_err() {
                panic!("{name} could not be registered");
            }
        }
        Ok((core, world))
    }

    fn fast_restarts(budget: u32) -> RestartSettings {
        RestartSettings {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(20),
            budget,
            window: Duration::from_secs(600),
        }
    }

    /// A builder whose heartbeat never fires within a test.
    fn quiet() -> crate::Builder {
        crate::Core::builder().heartbeat(Duration::from_secs(3600))
    }

    fn info(core: &crate::Core, name: &str) -> crate::ModuleInfo {
        match core.module(name) {
            Ok(i) => i,
            Err(e) => panic!("{e}"),
        }
    }

    /// Polls `cond` until it holds; fails the test after 30 s.
    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Every `stateChanged` of `module` published so far, as `from→to`.
    fn changes(events: &mut crate::Subscription, module: &str) -> Vec<String> {
        let mut out = Vec::new();
        // Unconstrained: tokio's cooperative budget would otherwise end the loop early.
        while let Some(Some(n)) = tokio::task::unconstrained(events.recv()).now_or_never() {
            if let crate::Notification::Event { event, data, .. } = n
                && event == "stateChanged"
                && data.first() == Some(&Value::from(module))
            {
                let s = |i: usize| {
                    data.get(i)
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_owned()
                };
                out.push(format!("{}→{}", s(1), s(2)));
            }
        }
        out
    }

    #[tokio::test]
    async fn a_crash_is_restarted_after_backoff_and_counted() -> TestResult {
        let (core, world) = core(
            quiet().restart(fast_restarts(3)),
            &[("a", RestartPolicy::OnFailure, &[])],
        )?;
        let mut events = core.inner.hub.subscribe_local(CORE_MODULE, "");
        load(&core.inner, &["a"]).await?;
        let first = info(&core, "a").pid.ok_or("no pid")?;

        world.exit(first, 3);
        until("a restarted", || {
            let i = info(&core, "a");
            i.state == State::Ready && i.pid != Some(first)
        })
        .await;
        let i = info(&core, "a");
        assert_eq!(i.restarts, 1);
        assert_eq!(i.recent_crashes, 1);
        assert_eq!(i.last_exit.and_then(|e| e.code), Some(3));
        assert_eq!(world.starts("a"), 2);
        assert_eq!(
            changes(&mut events, "a"),
            [
                "known→starting",
                "starting→ready",
                "ready→crashed",
                "crashed→backoff",
                "backoff→starting",
                "starting→ready"
            ]
        );
        shutdown(&core.inner).await;
        Ok(())
    }

    #[tokio::test]
    async fn a_spent_budget_leaves_the_module_failed_until_a_reload() -> TestResult {
        let (core, world) = core(
            quiet().restart(fast_restarts(2)),
            &[("a", RestartPolicy::OnFailure, &[])],
        )?;
        world.plan(
            "a",
            [
                Fake::Healthy(None),
                Fake::DiesAtStart(7),
                Fake::DiesAtStart(7),
            ],
        );
        load(&core.inner, &["a"]).await?;
        let first = info(&core, "a").pid.ok_or("no pid")?;
        world.exit(first, 1);
        until("a failed", || info(&core, "a").state == State::Failed).await;
        let i = info(&core, "a");
        // One crash while ready, two at start: the third is past the budget of two.
        assert_eq!((i.recent_crashes, i.restarts), (3, 2));
        assert_eq!(i.last_exit.and_then(|e| e.code), Some(7));
        assert_eq!(world.starts("a"), 3);
        let e = crate::conn::call_module(&core.inner, "a", "anything", vec![], None).await;
        assert!(
            e.is_err_and(|f| f.code == ErrorCode::Unavailable && f.message.contains("reload")),
            "a failed module fails calls at once, saying how to bring it back"
        );

        // A reload clears the budget and starts it again (healthy now: the plan is used up).
        reload(&core.inner, "a").await?;
        let i = info(&core, "a");
        assert_eq!((i.state, i.recent_crashes), (State::Ready, 0));
        shutdown(&core.inner).await;
        Ok(())
    }

    #[tokio::test]
    async fn the_restart_policy_decides_after_an_exit() -> TestResult {
        let (core, world) = core(
            quiet().restart(fast_restarts(5)),
            &[
                ("always", RestartPolicy::Always, &[]),
                ("never", RestartPolicy::Never, &[]),
                ("onfail", RestartPolicy::OnFailure, &[]),
            ],
        )?;
        load(&core.inner, &["always", "never", "onfail"]).await?;
        let pid = |n| info(&core, n).pid.ok_or("no pid");
        let (always, never, onfail) = (pid("always")?, pid("never")?, pid("onfail")?);
        // Exit code 0 is a crash to `always` only; `never` ignores even a failure.
        world.exit(always, 0);
        world.exit(never, 1);
        world.exit(onfail, 0);
        until("always restarted", || {
            info(&core, "always").pid.is_some_and(|p| p != always)
        })
        .await;
        until("never and onfail down", || {
            info(&core, "never").state == State::Crashed
                && info(&core, "onfail").state == State::Crashed
        })
        .await;
        // Nothing else is coming: let the clock run far past every backoff and check.
        tokio::time::pause();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!((world.starts("never"), world.starts("onfail")), (1, 1));
        assert_eq!(info(&core, "never").state, State::Crashed);
        tokio::time::resume();
        shutdown(&core.inner).await;
        Ok(())
    }

    #[tokio::test]
    async fn an_unload_during_backoff_cancels_the_restart() -> TestResult {
        let slow = RestartSettings {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(5),
            ..fast_restarts(3)
        };
        let (core, world) = core(
            quiet().restart(slow),
            &[("a", RestartPolicy::OnFailure, &[])],
        )?;
        load(&core.inner, &["a"]).await?;
        world.exit(info(&core, "a").pid.ok_or("no pid")?, 1);
        until("a in backoff", || info(&core, "a").state == State::Backoff).await;
        assert!(info(&core, "a").next_restart.is_some());
        unload(&core.inner, "a", false).await?;
        assert_eq!(info(&core, "a").state, State::Stopped);
        tokio::time::pause();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            world.starts("a"),
            1,
            "restarted after an operator stopped it"
        );
        assert_eq!(info(&core, "a").state, State::Stopped);
        tokio::time::resume();
        shutdown(&core.inner).await;
        Ok(())
    }

    #[tokio::test]
    async fn a_module_that_misses_heartbeats_is_killed_and_restarted() -> TestResult {
        let (core, world) = core(
            crate::Core::builder()
                .heartbeat(Duration::from_millis(20))
                .restart(fast_restarts(3)),
            &[("a", RestartPolicy::OnFailure, &[])],
        )?;
        world.plan("a", [Fake::Hung]);
        load(&core.inner, &["a"]).await?;
        let hung = info(&core, "a").pid.ok_or("no pid")?;
        until("a restarted", || {
            let i = info(&core, "a");
            i.state == State::Ready && i.pid != Some(hung)
        })
        .await;
        assert_eq!(world.signals(), [(hung, Signal::Kill)]);
        let i = info(&core, "a");
        assert_eq!(i.last_exit.and_then(|e| e.signal), Some(9));
        assert_eq!(i.restarts, 1);
        shutdown(&core.inner).await;
        Ok(())
    }

    #[tokio::test]
    async fn a_module_that_counts_but_answers_no_ping_is_killed_at_its_proof_ping() -> TestResult {
        let (core, world) = core(
            crate::Core::builder()
                .heartbeat(Duration::from_millis(10))
                .restart(fast_restarts(3)),
            &[("a", RestartPolicy::OnFailure, &[])],
        )?;
        world.plan("a", [Fake::CountingButDeaf]);
        load(&core.inner, &["a"]).await?;
        let deaf = info(&core, "a").pid.ok_or("no pid")?;
        until("the counting but deaf module killed and restarted", || {
            let i = info(&core, "a");
            i.state == State::Ready && i.pid != Some(deaf)
        })
        .await;
        assert_eq!(world.signals(), [(deaf, Signal::Kill)]);
        // Its count was seen: it was killed for the pings, not for a still page.
        assert!(core.heartbeats().page > 0, "{:?}", core.heartbeats());
        shutdown(&core.inner).await;
        Ok(())
    }

    #[tokio::test]
    async fn the_heartbeat_task_starts_again_after_it_had_nothing_to_watch() -> TestResult {
        let (core, world) = core(
            crate::Core::builder()
                .heartbeat(Duration::from_millis(20))
                .restart(fast_restarts(3)),
            &[
                ("a", RestartPolicy::OnFailure, &[]),
                ("b", RestartPolicy::OnFailure, &[]),
            ],
        )?;
        load(&core.inner, &["a"]).await?;
        unload(&core.inner, "a", false).await?;
        // With no module left the task ends at its next tick.
        until("the heartbeat task ended", || {
            !core.inner.heartbeats.is_running()
        })
        .await;
        world.plan("b", [Fake::Hung]);
        load(&core.inner, &["b"]).await?;
        let hung = info(&core, "b").pid.ok_or("no pid")?;
        until("b killed by a new heartbeat task and restarted", || {
            let i = info(&core, "b");
            i.state == State::Ready && i.pid != Some(hung)
        })
        .await;
        assert_eq!(world.signals(), [(hung, Signal::Kill)]);
        shutdown(&core.inner).await;
        Ok(())
    }

    #[tokio::test]
    async fn a_module_answering_within_two_intervals_is_never_killed() -> TestResult {
        let (core, world) = core(
            crate::Core::builder().heartbeat(Duration::from_millis(100)),
            &[("a", RestartPolicy::OnFailure, &[])],
        )?;
        load(&core.inner, &["a"]).await?;
        let pid = info(&core, "a").pid.ok_or("no pid")?;
        // An absence can only be watched for a while: ten answered pings (ten intervals),
        // where pongs that were never taken for answers would have killed it after six.
        let answered = world.pongs();
        until("ten more pings answered", || world.pongs() >= answered + 10).await;
        assert!(world.signals().is_empty(), "{:?}", world.signals());
        assert_eq!(info(&core, "a").pid, Some(pid));
        assert_eq!(info(&core, "a").state, State::Ready);
        shutdown(&core.inner).await;
        Ok(())
    }

    #[tokio::test]
    async fn health_from_pongs_reaches_module_info() -> TestResult {
        let (core, world) = core(
            crate::Core::builder().heartbeat(Duration::from_millis(20)),
            &[("a", RestartPolicy::OnFailure, &[])],
        )?;
        world.plan("a", [Fake::Healthy(Some("disk full".to_owned()))]);
        load(&core.inner, &["a"]).await?;
        until("a unhealthy", || {
            info(&core, "a").unhealthy.as_deref() == Some("disk full")
        })
        .await;
        assert_eq!(
            info(&core, "a").state,
            State::Ready,
            "unhealthy is not down"
        );
        shutdown(&core.inner).await;
        Ok(())
    }

    #[tokio::test]
    async fn a_stop_asks_then_escalates_to_sigterm_and_sigkill() -> TestResult {
        let (core, world) = core(
            quiet().stop_grace(Duration::from_millis(50)),
            &[
                ("polite", RestartPolicy::OnFailure, &[]),
                ("hung", RestartPolicy::OnFailure, &[]),
            ],
        )?;
        world.plan("hung", [Fake::Hung]);
        load(&core.inner, &["polite", "hung"]).await?;
        let hung = info(&core, "hung").pid.ok_or("no pid")?;
        unload(&core.inner, "polite", false).await?;
        assert!(
            world.signals().is_empty(),
            "a module that exits on shutdown gets no signal"
        );
        assert_eq!(
            info(&core, "polite").last_exit.and_then(|e| e.code),
            Some(0)
        );
        unload(&core.inner, "hung", false).await?;
        assert_eq!(
            world.signals(),
            [(hung, Signal::Term), (hung, Signal::Kill)]
        );
        assert_eq!(info(&core, "hung").state, State::Stopped);
        shutdown(&core.inner).await;
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_start_stops_what_the_load_started() -> TestResult {
        let (core, world) = core(
            quiet(),
            &[
                ("a", RestartPolicy::OnFailure, &[]),
                ("b", RestartPolicy::OnFailure, &[]),
                ("top", RestartPolicy::OnFailure, &[("a", "*"), ("b", "*")]),
            ],
        )?;
        world.plan("b", [Fake::DiesAtStart(2)]);
        let e = load(&core.inner, &["top"]).await;
        assert!(
            matches!(e, Err(Error::StartFailed { ref module, .. }) if module == "b"),
            "{e:?}"
        );
        for m in ["a", "b"] {
            assert_eq!(info(&core, m).state, State::Stopped, "{m}");
        }
        assert_eq!(info(&core, "top").state, State::Known);
        assert_eq!(world.starts("top"), 0);
        assert_eq!(info(&core, "b").last_exit.and_then(|e| e.code), Some(2));
        shutdown(&core.inner).await;
        Ok(())
    }
}
