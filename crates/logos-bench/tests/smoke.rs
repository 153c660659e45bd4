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
        "rtt_blocking",
        "qt",
        "rtt_1024",
        "rtt_65536",
        "pipelined",
        "fanout_1",
        "fanout_8",
        "fanout_32",
        "stream",
        "start",
        "start_bench_binary",
        "start_host",
        "start_host_cold",
        "load_chain",
        "load_fan",
        "rss",
        "rss_host",
        "rss_exe",
        "idle_cpu",
        "restart",
        "hot_swap",
        "rust_api",
        "capi",
        "contexts",
        "contexts_module",
        "p2p_stream",
        "p2p_first_byte",
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
    // The round trip shows what each waiting strategy costs in CPU, not only in time.
    let rtt = rows.iter().find(|r| r["id"] == "rtt").expect("rtt row");
    for key in [
        "ours_cpu_per_call_ns",
        "raw_cpu_per_call_ns",
        "ratio_vs_blocking",
    ] {
        assert!(
            rtt["extra"][key].as_f64().unwrap_or(0.0) > 0.0,
            "rtt lacks {key}: {rtt}"
        );
    }
    // So does the remote round trip: its target is against a TLS ping-pong that polls, and
    // the blocking one is reported beside it.
    let remote = rows
        .iter()
        .find(|r| r["id"] == "remote_rtt")
        .expect("remote_rtt row");
    if remote["status"] != "skipped" {
        for key in ["raw_blocking_median_ns", "ratio_vs_blocking"] {
            assert!(
                remote["extra"][key].as_f64().unwrap_or(0.0) > 0.0,
                "remote_rtt lacks {key}: {remote}"
            );
        }
    }
    // The modules run the `benchmod` program exactly when it is built beside the benchmark
    // (`cargo build --workspace` builds it; `cargo test -p logos-bench` alone may not), and the
    // rss row says which.
    let rss = rows.iter().find(|r| r["id"] == "rss").expect("rss row");
    let beside = std::path::Path::new(env!("CARGO_BIN_EXE_logos-bench")).with_file_name("benchmod");
    assert_eq!(
        rss["extra"]["own_program"].as_bool(),
        Some(beside.is_file()),
        "benchmod beside the benchmark: {}; {rss}",
        beside.is_file()
    );
    // A library module's starts after the first run in the spare host the core keeps.
    let host = rows
        .iter()
        .find(|r| r["id"] == "start_host")
        .expect("start_host row");
    if host["status"] != "skipped" {
        assert!(
            host["extra"]["starts_in_spare"].as_f64().unwrap_or(0.0) >= 1.0,
            "no start ran in a spare: {host}"
        );
    }
    // The start row splits its ratio: the module process started alone reached its hello.
    let start = rows.iter().find(|r| r["id"] == "start").expect("start row");
    for key in ["alone_median_ns", "alone_ratio"] {
        assert!(
            start["extra"][key].as_f64().unwrap_or(0.0) > 0.0,
            "start lacks {key}: {start}"
        );
    }

    // --compare reads that report back and names each row's change.
    let dir = tempfile::tempdir().expect("temp dir");
    let earlier = dir.path().join("earlier.json");
    std::fs::write(&earlier, &out.stdout).expect("write the report");
    let again = Command::new(env!("CARGO_BIN_EXE_logos-bench"))
        .args(["--quick", "--json", "--only", "start", "--compare"])
        .arg(&earlier)
        .output()
        .expect("run logos-bench --compare");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let again: serde_json::Value =
        serde_json::from_slice(&again.stdout).expect("one JSON document");
    let changes = again["compare"]["rows"].as_array().expect("compare rows");
    let start = changes
        .iter()
        .find(|c| c["id"] == "start")
        .expect("start compared");
    assert!(start["change_pct"].is_number(), "{start}");
    assert!(
        changes
            .iter()
            .any(|c| c["id"] == "rtt" && c["verdict"] == "gone"),
        "rows of the earlier run only are listed as gone: {changes:?}"
    );
    let refused = Command::new(env!("CARGO_BIN_EXE_logos-bench"))
        .args(["--quick", "--compare"])
        .arg(dir.path().join("missing.json"))
        .output()
        .expect("run logos-bench");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("missing.json"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Generous: the point is that --quick stays a smoke test (well under a minute unloaded).
    assert!(
        took < Duration::from_secs(120),
        "--quick took {took:?}; keep it a smoke test"
    );
}
