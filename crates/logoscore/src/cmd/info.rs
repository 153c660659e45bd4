//! `logoscore info NAME`: one module in full, from `core.moduleInfo`: state and process,
//! metadata, dependencies and dependents, and (while it is loaded) the methods with their
//! signatures and the events it emits.
//!
//! `--json` prints the core's map with the reference's keys added (`status`, `uptime_seconds`,
//! `methods[].parameters`/`returnType`, `events`; `module-info` is the reference's name).
//! Never calls the module itself.

use crate::Ctx;
use crate::client::Client;
use crate::error::Error;
use crate::output;
use logos_wire::Value;
use std::fmt::Write as _;

pub(crate) async fn run(ctx: &Ctx, name: String) -> Result<(), Error> {
    let client = Client::connect(ctx).await?;
    let info = client
        .core("moduleInfo", vec![Value::from(name.as_str())])
        .await?;
    if ctx.json {
        output::json(&crate::reference::module_info(&info), false)?;
    } else {
        output::line(render(&name, &info).trim_end())?;
    }
    Ok(())
}

/// The text page of `info`.
fn render(name: &str, info: &Value) -> String {
    let mut s = String::new();
    let meta = info.get("metadata");
    let meta_text = |key: &str| {
        meta.and_then(|m| m.get(key))
            .filter(|v| !v.is_null())
            .map(output::value_text)
    };
    let state = output::field(info, "state");
    let mut process = Vec::new();
    if let Some(pid) = info.get("pid").and_then(Value::as_u64) {
        process.push(format!("pid {pid}"));
    }
    if info.get("uptimeMs").and_then(Value::as_u64).is_some() {
        process.push(format!("up {}", output::millis_field(info, "uptimeMs")));
    }
    process.push(format!("{} restarts", output::field(info, "restarts")));
    let _ = writeln!(
        s,
        "{name} {} — {state} ({})",
        output::field(info, "version"),
        process.join(", ")
    );
    if let Some(reason) = info.get("unhealthy").and_then(Value::as_str) {
        let _ = writeln!(s, "  unhealthy: {reason}");
    }
    for key in ["description", "author", "type", "restart"] {
        if let Some(v) = meta_text(key) {
            let _ = writeln!(s, "  {key}: {v}");
        }
    }
    let list = |key: &str| -> String {
        let items: Vec<String> = info
            .get(key)
            .and_then(Value::as_list)
            .unwrap_or_default()
            .iter()
            .map(output::value_text)
            .collect();
        if items.is_empty() {
            "(none)".to_owned()
        } else {
            items.join(", ")
        }
    };
    let _ = writeln!(s, "  dependencies: {}", list("dependencies"));
    let _ = writeln!(s, "  dependents: {}", list("dependents"));
    if let Some(c) = info.get("confinement").and_then(Value::as_str) {
        let _ = writeln!(s, "  confinement: {c}");
    }
    if let Some(n) = info.get("network").and_then(Value::as_bool) {
        let _ = writeln!(
            s,
            "  network: {}",
            if n {
                "on (declared and granted)"
            } else {
                "off"
            }
        );
    }
    if info.get("protected").and_then(Value::as_bool) == Some(true) {
        let _ = writeln!(s, "  protected: yes (writers: {})", list("writers"));
    }
    if let Some(sc) = info.get("seccomp").and_then(Value::as_str) {
        let _ = writeln!(s, "  seccomp: {sc}");
    }
    for kind in ["read", "write"] {
        let paths: Vec<String> = info
            .get("filesystem")
            .and_then(|f| f.get(kind))
            .and_then(Value::as_list)
            .unwrap_or_default()
            .iter()
            .map(output::value_text)
            .collect();
        if !paths.is_empty() {
            let _ = writeln!(s, "  filesystem {kind}: {}", paths.join(", "));
        }
    }
    if let Some(p) = meta
        .and_then(|m| m.get("permissions"))
        .and_then(Value::as_list)
        && !p.is_empty()
    {
        let p: Vec<String> = p.iter().map(output::value_text).collect();
        let _ = writeln!(s, "  permissions: {}", p.join(", "));
    }
    match info.get("interface").filter(|i| !i.is_null()) {
        Some(iface) => {
            for (key, title) in [("methods", "methods"), ("events", "events")] {
                let entries = iface.get(key).and_then(Value::as_list).unwrap_or_default();
                if entries.is_empty() {
                    let _ = writeln!(s, "{title}: (none)");
                    continue;
                }
                let _ = writeln!(s, "{title}:");
                for e in entries {
                    let _ = writeln!(s, "  {}", output::signature(e));
                }
            }
        }
        None => {
            let _ = writeln!(
                s,
                "methods and events: known once it is loaded (`logoscore load {name}`)"
            );
        }
    }
    if let Some(exit) = info.get("lastExit").filter(|e| !e.is_null()) {
        let _ = writeln!(
            s,
            "last exit: {} after {}",
            output::field(exit, "status"),
            output::millis_field(exit, "uptimeMs")
        );
        for l in exit
            .get("stderr")
            .and_then(Value::as_list)
            .unwrap_or_default()
        {
            let _ = writeln!(s, "  | {}", output::value_text(l));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_loaded_module() {
        let info = Value::from_json(serde_json::json!({
            "name": "greeter", "version": "0.1.0", "state": "ready", "pid": 42,
            "uptimeMs": 65_000, "restarts": 0, "lastExit": null,
            "metadata": {"description": "says hello", "author": "logos"},
            "dependencies": ["calc ^0.1"], "dependents": [],
            "interface": {
                "methods": [{"name": "greet", "params": [{"name": "who", "type": "text"}], "returns": "text"}],
                "events": [{"name": "greeted", "params": [{"name": "who", "type": "text"}]}]
            }
        }));
        let text = render("greeter", &info);
        assert!(
            text.starts_with("greeter 0.1.0 — ready (pid 42, up 1m05s, 0 restarts)"),
            "{text}"
        );
        assert!(text.contains("  description: says hello"), "{text}");
        assert!(text.contains("  dependencies: calc ^0.1"), "{text}");
        assert!(text.contains("  dependents: (none)"), "{text}");
        assert!(
            text.contains("methods:\n  greet(who: text) -> text"),
            "{text}"
        );
        assert!(text.contains("events:\n  greeted(who: text)"), "{text}");
    }

    #[test]
    fn renders_a_module_that_is_not_loaded() {
        let info = Value::from_json(serde_json::json!({
            "name": "kv", "version": "1.0.0", "state": "known", "pid": null, "uptimeMs": null,
            "restarts": 0, "lastExit": {"status": "exit code 1", "uptimeMs": 20, "stderr": ["boom"]}
        }));
        let text = render("kv", &info);
        assert!(text.contains("kv 1.0.0 — known (0 restarts)"), "{text}");
        assert!(text.contains("`logoscore load kv`"), "{text}");
        assert!(
            text.contains("last exit: exit code 1 after 20ms\n  | boom"),
            "{text}"
        );
    }
}
