//! `logoscore reload NAME`: stops and starts a module again through `core.reloadPlugin` (a
//! manual restart: it re-reads the metadata and clears a `failed` state) and shows the new
//! process.

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
    let old = before.get(&name).and_then(|(_, pid)| *pid);
    let new = after.get(&name).and_then(|(_, pid)| *pid);
    let state = after.get(&name).map_or("ready", |(s, _)| s.as_str());
    if ctx.json {
        output::json(
            &serde_json::json!({ "reloaded": name, "state": state, "oldPid": old, "pid": new }),
            true,
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
