//! `logoscore contexts …`: peer contexts through the running core's `contexts` module
//! (`--module` for another worker, e.g. an isolated `ctx-alice`), signing with a key file.
//!
//! `keygen FILE` writes a new Ed25519 key (mode 0600); every other command that changes or
//! reads a context as its owner, or submits as a caller, signs with `--key FILE`: owner
//! changes are signed for the context's next revision, read from `contextInfo` first;
//! envelopes get a fresh random nonce and `--ttl` of validity. The core is reached like
//! `logoscore call` (client.rs); this file owns only the argument forms, the signing and the
//! printing. Never keeps a key anywhere but the file it is given.

use crate::Ctx;
use crate::client::{CALL_TIMEOUT, Client, with_context};
use crate::cmd::call::parse_arg;
use crate::error::Error;
use crate::output;
use logos_contexts::{
    ContextId, Envelope, Keypair, ScriptRef, SignedEnvelope, Statement, now_ms, sha256,
};
use logos_wire::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `logoscore contexts` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The contexts worker module to talk to.
    #[arg(long, global = true, default_value = "contexts", value_name = "MODULE")]
    module: String,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Write a new Ed25519 key to FILE (0600) and print its public key (peer id).
    Keygen {
        /// Where to write the key; refused if it exists.
        file: PathBuf,
    },
    /// Create the context owned by the key's public key.
    Create {
        /// The owner's key file (only its public key is sent).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Storage quota in bytes [default: the worker's].
        #[arg(long, value_name = "BYTES")]
        quota: Option<u64>,
    },
    /// List the worker's contexts.
    List,
    /// Show one context: quota, usage, revision, policy version, scripts.
    Info {
        /// The context id.
        id: String,
    },
    /// Install (or replace) script NAME from FILE in the key owner's context.
    InstallScript {
        /// The owner's key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Script name (what `import` uses).
        name: String,
        /// The Rhai source file.
        file: PathBuf,
    },
    /// Set the key owner's context policy from a Cedar FILE, or show it with --show.
    Policy {
        /// The owner's key file.
        #[arg(long, value_name = "FILE", required_unless_present = "show")]
        key: Option<PathBuf>,
        /// The Cedar policy file.
        #[arg(required_unless_present = "show")]
        file: Option<PathBuf>,
        /// Print the policy in force of context ID instead.
        #[arg(long, value_name = "ID", conflicts_with_all = ["key", "file"])]
        show: Option<String>,
    },
    /// Sign and submit a delegation envelope to context --to.
    Submit {
        /// The caller's key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The target context id.
        #[arg(long, value_name = "ID")]
        to: String,
        /// Run the installed script of this name (its hash is looked up).
        #[arg(long, value_name = "NAME", group = "script")]
        installed: Option<String>,
        /// Run this file's source inline.
        #[arg(long, value_name = "FILE", group = "script")]
        inline: Option<PathBuf>,
        /// `params` of the script, in `logoscore call` argument notation (e.g. '{"text":"hi"}').
        #[arg(long, value_name = "VALUE")]
        params: Option<String>,
        /// What the script sees as `caller().exposed`, same notation.
        #[arg(long, value_name = "VALUE")]
        expose: Option<String>,
        /// Validity of the envelope, e.g. 60s, 5m.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::config::parse_duration)]
        ttl: Duration,
    },
    /// Print the key owner's context audit log.
    Audit {
        /// The owner's key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Only records after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
}

fn read_key(path: &Path) -> Result<Keypair, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read the key file {}", path.display()), e))?;
    Keypair::from_text(&text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))
}

fn read_text(path: &Path, what: &str) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read the {what} {}", path.display()), e))
}

fn context_id(text: &str) -> Result<ContextId, Error> {
    ContextId::parse(text).map_err(|e| Error::Usage(e.to_string()))
}

struct Conn {
    client: Client,
    module: String,
}

impl Conn {
    async fn call(&self, method: &str, args: Vec<Value>) -> Result<Value, Error> {
        let module = self.module.clone();
        self.client
            .call_mapped(&module, method, args, CALL_TIMEOUT, |f| {
                with_context(f, &module, method)
            })
            .await
    }

    async fn info(&self, id: ContextId) -> Result<Value, Error> {
        self.call("contextInfo", vec![Value::Text(id.to_string())])
            .await
    }

    async fn next_revision(&self, id: ContextId) -> Result<u64, Error> {
        let info = self.info(id).await?;
        Ok(info.get("revision").and_then(Value::as_u64).unwrap_or(0) + 1)
    }
}

fn print(ctx: &Ctx, v: &Value) -> Result<(), Error> {
    if ctx.json {
        output::json(&output::value_json(v), false)?;
    } else {
        output::line(&output::value_text(v))?;
    }
    Ok(())
}

/// Runs `logoscore contexts …`.
pub(crate) async fn run(ctx: &Ctx, args: Args) -> Result<(), Error> {
    if let Sub::Keygen { file } = &args.command {
        return keygen(ctx, file);
    }
    let conn = Conn {
        client: Client::connect(ctx).await?,
        module: args.module,
    };
    match args.command {
        Sub::Keygen { .. } => Ok(()),
        Sub::Create { key, quota } => {
            let k = read_key(&key)?;
            let opts = Value::Map(
                quota
                    .map(|q| ("quotaBytes".to_owned(), Value::UInt(q)))
                    .into_iter()
                    .collect(),
            );
            let v = conn
                .call(
                    "createContext",
                    vec![Value::Text(k.peer().to_string()), opts],
                )
                .await?;
            print(ctx, &v)
        }
        Sub::List => print(ctx, &conn.call("listContexts", vec![]).await?),
        Sub::Info { id } => print(ctx, &conn.info(context_id(&id)?).await?),
        Sub::InstallScript { key, name, file } => {
            let k = read_key(&key)?;
            let id = ContextId::of(k.peer());
            let source = read_text(&file, "script")?;
            let sig = k.sign_statement(&Statement::InstallScript {
                context: id,
                revision: conn.next_revision(id).await?,
                name: &name,
                source_hash: sha256(source.as_bytes()),
            });
            let v = conn
                .call(
                    "installScript",
                    vec![
                        Value::Text(id.to_string()),
                        Value::Text(name.clone()),
                        Value::Text(source.clone()),
                        Value::Bytes(sig.to_vec().into()),
                    ],
                )
                .await?;
            let hash: String = sha256(source.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            print(
                ctx,
                &Value::Map(
                    [
                        ("revision".to_owned(), v),
                        ("name".to_owned(), Value::Text(name)),
                        ("hash".to_owned(), Value::Text(hash)),
                    ]
                    .into(),
                ),
            )
        }
        Sub::Policy { key, file, show } => {
            if let Some(id) = show {
                let v = conn
                    .call("policy", vec![Value::Text(context_id(&id)?.to_string())])
                    .await?;
                return print(ctx, &v);
            }
            let (Some(key), Some(file)) = (key, file) else {
                return Err(Error::Usage(
                    "contexts policy needs --key FILE and a policy FILE, or --show ID".into(),
                ));
            };
            let k = read_key(&key)?;
            let id = ContextId::of(k.peer());
            let text = read_text(&file, "policy")?;
            let sig = k.sign_statement(&Statement::SetPolicy {
                context: id,
                revision: conn.next_revision(id).await?,
                policy_hash: sha256(text.as_bytes()),
            });
            let v = conn
                .call(
                    "setPolicy",
                    vec![
                        Value::Text(id.to_string()),
                        Value::Text(text),
                        Value::Bytes(sig.to_vec().into()),
                    ],
                )
                .await?;
            print(ctx, &Value::Map([("version".to_owned(), v)].into()))
        }
        Sub::Submit {
            key,
            to,
            installed,
            inline,
            params,
            expose,
            ttl,
        } => {
            let k = read_key(&key)?;
            let target = context_id(&to)?;
            let script = match (installed, inline) {
                (Some(name), None) => {
                    let info = conn.info(target).await?;
                    let hash = match info.get("scripts") {
                        Some(Value::List(items)) => items
                            .iter()
                            .find(|s| s.get("name").and_then(Value::as_str) == Some(name.as_str()))
                            .and_then(|s| s.get("hash").and_then(Value::as_str))
                            .map(str::to_owned),
                        _ => None,
                    }
                    .ok_or_else(|| {
                        Error::Usage(format!("context {target} has no script {name:?}"))
                    })?;
                    let mut h = [0u8; 32];
                    for (i, b) in h.iter_mut().enumerate() {
                        *b = u8::from_str_radix(hash.get(2 * i..2 * i + 2).unwrap_or("zz"), 16)
                            .map_err(|_| {
                                Error::Usage(format!(
                                    "the worker reported a malformed hash {hash:?}"
                                ))
                            })?;
                    }
                    ScriptRef::Hash(h)
                }
                (None, Some(file)) => ScriptRef::Inline(read_text(&file, "script")?),
                _ => {
                    return Err(Error::Usage(
                        "contexts submit needs the script: --installed NAME or --inline FILE"
                            .into(),
                    ));
                }
            };
            let value =
                |arg: Option<String>, n: usize| arg.map_or(Ok(Value::Null), |a| parse_arg(n, &a));
            let mut nonce = [0u8; 16];
            nonce.copy_from_slice(
                &Keypair::generate()
                    .map_err(|e| Error::Usage(e.to_string()))?
                    .peer()
                    .as_bytes()[..16],
            );
            let env = SignedEnvelope::sign(
                Envelope {
                    caller: k.peer(),
                    target,
                    nonce: nonce.to_vec(),
                    expires_at_ms: now_ms()
                        .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
                    script,
                    params: value(params, 1)?,
                    expose: value(expose, 2)?,
                    grant: None,
                    parent: None,
                },
                &k,
            );
            let v = conn
                .call("submit", vec![Value::Bytes(env.to_bytes().into())])
                .await?;
            print(ctx, &v)
        }
        Sub::Audit { key, after } => {
            let k = read_key(&key)?;
            let id = ContextId::of(k.peer());
            let exp = now_ms() + 60_000;
            let sig = k.sign_statement(&Statement::ReadAudit {
                context: id,
                expires_at_ms: exp,
            });
            let v = conn
                .call(
                    "auditLog",
                    vec![
                        Value::Text(id.to_string()),
                        Value::UInt(exp),
                        Value::Bytes(sig.to_vec().into()),
                        Value::UInt(after),
                        Value::UInt(1000),
                    ],
                )
                .await?;
            if ctx.json {
                return print(ctx, &v);
            }
            let rows: Vec<Vec<String>> = match &v {
                Value::List(items) => items
                    .iter()
                    .map(|r| {
                        [
                            "seq",
                            "action",
                            "resource",
                            "code",
                            "policyVersion",
                            "reason",
                        ]
                        .iter()
                        .map(|f| output::field(r, f))
                        .collect()
                    })
                    .collect(),
                _ => Vec::new(),
            };
            output::line(
                output::table(
                    &["SEQ", "ACTION", "RESOURCE", "CODE", "POLICY", "REASON"],
                    &rows,
                )
                .trim_end(),
            )?;
            Ok(())
        }
    }
}

fn keygen(ctx: &Ctx, file: &Path) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let k = Keypair::generate().map_err(|e| Error::Usage(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| {
            Error::io(
                format!(
                    "cannot create the key file {} (it must not exist)",
                    file.display()
                ),
                e,
            )
        })?;
    f.write_all(k.to_text().as_bytes())
        .map_err(|e| Error::io(format!("cannot write {}", file.display()), e))?;
    print(ctx, &Value::Text(k.peer().to_string()))
}
