//! The lifecycle of module processes: start plans, stop, crash handling, restart, heartbeat,
//! and start-up and shutdown of the core itself.
//!
//! Owns every state transition of DESIGN.md §4 and is the only code that signals processes.
//! Plans come from `resolver`, processes from `spawn`; this file decides order, rollback, and
//! what a crash leads to. Every operation that changes what runs takes the lifecycle lock here,
//! inside its own task (see `operation`), so a caller that goes away never leaves one half
//! done. Never parses metadata and never routes calls.

pub(crate) mod backoff;
pub(crate) mod guardian;
pub(crate) mod output;
pub(crate) mod spawn;

use crate::api::Inner;
use crate::conn::ModuleConn;
use crate::error::Error;
use crate::manifest::Manifest;
use crate::name::CORE_MODULE;
use crate::registry::{ExitReport, ModuleInfo, Record, State};
use crate::sys::{self, Signal};
use guardian::Guardian;
use logos_session::Fault;
use logos_wire::{ErrorCode, Value, Welcome};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
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
    let s = &inner.settings;
    sys::create_private_dir(&s.runtime_dir)?;
    let sock = inner.control_socket();
    if tokio::net::UnixStream::connect(&sock).await.is_ok() {
        return Err(Error::AlreadyRunning { socket: sock });
    }
    sys::create_private_dir(&inner.modules_socket_dir())?;
    spawn::report_confinement(s.landlock);
    *inner.host.lock().unwrap_or_else(|p| p.into_inner()) = find_host(s.host.as_deref());
    rediscover(inner);

    let token = crate::token::create_client_token(&inner.client_token_path())?;
    *inner
        .client_secret
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(token);

    let guardian = Guardian::start(&s.runtime_dir).map_err(|e| Error::Io {
        what: "starting the guardian process (/bin/sh)".to_owned(),
        source: e,
    })?;
    *inner.guardian.lock().unwrap_or_else(|p| p.into_inner()) = Some(guardian);

    let accept = crate::conn::listen(inner)?;
    if let Some(g) = inner
        .guardian
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
    {
        g.owns("core.sock");
    }
    inner
        .tasks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(accept);
    tracing::info!(
        runtime_dir = %s.runtime_dir.display(),
        modules = inner.modules().known.len(),
        "core started"
    );
    Ok(())
}

/// Reads every modules dir again; loaded modules keep running on the manifest they started with.
pub(crate) fn rediscover(inner: &Inner) {
    let found = crate::discovery::discover(&inner.settings.modules_dirs);
    let mut m = inner.modules();
    let loaded: Vec<String> = m
        .records
        .iter()
        .filter(|(_, r)| r.state().is_loaded() || r.state() == State::Stopping)
        .map(|(n, _)| n.clone())
        .collect();
    let mut known = std::collections::BTreeMap::new();
    for manifest in found.manifests {
        known.insert(manifest.name.as_str().to_owned(), manifest);
    }
    for name in loaded {
        if let Some(old) = m.known.get(&name) {
            known.insert(name, old.clone());
        }
    }
    m.faults = found.faults.iter().map(ToString::to_string).collect();
    m.invalid = found.invalid;
    for f in &m.faults {
        tracing::warn!("module not registered: {f}");
    }
    // Modules added by `processPlugin` outside the modules dirs stay known.
    for (name, manifest) in std::mem::take(&mut m.known) {
        known.entry(name).or_insert(manifest);
    }
    m.known = known;
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

/// Adds (or replaces) a known module from its manifest (`core.processPlugin`), under the
/// lifecycle lock so no plan sees the set change midway. `Ok(Err(state))` when the module is
/// loaded (or stopping) and so keeps the manifest it runs with.
pub(crate) async fn register(
    inner: &Arc<Inner>,
    manifest: Manifest,
) -> Result<Result<String, State>, Error> {
    operation(inner, move |inner| async move {
        refuse_after_shutdown(&inner)?;
        let name = manifest.name.as_str().to_owned();
        let mut m = inner.modules();
        let state = m.state(&name);
        if state.is_loaded() || state == State::Stopping {
            return Ok(Err(state));
        }
        m.known.insert(name.clone(), manifest);
        Ok(Ok(name))
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
    for n in names {
        if !inner.modules().known.contains_key(*n) {
            return Err(inner.unknown(n));
        }
    }
    let plan = {
        let m = inner.modules();
        let plan =
            crate::resolver::Resolver::new(m.known.values()).plan_load(&m.loaded_versions(), names);
        m.check_plan(names, plan)?
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
        let m = inner.modules();
        if !m.known.contains_key(name) {
            drop(m);
            return Err(inner.unknown(name));
        }
        if !m.state(name).is_loaded() {
            return Err(Error::NotLoaded {
                name: name.to_owned(),
            });
        }
        let loaded: Vec<String> = m.loaded_versions().into_keys().collect();
        crate::resolver::Resolver::new(m.known.values()).plan_unload(&loaded, name, cascade)?
    };
    for n in order {
        stop_module(inner, n.as_str(), inner.settings.stop_grace).await;
    }
    Ok(())
}

/// Manual restart: stop if loaded, read metadata again, start; clears `failed` and the budget.
async fn reload_locked(inner: &Arc<Inner>, name: &str) -> Result<(), Error> {
    if !inner.modules().known.contains_key(name) {
        rediscover(inner);
        if !inner.modules().known.contains_key(name) {
            return Err(inner.unknown(name));
        }
    }
    let state = inner.modules().state(name);
    if state.is_loaded() {
        stop_module(inner, name, inner.settings.stop_grace).await;
    }
    rediscover(inner);
    {
        let mut m = inner.modules();
        if let Some(r) = m.records.get_mut(name) {
            r.crash_times.clear();
            if r.state() == State::Failed {
                r.state = Some(State::Stopped);
            }
        }
    }
    load_locked(inner, &[name]).await
}

/// Stops every loaded module, leaves first, then closes the endpoint and removes files.
async fn shutdown_locked(inner: &Arc<Inner>) {
    if inner.stopping.swap(true, Ordering::SeqCst) {
        return;
    }
    tracing::info!("core shutting down");
    let layers = {
        let m = inner.modules();
        let loaded: Vec<String> = m
            .records
            .iter()
            .filter(|(_, r)| r.state().is_loaded())
            .map(|(n, _)| n.clone())
            .collect();
        crate::resolver::Resolver::new(m.known.values()).shutdown_layers(&loaded)
    };
    for layer in layers {
        let stops = layer
            .iter()
            .map(|n| stop_module(inner, n.as_str(), inner.settings.stop_grace));
        futures::future::join_all(stops).await;
    }
    for t in inner
        .tasks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain(..)
    {
        t.abort();
    }
    let _ = std::fs::remove_file(inner.control_socket());
    let _ = std::fs::remove_file(inner.client_token_path());
    let _ = std::fs::remove_dir(inner.modules_socket_dir());
    let _ = std::fs::remove_dir(&inner.settings.runtime_dir);
    if let Some(g) = inner
        .guardian
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
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

/// Snapshots of every known module.
pub(crate) fn infos(inner: &Inner) -> Vec<ModuleInfo> {
    let m = inner.modules();
    m.known
        .iter()
        .map(|(name, manifest)| {
            let rec = m.records.get(name);
            let state = rec.map_or(State::Known, Record::state);
            let window = inner.settings.restart.window;
            ModuleInfo {
                name: name.clone(),
                version: manifest.version.to_string(),
                state,
                pid: rec.and_then(|r| r.pid),
                uptime: rec.and_then(|r| r.started).map(|(i, _)| i.elapsed()),
                restarts: rec.map_or(0, |r| r.restarts),
                last_exit: rec.and_then(|r| r.last_exit.clone()),
                restart_policy: backoff::policy(inner, manifest),
                recent_crashes: rec.map_or(0, |r| {
                    let n = r
                        .crash_times
                        .iter()
                        .filter(|t| t.elapsed() <= window)
                        .count();
                    u32::try_from(n).unwrap_or(u32::MAX)
                }),
                next_restart: rec
                    .filter(|_| state == State::Backoff)
                    .and_then(|r| r.backoff_until)
                    .map(|t| t.saturating_duration_since(Instant::now())),
                unhealthy: rec.and_then(|r| r.unhealthy.clone()),
            }
        })
        .collect()
}

pub(crate) fn set_state(inner: &Inner, name: &str, state: State) {
    let old = {
        let mut m = inner.modules();
        let rec = m.records.entry(name.to_owned()).or_default();
        let old = rec.state();
        rec.state = Some(state);
        old
    };
    announce_state(inner, name, old, state);
}

/// Logs and publishes `stateChanged` for a transition already recorded.
fn announce_state(inner: &Inner, name: &str, old: State, state: State) {
    if old != state {
        tracing::info!(module = name, from = %old, to = %state, "module state changed");
        inner.hub.publish(
            CORE_MODULE,
            "stateChanged",
            &[
                Value::from(name),
                Value::from(old.as_str()),
                Value::from(state.as_str()),
            ],
        );
    }
}

/// Starts one module whose dependencies are ready; returns when it is ready. On failure the
/// module is left `stopped`.
pub(crate) async fn start_module(inner: &Arc<Inner>, name: &str) -> Result<(), Error> {
    start_module_or(inner, name, State::Stopped).await
}

/// [`start_module`], leaving the module in `failed_state` when the start fails (a crash
/// restart leaves it `crashed`, so it never looks stopped on request in between).
pub(crate) async fn start_module_or(
    inner: &Arc<Inner>,
    name: &str,
    failed_state: State,
) -> Result<(), Error> {
    let manifest: Manifest = inner
        .modules()
        .known
        .get(name)
        .cloned()
        .ok_or_else(|| inner.unknown(name))?;
    let generation = {
        let mut m = inner.modules();
        let rec = m.records.entry(name.to_owned()).or_default();
        rec.generation += 1;
        rec.generation
    };
    set_state(inner, name, State::Starting);
    match start_process(inner, &manifest, generation).await {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::warn!(module = name, "start failed: {e}");
            set_state(inner, name, failed_state);
            Err(e)
        }
    }
}

async fn start_process(
    inner: &Arc<Inner>,
    manifest: &Manifest,
    generation: u64,
) -> Result<(), Error> {
    let name = manifest.name.as_str().to_owned();
    let overrides = inner
        .settings
        .modules
        .get(&name)
        .cloned()
        .unwrap_or_default();
    let host = inner.host.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let spawned = spawn::spawn(spawn::SpawnRequest {
        manifest,
        host: &host,
        runtime_dir: &inner.settings.runtime_dir,
        hidden: &inner.settings.hidden,
        data_dir: inner.settings.data_dir.join(&name),
        socket_path: inner.socket_path(&name),
        env: &overrides.env,
        limits: overrides.limits,
        log_filter: &inner.settings.module_log,
        start_timeout: inner.settings.start_timeout,
        session: inner.settings.session.clone(),
        confine: inner.settings.landlock,
    })
    .await;
    let spawned = match spawned {
        Ok(s) => s,
        Err(spawn::Failure { error, exit }) => {
            if let Some(exit) = exit {
                // It ran and died before it was ready: that exit is what `info` reports.
                let mut m = inner.modules();
                if let Some(rec) = m.records.get_mut(&name)
                    && rec.generation == generation
                {
                    rec.last_exit = Some(exit);
                }
            }
            return Err(error);
        }
    };
    let spawn::Spawned {
        mut child,
        pid,
        pending,
        stderr,
        forwarders,
        spawned_at,
        cgroup,
    } = spawned;

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
        spawn::kill_and_reap(&mut child).await;
        return Err(Error::StartFailed {
            module: name,
            reason,
            status: None,
            stderr_tail: stderr.snapshot(),
        });
    }
    let interface = pending
        .hello
        .attrs
        .get("interface")
        .cloned()
        .unwrap_or(Value::Null);
    let welcome = Welcome {
        major: logos_wire::PROTOCOL_MAJOR,
        minor: logos_wire::PROTOCOL_MINOR,
        identity: CORE_MODULE.to_owned(),
        attrs: [("module".to_owned(), Value::from(name.as_str()))]
            .into_iter()
            .collect(),
    };
    let handler = Arc::new(ModuleConn::new(inner, &name));
    let session = match pending.accept(name.clone(), welcome, handler).await {
        Ok(s) => s,
        Err(e) => {
            spawn::kill_and_reap(&mut child).await;
            return Err(Error::StartFailed {
                module: name,
                reason: format!("handshake failed: {e}"),
                status: None,
                stderr_tail: stderr.snapshot(),
            });
        }
    };

    let (kill_tx, kill_rx) = mpsc::unbounded_channel();
    let (exit_tx, exit_rx) = watch::channel(false);
    {
        let mut m = inner.modules();
        let rec = m.records.entry(name.clone()).or_default();
        rec.pid = Some(pid);
        rec.started = Some((Instant::now(), SystemTime::now()));
        rec.session = Some(session.clone());
        rec.interface = Some(interface);
        rec.kill = Some(kill_tx);
        rec.exited = Some(exit_rx);
        rec.unhealthy = None;
        rec.backoff_until = None;
    }
    if let Some(g) = inner
        .guardian
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
    {
        g.started(pid, &name);
    }
    // Ready before the watcher exists, so an exit right away is always seen as a crash of a
    // ready module (never overwritten by a late `ready`), and `moduleUp` precedes its
    // `moduleDown`.
    set_state(inner, &name, State::Ready);
    if inner.hub.has_subscribers(&name) {
        let _ = session.subscribe(&name, "");
    }
    inner
        .hub
        .publish(CORE_MODULE, "moduleUp", &[Value::from(name.as_str())]);
    let watcher_inner = Arc::clone(inner);
    let watcher_name = name.clone();
    tokio::spawn(async move {
        let status = watch_child(&mut child, kill_rx).await;
        // Whatever the module started dies with it (a module dies alone, and leaves nothing
        // behind). The group cannot have been reused yet: a group id stays taken while any
        // member lives, and the leader was reaped only just now.
        sys::kill_group(pid, Signal::Kill);
        // Children that left the group with setsid are still in the cgroup.
        drop(cgroup);
        // The last lines it wrote may still be in the pipe: read them for the report.
        let tail = spawn::drain_tail(forwarders, &stderr).await;
        let report = spawn::report(status, spawned_at, tail);
        let crashed = record_exit(&watcher_inner, &watcher_name, generation, pid, &report);
        exit_tx.send_replace(true);
        if crashed {
            on_crash(&watcher_inner, &watcher_name, generation, report).await;
        }
    });
    tokio::spawn(heartbeat(
        Arc::clone(inner),
        name.clone(),
        generation,
        session.clone(),
    ));
    Ok(())
}

/// Waits for the child to exit, delivering signals asked for meanwhile. Owning the child until
/// it is reaped guarantees a signal never reaches a recycled pid.
async fn watch_child(
    child: &mut tokio::process::Child,
    mut kill_rx: mpsc::UnboundedReceiver<Signal>,
) -> std::process::ExitStatus {
    loop {
        tokio::select! {
            status = child.wait() => {
                match status {
                    Ok(s) => return s,
                    Err(e) => {
                        tracing::error!("waiting for module process failed: {e}");
                        let _ = child.start_kill();
                    }
                }
            }
            Some(sig) = kill_rx.recv() => {
                if let Some(pid) = child.id() {
                    sys::kill_group(pid, sig);
                }
            }
        }
    }
}

/// Pings a module on its control connection; kills it after repeated misses.
async fn heartbeat(
    inner: Arc<Inner>,
    name: String,
    generation: u64,
    session: logos_session::Session,
) {
    let every = inner.settings.heartbeat;
    let mut missed = 0;
    let mut last_health: Option<String> = None;
    loop {
        tokio::time::sleep(every).await;
        if session.is_closed() || current_generation(&inner, &name) != Some(generation) {
            return;
        }
        match session.ping(every * 2).await {
            Ok(health) => {
                missed = 0;
                if health != last_health {
                    match &health {
                        Some(reason) => {
                            tracing::warn!(module = %name, "module reports itself unhealthy: {reason}")
                        }
                        None => {
                            tracing::info!(module = %name, "module reports itself healthy again")
                        }
                    }
                    if let Some(r) = inner.modules().records.get_mut(&name) {
                        r.unhealthy = health.clone();
                    }
                    last_health = health;
                }
            }
            Err(f) if f.code == ErrorCode::Timeout => {
                missed += 1;
                if missed >= MISSED_HEARTBEATS {
                    tracing::error!(module = %name, "module missed {missed} heartbeats; killing it");
                    signal(&inner, &name, Signal::Kill);
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

fn current_generation(inner: &Inner, name: &str) -> Option<u64> {
    inner.modules().records.get(name).map(|r| r.generation)
}

fn signal(inner: &Inner, name: &str, sig: Signal) {
    if let Some(k) = inner
        .modules()
        .records
        .get(name)
        .and_then(|r| r.kill.clone())
    {
        let _ = k.send(sig);
    }
}

/// Tells every other loaded module to forget tokens naming `name`, and forgets them here.
async fn revoke(inner: &Arc<Inner>, name: &str) {
    inner.tokens().revoke_module(name);
    let others: Vec<(String, logos_session::Session)> = inner
        .modules()
        .records
        .iter()
        .filter(|(n, r)| n.as_str() != name && r.state() == State::Ready)
        .filter_map(|(n, r)| r.session.clone().map(|s| (n.clone(), s)))
        .collect();
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
pub(crate) async fn stop_module(inner: &Arc<Inner>, name: &str, grace: Duration) {
    let (session, exited) = {
        let m = inner.modules();
        let Some(rec) = m.records.get(name) else {
            return;
        };
        (rec.session.clone(), rec.exited.clone())
    };
    let state = inner.modules().state(name);
    if !state.is_loaded() {
        return;
    }
    set_state(inner, name, State::Stopping);
    inner.hub.publish(
        CORE_MODULE,
        "moduleDown",
        &[Value::from(name), Value::from("unloaded")],
    );
    revoke(inner, name).await;
    if let Some(mut exited) = exited {
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
    set_state(inner, name, State::Stopped);
}

/// The process of `name` (start `generation`) ended: records it and tells whether nobody
/// asked for it (a crash). Runs before anyone waiting for the exit is woken.
fn record_exit(inner: &Inner, name: &str, generation: u64, pid: u32, report: &ExitReport) -> bool {
    if let Some(g) = inner
        .guardian
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
    {
        g.ended(pid);
    }
    let (was, crashed) = {
        let mut m = inner.modules();
        let Some(rec) = m.records.get_mut(name) else {
            return false;
        };
        if rec.generation != generation {
            // A newer process of this module owns the socket path now: leave its socket be.
            return false;
        }
        let _ = std::fs::remove_file(inner.socket_path(name));
        if let Some(s) = rec.session.take() {
            s.close(Fault::new(
                ErrorCode::Unavailable,
                format!("module {name} exited"),
            ));
        }
        rec.pid = None;
        rec.started = None;
        rec.kill = None;
        rec.unhealthy = None;
        rec.last_exit = Some(report.clone());
        let was = rec.state();
        let crashed = was != State::Stopping && !inner.stopping.load(Ordering::SeqCst);
        if crashed {
            // Under the same lock as the exit itself, so no stop can slip in between.
            rec.state = Some(State::Crashed);
        }
        (was, crashed)
    };
    if !crashed {
        tracing::info!(module = name, status = %report.status_text(), "module exited");
        return false;
    }
    announce_state(inner, name, was, State::Crashed);
    true
}

/// A crash: report it everywhere, revoke tokens, let the restart policy decide.
async fn on_crash(inner: &Arc<Inner>, name: &str, generation: u64, report: ExitReport) {
    tracing::warn!(
        module = name,
        status = %report.status_text(),
        uptime_ms = report.uptime.as_millis() as u64,
        stderr = ?report.stderr_tail,
        restarts = inner.modules().records.get(name).map_or(0, |r| r.restarts),
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
pub(crate) fn publish_crash(inner: &Inner, name: &str, report: &ExitReport) {
    let restarts = inner.modules().records.get(name).map_or(0, |r| r.restarts);
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
