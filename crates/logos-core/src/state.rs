//! [`Inner`]: the shared state of one core, which every part of the runtime works on.
//!
//! Owns what lives as long as the core does: its settings, the [`Registry`] of modules, the
//! live tokens, the access policy, the event hub, the lifecycle lock, the guardian and the
//! paths inside the runtime dir. Each piece sits behind its own lock, taken briefly and never
//! across an `.await`, except the lifecycle lock (`ops`), which only `supervisor` takes.
//! Never decides anything itself: the parts that own a decision (`supervisor`, `conn`,
//! `policy`, the built-ins) read and change this state through the accessors here.
//!
//! The locks are `parking_lot`'s, here and across the crate: they do not poison, and a panic
//! in one task must not turn every later lock of the core into an error path (the core went
//! on with the data either way).

use crate::builder::Settings;
use crate::counters::Counters;
use crate::events::Hub;
use crate::name::ModuleName;
use crate::operators::TokenStore;
use crate::policy::Policy;
use crate::registry::Registry;
use crate::supervisor::child::Spawn;
use crate::supervisor::guardian::Guardian;
use crate::supervisor::spawn::Os;
use crate::token::{Token, Tokens};
use parking_lot::{Mutex, MutexGuard};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Shared state of one core.
pub(crate) struct Inner {
    pub settings: Settings,
    registry: Mutex<Registry>,
    tokens: Mutex<Tokens>,
    policy: Mutex<Policy>,
    pub hub: Arc<Hub>,
    /// What only the core sees (denials, calls it answered for a module), for observers.
    pub counters: Counters,
    /// The lifecycle lock: serialises load, unload, reload, register, refresh, crash restarts
    /// and shutdown so plans never interleave. Taken only inside `supervisor`.
    pub ops: tokio::sync::Mutex<()>,
    pub started: AtomicBool,
    pub stopping: AtomicBool,
    pub client_secret: Mutex<Option<Token>>,
    /// Named operator tokens, when the builder named a store.
    pub operators: Option<TokenStore>,
    /// Random id of this core instance, told to clients in `welcome` (`attrs.instance`).
    pub instance: String,
    pub guardian: Mutex<Option<Guardian>>,
    pub host: Mutex<PathBuf>,
    pub tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Becomes `true` when shutdown has finished.
    pub stopped_tx: tokio::sync::watch::Sender<bool>,
    /// Starts module processes: the real ones ([`Os`]), or fakes in the supervisor's tests.
    pub spawn: Box<dyn Spawn>,
    /// The remote module listener and its state, once started (`Builder::listen`).
    pub remote: std::sync::OnceLock<Arc<crate::remote::Remote>>,
    /// Recent spans of calls (`core.getTraces`).
    pub spans: crate::spans::Store,
    /// Origin of the grid all module heartbeats fall on (`supervisor::heartbeat::next_beat`).
    pub beat_epoch: tokio::time::Instant,
    /// The local modules' heartbeats (`supervisor::heartbeat`).
    pub heartbeats: crate::supervisor::heartbeat::Heartbeats,
    /// Landlock rulesets of recent starts, reused while their paths name the same files.
    pub rulesets: crate::sys::RulesetCache,
}

impl Inner {
    /// The state of a core built from `settings`, not started.
    pub fn new(settings: Settings) -> Inner {
        let spans = crate::spans::Store::new(settings.spans);
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
        let only = |ms: &[String]| crate::manifest::Methods::only(ms.iter().cloned());
        for (a, b, ms) in &settings.method_grants {
            if let Some((a, b)) = names(&(a.clone(), b.clone())) {
                policy = policy.with_grant_methods(a, b, only(ms));
            }
        }
        for (a, b, ms) in &settings.method_denies {
            if let Some((a, b)) = names(&(a.clone(), b.clone())) {
                policy = policy.with_deny_methods(a, b, only(ms));
            }
        }
        for (target, m) in settings.modules.iter().filter(|(_, m)| m.protected) {
            if let Ok(t) = ModuleName::new(target) {
                let writers = m.writers.iter().filter_map(|w| ModuleName::new(w).ok());
                policy = policy.with_protected(t, writers);
            }
        }
        for (target, callers) in &settings.restrictions {
            if let Ok(t) = ModuleName::new(target) {
                let callers = callers.iter().filter_map(|c| ModuleName::new(c).ok());
                policy = policy.with_restriction(t, callers);
            }
        }
        let operators = settings.operator_tokens.clone().map(TokenStore::new);
        let beat_epoch = crate::supervisor::heartbeat::grid_epoch(settings.heartbeat);
        Inner {
            settings,
            registry: Mutex::new(Registry::default()),
            tokens: Mutex::new(Tokens::default()),
            policy: Mutex::new(policy),
            hub: Arc::new(Hub::default()),
            counters: Counters::default(),
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
            spawn: Box::new(Os::default()),
            remote: std::sync::OnceLock::new(),
            spans,
            beat_epoch,
            heartbeats: Default::default(),
            rulesets: Default::default(),
        }
    }

    /// The registry of modules. Never hold it across an `.await`.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock()
    }

    pub fn tokens(&self) -> MutexGuard<'_, Tokens> {
        self.tokens.lock()
    }

    pub fn policy(&self) -> MutexGuard<'_, Policy> {
        self.policy.lock()
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
    hex::encode(b)
}
