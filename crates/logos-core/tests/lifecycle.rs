//! Stopping and cleaning up: graceful shutdown, escalation to SIGTERM and SIGKILL for a module
//! that does not cooperate, and nothing left behind after the core shuts down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_core::State;
use std::time::{Duration, Instant};
use support::{World, alive, int, probe_blocked};

#[tokio::test]
async fn a_hung_module_is_escalated_to_sigkill_on_unload() {
    let mut w = World::new();
    w.stage("probe");
    let b = w.builder().stop_grace(Duration::from_millis(300));
    let core = w.start_with(b).await;
    core.load("probe").await.expect("load");
    let pid = core.module("probe").expect("probe").pid.expect("pid");
    // Block its event loop: it can answer neither `shutdown` nor handle SIGTERM.
    let blocked = probe_blocked(&w, &core, 60_000).await;
    let started = Instant::now();
    core.unload("probe", false).await.expect("unload");
    assert!(!alive(pid), "killed");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(core.module("probe").expect("probe").state, State::Stopped);
    // The call in flight failed instead of hanging.
    let r = tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .expect("call ended");
    assert!(r.expect("task").is_err());
    core.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_everything_and_leaves_no_process_or_socket() {
    let mut w = World::new();
    w.stage_all(&["calc", "chat", "greeter", "kv"]);
    let core = w.start().await;
    core.load_many(&["greeter", "kv"]).await.expect("load");
    let pids: Vec<u32> = core.modules().iter().filter_map(|m| m.pid).collect();
    assert_eq!(pids.len(), 4);
    let runtime = core.runtime_dir().to_path_buf();
    assert!(runtime.join("core.sock").exists());
    core.shutdown().await;
    for pid in pids {
        assert!(!alive(pid), "module {pid} still running");
    }
    assert!(!runtime.join("core.sock").exists());
    assert!(!runtime.join("client.token").exists());
    let left: Vec<_> = std::fs::read_dir(&runtime)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn kv_keeps_its_data_across_a_reload() {
    let mut w = World::new();
    w.stage("kv");
    let core = w.start().await;
    core.load("kv").await.expect("load");
    let s = |x: &str| logos_core::Value::from(x);
    core.call("kv", "set", vec![s("k"), int(42)])
        .await
        .expect("set");
    core.reload("kv").await.expect("reload");
    assert_eq!(
        core.call("kv", "get", vec![s("k")]).await.expect("get"),
        int(42)
    );
    assert_eq!(
        core.call("kv", "get", vec![s("absent")])
            .await
            .expect("get"),
        logos_core::Value::Null
    );
    core.shutdown().await;
}
