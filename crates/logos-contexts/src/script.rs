//! Running one script: a Rhai engine made with `Engine::new_raw()` (no packages, so no
//! function the profile does not name), every limit of [`Limits`] set, the host functions
//! of a [`Profile`], an `import` resolver that knows only the context's own scripts, and a
//! cache of compiled scripts.
//!
//! Host functions:
//! - storage of the target context: `get(key)`, `put(key, value)`, `delete(key)` (→ bool),
//!   `list(prefix)` (→ array of keys). Writes go to an overlay that reads see; the worker
//!   applies it in one batch only if the evaluation succeeds, so a failed script changes
//!   nothing.
//! - `caller()` → `#{id, exposed, deputies}`, `target()` → the context id, `now()` → ms
//!   since the epoch (fixed for the evaluation), `params` (a constant).
//! - with the profile: `emit(event, data)` (sent only if the evaluation succeeds) and
//!   `invoke(module, method, args)` (the issue's `call`: `call` is Rhai's keyword for
//!   function pointers).
//! - pure helpers: `len`, `to_string`, `push`, `keys`, `contains`, `starts_with`.
//!
//! Every host function first asks the worker's [`Authorize`] (the caller's grant and the
//! context's policy); a refusal, a storage error or the deadline *terminates* the evaluation
//! (Rhai cannot catch a termination with `try`), so a script cannot swallow a denial and
//! carry on. The deadline is checked every 256 engine operations (`on_progress`) and before
//! every host call, and host calls get only the time left.
//!
//! Evaluation runs under `catch_unwind`: an engine panic becomes [`Error::Script`] with
//! stage `engine`, and the caller throws the engine away (the context's cached scripts
//! too), never the worker. Never touches storage directly except through [`Store`], never
//! decides policy.

use crate::config::{Limits, Profile};
use crate::error::Error;
use crate::id::ContextId;
use crate::key::{StorageKey, parse_prefix};
use crate::policy::{Action, Resource};
use crate::storage::{Change, Store};
use logos_wire::Value;
use rhai::{AST, Dynamic, Engine, EvalAltResult, ImmutableString, Module, Position, Scope};
use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a host function asks permission for, beyond the action and resource.
#[derive(Debug, Clone, Copy, Default)]
pub struct Detail<'a> {
    /// `call`: the module.
    pub module: Option<&'a str>,
    /// `call`: the method.
    pub method: Option<&'a str>,
    /// `emit`: the event.
    pub event: Option<&'a str>,
    /// `list`: the prefix.
    pub prefix: Option<&'a str>,
}

/// The worker's decision on each host call (grant ∩ policy, with auditing of refusals).
pub trait Authorize: Send + Sync {
    /// `Ok` if the script may do `action` on `resource`.
    ///
    /// # Errors
    /// [`Error::Denied`], already audited.
    fn check(
        &self,
        action: Action,
        resource: &Resource<'_>,
        detail: &Detail<'_>,
    ) -> Result<(), Error>;

    /// Called before a script's effect outside the worker (`invoke`), which no rollback
    /// undoes; the worker makes the submission's nonces durable here.
    ///
    /// # Errors
    /// When that fails: the call does not happen.
    fn before_call_out(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// How scripts reach other modules (`call`), supplied by whoever hosts the worker.
pub trait ModuleCaller: Send + Sync {
    /// Calls `module.method(args)`, giving up after `timeout`.
    ///
    /// # Errors
    /// The callee's error or the timeout, as text.
    fn call(
        &self,
        module: &str,
        method: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Value, String>;
}

/// An installed or shared script.
#[derive(Debug, Clone)]
pub struct Source {
    /// Its name.
    pub name: String,
    /// The text.
    pub text: Arc<str>,
    /// SHA-256 of the text.
    pub hash: [u8; 32],
}

/// Compiled scripts, by (context, source hash). Shared modules are cached under the
/// all-zero context.
pub struct AstCache {
    inner: Mutex<lru::LruCache<AstKey, Arc<AST>>>,
}

/// (context, SHA-256 of the source).
type AstKey = (ContextId, [u8; 32]);

impl std::fmt::Debug for AstCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AstCache")
    }
}

impl AstCache {
    /// A cache of at most `n` (at least 1) scripts.
    pub fn new(n: usize) -> AstCache {
        let n = std::num::NonZeroUsize::new(n.max(1)).unwrap_or(std::num::NonZeroUsize::MIN);
        AstCache {
            inner: Mutex::new(lru::LruCache::new(n)),
        }
    }

    fn get(&self, k: &(ContextId, [u8; 32])) -> Option<Arc<AST>> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(k)
            .cloned()
    }

    fn put(&self, k: (ContextId, [u8; 32]), ast: Arc<AST>) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(k, ast);
    }

    /// Forgets every script of `context` (after an engine fault or deletion).
    pub fn forget(&self, context: ContextId) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<_> = c
            .iter()
            .filter(|(k, _)| k.0 == context)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            c.pop(&k);
        }
    }

    /// Scripts cached.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One evaluation's inputs.
pub struct Job {
    /// The target context.
    pub context: ContextId,
    /// Its storage.
    pub store: Arc<Store>,
    /// The script to run.
    pub main: Source,
    /// What `import` may find: the context's scripts, by name.
    pub scripts: Arc<BTreeMap<String, Source>>,
    /// Worker-wide shared modules, overridden by the context's own of the same name.
    pub shared: Arc<BTreeMap<String, Source>>,
    /// The permission check.
    pub authorize: Arc<dyn Authorize>,
    /// `call`'s way out (None: `call` fails).
    pub caller_link: Option<Arc<dyn ModuleCaller>>,
    /// What `caller()` returns.
    pub caller_info: Value,
    /// `params`.
    pub params: Value,
    /// `now()`.
    pub now_ms: u64,
}

/// What an evaluation produced, not yet applied.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The script's value.
    pub value: Value,
    /// Storage changes, in order.
    pub changes: Vec<Change>,
    /// Events to emit: (name, data).
    pub events: Vec<(String, Value)>,
    /// Storage operations done.
    pub storage_ops: usize,
}

/// State of the evaluation in progress, reached by the host functions.
struct Host {
    context: ContextId,
    store: Arc<Store>,
    scripts: Arc<BTreeMap<String, Source>>,
    shared: Arc<BTreeMap<String, Source>>,
    authorize: Arc<dyn Authorize>,
    caller_link: Option<Arc<dyn ModuleCaller>>,
    caller_info: Dynamic,
    target: ImmutableString,
    now_ms: i64,
    deadline: Instant,
    overlay: BTreeMap<StorageKey, Option<Vec<u8>>>,
    changes: Vec<Change>,
    events: Vec<(String, Value)>,
    ops: usize,
    abort: Option<Error>,
    modules: HashMap<String, rhai::Shared<Module>>,
    resolving: Vec<String>,
}

type Slot = Arc<Mutex<Option<Host>>>;

/// The token of a termination that carries an [`Error`] in `Host::abort`.
const ABORT: &str = "$abort";
/// The token of the deadline.
const DEADLINE: &str = "$deadline";

fn terminate(token: &str) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorTerminated(
        Dynamic::from(token.to_owned()),
        Position::NONE,
    ))
}

/// Runs `f` on the host state; an error it returns aborts the evaluation.
fn with_host<T>(
    slot: &Slot,
    f: impl FnOnce(&mut Host) -> Result<T, Error>,
) -> Result<T, Box<EvalAltResult>> {
    let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
    let Some(host) = guard.as_mut() else {
        return Err(terminate(ABORT));
    };
    if Instant::now() > host.deadline {
        return Err(terminate(DEADLINE));
    }
    match f(host) {
        Ok(v) => Ok(v),
        Err(e) => {
            host.abort.get_or_insert(e);
            Err(terminate(ABORT))
        }
    }
}

/// A script name: 1 to 64 of `a-z 0-9 _ -`, starting with a letter.
///
/// # Errors
/// [`Error::Invalid`].
pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "script name",
            name,
            "a script name is 1 to 64 of a-z 0-9 _ -, starting with a letter (no paths)",
        ))
    }
}

/// A Value as a Rhai value.
pub fn to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Int(i) => Dynamic::from_int(*i),
        // Above i64: Rhai has no wider integer; a float keeps the magnitude.
        Value::UInt(u) => Dynamic::from_float(*u as f64),
        Value::Float(f) => Dynamic::from_float(*f),
        Value::Text(s) => Dynamic::from(s.clone()),
        Value::Bytes(b) => Dynamic::from_blob(b.to_vec()),
        Value::List(items) => Dynamic::from_array(items.iter().map(to_dynamic).collect()),
        Value::Map(m) => Dynamic::from_map(
            m.iter()
                .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
                .collect(),
        ),
    }
}

/// A Rhai value as a Value.
///
/// # Errors
/// [`Error::Script`] for values that cannot leave a script (functions, timestamps…).
pub fn from_dynamic(d: &Dynamic) -> Result<Value, Error> {
    if d.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = d.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = d.as_int() {
        return Ok(Value::Int(i));
    }
    if let Ok(f) = d.as_float() {
        return Ok(Value::Float(f));
    }
    if let Ok(c) = d.as_char() {
        return Ok(Value::Text(c.to_string()));
    }
    if d.is_string() {
        return Ok(Value::Text(d.clone().into_string().unwrap_or_default()));
    }
    if d.is_blob() {
        return Ok(Value::Bytes(
            d.clone().into_blob().unwrap_or_default().into(),
        ));
    }
    if d.is_array() {
        let a = d.clone().into_array().unwrap_or_default();
        return a
            .iter()
            .map(from_dynamic)
            .collect::<Result<_, _>>()
            .map(Value::List);
    }
    if d.is_map() {
        let m = d.clone().cast::<rhai::Map>();
        return m
            .iter()
            .map(|(k, v)| from_dynamic(v).map(|v| (k.to_string(), v)))
            .collect::<Result<_, _>>()
            .map(Value::Map);
    }
    Err(Error::Script {
        stage: "evaluation",
        why: format!("a {} cannot be stored, sent or returned", d.type_name()),
    })
}

fn encode(v: &Value) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    logos_wire::encode_value(v, &mut out).map_err(|e| Error::Script {
        stage: "evaluation",
        why: format!("cannot encode the value: {e}"),
    })?;
    Ok(out)
}

fn count_op(h: &mut Host, limits: &Limits) -> Result<(), Error> {
    h.ops += 1;
    if h.ops > limits.storage_ops {
        return Err(Error::Script {
            stage: "limit",
            why: format!("more than {} storage operations", limits.storage_ops),
        });
    }
    Ok(())
}

/// The import resolver: names of the context's scripts, then shared modules; no paths.
struct Resolver {
    slot: Slot,
    cache: Arc<AstCache>,
    limits: Limits,
}

impl rhai::ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<rhai::Shared<Module>, Box<EvalAltResult>> {
        let refuse = |e: Error| -> Box<EvalAltResult> {
            let mut g = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = g.as_mut() {
                h.abort.get_or_insert(e);
            }
            let _ = pos;
            terminate(ABORT)
        };
        if let Err(e) = check_name(path) {
            return Err(refuse(Error::Script {
                stage: "import",
                why: format!(
                    "import {path:?}: {e}; only the context's own scripts can be imported, by name"
                ),
            }));
        }
        let (context, source) = {
            let g = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            let Some(h) = g.as_ref() else {
                return Err(terminate(ABORT));
            };
            if let Some(m) = h.modules.get(path) {
                return Ok(m.clone());
            }
            if h.resolving.iter().any(|r| r == path) {
                let chain = format!("{} -> {path}", h.resolving.join(" -> "));
                drop(g);
                return Err(refuse(Error::Script {
                    stage: "import",
                    why: format!("import cycle: {chain}"),
                }));
            }
            match (h.scripts.get(path), h.shared.get(path)) {
                (Some(own), _) => (h.context, own.clone()),
                (None, Some(shared)) => (ContextId([0; 32]), shared.clone()),
                (None, None) => {
                    let ctx = h.context;
                    drop(g);
                    return Err(refuse(Error::UnknownScript {
                        context: ctx.to_string(),
                        script: path.to_owned(),
                    }));
                }
            }
        };
        let ast = compile(engine, &self.cache, &self.limits, context, &source).map_err(refuse)?;
        {
            let mut g = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = g.as_mut() {
                h.resolving.push(path.to_owned());
            }
        }
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine);
        let mut g = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = g.as_mut() {
            h.resolving.retain(|r| r != path);
        }
        let module: rhai::Shared<Module> = module?.into();
        if let Some(h) = g.as_mut() {
            h.modules.insert(path.to_owned(), module.clone());
        }
        Ok(module)
    }
}

/// Compiles `source` (checking its size first), through the cache.
fn compile(
    engine: &Engine,
    cache: &AstCache,
    limits: &Limits,
    context: ContextId,
    source: &Source,
) -> Result<Arc<AST>, Error> {
    if let Some(ast) = cache.get(&(context, source.hash)) {
        return Ok(ast);
    }
    if source.text.len() > limits.script_bytes {
        return Err(Error::Script {
            stage: "parse",
            why: format!(
                "script {} is {} bytes, more than the {} accepted",
                source.name,
                source.text.len(),
                limits.script_bytes
            ),
        });
    }
    // Strict variables: the parser must know the one variable the worker defines. It is a
    // scope variable, not a constant, so the optimiser cannot fold this compile-time unit value
    // into the AST; each evaluation pushes the envelope's real params.
    let mut scope = Scope::new();
    scope.push("params", Dynamic::UNIT);
    let ast = engine
        .compile_with_scope(&scope, &*source.text)
        .map_err(|e| Error::Script {
            stage: "parse",
            why: format!("script {}: {e}", source.name),
        })?;
    let ast = Arc::new(ast);
    cache.put((context, source.hash), ast.clone());
    Ok(ast)
}

/// An engine and the slot its host functions read, owned by one evaluation thread.
pub struct Evaluator {
    engine: Engine,
    slot: Slot,
    cache: Arc<AstCache>,
    limits: Limits,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Evaluator")
    }
}

impl Evaluator {
    /// A raw engine with `limits` and the host functions of `profile`.
    pub fn new(limits: &Limits, profile: Profile, cache: Arc<AstCache>) -> Evaluator {
        let slot: Slot = Arc::new(Mutex::new(None));
        let mut e = Engine::new_raw();
        e.set_max_operations(limits.operations)
            .set_max_call_levels(limits.call_depth)
            .set_max_expr_depths(limits.expr_depth.0, limits.expr_depth.1)
            .set_max_string_size(limits.string_bytes)
            .set_max_array_size(limits.array_items)
            .set_max_map_size(limits.map_entries)
            .set_max_modules(limits.modules)
            .set_max_variables(1024)
            .set_max_functions(256)
            .set_strict_variables(true);
        e.disable_symbol("eval");
        e.on_print(|_| {});
        e.on_debug(|_, _, _| {});
        let deadline_slot = slot.clone();
        e.on_progress(move |ops| {
            if ops % 256 != 0 {
                return None;
            }
            let g = deadline_slot.lock().unwrap_or_else(|p| p.into_inner());
            match g.as_ref() {
                Some(h) if Instant::now() <= h.deadline => None,
                _ => Some(Dynamic::from(DEADLINE.to_owned())),
            }
        });
        e.set_module_resolver(Resolver {
            slot: slot.clone(),
            cache: cache.clone(),
            limits: limits.clone(),
        });
        register_host(&mut e, &slot, limits, profile);
        Evaluator {
            engine: e,
            slot,
            cache,
            limits: limits.clone(),
        }
    }

    /// The engine (for the benchmark's bare evaluation).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Runs `job` within the limits. On `Err` with stage `engine` the caller must drop
    /// this evaluator and the context's cached scripts.
    ///
    /// # Errors
    /// [`Error::Script`], or the error that aborted it ([`Error::Denied`],
    /// [`Error::QuotaExceeded`] from a read…).
    pub fn run(&self, job: Job) -> Result<Outcome, Error> {
        let deadline = Instant::now() + self.limits.deadline;
        let target = ImmutableString::from(job.context.to_string());
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Host {
            context: job.context,
            store: job.store,
            scripts: job.scripts,
            shared: job.shared,
            authorize: job.authorize,
            caller_link: job.caller_link,
            caller_info: to_dynamic(&job.caller_info),
            target,
            now_ms: i64::try_from(job.now_ms).unwrap_or(i64::MAX),
            deadline,
            overlay: BTreeMap::new(),
            changes: Vec::new(),
            events: Vec::new(),
            ops: 0,
            abort: None,
            modules: HashMap::new(),
            resolving: Vec::new(),
        });
        let context = job.context;
        let main = job.main;
        let params = job.params;
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let ast = compile(&self.engine, &self.cache, &self.limits, context, &main)?;
            let mut scope = Scope::new();
            scope.push_constant("params", to_dynamic(&params));
            self.engine
                .eval_ast_with_scope::<Dynamic>(&mut scope, &ast)
                .map_err(|e| *e)
                .map_err(Failure::Rhai)
                .map_err(|f| self.failure(f))
                .and_then(|d| from_dynamic(&d))
        }));
        let host = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        let value = match result {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(e),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                return Err(Error::Script {
                    stage: "engine",
                    why: format!(
                        "the engine panicked ({why}); the context's engine state was reset"
                    ),
                });
            }
        };
        let host = host.ok_or(Error::Closed)?;
        Ok(Outcome {
            value,
            changes: host.changes,
            events: host.events,
            storage_ops: host.ops,
        })
    }

    /// Maps an engine error (taking a stashed abort error).
    fn failure(&self, f: Failure) -> Error {
        let Failure::Rhai(e) = f;
        let abort = || {
            self.slot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
                .and_then(|h| h.abort.take())
        };
        match e {
            EvalAltResult::ErrorTerminated(token, _) if token.to_string() == DEADLINE => {
                Error::Script {
                    stage: "deadline",
                    why: format!(
                        "the evaluation ran past its {:?} deadline",
                        self.limits.deadline
                    ),
                }
            }
            EvalAltResult::ErrorTerminated(..) => abort().unwrap_or(Error::Script {
                stage: "evaluation",
                why: "terminated".into(),
            }),
            // An abort raised inside an imported module arrives wrapped.
            EvalAltResult::ErrorInModule(_, inner, _) => match *inner {
                EvalAltResult::ErrorTerminated(token, _) if token.to_string() == DEADLINE => self
                    .failure(Failure::Rhai(EvalAltResult::ErrorTerminated(
                        token,
                        Position::NONE,
                    ))),
                other => abort().unwrap_or_else(|| limit_or_eval(other)),
            },
            other => abort().unwrap_or_else(|| limit_or_eval(other)),
        }
    }
}

enum Failure {
    Rhai(EvalAltResult),
}

fn limit_or_eval(e: EvalAltResult) -> Error {
    let stage = match &e {
        EvalAltResult::ErrorTooManyOperations(_)
        | EvalAltResult::ErrorStackOverflow(_)
        | EvalAltResult::ErrorDataTooLarge(..)
        | EvalAltResult::ErrorTooManyModules(_)
        | EvalAltResult::ErrorTooManyVariables(_) => "limit",
        EvalAltResult::ErrorParsing(..) => "parse",
        EvalAltResult::ErrorFunctionNotFound(..) => "host function",
        _ => "evaluation",
    };
    Error::Script {
        stage,
        why: e.to_string(),
    }
}

fn key_of(text: &str) -> Result<StorageKey, Error> {
    StorageKey::parse(text)
}

/// Registers the host functions of `profile`.
fn register_host(e: &mut Engine, slot: &Slot, limits: &Limits, profile: Profile) {
    let s = slot.clone();
    let l = limits.clone();
    e.register_fn(
        "get",
        move |key: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            with_host(&s, |h| {
                let key = key_of(key)?;
                h.authorize
                    .check(Action::Read, &Resource::Key(&key), &Detail::default())?;
                count_op(h, &l)?;
                let bytes = match h.overlay.get(&key) {
                    Some(v) => v.clone(),
                    None => h.store.get(&key)?,
                };
                match bytes {
                    None => Ok(Dynamic::UNIT),
                    Some(b) => logos_wire::decode_value(&b)
                        .map(|v| to_dynamic(&v))
                        .map_err(|e| Error::storage("value", format!("decoding {key}"), e)),
                }
            })
        },
    );
    let s = slot.clone();
    let l = limits.clone();
    e.register_fn(
        "put",
        move |key: &str, value: Dynamic| -> Result<(), Box<EvalAltResult>> {
            with_host(&s, |h| {
                let key = key_of(key)?;
                h.authorize
                    .check(Action::Write, &Resource::Key(&key), &Detail::default())?;
                count_op(h, &l)?;
                let bytes = encode(&from_dynamic(&value)?)?;
                h.overlay.insert(key.clone(), Some(bytes.clone()));
                h.changes.push(Change::Put(key, bytes));
                Ok(())
            })
        },
    );
    let s = slot.clone();
    let l = limits.clone();
    e.register_fn(
        "delete",
        move |key: &str| -> Result<bool, Box<EvalAltResult>> {
            with_host(&s, |h| {
                let key = key_of(key)?;
                h.authorize
                    .check(Action::Delete, &Resource::Key(&key), &Detail::default())?;
                count_op(h, &l)?;
                let existed = match h.overlay.get(&key) {
                    Some(v) => v.is_some(),
                    None => h.store.get(&key)?.is_some(),
                };
                h.overlay.insert(key.clone(), None);
                h.changes.push(Change::Delete(key));
                Ok(existed)
            })
        },
    );
    let s = slot.clone();
    let l = limits.clone();
    e.register_fn(
        "list",
        move |prefix: &str| -> Result<rhai::Array, Box<EvalAltResult>> {
            with_host(&s, |h| {
                let prefix = parse_prefix(prefix)?;
                h.authorize.check(
                    Action::List,
                    &Resource::Context,
                    &Detail {
                        prefix: Some(&prefix),
                        ..Detail::default()
                    },
                )?;
                count_op(h, &l)?;
                let mut keys: std::collections::BTreeSet<String> = h
                    .store
                    .list(&prefix, l.list_keys)?
                    .into_iter()
                    .map(|k| k.as_str().to_owned())
                    .collect();
                for (k, v) in h.overlay.range::<StorageKey, _>(..) {
                    if k.as_str().starts_with(&prefix) {
                        if v.is_some() {
                            keys.insert(k.as_str().to_owned());
                        } else {
                            keys.remove(k.as_str());
                        }
                    }
                }
                Ok(keys
                    .into_iter()
                    .take(l.list_keys)
                    .map(Dynamic::from)
                    .collect())
            })
        },
    );
    let s = slot.clone();
    e.register_fn("caller", move || -> Result<Dynamic, Box<EvalAltResult>> {
        with_host(&s, |h| Ok(h.caller_info.clone()))
    });
    let s = slot.clone();
    e.register_fn(
        "target",
        move || -> Result<ImmutableString, Box<EvalAltResult>> {
            with_host(&s, |h| Ok(h.target.clone()))
        },
    );
    let s = slot.clone();
    e.register_fn("now", move || -> Result<i64, Box<EvalAltResult>> {
        with_host(&s, |h| Ok(h.now_ms))
    });
    if profile.emit {
        let s = slot.clone();
        let max = limits.events;
        e.register_fn(
            "emit",
            move |event: &str, data: Dynamic| -> Result<(), Box<EvalAltResult>> {
                with_host(&s, |h| {
                    h.authorize.check(
                        Action::Emit,
                        &Resource::Context,
                        &Detail {
                            event: Some(event),
                            ..Detail::default()
                        },
                    )?;
                    if h.events.len() >= max {
                        return Err(Error::Script {
                            stage: "limit",
                            why: format!("more than {max} events"),
                        });
                    }
                    h.events.push((event.to_owned(), from_dynamic(&data)?));
                    Ok(())
                })
            },
        );
    }
    if profile.call {
        let s = slot.clone();
        // `call` is Rhai's keyword for calling function pointers, hence `invoke`.
        e.register_fn(
            "invoke",
            move |module: &str,
                  method: &str,
                  args: rhai::Array|
                  -> Result<Dynamic, Box<EvalAltResult>> {
                // Permission and arguments under the lock; the call itself without it.
                let (link, args, left) = with_host(&s, |h| {
                    h.authorize.check(
                        Action::Call,
                        &Resource::Context,
                        &Detail {
                            module: Some(module),
                            method: Some(method),
                            ..Detail::default()
                        },
                    )?;
                    let link = h.caller_link.clone().ok_or_else(|| Error::Script {
                        stage: "host function",
                        why: "invoke: this worker has no way to reach modules".into(),
                    })?;
                    h.authorize.before_call_out()?;
                    let args = args
                        .iter()
                        .map(from_dynamic)
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((
                        link,
                        args,
                        h.deadline.saturating_duration_since(Instant::now()),
                    ))
                })?;
                let result = link.call(module, method, args, left);
                with_host(&s, |_| match result {
                    Ok(v) => Ok(to_dynamic(&v)),
                    Err(e) => Err(Error::Script {
                        stage: "host function",
                        why: format!("invoke {module}.{method}: {e}"),
                    }),
                })
            },
        );
    }
    #[cfg(feature = "fault-injection")]
    e.register_fn("__fault_panic", || -> i64 {
        panic!("fault injected by the test suite")
    });
    // Iteration (`for x in array`, `for i in 0..n`): raw engines have none.
    e.register_iterator::<rhai::Array>();
    e.register_iterator::<std::ops::Range<i64>>();
    e.register_iterator::<std::ops::RangeInclusive<i64>>();
    // Pure helpers.
    e.register_fn("len", |s: &str| s.len() as i64);
    e.register_fn("len", |a: &mut rhai::Array| a.len() as i64);
    e.register_fn("len", |m: &mut rhai::Map| m.len() as i64);
    e.register_fn("len", |b: &mut rhai::Blob| b.len() as i64);
    e.register_fn("to_string", |d: Dynamic| d.to_string());
    e.register_fn("push", |a: &mut rhai::Array, v: Dynamic| a.push(v));
    e.register_fn("keys", |m: &mut rhai::Map| -> rhai::Array {
        m.keys().map(|k| Dynamic::from(k.to_string())).collect()
    });
    e.register_fn("contains", |m: &mut rhai::Map, k: &str| m.contains_key(k));
    e.register_fn("starts_with", |s: &str, p: &str| s.starts_with(p));
}
