//! [`Core`]: the embedding API.
//!
//! Owns the public operations (start, load, unload, reload, refresh, call, subscribe, list,
//! stats, shutdown): each checks its arguments and whether the core runs, then hands over to
//! the part that owns the job (`supervisor` for lifecycle operations, `conn` for calls,
//! `events` for subscriptions, the `registry` for snapshots). Holds no state of its own (that
//! is `state.rs`), never spawns or signals a process, never parses metadata and never decides
//! access.

use crate::builder::{Builder, Settings};
use crate::error::Error;
use crate::events::Subscription;
use crate::manifest::Manifest;
use crate::name::{CORE_MODULE, check_name_len};
use crate::registry::ModuleInfo;
use crate::state::Inner;
use crate::supervisor::SwapReport;
use logos_wire::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A running (or ready to start) logos core. Cheap to clone; all clones are the same core.
#[derive(Clone)]
pub struct Core {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("runtime_dir", &self.inner.settings.runtime_dir)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Starts configuring a core.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn new(settings: Settings) -> Core {
        Core {
            inner: Arc::new(Inner::new(settings)),
        }
    }

    /// This core with its module processes started by `spawn` (the supervisor's tests).
    #[cfg(test)]
    pub(crate) fn with_spawn(mut self, spawn: Box<dyn crate::supervisor::child::Spawn>) -> Core {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.spawn = spawn;
        }
        self
    }

    /// Creates the runtime dir, discovers modules, opens the control endpoint.
    ///
    /// # Errors
    /// [`Error::AlreadyRunning`] if another core serves the runtime dir, [`Error::Io`] for file
    /// system problems. Metadata problems are not errors: the module is skipped and the
    /// problem is logged and listed by [`Core::faults`].
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future may leave the runtime dir half set up.
    pub async fn start(self) -> Result<Core, Error> {
        crate::supervisor::start_core(&self.inner).await?;
        Ok(self)
    }

    /// Loads `name` and its dependencies; returns when all are ready.
    ///
    /// # Errors
    /// Resolution errors name the dependency chain; start errors carry the module's exit
    /// status and last stderr lines. Nothing this load started is left running on error.
    /// [`Error::InvalidName`] for a name longer than [`ModuleName::MAX_LEN`](crate::ModuleName::MAX_LEN).
    ///
    /// # Cancel safety
    /// Dropping the future does not cancel the load: it runs to its end (ready, or rolled
    /// back) in its own task, and a later operation waits for it.
    pub async fn load(&self, name: &str) -> Result<(), Error> {
        self.load_many(&[name]).await
    }

    /// Loads several modules in one plan (shared dependencies start once).
    ///
    /// # Errors
    /// As [`Core::load`].
    ///
    /// # Cancel safety
    /// As [`Core::load`].
    pub async fn load_many(&self, names: &[&str]) -> Result<(), Error> {
        self.ensure_started()?;
        for name in names {
            check_name_len(name)?;
        }
        crate::supervisor::load(&self.inner, names).await
    }

    /// Unloads `name`. With `cascade`, loaded dependents are unloaded first (leaves first);
    /// without it, loaded dependents make this fail.
    ///
    /// # Errors
    /// [`Error::NotLoaded`], [`Error::HasDependents`], [`Error::InvalidName`].
    ///
    /// # Cancel safety
    /// Dropping the future does not cancel the unload: the module is still stopped and
    /// reaped, and a later load waits for that.
    pub async fn unload(&self, name: &str, cascade: bool) -> Result<(), Error> {
        self.ensure_started()?;
        check_name_len(name)?;
        crate::supervisor::unload(&self.inner, name, cascade).await
    }

    /// Stops and starts `name` again (a manual restart: it does not count against the
    /// restart budget and clears a `failed` state). Metadata is read again first.
    ///
    /// # Errors
    /// As [`Core::load`].
    ///
    /// # Cancel safety
    /// As [`Core::load`].
    pub async fn reload(&self, name: &str) -> Result<(), Error> {
        self.ensure_started()?;
        check_name_len(name)?;
        crate::supervisor::reload(&self.inner, name).await
    }

    /// Replaces `name`'s process without a gap (a hot swap): a new process is started from
    /// the re-read metadata and made ready while the old one serves, calls switch to it in
    /// one step, and the old one finishes what it was sent and stops. Dependents reconnect on
    /// their next call and re-subscribe on `core.moduleUp`. A module that is not loaded is
    /// loaded.
    ///
    /// # Errors
    /// [`Error::HotSwap`] when the module is not `ready`, the new metadata does not fit the
    /// loaded set, or the new process fails to start (the old one keeps serving then); the
    /// errors of [`Core::load`] for a module that was not loaded.
    ///
    /// # Cancel safety
    /// As [`Core::load`].
    pub async fn reload_hot(&self, name: &str) -> Result<SwapReport, Error> {
        self.ensure_started()?;
        check_name_len(name)?;
        crate::supervisor::reload_hot(&self.inner, name).await
    }

    /// Calls `target.method(args)`. `target` may be a module or the built-in `core`.
    ///
    /// # Errors
    /// [`Error::Call`] with the wire error (its [`Error::code`] tells which);
    /// [`Error::InvalidName`] for a target longer than [`ModuleName::MAX_LEN`](crate::ModuleName::MAX_LEN).
    pub async fn call(&self, target: &str, method: &str, args: Vec<Value>) -> Result<Value, Error> {
        self.ensure_started()?;
        check_name_len(target)?;
        crate::conn::route_call(
            &self.inner,
            &crate::conn::Caller::Embedder,
            target,
            method,
            args,
        )
        .await
        .map_err(|fault| Error::Call {
            target: target.to_owned(),
            method: method.to_owned(),
            fault,
        })
    }

    /// Subscribes to `event` of `source` (`""` = every event of `source`; source `core` gives
    /// `moduleUp`, `moduleDown`, `moduleCrashed`, `stateChanged`).
    ///
    /// # Errors
    /// [`Error::UnknownModule`] when `source` is neither `core` nor a known module,
    /// [`Error::InvalidName`] when it is longer than [`ModuleName::MAX_LEN`](crate::ModuleName::MAX_LEN).
    pub fn subscribe(&self, source: &str, event: &str) -> Result<Subscription, Error> {
        self.ensure_started()?;
        check_name_len(source)?;
        if source != CORE_MODULE {
            let registry = self.inner.registry();
            if !registry.is_known(source) {
                return Err(registry.unknown(source));
            }
        }
        let sub = self.inner.hub.subscribe_local(source, event);
        crate::conn::want_events(&self.inner, source);
        Ok(sub)
    }

    /// Scans the modules dirs again, as [`Core::start`] did: modules added since become known,
    /// and the metadata of modules that are not loaded is read again. A module whose
    /// `metadata.json` is gone is forgotten (becomes unknown) unless it is loaded: a loaded
    /// module keeps running on the metadata it started with and is forgotten by the first
    /// refresh after it is unloaded. Modules registered from elsewhere (`core.processPlugin`)
    /// stay known while their metadata exists. Metadata problems are not errors, as at start:
    /// see [`Core::faults`].
    ///
    /// # Errors
    /// [`Error::NotStarted`], [`Error::ShutDown`].
    ///
    /// # Cancel safety
    /// Cancel safe: the scan runs without awaiting once the lifecycle lock is held.
    pub async fn refresh(&self) -> Result<(), Error> {
        self.ensure_started()?;
        crate::supervisor::refresh(&self.inner).await
    }

    /// Every known module with its state.
    pub fn modules(&self) -> Vec<ModuleInfo> {
        self.inner.registry().infos(&self.inner.settings)
    }

    /// Figures of every known module: state, pid, uptime, crash restarts, health, resident
    /// memory, CPU time, and the calls its current process served (count, errors, latency
    /// percentiles). Running modules are asked at once; one that does not answer within
    /// [`crate::STATS_TIMEOUT`] (hung, or a module without `$stats`) gets `None` call figures.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(core: &logos_core::Core) {
    /// for m in core.stats().await {
    ///     println!("{} {} calls, p99 {:?}", m.name, m.calls.unwrap_or(0), m.latency.map(|l| l.p99));
    /// }
    /// # }
    /// ```
    pub async fn stats(&self) -> Vec<crate::stats::ModuleStats> {
        crate::stats::collect(&self.inner).await
    }

    /// Access denials the policy has made since the core started, by caller and target.
    pub fn denials(&self) -> Vec<crate::stats::Denial> {
        crate::stats::denials(&self.inner)
    }

    /// Module processes started since the core started, in a spare host and the cold way
    /// (docs/architecture.md, "Spare hosts").
    pub fn starts(&self) -> crate::stats::StartFigures {
        let (spare, cold) = self.inner.counters.starts();
        crate::stats::StartFigures { spare, cold }
    }

    /// Heartbeats of local modules since the core started, seen on their heartbeat pages and
    /// answered to pings (docs/architecture.md, "Heartbeat").
    pub fn heartbeats(&self) -> crate::stats::HeartbeatFigures {
        let (page, ping) = self.inner.counters.beats();
        crate::stats::HeartbeatFigures { page, ping }
    }

    /// The core's own events (`core.moduleUp`, `stateChanged`, …) published since it
    /// started, and deliveries of them dropped because a subscriber read too slowly.
    pub fn core_events(&self) -> crate::stats::EventFigures {
        let (emitted, dropped) = self.inner.hub.core_event_figures();
        crate::stats::EventFigures { emitted, dropped }
    }

    /// Whether `presented` is an operator's token: the client token, or a live named token
    /// (`logoscore issue-token`), checked as the control endpoint checks it (constant time).
    /// Returns who it is: `"client"` or the named token's name.
    ///
    /// # Errors
    /// [`Error::NotOperator`] naming why (wrong token, expired named token, unreadable store).
    pub fn authenticate(&self, presented: &[u8]) -> Result<String, Error> {
        crate::conn::operator_name(&self.inner, presented)
    }

    /// One module's state.
    ///
    /// # Errors
    /// [`Error::UnknownModule`], [`Error::InvalidName`] (longer than [`ModuleName::MAX_LEN`](crate::ModuleName::MAX_LEN)).
    pub fn module(&self, name: &str) -> Result<ModuleInfo, Error> {
        check_name_len(name)?;
        let registry = self.inner.registry();
        registry
            .infos(&self.inner.settings)
            .into_iter()
            .find(|m| m.name == name)
            .ok_or_else(|| registry.unknown(name))
    }

    /// The manifest of a known module.
    ///
    /// # Errors
    /// [`Error::UnknownModule`], [`Error::InvalidName`] (longer than [`ModuleName::MAX_LEN`](crate::ModuleName::MAX_LEN)).
    pub fn manifest(&self, name: &str) -> Result<Manifest, Error> {
        check_name_len(name)?;
        let registry = self.inner.registry();
        match registry.manifest(name) {
            Some(m) => Ok(m.clone()),
            None => Err(registry.unknown(name)),
        }
    }

    /// The interface (methods, events) a loaded module registered.
    ///
    /// # Errors
    /// [`Error::UnknownModule`], [`Error::NotLoaded`], [`Error::InvalidName`].
    pub fn interface(&self, name: &str) -> Result<Value, Error> {
        crate::builtin::manager::interface(&self.inner, name)
    }

    /// Metadata problems found by discovery (file, field, why).
    pub fn faults(&self) -> Vec<String> {
        self.inner.registry().faults().to_vec()
    }

    /// The private runtime dir.
    pub fn runtime_dir(&self) -> &Path {
        &self.inner.settings.runtime_dir
    }

    /// The control endpoint clients (such as `logoscore`) connect to.
    pub fn control_socket(&self) -> PathBuf {
        self.inner.control_socket()
    }

    /// The file holding the client token (0600).
    pub fn client_token_path(&self) -> PathBuf {
        self.inner.client_token_path()
    }

    /// A random id of this core instance (12 hex digits), also sent to every client in the
    /// `welcome` of the control endpoint (`attrs.instance`), so a client can tell that it
    /// reached the core it was told about.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance
    }

    /// Where remote modules connect (the bound address, so a port 0 in
    /// [`Builder::listen`](crate::Builder::listen) shows the port picked), while the core
    /// listens for them.
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.remote.get().map(|r| r.addr)
    }

    /// Issues a credential for remote module `module` (replacing its live one): the
    /// credential file's text holds the core's addresses (`addresses`, default the listen
    /// address), the pin of the core's certificate and a new secret. `allow` names the
    /// modules the remote module may call (its metadata may depend on, or be permitted, no
    /// others). The core keeps only a salted hash of the secret.
    ///
    /// # Errors
    /// [`Error::RemoteSetup`] when the core does not listen, an address is not host:port or
    /// the listen address is a wildcard and no address is given, or the store cannot be
    /// written; [`Error::InvalidName`].
    pub fn grant_remote(
        &self,
        module: &str,
        expires_at: Option<std::time::SystemTime>,
        allow: Vec<String>,
        addresses: Vec<String>,
    ) -> Result<crate::remote::Granted, Error> {
        crate::remote::grant(&self.inner, module, expires_at, allow, addresses)
    }

    /// Every remote credential issued, live ones first (never a secret).
    ///
    /// # Errors
    /// [`Error::RemoteSetup`] when the core does not listen.
    pub fn remote_credentials(&self) -> Result<Vec<crate::remote::RemoteCredentialInfo>, Error> {
        Ok(crate::remote::get(&self.inner)?.store.list())
    }

    /// Revokes remote module `module`'s credential and closes its live link at once;
    /// `Ok(false)` when it had no live credential.
    ///
    /// # Errors
    /// [`Error::RemoteSetup`] when the core does not listen or the store cannot be written.
    pub fn revoke_remote(&self, module: &str) -> Result<bool, Error> {
        crate::remote::revoke(&self.inner, module)
    }

    /// Stops every module in reverse dependency order (each within the stop grace, then
    /// SIGTERM, then SIGKILL), closes the control endpoint and removes the sockets. Idempotent.
    pub async fn shutdown(&self) {
        if !self.inner.started.load(Ordering::SeqCst) {
            return;
        }
        crate::supervisor::shutdown(&self.inner).await;
    }

    /// Resolves once [`Core::shutdown`] has been requested (e.g. by `core.shutdown` from a
    /// client) and has finished.
    pub async fn stopped(&self) {
        crate::supervisor::wait_stopped(&self.inner).await;
    }

    fn ensure_started(&self) -> Result<(), Error> {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Err(Error::ShutDown);
        }
        if !self.inner.started.load(Ordering::SeqCst) {
            return Err(Error::NotStarted);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn manifest_of_an_unknown_module_is_an_error_not_a_deadlock() {
        let core = match Core::builder().build() {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(core.manifest("nope").map(|m| m.name.into_string()));
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Err(Error::UnknownModule { name, .. })) => assert_eq!(name, "nope"),
            Ok(other) => panic!("{other:?}"),
            Err(_) => panic!("Core::manifest of an unknown module did not return (deadlock)"),
        }
    }
}
