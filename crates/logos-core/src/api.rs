//! [`Core`]: the embedding API and the shared state every part of the runtime works on.
//!
//! Owns the public operations (start, load, unload, call, subscribe, list, shutdown) and routes
//! calls: `core` and `capability_module` to the built-ins, anything else to the module's control
//! connection. Never spawns or signals a process itself (`supervisor`), never parses metadata
//! (`manifest`), never decides access (`policy`).

use crate::builder::{Builder, Settings};
use crate::error::Error;
use crate::events::{Hub, Subscription};
use crate::manifest::{Manifest, ManifestError};
use crate::name::{CORE_MODULE, ModuleName, check_name_len, closest};
use crate::policy::Policy;
use crate::registry::{ModuleInfo, Record, State};
use crate::supervisor::guardian::Guardian;
use crate::token::Tokens;
use logos_session::Fault;
use logos_wire::{ErrorCode, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

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

/// Known modules and their records.
#[derive(Debug, Default)]
pub(crate) struct Modules {
    pub known: BTreeMap<String, Manifest>,
    pub records: HashMap<String, Record>,
    /// Metadata problems found by discovery, for people.
    pub faults: Vec<String>,
    /// Modules found with invalid metadata, by directory name: what to say instead of "not
    /// known" when one is asked for.
    pub invalid: BTreeMap<String, ManifestError>,
}

impl Modules {
    /// `name → version` of every loaded module.
    pub fn loaded_versions(&self) -> BTreeMap<String, semver::Version> {
        self.records
            .iter()
            .filter(|(_, r)| r.state().is_loaded())
            .filter_map(|(n, _)| self.known.get(n).map(|m| (n.clone(), m.version.clone())))
            .collect()
    }

    pub fn state(&self, name: &str) -> State {
        self.records.get(name).map_or(State::Known, Record::state)
    }

    /// Checks what the resolver cannot see before a plan starts anything: a dependency it
    /// found missing may be a module whose metadata is invalid (say so, with its faults), and
    /// every module about to start must name only known modules in its permissions.
    ///
    /// `requested` are the names asked for, `plan` what would start (`Err` as the resolver
    /// returned it).
    pub fn check_plan(
        &self,
        requested: &[&str],
        plan: Result<crate::resolver::StartPlan, Error>,
    ) -> Result<crate::resolver::StartPlan, Error> {
        let plan = match plan {
            Err(Error::MissingDependency { chain, known }) => {
                let missing = chain.last().map(ModuleName::as_str).unwrap_or_default();
                return Err(match self.invalid.get(missing) {
                    Some(error) => Error::InvalidMetadata {
                        chain: chain.iter().map(|n| n.as_str().to_owned()).collect(),
                        error: error.clone(),
                    },
                    None => Error::MissingDependency { chain, known },
                });
            }
            other => other?,
        };
        let modules: BTreeSet<String> = self
            .known
            .keys()
            .chain(self.invalid.keys())
            .cloned()
            .collect();
        for name in plan.modules() {
            let Some(manifest) = self.known.get(name.as_str()) else {
                continue;
            };
            if let Err(error) = crate::policy::check_permissions(manifest, &modules) {
                return Err(Error::InvalidMetadata {
                    chain: self.chain_to(requested, name.as_str()),
                    error,
                });
            }
        }
        Ok(plan)
    }

    /// The shortest dependency chain from one of `requested` to `target` (just `[target]` when
    /// it was requested itself or no chain is found).
    fn chain_to(&self, requested: &[&str], target: &str) -> Vec<String> {
        let mut queue: VecDeque<Vec<String>> =
            requested.iter().map(|r| vec![(*r).to_owned()]).collect();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        while let Some(path) = queue.pop_front() {
            let Some(last) = path.last() else { continue };
            if last == target {
                return path;
            }
            if !seen.insert(last.clone()) {
                continue;
            }
            if let Some(m) = self.known.get(last) {
                for dep in m.dependencies.keys() {
                    let mut next = path.clone();
                    next.push(dep.as_str().to_owned());
                    queue.push_back(next);
                }
            }
        }
        vec![target.to_owned()]
    }
}

/// Shared state of one core.
pub(crate) struct Inner {
    pub settings: Settings,
    pub modules: Mutex<Modules>,
    pub tokens: Mutex<Tokens>,
    pub policy: Mutex<Policy>,
    pub hub: Arc<Hub>,
    /// The lifecycle lock: serialises load, unload, reload, register, crash restarts and
    /// shutdown so plans never interleave. Taken only inside `supervisor`.
    pub ops: tokio::sync::Mutex<()>,
    pub started: AtomicBool,
    pub stopping: AtomicBool,
    pub client_secret: Mutex<Option<crate::token::Token>>,
    /// Named operator tokens, when the builder named a store.
    pub operators: Option<crate::operators::TokenStore>,
    /// Random id of this core instance, told to clients in `welcome` (`attrs.instance`).
    pub instance: String,
    pub guardian: Mutex<Option<Guardian>>,
    pub host: Mutex<PathBuf>,
    pub tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Becomes `true` when shutdown has finished.
    pub stopped_tx: tokio::sync::watch::Sender<bool>,
}

impl Inner {
    pub fn modules(&self) -> MutexGuard<'_, Modules> {
        self.modules.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn tokens(&self) -> MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn policy(&self) -> MutexGuard<'_, Policy> {
        self.policy.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn modules_socket_dir(&self) -> PathBuf {
        self.settings.runtime_dir.join("modules")
    }

    pub fn socket_path(&self, module: &str) -> PathBuf {
        self.modules_socket_dir().join(format!("{module}.sock"))
    }

    pub fn control_socket(&self) -> PathBuf {
        self.settings.runtime_dir.join("core.sock")
    }

    pub fn client_token_path(&self) -> PathBuf {
        self.settings.runtime_dir.join("client.token")
    }

    pub fn call_timeout(&self, module: &str) -> Duration {
        self.settings
            .modules
            .get(module)
            .and_then(|m| m.call_timeout)
            .unwrap_or(self.settings.call_timeout)
    }

    /// The error for a module name that is not known, with the closest known name; or, when
    /// a module dir of that name was found with invalid metadata, its faults.
    pub fn unknown(&self, name: &str) -> Error {
        if let Err(e) = check_name_len(name) {
            return e;
        }
        if let Some(error) = self.modules().invalid.get(name) {
            return Error::InvalidMetadata {
                chain: vec![name.to_owned()],
                error: error.clone(),
            };
        }
        let known: Vec<String> = self.modules().known.keys().cloned().collect();
        let suggestion = closest(name, &known);
        Error::UnknownModule {
            name: name.to_owned(),
            known,
            suggestion,
        }
    }

    /// Calls a module method on behalf of the core or an operator (no token needed: the core
    /// holds the module's control connection).
    pub async fn call_module(
        &self,
        target: &str,
        method: &str,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> Result<Value, Fault> {
        if method.starts_with('$') {
            return Err(Fault::new(
                ErrorCode::UnknownMethod,
                format!("{target}.{method}: methods starting with '$' are reserved"),
            ));
        }
        let session = {
            let m = self.modules();
            if !m.known.contains_key(target) {
                drop(m);
                return Err(self.unknown(target).to_fault());
            }
            let rec = m.records.get(target);
            match rec.map_or(State::Known, Record::state) {
                State::Ready => rec.and_then(|r| r.session.clone()),
                s if s.is_loaded() || s == State::Stopping => {
                    return Err(Fault::new(
                        ErrorCode::Unavailable,
                        format!("module {target} is {s}; try again when it is ready"),
                    ));
                }
                State::Failed => {
                    return Err(Fault::new(
                        ErrorCode::Unavailable,
                        format!(
                            "module {target} failed (restart budget exhausted); reload it to bring it back"
                        ),
                    ));
                }
                _ => {
                    return Err(Fault::new(
                        ErrorCode::NotLoaded,
                        format!("module {target} is not loaded; load it first"),
                    ));
                }
            }
        };
        let Some(session) = session else {
            return Err(Fault::new(
                ErrorCode::Unavailable,
                format!("module {target} has no connection"),
            ));
        };
        let timeout = timeout.unwrap_or_else(|| self.call_timeout(target));
        session.call(target, method, args, timeout).await
    }

    /// Makes sure a ready module sends the core its events when someone here wants them.
    pub fn want_events(&self, source: &str) {
        if source == CORE_MODULE {
            return;
        }
        let session = {
            let m = self.modules();
            m.records
                .get(source)
                .filter(|r| r.state() == State::Ready)
                .and_then(|r| r.session.clone())
        };
        if let Some(s) = session {
            let _ = s.subscribe(source, "");
        }
    }
}

impl Core {
    /// Starts configuring a core.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn new(settings: Settings) -> Core {
        // Names were validated by the builder; an invalid one cannot reach here.
        let names =
            |(a, b): &(String, String)| Some((ModuleName::new(a).ok()?, ModuleName::new(b).ok()?));
        let mut policy = Policy::default();
        for (a, b) in settings.grants.iter().filter_map(names) {
            policy = policy.with_grant(a, b);
        }
        for (a, b) in settings.denies.iter().filter_map(names) {
            policy = policy.with_deny(a, b);
        }
        for (target, callers) in &settings.restrictions {
            if let Ok(t) = ModuleName::new(target) {
                let callers = callers.iter().filter_map(|c| ModuleName::new(c).ok());
                policy = policy.with_restriction(t, callers);
            }
        }
        let operators = settings
            .operator_tokens
            .clone()
            .map(crate::operators::TokenStore::new);
        Core {
            inner: Arc::new(Inner {
                settings,
                modules: Mutex::new(Modules::default()),
                tokens: Mutex::new(Tokens::default()),
                policy: Mutex::new(policy),
                hub: Arc::new(Hub::default()),
                ops: tokio::sync::Mutex::new(()),
                started: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                client_secret: Mutex::new(None),
                operators,
                instance: instance_id(),
                guardian: Mutex::new(None),
                host: Mutex::new(PathBuf::new()),
                tasks: Mutex::new(Vec::new()),
                stopped_tx: tokio::sync::watch::Sender::new(false),
            }),
        }
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
    /// [`Error::InvalidName`] for a name longer than [`ModuleName::MAX_LEN`].
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

    /// Calls `target.method(args)`. `target` may be a module or the built-in `core`.
    ///
    /// # Errors
    /// [`Error::Call`] with the wire error (its [`Error::code`] tells which);
    /// [`Error::InvalidName`] for a target longer than [`ModuleName::MAX_LEN`].
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
    /// [`Error::InvalidName`] when it is longer than [`ModuleName::MAX_LEN`].
    pub fn subscribe(&self, source: &str, event: &str) -> Result<Subscription, Error> {
        self.ensure_started()?;
        check_name_len(source)?;
        if source != CORE_MODULE && !self.inner.modules().known.contains_key(source) {
            return Err(self.inner.unknown(source));
        }
        let sub = self.inner.hub.subscribe_local(source, event);
        self.inner.want_events(source);
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
        let _ops = self.inner.ops.lock().await;
        crate::supervisor::rediscover(&self.inner);
        let mut m = self.inner.modules();
        let gone: Vec<String> = m
            .known
            .iter()
            .filter(|(name, manifest)| {
                let state = m.state(name);
                !state.is_loaded()
                    && state != State::Stopping
                    && !manifest.dir.join(crate::manifest::METADATA_FILE).exists()
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            tracing::info!(module = %name, "module forgotten: its metadata.json is gone");
            m.known.remove(&name);
            m.records.remove(&name);
        }
        Ok(())
    }

    /// Every known module with its state.
    pub fn modules(&self) -> Vec<ModuleInfo> {
        crate::supervisor::infos(&self.inner)
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

    /// One module's state.
    ///
    /// # Errors
    /// [`Error::UnknownModule`], [`Error::InvalidName`] (longer than [`ModuleName::MAX_LEN`]).
    pub fn module(&self, name: &str) -> Result<ModuleInfo, Error> {
        check_name_len(name)?;
        self.modules()
            .into_iter()
            .find(|m| m.name == name)
            .ok_or_else(|| self.inner.unknown(name))
    }

    /// The manifest of a known module.
    ///
    /// # Errors
    /// [`Error::UnknownModule`], [`Error::InvalidName`] (longer than [`ModuleName::MAX_LEN`]).
    pub fn manifest(&self, name: &str) -> Result<Manifest, Error> {
        check_name_len(name)?;
        // The registry lock must be released before `unknown` takes it again.
        let found = self.inner.modules().known.get(name).cloned();
        found.ok_or_else(|| self.inner.unknown(name))
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
        self.inner.modules().faults.clone()
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

/// 48 random bits as 12 hex digits; a clock-based id if the generator fails (it only
/// distinguishes instances, it is not a secret).
fn instance_id() -> String {
    let mut b = [0u8; 6];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b.copy_from_slice(&t.to_be_bytes()[10..]);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
