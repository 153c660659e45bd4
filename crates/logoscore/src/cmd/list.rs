//! `logoscore list [--loaded]`: every known module with version, state, location (`local` or
//! a remote module's peer address), pid, uptime and crash restarts, from `core.listModules`.
//!
//! `--json` prints the core's records (a list of maps with `name`, `version`, `state`, `pid`,
//! `uptimeMs`, `restarts`, `lastExit`, …) with the reference's `status` and `uptime_seconds`
//! added (`list-modules` is the reference's name). In text mode, modules the core could not
//! register (bad metadata) are mentioned on stderr so a missing module is explained.

use crate::Ctx;
use crate::client::Client;
use crate::cmd::modules;
use crate::error::Error;
use crate::output;
use logos_wire::Value;

pub(crate) async fn run(ctx: &Ctx, loaded_only: bool) -> Result<(), Error> {
    let client = Client::connect(ctx).await?;
    let mut list = modules(&client).await?;
    if loaded_only {
        let loaded: Vec<String> = match client.core("getLoadedPlugins", vec![]).await? {
            Value::List(names) => names
                .iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        list.retain(|m| {
            m.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| loaded.iter().any(|l| l == n))
        });
    }
    if ctx.json {
        let docs: Vec<serde_json::Value> =
            list.iter().map(crate::reference::module_entry).collect();
        output::json(&serde_json::Value::Array(docs), false)?;
        return Ok(());
    }
    if list.is_empty() {
        let text = if loaded_only {
            "no module is loaded (load one with `logoscore load NAME`)"
        } else {
            "no module is known: the core found none in its modules dirs (`logoscore run -m DIR`)"
        };
        output::line(text)?;
    } else {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|m| {
                vec![
                    output::field(m, "name"),
                    output::field(m, "version"),
                    state(m),
                    output::field(m, "location"),
                    output::field(m, "pid"),
                    output::millis_field(m, "uptimeMs"),
                    output::field(m, "restarts"),
                ]
            })
            .collect();
        output::line(&output::table(
            &[
                "NAME", "VERSION", "STATE", "LOCATION", "PID", "UPTIME", "RESTARTS",
            ],
            &rows,
        ))?;
    }
    if let Ok(Value::List(faults)) = client.core("faults", vec![]).await
        && !faults.is_empty()
    {
        eprintln!(
            "note: {} module dir(s) were not registered because of bad metadata:",
            faults.len()
        );
        for f in &faults {
            eprintln!("  {}", output::value_text(f));
        }
    }
    Ok(())
}

/// The state column: `remote, disconnected since …` for a remote module whose link is gone.
fn state(m: &Value) -> String {
    match (
        m.get("state").and_then(Value::as_str),
        m.get("disconnectedSince").and_then(Value::as_str),
    ) {
        (Some("disconnected"), Some(since)) => format!("remote, disconnected since {since}"),
        _ => output::field(m, "state"),
    }
}
