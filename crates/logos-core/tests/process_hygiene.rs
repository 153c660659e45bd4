//! What a module leaves behind (issue 10, item 16; docs/security.md, "Process hygiene"): a
//! child that left the module's process group with `setsid` still dies with the module,
//! because each module process runs in a cgroup of its own where the core can make one. Where
//! it cannot, the documented fallback is the process group, which such a child escapes: the
//! test checks that instead (and cleans the child up itself).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use support::{World, alive, int, target_dir, wait_for};

/// Stages calc as a script that first starts `setsid sleep 300` (its pid in
/// `<data>/calc/escapee`) and then execs `logos_host` with calc's library.
pub fn stage_escaping_calc(w: &World) {
    w.stage("calc");
    let dir = w.modules.join("calc");
    w.write_metadata(
        "calc",
        r#"{"name":"calc","version":"1.0.0","main":"run.sh","restart":"never"}"#,
    );
    let script = format!(
        "#!/bin/sh\nsetsid sleep 300 </dev/null >/dev/null 2>&1 &\necho $! > \"$LOGOS_DATA_DIR/escapee\"\nexec '{host}' --module '{lib}' --name calc\n",
        host = target_dir().join("logos_host").display(),
        lib = target_dir().join("libcalc.so").display(),
    );
    std::fs::write(dir.join("run.sh"), script).unwrap();
    std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The session id of process `pid` (field 6 of `/proc/<pid>/stat`).
fn session_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

#[tokio::test]
async fn a_child_that_called_setsid_dies_when_its_module_is_unloaded() {
    let mut w = World::new();
    stage_escaping_calc(&w);
    let core = w.start().await;
    core.load("calc").await.expect("load calc");
    assert_eq!(
        core.call("calc", "add", vec![int(2), int(3)])
            .await
            .unwrap(),
        int(5)
    );
    let calc = core
        .module("calc")
        .ok()
        .and_then(|m| m.pid)
        .expect("calc pid");
    let escapee_file = w.data.join("calc/escapee");
    wait_for("the escapee's pid", Duration::from_secs(10), || {
        std::fs::read_to_string(&escapee_file).is_ok_and(|s| s.ends_with('\n'))
    })
    .await;
    let escapee: u32 = std::fs::read_to_string(&escapee_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(
        "the escapee to lead its own session",
        Duration::from_secs(10),
        || session_of(escapee) == Some(escapee),
    )
    .await;
    assert_ne!(
        session_of(escapee),
        session_of(calc),
        "it left calc's session"
    );

    let cgroups = logos_core::testing::cgroups_available();
    if cgroups {
        let own = std::fs::read_to_string(format!("/proc/{calc}/cgroup")).unwrap();
        assert!(
            own.contains("/logos-"),
            "calc runs in a cgroup of its own: {own}"
        );
    }
    core.unload("calc", false).await.expect("unload");
    if cgroups {
        wait_for(
            "the setsid child to die with its module",
            Duration::from_secs(10),
            || !alive(escapee),
        )
        .await;
    } else {
        // The documented fallback: the process group is killed, which this child left.
        assert!(
            alive(escapee),
            "without cgroups the setsid child outlives its module"
        );
        support::signal(escapee, libc::SIGKILL);
    }
    core.shutdown().await;
}
