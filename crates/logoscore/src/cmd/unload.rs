//! `logoscore unload NAME [--cascade]`: unloads a module through `core.unloadPlugin` and
//! reports which modules stopped.
//!
//! Adds the CLI spelling of the fix when the core refuses because dependents are loaded;
//! otherwise passes the core's message through unchanged.

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
        .call_fault(
            CORE,
            "unloadPlugin",
            vec![Value::from(name.as_str()), Value::Bool(cascade)],
            LIFECYCLE_TIMEOUT,
        )
        .await
        .map_err(|f| {
            let mut message = f.message;
            if f.code == ErrorCode::MethodFailed && !cascade && message.contains("cascade") {
                message.push_str(&format!(" (`logoscore unload {name} --cascade`)"));
            }
            Error::Remote {
                code: f.code,
                message: crate::error::tidy(message),
            }
        })?;
    let after = states(&client).await?;
    let was_loaded = |n: &String| {
        before.get(n).is_some_and(|(s, _)| {
            matches!(s.as_str(), "starting" | "ready" | "crashed" | "backoff")
        })
    };
    let stopped: Vec<String> = changed(&before, &after, |s| !matches!(s, "ready" | "starting"))
        .into_iter()
        .filter(was_loaded)
        .collect();
    if ctx.json {
        output::json(
            &serde_json::json!({ "unloaded": name, "stopped": stopped }),
            true,
        )?;
    } else if stopped.len() > 1 {
        output::line(&format!("unloaded {name} (stopped {})", stopped.join(", ")))?;
    } else {
        output::line(&format!("unloaded {name}"))?;
    }
    Ok(())
}
