//! What docs/operations.md hands operators is checked by the tools that will read it:
//! `promtool check rules` and `promtool check config` for docs/prometheus/ (Debian's
//! `prometheus` package, installed when missing), `systemd-analyze verify` for the unit in
//! docs/systemd/ (pointed at the `logoscore` under test), and every metric the alerts and the
//! Grafana dashboard (docs/grafana/) use must be one `/metrics` exports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// Metric names `/metrics` has (from the `# TYPE` lines of an empty view), with the
/// histogram's series names.
fn exported() -> BTreeSet<String> {
    let text = logos_observe::metrics::render(std::sync::Arc::new(logos_observe::View::default()))
        .unwrap();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            names.insert(name.to_owned());
            if kind == "histogram" {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
        }
    }
    assert!(names.contains("logos_calls_total"), "{text}");
    names
}

/// Every `logos_…` word in `text`.
fn used(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("logos_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_prometheus_files_pass_promtool() {
    let promtool = logos_testkit::apt::promtool();
    let rules = run_ok(
        Command::new(&promtool)
            .args(["check", "rules"])
            .arg(docs().join("prometheus/alerts.yml")),
    );
    assert!(rules.contains("SUCCESS: 3 rules found"), "{rules}");
    run_ok(
        Command::new(&promtool)
            .args(["check", "config"])
            .arg(docs().join("prometheus/prometheus.yml")),
    );
}

#[test]
fn alerts_and_the_grafana_dashboard_use_only_exported_metrics() {
    let have = exported();
    let alerts = std::fs::read_to_string(docs().join("prometheus/alerts.yml")).unwrap();
    let grafana = std::fs::read_to_string(docs().join("grafana/logoscore.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&grafana).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 8, "{}", panels.len());
    for p in panels {
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("{p}"));
        assert!(
            !targets.is_empty() && targets.iter().all(|t| t["expr"].is_string()),
            "{p}"
        );
    }
    for (file, text) in [("alerts.yml", &alerts), ("logoscore.json", &grafana)] {
        let missing: Vec<String> = used(text).difference(&have).cloned().collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics /metrics does not export: {missing:?}"
        );
    }
    // The families are all there.
    for family in [
        "logos_module_up",
        "logos_module_state",
        "logos_module_restarts_total",
        "logos_module_crashes_total",
        "logos_module_rss_bytes",
        "logos_module_cpu_seconds_total",
        "logos_calls_total",
        "logos_call_duration_seconds",
        "logos_events_total",
        "logos_events_dropped_total",
        "logos_streams_open",
        "logos_stream_bytes_total",
        "logos_policy_denials_total",
        "logos_module_starts_total",
        "logos_heartbeats_total",
    ] {
        assert!(have.contains(family), "{family} missing from {have:?}");
    }
}

#[test]
fn the_systemd_unit_verifies() {
    let analyze = logos_testkit::apt::ensure("/usr/bin/systemd-analyze", "systemd");
    let unit = std::fs::read_to_string(docs().join("systemd/logoscore.service")).unwrap();
    assert!(
        unit.contains("Type=notify") && unit.contains("WatchdogSec="),
        "{unit}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logoscore.service");
    let bin = env!("CARGO_BIN_EXE_logoscore");
    std::fs::write(&path, unit.replace("/usr/local/bin/logoscore", bin)).unwrap();
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    // Only lines about this unit count: verify also reports on the host's own units.
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("logoscore.service"))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify:\n{text}");
}
