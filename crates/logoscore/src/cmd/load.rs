//! `logoscore load NAME…` (and the reference's `load-module NAME`): loads modules one after
//! another through `core.loadPlugin` (each with its dependencies) and reports which modules
//! this started.
//!
//! Never retries and never rolls back a module it loaded before a later one failed: the core
//! already makes each single load all-or-nothing. The failure says which one failed, and its
//! JSON document lists what was loaded before it (`loaded`, `started`), so a script knows
//! what is running. `--json`: `{"status": "ok", "loaded", "started"}` plus, for one name, the
//! reference's `module`, `version` and `dependencies_loaded`.

use crate::Ctx;
use crate::client::{CORE, Client, LIFECYCLE_TIMEOUT};
use crate::cmd::{changed, states};
use crate::error::Error;
use crate::output;
use logos_wire::Value;

pub(crate) async fn run(ctx: &Ctx, names: Vec<String>) -> Result<(), Error> {
    let client = Client::connect(ctx).await?;
    let mut started_all: Vec<String> = Vec::new();
    let mut entries: Vec<serde_json::Value> = Vec::new();
    let mut before = states(&client).await?;
    for (i, name) in names.iter().enumerate() {
        let loaded = client
            .call(
                CORE,
                "loadPlugin",
                vec![Value::from(name.as_str())],
                LIFECYCLE_TIMEOUT,
            )
            .await;
        if let Err(error) = loaded {
            if i == 0 {
                return Err(error);
            }
            let mut done = serde_json::Map::new();
            done.insert("loaded".into(), names[..i].into());
            done.insert("started".into(), started_all.into());
            done.insert("failed".into(), name.as_str().into());
            return Err(Error::Partial {
                error: Box::new(error),
                done,
            });
        }
        let after = states(&client).await?;
        let started = changed(&before, &after, |s| s == "ready");
        if !ctx.json {
            let text = if started.is_empty() {
                format!("{name} was already loaded")
            } else if started == [name.clone()] {
                format!("loaded {name}")
            } else {
                format!("loaded {name} (started {})", started.join(", "))
            };
            output::line(&text)?;
        }
        entries.push(serde_json::json!({
            "module": name,
            "version": after.get(name).map(|r| r.version.as_str()),
            "dependencies_loaded": started.iter().filter(|s| *s != name).collect::<Vec<_>>(),
        }));
        started_all.extend(started);
        before = after;
    }
    if ctx.json {
        let mut doc = serde_json::json!({
            "status": "ok",
            "loaded": names,
            "started": started_all,
        });
        if let ([entry], Some(map)) = (entries.as_slice(), doc.as_object_mut())
            && let Some(e) = entry.as_object()
        {
            map.extend(e.clone());
        }
        output::json(&doc, false)?;
    }
    Ok(())
}
