//! The command examples of the reference `logoscore`'s docs/logoscore.md, run in order against
//! our `logoscore`, each with the exit code it must have.
//!
//! The commands, flags and argument forms are the documented ones, verbatim. Only names that
//! exist in the reference's world and not in ours are replaced by ours, always the same way:
//!
//! | docs                                   | here                                   |
//! |----------------------------------------|----------------------------------------|
//! | module `waku`                          | `calc`                                 |
//! | `chat send_message TEXT`               | `chat send ada TEXT`                   |
//! | event `chat-message`                   | `chatMessage`                          |
//! | `storage load_config` / `init` / `set*`| `kv set KEY VALUE`                     |
//! | `greeter greetMany LIST`, `config apply MAP` | `kv set KEY LIST`, `kv set KEY MAP` |
//! | `/tmp/ls-a`, `/tmp/test-data`, `~/.logoscore` | paths in this test's temp dir   |
//!
//! The default runtime dir is the test's (through `$LOGOS_RUNTIME_DIR`, so the command lines
//! stay as written). `call my_module.some_method arg` is not here: the reference does not
//! accept it either (it reads `my_module.some_method` as the module name).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use support::{COMMAND, Daemon, Outcome, Proc, World, finish};

/// `logoscore ARGS…` in the test's dir with its runtime dir as the default.
fn cmd(w: &World, args: &[&str]) -> Command {
    let mut c = w.bare();
    c.current_dir(w.dir.path())
        .env("LOGOS_RUNTIME_DIR", &w.runtime)
        .args(args);
    c
}

#[track_caller]
fn run(w: &World, args: &[&str], exit: i32) -> Outcome {
    let out = finish(cmd(w, args), COMMAND);
    out.expect_code(exit);
    out
}

/// Starts a documented daemon command line and waits until its core answers `status`.
fn daemon(w: &World, args: &[&str], status: &[&str]) -> Daemon {
    let d = Daemon::spawn(cmd(w, args));
    support::wait_for("the daemon to answer status", COMMAND, || {
        finish(cmd(w, status), COMMAND).code == Some(0)
    });
    d
}

#[test]
fn the_documented_daemon_and_client_commands() {
    let w = World::new();
    w.stage_all(&["calc", "chat", "greeter", "kv"]);
    let _d = daemon(&w, &["-D", "-m", "./modules"], &["status"]);

    // Check daemon health
    run(&w, &["status"], 0);
    let status = run(&w, &["status", "--json"], 0).json();
    assert_eq!(status["daemon"]["status"], "running");
    // Load, unload, reload
    run(&w, &["load-module", "calc"], 0);
    let doc = run(&w, &["load-module", "chat", "--json"], 0).json();
    assert_eq!(doc["status"], "ok");
    run(&w, &["unload-module", "calc"], 0);
    run(&w, &["reload-module", "chat"], 0);
    // List and introspect
    run(&w, &["list-modules"], 0);
    run(&w, &["list-modules", "--loaded"], 0);
    run(&w, &["module-info", "chat"], 0);
    run(&w, &["info", "chat"], 0);
    // Call
    w.write("config.json", "{\"retries\": 3}\n");
    run(&w, &["load-module", "kv"], 0);
    run(&w, &["call", "chat", "send", "ada", "hello world"], 0);
    run(&w, &["call", "kv", "set", "config", "@config.json"], 0);
    let got = run(&w, &["call", "kv", "get", "config", "--json"], 0).json();
    assert_eq!(got["result"], "{\"retries\": 3}\n", "@file is the raw text");
    run(
        &w,
        &["call", "kv", "set", "names", "json:[\"ada\",\"alan\"]"],
        0,
    );
    run(
        &w,
        &[
            "call",
            "kv",
            "set",
            "cfg",
            "json:{\"retries\":3,\"debug\":true}",
        ],
        0,
    );
    let got = run(&w, &["call", "kv", "get", "cfg", "-j"], 0).json();
    assert_eq!(
        got["result"],
        serde_json::json!({"retries": 3, "debug": true})
    );
    run(&w, &["load-module", "greeter"], 0);
    let out = run(&w, &["call", "greeter", "greet", "str:json:literal"], 0);
    assert!(out.stdout.contains("json:literal"), "{}", out.stdout);
    run(&w, &["module", "chat", "method", "send", "ada", "hello"], 0);
    // Watch (streams until Ctrl+C)
    for args in [
        &["watch", "chat", "--event", "chatMessage"][..],
        &["watch", "chat", "--json"],
    ] {
        let mut p = Proc::spawn(&mut cmd(&w, args));
        p.wait_stderr("watching", COMMAND);
        run(&w, &["call", "chat", "send", "ada", "seen"], 0);
        let line = p.next_line(COMMAND).expect("an event");
        assert!(line.contains("seen"), "{line}");
        p.signal(rustix::process::Signal::INT);
        assert_eq!(p.wait(COMMAND).and_then(|s| s.code()), Some(0));
    }
    run(&w, &["stats"], 0);

    // Authentication: LOGOSCORE_TOKEN and named tokens.
    let token = std::fs::read_to_string(w.runtime.join("client.token")).unwrap();
    let mut c = cmd(&w, &["list-modules", "--json"]);
    c.env("LOGOSCORE_TOKEN", token.trim());
    finish(c, COMMAND).ok();
    run(&w, &["issue-token", "--name", "alice"], 0);
    run(&w, &["issue-token", "--name", "alice", "--replace"], 0);
    run(&w, &["issue-token", "--name", "ci", "--expires", "30d"], 0);
    run(&w, &["issue-token", "--name", "probe", "--local-only"], 0);
    run(&w, &["list-tokens"], 0);
    run(&w, &["revoke-token", "alice"], 0);

    // Agent / script example.
    let status = run(&w, &["status", "--json"], 0).json();
    assert_eq!(status["daemon"]["status"], "running"); // jq -e '.daemon.status == "running"'
    let info = run(&w, &["module-info", "chat", "--json"], 0).json();
    for m in info["methods"].as_array().unwrap() {
        assert!(
            m["name"].is_string() && m.get("description").is_some(),
            "{m}"
        );
    }
    for e in info["events"].as_array().unwrap() {
        assert!(
            e["name"].is_string() && e.get("description").is_some(),
            "{e}"
        );
    }
    run(
        &w,
        &["call", "chat", "send", "ada", "hello from script", "--json"],
        0,
    );
    let list = run(&w, &["list-modules", "--json"], 0).json();
    for m in list.as_array().unwrap() {
        if m["status"] == "crashed" {
            run(
                &w,
                &["reload-module", m["name"].as_str().unwrap(), "--json"],
                0,
            );
        }
    }
    run(&w, &["stop"], 0);
}

#[test]
fn the_documented_parallel_daemons_and_quick_start() {
    let w = World::new();
    std::fs::create_dir_all(w.dir.path().join("core-modules")).unwrap();
    std::fs::create_dir_all(w.dir.path().join("extra-modules")).unwrap();
    logos_testkit::stage_module(&w.dir.path().join("core-modules"), "calc");
    logos_testkit::stage_module(&w.dir.path().join("extra-modules"), "kv");
    w.stage_all(&["calc", "kv"]);
    let a = w.dir.path().join("ls-a").display().to_string();
    let b = w.dir.path().join("ls-b").display().to_string();

    // Two parallel daemons with isolated config/state
    let _da = daemon(
        &w,
        &["--config-dir", &a, "-D", "-m", "./modules"],
        &["--config-dir", &a, "status"],
    );
    let _db = daemon(
        &w,
        &["--config-dir", &b, "-D", "-m", "./modules"],
        &["--config-dir", &b, "status"],
    );
    run(&w, &["--config-dir", &a, "status"], 0);
    run(&w, &["--config-dir", &b, "load-module", "calc"], 0);
    let loaded = run(&w, &["--config-dir", &a, "list-modules", "--loaded"], 0).json();
    assert_eq!(loaded, serde_json::json!([]), "a is untouched");
    run(&w, &["--config-dir", &a, "stop"], 0);
    run(&w, &["--config-dir", &b, "stop"], 0);

    // Quick start: multiple module dirs and a persistence path; typed arguments.
    let data = w.dir.path().join("test-data").display().to_string();
    let _d = daemon(
        &w,
        &[
            "-D",
            "-m",
            "./core-modules",
            "-m",
            "./extra-modules",
            "--persistence-path",
            &data,
        ],
        &["status"],
    );
    run(&w, &["load-module", "kv"], 0);
    run(&w, &["call", "kv", "set", "init", "42"], 0);
    run(&w, &["call", "kv", "set", "tags", "json:[\"a\",\"b\"]"], 0);
    run(&w, &["call", "kv", "set", "label", "str:42"], 0);
    let label = run(&w, &["call", "kv", "get", "label", "--json"], 0).json();
    assert_eq!(label["result"], "42");
    assert!(
        w.dir.path().join("test-data/kv").is_dir(),
        "--persistence-path is the data dir"
    );
    run(&w, &["stop"], 0);

    // Access policy: `enforce` is what this core always does.
    let _d = daemon(
        &w,
        &["-D", "-m", "./modules", "--access-policy", "enforce"],
        &["status"],
    );
    run(&w, &["stop"], 0);
}
