//! `logoscore key new|list|trust|untrust|export`: the operator's signing keys and the trust
//! store packages are checked against. Works on files only (`<pkg config>/keys/NAME.key`,
//! 0600; `<pkg config>/trusted/NAME.json`); never talks to a core or a registry.

use crate::error::Error;
use crate::packages::{Pkg, PkgArgs};
use crate::{Ctx, output};
use clap::Subcommand;
use logos_pkg::PublicKey;
use serde_json::json;

/// `key` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Create a signing key (Ed25519) and trust it; prints its public half to share.
    New {
        /// The name packages will show as their signer.
        name: String,
    },
    /// List own keys and trusted keys with fingerprints.
    List,
    /// Trust a key: KEY is 64 hex digits, or a file `key export` wrote.
    Trust {
        /// The signer name it must carry.
        name: String,
        /// The public key (hex) or a JSON file with {"name","key"}.
        key: String,
    },
    /// Stop trusting a key.
    Untrust {
        /// The name.
        name: String,
    },
    /// Print a public key as JSON, to hand to others for `key trust`.
    Export {
        /// One of your keys, or a trusted one.
        name: String,
    },
}

pub(crate) fn run(ctx: &Ctx, pkg: &PkgArgs, cmd: KeyCommand) -> Result<(), Error> {
    let p = Pkg::load(pkg)?;
    let ring = &p.keyring;
    match cmd {
        KeyCommand::New { name } => {
            let k = ring.create(&name)?;
            let pk = k.public();
            if ctx.json {
                output::json(
                    &json!({"status": "ok", "name": pk.name, "key": pk.key, "fingerprint": pk.fingerprint(), "file": ring.dir().join("keys").join(format!("{name}.key"))}),
                    false,
                )?;
            } else {
                output::line(&format!(
                    "created key {name} (fingerprint {}), trusted\npublic key: {}\nothers trust it with: logoscore key trust {name} {}",
                    pk.fingerprint(),
                    pk.key,
                    pk.key
                ))?;
            }
        }
        KeyCommand::List => {
            let own = ring.own();
            let trusted = ring.trusted();
            if ctx.json {
                let t: Vec<_> = trusted
                    .iter()
                    .map(|k| json!({"name": k.name, "key": k.key, "fingerprint": k.fingerprint(), "own": own.contains(&k.name)}))
                    .collect();
                output::json(&json!({"status": "ok", "own": own, "trusted": t}), false)?;
            } else {
                let rows: Vec<Vec<String>> = trusted
                    .iter()
                    .map(|k| {
                        vec![
                            k.name.clone(),
                            k.fingerprint(),
                            if own.contains(&k.name) {
                                "own, trusted"
                            } else {
                                "trusted"
                            }
                            .to_owned(),
                        ]
                    })
                    .chain(
                        own.iter()
                            .filter(|n| !trusted.iter().any(|k| &k.name == *n))
                            .map(|n| vec![n.clone(), "-".into(), "own, not trusted".into()]),
                    )
                    .collect();
                if rows.is_empty() {
                    output::line(
                        "no keys: `logoscore key new NAME` creates one, `logoscore key trust NAME KEY` trusts another's",
                    )?;
                } else {
                    output::line(&output::table(&["NAME", "FINGERPRINT", "STATUS"], &rows))?;
                }
            }
        }
        KeyCommand::Trust { name, key } => {
            let hex_key = if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
                key.to_ascii_lowercase()
            } else {
                let text = std::fs::read_to_string(&key).map_err(|e| {
                    Error::Usage(format!(
                        "{key:?} is neither 64 hex digits nor a readable key file: {e}"
                    ))
                })?;
                let pk: PublicKey = serde_json::from_str(&text).map_err(|e| {
                    Error::Usage(format!("{key}: not a key file from `key export`: {e}"))
                })?;
                if pk.name != name {
                    return Err(Error::Usage(format!(
                        "{key} is the key of {:?}, not {name:?}; trust it under its own name",
                        pk.name
                    )));
                }
                pk.key
            };
            let pk = PublicKey {
                name: name.clone(),
                key: hex_key,
            };
            let replaced = ring.trusted_key(&name).filter(|old| old.key != pk.key);
            ring.trust(&pk)?;
            if ctx.json {
                output::json(
                    &json!({"status": "ok", "name": name, "key": pk.key, "fingerprint": pk.fingerprint(), "replaced": replaced.as_ref().map(PublicKey::fingerprint)}),
                    false,
                )?;
            } else {
                let extra = replaced
                    .map(|o| format!(" (replaced key {})", o.fingerprint()))
                    .unwrap_or_default();
                output::line(&format!(
                    "trusting {name} with key {}{extra}",
                    pk.fingerprint()
                ))?;
            }
        }
        KeyCommand::Untrust { name } => {
            let k = ring.untrust(&name)?;
            if ctx.json {
                output::json(
                    &json!({"status": "ok", "name": name, "fingerprint": k.fingerprint()}),
                    false,
                )?;
            } else {
                output::line(&format!(
                    "no longer trusting {name} (key {})",
                    k.fingerprint()
                ))?;
            }
        }
        KeyCommand::Export { name } => {
            let pk = match ring.load(&name) {
                Ok(k) => k.public(),
                Err(_) => ring
                    .trusted_key(&name)
                    .ok_or_else(|| logos_pkg::Error::Key {
                        name: name.clone(),
                        reason: "is neither one of your keys nor trusted".into(),
                    })?,
            };
            output::json(&json!({"name": pk.name, "key": pk.key}), false)?;
        }
    }
    Ok(())
}
