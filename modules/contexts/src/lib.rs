//! `contexts`: the peer contexts worker module, serving `logos-contexts` to the platform.
//!
//! One executable, two modes chosen at start by `LOGOS_CONTEXTS_MODE` (set in the core's
//! configuration for the module, `[modules.<name>] env = { … }`):
//! - `shared` (default): this process hosts many contexts;
//! - `isolated`: this process hosts exactly one, the first created; the operator gives each
//!   context its own module directory (same executable, another name, e.g.
//!   `contexts-alice`), so the core starts, confines (its own data dir under Landlock) and
//!   supervises one process per context.
//!
//! Other settings: `LOGOS_CONTEXTS_BACKEND` `sqlite` (default) | `fs` | `s3` with
//! `LOGOS_CONTEXTS_S3_ENDPOINT`, `…_S3_BUCKET`, `…_S3_ROOT` (default: the module name),
//! `…_S3_KEY_ID`, `…_S3_SECRET`; `LOGOS_CONTEXTS_INVOKE=1` grants scripts `invoke(module,
//! method, args)` (each call still needs the context policy's `call`);
//! `LOGOS_CONTEXTS_DEADLINE_MS` the evaluation deadline. Everything is kept in the module's
//! data dir (and the bucket, for `s3`).
//!
//! Methods (owner changes carry the owner's signature over `logos_contexts::Statement` for
//! the next revision, which `contextInfo` reports): `mode`, `createContext(ownerPubkey,
//! options)`, `listContexts`, `contextInfo(id)`, `installScript(id, name, source,
//! signature)`, `script(id, name)`, `policy(id)`, `setPolicy(id, policyText, signature)`,
//! `deleteContext(id, signature)`, `auditLog(id, expiresAtMs, signature, after, limit)`,
//! `submit(envelope)`. A script's events go out as `contextEvent(context, event, data)`.
//!
//! Envelopes arrive through [`ModuleCall`], the module-call transport of
//! `logos_contexts::transport` (docs/contexts.md says how a byte-stream transport such as
//! libp2p plugs in beside it). Never evaluates on the async runtime's thread: the worker has its own threads, and storage and
//! signature work runs on the blocking pool.

use logos_contexts::script::ModuleCaller;
use logos_contexts::storage::{Backend, fs::FsBackend, s3, sqlite::SqliteBackend};
use logos_contexts::transport::{Inbox, Transport};
use logos_contexts::{Config, ContextId, Error, PeerId, Worker};
use logos_sdk::{ByteBuf, Context, ErrorCode, Fault, Value, module};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The module.
pub struct Contexts {
    worker: Arc<Worker>,
    calls: ModuleCall,
    mode: &'static str,
}

/// A contexts error as a call failure: the library's code first in the message, the wire
/// code the nearest stable one.
fn fault(e: Error) -> Fault {
    refused(e.code(), &e.to_string())
}

/// A refusal (`code`, `message`) as a call failure.
fn refused(code: &str, message: &str) -> Fault {
    // The call reached the module and the module refused: a method error, never the wire's
    // `unauthorized` (which means the core did not let the caller reach the module).
    let wire = match code {
        "invalid" | "malformed" | "unknown_context" | "unknown_script" | "policy_invalid" => {
            ErrorCode::InvalidArgs
        }
        "busy" | "quota_exceeded" | "capacity" => ErrorCode::Limit,
        _ => ErrorCode::MethodFailed,
    };
    if message.starts_with(code) {
        Fault::new(wire, message)
    } else {
        Fault::new(wire, format!("{code}: {message}"))
    }
}

/// The module-call transport (`logos_contexts::transport`): envelopes arrive as
/// `submit(envelope)` calls and are delivered from the blocking pool, so signature checks
/// never hold up this module's event loop.
#[derive(Default)]
pub struct ModuleCall {
    inbox: OnceLock<Arc<dyn Inbox>>,
}

impl Transport for ModuleCall {
    fn name(&self) -> &'static str {
        "module-call"
    }

    fn start(&self, inbox: Arc<dyn Inbox>) -> Result<(), Error> {
        self.inbox.set(inbox).map_err(|_| Error::Invalid {
            what: "transport",
            value: "module-call".into(),
            why: "is started once, with the worker it delivers to".into(),
        })
    }
}

impl ModuleCall {
    /// Delivers one envelope (from the blocking pool); the transports' common answer value.
    pub async fn receive(&self, envelope: Vec<u8>) -> Value {
        match self.inbox.get() {
            Some(inbox) => logos_contexts::transport::deliver(inbox.clone(), envelope).await,
            None => logos_contexts::transport::reply(&Err(Error::Closed)),
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `invoke` from scripts, through this module's clients.
struct Link {
    ctx: Context,
    rt: tokio::runtime::Handle,
}

impl ModuleCaller for Link {
    fn call(
        &self,
        module: &str,
        method: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Value, String> {
        let client = self.ctx.client(module).with_timeout(timeout);
        let method = method.to_owned();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let _ = tx.send(client.call_raw(&method, args).await);
        });
        match rx.recv_timeout(timeout) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(f)) => Err(f.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }
}

fn backend(ctx: &Context) -> Result<Arc<dyn Backend>, String> {
    let data = ctx.data_dir().join("data");
    match env("LOGOS_CONTEXTS_BACKEND").as_deref().unwrap_or("sqlite") {
        "sqlite" => Ok(Arc::new(SqliteBackend::new())),
        "fs" => Ok(Arc::new(FsBackend::new(&data).map_err(|e| e.to_string())?)),
        "s3" => {
            let need =
                |n: &str| env(n).ok_or_else(|| format!("LOGOS_CONTEXTS_BACKEND=s3 needs {n}"));
            let mut c = s3::S3Config::new(
                &need("LOGOS_CONTEXTS_S3_ENDPOINT")?,
                &need("LOGOS_CONTEXTS_S3_BUCKET")?,
                &env("LOGOS_CONTEXTS_S3_ROOT").unwrap_or_else(|| ctx.name().to_owned()),
            );
            c = c.with_credentials(
                &env("LOGOS_CONTEXTS_S3_KEY_ID").unwrap_or_default(),
                &env("LOGOS_CONTEXTS_S3_SECRET").unwrap_or_default(),
            );
            Ok(Arc::new(s3::S3Backend::new(&c).map_err(|e| e.to_string())?))
        }
        other => Err(format!(
            "LOGOS_CONTEXTS_BACKEND={other:?}: the backends are sqlite (default), fs and s3"
        )),
    }
}

fn context_id(text: &str) -> Result<ContextId, Fault> {
    ContextId::parse(text).map_err(fault)
}

impl Contexts {
    /// Runs `f` on the blocking pool (storage, SQLite, signatures).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Worker) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Fault> {
        let w = self.worker.clone();
        tokio::task::spawn_blocking(move || f(&w))
            .await
            .map_err(|e| Fault::new(ErrorCode::MethodFailed, format!("worker task failed: {e}")))?
            .map_err(fault)
    }
}

#[module]
impl Contexts {
    #[init]
    fn new(ctx: &Context) -> Result<Self, String> {
        let mode = match env("LOGOS_CONTEXTS_MODE").as_deref().unwrap_or("shared") {
            "shared" => "shared",
            "isolated" => "isolated",
            other => {
                return Err(format!(
                    "LOGOS_CONTEXTS_MODE={other:?}: the modes are shared (default) and isolated"
                ));
            }
        };
        let mut config = Config::new();
        if mode == "isolated" {
            config.max_contexts = 1;
        }
        if env("LOGOS_CONTEXTS_INVOKE").as_deref() == Some("1") {
            config.profile.call = true;
        }
        if let Some(ms) = env("LOGOS_CONTEXTS_DEADLINE_MS") {
            let ms: u64 = ms
                .parse()
                .map_err(|_| format!("LOGOS_CONTEXTS_DEADLINE_MS={ms:?} is not a number of ms"))?;
            config.limits.deadline = Duration::from_millis(ms.max(1));
        }
        let mut b = Worker::builder(ctx.data_dir())
            .config(config)
            .backend(backend(ctx)?);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            b = b.module_caller(Arc::new(Link {
                ctx: ctx.clone(),
                rt,
            }));
        }
        let worker = b.open().map_err(|e| e.to_string())?;
        tracing::info!(
            mode,
            backend = worker.backend_name(),
            contexts = worker.list().len(),
            "contexts worker ready"
        );
        let worker = Arc::new(worker);
        let calls = ModuleCall::default();
        calls.start(worker.clone()).map_err(|e| e.to_string())?;
        Ok(Contexts {
            worker,
            calls,
            mode,
        })
    }

    /// `shared` or `isolated`.
    pub fn mode(&self) -> String {
        self.mode.to_owned()
    }

    /// Creates the context of `owner_pubkey` (64 hex digits); `options` may set
    /// `{"quotaBytes": n}`. Returns its info.
    pub async fn create_context(
        &self,
        owner_pubkey: &str,
        options: Option<Value>,
    ) -> Result<Value, Fault> {
        let owner = PeerId::parse(owner_pubkey).map_err(fault)?;
        let quota = match options.as_ref().and_then(|o| o.get("quotaBytes")) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                Fault::new(
                    ErrorCode::InvalidArgs,
                    "options.quotaBytes must be a non-negative integer",
                )
            })?),
        };
        self.blocking(move |w| w.create_context(owner, quota).map(|i| i.to_value()))
            .await
    }

    /// Every context's id.
    pub fn list_contexts(&self) -> Vec<String> {
        self.worker.list().iter().map(ToString::to_string).collect()
    }

    /// Quota, usage, revision, policy version, scripts, load of context `id`.
    pub fn context_info(&self, id: &str) -> Result<Value, Fault> {
        let id = context_id(id)?;
        self.worker.info(id).map(|i| i.to_value()).map_err(fault)
    }

    /// Installs script `name`; `signature` by the owner over the next revision's
    /// `InstallScript` statement. Returns the new revision.
    pub async fn install_script(
        &self,
        id: &str,
        name: &str,
        source: &str,
        signature: ByteBuf,
    ) -> Result<u64, Fault> {
        let id = context_id(id)?;
        let (name, source) = (name.to_owned(), source.to_owned());
        self.blocking(move |w| w.install_script(id, &name, &source, &signature))
            .await
    }

    /// The source of an installed script (scripts are open).
    pub fn script(&self, id: &str, name: &str) -> Result<String, Fault> {
        self.worker.script(context_id(id)?, name).map_err(fault)
    }

    /// `{"version", "text"}` of the policy in force.
    pub fn policy(&self, id: &str) -> Result<Value, Fault> {
        let (version, text) = self.worker.policy(context_id(id)?).map_err(fault)?;
        Ok(Value::Map(
            [
                ("version".to_owned(), Value::UInt(version)),
                ("text".to_owned(), Value::Text(text)),
            ]
            .into(),
        ))
    }

    /// Sets the policy (owner-signed). Returns its version.
    pub async fn set_policy(
        &self,
        id: &str,
        policy_text: &str,
        signature: ByteBuf,
    ) -> Result<u64, Fault> {
        let id = context_id(id)?;
        let policy_text = policy_text.to_owned();
        self.blocking(move |w| w.set_policy(id, &policy_text, &signature))
            .await
    }

    /// Deletes the context and its data (owner-signed).
    pub async fn delete_context(&self, id: &str, signature: ByteBuf) -> Result<(), Fault> {
        let id = context_id(id)?;
        self.blocking(move |w| w.delete_context(id, &signature))
            .await
    }

    /// Audit records after `after` (default 0), at most `limit` (default 100); the owner
    /// signs a `ReadAudit` statement valid until `expires_at_ms`.
    pub async fn audit_log(
        &self,
        id: &str,
        expires_at_ms: u64,
        signature: ByteBuf,
        after: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Vec<Value>, Fault> {
        let id = context_id(id)?;
        self.blocking(move |w| {
            w.audit(
                id,
                expires_at_ms,
                &signature,
                after.unwrap_or(0),
                limit.unwrap_or(100),
            )
            .map(|recs| recs.iter().map(|r| r.to_value()).collect())
        })
        .await
    }

    /// Runs a signed delegation envelope. Returns `{"ok": true, "value", "events",
    /// "policyVersion", "context"}`; the events are also emitted as `contextEvent(context,
    /// event, data)`. A refusal is a call failure whose message starts with its code.
    pub async fn submit(&self, ctx: &Context, envelope: ByteBuf) -> Result<Value, Fault> {
        let answer = self.calls.receive(envelope.into_vec()).await;
        if answer.get("ok") != Some(&Value::Bool(true)) {
            let text = |k: &str| match answer.get(k) {
                Some(Value::Text(t)) => t.clone(),
                _ => String::new(),
            };
            return Err(refused(&text("code"), &text("message")));
        }
        let context = answer.get("context").cloned().unwrap_or(Value::Null);
        if let Some(Value::List(events)) = answer.get("events") {
            for e in events {
                if let Value::List(pair) = e
                    && let [name, data] = pair.as_slice()
                {
                    ctx.emit_raw(
                        "contextEvent",
                        vec![context.clone(), name.clone(), data.clone()],
                    );
                }
            }
        }
        Ok(answer)
    }
}
