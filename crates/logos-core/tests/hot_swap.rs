//! Hot swap (issue 15) through real module processes: callers in a loop see no error across
//! repeated swaps and every reply comes from the old or the new process; a new version that
//! fails to start leaves the old one serving and says why; events subscribed before a swap
//! (by an embedder and by another module) still arrive after it; a dependent keeps calling.
//! Swap times are printed beside a cold start (no timed assertion: see logos-bench).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_core::{Core, Error, Notification, State, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{World, alive, text, wait_for};

fn pid_of(core: &Core, name: &str) -> u32 {
    core.module(name).expect("module").pid.expect("running")
}

/// Calls `probe.pid` (and a short `probe.sleep`, so calls are in flight at the switch) until
/// `stop`; returns every pid that answered and every error.
async fn call_loop(core: Core, stop: Arc<AtomicBool>) -> (BTreeSet<u32>, Vec<String>, u64) {
    let mut pids = BTreeSet::new();
    let mut errors = Vec::new();
    let mut calls = 0u64;
    while !stop.load(Ordering::SeqCst) {
        match core.call("probe", "pid", vec![]).await {
            Ok(Value::Int(p)) => {
                pids.insert(u32::try_from(p).expect("pid"));
            }
            Ok(other) => errors.push(format!("probe.pid returned {other:?}")),
            Err(e) => errors.push(e.to_string()),
        }
        if let Err(e) = core.call("probe", "sleep", vec![Value::from(5u64)]).await {
            errors.push(e.to_string());
        }
        calls += 2;
    }
    (pids, errors, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_see_no_error_across_repeated_hot_swaps() {
    let mut world = World::new();
    world.stage("probe");
    let core = world.start().await;
    let cold = Instant::now();
    core.load("probe").await.expect("load probe");
    let cold = cold.elapsed();

    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..3)
        .map(|_| tokio::spawn(call_loop(core.clone(), Arc::clone(&stop))))
        .collect();
    // Let the loops get going before the first swap.
    wait_for("calls to start", Duration::from_secs(10), || {
        core.module("probe").is_ok_and(|m| m.state == State::Ready)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let mut served = BTreeSet::from([pid_of(&core, "probe")]);
    let mut starts = Vec::new();
    let mut retires = Vec::new();
    for _ in 0..5 {
        let before = pid_of(&core, "probe");
        let report = core.reload_hot("probe").await.expect("hot swap");
        assert_eq!(report.old_pid, Some(before));
        let new = report.new_pid.expect("new pid");
        assert_ne!(new, before, "a hot swap runs a new process");
        assert_eq!(pid_of(&core, "probe"), new);
        assert!(!alive(before), "the replaced process {before} is gone");
        assert_eq!(core.module("probe").unwrap().state, State::Ready);
        served.insert(new);
        starts.push(report.start);
        retires.push(report.retire);
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for l in loops {
        let (pids, errors, calls) = l.await.expect("loop");
        assert!(
            errors.is_empty(),
            "calls failed during hot swaps: {errors:?}"
        );
        assert!(
            pids.is_subset(&served),
            "replies came from {pids:?}, but only {served:?} served probe"
        );
        total += calls;
    }
    println!(
        "hot swap figures: cold load {cold:?}; new process ready (old serving) {starts:?}; old process drained and gone {retires:?}; {total} calls, 0 errors"
    );
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_that_fails_to_start_leaves_the_old_one_serving() {
    let mut world = World::new();
    let flag = world.switchable("probe", "never");
    let core = world.start().await;
    core.load("probe").await.expect("load probe");
    let before = pid_of(&core, "probe");

    std::fs::write(&flag, "the new version is broken").expect("flag");
    let err = core
        .reload_hot("probe")
        .await
        .expect_err("a module that cannot start cannot be swapped in");
    assert!(matches!(err, Error::HotSwap { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("the new version is broken") && msg.contains(&format!("pid {before}")),
        "the error says why and who keeps serving: {msg}"
    );
    assert_eq!(pid_of(&core, "probe"), before);
    assert_eq!(core.module("probe").unwrap().state, State::Ready);
    let pid = core.call("probe", "pid", vec![]).await.expect("old serves");
    assert_eq!(pid, Value::from(before));
    let side = world.runtime.join("modules").join("probe.sock.next");
    assert!(!side.exists(), "the failed start's socket is removed");

    // Fixed: the next swap goes through.
    std::fs::remove_file(&flag).expect("unflag");
    let report = core.reload_hot("probe").await.expect("swap after the fix");
    assert_ne!(report.new_pid, Some(before));
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_swap_reads_the_metadata_again_and_refuses_unreadable_metadata() {
    let mut world = World::new();
    world.stage("probe");
    let core = world.start().await;
    core.load("probe").await.expect("load probe");
    assert_eq!(core.module("probe").unwrap().version, "1.0.0");
    let before = pid_of(&core, "probe");
    let meta = world.modules.join("probe").join("metadata.json");
    let original = std::fs::read_to_string(&meta).expect("metadata");

    // The new process starts with the metadata as it is now: a version bump without a
    // rebuild is caught by the library's own version check (the loaded manifest, kept across
    // rescans, would have let it through), and the old process keeps serving.
    std::fs::write(&meta, original.replace("\"1.0.0\"", "\"1.1.0\"")).expect("bump");
    let err = core
        .reload_hot("probe")
        .await
        .expect_err("1.1.0 metadata, 1.0.0 library");
    let msg = err.to_string();
    assert!(msg.contains("1.1.0") && msg.contains("1.0.0"), "{msg}");
    assert_eq!(pid_of(&core, "probe"), before);
    std::fs::write(&meta, &original).expect("restore");
    let report = core
        .reload_hot("probe")
        .await
        .expect("swap with agreeing metadata");
    assert_ne!(report.new_pid, Some(before));
    assert_eq!(core.module("probe").unwrap().version, "1.0.0");

    // Metadata that no longer parses: refused, naming the file; the old process keeps serving.
    let serving = pid_of(&core, "probe");
    std::fs::write(&meta, "{ not json").expect("break");
    let err = core.reload_hot("probe").await.expect_err("bad metadata");
    let msg = err.to_string();
    assert!(
        matches!(err, Error::HotSwap { .. }) && msg.contains("metadata.json"),
        "{msg}"
    );
    assert_eq!(pid_of(&core, "probe"), serving);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_that_is_not_ready_is_refused_and_one_not_loaded_is_loaded() {
    let mut world = World::new();
    world.stage("probe");
    let core = world.start().await;
    let report = core.reload_hot("probe").await.expect("cold load");
    assert_eq!(report.old_pid, None);
    assert_eq!(report.new_pid, Some(pid_of(&core, "probe")));
    let err = core.reload_hot("nosuch").await.expect_err("unknown");
    assert!(matches!(err, Error::UnknownModule { .. }), "{err:?}");
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_subscribed_before_a_swap_still_arrive_and_dependents_keep_calling() {
    let mut world = World::new();
    world.stage_all(&["chat", "probe"]);
    let core = world.start().await;
    core.load("chat").await.expect("load chat");
    core.load("probe").await.expect("load probe");
    let mut embedder = core.subscribe("chat", "chatMessage").expect("subscribe");
    core.call("probe", "watch", vec![text("chat"), text("chatMessage")])
        .await
        .expect("probe watches chat");

    // A dependent calling chat in a loop through its own connection (token, peer socket).
    let stop = Arc::new(AtomicBool::new(false));
    let dependent = {
        let core = core.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut calls = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let args = vec![text("chat"), text("history"), Value::List(vec![])];
                if let Err(e) = core.call("probe", "invoke", args).await {
                    errors.push(e.to_string());
                }
                calls += 1;
            }
            (errors, calls)
        })
    };

    for _ in 0..5 {
        let old = pid_of(&core, "chat");
        core.reload_hot("chat").await.expect("swap chat");
        assert_ne!(pid_of(&core, "chat"), old);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (errors, calls) = dependent.await.expect("dependent");
    println!("dependent calls across the swap: {calls}, errors: {errors:?}");
    assert!(
        errors.is_empty(),
        "the dependent's calls failed across the swap: {errors:?}"
    );

    // Both subscriptions reach the new process's events (the module's after its client
    // re-subscribed on `moduleUp`; keep sending until it has).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        n += 1;
        let line = format!("after swap {n}");
        core.call("chat", "send", vec![text("t"), text(&line)])
            .await
            .expect("send");
        let seen = core.call("probe", "seen", vec![]).await.expect("seen");
        if format!("{seen:?}").contains("after swap") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "probe never saw chat's events after the swap: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match embedder.recv().await {
                Some(Notification::Event { data, .. })
                    if format!("{data:?}").contains("after swap") =>
                {
                    return data;
                }
                Some(_) => {}
                None => panic!("subscription ended"),
            }
        }
    })
    .await
    .expect("the embedder's subscription delivers the new process's events");
    assert!(format!("{got:?}").contains("after swap"));
    core.shutdown().await;
}
