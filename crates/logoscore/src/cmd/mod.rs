//! One file per subcommand. Each exposes `run(...)` returning `Result<(), Error>`; client
//! commands are async and run on a single-threaded runtime ([`block_on`]), `run` builds its own
//! multi-threaded one. Shared helpers for module listings live here so `list`, `stats` and
//! `load` read the core's answers the same way.

pub(crate) mod bindings;
pub(crate) mod call;
pub(crate) mod check;
pub(crate) mod completions;
pub(crate) mod contexts;
pub(crate) mod dev;
pub(crate) mod info;
pub(crate) mod install;
pub(crate) mod key;
pub(crate) mod list;
pub(crate) mod load;
pub(crate) mod man;
pub(crate) mod new;
pub(crate) mod p2p;
pub(crate) mod pack;
pub(crate) mod publish;
pub(crate) mod registry;
pub(crate) mod reload;
pub(crate) mod remote;
pub(crate) mod review;
pub(crate) mod run;
pub(crate) mod search;
pub(crate) mod stats;
pub(crate) mod status;
pub(crate) mod stop;
pub(crate) mod tokens;
pub(crate) mod trace;
pub(crate) mod unload;
pub(crate) mod watch;

use crate::client::Client;
use crate::error::Error;
use logos_wire::Value;
use std::collections::BTreeMap;
use std::future::Future;

/// Runs a client command to completion on a single-threaded runtime.
pub(crate) fn block_on(f: impl Future<Output = Result<(), Error>>) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    rt.block_on(f)
}

/// `core.listModules`: one map per known module (`name`, `version`, `state`, `pid`,
/// `uptimeMs`, `restarts`, `lastExit`).
pub(crate) async fn modules(client: &Client) -> Result<Vec<Value>, Error> {
    match client.core("listModules", vec![]).await? {
        Value::List(items) => Ok(items),
        other => Err(Error::Remote {
            code: logos_wire::ErrorCode::ProtocolError,
            message: format!(
                "core.listModules returned {} instead of a list",
                other.type_name()
            ),
        }),
    }
}

/// What a listing says about one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rec {
    pub state: String,
    pub pid: Option<u64>,
    pub version: String,
}

/// `name → record` of every known module.
pub(crate) type Snapshot = BTreeMap<String, Rec>;

/// A [`Snapshot`] from `core.listModules`.
pub(crate) async fn states(client: &Client) -> Result<Snapshot, Error> {
    Ok(modules(client)
        .await?
        .iter()
        .filter_map(|m| {
            let name = m.get("name")?.as_str()?.to_owned();
            let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
            Some((
                name,
                Rec {
                    state: text("state"),
                    pid: m.get("pid").and_then(Value::as_u64),
                    version: text("version"),
                },
            ))
        })
        .collect())
}

/// Names whose state or process changed between two snapshots, filtered by `keep(new state)`,
/// in the order the core lists them (alphabetical).
pub(crate) fn changed(
    before: &Snapshot,
    after: &Snapshot,
    keep: impl Fn(&str) -> bool,
) -> Vec<String> {
    after
        .iter()
        .filter(|(name, now)| {
            before
                .get(*name)
                .is_none_or(|b| (&b.state, b.pid) != (&now.state, now.pid))
                && keep(&now.state)
        })
        .map(|(name, _)| name.clone())
        .collect()
}
