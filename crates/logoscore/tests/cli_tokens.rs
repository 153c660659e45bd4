//! Named operator tokens: `issue-token --name N [--expires] [--local-only] [--replace]`,
//! `list-tokens`, `revoke-token N`, against a real core: hashed at rest, usable at once,
//! checked on every request, and a revocation or expiry that ends even a quiet `watch`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::MetadataExt as _;
use std::process::Command;
use std::time::Duration;
use support::{COMMAND, Proc, World, finish, wait_for};

/// `logoscore --config-dir <cfg> ARGS…` presenting `token` instead of the boot token.
fn as_token(w: &World, token: &str, args: &[&str]) -> Command {
    let mut cmd = w.bare();
    cmd.env("LOGOSCORE_TOKEN", token)
        .arg("--config-dir")
        .arg(w.cfg())
        .args(args);
    cmd
}

fn issue(w: &World, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["issue-token"];
    all.extend_from_slice(args);
    let out = w.cfg_cli(&all);
    out.ok();
    out.json()
}

#[test]
fn tokens_are_issued_without_a_core_and_kept_as_hashes() {
    let w = World::new();
    let alice = issue(&w, &["--name", "alice"]);
    assert_eq!(alice["status"], "ok");
    assert_eq!(alice["name"], "alice");
    assert_eq!(alice["local_only"], false);
    let token = alice["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);
    let file = std::path::PathBuf::from(alice["file"].as_str().unwrap());
    assert_eq!(file, w.cfg().join("daemon/tokens/alice.json"));
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(raw["token"], token.as_str());
    let store = std::fs::read_to_string(w.cfg().join("daemon/tokens.json")).unwrap();
    assert!(!store.contains(&token), "hashed at rest: {store}");
    assert!(store.contains("alice"));

    let ci = issue(&w, &["--name", "ci", "--expires", "30d", "--local-only"]);
    assert!(
        ci["expires_at"].as_str().is_some_and(|e| e.ends_with('Z')),
        "{ci}"
    );
    assert_eq!(ci["local_only"], true);

    let list = w.cfg_cli(&["list-tokens"]).json();
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    assert_eq!(list[0]["name"], "alice");
    assert!(list[0]["expires_at"].is_null());
    assert_eq!(list[0]["raw_file_present"], true);
    assert_eq!(list[1]["local_only"], true);
    assert!(list[1].get("token").is_none(), "never the secret: {list}");
    let text = w.cfg_cli(&["list-tokens", "--human"]);
    assert!(
        text.stdout.contains("alice") && text.stdout.contains("never"),
        "{}",
        text.stdout
    );

    // Names are unique unless replaced; bad names and expiries are usage errors.
    let out = w.cfg_cli(&["issue-token", "--name", "alice"]);
    out.expect_code(3);
    assert_eq!(out.json()["code"], "TOKEN_EXISTS");
    let again = issue(&w, &["--name", "alice", "--replace"]);
    assert_ne!(again["token"], alice["token"]);
    for bad in [
        &["--name", "../x"][..],
        &["--name", "auto"],
        &["--name", "x", "--expires", "soon"],
    ] {
        let mut all = vec!["issue-token"];
        all.extend_from_slice(bad);
        w.cfg_cli(&all).expect_code(1);
    }
    let out = w.cfg_cli(&["revoke-token", "nobody"]);
    out.expect_code(3);
    assert_eq!(out.json()["code"], "TOKEN_NOT_FOUND");
    let out = w.cfg_cli(&["revoke-token", "alice"]);
    out.ok();
    assert_eq!(
        out.json(),
        serde_json::json!({"status": "ok", "name": "alice"})
    );
    assert!(!w.cfg().join("daemon/tokens/alice.json").exists());
}

#[test]
fn a_named_token_works_at_once_and_stops_at_revocation() {
    let w = World::new();
    w.stage_all(&["calc", "chat"]);
    let _d = w.cfg_daemon(&["--load", "calc", "--load", "chat"]);
    let bob = issue(&w, &["--name", "bob"]);
    let token = bob["token"].as_str().unwrap().to_owned();
    let out = finish(
        as_token(&w, &token, &["call", "calc", "add", "1", "2"]),
        COMMAND,
    );
    out.ok();
    assert_eq!(out.stdout, "3\n");

    // A watch with bob's token is open (and quiet) when bob is revoked.
    let mut watch = as_token(
        &w,
        &token,
        &["watch", "chat", "--event", "chatMessage", "--json"],
    );
    let mut p = Proc::spawn(&mut watch);
    p.wait_stderr("watching chat.chatMessage", COMMAND);

    w.cfg_cli(&["revoke-token", "bob"]).ok();
    let out = finish(as_token(&w, &token, &["list-modules", "--json"]), COMMAND);
    out.expect_code(2);
    assert_eq!(out.json()["code"], "UNAUTHORIZED");
    assert!(out.stderr.contains("refused this client"), "{}", out.stderr);

    let status = p.wait(COMMAND).and_then(|s| s.code());
    assert_eq!(status, Some(2), "{}", p.stderr_text());
    assert!(
        p.stderr_text().contains("\"bob\" was revoked"),
        "{}",
        p.stderr_text()
    );
    let last = p.stdout_rest(Duration::from_secs(5));
    let doc: serde_json::Value = serde_json::from_str(last.trim()).unwrap();
    assert_eq!(doc["code"], "UNAUTHORIZED", "{doc}");

    // The boot token keeps working.
    w.cfg_cli(&["list"]).ok();
}

#[test]
fn an_expired_token_is_refused() {
    let w = World::new();
    w.stage("calc");
    let _d = w.cfg_daemon(&["--load", "calc"]);
    let t = issue(&w, &["--name", "brief", "--expires", "2s"]);
    let token = t["token"].as_str().unwrap().to_owned();
    // Valid now (unless this machine took two seconds to get here, which the loop allows).
    let mut refused = None;
    wait_for("the token to expire", Duration::from_secs(60), || {
        let out = finish(as_token(&w, &token, &["list"]), COMMAND);
        if out.code == Some(2) {
            refused = Some(out.stderr);
            true
        } else {
            out.ok();
            false
        }
    });
    let stderr = refused.unwrap();
    assert!(stderr.contains("\"brief\" has expired"), "{stderr}");
}

#[test]
fn without_a_config_dir_tokens_live_in_the_runtime_dir() {
    let w = World::new();
    w.stage("calc");
    let _d = w.daemon(&["--load", "calc"]);
    let out = w.cli(&["--json", "issue-token", "--name", "ops"]);
    out.ok();
    let doc = out.json();
    assert_eq!(
        doc["file"],
        w.runtime.join("tokens/ops.json").display().to_string()
    );
    assert!(w.runtime.join("tokens.json").exists());
    let mut cmd = w.command();
    cmd.env("LOGOSCORE_TOKEN", doc["token"].as_str().unwrap())
        .args(["call", "calc", "mul", "6", "7"]);
    let out = finish(cmd, COMMAND);
    out.ok();
    assert_eq!(out.stdout, "42\n");
    let list = w.cli(&["--json", "list-tokens"]);
    list.ok();
    assert_eq!(list.json()[0]["name"], "ops");
}
