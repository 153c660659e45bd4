//! `logoscore watch`: events as NDJSON until Ctrl-C, filtered by module and event, lifecycle
//! events of the core, and what happens when the core goes away.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rustix::process::Signal;
use support::{COMMAND, Proc, World};

fn watch(w: &World, args: &[&str]) -> Proc {
    let mut cmd = w.command();
    cmd.arg("--json").arg("watch").args(args);
    let p = Proc::spawn(&mut cmd);
    p.wait_stderr("watching", COMMAND);
    p
}

fn next_json(p: &Proc) -> serde_json::Value {
    let line = p
        .next_line(COMMAND)
        .unwrap_or_else(|| panic!("no event line\n--- stderr\n{}", p.stderr_text()));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[test]
fn watch_prints_one_event_per_line_and_ends_on_ctrl_c() {
    let w = World::new();
    w.stage("chat");
    let _d = w.daemon(&["--load", "chat"]);
    let mut p = watch(&w, &["chat", "chatMessage"]);
    w.cli(&["call", "chat", "send", "ada", "hello there"]).ok();
    w.cli(&["call", "chat", "send", "bob", "hi"]).ok();
    let first = next_json(&p);
    assert_eq!(first["module"], "chat");
    assert_eq!(first["event"], "chatMessage");
    // The reference's map of arguments, and ours in order.
    assert_eq!(first["data"]["arg1"], "ada");
    assert_eq!(first["data"]["arg2"], "hello there");
    assert_eq!(first["args"][1], "ada");
    assert_eq!(first["args"][2], "hello there");
    assert!(
        first["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{first}"
    );
    assert_eq!(next_json(&p)["args"][1], "bob");
    p.signal(Signal::INT);
    let status = p.wait(COMMAND).map(|s| s.code());
    assert_eq!(status, Some(Some(0)), "{}", p.stderr_text());
}

#[test]
fn watch_without_a_module_follows_lifecycle_and_module_events() {
    let w = World::new();
    w.stage_all(&["calc", "chat"]);
    let _d = w.daemon(&[]);
    let p = watch(&w, &[]);
    w.cli(&["load", "chat"]).ok();
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e: &serde_json::Value| e["event"] == "moduleUp")
    {
        seen.push(next_json(&p));
    }
    assert!(
        seen.iter().any(|e| e["module"] == "core"
            && e["event"] == "stateChanged"
            && e["args"] == serde_json::json!(["chat", "starting", "ready"])),
        "{seen:?}"
    );
    // Modules loaded after the watch began are followed too.
    w.cli(&["call", "chat", "send", "ada", "late"]).ok();
    loop {
        let e = next_json(&p);
        if e["module"] == "chat" {
            assert_eq!(e["args"][2], "late");
            break;
        }
    }
}

#[test]
fn watch_refuses_an_event_the_module_does_not_have() {
    let w = World::new();
    w.stage("chat");
    let _d = w.daemon(&["--load", "chat"]);
    let out = w.cli(&["watch", "chat", "chatMesage"]);
    out.expect_code(4);
    assert!(
        out.stderr.contains("chatMessage"),
        "lists the events: {}",
        out.stderr
    );
}

#[test]
fn watch_ends_with_exit_2_when_the_core_stops() {
    let w = World::new();
    w.stage("calc");
    let mut d = w.daemon(&[]);
    let mut p = watch(&w, &["core"]);
    w.cli(&["stop"]).ok();
    d.wait_exit(support::EXIT);
    let status = p.wait(COMMAND).map(|s| s.code());
    assert_eq!(status, Some(Some(2)), "{}", p.stderr_text());
    assert!(
        p.stderr_text().contains("lost the connection to the core"),
        "{}",
        p.stderr_text()
    );
}
