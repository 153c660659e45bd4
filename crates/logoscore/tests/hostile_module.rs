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
