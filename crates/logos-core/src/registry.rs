//! Module states and the per-module record of the running runtime.
//!
//! Owns the state machine of DESIGN.md §4 (`known → starting → ready → stopping → stopped`,
//! `crashed → backoff → starting`, `failed`) and the facts the core reports about each module.
//! Never does I/O: the supervisor moves a module between states and this file only records it.

use crate::manifest::RestartPolicy;
use logos_session::Session;
use logos_wire::Value;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

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
        }
    }

    /// Whether the module counts as loaded (its dependents may run, it may not be replaced).
    pub fn is_loaded(self) -> bool {
        matches!(
            self,
            State::Starting | State::Ready | State::Crashed | State::Backoff
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

/// Last lines a module wrote to stderr, bounded.
#[derive(Debug, Clone, Default)]
pub struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl StderrTail {
    /// Lines kept.
    pub const KEEP: usize = 20;

    /// Records one line, forgetting the oldest beyond [`Self::KEEP`].
    pub fn push(&self, line: String) {
        if let Ok(mut l) = self.lines.lock() {
            if l.len() == Self::KEEP {
                l.pop_front();
            }
            l.push_back(line);
        }
    }

    /// The kept lines, oldest first.
    pub fn snapshot(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// What the core tracks about one module between starts.
#[derive(Debug, Default)]
pub(crate) struct Record {
    pub state: Option<State>,
    /// Increments on every start; events of an older process are ignored.
    pub generation: u64,
    pub pid: Option<u32>,
    pub started: Option<(Instant, SystemTime)>,
    pub session: Option<Session>,
    pub interface: Option<Value>,
    pub restarts: u32,
    pub last_exit: Option<ExitReport>,
    /// Signals the process's watcher task (which owns the child) to deliver a signal.
    pub kill: Option<tokio::sync::mpsc::UnboundedSender<crate::sys::Signal>>,
    /// Resolves when the current process has exited.
    pub exited: Option<tokio::sync::watch::Receiver<bool>>,
    /// Crash times inside the restart budget window.
    pub crash_times: std::collections::VecDeque<Instant>,
    /// Reason the module last reported itself unhealthy, if it is.
    pub unhealthy: Option<String>,
    /// When the pending crash restart starts (state `backoff`).
    pub backoff_until: Option<Instant>,
}

impl Record {
    pub fn state(&self) -> State {
        self.state.unwrap_or(State::Known)
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
}
