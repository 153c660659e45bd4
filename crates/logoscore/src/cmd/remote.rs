//! `logoscore remote grant MODULE [--out FILE] [--expires WHEN] [--allow M]… [--address
//! HOST:PORT]…`, `remote list`, `remote revoke MODULE`: credentials of remote modules
//! (docs/remote-modules.md).
//!
//! They ask the running core (`core.remoteGrant`, `core.remoteList`, `core.remoteRevoke`,
//! operators only), because only it knows the address it is bound to and the pin of its
//! certificate, and a revocation must close a live link at once. `grant` writes the
//! credential file 0600 (never over an existing file) and prints where, never the secret.
//! Never reads or writes the core's credential store itself.

use crate::Ctx;
use crate::client::Client;
use crate::error::Error;
use crate::output;
use clap::Subcommand;
use logos_wire::{ErrorCode, Value};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub(crate) enum RemoteCommand {
    /// Issue the credential module MODULE joins this core with from another machine: a 0600
    /// file holding the core's address, the pin of its certificate and a secret bound to
    /// MODULE. A new grant replaces (revokes) the module's previous credential.
    Grant {
        /// The module.
        module: String,
        /// Where to write the credential file [default: ./MODULE.credential.json].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// When it stops working: `30d`, `12h`, `2026-12-31`, `2026-12-31T23:59:59Z`.
        /// [default: never]
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
        /// A module the remote module may call (repeatable). Its metadata may name only
        /// these in its dependencies and permissions: a remote module's metadata is its own
        /// word, so the operator decides here. `core` lets it change what runs.
        #[arg(long, value_name = "MODULE")]
        allow: Vec<String>,
        /// Where the remote machine reaches this core, host:port (repeatable) [default: the
        /// listen address, unless it is a wildcard such as 0.0.0.0].
        #[arg(long, value_name = "HOST:PORT")]
        address: Vec<String>,
    },
    /// List remote credentials: module, state of its link, peer, issued, expires, allowed
    /// calls; revoked ones last.
    List,
    /// Revoke MODULE's credential: the core refuses it from now on and closes the module's
    /// live link at once.
    Revoke {
        /// The module.
        module: String,
    },
}

pub(crate) async fn run(ctx: &Ctx, cmd: RemoteCommand) -> Result<(), Error> {
    let client = Client::connect(ctx).await?;
    match cmd {
        RemoteCommand::Grant {
            module,
            out,
            expires,
            allow,
            address,
        } => grant(ctx, &client, module, out, expires, allow, address).await,
        RemoteCommand::List => list(ctx, &client).await,
        RemoteCommand::Revoke { module } => revoke(ctx, &client, &module).await,
    }
}

fn texts(items: &[String]) -> Value {
    Value::List(items.iter().map(|s| Value::from(s.as_str())).collect())
}

async fn grant(
    ctx: &Ctx,
    client: &Client,
    module: String,
    out: Option<PathBuf>,
    expires: Option<String>,
    allow: Vec<String>,
    address: Vec<String>,
) -> Result<(), Error> {
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{module}.credential.json")));
    if out.exists() {
        return Err(Error::Usage(format!(
            "{} exists; remove it or choose another --out (a credential file is never overwritten)",
            out.display()
        )));
    }
    let answer = client
        .core(
            "remoteGrant",
            vec![
                Value::from(module.as_str()),
                expires.as_deref().map_or(Value::Null, Value::from),
                texts(&allow),
                texts(&address),
            ],
        )
        .await?;
    let Some(document) = answer.get("document").and_then(Value::as_str) else {
        return Err(Error::Remote {
            code: ErrorCode::ProtocolError,
            message: "core.remoteGrant answered no credential document".to_owned(),
        });
    };
    write_private(&out, document)?;
    let expires_at = answer.get("expiresAt").and_then(Value::as_str);
    if ctx.json {
        output::json(
            &serde_json::json!({
                "status": "ok",
                "module": module,
                "file": out,
                "expires_at": expires_at,
                "allow": allow,
            }),
            false,
        )?;
    } else {
        output::line(&format!(
            "issued a credential for remote module {module:?}\n  file: {} (0600; it holds the secret: hand it over privately, then delete this copy)\n  expires: {}\n  run it there: logos_host --remote {} path/to/lib{module}.so   (or LOGOS_REMOTE={} ./{module})",
            out.display(),
            expires_at.unwrap_or("never"),
            out.display(),
            out.display()
        ))?;
    }
    Ok(())
}

/// Writes `text` to `path`, created 0600 in one step (an existing file is an error).
fn write_private(path: &std::path::Path, text: &str) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| {
            let _ = std::fs::remove_file(path);
            Error::io(format!("cannot write {}", path.display()), e)
        })
}

async fn list(ctx: &Ctx, client: &Client) -> Result<(), Error> {
    let items = match client.core("remoteList", vec![]).await? {
        Value::List(items) => items,
        _ => Vec::new(),
    };
    if ctx.json {
        let docs: Vec<serde_json::Value> = items.iter().map(Value::to_json).collect();
        output::json(&serde_json::Value::Array(docs), false)?;
        return Ok(());
    }
    if items.is_empty() {
        output::line("no remote credentials (issue one with `logoscore remote grant MODULE`)")?;
        return Ok(());
    }
    let allow = |v: &Value| match v.get("allow") {
        Some(Value::List(l)) if !l.is_empty() => l
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".to_owned(),
    };
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|c| {
            vec![
                output::field(c, "module"),
                output::field(c, "state"),
                output::field(c, "peer"),
                output::field(c, "issuedAt"),
                c.get("expiresAt")
                    .and_then(Value::as_str)
                    .unwrap_or("never")
                    .to_owned(),
                allow(c),
            ]
        })
        .collect();
    output::line(&output::table(
        &["MODULE", "STATE", "PEER", "ISSUED", "EXPIRES", "ALLOW"],
        &rows,
    ))?;
    Ok(())
}

async fn revoke(ctx: &Ctx, client: &Client, module: &str) -> Result<(), Error> {
    let revoked = client
        .core("remoteRevoke", vec![Value::from(module)])
        .await?;
    if revoked != Value::Bool(true) {
        return Err(Error::Token {
            code: "TOKEN_NOT_FOUND",
            message: format!(
                "module {module:?} has no live remote credential (`logoscore remote list` lists them)"
            ),
        });
    }
    if ctx.json {
        output::json(
            &serde_json::json!({ "status": "ok", "module": module }),
            false,
        )?;
    } else {
        output::line(&format!(
            "revoked the credential of remote module {module:?}; its link, if any, is closed"
        ))?;
    }
    Ok(())
}
