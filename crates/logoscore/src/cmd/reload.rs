//! `logoscore reload NAME` (and the reference's `reload-module NAME`): stops and starts a module
//! again through `core.reloadPlugin` (a manual restart: it re-reads the metadata and clears a
//! `failed` state; a module that is not loaded is loaded) and shows the new process.
//!
//! `--hot` swaps instead (`core.reloadPlugin(name, true)`): the new process is ready before the
//! old one stops, and the line shows how long each step took.
//!
//! `--json`: `{"reloaded", "state", "oldPid", "pid"}` plus the reference's `action`, `module`,
//! `previous_status`, `status` (`loaded`) and `version`; with `--hot` also `hot: true`,
//! `startMs` and `retireMs`.

use crate::Ctx;
use crate::client::{CORE, Client, LIFECYCLE_TIMEOUT};
use crate::cmd::states;
use crate::error::Error;
use crate::output;
use logos_wire::Value;

pub(crate) async fn run(ctx: &Ctx, name: String, hot: bool) -> Result<(), Error> {
    let client = Client::connect(ctx).await?;
    let before = states(&client).await?;
    let mut args = vec![Value::from(name.as_str())];
    if hot {
        args.push(Value::Bool(true));
    }
    let answer = client
        .call(CORE, "reloadPlugin", args, LIFECYCLE_TIMEOUT)
        .await?;
    let ms = |key: &str| match answer.get(key) {
        Some(Value::Float(f)) => Some(*f),
        Some(Value::Int(i)) => Some(*i as f64),
        _ => None,
    };
    let (start_ms, retire_ms) = (ms("startMs"), ms("retireMs"));
    let after = states(&client).await?;
    let old = before.get(&name).and_then(|r| r.pid);
    let new = after.get(&name).and_then(|r| r.pid);
    let state = after.get(&name).map_or("ready", |r| r.state.as_str());
    if ctx.json {
        let previous = before
            .get(&name)
            .map_or("not_loaded", |r| crate::reference::status(&r.state));
        let mut out = serde_json::json!({
                "reloaded": name,
                "state": state,
                "oldPid": old,
                "pid": new,
                "action": "reload",
                "module": name,
                "previous_status": previous,
                "status": crate::reference::status(state),
                "version": after.get(&name).map(|r| r.version.as_str()),
        });
        if hot {
            out["hot"] = true.into();
            out["startMs"] = start_ms.into();
            out["retireMs"] = retire_ms.into();
        }
        output::json(&out, false)?;
    } else {
        let pids = match (old, new) {
            (Some(o), Some(n)) => format!(" (pid {o} → {n})"),
            (None, Some(n)) => format!(" (pid {n})"),
            _ => String::new(),
        };
        let how = match (hot, start_ms, retire_ms) {
            (true, Some(s), Some(r)) => {
                format!(
                    ", hot: new process ready in {s:.1} ms while the old one served, old one gone {r:.1} ms later"
                )
            }
            _ => String::new(),
        };
        output::line(&format!("reloaded {name}{pids}{how}"))?;
    }
    Ok(())
}
