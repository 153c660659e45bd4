//! How a client command ends when things go wrong around it (issue 10, item 13): a core that
//! dies mid-call and a refused token are "cannot reach the core" (exit 2), not module errors;
//! `watch --json` ends its NDJSON with one error line; `load a b --json` says that `a` was
//! loaded when `b` fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rustix::process::Signal;
use std::time::Duration;
use support::{COMMAND, EXIT, Proc, World, wait_for};

#[test]
fn a_core_dying_mid_call_is_exit_2() {
    let w = World::new();
    w.stage("probe");
    let mut d = w.daemon(&["--load", "probe"]);
    let mut cmd = w.command();
    cmd.args(["call", "probe", "sleep", "600000"]);
    let mut call = Proc::spawn(&mut cmd);
    wait_for("the call to be in flight", COMMAND, || {
        let stats = w.cli_json(&["stats"]);
        stats
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "probe" && m["inFlight"] == 1)
    });
    d.proc.signal(Signal::KILL);
    d.wait_exit(EXIT);
    let status = call.wait(COMMAND).and_then(|s| s.code());
    assert_eq!(status, Some(2), "{}", call.stderr_text());
    assert!(
        call.stderr_text()
            .contains("lost the connection to the core"),
        "{}",
        call.stderr_text()
    );
}

#[test]
fn a_refused_token_is_exit_2_with_one_error_document() {
    let w = World::new();
    w.stage("calc");
    let _d = w.daemon(&["--load", "calc"]);
    std::fs::write(w.token(), format!("{}\n", "ab".repeat(32))).unwrap();
    for args in [
        &["--json", "call", "calc", "add", "1", "2"][..],
        &["--json", "load", "calc"],
    ] {
        let out = w.cli(args);
        out.expect_code(2);
        let doc = out.json();
        assert_eq!(doc["error"]["kind"], "refused", "{doc}");
        assert_eq!(doc["code"], "UNAUTHORIZED", "{doc}");
        assert!(out.stderr.contains("wrong client token"), "{}", out.stderr);
    }
}

#[test]
fn watch_json_ends_with_one_error_line() {
    let w = World::new();
    w.stage("chat");
    let mut d = w.daemon(&["--load", "chat"]);
    let mut cmd = w.command();
    cmd.args(["--json", "watch", "chat"]);
    let mut p = Proc::spawn(&mut cmd);
    p.wait_stderr("watching events of chat", COMMAND);
    w.cli(&["call", "chat", "send", "ada", "hi"]).ok();
    let first = p.next_line(COMMAND).expect("an event line");
    assert!(first.contains("chatMessage"), "{first}");
    d.proc.signal(Signal::KILL);
    d.wait_exit(EXIT);
    let status = p.wait(COMMAND).and_then(|s| s.code());
    assert_eq!(status, Some(2), "{}", p.stderr_text());
    let rest = p.stdout_rest(Duration::from_secs(5));
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(lines.len(), 1, "one error line: {rest}");
    let doc: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(doc["status"], "error", "{doc}");
    assert_eq!(doc["error"]["kind"], "lost", "{doc}");
    assert_eq!(doc["error"]["exit"], 2, "{doc}");
}

#[test]
fn load_of_several_says_what_was_loaded_before_the_failure() {
    let w = World::new();
    w.stage_all(&["calc", "chat", "greeter"]);
    let _d = w.daemon(&[]);
    let out = w.cli(&["--json", "load", "greeter", "nope", "calc"]);
    out.expect_code(3);
    let doc = out.json();
    assert_eq!(doc["loaded"], serde_json::json!(["greeter"]), "{doc}");
    assert_eq!(
        doc["started"],
        serde_json::json!(["calc", "chat", "greeter"]),
        "{doc}"
    );
    assert_eq!(doc["failed"], "nope", "{doc}");
    assert_eq!(doc["code"], "MODULE_NOT_FOUND", "{doc}");
    assert_eq!(doc["error"]["kind"], "unknown_module", "{doc}");
    // In text, each success is on stdout before the error.
    let out = w.cli(&["load", "chat", "nope"]);
    out.expect_code(3);
    assert_eq!(out.stdout, "chat was already loaded\n");
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
}
