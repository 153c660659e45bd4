//! The reference `logoscore`'s command names and JSON documents, against a real core started the
//! reference's way (`-D --config-dir`): `status`, `load-module`, `unload-module`
//! (`--no-dependents`), `reload-module`, `list-modules` (`--loaded`), `module-info` / `info`,
//! `module M method F`, `watch M --event E`, `-j`, `--human`, JSON by default when stdout is not
//! a terminal, error documents with the reference's codes, exit 3 for failed module management.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{COMMAND, Proc, World};

/// One line of stdout as JSON.
fn line_json(p: &Proc) -> serde_json::Value {
    let line = p
        .next_line(COMMAND)
        .unwrap_or_else(|| panic!("no line; stderr: {}", p.stderr_text()));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn names(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .filter_map(|m| m["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn reference_names_print_the_reference_documents() {
    let w = World::new();
    w.stage_all(&["calc", "chat", "greeter", "kv"]);
    let d = w.cfg_daemon(&[]);
    assert!(d.loaded().is_empty(), "-D starts with nothing loaded");

    // status: JSON by default when stdout is not a terminal (it is a pipe here).
    let out = w.cfg_cli(&["status"]);
    out.ok();
    let status = out.json();
    assert_eq!(status["daemon"]["status"], "running", "{status}");
    assert_eq!(status["daemon"]["pid"], d.ready["pid"], "{status}");
    assert_eq!(status["daemon"]["instance_id"], d.ready["instance"]);
    assert!(
        status["daemon"]["uptime_seconds"].as_u64().is_some(),
        "{status}"
    );
    assert!(status["daemon"]["version"].as_str().is_some(), "{status}");
    assert_eq!(status["modules_summary"]["not_loaded"], 4, "{status}");
    assert_eq!(status["modules_summary"]["loaded"], 0, "{status}");
    // --human (alias --no-json) asks for text; our names stay text on a pipe.
    let text = w.cfg_cli(&["status", "--human"]);
    text.ok();
    assert!(
        text.stdout.starts_with("core running (pid"),
        "{}",
        text.stdout
    );
    assert!(
        w.cfg_cli(&["status", "--no-json"])
            .stdout
            .starts_with("core running")
    );
    assert!(w.cfg_cli(&["list"]).stdout.starts_with("NAME"));
    // -v says where the core and the token were found.
    let out = w.cfg_cli(&["-v", "list-modules"]);
    out.ok();
    assert!(out.stderr.contains("token from"), "{}", out.stderr);
    assert!(out.stderr.contains("client/auto.json"), "{}", out.stderr);

    // load-module: the reference's fields beside ours.
    let doc = w.cfg_cli(&["load-module", "chat"]).json();
    assert_eq!(doc["status"], "ok", "{doc}");
    assert_eq!(doc["module"], "chat");
    assert_eq!(doc["version"], "1.0.0");
    assert_eq!(doc["dependencies_loaded"], serde_json::json!([]));
    assert_eq!(doc["loaded"], serde_json::json!(["chat"]));
    let doc = w.cfg_cli(&["load-module", "greeter", "-j"]).json();
    assert_eq!(
        doc["dependencies_loaded"],
        serde_json::json!(["calc"]),
        "{doc}"
    );

    // list-modules: statuses and uptime_seconds; --loaded.
    let list = w.cfg_cli(&["list-modules"]).json();
    for m in list.as_array().unwrap() {
        let want = if m["name"] == "kv" {
            "not_loaded"
        } else {
            "loaded"
        };
        assert_eq!(m["status"], want, "{m}");
        assert_eq!(m["uptime_seconds"].is_u64(), want == "loaded", "{m}");
        assert!(m["state"].is_string(), "ours stays: {m}");
    }
    let loaded = w.cfg_cli(&["list-modules", "--loaded"]).json();
    assert_eq!(names(&loaded), ["calc", "chat", "greeter"]);

    // module-info (and `info`): methods with parameters and returnType, events.
    let info = w.cfg_cli(&["module-info", "greeter"]).json();
    assert_eq!(info["status"], "loaded", "{info}");
    let greet = info["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "greet")
        .cloned()
        .unwrap_or_default();
    assert_eq!(greet["parameters"][0]["name"], "name", "{info}");
    assert_eq!(greet["parameters"][0]["type"], "text", "{info}");
    assert_eq!(greet["returnType"], "text", "{info}");
    let chat = w.cfg_json(&["info", "chat"]);
    let event = &chat["events"][0];
    assert_eq!(event["name"], "chatMessage", "{chat}");
    assert_eq!(event["parameters"][1]["name"], "nick", "{chat}");
    assert!(chat["interface"].is_object(), "ours stays: {chat}");
    assert_eq!(w.cfg_json(&["info", "kv"])["status"], "not_loaded");

    // call and `module M method F`: the envelope; trailing -j/--json are flags.
    let call = w
        .cfg_cli(&["call", "calc", "add", "2", "3", "--json"])
        .json();
    assert_eq!(
        call,
        serde_json::json!({"status": "ok", "module": "calc", "method": "add", "result": 5})
    );
    let out = w.cfg_cli(&["module", "greeter", "method", "greet", "Ada"]);
    out.ok();
    let call = out.json();
    assert_eq!(call["method"], "greet");
    assert!(call["result"].as_str().unwrap().contains("Ada"), "{call}");
    assert_eq!(w.cfg_cli(&["call", "calc", "add", "2", "3"]).stdout, "5\n");

    // watch M --event E: the reference's event document, one per line.
    let mut watch = w.bare();
    watch.arg("--config-dir").arg(w.cfg()).args([
        "watch",
        "chat",
        "--event",
        "chatMessage",
        "--json",
    ]);
    let p = Proc::spawn(&mut watch);
    p.wait_stderr("watching chat.chatMessage", COMMAND);
    w.cfg_cli(&["call", "chat", "send", "ada", "hi"]).ok();
    let e = line_json(&p);
    assert_eq!(e["module"], "chat", "{e}");
    assert_eq!(e["event"], "chatMessage", "{e}");
    assert_eq!(e["data"]["arg1"], "ada", "{e}");
    assert_eq!(e["data"]["arg2"], "hi", "{e}");
    assert!(
        e["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{e}"
    );
    drop(p);

    // reload-module
    let doc = w.cfg_cli(&["reload-module", "chat"]).json();
    assert_eq!(doc["action"], "reload", "{doc}");
    assert_eq!(doc["previous_status"], "loaded");
    assert_eq!(doc["status"], "loaded");
    assert_ne!(doc["pid"], doc["oldPid"]);
    let doc = w.cfg_cli(&["reload-module", "kv"]).json();
    assert_eq!(
        doc["previous_status"], "not_loaded",
        "loads what is not loaded: {doc}"
    );

    // unload-module: --no-dependents refuses while dependents run (exit 3); the default
    // cascades, as the reference's.
    let out = w.cfg_cli(&["unload-module", "calc", "--no-dependents"]);
    out.expect_code(3);
    let err = out.json();
    assert_eq!(err["status"], "error");
    assert_eq!(err["code"], "MODULE_UNLOAD_FAILED", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("greeter"),
        "{err}"
    );
    let doc = w.cfg_cli(&["unload-module", "calc"]).json();
    assert_eq!(doc["module"], "calc", "{doc}");
    assert_eq!(
        doc["dependents_unloaded"],
        serde_json::json!(["greeter"]),
        "{doc}"
    );
    // Ours still refuses without --cascade.
    w.cfg_cli(&["load", "greeter"]).ok();
    w.cfg_cli(&["unload", "chat"]).expect_code(3);

    let doc = w.cfg_json(&["stop"]);
    assert_eq!(doc["status"], "ok", "{doc}");
    assert_eq!(doc["stopped"], true, "{doc}");
}

#[test]
fn errors_carry_the_reference_codes_and_exit_codes() {
    let w = World::new();
    w.stage_all(&["calc", "kv"]);
    let _d = w.cfg_daemon(&["--load", "calc"]);
    let error = |args: &[&str], exit: i32, code: &str| {
        let out = w.cfg_cli(args);
        out.expect_code(exit);
        let doc = out.json();
        assert_eq!(doc["status"], "error", "{args:?}: {doc}");
        assert_eq!(doc["code"], code, "{args:?}: {doc}");
        assert_eq!(doc["error"]["exit"], exit, "{args:?}: {doc}");
        assert!(doc["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(out.stdout.lines().count(), 1, "one line: {}", out.stdout);
        doc
    };
    error(&["module-info", "nope"], 3, "MODULE_NOT_FOUND");
    error(&["info", "nope", "--json"], 3, "MODULE_NOT_FOUND");
    error(&["load-module", "nope"], 3, "MODULE_NOT_FOUND");
    error(&["unload-module", "kv"], 3, "MODULE_NOT_LOADED");
    error(&["reload-module", "nope"], 3, "MODULE_NOT_FOUND");
    error(
        &["call", "kv", "get", "k", "--json"],
        3,
        "MODULE_NOT_LOADED",
    );
    error(&["call", "nope", "f", "--json"], 3, "MODULE_NOT_FOUND");
    let doc = error(&["call", "calc", "div", "1", "0", "-j"], 4, "METHOD_FAILED");
    assert_eq!(
        doc["error"]["kind"], "method_failed",
        "ours beside it: {doc}"
    );
    error(&["call", "calc", "pow", "1", "-j"], 4, "METHOD_NOT_FOUND");
    error(&["call", "calc", "add", "x", "1", "-j"], 4, "INVALID_ARGS");
    error(
        &["module", "calc", "method", "add", "0x10"],
        1,
        "INVALID_ARGS",
    );
    // watch of an unknown module: exit 3 at once, not a wait.
    error(
        &["watch", "nope", "--event", "x", "--json"],
        3,
        "MODULE_NOT_FOUND",
    );
    // Usage errors of reference names are still exit 1.
    let out = w.cfg_cli(&["module", "calc", "function", "add"]);
    out.expect_code(1);
}

#[test]
fn status_exits_1_when_no_core_runs() {
    let w = World::new();
    let out = w.cfg_cli(&["status"]);
    out.expect_code(1);
    let doc = out.json();
    assert_eq!(doc["daemon"]["status"], "not_running", "{doc}");
    assert!(
        doc["daemon"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("daemon/state.json")),
        "{doc}"
    );
    assert_eq!(doc["code"], "NO_DAEMON");
    // Ours: every other client command says "cannot reach" with exit 2.
    w.cfg_cli(&["list-modules"]).expect_code(2);
    let text = w.cfg_cli(&["status", "--human"]);
    text.expect_code(1);
    assert!(
        text.stderr.contains("no core is running"),
        "{}",
        text.stderr
    );
}
