//! Daemon discovery through the reference's config dir: `daemon/state.json` written when the
//! core is ready and removed when it exits, `client/auto.json` (0600) and `client/config.json`,
//! `$LOGOSCORE_CONFIG_DIR`, `$LOGOSCORE_TOKEN`, parallel cores in parallel config dirs, and a
//! client given a config dir never reaching another core (stale state, a foreign socket, an
//! empty config dir next to a running default core).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use support::{EXIT, World, finish};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn read(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", p.display()))
}

#[test]
fn a_core_announces_itself_in_its_config_dir_until_it_exits() {
    let w = World::new();
    w.stage("calc");
    let cfg = w.cfg();
    let mut d = w.cfg_daemon(&["--load", "calc"]);

    let state = read(&cfg.join("daemon/state.json"));
    assert_eq!(state["pid"], d.ready["pid"], "{state}");
    assert_eq!(state["instance_id"], d.ready["instance"], "{state}");
    assert_eq!(state["socket"], d.ready["socket"], "{state}");
    assert_eq!(state["runtime_dir"], cfg.join("run").display().to_string());
    assert_eq!(state["data_dir"], cfg.join("data").display().to_string());
    assert_eq!(
        state["resolved"]["modules"]["core_service"]["transports"][0]["protocol"],
        "local"
    );
    assert_eq!(mode(&cfg.join("daemon/state.json")), 0o600);
    assert_eq!(mode(&cfg.join("daemon")), 0o700);

    // client/auto.json holds the core's boot token (the same as <runtime dir>/client.token).
    let auto = read(&cfg.join("client/auto.json"));
    let token = std::fs::read_to_string(cfg.join("run/client.token")).unwrap();
    assert_eq!(auto["token"], token.trim());
    assert_eq!(mode(&cfg.join("client/auto.json")), 0o600);
    let config = read(&cfg.join("client/config.json"));
    assert_eq!(config["version"], 2);
    assert_eq!(config["token_file"], "auto.json");
    assert_eq!(config["instance_id"], state["instance_id"]);
    assert_eq!(config["daemon"]["core_service"]["transport"], "local");

    // The environment variable works like the flag.
    let mut cmd = w.bare();
    cmd.env("LOGOSCORE_CONFIG_DIR", &cfg)
        .args(["call", "calc", "add", "1", "2"]);
    let out = finish(cmd, support::COMMAND);
    out.ok();
    assert_eq!(out.stdout, "3\n");

    // stop returns once the core's process has gone, and its announcement with it.
    w.cfg_cli(&["stop"]).ok();
    assert!(!cfg.join("daemon/state.json").exists());
    assert!(!cfg.join("client/auto.json").exists());
    assert!(!cfg.join("run/core.sock").exists());
    assert!(d.wait_exit(EXIT).success());
}

#[test]
fn parallel_cores_in_parallel_config_dirs() {
    let a = World::new();
    let b = World::new();
    for w in [&a, &b] {
        w.stage_all(&["calc", "kv"]);
    }
    let _da = a.cfg_daemon(&[]);
    let _db = b.cfg_daemon(&[]);
    a.cfg_cli(&["load-module", "calc"]).ok();
    b.cfg_cli(&["load-module", "kv"]).ok();
    let loaded = |w: &World| {
        let list = w.cfg_json(&["list-modules", "--loaded"]);
        list.as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(loaded(&a), ["calc"]);
    assert_eq!(loaded(&b), ["kv"]);
    // One core per config dir, even with another runtime dir.
    let mut cmd = a.bare();
    cmd.arg("--config-dir")
        .arg(a.cfg())
        .args(["-D", "-m"])
        .arg(&a.modules)
        .arg("--runtime-dir")
        .arg(a.dir.path().join("other-run"));
    let out = finish(cmd, support::COMMAND);
    out.expect_code(1);
    assert!(
        out.stderr.contains("already runs for config dir"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_client_given_a_config_dir_never_talks_to_another_core() {
    let w = World::new();
    w.stage("calc");
    // A core at the runtime dir the environment names, without a config dir.
    let _other = w.daemon(&["--load", "calc"]);
    let mut cmd = w.bare();
    cmd.env("LOGOS_RUNTIME_DIR", &w.runtime)
        .arg("--config-dir")
        .arg(w.cfg())
        .arg("list");
    let out = finish(cmd, support::COMMAND);
    out.expect_code(2);
    assert!(
        out.stderr.contains("no core is running at config dir"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("daemon/state.json"), "{}", out.stderr);

    // A config dir and --runtime-dir together are a usage error, not a guess.
    let out = w.cfg_cli(&["--runtime-dir", &w.runtime.display().to_string(), "list"]);
    out.expect_code(1);
    assert!(out.stderr.contains("give one of them"), "{}", out.stderr);

    // A state file whose core is gone: stale, exit 2.
    let daemon_dir = w.cfg().join("daemon");
    std::fs::create_dir_all(&daemon_dir).unwrap();
    let stale = serde_json::json!({
        "version": 1, "instance_id": "dead", "pid": 4_194_305, "started_at": "",
        "logoscore_version": "", "config_dir": w.cfg(), "runtime_dir": w.runtime,
        "socket": w.socket(), "data_dir": null, "modules_dirs": [], "resolved": null
    });
    std::fs::write(daemon_dir.join("state.json"), stale.to_string()).unwrap();
    let out = w.cfg_cli(&["list"]);
    out.expect_code(2);
    assert!(out.stderr.contains("stale"), "{}", out.stderr);

    // A state file naming another core's socket with a live pid that is not that core's: the
    // peer's pid is checked before any token is sent.
    let mut lie = stale.clone();
    lie["pid"] = serde_json::json!(std::process::id());
    std::fs::write(daemon_dir.join("state.json"), lie.to_string()).unwrap();
    std::fs::create_dir_all(w.cfg().join("client")).unwrap();
    std::fs::write(
        w.cfg().join("client/auto.json"),
        format!("{{\"token\": \"{}\"}}", "cd".repeat(32)),
    )
    .unwrap();
    let out = w.cfg_cli(&["list"]);
    out.expect_code(2);
    assert!(out.stderr.contains("no token was sent"), "{}", out.stderr);
}

#[test]
fn logoscore_token_from_the_environment() {
    let w = World::new();
    w.stage("calc");
    let _d = w.cfg_daemon(&["--load", "calc"]);
    let auto = read(&w.cfg().join("client/auto.json"));
    let token = auto["token"].as_str().unwrap();
    let with_token = |t: &str, args: &[&str]| {
        let mut cmd = w.bare();
        cmd.env("LOGOSCORE_TOKEN", t)
            .arg("--config-dir")
            .arg(w.cfg())
            .args(args);
        finish(cmd, support::COMMAND)
    };
    std::fs::remove_file(w.cfg().join("client/auto.json")).unwrap();
    with_token(token, &["call", "calc", "add", "2", "2"]).ok();
    let out = with_token(&"ef".repeat(32), &["list-modules", "--json"]);
    out.expect_code(2);
    assert!(out.stderr.contains("refused this client"), "{}", out.stderr);
    assert!(out.stderr.contains("$LOGOSCORE_TOKEN"), "{}", out.stderr);
    assert_eq!(out.json()["code"], "UNAUTHORIZED");
    let out = with_token("not-a-token", &["list"]);
    out.expect_code(2);
    assert!(out.stderr.contains("64 hex digits"), "{}", out.stderr);
    // Without the file and without the variable, a client says what is missing.
    let out = w.cfg_cli(&["list"]);
    out.expect_code(2);
    assert!(out.stderr.contains("auto.json"), "{}", out.stderr);
}

#[test]
fn access_group_shares_the_socket_and_the_client_token() {
    let w = World::new();
    w.stage("calc");
    // Root may give files to any group; anyone else to their own.
    let gid = if rustix::process::getuid().is_root() {
        65_534
    } else {
        rustix::process::getgid().as_raw()
    };
    let _d = w.cfg_daemon(&["--access-group", &gid.to_string()]);
    let cfg = w.cfg();
    for (path, want, shared) in [
        (cfg.clone(), 0o710, true),
        (cfg.join("client"), 0o750, true),
        (cfg.join("client/auto.json"), 0o640, true),
        (cfg.join("client/config.json"), 0o640, true),
        (cfg.join("daemon"), 0o700, false),
        (cfg.join("daemon/state.json"), 0o600, false),
        (cfg.join("run"), 0o710, true),
        (cfg.join("run/core.sock"), 0o660, true),
        (cfg.join("run/client.token"), 0o640, true),
        (cfg.join("run/modules"), 0o700, false),
    ] {
        assert_eq!(mode(&path), want, "{}", path.display());
        if shared {
            assert_eq!(
                std::fs::metadata(&path).unwrap().gid(),
                gid,
                "{}",
                path.display()
            );
        }
    }
    w.cfg_cli(&["list-modules"]).ok();
    // A group that does not exist is refused before anything starts.
    let out = w.cli(&[
        "run",
        "-m",
        &w.modules.display().to_string(),
        "--access-group",
        "no-such-group-h3",
    ]);
    out.expect_code(1);
    assert!(out.stderr.contains("no such group"), "{}", out.stderr);
}
