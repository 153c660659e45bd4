//! [`Worker`]: the contexts one process hosts, and every operation on them.
//!
//! Owns the order of checks for a submission, which is the security argument:
//! 1. decode the envelope and verify every signature in it (nothing unauthenticated is
//!    looked at first, except the claimed target, to audit a refusal there);
//! 2. expiry (with the configured skew) and maximum validity of every envelope in the chain;
//! 3. the chain: each parent delegates to the next caller, depth within the limit;
//! 4. the target context exists;
//! 5. the nonce of every envelope in the chain is new for its (caller, target), and is
//!    remembered in the target's state database before anything runs (so a replay is
//!    refused even after a restart);
//! 6. the policy snapshot is taken: this evaluation decides everything with it, whatever
//!    `setPolicy` does meanwhile, and names its version in the audit;
//! 7. `submit` must be allowed by every grant in the chain and by the policy for the
//!    *original* caller (never the deputy's own rights: no confused deputy);
//! 8. the evaluation is queued (fairly, or `busy`), runs with each host call checked the
//!    same way, and its writes are applied in one batch within the quota only if it
//!    succeeded; then its events are handed back.
//!
//! Every refusal after step 1 and every outcome is written to the target's audit log.
//! Owner changes are owner-signed statements for the next revision (`signing.rs`).
//!
//! Never opens sockets and never decides where files go beyond its state directory and the
//! backend it is given: the module does.

use crate::audit::AuditRecord;
use crate::config::Config;
use crate::envelope::{ScriptRef, SignedEnvelope};
use crate::error::Error;
use crate::id::{ContextId, PeerId};
use crate::policy::{Action, CompiledPolicy, Facts, Resource, request_context};
use crate::sched::Scheduler;
use crate::script::{AstCache, Authorize, Detail, Job, ModuleCaller, Source, check_name};
use crate::signing::{Statement, sha256};
use crate::state::{ContextState, Journal, Nonce, StateDb, StoredScript};
use crate::storage::{Backend, Store};
use logos_wire::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a context holds, as `contextInfo` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextInfo {
    /// The id (= the owner's key).
    pub id: ContextId,
    /// Quota in bytes.
    pub quota: u64,
    /// Bytes used.
    pub used: u64,
    /// Revision of the last owner change; the next change is signed for `revision + 1`.
    pub revision: u64,
    /// The policy's version (the revision that set it; 0: never set).
    pub policy_version: u64,
    /// Installed scripts: (name, SHA-256 hex, revision).
    pub scripts: Vec<(String, String, u64)>,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Requests queued and running now.
    pub load: (usize, usize),
}

impl ContextInfo {
    /// As a logos value.
    pub fn to_value(&self) -> Value {
        let scripts = self
            .scripts
            .iter()
            .map(|(n, h, r)| {
                Value::Map(BTreeMap::from([
                    ("name".to_owned(), Value::Text(n.clone())),
                    ("hash".to_owned(), Value::Text(h.clone())),
                    ("revision".to_owned(), Value::UInt(*r)),
                ]))
            })
            .collect();
        Value::Map(BTreeMap::from([
            ("id".to_owned(), Value::Text(self.id.to_string())),
            ("owner".to_owned(), Value::Text(self.id.owner().to_string())),
            ("quotaBytes".to_owned(), Value::UInt(self.quota)),
            ("usedBytes".to_owned(), Value::UInt(self.used)),
            ("revision".to_owned(), Value::UInt(self.revision)),
            ("policyVersion".to_owned(), Value::UInt(self.policy_version)),
            ("scripts".to_owned(), Value::List(scripts)),
            ("createdMs".to_owned(), Value::UInt(self.created_ms)),
            ("queued".to_owned(), Value::UInt(self.load.0 as u64)),
            ("running".to_owned(), Value::UInt(self.load.1 as u64)),
        ]))
    }
}

/// The result of a submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// The script's value.
    pub value: Value,
    /// Events it emitted: (name, data), to be published by the host.
    pub events: Vec<(String, Value)>,
    /// The policy version that decided.
    pub policy_version: u64,
    /// The context it ran in.
    pub context: ContextId,
}

/// What an evaluation sees of its context: fixed when it starts.
#[derive(Debug)]
struct Snapshot {
    revision: u64,
    policy: Arc<CompiledPolicy>,
    scripts: Arc<BTreeMap<String, Source>>,
    by_hash: HashMap<[u8; 32], String>,
    /// The revision that installed each script.
    installed: BTreeMap<String, u64>,
}

impl Snapshot {
    fn new(
        revision: u64,
        policy: Arc<CompiledPolicy>,
        scripts: BTreeMap<String, Source>,
        installed: BTreeMap<String, u64>,
    ) -> Snapshot {
        let by_hash = scripts.values().map(|s| (s.hash, s.name.clone())).collect();
        Snapshot {
            revision,
            policy,
            scripts: Arc::new(scripts),
            by_hash,
            installed,
        }
    }
}

/// One active context.
struct Ctx {
    id: ContextId,
    dir: PathBuf,
    state: ContextState,
    /// Audit records kept ([`Config::audit_records`]).
    keep: u64,
    /// Clock skew tolerated, ms: nonces expired longer ago than this can be forgotten.
    skew_ms: u64,
    store: Arc<Store>,
    snapshot: RwLock<Arc<Snapshot>>,
    created_ms: u64,
    /// Serialises owner changes.
    owner: Mutex<()>,
}

impl Ctx {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Writes an audit record; a failure to audit is logged, never hidden as success of
    /// the audited action (the action's own result stands).
    fn audit(&self, mut r: AuditRecord) {
        r.time_ms = now_ms();
        self.write(&Journal {
            nonces: Vec::new(),
            audit: vec![r],
        });
    }

    /// Commits `journal` to the state database (no data changes). A failure is logged:
    /// its nonces stay reserved in this process (nothing they guarded happened).
    fn write(&self, journal: &Journal) {
        if journal.nonces.is_empty() && journal.audit.is_empty() {
            return;
        }
        let forget = now_ms().saturating_sub(self.skew_ms);
        if let Err(e) = self.state.lock().commit(&[], journal, self.keep, forget) {
            tracing::error!(context = %self.id, "audit records or nonces lost: {e}");
        }
    }
}

struct Inner {
    config: Config,
    root: PathBuf,
    backend: Arc<dyn Backend>,
    contexts: RwLock<BTreeMap<ContextId, Arc<Ctx>>>,
    cache: Arc<AstCache>,
    sched: Scheduler,
    shared: Arc<BTreeMap<String, Source>>,
    link: Option<Arc<dyn ModuleCaller>>,
    /// Serialises create and delete.
    lifecycle: Mutex<()>,
}

/// Sets a worker up.
#[must_use]
pub struct Builder {
    root: PathBuf,
    backend: Option<Arc<dyn Backend>>,
    config: Config,
    shared: BTreeMap<String, Source>,
    link: Option<Arc<dyn ModuleCaller>>,
}

impl Builder {
    /// The storage backend (default: [`crate::storage::sqlite::SqliteBackend`], a table in
    /// each context's state database).
    pub fn backend(mut self, backend: Arc<dyn Backend>) -> Builder {
        self.backend = Some(backend);
        self
    }

    /// The configuration.
    pub fn config(mut self, config: Config) -> Builder {
        self.config = config;
        self
    }

    /// A module every context may `import` by `name` unless it installs its own of that name.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad name.
    pub fn shared_module(mut self, name: &str, source: &str) -> Result<Builder, Error> {
        check_name(name)?;
        self.shared.insert(
            name.to_owned(),
            Source {
                name: name.to_owned(),
                text: source.into(),
                hash: sha256(source.as_bytes()),
            },
        );
        Ok(self)
    }

    /// How scripts' `call` reaches modules.
    pub fn module_caller(mut self, link: Arc<dyn ModuleCaller>) -> Builder {
        self.link = Some(link);
        self
    }

    /// Opens the state directory, activates every context in it and starts the pool.
    ///
    /// # Errors
    /// [`Error::State`], [`Error::Storage`], [`Error::Invalid`] (configuration), and
    /// [`Error::Capacity`] when the directory holds more contexts than allowed.
    pub fn open(self) -> Result<Worker, Error> {
        self.config.check()?;
        let root = self.root;
        std::fs::create_dir_all(root.join("contexts")).map_err(|e| Error::State {
            path: root.join("contexts"),
            why: format!("cannot create: {e}"),
        })?;
        let backend = match self.backend {
            Some(b) => b,
            None => Arc::new(crate::storage::sqlite::SqliteBackend::new()),
        };
        let inner = Arc::new(Inner {
            cache: Arc::new(AstCache::new(self.config.ast_cache)),
            sched: Scheduler::new(self.config.queue, self.config.per_context),
            config: self.config,
            root,
            backend,
            contexts: RwLock::new(BTreeMap::new()),
            shared: Arc::new(self.shared),
            link: self.link,
            lifecycle: Mutex::new(()),
        });
        inner.activate_all()?;
        let mut threads = Vec::new();
        for i in 0..inner.config.threads {
            let me = inner.clone();
            let t = std::thread::Builder::new()
                .name(format!("contexts-eval-{i}"))
                .stack_size(inner.config.stack_size)
                .spawn(move || {
                    me.sched
                        .serve(&me.config.limits, me.config.profile, &me.cache)
                })
                .map_err(|e| Error::State {
                    path: inner.root.clone(),
                    why: format!("cannot start evaluation thread: {e}"),
                })?;
            threads.push(t);
        }
        Ok(Worker { inner, threads })
    }
}

/// The contexts of one process.
pub struct Worker {
    inner: Arc<Inner>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.inner.sched.close();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Inner {
    fn context_dir(&self, id: ContextId) -> PathBuf {
        self.root.join("contexts").join(id.to_string())
    }

    fn activate_all(&self) -> Result<(), Error> {
        let dir = self.root.join("contexts");
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::State {
            path: dir.clone(),
            why: format!("cannot list: {e}"),
        })?;
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| ContextId::parse(n).ok()) else {
                tracing::warn!(
                    "ignoring {}: not a context directory",
                    entry.path().display()
                );
                continue;
            };
            found.push(id);
        }
        if found.len() > self.config.max_contexts {
            return Err(Error::Capacity {
                limit: self.config.max_contexts,
                why: format!(
                    "{} holds {} contexts; give each its own worker (isolated mode) or run it shared",
                    dir.display(),
                    found.len()
                ),
            });
        }
        for id in found {
            // One context that cannot be activated safely (a planted symlink, a corrupt
            // state file) stays out of service; the others are not held hostage by it.
            match self.activate(id, None) {
                Ok(ctx) => {
                    self.contexts
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(id, ctx);
                }
                Err(e) => tracing::error!(context = %id, "context not activated: {e}"),
            }
        }
        Ok(())
    }

    fn activate(&self, id: ContextId, create: Option<u64>) -> Result<Arc<Ctx>, Error> {
        let dir = self.context_dir(id);
        if create.is_some() {
            std::fs::create_dir_all(&dir).map_err(|e| Error::State {
                path: dir.clone(),
                why: format!("cannot create: {e}"),
            })?;
        }
        let state = ContextState::new(StateDb::open(
            &dir.join("state.sqlite"),
            create.map(|q| (q, now_ms())),
        )?);
        let loaded = state.lock().load()?;
        let policy = CompiledPolicy::compile(id, loaded.policy.0, &loaded.policy.1)?;
        let installed = loaded
            .scripts
            .iter()
            .map(|s| (s.name.clone(), s.revision))
            .collect();
        let scripts = loaded
            .scripts
            .into_iter()
            .map(|s| {
                (
                    s.name.clone(),
                    Source {
                        name: s.name,
                        text: s.source.into(),
                        hash: s.hash,
                    },
                )
            })
            .collect();
        let ns = self.backend.open(id, &state)?;
        let store = Arc::new(Store::new(id, ns, loaded.quota)?);
        Ok(Arc::new(Ctx {
            id,
            dir,
            state,
            keep: self.config.audit_records,
            skew_ms: u64::try_from(self.config.skew.as_millis()).unwrap_or(u64::MAX),
            store,
            snapshot: RwLock::new(Arc::new(Snapshot::new(
                loaded.revision,
                Arc::new(policy),
                scripts,
                installed,
            ))),
            created_ms: loaded.created_ms,
            owner: Mutex::new(()),
        }))
    }

    fn get(&self, id: ContextId) -> Result<Arc<Ctx>, Error> {
        self.contexts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::UnknownContext { id: id.to_string() })
    }
}

/// The permission check of one evaluation: every grant of the chain, then the policy
/// snapshot for the original caller. Also what the submission leaves in the context's state:
/// its nonces (reserved at acceptance) and its refusals, committed with its outcome.
struct Checker {
    ctx: Arc<Ctx>,
    policy: Arc<CompiledPolicy>,
    principal: PeerId,
    deputy: Option<PeerId>,
    depth: u64,
    inline: bool,
    script: String,
    grants: Vec<Vec<crate::envelope::GrantRule>>,
    envelope: String,
    /// The chain's nonces, reserved in the state database.
    nonces: Vec<Nonce>,
    /// Whether the nonces are committed already (a backend outside the state database, or
    /// before a script's first call out of the worker).
    durable: std::sync::atomic::AtomicBool,
    /// Refusals so far, to commit with the outcome.
    records: Mutex<Vec<AuditRecord>>,
    /// The Cedar request context of questions without details (storage, `submit`).
    plain: OnceLock<Result<cedar_policy::Context, String>>,
}

impl Checker {
    fn decide(
        &self,
        action: Action,
        resource: &Resource<'_>,
        detail: &Detail<'_>,
    ) -> Result<(), Error> {
        let name = match (action, resource) {
            (_, Resource::Key(k)) => k.as_str().to_owned(),
            (Action::Call, _) => format!(
                "{}.{}",
                detail.module.unwrap_or_default(),
                detail.method.unwrap_or_default()
            ),
            (Action::Emit, _) => detail.event.unwrap_or_default().to_owned(),
            (Action::List, _) => detail.prefix.unwrap_or_default().to_owned(),
            _ => self.ctx.id.to_string(),
        };
        let refuse = |reason: String| {
            self.record(AuditRecord {
                seq: 0,
                time_ms: now_ms(),
                caller: Some(self.principal.to_string()),
                action: action.as_str().to_owned(),
                resource: name.clone(),
                allowed: false,
                code: "denied".into(),
                reason: reason.clone(),
                policy_version: self.policy.version(),
                envelope: Some(self.envelope.clone()),
            });
            Err(Error::Denied {
                reason,
                policy_version: self.policy.version(),
            })
        };
        for (i, grant) in self.grants.iter().enumerate() {
            let ok = grant
                .iter()
                .any(|r| r.action == action && name.starts_with(&r.prefix));
            if !ok {
                return refuse(format!(
                    "{} {name:?} is outside the grant of delegation step {i}",
                    action.as_str()
                ));
            }
        }
        let facts = Facts {
            depth: self.depth,
            inline: self.inline,
            script: &self.script,
            deputy: self.deputy,
            module: detail.module,
            method: detail.method,
            event: detail.event,
            prefix: detail.prefix,
        };
        // Storage questions (most of them) share one request context per evaluation.
        let plain = detail.module.is_none()
            && detail.method.is_none()
            && detail.event.is_none()
            && detail.prefix.is_none();
        let context = || {
            if plain {
                self.plain.get_or_init(|| request_context(&facts)).clone()
            } else {
                request_context(&facts)
            }
        };
        let v = self
            .policy
            .decide_with(self.principal, action, resource, &facts, context);
        if v.allowed { Ok(()) } else { refuse(v.reason) }
    }
}

impl Checker {
    fn record(&self, r: AuditRecord) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(r);
    }

    /// What to commit now: the nonces unless committed already, the refusals so far and
    /// `outcome`.
    fn journal(&self, outcome: Option<AuditRecord>) -> Journal {
        let durable = self.durable.load(std::sync::atomic::Ordering::Acquire);
        let mut audit = self
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        audit.extend(outcome);
        Journal {
            nonces: if durable {
                Vec::new()
            } else {
                self.nonces.clone()
            },
            audit,
        }
    }

    /// The outcome record of this submission.
    fn outcome(&self, action: &str, result: Result<(), &Error>) -> AuditRecord {
        let (allowed, code, reason) = match result {
            Ok(()) => (true, "ok".to_owned(), "evaluated".to_owned()),
            Err(e) => (false, e.code().to_owned(), e.to_string()),
        };
        AuditRecord {
            seq: 0,
            time_ms: now_ms(),
            caller: Some(self.principal.to_string()),
            action: action.to_owned(),
            resource: self.ctx.id.to_string(),
            allowed,
            code,
            reason,
            policy_version: self.policy.version(),
            envelope: Some(self.envelope.clone()),
        }
    }

    /// Commits the nonces now (once).
    fn make_durable(&self) -> Result<(), Error> {
        use std::sync::atomic::Ordering;
        if self.durable.load(Ordering::Acquire) || self.nonces.is_empty() {
            return Ok(());
        }
        let journal = Journal {
            nonces: self.nonces.clone(),
            audit: Vec::new(),
        };
        let forget = now_ms().saturating_sub(self.ctx.skew_ms);
        self.ctx
            .state
            .lock()
            .commit(&[], &journal, self.ctx.keep, forget)?;
        self.durable.store(true, Ordering::Release);
        Ok(())
    }
}

impl Authorize for Checker {
    fn check(
        &self,
        action: Action,
        resource: &Resource<'_>,
        detail: &Detail<'_>,
    ) -> Result<(), Error> {
        self.decide(action, resource, detail)
    }

    /// A script's call out of the worker is an effect no rollback undoes: the nonces that
    /// make this envelope run once must be on disk first.
    fn before_call_out(&self) -> Result<(), Error> {
        self.make_durable()
    }
}

impl Worker {
    /// A worker keeping its state under `root`.
    pub fn builder(root: &Path) -> Builder {
        Builder {
            root: root.to_path_buf(),
            backend: None,
            config: Config::new(),
            shared: BTreeMap::new(),
            link: None,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The storage backend's name.
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// Creates the context of `owner` with `quota` bytes (default: the configured one).
    ///
    /// # Errors
    /// [`Error::ContextExists`], [`Error::Capacity`], [`Error::Invalid`] (quota above the
    /// configured maximum), [`Error::State`], [`Error::Storage`].
    pub fn create_context(&self, owner: PeerId, quota: Option<u64>) -> Result<ContextInfo, Error> {
        let inner = &self.inner;
        let quota = quota.unwrap_or(inner.config.default_quota);
        if quota > inner.config.max_quota {
            return Err(Error::invalid(
                "quotaBytes",
                &quota.to_string(),
                format!(
                    "is above this worker's maximum of {} bytes",
                    inner.config.max_quota
                ),
            ));
        }
        let id = ContextId::of(owner);
        let _l = inner.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        {
            let map = inner.contexts.read().unwrap_or_else(|p| p.into_inner());
            if map.contains_key(&id) {
                return Err(Error::ContextExists { id: id.to_string() });
            }
            if map.len() >= inner.config.max_contexts {
                return Err(Error::Capacity {
                    limit: inner.config.max_contexts,
                    why: "an isolated worker hosts one context; start another worker for this one"
                        .into(),
                });
            }
        }
        let ctx = inner.activate(id, Some(quota))?;
        inner
            .contexts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, ctx);
        self.info(id)
    }

    /// Every context's id, sorted.
    pub fn list(&self) -> Vec<ContextId> {
        self.inner
            .contexts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// What `id` holds.
    ///
    /// # Errors
    /// [`Error::UnknownContext`].
    pub fn info(&self, id: ContextId) -> Result<ContextInfo, Error> {
        let ctx = self.inner.get(id)?;
        let snap = ctx.snapshot();
        let (used, quota) = ctx.store.usage();
        Ok(ContextInfo {
            id,
            quota,
            used,
            revision: snap.revision,
            policy_version: snap.policy.version(),
            scripts: snap
                .scripts
                .values()
                .map(|s| {
                    let revision = snap.installed.get(&s.name).copied().unwrap_or(0);
                    (s.name.clone(), hex::encode(s.hash), revision)
                })
                .collect(),
            created_ms: ctx.created_ms,
            load: self.inner.sched.load(id),
        })
    }

    /// The source of script `name` (scripts are open: anyone may read them).
    ///
    /// # Errors
    /// [`Error::UnknownContext`], [`Error::UnknownScript`].
    pub fn script(&self, id: ContextId, name: &str) -> Result<String, Error> {
        let ctx = self.inner.get(id)?;
        ctx.snapshot()
            .scripts
            .get(name)
            .map(|s| s.text.to_string())
            .ok_or_else(|| Error::UnknownScript {
                context: id.to_string(),
                script: name.to_owned(),
            })
    }

    /// The policy in force: (version, text).
    ///
    /// # Errors
    /// [`Error::UnknownContext`].
    pub fn policy(&self, id: ContextId) -> Result<(u64, String), Error> {
        let snap = self.inner.get(id)?.snapshot();
        Ok((snap.policy.version(), snap.policy.text().to_owned()))
    }

    fn owner_change<T>(
        &self,
        id: ContextId,
        what: &str,
        resource: &str,
        f: impl FnOnce(&Ctx, u64) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let ctx = self.inner.get(id)?;
        let _l = ctx.owner.lock().unwrap_or_else(|p| p.into_inner());
        let next = ctx.snapshot().revision + 1;
        let result = f(&ctx, next);
        let (allowed, code, reason) = match &result {
            Ok(_) => (true, "ok".to_owned(), format!("revision {next}")),
            Err(e) => (false, e.code().to_owned(), e.to_string()),
        };
        ctx.audit(AuditRecord {
            seq: 0,
            time_ms: 0,
            caller: None,
            action: what.to_owned(),
            resource: resource.to_owned(),
            allowed,
            code,
            reason,
            policy_version: ctx.snapshot().policy.version(),
            envelope: None,
        });
        result
    }

    /// Installs (or replaces) script `name`, signed by the owner for the next revision.
    /// Returns the new revision.
    ///
    /// # Errors
    /// [`Error::BadSignature`] (also when signed for another revision), [`Error::Invalid`]
    /// (name), [`Error::Script`] (too large, does not parse).
    pub fn install_script(
        &self,
        id: ContextId,
        name: &str,
        source: &str,
        signature: &[u8],
    ) -> Result<u64, Error> {
        self.owner_change(id, "install-script", name, |ctx, next| {
            check_name(name)?;
            let hash = sha256(source.as_bytes());
            Statement::InstallScript {
                context: id,
                revision: next,
                name,
                source_hash: hash,
            }
            .verify(signature)
            .map_err(|e| with_revision_hint(e, next))?;
            let limits = &self.inner.config.limits;
            if source.len() > limits.script_bytes {
                return Err(Error::Script {
                    stage: "parse",
                    why: format!(
                        "script {name} is {} bytes, more than the {} accepted",
                        source.len(),
                        limits.script_bytes
                    ),
                });
            }
            // Refuse what cannot parse now rather than at every submission.
            let probe = crate::script::Evaluator::new(
                limits,
                self.inner.config.profile,
                Arc::new(AstCache::new(1)),
            );
            let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut scope = rhai::Scope::new();
                scope.push("params", rhai::Dynamic::UNIT);
                probe.engine().compile_with_scope(&scope, source)
            }));
            match parsed {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(Error::Script {
                        stage: "parse",
                        why: format!("script {name}: {e}"),
                    });
                }
                Err(_) => {
                    return Err(Error::Script {
                        stage: "engine",
                        why: format!("script {name}: the parser panicked"),
                    });
                }
            }
            let stored = StoredScript {
                name: name.to_owned(),
                source: source.to_owned(),
                hash,
                revision: next,
            };
            ctx.state.lock().install_script(&stored, signature)?;
            let old = ctx.snapshot();
            let mut scripts = (*old.scripts).clone();
            scripts.insert(
                name.to_owned(),
                Source {
                    name: name.to_owned(),
                    text: source.into(),
                    hash,
                },
            );
            let mut installed = old.installed.clone();
            installed.insert(name.to_owned(), next);
            *ctx.snapshot.write().unwrap_or_else(|p| p.into_inner()) =
                Arc::new(Snapshot::new(next, old.policy.clone(), scripts, installed));
            Ok(next)
        })
    }

    /// Sets the policy, signed by the owner for the next revision. Returns its version.
    /// Running evaluations keep the snapshot they started with.
    ///
    /// # Errors
    /// [`Error::BadSignature`], [`Error::Policy`].
    pub fn set_policy(&self, id: ContextId, text: &str, signature: &[u8]) -> Result<u64, Error> {
        self.owner_change(id, "set-policy", &id.to_string(), |ctx, next| {
            Statement::SetPolicy {
                context: id,
                revision: next,
                policy_hash: sha256(text.as_bytes()),
            }
            .verify(signature)
            .map_err(|e| with_revision_hint(e, next))?;
            let compiled = CompiledPolicy::compile(id, next, text)?;
            ctx.state
                .lock()
                .set_policy(next, text, signature, now_ms())?;
            let old = ctx.snapshot();
            *ctx.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Snapshot::new(
                next,
                Arc::new(compiled),
                (*old.scripts).clone(),
                old.installed.clone(),
            ));
            Ok(next)
        })
    }

    /// Deletes the context and all its data, signed by the owner for the next revision.
    ///
    /// # Errors
    /// [`Error::BadSignature`], [`Error::Storage`], [`Error::State`].
    pub fn delete_context(&self, id: ContextId, signature: &[u8]) -> Result<(), Error> {
        let inner = &self.inner;
        let _l = inner.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        let ctx = inner.get(id)?;
        let next = ctx.snapshot().revision + 1;
        Statement::Delete {
            context: id,
            revision: next,
        }
        .verify(signature)
        .map_err(|e| with_revision_hint(e, next))?;
        inner
            .contexts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        inner.cache.forget(id);
        inner.backend.destroy(id)?;
        std::fs::remove_dir_all(&ctx.dir).map_err(|e| Error::State {
            path: ctx.dir.clone(),
            why: format!("cannot remove: {e}"),
        })
    }

    /// The audit log after record `after`, at most `limit` records; the owner signs a
    /// [`Statement::ReadAudit`] valid until `expires_at_ms`.
    ///
    /// # Errors
    /// [`Error::BadSignature`], [`Error::Expired`], [`Error::State`].
    pub fn audit(
        &self,
        id: ContextId,
        expires_at_ms: u64,
        signature: &[u8],
        after: u64,
        limit: u64,
    ) -> Result<Vec<AuditRecord>, Error> {
        let ctx = self.inner.get(id)?;
        Statement::ReadAudit {
            context: id,
            expires_at_ms,
        }
        .verify(signature)?;
        self.check_expiry(expires_at_ms)?;
        ctx.state.lock().read_audit(after, limit.min(1000))
    }

    fn check_expiry(&self, expires_at_ms: u64) -> Result<(), Error> {
        let now = now_ms();
        let skew = u64::try_from(self.inner.config.skew.as_millis()).unwrap_or(u64::MAX);
        let max = u64::try_from(self.inner.config.max_validity.as_millis()).unwrap_or(u64::MAX);
        if expires_at_ms.saturating_add(skew) < now {
            return Err(Error::Expired {
                expires_at_ms,
                now_ms: now,
                skew_ms: skew,
            });
        }
        if expires_at_ms > now.saturating_add(max).saturating_add(skew) {
            return Err(Error::invalid(
                "expiresAt",
                &expires_at_ms.to_string(),
                format!(
                    "is more than {} s from now ({now} ms); sign for a shorter validity",
                    max / 1000
                ),
            ));
        }
        Ok(())
    }

    /// Submits an envelope and waits for the result. Blocks: call it from a thread that may
    /// block (never from inside an async task; see [`Worker::submit_with`]).
    ///
    /// # Errors
    /// Any of the refusals of the module docs, or the script's failure.
    pub fn submit(&self, bytes: &[u8]) -> Result<Submitted, Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.submit_with(bytes, move |r| {
            let _ = tx.send(r);
        });
        rx.recv().unwrap_or(Err(Error::Closed))
    }

    /// Submits an envelope; `done` gets the result, from this thread when refused early or
    /// from an evaluation thread. Never blocks on evaluation. Checks signatures on this
    /// thread.
    pub fn submit_with(
        &self,
        bytes: &[u8],
        done: impl FnOnce(Result<Submitted, Error>) + Send + 'static,
    ) {
        match self.accept(bytes) {
            Ok((id, prepared)) => self.enqueue(id, prepared, done),
            Err(e) => done(Err(e)),
        }
    }

    /// Steps 1 to 7; on success the evaluation to queue.
    fn accept(&self, bytes: &[u8]) -> Result<(ContextId, Prepared), Error> {
        let inner = &self.inner;
        let env = match SignedEnvelope::decode(bytes) {
            Ok(e) => e,
            Err(e) => {
                // Audit the refusal in the context the envelope claims, if this worker has it.
                if let Some(ctx) =
                    crate::envelope::peek_target(bytes).and_then(|t| inner.get(t).ok())
                {
                    ctx.audit(AuditRecord {
                        seq: 0,
                        time_ms: 0,
                        caller: None,
                        action: "submit".into(),
                        resource: ctx.id.to_string(),
                        allowed: false,
                        code: e.code().into(),
                        reason: e.to_string(),
                        policy_version: ctx.snapshot().policy.version(),
                        envelope: Some(hex::encode(sha256(bytes))),
                    });
                }
                return Err(e);
            }
        };
        let target = env.envelope.target;
        let ctx = inner.get(target)?;
        let snapshot = ctx.snapshot();
        // The wire bytes are canonical (decode checked), so they name the envelope.
        let hash = hex::encode(sha256(bytes));
        let chain = env.chain();
        let root = chain[0].envelope.caller;
        let refuse = |e: Error| {
            ctx.audit(AuditRecord {
                seq: 0,
                time_ms: 0,
                caller: Some(root.to_string()),
                action: "submit".into(),
                resource: target.to_string(),
                allowed: false,
                code: e.code().into(),
                reason: e.to_string(),
                policy_version: snapshot.policy.version(),
                envelope: Some(hash.clone()),
            });
            e
        };
        for link in &chain {
            self.check_expiry(link.envelope.expires_at_ms)
                .map_err(refuse)?;
        }
        let depth = chain.len() - 1;
        if depth > inner.config.max_delegation_depth {
            return Err(refuse(Error::Denied {
                reason: format!(
                    "delegation {depth} deep, more than this worker's limit of {}",
                    inner.config.max_delegation_depth
                ),
                policy_version: snapshot.policy.version(),
            }));
        }
        for pair in chain.windows(2) {
            let (parent, child) = (&pair[0].envelope, &pair[1].envelope);
            if parent.target.owner() != child.caller {
                return Err(refuse(Error::Denied {
                    reason: format!(
                        "{} forwarded a delegation addressed to {}, not to itself",
                        child.caller, parent.target
                    ),
                    policy_version: snapshot.policy.version(),
                }));
            }
        }
        // Nonces: each envelope of the chain, reserved before anything runs. Where the
        // data lives in the state database they are committed with the outcome (one
        // transaction); elsewhere they are committed now, before any effect.
        let nonces: Vec<Nonce> = chain
            .iter()
            .map(|l| Nonce {
                caller: *l.envelope.caller.as_bytes(),
                target: *l.envelope.target.as_bytes(),
                nonce: l.envelope.nonce.clone(),
                expires_ms: l.envelope.expires_at_ms,
            })
            .collect();
        {
            let mut st = ctx.state.lock();
            for (i, n) in nonces.iter().enumerate() {
                let fresh = match st.reserve_nonce(n) {
                    Ok(fresh) => fresh,
                    Err(e) => {
                        st.release(&nonces[..i]);
                        drop(st);
                        return Err(refuse(e));
                    }
                };
                if !fresh {
                    st.release(&nonces[..i]);
                    drop(st);
                    let e = &chain[i].envelope;
                    return Err(refuse(Error::Replay {
                        caller: e.caller.to_string(),
                        target: e.target.to_string(),
                        nonce: hex::encode(&e.nonce),
                    }));
                }
            }
        }
        let main = match &env.envelope.script {
            ScriptRef::Hash(h) => snapshot
                .by_hash
                .get(h)
                .and_then(|name| snapshot.scripts.get(name))
                .cloned()
                .ok_or_else(|| Error::UnknownScript {
                    context: target.to_string(),
                    script: hex::encode(h),
                }),
            ScriptRef::Inline(text) => Ok(Source {
                name: "inline".into(),
                text: text.as_str().into(),
                hash: sha256(text.as_bytes()),
            }),
        };
        let checker = Arc::new(Checker {
            ctx: ctx.clone(),
            policy: snapshot.policy.clone(),
            principal: root,
            deputy: (depth > 0).then_some(env.envelope.caller),
            depth: depth as u64,
            inline: matches!(env.envelope.script, ScriptRef::Inline(_)),
            script: main
                .as_ref()
                .map_or_else(|_| String::new(), |m| hex::encode(m.hash)),
            grants: chain
                .iter()
                .filter_map(|l| l.envelope.grant.clone())
                .collect(),
            envelope: hash.clone(),
            nonces,
            durable: std::sync::atomic::AtomicBool::new(false),
            records: Mutex::new(Vec::new()),
            plain: OnceLock::new(),
        });
        // Refused from here on: the nonces are spent, with the refusal, in one commit.
        let settle = |e: Error| {
            ctx.write(&checker.journal(Some(checker.outcome("submit", Err(&e)))));
            e
        };
        if !ctx.store.journals() {
            checker.make_durable().map_err(settle)?;
        }
        let main = main.map_err(settle)?;
        // Step 7: `submit` itself (the checker records a refusal).
        if let Err(e) = checker.decide(Action::Submit, &Resource::Context, &Detail::default()) {
            ctx.write(&checker.journal(None));
            return Err(e);
        }
        let caller_info = Value::Map(BTreeMap::from([
            ("id".to_owned(), Value::Text(root.to_string())),
            ("exposed".to_owned(), chain[0].envelope.expose.clone()),
            (
                "deputies".to_owned(),
                Value::List(
                    chain[1..]
                        .iter()
                        .map(|l| Value::Text(l.envelope.caller.to_string()))
                        .collect(),
                ),
            ),
        ]));
        Ok((
            target,
            Prepared {
                ctx,
                snapshot,
                checker,
                main,
                caller_info,
                params: env.envelope.params.clone(),
            },
        ))
    }

    fn enqueue(
        &self,
        id: ContextId,
        p: Prepared,
        done: impl FnOnce(Result<Submitted, Error>) + Send + 'static,
    ) {
        let inner = self.inner.clone();
        let done = Arc::new(Mutex::new(Some(
            Box::new(done) as Box<dyn FnOnce(Result<Submitted, Error>) + Send>
        )));
        let done_task = done.clone();
        let ctx = p.ctx.clone();
        let checker = p.checker.clone();
        let task: crate::sched::Task = Box::new(move |ev| {
            let job = Job {
                context: p.ctx.id,
                store: p.ctx.store.clone(),
                main: p.main,
                scripts: p.snapshot.scripts.clone(),
                shared: inner.shared.clone(),
                authorize: p.checker.clone(),
                caller_link: inner.link.clone(),
                caller_info: p.caller_info,
                params: p.params,
                now_ms: now_ms(),
            };
            let result = ev.run(job);
            let reset = matches!(
                &result,
                Err(Error::Script {
                    stage: "engine",
                    ..
                })
            );
            if reset {
                inner.cache.forget(p.ctx.id);
            }
            let (ctx, checker) = (&p.ctx, &p.checker);
            let forget = now_ms().saturating_sub(ctx.skew_ms);
            // The script's writes, the nonces and the audit records: one commit where the
            // data lives in the state database.
            let result = result.and_then(|out| {
                let journal = checker.journal(Some(checker.outcome("outcome", Ok(()))));
                let journaled =
                    ctx.store
                        .apply_journaled(&out.changes, &journal, ctx.keep, forget)?;
                if !journaled {
                    ctx.write(&journal);
                }
                Ok(Submitted {
                    value: out.value,
                    events: out.events,
                    policy_version: p.snapshot.policy.version(),
                    context: ctx.id,
                })
            });
            if let Err(e) = &result {
                ctx.write(&checker.journal(Some(checker.outcome("outcome", Err(e)))));
            }
            if let Some(d) = done_task.lock().unwrap_or_else(|p| p.into_inner()).take() {
                d(result);
            }
            reset
        });
        if let Err(e) = self.inner.sched.push(id, task) {
            ctx.write(&checker.journal(Some(checker.outcome("submit", Err(&e)))));
            if let Some(d) = done.lock().unwrap_or_else(|p| p.into_inner()).take() {
                d(Err(e));
            }
        }
    }
}

/// An accepted submission, ready to evaluate.
struct Prepared {
    ctx: Arc<Ctx>,
    snapshot: Arc<Snapshot>,
    checker: Arc<Checker>,
    main: Source,
    caller_info: Value,
    params: Value,
}

fn with_revision_hint(e: Error, next: u64) -> Error {
    match e {
        Error::BadSignature { why } => Error::BadSignature {
            why: format!(
                "{why} (owner changes are signed for the next revision, {next}; read it with contextInfo)"
            ),
        },
        other => other,
    }
}
