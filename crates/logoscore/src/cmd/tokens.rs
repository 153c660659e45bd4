//! `logoscore issue-token --name N [--expires WHEN] [--local-only] [--replace]`, `list-tokens`,
//! `revoke-token N` (reference names): named operator tokens.
//!
//! They work on the token store directly, with or without a running core (as the
//! reference's do): `<config dir>/daemon/tokens.json` with a config dir, else
//! `<runtime dir>/tokens.json`. The store keeps SHA-256 hashes only; `issue-token` prints the
//! secret once and leaves it in `tokens/<name>.json` (0600) beside the store for handing
//! over. A running core reads the store again when it changes and checks it on every
//! request, so an issued token works at once and a revoked one stops at once. Never talks to
//! the core.

use crate::Ctx;
use crate::client::RuntimeDir;
use crate::error::Error;
use crate::output;
use logos_core::operators::{StoreError, TokenInfo, TokenStore, parse_expiry, rfc3339};
use std::path::PathBuf;
use std::time::SystemTime;

/// The token store this command (or `run`) uses.
pub(crate) fn store_path(ctx: &Ctx) -> PathBuf {
    match &ctx.config_dir {
        Some(c) => c.tokens_file(),
        None => RuntimeDir::resolve(ctx.runtime_dir.as_deref())
            .path
            .join("tokens.json"),
    }
}

pub(crate) fn issue(
    ctx: &Ctx,
    name: &str,
    expires: Option<&str>,
    local_only: bool,
    replace: bool,
) -> Result<(), Error> {
    let now = SystemTime::now();
    let expires_at = expires
        .map(|e| parse_expiry(e, now))
        .transpose()
        .map_err(Error::Usage)?;
    let store = TokenStore::new(store_path(ctx));
    let issued = store
        .issue(name, expires_at, local_only, replace)
        .map_err(store_error)?;
    let expires_text = issued.info.expires_at.map(rfc3339);
    if ctx.json {
        output::json(
            &serde_json::json!({
                "status": "ok",
                "name": name,
                "token": issued.token.to_hex(),
                "file": issued.file,
                "local_only": local_only,
                "issued_at": rfc3339(issued.info.issued_at),
                "expires_at": expires_text,
            }),
            false,
        )?;
    } else {
        let mut text = format!(
            "issued token {name:?}\n  file:  {}\n  token: {}",
            issued.file.display(),
            issued.token.to_hex()
        );
        if let Some(e) = &expires_text {
            text.push_str(&format!("\n  expires_at: {e}"));
        }
        if local_only {
            text.push_str("\n  local_only: true");
        }
        text.push_str("\nuse it with LOGOSCORE_TOKEN=<token>, or copy the file into a client's <config dir>/client/ and name it in client/config.json's token_file");
        output::line(&text)?;
    }
    Ok(())
}

pub(crate) fn list(ctx: &Ctx) -> Result<(), Error> {
    let store = TokenStore::new(store_path(ctx));
    let tokens = store.list().map_err(store_error)?;
    if ctx.json {
        let docs: Vec<serde_json::Value> = tokens.iter().map(doc).collect();
        output::json(&serde_json::Value::Array(docs), false)?;
        return Ok(());
    }
    if tokens.is_empty() {
        output::line(&format!(
            "no named tokens in {} (issue one with `logoscore issue-token --name NAME`)",
            store.path().display()
        ))?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                rfc3339(t.issued_at),
                t.expires_at.map_or_else(|| "never".to_owned(), rfc3339),
                if t.local_only { "yes" } else { "no" }.to_owned(),
                if t.raw_file_present {
                    "present"
                } else {
                    "deleted"
                }
                .to_owned(),
            ]
        })
        .collect();
    output::line(&output::table(
        &["NAME", "ISSUED", "EXPIRES", "LOCAL ONLY", "RAW FILE"],
        &rows,
    ))?;
    Ok(())
}

pub(crate) fn revoke(ctx: &Ctx, name: &str) -> Result<(), Error> {
    let store = TokenStore::new(store_path(ctx));
    if !store.revoke(name).map_err(store_error)? {
        return Err(Error::Token {
            code: "TOKEN_NOT_FOUND",
            message: format!(
                "no token named {name:?} in {} (`logoscore list-tokens` lists them)",
                store.path().display()
            ),
        });
    }
    if ctx.json {
        output::json(&serde_json::json!({ "status": "ok", "name": name }), false)?;
    } else {
        output::line(&format!("revoked token {name:?}"))?;
    }
    Ok(())
}

fn doc(t: &TokenInfo) -> serde_json::Value {
    serde_json::json!({
        "name": t.name,
        "issued_at": rfc3339(t.issued_at),
        "expires_at": t.expires_at.map(rfc3339),
        "local_only": t.local_only,
        "raw_file_present": t.raw_file_present,
    })
}

fn store_error(e: StoreError) -> Error {
    match e {
        StoreError::Exists { name } => Error::Token {
            code: "TOKEN_EXISTS",
            message: format!(
                "a token named {name:?} already exists; pass --replace to issue a new one in its place"
            ),
        },
        StoreError::Io { what, source } => Error::Io { what, source },
        other => Error::Usage(other.to_string()),
    }
}
