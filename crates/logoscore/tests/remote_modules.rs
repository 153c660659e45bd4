//! Issue 11: remote modules behave as local ones. A real `logoscore run --listen
//! 127.0.0.1:0` and real `logos_host --remote` processes that share no file with it (their
//! own temp dirs; the credential file is copied over): calls through the core, listing with
//! the peer address, local modules calling remote ones and remote ones calling local ones
//! (tokens, events, 64 MiB streams both ways), and revocation closing a live link at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod remote_support;
mod support;

use remote_support::{core, grant, log, record, remote, spawn_remote, wait_state};
use support::{EXIT, World, wait_for};

const STREAM: u64 = 64 * 1024 * 1024;

#[test]
fn issue_11_remote_calc_answers_the_core_and_local_greeter_and_is_listed_with_its_peer() {
    let w = World::new();
    w.stage_all(&["greeter", "chat"]);
    let d = core(&w, "", &[]);
    let calc = remote(&w, "calc", &[]);

    assert_eq!(w.cli_json(&["call", "calc", "add", "2", "3"])["result"], 5);
    let rec = record(&w, "calc");
    assert_eq!(rec["state"], "ready");
    let location = rec["location"].as_str().unwrap_or_default().to_owned();
    assert!(
        location.starts_with("127.0.0.1:") && location != remote_support::listen(&d),
        "location is the remote's address: {rec}"
    );
    assert!(
        rec["pid"].is_null(),
        "no local pid for a remote module: {rec}"
    );
    let table = w.cli(&["list"]);
    table.ok();
    assert!(
        table.stdout.contains("LOCATION") && table.stdout.contains(&location),
        "{}",
        table.stdout
    );
    assert_eq!(record(&w, "chat")["location"], "local");

    // greeter depends on calc ^1: the remote calc counts as loaded; only chat is started.
    w.cli(&["load", "greeter"]).ok();
    assert_eq!(
        w.cli_json(&["call", "greeter", "sum", "20", "22"])["result"],
        42
    );
    // Its interface came from the module itself.
    let info = w.cli(&["info", "calc"]);
    info.ok();
    assert!(info.stdout.contains("add"), "{}", info.stdout);
    drop(calc);
    wait_state(&w, "calc", "disconnected");
    let out = w.cli(&["call", "greeter", "sum", "1", "2"]);
    out.expect_code(3);
    assert!(
        out.stderr.contains("unavailable") || out.stderr.contains("disconnected"),
        "{}",
        out.stderr
    );
    let table = w.cli(&["list"]);
    assert!(
        table.stdout.contains("remote, disconnected since"),
        "{}",
        table.stdout
    );
    assert!(
        log(&d).contains("remote module disconnected"),
        "{}",
        log(&d)
    );
}

#[test]
fn issue_11_a_remote_module_calls_local_ones_receives_their_events_and_streams_64_mib_to_them() {
    let w = World::new();
    w.stage_all(&["relay", "chat"]);
    let _d = core(&w, "", &["relay", "chat"]);
    let _probe = remote(&w, "probe", &["--allow", "relay", "--allow", "chat"]);

    // Remote → local call, with a token through the core's relay.
    assert_eq!(
        w.cli_json(&["call", "probe", "invoke", "relay", "sinkResult", "[]"])["result"],
        serde_json::Value::Null
    );
    // Remote → local stream of 64 MiB, credit-controlled (the relay reads slowly).
    let report = w.cli_json(&[
        "call",
        "probe",
        "streamTo",
        "relay",
        "sink",
        &STREAM.to_string(),
    ])["result"]
        .clone();
    assert_eq!(report["sent"], STREAM);
    assert!(
        report["maxUnacked"].as_u64().unwrap_or(u64::MAX) <= 256 * 1024,
        "the credit window holds across the link: {report}"
    );
    let sunk = w.cli_json(&["call", "relay", "sinkResult"])["result"].clone();
    assert_eq!(sunk["received"], STREAM);
    assert_eq!(sunk["hash"], report["hash"], "the bytes arrived intact");

    // Local events reach the remote module.
    w.cli(&["call", "probe", "watch", "chat", "chatMessage"])
        .ok();
    wait_for(
        "the remote probe subscribed",
        remote_support::CONNECT,
        || {
            w.cli(&["call", "chat", "send", "ada", "hi"]).code == Some(0)
                && w.cli_json(&["call", "probe", "seen"])["result"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty())
        },
    );
    let seen = w.cli_json(&["call", "probe", "seen"])["result"].clone();
    assert_eq!(seen[0]["event"], "chat.chatMessage", "{seen}");
}

#[test]
fn issue_11_local_modules_stream_64_mib_to_a_remote_one_and_receive_its_events() {
    let w = World::new();
    w.stage_all(&["probe"]);
    let _d = core(&w, "", &["probe"]);
    let _relay = remote(&w, "relay", &["--allow", "probe"]);
    let _chat = remote(&w, "chat", &[]);

    let report = w.cli_json(&[
        "call",
        "probe",
        "streamTo",
        "relay",
        "sink",
        &STREAM.to_string(),
    ])["result"]
        .clone();
    assert_eq!(report["sent"], STREAM);
    let sunk = w.cli_json(&["call", "relay", "sinkResult"])["result"].clone();
    assert_eq!(sunk["received"], STREAM);
    assert_eq!(sunk["hash"], report["hash"]);

    // A remote module's events reach a local subscriber (probe subscribes at chat itself,
    // through the core's relay), and the core's operator too.
    w.cli(&["call", "probe", "watch", "chat", "chatMessage"])
        .ok();
    wait_for(
        "probe saw the remote chat's event",
        remote_support::CONNECT,
        || {
            w.cli(&["call", "chat", "send", "bob", "hello"]).code == Some(0)
                && w.cli_json(&["call", "probe", "seen"])["result"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty())
        },
    );
    let seen = w.cli_json(&["call", "probe", "seen"])["result"].clone();
    assert_eq!(seen[0]["event"], "chat.chatMessage", "{seen}");
    assert!(seen.to_string().contains("bob"), "{seen}");
}

#[test]
fn issue_11_revoking_a_credential_closes_the_live_link_and_the_remote_gives_up() {
    let w = World::new();
    let d = core(&w, "", &[]);
    let mut calc = remote(&w, "calc", &[]);
    let listed = w.cli_json(&["remote", "list"]);
    assert_eq!(listed[0]["module"], "calc");
    assert_eq!(listed[0]["state"], "ready");

    w.cli(&["remote", "revoke", "calc"]).ok();
    wait_state(&w, "calc", "disconnected");
    let status = calc.proc.wait(EXIT).expect("the remote exits once refused");
    assert_eq!(status.code(), Some(1));
    assert!(
        calc.proc.stderr_text().contains("revoked"),
        "{}",
        calc.proc.stderr_text()
    );
    assert!(log(&d).contains("was revoked"), "{}", log(&d));
    assert_eq!(w.cli_json(&["remote", "list"])[0]["state"], "revoked");
    // Revoking twice says there is nothing left to revoke.
    w.cli(&["remote", "revoke", "calc"]).expect_code(3);

    // A new grant lets it back in.
    let again = grant(&w, "calc", &[]);
    let calc2 = spawn_remote("calc", &again);
    calc2.wait_connected(1);
    wait_state(&w, "calc", "ready");
    assert_eq!(w.cli_json(&["call", "calc", "add", "1", "1"])["result"], 2);
}

#[test]
fn issue_11_an_sdk_executable_joins_with_logos_remote_and_no_code_change() {
    let w = World::new();
    let _d = core(&w, "", &[]);
    let credential = grant(&w, "bmb", &[]);
    // The benchmark's module executable (`logos_sdk::run_named`), as an operator would run it
    // on the remote machine: metadata.json beside it, LOGOS_REMOTE naming the credential.
    let there = tempfile::tempdir().unwrap();
    let exe = there.path().join("benchmod");
    std::os::unix::fs::symlink(support::target_dir().join("logos-bench"), &exe).unwrap();
    std::fs::write(
        there.path().join("metadata.json"),
        r#"{"name": "bmb", "version": "1.0.0", "description": "a benchmark module, remote"}"#,
    )
    .unwrap();
    let copy = there.path().join("bmb.credential.json");
    std::fs::copy(&credential, &copy).unwrap();
    let mut cmd = std::process::Command::new(&exe);
    cmd.current_dir(there.path())
        .env_clear()
        .env("LOGOS_REMOTE", &copy)
        .env("LOGOS_MODULE", "bmb")
        .stdin(std::process::Stdio::null());
    let remote = support::Proc::spawn(&mut cmd);
    wait_for("bmb connected", remote_support::CONNECT, || {
        record(&w, "bmb")["state"] == "ready"
    });
    assert_eq!(w.cli_json(&["call", "bmb", "echo", "7"])["result"], 7);
    let info = w.cli_json(&["info", "bmb"]);
    assert!(
        info.to_string().contains("a benchmark module, remote"),
        "the metadata came from the module: {info}"
    );
    // An unload asks the remote module to shut down: it exits 0, and the core cannot start it.
    let mut remote = remote;
    w.cli(&["unload", "bmb"]).ok();
    let status = remote.wait(EXIT).expect("the remote exits after unload");
    assert_eq!(status.code(), Some(0), "{}", remote.stderr_text());
    assert_eq!(record(&w, "bmb")["state"], "stopped");
    let out = w.cli(&["load", "bmb"]);
    out.expect_code(3);
    assert!(out.stderr.contains("remote module"), "{}", out.stderr);
}
