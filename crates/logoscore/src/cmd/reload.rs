//! `logoscore reload NAME` (and the reference's `reload-module NAME`): stops and starts a module
//! again through `core.reloadPlugin` (a manual restart: it re-reads the metadata and clears a
//! `failed` state; a module that is not loaded is loaded) and shows the new process.
//!
//! `--json`: `{"reloaded", "state", "oldPid", "pid"}` plus the reference's `action`, `module`,
//! `previous_status`, `status` (`loaded`) and `version`.

use crate::Ctx;
use crate::client::{CORE, Client, LIFECYCLE_TIMEOUT};
use crate::cmd::states;
use crate::error::Error;
use crate::output;
use logos_wire::Value;

pub(crate) async fn run(ctx: &Ctx, name: String) -> Result<(), Error> {
    let client = Client::connect(ctx).await?;
    let before = states(&client).await?;
    client
        .call(
            CORE,
            "reloadPlugin",
            vec![Value::from(name.as_str())],
            LIFECYCLE_TIMEOUT,
        )
        .await?;
    let after = states(&client).await?;
    let old = before.get(&name).and_then(|r| r.pid);
    let new = after.get(&name).and_then(|r| r.pid);
    let state = after.get(&name).map_or("ready", |r| r.state.as_str());
    if ctx.json {
        let previous = before
            .get(&name)
            .map_or("not_loaded", |r| crate::reference::status(&r.state));
        output::json(
            &serde_json::json!({
                "reloaded": name,
                "state": state,
                "oldPid": old,
                "pid": new,
                "action": "reload",
                "module": name,
                "previous_status": previous,
                "status": crate::reference::status(state),
                "version": after.get(&name).map(|r| r.version.as_str()),
            }),
            false,
        )?;
    } else {
        let pids = match (old, new) {
            (Some(o), Some(n)) => format!(" (pid {o} → {n})"),
            (None, Some(n)) => format!(" (pid {n})"),
            _ => String::new(),
        };
        output::line(&format!("reloaded {name}{pids}"))?;
    }
    Ok(())
}
