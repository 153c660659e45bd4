//! After the daemon is SIGKILLed, its guardian kills what its modules started, including a
//! child that left the module's process group with `setsid` (issue 10, item 16;
//! docs/security.md, "Process hygiene"): each module runs in a cgroup of its own, which the
//! guardian kills. Without usable cgroups the documented fallback (process groups) lets such a
//! child survive, and the test checks that instead, then kills it itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use support::{World, alive, target_dir, wait_for};

#[test]
fn the_guardian_kills_a_setsid_child_of_a_module_when_the_daemon_is_killed() {
    let w = World::new();
    w.stage("calc");
    w.write_metadata(
        "calc",
        r#"{"name":"calc","version":"1.0.0","main":"run.sh","restart":"never"}"#,
    );
    let run = w.modules.join("calc/run.sh");
    std::fs::write(
        &run,
        format!(
            "#!/bin/sh\nsetsid sleep 300 </dev/null >/dev/null 2>&1 &\necho $! > \"$LOGOS_DATA_DIR/escapee\"\nexec '{host}' --module '{lib}' --name calc\n",
            host = target_dir().join("logos_host").display(),
            lib = target_dir().join("libcalc.so").display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut d = w.daemon(&["--load", "calc"]);
    assert_eq!(w.cli_json(&["call", "calc", "add", "1", "2"])["result"], 3);
    let escapee_file = w.data.join("calc/escapee");
    wait_for("the escapee's pid", Duration::from_secs(10), || {
        std::fs::read_to_string(&escapee_file).is_ok_and(|s| s.ends_with('\n'))
    });
    let escapee: u32 = std::fs::read_to_string(&escapee_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(escapee));

    d.proc.kill();
    if logos_core::testing::cgroups_available() {
        wait_for(
            "the guardian to kill the setsid child",
            Duration::from_secs(15),
            || !alive(escapee),
        );
    } else {
        wait_for("the guardian to finish", Duration::from_secs(15), || {
            !w.socket().exists()
        });
        assert!(alive(escapee), "without cgroups a setsid child escapes");
        if let Some(pid) = rustix::process::Pid::from_raw(escapee as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}
