//! [`Registry`]: every known module, what the core knows about each one's process, and the
//! state machine of DESIGN.md §4 (`known → starting → ready → stopping → stopped`,
//! `crashed → backoff → starting`, `failed`).
//!
//! Owns which modules are known (found by discovery or registered by `processPlugin`), what was
//! wrong with the ones that were refused, and one [`Record`] per module that has been started.
//! The registry's methods are the only way to change a module's state: each change is checked
//! against the table of §4 ([`allowed`]) and logged here, once, and handed back as a
//! [`Transition`] for the supervisor to announce (`core.stateChanged`) after it lets go of the
//! registry's lock. A method that checks a state and changes it does both under that one lock,
//! so no other task can act in between.
//!
//! Never does I/O and never awaits: the supervisor starts, signals and reaps processes and tells
//! the registry what happened; callers that need the file system pass it in (see
//! [`Registry::forget_where`]).

use crate::builder::Settings;
use crate::discovery::Discovery;
use crate::error::Error;
use crate::manifest::{Manifest, ManifestError, RestartPolicy};
use crate::name::{ModuleName, check_name_len, closest};
use crate::resolver::StartPlan;
use crate::sys::Signal;
use logos_session::Session;
use logos_wire::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};

/// Lifecycle state of a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Discovered, never started (or stopped and forgotten).
    Known,
    /// Process spawned, handshake not done yet.
    Starting,
    /// Handshake done, interface registered: serving.
    Ready,
    /// Shutting down on request.
    Stopping,
    /// Stopped on request.
    Stopped,
    /// Exited or was killed without being asked to.
    Crashed,
    /// Waiting before a restart.
    Backoff,
    /// Restart budget exhausted; stays down until reloaded.
    Failed,
    /// A remote module whose link is gone: calls fail with `unavailable` until it connects
    /// again by itself (the core never restarts what it did not start).
    Disconnected,
}

impl State {
    /// Lowercase name as shown by `list` and carried in events.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Known => "known",
            State::Starting => "starting",
            State::Ready => "ready",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Crashed => "crashed",
            State::Backoff => "backoff",
            State::Failed => "failed",
            State::Disconnected => "disconnected",
        }
    }

    /// Whether the module counts as loaded (its dependents may run, it may not be replaced).
    pub fn is_loaded(self) -> bool {
        matches!(
            self,
            State::Starting | State::Ready | State::Crashed | State::Backoff | State::Disconnected
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a module may go from `from` to `to`: the one table of DESIGN.md §4.
///
/// A start begins from any state that is not loaded, or from `backoff` (a crash restart); it
/// ends `ready`, or `stopped` when an operator's start fails, or `crashed` when a crash
/// restart fails. Anything loaded may be stopped. A ready module's process may end by itself
/// (`crashed`); a crash leads to `backoff` or, with the budget spent, `failed`; a reload takes
/// `failed` back to `stopped`. A remote module's link ends `disconnected` (never `crashed`:
/// nothing restarts it) and its next link starts it again.
pub(crate) fn allowed(from: State, to: State) -> bool {
    use State::*;
    match to {
        Starting => {
            !from.is_loaded() && from != Stopping || from == Backoff || from == Disconnected
        }
        Disconnected => from == Ready,
        Ready => from == Starting,
        Stopping => from.is_loaded(),
        Stopped => matches!(from, Starting | Stopping | Failed),
        Crashed => matches!(from, Starting | Ready),
        Backoff | Failed => from == Crashed,
        Known => false,
    }
}

/// A state change the registry made; announce it (`core.stateChanged`) once the registry's
/// lock is released.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "announce it with supervisor::announce once the registry lock is released"]
pub(crate) struct Transition {
    pub name: String,
    pub from: State,
    pub to: State,
}

/// How a module process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitReport {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal number, when a signal killed it.
    pub signal: Option<i32>,
    /// How long it had been running.
    pub uptime: Duration,
    /// Its last stderr lines, oldest first.
    pub stderr_tail: Vec<String>,
    /// When it ended.
    pub at: SystemTime,
}

impl ExitReport {
    /// "exit code 3" / "killed by signal 9 (SIGKILL)".
    pub fn status_text(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s} ({})", signal_name(s)),
            (None, None) => "unknown exit status".to_owned(),
        }
    }
}

/// Conventional name of a Linux signal number.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => "signal",
    }
}

/// What the core tracks about one module between starts. Written only by [`Registry`].
#[derive(Debug, Default)]
pub(crate) struct Record {
    state: Option<State>,
    /// Increments on every start; events of an older process are ignored.
    generation: u64,
    pid: Option<u32>,
    started: Option<(Instant, SystemTime)>,
    session: Option<Session>,
    interface: Option<Value>,
    restarts: u32,
    /// Crashes of its processes since the core started (never reset).
    crashes: u64,
    last_exit: Option<ExitReport>,
    /// Signals the process's watcher task (which owns the child) to deliver a signal.
    kill: Option<mpsc::UnboundedSender<Signal>>,
    /// Resolves when the current process has exited.
    exited: Option<watch::Receiver<bool>>,
    /// Crash times inside the restart budget window.
    crash_times: VecDeque<Instant>,
    /// Reason the module last reported itself unhealthy, if it is.
    unhealthy: Option<String>,
    /// When the pending crash restart starts (state `backoff`).
    backoff_until: Option<Instant>,
    /// Set while the module is (or last was) a remote one: where it connected from.
    remote: Option<RemotePeer>,
}

/// Where a remote module connected from, and since when it is gone.
#[derive(Debug, Clone)]
pub(crate) struct RemotePeer {
    /// The peer address its control link came from.
    pub addr: String,
    /// When its link ended, while it is `disconnected`.
    pub disconnected_since: Option<SystemTime>,
}

impl Record {
    pub fn state(&self) -> State {
        self.state.unwrap_or(State::Known)
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The control connection, while the process runs.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// The interface the module registered at its last start.
    pub fn interface(&self) -> Option<&Value> {
        self.interface.as_ref()
    }

    /// Crash restarts attempted so far.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// How the previous process ended.
    pub fn last_exit(&self) -> Option<&ExitReport> {
        self.last_exit.as_ref()
    }

    /// Where the module runs: `None` for a local process, else its remote peer.
    pub fn remote(&self) -> Option<&RemotePeer> {
        self.remote.as_ref()
    }
}

/// A started process's facts, recorded when it becomes ready.
pub(crate) struct Running {
    pub pid: u32,
    pub session: Session,
    pub interface: Value,
    pub kill: mpsc::UnboundedSender<Signal>,
    pub exited: watch::Receiver<bool>,
}

/// A remote module's link, recorded when its handshake is done.
pub(crate) struct RemoteRunning {
    pub session: Session,
    pub interface: Value,
    pub addr: String,
    pub exited: watch::Receiver<bool>,
}

/// The process a hot swap replaced, taken out of the record by [`Registry::swap`]: the
/// supervisor lets its calls finish and stops it.
pub(crate) struct Retired {
    pub pid: Option<u32>,
    pub session: Option<Session>,
    pub kill: Option<mpsc::UnboundedSender<Signal>>,
    pub exited: Option<watch::Receiver<bool>>,
}

/// What [`Registry::exited`] found: the process was the module's current one.
pub(crate) struct Exited {
    /// The control connection, taken out to be closed.
    pub session: Option<Session>,
    /// `Some` when nobody asked for the exit: the module is now `crashed`.
    pub crash: Option<Transition>,
}

/// What a stop begun by [`Registry::begin_stop`] works with.
pub(crate) struct Stopping {
    /// The control connection, to ask for a graceful shutdown.
    pub session: Option<Session>,
    /// Becomes `true` once the process has exited.
    pub exited: Option<watch::Receiver<bool>>,
    pub change: Option<Transition>,
}

/// What [`Registry::after_crash`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AfterCrash {
    /// The module is no longer the crashed process (stopped, reloaded, forgotten): not ours.
    Gone,
    /// The budget is spent: `failed`.
    Failed(Transition),
    /// Restart after `wait`: `backoff`.
    Backoff { wait: Duration, change: Transition },
}

/// Every known module and its record. Lives behind the lock `Inner::registry` hands out.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    known: BTreeMap<String, Manifest>,
    records: HashMap<String, Record>,
    /// Metadata problems found by discovery, for people.
    faults: Vec<String>,
    /// Modules found with invalid metadata, by directory name: what to say instead of "not
    /// known" when one is asked for.
    invalid: BTreeMap<String, ManifestError>,
}

/// Drops the interface a module registered at its previous start off the start's path: it
/// is a tree of a few hundred small allocations for a module of some size, and freeing it
/// under the registry's lock took a twelfth of the core's share of a restart in the
/// benchmark. It goes to a task of the runtime's (after the start's own work); outside a
/// runtime (tests of the registry alone) it is dropped here.
fn retire_interface(old: Option<Value>) {
    let Some(old) = old else {
        return;
    };
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move { drop(old) });
    }
}

/// What a start's permissions are checked against: the modules found (valid or not), and
/// the interfaces of those that have run.
impl crate::policy::KnownModules for Registry {
    fn has(&self, module: &str) -> bool {
        self.known.contains_key(module) || self.invalid.contains_key(module)
    }

    fn names(&self) -> Vec<String> {
        let names: BTreeSet<&String> = self.known.keys().chain(self.invalid.keys()).collect();
        names.into_iter().cloned().collect()
    }

    fn methods(&self, module: &str) -> Option<BTreeSet<String>> {
        let interface = self.records.get(module)?.interface()?;
        Some(crate::stats::method_names(Some(interface)))
    }
}

impl Registry {
    // --- reading -------------------------------------------------------------------------

    /// Known modules by name.
    pub fn known(&self) -> &BTreeMap<String, Manifest> {
        &self.known
    }

    pub fn is_known(&self, name: &str) -> bool {
        self.known.contains_key(name)
    }

    pub fn manifest(&self, name: &str) -> Option<&Manifest> {
        self.known.get(name)
    }

    /// Metadata problems found by the last scan.
    pub fn faults(&self) -> &[String] {
        &self.faults
    }

    pub fn record(&self, name: &str) -> Option<&Record> {
        self.records.get(name)
    }

    pub fn records(&self) -> impl Iterator<Item = (&String, &Record)> {
        self.records.iter()
    }

    pub fn state(&self, name: &str) -> State {
        self.records.get(name).map_or(State::Known, Record::state)
    }

    /// The control connection of `name` if it is ready.
    pub fn ready_session(&self, name: &str) -> Option<Session> {
        self.records
            .get(name)
            .filter(|r| r.state() == State::Ready)
            .and_then(|r| r.session.clone())
    }

    /// The sender that asks `name`'s watcher to deliver a signal, while a process runs.
    pub fn killer(&self, name: &str) -> Option<mpsc::UnboundedSender<Signal>> {
        self.records.get(name).and_then(|r| r.kill.clone())
    }

    /// Names of the modules in a loaded state.
    pub fn loaded(&self) -> Vec<String> {
        self.records
            .iter()
            .filter(|(_, r)| r.state().is_loaded())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// `name → version` of every loaded module.
    pub fn loaded_versions(&self) -> BTreeMap<String, semver::Version> {
        self.records
            .iter()
            .filter(|(_, r)| r.state().is_loaded())
            .filter_map(|(n, _)| self.known.get(n).map(|m| (n.clone(), m.version.clone())))
            .collect()
    }

    /// The error for a module name that is not known, with the closest known name; or, when
    /// a module dir of that name was found with invalid metadata, its faults.
    pub fn unknown(&self, name: &str) -> Error {
        if let Err(e) = check_name_len(name) {
            return e;
        }
        if let Some(error) = self.invalid.get(name) {
            return Error::InvalidMetadata {
                chain: vec![name.to_owned()],
                error: error.clone(),
            };
        }
        let known: Vec<String> = self.known.keys().cloned().collect();
        let suggestion = closest(name, &known);
        Error::UnknownModule {
            name: name.to_owned(),
            known,
            suggestion,
        }
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
        plan: Result<StartPlan, Error>,
    ) -> Result<StartPlan, Error> {
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
        for name in plan.modules() {
            let Some(manifest) = self.known.get(name.as_str()) else {
                continue;
            };
            if let Err(error) = crate::policy::check_permissions(manifest, self) {
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

    /// Snapshots of every known module.
    pub fn infos(&self, settings: &Settings) -> Vec<ModuleInfo> {
        let window = settings.restart.window;
        self.known
            .iter()
            .map(|(name, manifest)| {
                let rec = self.records.get(name);
                let state = rec.map_or(State::Known, Record::state);
                ModuleInfo {
                    name: name.clone(),
                    version: manifest.version.to_string(),
                    state,
                    pid: rec.and_then(|r| r.pid),
                    uptime: rec.and_then(|r| r.started).map(|(i, _)| i.elapsed()),
                    restarts: rec.map_or(0, |r| r.restarts),
                    crashes: rec.map_or(0, |r| r.crashes),
                    generation: rec.map_or(0, |r| r.generation),
                    dependencies: manifest
                        .dependencies
                        .keys()
                        .map(|d| d.as_str().to_owned())
                        .collect(),
                    last_exit: rec.and_then(|r| r.last_exit.clone()),
                    restart_policy: settings.restart_policy(manifest),
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
                    location: rec
                        .and_then(|r| r.remote.as_ref())
                        .map_or_else(|| "local".to_owned(), |p| p.addr.clone()),
                    disconnected_since: rec
                        .filter(|_| state == State::Disconnected)
                        .and_then(|r| r.remote.as_ref())
                        .and_then(|p| p.disconnected_since),
                }
            })
            .collect()
    }

    // --- the set of known modules ----------------------------------------------------------

    /// Takes in a new scan: loaded (and stopping) modules keep the manifest they started with,
    /// modules registered from elsewhere (`processPlugin`) stay known, everything else is as
    /// found.
    pub fn rediscovered(&mut self, found: Discovery) {
        let mut known = BTreeMap::new();
        for manifest in found.manifests {
            known.insert(manifest.name.as_str().to_owned(), manifest);
        }
        for (name, rec) in &self.records {
            let state = rec.state();
            if (state.is_loaded() || state == State::Stopping)
                && let Some(old) = self.known.get(name)
            {
                known.insert(name.clone(), old.clone());
            }
        }
        self.faults = found.faults.iter().map(ToString::to_string).collect();
        self.invalid = found.invalid;
        for (name, manifest) in std::mem::take(&mut self.known) {
            known.entry(name).or_insert(manifest);
        }
        self.known = known;
    }

    /// Adds (or replaces) a known module. `Err(state)` when it is loaded or stopping and so
    /// keeps the manifest it runs with.
    pub fn register(&mut self, manifest: Manifest) -> Result<String, State> {
        let name = manifest.name.as_str().to_owned();
        let state = self.state(&name);
        if state.is_loaded() || state == State::Stopping {
            return Err(state);
        }
        self.known.insert(name.clone(), manifest);
        Ok(name)
    }

    /// Forgets every module that is neither loaded nor stopping and whose manifest `gone`
    /// says is gone; returns their names.
    pub fn forget_where(&mut self, gone: impl Fn(&Manifest) -> bool) -> Vec<String> {
        let names: Vec<String> = self
            .known
            .iter()
            .filter(|(name, manifest)| {
                let state = self.state(name);
                !state.is_loaded() && state != State::Stopping && gone(manifest)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &names {
            self.known.remove(name);
            self.records.remove(name);
        }
        names
    }

    // --- the state machine -----------------------------------------------------------------

    /// Moves `name` to `to` if the table allows it, logging the change. `None` when it is in
    /// `to` already; a transition the table forbids is refused and logged as the bug it is.
    fn transition(&mut self, name: &str, to: State) -> Option<Transition> {
        let rec = self.records.entry(name.to_owned()).or_default();
        let from = rec.state();
        if from == to {
            return None;
        }
        if !allowed(from, to) {
            tracing::error!(module = name, %from, %to, "refused a state change the lifecycle does not have; this is a bug in logos-core");
            return None;
        }
        rec.state = Some(to);
        tracing::info!(module = name, %from, %to, "module state changed");
        Some(Transition {
            name: name.to_owned(),
            from,
            to,
        })
    }

    /// A new process of `name` is about to start: its start generation (events of older
    /// processes are ignored from now on) and the change to `starting`.
    pub fn begin_start(&mut self, name: &str) -> (u64, Option<Transition>) {
        let rec = self.records.entry(name.to_owned()).or_default();
        rec.generation += 1;
        let generation = rec.generation;
        (generation, self.transition(name, State::Starting))
    }

    /// Start `generation` of `name` failed: records how its process ended if it ran and died
    /// before it was ready, and leaves the module in `to` (`stopped`, or `crashed` for a crash
    /// restart, so it never looks stopped on request in between).
    pub fn start_failed(
        &mut self,
        name: &str,
        generation: u64,
        exit: Option<ExitReport>,
        to: State,
    ) -> Option<Transition> {
        if let Some(rec) = self.records.get_mut(name)
            && rec.generation == generation
        {
            if let Some(exit) = exit {
                rec.last_exit = Some(exit);
            }
            if to == State::Crashed {
                rec.crashes += 1;
            }
        }
        self.transition(name, to)
    }

    /// The handshake of `name`'s new process is done: records the process and makes the
    /// module `ready`.
    pub fn ready(&mut self, name: &str, running: Running) -> Option<Transition> {
        let rec = self.records.entry(name.to_owned()).or_default();
        rec.pid = Some(running.pid);
        rec.started = Some((Instant::now(), SystemTime::now()));
        rec.session = Some(running.session);
        retire_interface(rec.interface.replace(running.interface));
        rec.kill = Some(running.kill);
        rec.exited = Some(running.exited);
        rec.unhealthy = None;
        rec.backoff_until = None;
        self.transition(name, State::Ready)
    }

    /// A hot swap of `name` may begin: the generation of its serving process, which
    /// [`Registry::swap`] checks is still the one serving. Refused with the state when the
    /// module is not a `ready` local process (a hot swap replaces a serving process; anything
    /// else is a plain load or reload).
    pub fn begin_swap(&self, name: &str) -> Result<u64, State> {
        match self.records.get(name) {
            Some(rec) if rec.state() == State::Ready && rec.remote.is_none() => Ok(rec.generation),
            Some(rec) => Err(rec.state()),
            None => Err(State::Known),
        }
    }

    /// Hot swap commit: if `name` is still `ready` with process `old_generation`, the new
    /// process (`running`, start `old_generation + 1`) becomes the module's, without leaving
    /// `ready`, and the old process's facts come back for the supervisor to stop. `None` when
    /// the old process stopped serving meanwhile (crashed): the swap must be undone. From here
    /// on the old process's exit is that of an older generation, which changes nothing.
    /// `manifest`, the metadata the new process started with, replaces the old one.
    pub fn swap(
        &mut self,
        name: &str,
        old_generation: u64,
        running: Running,
        manifest: Manifest,
    ) -> Option<Retired> {
        let rec = self.records.get_mut(name)?;
        if rec.state() != State::Ready || rec.generation != old_generation {
            return None;
        }
        self.known.insert(name.to_owned(), manifest);
        let rec = self.records.get_mut(name)?;
        rec.generation = old_generation + 1;
        let retired = Retired {
            pid: rec.pid.replace(running.pid),
            session: rec.session.replace(running.session),
            kill: rec.kill.replace(running.kill),
            exited: rec.exited.replace(running.exited),
        };
        rec.started = Some((Instant::now(), SystemTime::now()));
        retire_interface(rec.interface.replace(running.interface));
        rec.unhealthy = None;
        tracing::info!(
            module = name,
            old_pid = ?retired.pid,
            new_pid = running.pid,
            "module hot-swapped: new calls go to the new process"
        );
        Some(retired)
    }

    /// The link handshake of remote module `name` is done: records the link and makes the
    /// module `ready`.
    pub fn ready_remote(&mut self, name: &str, running: RemoteRunning) -> Option<Transition> {
        let rec = self.records.entry(name.to_owned()).or_default();
        rec.pid = None;
        rec.started = Some((Instant::now(), SystemTime::now()));
        rec.session = Some(running.session);
        retire_interface(rec.interface.replace(running.interface));
        rec.kill = None;
        rec.exited = Some(running.exited);
        rec.unhealthy = None;
        rec.backoff_until = None;
        rec.remote = Some(RemotePeer {
            addr: running.addr,
            disconnected_since: None,
        });
        self.transition(name, State::Ready)
    }

    /// The link of remote module `name` (start `generation`) ended. `None` when a newer link
    /// owns the module; else the link's session (to close) and, unless an operator was
    /// stopping it, the change to `disconnected`.
    pub fn disconnected(
        &mut self,
        name: &str,
        generation: u64,
    ) -> Option<(Option<Session>, Option<Transition>)> {
        let rec = self.records.get_mut(name)?;
        if rec.generation != generation {
            return None;
        }
        let session = rec.session.take();
        rec.started = None;
        rec.unhealthy = None;
        if let Some(p) = rec.remote.as_mut() {
            p.disconnected_since = Some(SystemTime::now());
        }
        let change = if rec.state() == State::Ready {
            self.transition(name, State::Disconnected)
        } else {
            None
        };
        Some((session, change))
    }

    /// Whether `name` is a remote module (connected or not).
    pub fn is_remote(&self, name: &str) -> bool {
        self.records.get(name).is_some_and(|r| r.remote.is_some())
    }

    /// Makes `manifest`, which a remote module sent, the known manifest of its name. Refused
    /// when a local process of that name is loaded, or when a loaded module depends on the
    /// name with a range the new version does not meet.
    pub fn register_remote(&mut self, manifest: Manifest) -> Result<(), String> {
        let name = manifest.name.as_str().to_owned();
        if let Some(rec) = self.records.get(&name)
            && rec.remote.is_none()
            && (rec.state().is_loaded() || rec.state() == State::Stopping)
        {
            return Err(format!(
                "a local module {name:?} is {} here; unload it first (`logoscore unload {name}`)",
                rec.state()
            ));
        }
        for (other, m) in &self.known {
            if other == &name || !self.state(other).is_loaded() {
                continue;
            }
            if let Some(range) = m.dependencies.get(name.as_str())
                && !range.matches(&manifest.version)
            {
                return Err(format!(
                    "loaded module {other} needs {name} {range}, and this is {name} {}",
                    manifest.version
                ));
            }
        }
        self.known.insert(name, manifest);
        Ok(())
    }

    /// What the last heartbeat of start `generation` said about the module's health.
    pub fn set_health(&mut self, name: &str, generation: u64, health: Option<String>) {
        if let Some(rec) = self.records.get_mut(name)
            && rec.generation == generation
        {
            rec.unhealthy = health;
        }
    }

    /// A stop of `name` begins, if it is loaded: the change to `stopping`, with what the
    /// stop needs (the control connection, the exit watch). `None` when it is not loaded.
    pub fn begin_stop(&mut self, name: &str) -> Option<Stopping> {
        let rec = self.records.get(name)?;
        if !rec.state().is_loaded() {
            return None;
        }
        let (session, exited) = (rec.session.clone(), rec.exited.clone());
        Some(Stopping {
            session,
            exited,
            change: self.transition(name, State::Stopping),
        })
    }

    /// The stop of `name` is done (its process, if any, has been reaped).
    pub fn stopped(&mut self, name: &str) -> Option<Transition> {
        self.transition(name, State::Stopped)
    }

    /// Process `generation` of `name` ended. `None` when a newer process owns the module now
    /// (then nothing of it is touched). Otherwise the process is forgotten and `report`
    /// becomes its last exit; unless the module was stopping or the core is (`core_stopping`)
    /// nobody asked for it, and the module is `crashed` under this same lock, so no stop can
    /// slip in between.
    pub fn exited(
        &mut self,
        name: &str,
        generation: u64,
        report: &ExitReport,
        core_stopping: bool,
    ) -> Option<Exited> {
        let rec = self.records.get_mut(name)?;
        if rec.generation != generation {
            return None;
        }
        let session = rec.session.take();
        rec.pid = None;
        rec.started = None;
        rec.kill = None;
        rec.unhealthy = None;
        rec.last_exit = Some(report.clone());
        let crashed = rec.state() != State::Stopping && !core_stopping;
        if crashed {
            rec.crashes += 1;
        }
        let crash = if crashed {
            self.transition(name, State::Crashed)
        } else {
            None
        };
        Some(Exited { session, crash })
    }

    /// After a crash of start `generation`: charges the restart budget (`charge` gets the crash
    /// times and returns the delay before the next restart, or `None` when the budget is spent)
    /// and moves the module to `backoff` or `failed`, unless it is no longer that crashed
    /// process.
    pub fn after_crash(
        &mut self,
        name: &str,
        generation: u64,
        charge: impl FnOnce(&mut VecDeque<Instant>) -> Option<Duration>,
    ) -> AfterCrash {
        let Some(rec) = self.records.get_mut(name) else {
            return AfterCrash::Gone;
        };
        // Someone unloaded or reloaded it since it crashed: not ours to restart.
        if rec.generation != generation || rec.state() != State::Crashed {
            return AfterCrash::Gone;
        }
        let Some(wait) = charge(&mut rec.crash_times) else {
            return match self.transition(name, State::Failed) {
                Some(change) => AfterCrash::Failed(change),
                None => AfterCrash::Gone,
            };
        };
        // The builder bounds the delay; `checked_add` keeps a restart task alive regardless.
        rec.backoff_until = Instant::now().checked_add(wait);
        match self.transition(name, State::Backoff) {
            Some(change) => AfterCrash::Backoff { wait, change },
            None => AfterCrash::Gone,
        }
    }

    /// The backoff of start `generation` is over and a restart begins: counts it. `None` when
    /// the module is no longer waiting for that restart; else the time of its last exit.
    pub fn end_backoff(&mut self, name: &str, generation: u64) -> Option<Option<SystemTime>> {
        let rec = self.records.get_mut(name)?;
        if rec.generation != generation || rec.state() != State::Backoff {
            return None;
        }
        rec.backoff_until = None;
        rec.restarts += 1;
        Some(rec.last_exit.as_ref().map(|e| e.at))
    }

    /// A reload: clears the restart budget and takes a `failed` module back to `stopped`.
    pub fn reset_budget(&mut self, name: &str) -> Option<Transition> {
        let rec = self.records.get_mut(name)?;
        rec.crash_times.clear();
        if rec.state() == State::Failed {
            self.transition(name, State::Stopped)
        } else {
            None
        }
    }
}

/// A snapshot of one module for the API, the `core` module and the CLI.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ModuleInfo {
    /// Module name.
    pub name: String,
    /// Version from its metadata.
    pub version: String,
    /// Lifecycle state.
    pub state: State,
    /// Process id while running.
    pub pid: Option<u32>,
    /// Time since the current process became ready.
    pub uptime: Option<Duration>,
    /// Crash restarts attempted so far (manual reloads do not count).
    pub restarts: u32,
    /// Crashes of its processes since the core started (a crash at start included).
    pub crashes: u64,
    /// Start generation: grows by one with every process started for it, so a figure that
    /// counts "since the process started" can be told apart across restarts.
    pub generation: u64,
    /// Names of the modules its metadata depends on.
    pub dependencies: Vec<String>,
    /// How the previous process ended.
    pub last_exit: Option<ExitReport>,
    /// Restart policy in force (configuration over metadata).
    pub restart_policy: RestartPolicy,
    /// Crashes inside the current restart budget window; the module is `failed` once this
    /// passes the budget. A manual reload clears it.
    pub recent_crashes: u32,
    /// In state `backoff`: time left before the next restart attempt.
    pub next_restart: Option<Duration>,
    /// Why the module says it is unhealthy (as of the last heartbeat), if it does.
    pub unhealthy: Option<String>,
    /// `local`, or the peer address a remote module connected from.
    pub location: String,
    /// When a remote module's link ended, while it is `disconnected`.
    pub disconnected_since: Option<SystemTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [State; 9] = [
        State::Known,
        State::Starting,
        State::Ready,
        State::Stopping,
        State::Stopped,
        State::Crashed,
        State::Backoff,
        State::Failed,
        State::Disconnected,
    ];

    #[test]
    fn the_table_has_the_lifecycle_of_the_design_and_nothing_else() {
        let mut edges: Vec<(State, State)> = Vec::new();
        for from in ALL {
            for to in ALL {
                if allowed(from, to) {
                    edges.push((from, to));
                }
            }
        }
        use State::*;
        let want = vec![
            (Known, Starting),
            (Starting, Ready),
            (Starting, Stopping),
            (Starting, Stopped),
            (Starting, Crashed),
            (Ready, Stopping),
            (Ready, Crashed),
            (Ready, Disconnected),
            (Stopping, Stopped),
            (Stopped, Starting),
            (Crashed, Stopping),
            (Crashed, Backoff),
            (Crashed, Failed),
            (Backoff, Starting),
            (Backoff, Stopping),
            (Failed, Starting),
            (Failed, Stopped),
            (Disconnected, Starting),
            (Disconnected, Stopping),
        ];
        assert_eq!(edges, want);
    }

    fn registry_with(name: &str) -> Registry {
        let mut r = Registry::default();
        assert_eq!(
            r.register(Manifest::for_test(name, "1.0.0", &[])),
            Ok(name.to_owned())
        );
        r
    }

    fn exit(code: i32) -> ExitReport {
        ExitReport {
            code: Some(code),
            signal: None,
            uptime: Duration::ZERO,
            stderr_tail: vec![],
            at: SystemTime::now(),
        }
    }

    #[test]
    fn a_forbidden_change_is_refused_and_the_state_kept() {
        let mut r = registry_with("a");
        assert_eq!(r.stopped("a"), None, "known → stopped is no transition");
        assert_eq!(r.state("a"), State::Known);
        let (g, t) = r.begin_start("a");
        assert_eq!(g, 1);
        assert_eq!(
            t.map(|t| (t.from, t.to)),
            Some((State::Known, State::Starting))
        );
        // Not ready yet, so its exit is not a crash of a ready module but a failed start.
        assert_eq!(
            r.start_failed("a", g, Some(exit(7)), State::Stopped)
                .map(|t| t.to),
            Some(State::Stopped)
        );
        assert_eq!(
            r.record("a")
                .and_then(|x| x.last_exit())
                .and_then(|e| e.code),
            Some(7)
        );
        assert_eq!(
            r.begin_stop("a").map(|_| ()),
            None,
            "a stopped module is not stopped again"
        );
    }

    #[test]
    fn an_exit_of_an_older_process_changes_nothing() {
        let mut r = registry_with("a");
        let (old, _) = r.begin_start("a");
        let _ = r.start_failed("a", old, None, State::Stopped);
        let (new, _) = r.begin_start("a");
        assert!(r.exited("a", old, &exit(1), false).is_none());
        assert_eq!(r.state("a"), State::Starting);
        assert!(
            r.exited("a", new, &exit(1), false)
                .is_some_and(|e| e.crash.is_some())
        );
        assert_eq!(r.state("a"), State::Crashed);
    }

    #[test]
    fn a_crash_charges_the_budget_then_fails() {
        let mut r = registry_with("a");
        let (g, _) = r.begin_start("a");
        let _ = r.exited("a", g, &exit(1), false);
        let wait = Duration::from_millis(5);
        match r.after_crash("a", g, |times| {
            times.push_back(Instant::now());
            Some(wait)
        }) {
            AfterCrash::Backoff { wait: w, change } => {
                assert_eq!(w, wait);
                assert_eq!((change.from, change.to), (State::Crashed, State::Backoff));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            r.end_backoff("a", g),
            Some(r.record("a").and_then(|x| x.last_exit()).map(|e| e.at))
        );
        assert_eq!(r.record("a").map(Record::restarts), Some(1));
        let (g2, _) = r.begin_start("a");
        let _ = r.start_failed("a", g2, Some(exit(2)), State::Crashed);
        assert!(
            matches!(r.after_crash("a", g, |_| None), AfterCrash::Gone),
            "an older generation"
        );
        assert!(matches!(
            r.after_crash("a", g2, |_| None),
            AfterCrash::Failed(_)
        ));
        assert_eq!(r.state("a"), State::Failed);
        assert_eq!(r.reset_budget("a").map(|t| t.to), Some(State::Stopped));
    }
}
