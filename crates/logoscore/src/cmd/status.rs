//! `logoscore status` (a reference name): whether a core runs for this client, and if so its
//! pid, uptime, version, instance id, socket and a summary of its modules.
//!
//! `--json` (the default when stdout is not a terminal): the reference's document,
//! `{"daemon": {"status": "running", "pid", "uptime_seconds", "version", "instance_id",
//! "socket"}, "modules": [<list-modules entries>], "modules_summary": {"loaded", "crashed",
//! "not_loaded", "loading"}}`. When no core runs it exits 1 (not 2: "not running" is the
//! answer, not a failure to get one) with `{"daemon": {"status": "not_running", "reason"}}`
//! beside the usual error object. Never changes anything.

use crate::Ctx;
use crate::client::{Client, Target};
use crate::cmd::modules;
use crate::error::Error;
use crate::{output, reference};
use logos_wire::Value;
use std::time::Duration;

pub(crate) async fn run(ctx: &Ctx) -> Result<(), Error> {
    let connected = match Target::resolve(ctx) {
        Ok(target) => Client::connect_to(&target, ctx.timeout)
            .await
            .map(|c| (c, target)),
        Err(e) => Err(e),
    };
    let (client, target) = match connected {
        Ok(ok) => ok,
        Err(e @ (Error::NoCore { .. } | Error::Unreachable { .. } | Error::Refused { .. })) => {
            let reason = e.to_string();
            let mut done = serde_json::Map::new();
            done.insert(
                "daemon".into(),
                serde_json::json!({ "status": "not_running", "reason": reason }),
            );
            return Err(Error::Partial {
                error: Box::new(Error::NotRunning { reason }),
                done,
            });
        }
        Err(e) => return Err(e),
    };
    let list = modules(&client).await?;
    let core = client.core("stats", vec![]).await.ok();
    let uptime = core
        .as_ref()
        .and_then(|s| s.get("core"))
        .and_then(|c| c.get("uptimeMs"))
        .and_then(Value::as_u64);
    let entries: Vec<serde_json::Value> = list.iter().map(reference::module_entry).collect();
    let count = |status: &str| entries.iter().filter(|e| e["status"] == status).count();
    let summary = serde_json::json!({
        "loaded": count("loaded"),
        "crashed": count("crashed"),
        "not_loaded": count("not_loaded"),
        "loading": count("loading"),
    });
    let daemon = serde_json::json!({
        "status": "running",
        "pid": client.core_pid(),
        "uptime_seconds": uptime.map(|ms| ms / 1000),
        "version": client.core_attr("version"),
        "instance_id": client.core_attr("instance"),
        "socket": target.socket,
        "config_dir": ctx.config_dir.as_ref().map(|c| &c.path),
    });
    if ctx.json {
        output::json(
            &serde_json::json!({
                "daemon": daemon,
                "modules": entries,
                "modules_summary": summary,
            }),
            false,
        )?;
        return Ok(());
    }
    let mut text = format!(
        "core running (pid {}, up {}, version {})\n  socket: {}\n",
        client
            .core_pid()
            .map_or_else(|| "?".to_owned(), |p| p.to_string()),
        uptime.map_or_else(
            || "?".to_owned(),
            |ms| output::duration(Duration::from_millis(ms))
        ),
        client.core_attr("version").unwrap_or("?"),
        target.socket.display(),
    );
    if let Some(id) = client.core_attr("instance") {
        text.push_str(&format!("  instance: {id}\n"));
    }
    text.push_str(&format!(
        "modules: {} loaded, {} crashed, {} not loaded, {} loading",
        summary["loaded"], summary["crashed"], summary["not_loaded"], summary["loading"]
    ));
    for e in &entries {
        text.push_str(&format!(
            "\n  {:<20} {:<10} {}",
            e["name"].as_str().unwrap_or("?"),
            e["status"].as_str().unwrap_or("?"),
            e["version"].as_str().unwrap_or("-"),
        ));
    }
    output::line(&text)?;
    Ok(())
}
