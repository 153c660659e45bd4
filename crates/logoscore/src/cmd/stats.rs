//! `logoscore stats`: what each module process (and the core itself) costs and how it serves,
//! next to its state: resident memory, CPU time, crash restarts, calls served, errors and call
//! latency percentiles.
//!
//! The figures come from the core's `core.stats`, which joins its registry, `/proc` and each
//! module's own call counters (the reserved `$stats` method; modules that lack it show `-`).
//! Against an older core without `core.stats` it falls back to reading
//! `/proc/<pid>/{stat,status}` of the pids `core.listModules` reports (and the core's pid from
//! the connection's peer credentials), which works because the CLI runs on the core's host as
//! the core's user; call figures are absent then. `--json` prints a list, as the reference
//! does: the core first (`"name": "core", "kind": "core"`), then every module
//! (`"kind": "module"`), each with our figures (`pid`, `rssBytes`, `cpuMs`, `uptimeMs`,
//! `calls`, …), the reference's `cpu_percent` and `memory_mb`, and `source` (`core` or
//! `proc`). Never signals or changes anything.

use crate::Ctx;
use crate::client::Client;
use crate::cmd::modules;
use crate::error::Error;
use crate::output;
use logos_core::{ProcessUsage, process_usage};
use logos_wire::{ErrorCode, Value};
use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) async fn run(ctx: &Ctx) -> Result<(), Error> {
    let client = Client::connect(ctx).await?;
    let (source, core, list) = match client.core("stats", vec![]).await {
        Ok(doc) => {
            let core = doc.get("core").cloned().unwrap_or(Value::Null);
            let list = doc
                .get("modules")
                .and_then(Value::as_list)
                .map(<[Value]>::to_vec)
                .unwrap_or_default();
            ("core", core, list)
        }
        Err(Error::Remote {
            code: ErrorCode::UnknownMethod,
            ..
        }) => {
            let (core, list) = from_proc(&client).await?;
            ("proc", core, list)
        }
        Err(e) => return Err(e),
    };
    if ctx.json {
        let mut docs = vec![crate::reference::stats_entry("core", "core", &core)];
        docs.extend(list.iter().map(|m| {
            let name = m.get("name").and_then(Value::as_str).unwrap_or("?");
            crate::reference::stats_entry(name, "module", m)
        }));
        for d in &mut docs {
            if let Some(map) = d.as_object_mut() {
                map.insert("source".into(), source.into());
            }
        }
        output::json(&serde_json::Value::Array(docs), false)?;
        return Ok(());
    }
    output::line(&text(&core, &list))?;
    Ok(())
}

/// The table and the summary lines.
fn text(core: &Value, list: &[Value]) -> String {
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut core_row = vec![
        "(core)".to_owned(),
        "running".to_owned(),
        output::field(core, "pid"),
        output::millis_field(core, "uptimeMs"),
        "-".to_owned(),
    ];
    core_row.extend(cost_cells(core));
    core_row.extend([
        "-".to_owned(),
        "-".to_owned(),
        "-".to_owned(),
        "-".to_owned(),
    ]);
    table.push(core_row);
    let (mut loaded, mut failed) = (0, 0);
    let mut unhealthy = Vec::new();
    for m in list {
        let state = output::field(m, "state");
        match state.as_str() {
            "starting" | "ready" | "crashed" | "backoff" => loaded += 1,
            "failed" => failed += 1,
            _ => {}
        }
        if let Some(reason) = m.get("unhealthy").and_then(Value::as_str) {
            unhealthy.push(format!(
                "{} reports itself unhealthy: {reason}",
                output::field(m, "name")
            ));
        }
        let mut row = vec![
            output::field(m, "name"),
            state,
            output::field(m, "pid"),
            output::millis_field(m, "uptimeMs"),
            output::field(m, "restarts"),
        ];
        row.extend(cost_cells(m));
        let latency = m.get("latencyUs").cloned().unwrap_or(Value::Null);
        row.extend([
            output::field(m, "calls"),
            output::field(m, "errors"),
            micros(&latency, "p50"),
            micros(&latency, "p99"),
        ]);
        table.push(row);
    }
    let mut out = output::table(
        &[
            "NAME", "STATE", "PID", "UPTIME", "RESTARTS", "RSS", "CPU", "CALLS", "ERRORS", "P50",
            "P99",
        ],
        &table,
    );
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!(
        "{} known, {loaded} loaded, {failed} failed (calls and latency since each process started)",
        list.len()
    ));
    for u in unhealthy {
        out.push('\n');
        out.push_str(&u);
    }
    out
}

/// RSS and CPU time cells of a module or core entry.
fn cost_cells(v: &Value) -> [String; 2] {
    [
        v.get("rssBytes")
            .and_then(Value::as_u64)
            .map_or_else(|| "-".into(), output::size),
        output::millis_field(v, "cpuMs"),
    ]
}

/// A latency in microseconds for people: `850µs`, `12.3ms`, `1.20s`.
fn micros(latency: &Value, key: &str) -> String {
    match latency.get(key).and_then(Value::as_u64) {
        None => "-".to_owned(),
        Some(us) if us < 1_000 => format!("{us}µs"),
        Some(us) if us < 1_000_000 => format!("{:.1}ms", us as f64 / 1e3),
        Some(us) => format!("{:.2}s", us as f64 / 1e6),
    }
}

/// An older core: the listing plus what `/proc` says about each pid, no call figures.
async fn from_proc(client: &Client) -> Result<(Value, Vec<Value>), Error> {
    let list = modules(client)
        .await?
        .into_iter()
        .map(|m| {
            let usage = m
                .get("pid")
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok())
                .and_then(process_usage);
            with_usage(m, usage)
        })
        .collect();
    let core_pid = client.core_pid();
    let mut core = BTreeMap::new();
    core.insert("pid".to_owned(), core_pid.map_or(Value::Null, Value::from));
    let usage = core_pid.and_then(process_usage);
    let core = with_usage(Value::Map(core), usage);
    Ok((core, list))
}

/// `entry` with `rssBytes`, `cpuMs`, `threads` (and `uptimeMs` when missing) from `usage`.
fn with_usage(entry: Value, usage: Option<ProcessUsage>) -> Value {
    let Value::Map(mut map) = entry else {
        return entry;
    };
    if let Some(u) = usage {
        let ms = |d: Duration| Value::from(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        map.insert(
            "rssBytes".to_owned(),
            u.rss_bytes.map_or(Value::Null, Value::from),
        );
        map.insert("cpuMs".to_owned(), ms(u.cpu_time));
        map.insert(
            "threads".to_owned(),
            u.threads.map_or(Value::Null, Value::from),
        );
        if !map.contains_key("uptimeMs")
            && let Some(age) = u.age
        {
            map.insert("uptimeMs".to_owned(), ms(age));
        }
    }
    Value::Map(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, Value)]) -> Value {
        Value::Map(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn the_table_shows_costs_calls_and_latency() {
        let core = map(&[
            ("pid", Value::from(10u32)),
            ("uptimeMs", Value::from(5_000u64)),
            ("rssBytes", Value::from(8u64 << 20)),
            ("cpuMs", Value::from(1_500u64)),
        ]);
        let calc = map(&[
            ("name", Value::from("calc")),
            ("state", Value::from("ready")),
            ("pid", Value::from(11u32)),
            ("uptimeMs", Value::from(4_000u64)),
            ("restarts", Value::from(2u32)),
            ("rssBytes", Value::from(3u64 << 20)),
            ("cpuMs", Value::from(20u64)),
            ("calls", Value::from(42u64)),
            ("errors", Value::from(1u64)),
            ("unhealthy", Value::from("disk full")),
            (
                "latencyUs",
                map(&[
                    ("p50", Value::from(850u64)),
                    ("p99", Value::from(12_300u64)),
                ]),
            ),
        ]);
        let kv = map(&[
            ("name", Value::from("kv")),
            ("state", Value::from("failed")),
            ("restarts", Value::from(5u32)),
            ("calls", Value::Null),
            ("latencyUs", Value::Null),
        ]);
        let out = text(&core, &[calc, kv]);
        assert!(out.contains("P99"), "{out}");
        let calc_line = out.lines().find(|l| l.starts_with("calc")).unwrap_or("");
        for cell in [
            "ready", "11", "4s", "3.0 MiB", "20ms", "42", "850µs", "12.3ms",
        ] {
            assert!(calc_line.contains(cell), "{cell} in {calc_line:?}");
        }
        let kv_line = out.lines().find(|l| l.starts_with("kv")).unwrap_or("");
        assert!(
            kv_line.contains("failed") && kv_line.contains(" - "),
            "{kv_line:?}"
        );
        assert!(out.contains("(core)") && out.contains("8.0 MiB"), "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("2 known, 1 loaded, 1 failed")),
            "{out}"
        );
        assert!(
            out.contains("calc reports itself unhealthy: disk full"),
            "{out}"
        );
    }

    #[test]
    fn proc_usage_fills_an_older_cores_listing() {
        let own = process_usage(std::process::id());
        let doc = with_usage(map(&[("name", Value::from("x"))]), own);
        assert!(
            doc.get("rssBytes")
                .and_then(Value::as_u64)
                .is_some_and(|r| r > 0)
        );
        assert!(doc.get("uptimeMs").is_some());
        let gone = with_usage(map(&[("name", Value::from("x"))]), None);
        assert_eq!(gone.get("rssBytes"), None);
    }
}
