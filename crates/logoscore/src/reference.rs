//! The reference `logoscore`'s JSON vocabulary, added to our documents so scripts and its
//! Python wrapper written for it read ours unchanged: module statuses (`loaded`, `not_loaded`,
//! `loading`, `crashed`) with `uptime_seconds`, `module-info`'s `methods[].parameters` /
//! `returnType` and `events[].parameters`, `stats` entries with `cpu_percent` / `memory_mb`,
//! and events with `module` / `timestamp` / `data` (`arg0`, `arg1`, …).
//!
//! Owns the mapping from our records (the core's `listModules`, `moduleInfo`, `stats` and
//! interface entries) to those keys; each function returns our document with the reference's
//! keys added, never one without ours. Never talks to the core and never prints.

use crate::output::value_json;
use logos_wire::Value;
use serde_json::{Map, json};

/// The reference's status of a module in our state: `loaded` (ready, and stopping until it
/// has stopped), `loading` (starting), `crashed` (crashed, waiting to restart, or failed for
/// good), `not_loaded` (known, stopped).
pub(crate) fn status(state: &str) -> &'static str {
    match state {
        "ready" | "stopping" => "loaded",
        "starting" => "loading",
        "crashed" | "backoff" | "failed" | "disconnected" => "crashed",
        _ => "not_loaded",
    }
}

/// A `listModules` record as JSON, plus `status` and (while it runs) `uptime_seconds`.
pub(crate) fn module_entry(m: &Value) -> serde_json::Value {
    let mut doc = as_object(value_json(m));
    let state = m.get("state").and_then(Value::as_str).unwrap_or("known");
    doc.insert("status".into(), status(state).into());
    if let Some(ms) = m.get("uptimeMs").and_then(Value::as_u64) {
        doc.insert("uptime_seconds".into(), (ms / 1000).into());
    }
    serde_json::Value::Object(doc)
}

/// A `moduleInfo` map as JSON, plus `status`, `uptime_seconds`, `restart_count`,
/// `last_log_line` (after a crash), and, while it is loaded, `methods` and `events` in the
/// reference's shape.
pub(crate) fn module_info(info: &Value) -> serde_json::Value {
    let mut doc = as_object(module_entry(info));
    if let Some(r) = info.get("restarts").and_then(Value::as_u64) {
        doc.insert("restart_count".into(), r.into());
    }
    if let Some(line) = info
        .get("lastExit")
        .and_then(|e| e.get("stderr"))
        .and_then(Value::as_list)
        .and_then(<[Value]>::last)
        .and_then(Value::as_str)
    {
        doc.insert("last_log_line".into(), line.into());
    }
    if let Some(iface) = info.get("interface").filter(|i| !i.is_null()) {
        for key in ["methods", "events"] {
            let entries: Vec<serde_json::Value> = iface
                .get(key)
                .and_then(Value::as_list)
                .unwrap_or_default()
                .iter()
                .map(signature)
                .collect();
            doc.insert(key.into(), entries.into());
        }
    }
    serde_json::Value::Object(doc)
}

/// An interface entry `{"name", "params": [{"name","type"}], "returns"?}` as
/// `{"name", "parameters": [{"name","type"}], "returnType"?, "description"}`.
fn signature(entry: &Value) -> serde_json::Value {
    let params: Vec<serde_json::Value> = entry
        .get("params")
        .and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            json!({
                "name": p.get("name").and_then(Value::as_str).unwrap_or("_"),
                "type": p.get("type").and_then(Value::as_str).unwrap_or("any"),
            })
        })
        .collect();
    let mut doc = Map::new();
    doc.insert(
        "name".into(),
        entry
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .into(),
    );
    doc.insert("parameters".into(), params.into());
    if let Some(r) = entry.get("returns") {
        // Our "null" return type is the reference's "void".
        let r = match r.as_str() {
            Some("null") | None => "void".to_owned(),
            Some(t) => t.to_owned(),
        };
        doc.insert("returnType".into(), r.into());
    }
    doc.insert(
        "description".into(),
        entry
            .get("doc")
            .or_else(|| entry.get("description"))
            .and_then(Value::as_str)
            .map_or(serde_json::Value::Null, Into::into),
    );
    serde_json::Value::Object(doc)
}

/// A `stats` entry (the core's or a module's) as JSON, plus `cpu_percent` (average over its
/// life: CPU time over uptime) and `memory_mb` (resident set).
pub(crate) fn stats_entry(name: &str, kind: &str, v: &Value) -> serde_json::Value {
    let mut doc = as_object(value_json(v));
    doc.insert("name".into(), name.into());
    doc.insert("kind".into(), kind.into());
    let cpu = v.get("cpuMs").and_then(Value::as_u64);
    let up = v.get("uptimeMs").and_then(Value::as_u64).filter(|u| *u > 0);
    let percent = match (cpu, up) {
        (Some(c), Some(u)) => json!(((c as f64 / u as f64) * 1000.0).round() / 10.0),
        _ => serde_json::Value::Null,
    };
    doc.insert("cpu_percent".into(), percent);
    let mb = v
        .get("rssBytes")
        .and_then(Value::as_u64)
        .map_or(serde_json::Value::Null, |b| {
            json!(((b as f64 / (1024.0 * 1024.0)) * 10.0).round() / 10.0)
        });
    doc.insert("memory_mb".into(), mb);
    serde_json::Value::Object(doc)
}

/// An event's `data` as the reference's map: `{"arg0": …, "arg1": …}` (what its client
/// emits and its wrapper reads; the values in order are also in our `args`).
pub(crate) fn event_data(data: &[Value]) -> serde_json::Value {
    serde_json::Value::Object(
        data.iter()
            .enumerate()
            .map(|(i, v)| (format!("arg{i}"), value_json(v)))
            .collect(),
    )
}

fn as_object(v: serde_json::Value) -> Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("value".into(), other);
            m
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(j: serde_json::Value) -> Value {
        Value::from_json(j)
    }

    #[test]
    fn statuses_cover_every_state() {
        for (state, want) in [
            ("known", "not_loaded"),
            ("stopped", "not_loaded"),
            ("starting", "loading"),
            ("ready", "loaded"),
            ("stopping", "loaded"),
            ("crashed", "crashed"),
            ("backoff", "crashed"),
            ("failed", "crashed"),
        ] {
            assert_eq!(status(state), want, "{state}");
        }
    }

    #[test]
    fn list_entries_keep_ours_and_add_the_references() {
        let e = module_entry(&v(json!({
            "name": "calc", "version": "0.1.0", "state": "ready", "pid": 7, "uptimeMs": 65_400
        })));
        assert_eq!(e["status"], "loaded");
        assert_eq!(e["uptime_seconds"], 65);
        assert_eq!(e["state"], "ready");
        assert_eq!(e["pid"], 7);
        let e = module_entry(&v(
            json!({"name": "kv", "state": "known", "uptimeMs": null}),
        ));
        assert_eq!(e["status"], "not_loaded");
        assert!(e.get("uptime_seconds").is_none());
    }

    #[test]
    fn module_info_has_methods_with_parameters_and_return_types() {
        let info = module_info(&v(json!({
            "name": "calc", "state": "ready", "restarts": 1,
            "lastExit": {"stderr": ["a", "boom"]},
            "interface": {
                "methods": [
                    {"name": "add", "params": [{"name": "a", "type": "int"}, {"name": "b", "type": "int"}], "returns": "int"},
                    {"name": "reset", "params": [], "returns": "null"}
                ],
                "events": [{"name": "tick", "params": [{"name": "n", "type": "int"}]}]
            }
        })));
        assert_eq!(info["methods"][0]["name"], "add");
        assert_eq!(
            info["methods"][0]["parameters"][1],
            json!({"name": "b", "type": "int"})
        );
        assert_eq!(info["methods"][0]["returnType"], "int");
        assert_eq!(info["methods"][1]["returnType"], "void");
        assert!(info["methods"][0]["description"].is_null());
        assert_eq!(info["events"][0]["parameters"][0]["name"], "n");
        assert!(info["events"][0].get("returnType").is_none());
        assert_eq!(info["restart_count"], 1);
        assert_eq!(info["last_log_line"], "boom");
        assert_eq!(
            info["interface"]["methods"][0]["returns"], "int",
            "ours stays"
        );
    }

    #[test]
    fn stats_entries_add_cpu_percent_and_memory_mb() {
        let e = stats_entry(
            "calc",
            "module",
            &v(json!({"pid": 9, "cpuMs": 50, "uptimeMs": 1000, "rssBytes": 3 * 1024 * 1024})),
        );
        assert_eq!(e["cpu_percent"], 5.0);
        assert_eq!(e["memory_mb"], 3.0);
        assert_eq!(e["name"], "calc");
        let e = stats_entry("kv", "module", &v(json!({"state": "known"})));
        assert!(e["cpu_percent"].is_null() && e["memory_mb"].is_null());
    }

    #[test]
    fn event_data_is_keyed_by_position() {
        let data = [Value::from(1), Value::Bytes(vec![1].into())];
        assert_eq!(
            event_data(&data),
            json!({"arg0": 1, "arg1": {"_bytes": "AQ"}})
        );
        assert_eq!(event_data(&[]), json!({}));
    }
}
