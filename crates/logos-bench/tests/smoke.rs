//! CI's proof that the benchmark still works: `logos-bench --quick --json` runs every row at
//! smoke sizes with real processes, and its JSON says each row was measured (or skipped for a
//! stated reason, such as Qt or the C library not being there). No figure is asserted: the
//! sizes are too small to mean anything, and CI machines are too noisy.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn quick_json_run_measures_every_row() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_logos-bench"))
        .args(["--quick", "--json"])
        .output()
        .expect("run logos-bench");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "logos-bench --quick failed ({}):\n{stderr}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("--json prints one JSON document");
    assert_eq!(report["quick"], true);
    assert!(report["machine"]["cpus"].as_u64().unwrap_or(0) >= 1);
    let rows = report["rows"].as_array().expect("rows");
    let ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    for id in [
        "rtt",
        "qt",
        "rtt_1024",
        "rtt_65536",
        "pipelined",
        "fanout_1",
        "fanout_8",
        "fanout_32",
        "stream",
        "start",
        "start_host",
        "load_chain",
        "load_fan",
        "rss",
        "restart",
        "rust_api",
        "capi",
        "contexts",
        "contexts_module",
    ] {
        assert!(ids.contains(&id), "row {id} missing from {ids:?}");
    }
    for row in rows {
        let status = row["status"].as_str().unwrap_or_default();
        assert_ne!(status, "error", "row failed: {row}");
        if status == "skipped" {
            assert!(row["note"].is_string(), "a skipped row says why: {row}");
        } else if row["id"] != "qt" && row["id"] != "capi" {
            let value = row["ours"]["value"].as_f64().unwrap_or(0.0);
            assert!(value > 0.0, "row measured nothing: {row}");
        }
    }
    for k in [1, 8, 32] {
        let row = rows
            .iter()
            .find(|r| r["id"] == format!("fanout_{k}"))
            .expect("fan-out row");
        assert_eq!(row["extra"]["order_ok"], true, "order broken: {row}");
    }
    // Generous: the point is that --quick stays a smoke test (well under a minute unloaded).
    assert!(
        took < Duration::from_secs(120),
        "--quick took {took:?}; keep it a smoke test"
    );
}
