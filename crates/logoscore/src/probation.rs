//! Switching the version of a module a running core may have loaded, with a probation
//! window and automatic rollback.
//!
//! Two sides share one file per module, `<pkg dir>/probation/<name>.json`:
//!
//! - **The guard** runs inside `logoscore run`, one per modules dir that is a package dir's
//!   `modules/`, and holds an flock on `<pkg dir>/probation/.guard` while it lives. It takes
//!   requests (status `pending`), switches the active version under the store lock and, when
//!   the module is loaded, reloads it on the new version. If the new version fails to become
//!   ready, or crashes or ends `failed` within the probation window (default 30 s), the guard
//!   switches back, reloads the previous version and records why (`rolled_back`), also in
//!   the log. A module that is not loaded is just switched (and the core rescans).
//! - **The requester** (`install`, `upgrade`, `rollback`, `uninstall`) writes a request when
//!   a guard is alive, then waits for its outcome; with no guard (no core runs on this
//!   package dir) it switches the pointer itself, since nothing is running that version.
//!
//! The record is durable: a guard that restarts finds a request still pending and serves it.
//! Never touches a module's files; the store does.

use crate::error::Error;
use logos_core::{Core, Notification, Value};
use logos_pkg::Store;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    /// Make `to` the active version.
    Switch,
    /// Remove the module (refused while loaded).
    Uninstall,
}

/// Where a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// Written by the requester.
    Pending,
    /// The guard switched and is reloading.
    Starting,
    /// Switched; the module was not loaded, so nothing was restarted.
    Switched,
    /// Loaded on the new version, watched until `until_ms`.
    Probation,
    /// The probation window passed without a crash.
    Passed,
    /// The new version failed; the previous one runs again.
    RolledBack,
    /// Neither version could be started.
    Failed,
    /// Not done (e.g. uninstall of a loaded module).
    Refused,
    /// Uninstalled.
    Removed,
}

impl Status {
    fn settled(self) -> bool {
        !matches!(self, Status::Pending | Status::Starting)
    }
}

/// `<pkg dir>/probation/<name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub id: String,
    pub module: String,
    pub action: Action,
    pub from: Option<String>,
    pub to: Option<String>,
    pub from_version: Option<String>,
    pub to_version: Option<String>,
    pub window_ms: u64,
    pub status: Status,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub until_ms: Option<u64>,
}

fn dir(pkg_dir: &Path) -> PathBuf {
    pkg_dir.join("probation")
}

fn path(pkg_dir: &Path, module: &str) -> PathBuf {
    dir(pkg_dir).join(format!("{module}.json"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Reads a module's last record.
pub(crate) fn read(pkg_dir: &Path, module: &str) -> Option<Record> {
    serde_json::from_slice(&std::fs::read(path(pkg_dir, module)).ok()?).ok()
}

fn write(pkg_dir: &Path, rec: &Record) -> Result<(), Error> {
    std::fs::create_dir_all(dir(pkg_dir))
        .map_err(|e| Error::io("cannot create the probation dir", e))?;
    let bytes = serde_json::to_vec_pretty(rec).unwrap_or_default();
    Ok(logos_pkg::store::write_atomic(
        &path(pkg_dir, &rec.module),
        &bytes,
    )?)
}

fn guard_file(pkg_dir: &Path) -> Result<std::fs::File, Error> {
    std::fs::create_dir_all(dir(pkg_dir))
        .map_err(|e| Error::io("cannot create the probation dir", e))?;
    let p = dir(pkg_dir).join(".guard");
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| Error::io(format!("cannot open {}", p.display()), e))
}

/// Whether a running core guards this package dir.
pub(crate) fn guarded(pkg_dir: &Path) -> bool {
    let Ok(f) = guard_file(pkg_dir) else {
        return false;
    };
    // Taking the lock means nobody holds it; it is released when `f` drops.
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err()
}

/// Asks the guard to carry out `rec` and waits until it settles (and, with `to_end`, until a
/// probation ends). `deadline` bounds the wait.
pub(crate) async fn request(
    pkg_dir: &Path,
    mut rec: Record,
    deadline: Duration,
    to_end: bool,
) -> Result<Record, Error> {
    rec.status = Status::Pending;
    rec.id =
        logos_pkg::manifest::sha256_hex(format!("{}{}", now_ms(), std::process::id()).as_bytes())
            [..16]
            .to_owned();
    write(pkg_dir, &rec)?;
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(r) = read(pkg_dir, &rec.module).filter(|r| r.id == rec.id) {
            let done = r.status.settled() && !(to_end && r.status == Status::Probation);
            if done {
                return Ok(r);
            }
        } else {
            return Err(Error::Usage(format!(
                "the request for {} was replaced by another one; see `logoscore packages`",
                rec.module
            )));
        }
        if tokio::time::Instant::now() > give_up {
            return Err(Error::Usage(format!(
                "the running core did not finish switching {} within {deadline:?}; see its log and `logoscore packages`",
                rec.module
            )));
        }
    }
}

/// A new request (id and status are filled in by [`request`]).
pub(crate) fn new_record(
    module: &str,
    action: Action,
    from: Option<(String, String)>,
    to: Option<(String, String)>,
    window: Duration,
) -> Record {
    Record {
        id: String::new(),
        module: module.to_owned(),
        action,
        from_version: from.as_ref().map(|f| f.1.clone()),
        from: from.map(|f| f.0),
        to_version: to.as_ref().map(|t| t.1.clone()),
        to: to.map(|t| t.0),
        window_ms: window.as_millis() as u64,
        status: Status::Pending,
        reason: None,
        until_ms: None,
    }
}

/// Starts a guard for every modules dir of `core` that is a package dir's `modules/`.
pub(crate) fn spawn_guards(core: &Core, modules_dirs: &[PathBuf]) {
    for d in modules_dirs {
        let Some(pkg_dir) = d.parent() else { continue };
        if d.file_name().is_some_and(|n| n == "modules")
            && pkg_dir.join("store").is_dir()
            && pkg_dir.join("state").is_dir()
        {
            let (core, pkg_dir) = (core.clone(), pkg_dir.to_path_buf());
            tokio::spawn(async move {
                if let Err(e) = guard(core, &pkg_dir).await {
                    tracing::warn!(dir = %pkg_dir.display(), "package guard stopped: {e}");
                }
            });
        }
    }
}

async fn guard(core: Core, pkg_dir: &Path) -> Result<(), Error> {
    let file = guard_file(pkg_dir)?;
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        tracing::warn!(dir = %pkg_dir.display(), "another core guards this package dir; upgrades there are probed by it");
        return Ok(());
    }
    let store = Store::open(pkg_dir)?;
    let mut events = core
        .subscribe(logos_core::CORE_MODULE, "")
        .map_err(|e| Error::Usage(format!("cannot watch the core's events: {e}")))?;
    tracing::info!(dir = %pkg_dir.display(), "package guard: upgrades of modules loaded from here are probed and rolled back on failure");
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            n = events.recv() => {
                let Some(Notification::Event { event, data, .. }) = n else {
                    if n.is_none() { return Ok(()); }
                    continue;
                };
                let name = data.first().and_then(Value::as_str).unwrap_or_default().to_owned();
                let why = match event.as_str() {
                    "moduleCrashed" => Some(format!("it crashed ({}) within the probation window{}", exit_text(&data), stderr_text(&data))),
                    "stateChanged" if data.get(2).and_then(Value::as_str) == Some("failed") => Some("it ended failed (restart budget exhausted) within the probation window".to_owned()),
                    _ => None,
                };
                if let Some(why) = why
                    && let Some(rec) = read(pkg_dir, &name).filter(|r| r.status == Status::Probation && r.until_ms.is_some_and(|u| now_ms() <= u))
                {
                    roll_back(&core, &store, pkg_dir, rec, why).await;
                }
            }
            _ = tick.tick() => {
                for rec in records(pkg_dir) {
                    match rec.status {
                        Status::Pending | Status::Starting => serve(&core, &store, pkg_dir, rec).await,
                        Status::Probation if rec.until_ms.is_some_and(|u| now_ms() > u) => {
                            let mut r = rec;
                            r.status = Status::Passed;
                            tracing::info!(module = %r.module, version = ?r.to_version, "upgrade passed its probation");
                            let _ = write(pkg_dir, &r);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

fn exit_text(data: &[Value]) -> String {
    data.get(1)
        .map(|v| match v {
            Value::Text(t) => t.clone(),
            other => other.to_string(),
        })
        .unwrap_or_else(|| "exit".into())
}

fn stderr_text(data: &[Value]) -> String {
    let lines: Vec<String> = data
        .get(3)
        .and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l.as_str().map(str::to_owned))
        .collect();
    match lines.last() {
        Some(l) => format!("; last stderr line: {l}"),
        None => String::new(),
    }
}

fn records(pkg_dir: &Path) -> Vec<Record> {
    std::fs::read_dir(dir(pkg_dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect()
}

async fn with_lock<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&Store, &logos_pkg::store::StoreLock) -> Result<T, logos_pkg::Error> + Send + 'static,
) -> Result<T, Error> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let lock = store.lock()?;
        f(&store, &lock)
    })
    .await
    .map_err(|e| Error::io("store task", std::io::Error::other(e)))?
    .map_err(Error::from)
}

async fn serve(core: &Core, store: &Store, pkg_dir: &Path, mut rec: Record) {
    let loaded = core.module(&rec.module).is_ok_and(|m| {
        m.state.is_loaded()
            || m.state == logos_core::State::Backoff
            || m.state == logos_core::State::Crashed
    });
    match rec.action {
        Action::Uninstall => {
            if loaded {
                rec.status = Status::Refused;
                rec.reason = Some(format!(
                    "{} is loaded; unload it first (`logoscore unload {}`)",
                    rec.module, rec.module
                ));
            } else {
                let name = rec.module.clone();
                match with_lock(store, move |s, l| s.uninstall(l, &name)).await {
                    Ok(_) => rec.status = Status::Removed,
                    Err(e) => {
                        rec.status = Status::Failed;
                        rec.reason = Some(e.to_string());
                    }
                }
                let _ = core.refresh().await;
            }
            let _ = write(pkg_dir, &rec);
        }
        Action::Switch => {
            let Some(to) = rec.to.clone() else { return };
            if let Err(e) = with_lock(store, move |s, l| s.activate(l, &to)).await {
                rec.status = Status::Failed;
                rec.reason = Some(e.to_string());
                let _ = write(pkg_dir, &rec);
                return;
            }
            if !loaded {
                let _ = core.refresh().await;
                rec.status = Status::Switched;
                let _ = write(pkg_dir, &rec);
                return;
            }
            rec.status = Status::Starting;
            let _ = write(pkg_dir, &rec);
            match core.reload(&rec.module).await {
                Ok(()) => {
                    rec.status = Status::Probation;
                    rec.until_ms = Some(now_ms() + rec.window_ms);
                    tracing::info!(module = %rec.module, version = ?rec.to_version, "upgraded and ready; on probation for {} ms", rec.window_ms);
                    let _ = write(pkg_dir, &rec);
                }
                Err(e) => {
                    let why = format!("the new version did not become ready: {e}");
                    roll_back(core, store, pkg_dir, rec, why).await;
                }
            }
        }
    }
}

async fn roll_back(core: &Core, store: &Store, pkg_dir: &Path, mut rec: Record, why: String) {
    tracing::error!(module = %rec.module, from = ?rec.to_version, to = ?rec.from_version, "upgrade failed, rolling back: {why}");
    let Some(from) = rec.from.clone() else {
        rec.status = Status::Failed;
        rec.reason = Some(format!("{why}; there is no previous version to go back to"));
        let _ = write(pkg_dir, &rec);
        return;
    };
    if let Err(e) = with_lock(store, move |s, l| s.activate(l, &from)).await {
        rec.status = Status::Failed;
        rec.reason = Some(format!("{why}; switching back failed: {e}"));
        let _ = write(pkg_dir, &rec);
        return;
    }
    match core.reload(&rec.module).await {
        Ok(()) => {
            rec.status = Status::RolledBack;
            rec.reason = Some(why);
        }
        Err(e) => {
            rec.status = Status::Failed;
            rec.reason = Some(format!(
                "{why}; the previous version did not start either: {e}"
            ));
        }
    }
    let _ = write(pkg_dir, &rec);
}
