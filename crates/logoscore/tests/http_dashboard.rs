//! The dashboard in a real browser: Debian's Chromium (installed with apt when missing)
//! driven by playwright-core (installed with `npm ci` from `tests/browser/package-lock.json`
//! into `target/npm/`; it downloads no browser) through `tests/browser/dashboard.js`.
//!
//! - `live`: log in (a wrong token first), see calc `ready` in the table and the graph, kill
//!   calc with SIGKILL and watch it go through `crashed`/`backoff`/`starting` back to `ready`
//!   live, find the crash and the log lines, have actions without the CSRF token or without
//!   a login refused (nothing happens), click reload; screenshot
//!   `target/<profile>/dashboard.png`.
//! - `render`: a real core running 100 modules (one `logos-bench` binary serving a hundred
//!   generated module dirs, a dependency tree), the page showing all 100 rows; prints how
//!   long each table update took in the browser (not asserted: speed is benchmarks' job);
//!   screenshot `target/<profile>/dashboard-100.png`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
mod web;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{World, finish};

/// The browser script's whole run (a first Chromium start on a loaded machine is slow).
const SCRIPT: Duration = Duration::from_secs(600);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Runs `dashboard.js MODE BASE TOKEN SHOT EXTRA…` and returns what it printed.
fn drive(mode: &str, base: &str, token: &str, shot: &Path, extra: &[&str]) -> serde_json::Value {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "`node` is not on PATH; install Node.js (e.g. `apt-get install nodejs npm`): the dashboard is tested in Chromium through playwright-core"
    );
    let chromium = logos_testkit::browser::chromium();
    let node_modules = logos_testkit::npm_install(&browser_dir());
    assert!(
        node_modules.join("playwright-core").is_dir(),
        "npm ci in {} did not install playwright-core",
        node_modules.display()
    );
    let _ = std::fs::remove_file(shot);
    let mut cmd = Command::new("node");
    cmd.arg(browser_dir().join("dashboard.js"))
        .args([mode, base, token])
        .arg(shot)
        .args(extra)
        .env("NODE_PATH", &node_modules)
        .env("CHROMIUM", &chromium)
        .stdin(std::process::Stdio::null());
    let out = finish(cmd, SCRIPT);
    assert_eq!(
        out.code,
        Some(0),
        "dashboard.js {mode} failed\n--- stdout\n{}\n--- stderr\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        shot.metadata().is_ok_and(|m| m.len() > 10_000),
        "no screenshot at {}",
        shot.display()
    );
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("dashboard.js printed no JSON ({e}):\n{}", out.stdout))
}

fn token(w: &World) -> String {
    std::fs::read_to_string(w.token())
        .unwrap()
        .trim()
        .to_owned()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn an_operator_watches_a_crash_live_and_reloads_from_the_page() {
    let w = World::new();
    w.stage_all(&["calc", "chat", "greeter"]);
    // A backoff long enough that no page, however loaded the machine, can miss it (views are
    // latest-only: a state that lasts less than one delivery may be skipped).
    let cfg = w.write(
        "logoscore.toml",
        "[restart]\ninitial = \"1s\"\nmax = \"1s\"\n",
    );
    let d = w.daemon(&[
        "-c",
        &cfg.display().to_string(),
        "--http",
        "127.0.0.1:0",
        "--load",
        "greeter",
    ]);
    let base = web::base(&d.ready);
    // Some traffic, so the table has figures to show (greeter calls calc and chat).
    for name in ["Ada", "Grace", "Edsger"] {
        w.cli(&["call", "greeter", "greet", name]).ok();
        w.cli(&["call", "greeter", "sum", "2", "3"]).ok();
    }
    let shot = logos_testkit::target_dir().join("dashboard.png");
    let out = drive("live", &base, &token(&w), &shot, &[]);

    assert!(
        out["loginError"]
            .as_str()
            .is_some_and(|e| e.contains("wrong client token")),
        "{out}"
    );
    let rows = strings(&out["rows"]);
    for m in ["calc", "chat", "greeter"] {
        assert!(rows.contains(&m.to_owned()), "{rows:?}");
        assert!(strings(&out["nodes"]).contains(&m.to_owned()), "{out}");
    }
    let edges = strings(&out["edges"]);
    assert!(
        edges.contains(&"greeter->calc".to_owned()) && edges.contains(&"greeter->chat".to_owned()),
        "{edges:?}"
    );

    // The page showed calc leave `ready` and come back, live.
    let seen = strings(&out["seen"]);
    eprintln!("calc as the page showed it after SIGKILL: {seen:?}");
    assert_eq!(seen.first().map(String::as_str), Some("ready"), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("ready"), "{seen:?}");
    assert!(
        seen.iter().any(|s| s == "backoff"),
        "calc never showed its backoff between its crash and its restart: {seen:?}"
    );
    assert_ne!(out["restartedPid"], out["killed"]);
    assert!(
        out["crash"].as_str().is_some_and(|c| c.contains("SIGKILL")),
        "{out}"
    );
    assert!(
        out["log"].as_str().is_some_and(|l| l.contains("crashed")),
        "{out}"
    );

    // Refused actions did nothing; the button did.
    assert_eq!(out["withoutCsrf"], 403);
    assert_eq!(out["withoutLogin"], 401);
    assert_eq!(out["pidAfterRefusals"], out["restartedPid"]);
    assert_ne!(out["reloadedPid"], out["pidAfterRefusals"]);
    let now = w
        .pids()
        .into_iter()
        .find(|(n, _)| n == "calc")
        .map(|(_, p)| u64::from(p));
    assert_eq!(out["reloadedPid"].as_u64(), now);
    assert_eq!(
        out["errors"],
        serde_json::json!([]),
        "the page logged errors"
    );
    eprintln!("screenshot: {}", shot.display());
}

/// `n` module dirs served by the `logos-bench` binary (its `benchmod` mode), module `mI`
/// depending on `m(I-1)/2`: a tree, so the graph has depth.
fn hundred_modules(w: &World, n: usize) {
    let exe = logos_testkit::target_dir().join("logos-bench");
    assert!(
        exe.is_file(),
        "{} is missing: run `cargo build --workspace` first",
        exe.display()
    );
    for i in 0..n {
        let name = format!("m{i:03}");
        let dir = w.modules.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let deps = if i == 0 {
            serde_json::json!({})
        } else {
            serde_json::json!({ format!("m{:03}", (i - 1) / 2): "^1" })
        };
        let meta = serde_json::json!({
            "name": name, "version": "1.0.0", "description": "a light module",
            "type": "core", "dependencies": deps, "main": "benchmod", "restart": "never",
        });
        std::fs::write(dir.join("metadata.json"), meta.to_string()).unwrap();
        std::os::unix::fs::symlink(&exe, dir.join("benchmod")).unwrap();
    }
}

#[test]
fn a_hundred_module_core_renders_in_the_browser() {
    const N: usize = 100;
    let w = World::new();
    hundred_modules(&w, N);
    let mut cmd = w.command();
    cmd.arg("--json")
        .args(["run", "--http", "127.0.0.1:0", "--load-all", "-m"])
        .arg(&w.modules)
        .arg("--data-dir")
        .arg(&w.data);
    let mut d = support::Daemon::spawn(cmd);
    d.ready = d.wait_ready();
    assert_eq!(d.loaded().len(), N, "{}", d.ready);
    let base = web::base(&d.ready);
    let shot = logos_testkit::target_dir().join("dashboard-100.png");
    let out = drive("render", &base, &token(&w), &shot, &[&N.to_string()]);
    assert_eq!(out["rows"], N, "{out}");
    assert_eq!(out["nodes"], N, "{out}");
    assert_eq!(
        out["errors"],
        serde_json::json!([]),
        "the page logged errors"
    );
    let mut renders: Vec<f64> = out["renders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    assert!(renders.len() >= 5, "{out}");
    let first = renders[0];
    renders.sort_by(f64::total_cmp);
    eprintln!(
        "100-module table in Chromium: {} updates, first {first:.1} ms, median {:.1} ms, max {:.1} ms",
        renders.len(),
        renders[renders.len() / 2],
        renders[renders.len() - 1]
    );
    // The view the page gets, for the record.
    let view = web::http()
        .get(format!("{base}/api/view"))
        .bearer_auth(token(&w))
        .timeout(Duration::from_secs(60))
        .send()
        .unwrap()
        .text()
        .unwrap();
    eprintln!("one view of {N} modules: {} bytes of JSON", view.len());
}
