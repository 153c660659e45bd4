//! A hostile module against a real daemon (issue 10, item 1; docs/security.md, "Modules are
//! not the operator"): an executable script module tries to become the operator (read the
//! client token, run `logoscore list` and `logoscore unload calc`), to look into the runtime
//! dir, to take calc's socket over and to signal calc and the core. Each attempt's outcome is
//! what the script itself saw; calc must keep serving its real callers. And without Landlock
//! the daemon says, once, that modules can read the token, and `info` shows it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::{World, bin};

/// Outcomes the script reports, one `what=allowed|denied` per line.
const ATTEMPTS: [&str; 9] = [
    "token",
    "list",
    "unload",
    "listdir",
    "unlink",
    "rebind",
    "bind_new",
    "signal_calc",
    "signal_core",
];

fn hostile_script(w: &World, calc_pid: u32, core_pid: u32) -> String {
    let bind = "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])";
    format!(
        r#"rt='{rt}'
lc='{lc}'
out="$LOGOS_DATA_DIR/report"
try() {{ what=$1; shift; if "$@" >"$LOGOS_DATA_DIR/$what.out" 2>&1; then echo "$what=allowed"; else echo "$what=denied"; fi; }}
{{
try token cat "$rt/client.token"
try list "$lc" --runtime-dir "$rt" list
try unload "$lc" --runtime-dir "$rt" unload calc
try listdir ls "$rt"
try unlink rm "$rt/modules/calc.sock"
try rebind python3 -c '{bind}' "$rt/modules/calc.sock"
try bind_new python3 -c '{bind}' "$rt/modules/evil.sock"
try signal_calc kill -0 {calc_pid}
try signal_core kill -0 {core_pid}
echo done
}} > "$out.tmp"
mv "$out.tmp" "$out"
exit 0"#,
        rt = w.runtime.display(),
        lc = bin().display(),
    )
}

#[test]
fn a_hostile_module_cannot_act_as_the_operator_or_take_calcs_socket() {
    let w = World::new();
    w.stage_all(&["calc", "chat", "greeter"]);
    let d = w.daemon(&["--load", "calc"]);
    let calc_pid = w
        .pids()
        .into_iter()
        .find(|(n, _)| n == "calc")
        .map(|(_, p)| p)
        .expect("calc runs");
    let sock = w.runtime.join("modules/calc.sock");
    let sock_before = std::fs::metadata(&sock).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    });
    w.script_module("hostile", &hostile_script(&w, calc_pid, d.proc.pid()));

    // It runs its attempts at start and exits, so its load fails; what matters is its report.
    // (`reload` reads the modules dir again: the module was written after the daemon started.)
    let load = w.cli(&["reload", "hostile"]);
    let report_path = w.data.join("hostile/report");
    support::wait_for(
        &format!("the hostile module's report (load: {load:?})"),
        Duration::from_secs(30),
        || report_path.exists(),
    );
    let report = std::fs::read_to_string(&report_path).unwrap();
    let details = |what: &str| {
        std::fs::read_to_string(w.data.join(format!("hostile/{what}.out"))).unwrap_or_default()
    };
    for what in ATTEMPTS {
        assert!(
            report.lines().any(|l| l == format!("{what}=denied")),
            "{what} was not denied:\n{report}\n--- its output\n{}",
            details(what)
        );
    }
    assert!(report.lines().any(|l| l == "done"), "{report}");
    // `logoscore` inside the module failed for the right reason: it could not read the token.
    assert!(
        details("list").contains("client.token") || details("list").contains("ermission"),
        "{}",
        details("list")
    );

    // calc is the same process on the same socket, and serves its real callers through it.
    let pids = w.pids();
    assert!(pids.contains(&("calc".to_owned(), calc_pid)), "{pids:?}");
    let sock_after = std::fs::metadata(&sock).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    });
    assert_eq!(sock_before.ok(), sock_after.ok(), "calc.sock was replaced");
    assert!(!w.runtime.join("modules/evil.sock").exists());
    w.cli(&["load", "greeter"]).ok();
    assert_eq!(
        w.cli_json(&["call", "greeter", "sum", "2", "3"])["result"],
        5
    );
    assert_eq!(w.cli_json(&["call", "calc", "add", "2", "3"])["result"], 5);

    let info = w.cli(&["info", "calc"]);
    info.ok();
    let expected = format!("confinement: {}", logos_core::confinement(true));
    assert!(
        expected.contains("landlock v"),
        "this kernel has no Landlock"
    );
    assert!(info.stdout.contains(&expected), "{}", info.stdout);
}

#[test]
fn without_landlock_the_daemon_warns_once_and_info_shows_no_confinement() {
    let w = World::new();
    w.stage_all(&["calc", "chat"]);
    let mut cmd = w.command();
    cmd.env("LOGOS_LANDLOCK", "off")
        .arg("--json")
        .arg("run")
        .arg("-m")
        .arg(&w.modules)
        .arg("--data-dir")
        .arg(&w.data)
        .args(["--load", "calc", "--load", "chat"]);
    let mut d = support::Daemon::spawn(cmd);
    d.ready = d.wait_ready();
    let info = w.cli(&["info", "calc"]);
    info.ok();
    assert!(info.stdout.contains("confinement: none"), "{}", info.stdout);
    let warning = "modules can read the operator's client token";
    let log = d.proc.stderr_text();
    assert_eq!(log.matches(warning).count(), 1, "{log}");
    assert!(log.contains("WARN"), "{log}");
}

/// With a config dir, the operator's tokens also live in `<cfg>/client/auto.json` and
/// `<cfg>/daemon/tokens.json`, outside the runtime dir: Landlock withholds both dirs too, while
/// the module's own data dir (`<cfg>/data/<name>`) stays writable.
#[test]
fn a_module_cannot_read_the_config_dirs_tokens() {
    let w = World::new();
    let cfg = w.cfg();
    w.cfg_cli(&["issue-token", "--name", "ops"]).ok();
    assert!(cfg.join("daemon/tokens.json").exists());
    let _d = w.cfg_daemon(&[]);
    assert!(cfg.join("client/auto.json").exists());
    let script = format!(
        r#"cfg='{cfg}'
try() {{ what=$1; shift; if "$@" >/dev/null 2>&1; then echo "$what=allowed"; else echo "$what=denied"; fi; }}
{{
try auto cat "$cfg/client/auto.json"
try tokens cat "$cfg/daemon/tokens.json"
try state cat "$cfg/daemon/state.json"
try listclient ls "$cfg/client"
try data touch "$LOGOS_DATA_DIR/written"
echo done
}} > "$LOGOS_DATA_DIR/report.tmp"
mv "$LOGOS_DATA_DIR/report.tmp" "$LOGOS_DATA_DIR/report"
exit 0"#,
        cfg = cfg.display()
    );
    w.script_module("snoop", &script);
    let load = w.cfg_cli(&["reload", "snoop"]);
    let report_path = cfg.join("data/snoop/report");
    support::wait_for(
        &format!("the snooping module's report (load: {load:?})"),
        Duration::from_secs(30),
        || report_path.exists(),
    );
    let report = std::fs::read_to_string(&report_path).unwrap();
    for what in ["auto", "tokens", "state", "listclient"] {
        assert!(
            report.lines().any(|l| l == format!("{what}=denied")),
            "{what} was not denied:\n{report}"
        );
    }
    assert!(report.lines().any(|l| l == "data=allowed"), "{report}");
    w.cfg_cli(&["stop"]).ok();
}

/// Every attempt of the `hostile` module's `attack`, in its report.
const ATTACKS: [&str; 14] = [
    "read_secret",
    "read_neighbour_data",
    "write_outside",
    "tcp_connect",
    "ptrace_neighbour",
    "ptrace_protected",
    "read_protected_memory",
    "signal_core",
    "signal_protected",
    "call_protected_write",
    "call_outside_grant",
    "unload_plugin",
    "token_in_another_name",
    "spoof_identity",
];

/// The config of the hostile-module runs: strict confinement, kv protected with greeter as
/// its only writer.
const STRICT_CONFIG: &str =
    "strict_confinement = true\n\n[modules.kv]\nprotected = true\nwriters = [\"greeter\"]\n";

/// Stages calc, kv (protected by its metadata), greeter, chat and hostile, and plants what
/// hostile will reach for: a shadow-like secret and a file in kv's data dir.
fn hostile_world() -> World {
    let w = World::new();
    w.stage_all(&["calc", "kv", "greeter", "chat", "hostile"]);
    let meta = w.modules.join("kv/metadata.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    json["protected"] = true.into();
    std::fs::write(&meta, json.to_string()).unwrap();
    std::fs::create_dir_all(w.dir.path().join("secrets")).unwrap();
    std::fs::write(
        w.dir.path().join("secrets/shadow"),
        "root:$6$salt$hash:19000::::::\n",
    )
    .unwrap();
    std::fs::create_dir_all(w.data.join("kv")).unwrap();
    std::fs::write(w.data.join("kv/planted"), "kv's private state\n").unwrap();
    w
}

fn pid_of(w: &World, module: &str) -> u32 {
    w.pids()
        .into_iter()
        .find(|(n, _)| n == module)
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("{module} runs"))
}

/// Issue 18, Tests: a hostile module tries everything the issue lists against a real daemon
/// (strict confinement, kv protected); every attempt fails and is logged, kv's state, calc
/// and the core are untouched, and greeter (kv's writer) still works.
#[test]
fn issue_18_a_hostile_module_is_refused_everything_and_every_refusal_is_logged() {
    hostile_attack(true);
}

/// The same with spare hosts off: hostile starts the cold way, confined before its `exec`.
#[test]
fn issue_18_a_hostile_module_started_cold_is_refused_everything() {
    hostile_attack(false);
}

/// Issue 18's attack against a daemon; `spare`: whether the daemon keeps spare hosts, so
/// hostile, loaded after calc and kv, runs in one (docs/architecture.md, "Spare hosts") and
/// the attacks test the confinement it gave itself, or starts the cold way.
fn hostile_attack(spare: bool) {
    let w = hostile_world();
    let config = w.write(
        "logoscore.toml",
        &format!("spare_host = {spare}\n{STRICT_CONFIG}"),
    );
    let d = w.daemon(&[
        "-c",
        config.to_str().unwrap(),
        "--load",
        "calc",
        "--load",
        "kv",
    ]);
    w.cli(&["call", "kv", "set", "balance", "100"]).ok();
    let keys_before = w.cli_json(&["call", "kv", "keys"])["result"].clone();
    let (calc_pid, kv_pid) = (pid_of(&w, "calc"), pid_of(&w, "kv"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();

    w.cli(&["load", "hostile"]).ok();
    let plan = serde_json::json!({
        "secret": w.dir.path().join("secrets/shadow"),
        "neighbourFile": w.data.join("kv/planted"),
        "outside": w.dir.path().join("pwned"),
        "tcpPort": port,
        "corePid": d.proc.pid(),
        "neighbourPid": calc_pid,
        "protectedPid": kv_pid,
        "protected": "kv",
        "protectedWrite": "set",
        "granted": "calc",
        "outsideGrant": "mul",
        "impersonate": "greeter",
    });
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid_of(&w, "hostile"))).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let started = if spare { "--spare " } else { " --module " };
    assert!(cmdline.contains(started), "hostile runs as {cmdline:?}");
    let out = w.cli_json(&["call", "hostile", "attack", &format!("json:{plan}")]);
    let report = &out["result"];
    for what in ATTACKS {
        let outcome = report[what].as_str().unwrap_or_default();
        assert!(
            outcome.starts_with("denied: "),
            "{what} was not denied: {outcome}\n{report:#}"
        );
    }
    // Refused for the right reasons.
    for (what, why) in [
        ("read_secret", "Permission denied"),
        ("tcp_connect", "Operation not permitted"),
        ("ptrace_protected", "Operation not permitted"),
        ("read_protected_memory", "Operation not permitted"),
        (
            "call_protected_write",
            "kv is protected and only its writers (greeter)",
        ),
        ("call_outside_grant", "hostile may call only add of calc"),
        ("unload_plugin", "hostile may not call core.unloadPlugin"),
        (
            "token_in_another_name",
            "you are \"hostile\", not \"greeter\"",
        ),
        ("spoof_identity", "calc refused"),
    ] {
        let outcome = report[what].as_str().unwrap_or_default();
        assert!(outcome.contains(why), "{what}: {outcome}");
    }
    assert!(listener.accept().is_err(), "a TCP connection arrived");
    assert!(!w.dir.path().join("pwned").exists());

    // Nothing changed: kv's state, the processes, the core; kv's writer still writes.
    assert_eq!(w.cli_json(&["call", "kv", "keys"])["result"], keys_before);
    assert_eq!(w.cli_json(&["call", "kv", "get", "balance"])["result"], 100);
    let pids = w.pids();
    assert!(pids.contains(&("calc".to_owned(), calc_pid)), "{pids:?}");
    assert!(pids.contains(&("kv".to_owned(), kv_pid)), "{pids:?}");
    assert_eq!(w.cli_json(&["call", "calc", "add", "2", "3"])["result"], 5);
    let info = w.cli(&["info", "hostile"]);
    info.ok();
    for line in [
        "confinement: landlock v",
        "network: off",
        "seccomp: baseline",
    ] {
        assert!(info.stdout.contains(line), "{line}: {}", info.stdout);
    }
    assert!(
        w.cli(&["info", "kv"])
            .stdout
            .contains("protected: yes (writers: greeter)"),
        "kv is not shown protected"
    );

    // Every attempt is in the core's log: the module's own account of each (its stderr,
    // forwarded by the core), and for those the core or the target decides, their refusal.
    let log = d.proc.stderr_text();
    for what in ATTACKS {
        assert!(
            log.contains(&format!("hostile attempt {what}: denied")),
            "{what} is not in the log:\n{log}"
        );
    }
    for line in [
        "hostile may not call core.unloadPlugin",
        "module asked for a token in another module's name",
        "refused a peer connection",
        "kv refused hostile's call to kv.set",
        "calc refused hostile's call to calc.mul",
    ] {
        assert!(log.contains(line), "{line:?} is not in the log:\n{log}");
    }
    w.cli(&["stop"]).ok();
}

/// Issue 18, Tests, the fallback: with Landlock unavailable (simulated with
/// `LOGOS_LANDLOCK=off`) `info` reports `confinement: none`, and strict mode refuses to start
/// the hostile module (and the protected kv, which needs Landlock's signal scoping anyway).
#[test]
fn issue_18_without_landlock_confinement_is_none_and_strict_mode_refuses_the_hostile_module() {
    let w = hostile_world();
    let run = |config: &std::path::Path| {
        let mut cmd = w.command();
        cmd.env("LOGOS_LANDLOCK", "off")
            .arg("--json")
            .arg("run")
            .arg("-c")
            .arg(config)
            .arg("-m")
            .arg(&w.modules)
            .arg("--data-dir")
            .arg(&w.data);
        let mut d = support::Daemon::spawn(cmd);
        d.ready = d.wait_ready();
        d
    };

    // Not strict: the module runs, unconfined, and says so.
    let lax = w.write("lax.toml", "");
    let d = run(&lax);
    w.cli(&["load", "hostile"]).ok();
    let info = w.cli(&["info", "hostile"]);
    info.ok();
    assert!(info.stdout.contains("confinement: none"), "{}", info.stdout);
    assert!(
        d.proc
            .stderr_text()
            .contains("modules can read the operator's client token")
    );
    w.cli(&["stop"]).ok();
    drop(d);

    // Strict: refused before it runs, naming why; so is the protected kv.
    let strict = w.write("logoscore.toml", STRICT_CONFIG);
    let _d = run(&strict);
    let out = w.cli(&["load", "hostile"]);
    out.expect_code(3);
    assert!(
        out.stderr.contains("strict_confinement is on"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("would run unconfined"),
        "{}",
        out.stderr
    );
    assert!(!w.pids().iter().any(|(n, _)| n == "hostile"));
    let out = w.cli(&["load", "kv"]);
    out.expect_code(3);
    assert!(out.stderr.contains("may not start"), "{}", out.stderr);
    w.cli(&["info", "hostile"]).ok();
    w.cli(&["stop"]).ok();
}
