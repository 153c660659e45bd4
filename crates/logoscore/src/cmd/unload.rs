//! `logoscore unload NAME [--cascade]` (and the reference's `unload-module NAME
//! [--no-dependents]`, which cascades unless told not to): unloads a module through
//! `core.unloadPlugin` and reports which modules stopped.
//!
//! Adds the CLI spelling of the fix when the core refuses because dependents are loaded;
//! otherwise passes the core's message through unchanged. `--json`: `{"status": "ok",
//! "unloaded", "stopped", "module", "dependents_unloaded"}`.

use crate::Ctx;
use crate::client::{CORE, Client, LIFECYCLE_TIMEOUT};
use crate::cmd::{changed, states};
use crate::error::Error;
use crate::output;
use logos_wire::{ErrorCode, Value};

pub(crate) async fn run(ctx: &Ctx, name: String, cascade: bool) -> Result<(), Error> {
    let client = Client::connect(ctx).await?;
    let before = states(&client).await?;
    client
        .call_mapped(
            CORE,
            "unloadPlugin",
            vec![Value::from(name.as_str()), Value::Bool(cascade)],
            LIFECYCLE_TIMEOUT,
            |f| {
                let mut message = f.message;
                if f.code == ErrorCode::MethodFailed && !cascade && message.contains("cascade") {
                    message.push_str(&format!(
                        " (`logoscore unload {name} --cascade`, or `logoscore unload-module {name}`)"
                    ));
                }
                Error::Remote {
                    code: f.code,
                    message: crate::error::tidy(message),
                }
            },
        )
        .await?;
    let after = states(&client).await?;
    let was_loaded = |n: &String| {
        before.get(n).is_some_and(|r| {
            matches!(
                r.state.as_str(),
                "starting" | "ready" | "crashed" | "backoff"
            )
        })
    };
    let stopped: Vec<String> = changed(&before, &after, |s| !matches!(s, "ready" | "starting"))
        .into_iter()
        .filter(was_loaded)
        .collect();
    if ctx.json {
        let dependents: Vec<&String> = stopped.iter().filter(|s| **s != name).collect();
        output::json(
            &serde_json::json!({
                "status": "ok",
                "unloaded": name,
                "stopped": stopped,
                "module": name,
                "dependents_unloaded": dependents,
            }),
            false,
        )?;
    } else if stopped.len() > 1 {
        output::line(&format!("unloaded {name} (stopped {})", stopped.join(", ")))?;
    } else {
        output::line(&format!("unloaded {name}"))?;
    }
    Ok(())
}
