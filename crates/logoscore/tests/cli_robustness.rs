//! The operator's commands cannot leave the core in a bad state (issue 10, items 2 and 17): a
//! `load` cut short by `--timeout` still completes in the core, and a second `load` sees it;
//! restart timing the core cannot honour is refused at `run` with the key and the line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use support::{World, alive, target_dir, wait_for};

/// `probe` behind a start gate: a script that starts a helper (`sleep`, pid in
/// `helper.pid`), waits for the file `go`, then execs `logos_host` (both files in probe's
/// data dir, the script's working directory).
fn gated_probe(w: &World) {
    w.stage("probe");
    let dir = w.modules.join("probe");
    let meta = std::fs::read_to_string(dir.join("metadata.json")).expect("metadata");
    let mut json: serde_json::Value = serde_json::from_str(&meta).expect("json");
    let lib = target_dir().join(json["main"].as_str().expect("main"));
    json["main"] = "run.sh".into();
    std::fs::write(dir.join("metadata.json"), json.to_string()).expect("metadata");
    let script = format!(
        "#!/bin/sh\nsleep 3599 >/dev/null 2>&1 &\necho $! > helper.pid\nwhile [ ! -e go ]; do sleep 0.02; done\nexec '{host}' --module '{lib}' --name probe\n",
        host = target_dir().join("logos_host").display(),
        lib = lib.display(),
    );
    std::fs::write(dir.join("run.sh"), script).expect("script");
    std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
}

fn helper_pid(data: &Path) -> Option<u32> {
    std::fs::read_to_string(data.join("helper.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `(state, pid)` of `name` from `list --json`.
fn listed(w: &World, name: &str) -> (String, Option<u64>) {
    let list = w.cli_json(&["list"]);
    let m = list
        .as_array()
        .and_then(|l| l.iter().find(|m| m["name"] == name))
        .cloned()
        .unwrap_or_default();
    (
        m["state"].as_str().unwrap_or_default().to_owned(),
        m["pid"].as_u64(),
    )
}

#[test]
fn issue_10_a_load_cut_short_by_timeout_still_completes() {
    let w = World::new();
    gated_probe(&w);
    // The module waits for the test's go: give it all the time it needs to start.
    let config = w.write("logoscore.toml", "start_timeout = \"120s\"\n");
    let _d = w.daemon(&["-c", &config.display().to_string()]);
    let data = w.data.join("probe");

    let out = w.cli(&["--timeout", "1s", "load", "probe"]);
    assert_ne!(out.code, Some(0), "the load cannot finish before go");
    assert_eq!(listed(&w, "probe").0, "starting");
    wait_for("the helper", Duration::from_secs(60), || {
        helper_pid(&data).is_some()
    });
    let helper = helper_pid(&data).expect("helper");
    std::fs::write(data.join("go"), "").expect("go");

    wait_for(
        "the abandoned load to finish",
        Duration::from_secs(60),
        || listed(&w, "probe").0 == "ready",
    );
    let (_, pid) = listed(&w, "probe");
    let out = w.cli(&["load", "probe"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "probe was already loaded");
    assert_eq!(listed(&w, "probe").1, pid, "no second instance");
    assert!(alive(helper));

    w.cli(&["unload", "probe"]).ok();
    wait_for("the helper to die", Duration::from_secs(30), || {
        !alive(helper)
    });
    w.cli(&["stop"]).ok();
}

#[test]
fn issue_10_restart_timing_out_of_bounds_is_refused_at_run() {
    let w = World::new();
    let config = w.write(
        "logoscore.toml",
        "load = []\n\n[restart]\nmax = \"5000000000000h\"\n",
    );
    let out = w.cli(&["run", "-c", &config.display().to_string()]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains(&format!("{}:4:7: `restart.max`:", config.display())),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("longer than the largest accepted"),
        "{}",
        out.stderr
    );
}
