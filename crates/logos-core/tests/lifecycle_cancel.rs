//! Lifecycle operations survive their caller going away (issue 10, item 2): a load whose
//! caller is cancelled mid-start still completes, helpers and all, and a second load sees
//! it; an unload whose caller is cancelled still stops and reaps the module before anything
//! starts it again, so there is never a second instance and the socket stays the new one's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_core::{Core, State};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use support::{World, alive, int, target_dir, wait_for, wait_in_flight};

/// Stages `probe` behind a start gate: a shell script that starts a helper process (`sleep`,
/// its pid written to `helper.pid`), waits until the file `go` exists, then execs
/// `logos_host` with the probe library. Both files live in probe's data dir (the script's
/// working directory).
fn gated_probe(w: &World) {
    w.stage("probe");
    let dir = w.modules.join("probe");
    let meta = std::fs::read_to_string(dir.join("metadata.json")).expect("metadata");
    let mut json: serde_json::Value = serde_json::from_str(&meta).expect("json");
    let lib = target_dir().join(json["main"].as_str().expect("main"));
    json["main"] = "run.sh".into();
    std::fs::write(dir.join("metadata.json"), json.to_string()).expect("metadata");
    let script = format!(
        "#!/bin/sh\nsleep 3599 >/dev/null 2>&1 &\necho $! > helper.pid\nwhile [ ! -e go ]; do sleep 0.02; done\nexec '{host}' --module '{lib}' --name probe\n",
        host = target_dir().join("logos_host").display(),
        lib = lib.display(),
    );
    std::fs::write(dir.join("run.sh"), script).expect("script");
    std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
}

fn state(core: &Core, name: &str) -> State {
    core.module(name).expect("known").state
}

fn helper_pid(data: &Path) -> Option<u32> {
    std::fs::read_to_string(data.join("helper.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[tokio::test]
async fn issue_10_a_cancelled_load_still_completes_and_a_second_load_sees_it() {
    let mut w = World::new();
    gated_probe(&w);
    // Generous: the module waits for the test's go, and the machine may be busy.
    let b = w.builder().start_timeout(Duration::from_secs(120));
    let core = w.start_with(b).await;
    let data = w.data.join("probe");

    let load = tokio::spawn({
        let core = core.clone();
        async move { core.load("probe").await }
    });
    wait_for(
        "probe starting with its helper",
        Duration::from_secs(60),
        || state(&core, "probe") == State::Starting && helper_pid(&data).is_some(),
    )
    .await;
    // The caller goes away mid-start (a dropped future: Ctrl-C, a deadline).
    load.abort();
    let _ = load.await;
    let helper = helper_pid(&data).expect("helper pid");
    std::fs::write(data.join("go"), "").expect("go");

    wait_for(
        "the abandoned load to finish",
        Duration::from_secs(60),
        || state(&core, "probe") == State::Ready,
    )
    .await;
    let pid = core.module("probe").expect("probe").pid.expect("pid");
    core.load("probe").await.expect("a second load");
    assert_eq!(
        core.module("probe").expect("probe").pid,
        Some(pid),
        "the second load started no second instance"
    );
    assert_eq!(
        core.call("probe", "echo", vec![int(7)])
            .await
            .expect("echo"),
        int(7)
    );
    assert!(alive(helper), "the helper runs with its module");

    let socket = core.runtime_dir().join("modules/probe.sock");
    core.unload("probe", false).await.expect("unload");
    wait_for(
        "the helper to die with its module",
        Duration::from_secs(30),
        || !alive(helper),
    )
    .await;
    assert!(!alive(pid));
    assert!(!socket.exists(), "socket removed on unload");
    core.shutdown().await;
}

#[tokio::test]
async fn issue_10_a_cancelled_unload_still_stops_the_module_before_it_is_loaded_again() {
    let mut w = World::new();
    w.stage_all(&["probe", "relay"]);
    // A call in flight keeps the module draining, so `stopping` lasts the whole grace.
    let b = w.builder().stop_grace(Duration::from_secs(10));
    let core = w.start_with(b).await;
    core.load_many(&["probe", "relay"]).await.expect("load");
    let old = core.module("probe").expect("probe").pid.expect("pid");

    let slow = tokio::spawn({
        let core = core.clone();
        async move { core.call("probe", "sleep", vec![int(600_000)]).await }
    });
    wait_in_flight(&core, "probe", 1).await;

    let unload = tokio::spawn({
        let core = core.clone();
        async move { core.unload("probe", false).await }
    });
    wait_for("probe stopping", Duration::from_secs(30), || {
        state(&core, "probe") == State::Stopping
    })
    .await;
    unload.abort();
    let _ = unload.await;

    core.load("probe").await.expect("load again");
    assert!(
        !alive(old),
        "the old process was reaped before a new one started"
    );
    let new = core.module("probe").expect("probe").pid.expect("pid");
    assert_ne!(new, old);
    let socket = core.runtime_dir().join("modules/probe.sock");
    assert!(socket.exists(), "the new instance's socket is there");
    // relay calls back into probe through that socket.
    assert_eq!(
        core.call("probe", "bounce", vec![int(3)])
            .await
            .expect("bounce"),
        int(3)
    );
    let r = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the call in flight ended");
    assert!(r.expect("task").is_err(), "the old process is gone");
    core.shutdown().await;
}
