//! The daemon and the client commands against a real core, real `logos_host` processes and
//! the example modules: run, load, call, info, list, reload, unload, stats, stop, signals, and
//! cleanup after the daemon is killed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rustix::process::Signal;
use std::time::Duration;
use support::{EXIT, World, alive, wait_for};

#[test]
fn run_load_call_unload_stop() {
    let w = World::new();
    w.stage_all(&["calc", "chat", "greeter", "kv"]);
    let mut d = w.daemon(&[]);
    assert_eq!(d.ready["known"], 4);
    assert!(d.loaded().is_empty());
    assert_eq!(
        d.ready["socket"].as_str().map(std::path::PathBuf::from),
        Some(w.socket())
    );
    let token_mode = std::fs::metadata(w.token()).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    assert_eq!(token_mode.ok(), Some(0o600), "client token must be 0600");

    // load pulls dependencies in and says so
    let out = w.cli(&["load", "greeter"]);
    out.ok();
    assert_eq!(
        out.stdout.trim(),
        "loaded greeter (started calc, chat, greeter)"
    );
    let out = w.cli(&["load", "greeter"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "greeter was already loaded");

    // list, parsed back
    let list = w.cli_json(&["list", "--loaded"]);
    let names: Vec<&str> = list
        .as_array()
        .map(|l| l.iter().filter_map(|m| m["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["calc", "chat", "greeter"]);
    for m in list.as_array().into_iter().flatten() {
        assert_eq!(m["state"], "ready", "{m}");
        assert!(m["pid"].as_u64().is_some_and(|p| p > 0), "{m}");
        assert_eq!(m["restarts"], 0, "{m}");
    }
    let text = w.cli(&["list"]);
    text.ok();
    let header = text.stdout.lines().next().unwrap_or_default();
    for col in ["NAME", "VERSION", "STATE", "PID", "UPTIME", "RESTARTS"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("kv") && l.contains("known")),
        "{}",
        text.stdout
    );

    // call, text and JSON
    let out = w.cli(&["call", "calc", "add", "2", "3"]);
    out.ok();
    assert_eq!(out.stdout, "5\n");
    assert_eq!(
        w.cli_json(&["call", "calc", "sub", "-5", "3"])["result"],
        -8
    );
    let out = w.cli(&["call", "greeter", "greet", "Ada"]);
    out.ok();
    assert!(out.stdout.contains("Ada"), "{}", out.stdout);
    let args = w.write("args.json", "40");
    let args = format!("json:@{}", args.display());
    assert_eq!(
        w.cli_json(&["call", "calc", "add", &args, "2"])["result"],
        42
    );

    // unload refuses while dependents are loaded, and names the fix; a failed unload is a
    // module error (exit 3), as every failed module-management command
    let out = w.cli(&["unload", "chat"]);
    out.expect_code(3);
    assert!(out.stderr.contains("greeter"), "{}", out.stderr);
    assert!(out.stderr.contains("--cascade"), "{}", out.stderr);
    let doc = w.cli_json(&["unload", "chat", "--cascade"]);
    assert_eq!(doc["unloaded"], "chat");
    assert_eq!(doc["stopped"], serde_json::json!(["chat", "greeter"]));
    let loaded = w.cli_json(&["list", "--loaded"]);
    assert_eq!(loaded.as_array().map(Vec::len), Some(1), "{loaded}");

    // stop ends the daemon cleanly and leaves no socket behind
    let pids = w.pids();
    let doc = w.cli_json(&["stop"]);
    assert_eq!(doc["stopped"], true);
    let status = d.wait_exit(EXIT);
    assert_eq!(status.code(), Some(0), "{}", d.proc.stderr_text());
    assert!(!w.socket().exists());
    assert!(!w.token().exists());
    for (name, pid) in pids {
        assert!(!alive(pid), "{name} (pid {pid}) outlived the core");
    }
}

#[test]
fn the_readme_flag_set_loads_every_module() {
    let w = World::new();
    w.stage_all(&["calc", "chat", "greeter", "kv"]);
    let mut cmd = w.command();
    cmd.arg("run")
        .arg("--modules-dir")
        .arg(&w.modules)
        .arg("--data-dir")
        .arg(&w.data)
        .arg("--load-all");
    let mut d = support::Daemon::spawn(cmd);
    // Without --json, `run` tells a person what to try next, on stderr.
    d.proc
        .wait_stderr("Try, from another terminal:", support::READY);
    d.proc.wait_stderr("stop the core", Duration::from_secs(5));
    let hints = d.proc.stderr_text();
    assert!(
        hints.contains("4 of 4 modules loaded: calc, chat, greeter, kv"),
        "{hints}"
    );
    assert!(hints.contains(" call calc add 2 3"), "{hints}");
    assert!(
        hints.contains("--runtime-dir"),
        "a client needs the runtime dir: {hints}"
    );
    let out = w.cli(&["call", "calc", "add", "2", "3"]);
    out.ok();
    assert_eq!(out.stdout, "5\n");

    let pids = w.pids();
    assert_eq!(pids.len(), 4);
    d.proc.signal(Signal::INT);
    let status = d.wait_exit(EXIT);
    assert_eq!(status.code(), Some(0), "{}", d.proc.stderr_text());
    for (name, pid) in pids {
        assert!(!alive(pid), "{name} (pid {pid}) outlived the core");
    }
    assert!(!w.socket().exists());
    // The core logs every state change.
    let log = d.proc.stderr_text();
    assert!(log.contains("module state changed"), "{log}");
}

#[test]
fn sigterm_stops_modules_loaded_by_flags() {
    let w = World::new();
    w.stage_all(&["calc", "kv", "chat"]);
    let mut d = w.daemon(&["--load", "calc", "-l", "kv"]);
    assert_eq!(d.loaded(), ["calc", "kv"]);
    let pids = w.pids();
    assert_eq!(pids.len(), 2);
    d.proc.signal(Signal::TERM);
    let status = d.wait_exit(EXIT);
    assert_eq!(status.code(), Some(0));
    for (name, pid) in pids {
        assert!(!alive(pid), "{name} (pid {pid}) outlived the core");
    }
    assert!(!w.socket().exists());
}

#[test]
fn a_config_file_declares_dirs_boot_modules_and_overrides() {
    let w = World::new();
    w.stage_all(&["calc", "chat", "greeter"]);
    let config = w.write(
        "logoscore.toml",
        r#"modules_dirs = ["modules"]
load = ["greeter"]
data_dir = "data"
log_level = "debug"
log_format = "json"

[modules.calc]
restart = "never"
call_timeout = "5s"
env = { CALC_FLAVOUR = "plain" }
limits = { open_files = 256 }
"#,
    );
    let mut cmd = w.command();
    cmd.arg("--json").arg("run").arg("-c").arg(&config);
    let mut d = support::Daemon::spawn(cmd);
    d.ready = d.wait_ready();
    assert_eq!(d.loaded(), ["calc", "chat", "greeter"]);
    assert_eq!(w.cli_json(&["call", "calc", "mul", "6", "7"])["result"], 42);
    // log_format = "json": every log line on stderr is a JSON object.
    wait_for("a log line", Duration::from_secs(5), || {
        !d.proc.stderr_text().trim().is_empty()
    });
    for line in d
        .proc
        .stderr_text()
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
    }
    w.cli(&["stop"]).ok();
    assert_eq!(d.wait_exit(EXIT).code(), Some(0));
}

#[test]
fn info_shows_metadata_dependencies_and_signatures() {
    let w = World::new();
    w.stage_all(&["calc", "chat", "greeter"]);
    let _d = w.daemon(&["--load", "greeter"]);
    let out = w.cli(&["info", "calc"]);
    out.ok();
    let text = &out.stdout;
    assert!(text.starts_with("calc 1.0.0 — ready (pid "), "{text}");
    assert!(text.contains("description: Integer arithmetic"), "{text}");
    assert!(text.contains("dependents: greeter"), "{text}");
    assert!(text.contains("add(a: int, b: int) -> int"), "{text}");
    let out = w.cli(&["info", "greeter"]);
    out.ok();
    assert!(
        out.stdout.contains("dependencies: calc ^1, chat ^1"),
        "{}",
        out.stdout
    );
    let doc = w.cli_json(&["info", "chat"]);
    assert_eq!(doc["name"], "chat");
    let events = doc["interface"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(events.iter().any(|e| e["name"] == "chatMessage"), "{doc}");
}

#[test]
fn reload_starts_a_new_process() {
    let w = World::new();
    w.stage("calc");
    let _d = w.daemon(&["--load", "calc"]);
    let before = w.pids();
    let doc = w.cli_json(&["reload", "calc"]);
    assert_eq!(doc["reloaded"], "calc");
    assert_eq!(doc["state"], "ready");
    assert_eq!(
        doc["oldPid"].as_u64(),
        before.first().map(|(_, p)| u64::from(*p))
    );
    assert_ne!(doc["pid"], doc["oldPid"]);
    let out = w.cli(&["call", "calc", "add", "1", "1"]);
    out.ok();
    assert_eq!(out.stdout, "2\n");
}

#[test]
fn reload_hot_swaps_without_a_gap_and_says_how_long_it_took() {
    let w = World::new();
    w.stage("calc");
    let _d = w.daemon(&["--load", "calc"]);
    let before = w.pids();
    let doc = w.cli_json(&["reload", "calc", "--hot"]);
    assert_eq!(doc["reloaded"], "calc");
    assert_eq!(doc["hot"], true);
    assert_eq!(doc["state"], "ready");
    assert_eq!(
        doc["oldPid"].as_u64(),
        before.first().map(|(_, p)| u64::from(*p))
    );
    assert_ne!(doc["pid"], doc["oldPid"]);
    assert!(doc["startMs"].as_f64().is_some_and(|v| v > 0.0), "{doc}");
    assert!(doc["retireMs"].as_f64().is_some(), "{doc}");
    let out = w.cli(&["reload", "calc", "--hot"]);
    out.ok();
    assert!(
        out.stdout.starts_with("reloaded calc (pid ")
            && out.stdout.contains("hot: new process ready in"),
        "{}",
        out.stdout
    );
    let out = w.cli(&["call", "calc", "add", "1", "1"]);
    out.ok();
    assert_eq!(out.stdout, "2\n");
    // A module nobody can swap: the error names it (exit 3, a module error).
    let out = w.cli(&["reload", "nosuch", "--hot"]);
    out.expect_code(3);
    assert!(out.stderr.contains("nosuch"), "{}", out.stderr);
}

#[test]
fn stats_reports_costs_and_calls_of_each_module_process() {
    let w = World::new();
    w.stage_all(&["calc", "kv"]);
    let _d = w.daemon(&["--load", "calc"]);
    w.cli(&["call", "calc", "add", "1", "2"]).ok();
    w.cli(&["call", "calc", "div", "1", "0"]);
    let doc = w.cli_json(&["stats"]);
    let modules = doc.as_array().cloned().unwrap_or_default();
    let core = &modules[0];
    assert_eq!(core["name"], "core", "{doc}");
    assert_eq!(core["kind"], "core", "{doc}");
    assert_eq!(core["source"], "core");
    assert!(core["pid"].as_u64().is_some(), "{doc}");
    assert!(core["rssBytes"].as_u64().is_some_and(|r| r > 0), "{doc}");
    assert!(core["memory_mb"].as_f64().is_some_and(|m| m > 0.0), "{doc}");
    let calc = modules
        .iter()
        .find(|m| m["name"] == "calc")
        .cloned()
        .unwrap_or_default();
    assert!(calc["rssBytes"].as_u64().is_some_and(|r| r > 0), "{doc}");
    assert!(calc["threads"].as_u64().is_some_and(|t| t >= 1), "{doc}");
    assert!(calc["cpuMs"].as_u64().is_some(), "{doc}");
    assert_eq!(calc["calls"].as_u64(), Some(2), "{doc}");
    assert_eq!(calc["errors"].as_u64(), Some(1), "{doc}");
    assert!(calc["latencyUs"]["p99"].as_u64().is_some(), "{doc}");
    // The reference's keys beside ours.
    assert_eq!(calc["kind"], "module", "{doc}");
    assert!(calc["cpu_percent"].as_f64().is_some(), "{doc}");
    assert!(calc["memory_mb"].as_f64().is_some_and(|m| m > 0.0), "{doc}");
    let kv = modules
        .iter()
        .find(|m| m["name"] == "kv")
        .cloned()
        .unwrap_or_default();
    assert_eq!(kv["state"], "known");
    assert!(kv["rssBytes"].is_null(), "{doc}");
    assert!(kv["calls"].is_null(), "{doc}");
    let out = w.cli(&["stats"]);
    out.ok();
    for column in ["RSS", "CALLS", "ERRORS", "P99"] {
        assert!(out.stdout.contains(column), "{}", out.stdout);
    }
    assert!(out.stdout.contains("(core)"), "{}", out.stdout);
    assert!(
        out.stdout.contains("2 known, 1 loaded, 0 failed"),
        "{}",
        out.stdout
    );
}

#[test]
fn sigkill_of_the_daemon_leaves_no_module_and_no_socket() {
    let w = World::new();
    w.stage_all(&["calc", "chat", "greeter"]);
    let mut d = w.daemon(&["--load", "greeter"]);
    let pids = w.pids();
    assert_eq!(pids.len(), 3);
    assert!(w.socket().exists());
    d.proc.kill();
    wait_for(
        "module processes, sockets and the token to disappear",
        Duration::from_secs(15),
        || {
            pids.iter().all(|(_, p)| !alive(*p))
                && !w.socket().exists()
                && !w.token().exists()
                && !w.runtime.join("modules").join("calc.sock").exists()
        },
    );
    // And a new core can take the runtime dir over.
    let _d2 = w.daemon(&["--load", "calc"]);
    assert_eq!(w.cli_json(&["call", "calc", "add", "1", "2"])["result"], 3);
}

#[test]
fn a_signal_during_boot_stops_within_the_bound() {
    let w = World::new();
    // Never says hello: its load ends only at the start timeout.
    // Modules may write only in their data dir (Landlock).
    let pid_file = w.data.join("slow/pid");
    w.script_module("slow", "echo $$ > \"$LOGOS_DATA_DIR/pid\"\nexec sleep 60");
    let config = w.write("logoscore.toml", "start_timeout = \"3s\"\n");
    let mut cmd = w.command();
    cmd.arg("--json")
        .arg("run")
        .arg("-c")
        .arg(&config)
        .arg("-m")
        .arg(&w.modules)
        .arg("--data-dir")
        .arg(&w.data)
        .arg("--load")
        .arg("slow");
    let mut d = support::Daemon::spawn(cmd);
    d.proc.wait_stderr("to=starting", Duration::from_secs(30));
    d.proc.signal(Signal::TERM);
    let status = d.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", d.proc.stderr_text());
    assert!(!w.socket().exists());
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .expect("the slow module wrote its pid");
    let slow = alive(pid);
    assert!(!slow, "the slow module outlived the core");
}
