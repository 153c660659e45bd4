//! Supervision (issue 4) through real module processes: restart policies, backoff and the
//! restart budget as list and info show them, a crash loop ending `failed` until a reload once
//! fixed, heartbeat kills of hung and stopped modules, health reports, calls failing fast with
//! `unavailable` (in flight and while down), `moduleDown`/`moduleUp` and re-subscription in
//! other modules, crash reports, resource limits, and per-module statistics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_core::Limits;
use logos_core::{ErrorCode, ModuleSettings, RestartPolicy, RestartSettings, State, Value};
use std::time::{Duration, Instant};
use support::{
    CoreEvents, World, alive, int, probe_blocked, signal, text, wait_for, wait_in_flight,
};

/// Quick restarts, a budget no test exhausts by accident.
fn fast_restarts() -> RestartSettings {
    let mut r = RestartSettings::default();
    r.initial = Duration::from_millis(20);
    r.max = Duration::from_millis(100);
    r.budget = 50;
    r.window = Duration::from_secs(60);
    r
}

fn pid_of(core: &logos_core::Core, name: &str) -> u32 {
    core.module(name).expect("module").pid.expect("running")
}

/// Waits until `name` is ready in a process other than `old`; returns the new pid.
async fn wait_restarted(core: &logos_core::Core, name: &str, old: u32) -> u32 {
    wait_for(
        &format!("{name} to run again"),
        Duration::from_secs(10),
        || {
            let m = core.module(name).expect("module");
            m.state == State::Ready && m.pid.is_some_and(|p| p != old)
        },
    )
    .await;
    pid_of(core, name)
}

/// The `listModules` entry of `name`.
async fn listed(core: &logos_core::Core, name: &str) -> Value {
    let list = core
        .call("core", "listModules", vec![])
        .await
        .expect("listModules");
    list.as_list()
        .unwrap_or_default()
        .iter()
        .find(|m| m.get("name").and_then(Value::as_str) == Some(name))
        .cloned()
        .expect("listed")
}

#[tokio::test]
async fn each_restart_policy_decides_what_follows_an_exit() {
    let mut w = World::new();
    w.stage("probe");
    let b = w.builder().restart(fast_restarts());
    let core = w.start_with(b).await;
    core.load("probe").await.expect("load");
    let mut events = CoreEvents::new(&core);
    let meta_path = w.modules.join("probe/metadata.json");
    let set_policy = |policy: &str| {
        let meta = std::fs::read_to_string(&meta_path).expect("read");
        let mut json: serde_json::Value = serde_json::from_str(&meta).expect("json");
        json["restart"] = policy.into();
        std::fs::write(&meta_path, json.to_string()).expect("write");
    };
    for (policy, code, restarted) in [
        ("always", 0, true),
        ("always", 3, true),
        ("on-failure", 0, false),
        ("on-failure", 3, true),
        ("never", 3, false),
    ] {
        set_policy(policy);
        // A reload reads the metadata again.
        core.reload("probe").await.expect("reload");
        let info = core.module("probe").expect("probe");
        assert_eq!(info.restart_policy.as_str(), policy);
        assert_eq!(
            listed(&core, "probe").await.get("restartPolicy"),
            Some(&text(policy))
        );
        let pid = info.pid.expect("pid");
        let e = core
            .call("probe", "exit", vec![int(code)])
            .await
            .expect_err("the process exits instead of answering");
        assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
        if restarted {
            wait_restarted(&core, "probe", pid).await;
        } else {
            wait_for("the exit to be handled", Duration::from_secs(5), || {
                core.module("probe").expect("probe").state == State::Crashed
            })
            .await;
            // Well past any backoff: it stays down.
            events
                .none_within("stateChanged", Duration::from_millis(300), |d| {
                    d.first() == Some(&text("probe")) && d.get(1) == Some(&text("crashed"))
                })
                .await;
            let info = core.module("probe").expect("probe");
            assert_eq!(info.state, State::Crashed, "{policy} exit {code}");
            assert_eq!(info.pid, None);
        }
    }
    core.shutdown().await;

    // Configuration overrides the metadata.
    let mut w = World::new();
    w.stage("probe");
    set_policy_in(&w, "never");
    let mut settings = ModuleSettings::default();
    settings.restart = Some(RestartPolicy::Always);
    let b = w
        .builder()
        .restart(fast_restarts())
        .module("probe", settings);
    let core = w.start_with(b).await;
    core.load("probe").await.expect("load");
    assert_eq!(
        core.module("probe").expect("probe").restart_policy,
        RestartPolicy::Always
    );
    let pid = pid_of(&core, "probe");
    let _ = core.call("probe", "exit", vec![int(0)]).await;
    wait_restarted(&core, "probe", pid).await;
    core.shutdown().await;
}

fn set_policy_in(w: &World, policy: &str) {
    let path = w.modules.join("probe/metadata.json");
    let meta = std::fs::read_to_string(&path).expect("read");
    let mut json: serde_json::Value = serde_json::from_str(&meta).expect("json");
    json["restart"] = policy.into();
    std::fs::write(&path, json.to_string()).expect("write");
}

#[tokio::test]
async fn backoff_doubles_to_its_cap_and_shows_in_list_and_info() {
    let mut w = World::new();
    w.stage("probe");
    let mut r = RestartSettings::default();
    r.initial = Duration::from_millis(200);
    r.max = Duration::from_millis(800);
    r.budget = 10;
    r.window = Duration::from_secs(60);
    let b = w.builder().restart(r);
    let core = w.start_with(b).await;
    core.load("probe").await.expect("load");
    let mut events = CoreEvents::new(&core);
    for (i, want_ms) in [200u64, 400, 800, 800].into_iter().enumerate() {
        let i = u32::try_from(i).expect("small");
        let pid = pid_of(&core, "probe");
        signal(pid, libc::SIGKILL);
        wait_for("backoff", Duration::from_secs(5), || {
            core.module("probe").expect("probe").state == State::Backoff
        })
        .await;
        let info = core.module("probe").expect("probe");
        let next = info.next_restart.expect("next restart while in backoff");
        let want = Duration::from_millis(want_ms);
        assert!(
            next <= want && next > want / 2,
            "restart {i}: next restart in {next:?}, backoff {want:?}"
        );
        assert_eq!(info.restarts, i, "restarts before this one");
        assert_eq!(info.recent_crashes, i + 1);
        let entry = listed(&core, "probe").await;
        assert_eq!(entry.get("state"), Some(&text("backoff")));
        assert!(
            entry
                .get("nextRestartMs")
                .and_then(Value::as_u64)
                .is_some_and(|ms| ms <= want_ms),
            "{entry}"
        );
        assert_eq!(entry.get("recentCrashes"), Some(&Value::from(i + 1)));
        let crashed = events
            .wait("moduleCrashed", Duration::from_secs(5), |d| {
                d.get(4) == Some(&Value::from(i))
            })
            .await;
        assert_eq!(crashed[0], text("probe"));
        wait_restarted(&core, "probe", pid).await;
        assert_eq!(core.module("probe").expect("probe").next_restart, None);
    }
    let info = core.module("probe").expect("probe");
    assert_eq!(info.restarts, 4);
    assert_eq!(
        listed(&core, "probe").await.get("restarts"),
        Some(&Value::from(4u32))
    );
    let stats = core.stats().await;
    let probe = stats.iter().find(|s| s.name == "probe").expect("stats");
    assert_eq!(probe.restarts, 4);
    core.shutdown().await;
}

#[tokio::test]
async fn a_crash_loop_at_start_ends_failed_and_a_reload_brings_it_back_once_fixed() {
    let mut w = World::new();
    let flag = w.switchable("probe", "on-failure");
    w.stage("calc");
    let mut r = fast_restarts();
    r.budget = 3;
    let b = w.builder().restart(r);
    let core = w.start_with(b).await;
    core.load_many(&["probe", "calc"]).await.expect("load");
    let calc_pid = pid_of(&core, "calc");

    // Manual reloads, more than the budget allows crashes, do not count against it.
    for _ in 0..5 {
        core.reload("probe").await.expect("reload");
    }
    let info = core.module("probe").expect("probe");
    assert_eq!(info.state, State::Ready);
    assert_eq!((info.restarts, info.recent_crashes), (0, 0));

    // Break it, then crash it: every restart now crashes at start.
    std::fs::write(&flag, "config file missing").expect("flag");
    let mut events = CoreEvents::new(&core);
    signal(pid_of(&core, "probe"), libc::SIGKILL);
    wait_for("probe to fail", Duration::from_secs(10), || {
        core.module("probe").expect("probe").state == State::Failed
    })
    .await;
    let info = core.module("probe").expect("probe");
    assert_eq!(info.restarts, 3, "the budget allows 3 restarts");
    assert_eq!(info.recent_crashes, 4);
    assert_eq!(info.pid, None);
    let exit = info.last_exit.expect("last exit");
    assert_eq!(exit.code, Some(7));
    assert!(
        exit.stderr_tail
            .iter()
            .any(|l| l.contains("refusing to start: config file missing")),
        "{:?}",
        exit.stderr_tail
    );
    // One crash report per crash: the kill, then each crash at start.
    let crashes = events.all("moduleCrashed");
    let restarts: Vec<Option<u64>> = crashes.iter().map(|d| d[4].as_u64()).collect();
    assert_eq!(
        restarts,
        [Some(0), Some(1), Some(2), Some(3)],
        "{crashes:?}"
    );
    assert_eq!(crashes[3][1], text("exit code 7"));

    // It stays down: no more attempts.
    events
        .none_within("stateChanged", Duration::from_millis(400), |d| {
            d.first() == Some(&text("probe"))
        })
        .await;
    let info = core.module("probe").expect("probe");
    assert_eq!((info.state, info.restarts), (State::Failed, 3));
    let started = Instant::now();
    let e = core
        .call("probe", "echo", vec![int(1)])
        .await
        .expect_err("failed");
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert!(e.to_string().contains("reload"), "{e}");
    assert!(started.elapsed() < Duration::from_millis(200));

    // The core and the other modules are unaffected.
    assert_eq!(pid_of(&core, "calc"), calc_pid);
    assert_eq!(
        core.call("calc", "add", vec![int(2), int(2)])
            .await
            .expect("calc"),
        int(4)
    );

    // A reload while still broken fails with the crash's own words...
    let e = core.reload("probe").await.expect_err("still broken");
    assert!(e.to_string().contains("config file missing"), "{e}");
    // ...and once fixed brings it back, with a fresh budget.
    std::fs::remove_file(&flag).expect("fix");
    core.reload("probe").await.expect("reload once fixed");
    let info = core.module("probe").expect("probe");
    assert_eq!(info.state, State::Ready);
    assert_eq!(info.recent_crashes, 0);
    assert_eq!(
        core.call("probe", "echo", vec![int(5)])
            .await
            .expect("echo"),
        int(5)
    );
    // The fresh budget holds: one crash is restarted, not failed.
    let pid = pid_of(&core, "probe");
    signal(pid, libc::SIGKILL);
    wait_restarted(&core, "probe", pid).await;
    core.shutdown().await;
}

#[tokio::test]
async fn a_hung_or_stopped_module_is_killed_by_the_heartbeat_and_its_calls_fail_at_once() {
    let mut w = World::new();
    w.stage("probe");
    let b = w
        .builder()
        .heartbeat(Duration::from_millis(100))
        .call_timeout(Duration::from_secs(30))
        .restart(fast_restarts());
    let core = w.start_with(b).await;
    core.load("probe").await.expect("load");
    let mut events = CoreEvents::new(&core);

    // A blocked event loop answers no ping: three misses and it is killed.
    let pid = pid_of(&core, "probe");
    let started = Instant::now();
    let e = core
        .call("probe", "block", vec![int(60_000)])
        .await
        .expect_err("killed");
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "failed after {took:?}, not at the 30 s deadline"
    );
    // The call fails as the connection closes, a moment before the process is reaped.
    wait_for(
        "the hung process to be gone",
        Duration::from_secs(2),
        || !alive(pid),
    )
    .await;
    let crashed = events
        .wait("moduleCrashed", Duration::from_secs(5), |_| true)
        .await;
    assert_eq!(crashed[1], text("killed by signal 9 (SIGKILL)"));
    let pid = wait_restarted(&core, "probe", pid).await;
    let exit = core
        .module("probe")
        .expect("probe")
        .last_exit
        .expect("exit");
    assert_eq!(exit.signal, Some(libc::SIGKILL));

    // A stopped process (SIGSTOP) is hung the same way; its calls in flight fail too.
    let call = tokio::spawn({
        let core = core.clone();
        async move { core.call("probe", "sleep", vec![int(20_000)]).await }
    });
    wait_in_flight(&core, "probe", 1).await;
    signal(pid, libc::SIGSTOP);
    let started = Instant::now();
    let e = call.await.expect("task").expect_err("killed");
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    wait_restarted(&core, "probe", pid).await;
    assert!(!alive(pid));
    core.shutdown().await;
}

#[tokio::test]
async fn a_module_reports_itself_unhealthy_and_list_info_and_stats_show_it() {
    let mut w = World::new();
    w.stage("probe");
    let b = w.builder().heartbeat(Duration::from_millis(50));
    let core = w.start_with(b).await;
    core.load("probe").await.expect("load");
    assert_eq!(core.module("probe").expect("probe").unhealthy, None);
    core.call("probe", "setUnhealthy", vec![text("database unreachable")])
        .await
        .expect("set");
    wait_for("the next heartbeat", Duration::from_secs(5), || {
        core.module("probe").expect("probe").unhealthy.as_deref() == Some("database unreachable")
    })
    .await;
    assert_eq!(
        listed(&core, "probe").await.get("unhealthy"),
        Some(&text("database unreachable"))
    );
    let info = core
        .call("core", "moduleInfo", vec![text("probe")])
        .await
        .expect("info");
    assert_eq!(info.get("unhealthy"), Some(&text("database unreachable")));
    let stats = core.stats().await;
    let probe = stats.iter().find(|s| s.name == "probe").expect("stats");
    assert_eq!(probe.unhealthy.as_deref(), Some("database unreachable"));
    // Still serving: unhealthy is information, not a crash.
    assert_eq!(probe.state, State::Ready);
    core.call("probe", "setUnhealthy", vec![Value::Null])
        .await
        .expect("clear");
    wait_for("healthy again", Duration::from_secs(5), || {
        core.module("probe").expect("probe").unhealthy.is_none()
    })
    .await;
    core.shutdown().await;
}

/// An SDK module proves it is alive by counting in its heartbeat page, so the core pings it
/// only when the count stands still: here, while it reports itself unhealthy (the SDK stops
/// counting, and the `pong` carries the reason). A count that moves again says healthy.
#[tokio::test]
async fn an_sdk_module_beats_on_its_page_and_is_pinged_only_while_its_count_stands_still() {
    let mut w = World::new();
    w.stage("probe");
    let b = w.builder().heartbeat(Duration::from_millis(100));
    let core = w.start_with(b).await;
    core.load("probe").await.expect("load");
    wait_for("ten beats on the page", Duration::from_secs(20), || {
        core.heartbeats().page >= 10
    })
    .await;
    // A count can stand still for a tick of drift only: pings are the exception (a loaded
    // machine can delay the module's timer past two ticks now and then, never most times).
    let beats = core.heartbeats();
    assert!(
        beats.ping * 2 < beats.page,
        "an idle module beating on its page was pinged: {beats:?}"
    );

    core.call("probe", "setUnhealthy", vec![text("disk full")])
        .await
        .expect("set");
    wait_for(
        "the reason, carried by a pong",
        Duration::from_secs(10),
        || core.module("probe").expect("probe").unhealthy.as_deref() == Some("disk full"),
    )
    .await;
    let unhealthy = core.heartbeats();
    assert!(unhealthy.ping > beats.ping, "{beats:?} → {unhealthy:?}");
    // Unhealthy is not hung: the answered pings keep it alive.
    let pid = pid_of(&core, "probe");
    let pinged = unhealthy.ping;
    wait_for("five answered pings", Duration::from_secs(20), || {
        core.heartbeats().ping >= pinged + 5
    })
    .await;
    assert_eq!(pid_of(&core, "probe"), pid);

    core.call("probe", "setUnhealthy", vec![Value::Null])
        .await
        .expect("clear");
    wait_for("healthy again", Duration::from_secs(10), || {
        core.module("probe").expect("probe").unhealthy.is_none()
    })
    .await;
    let healthy = core.heartbeats();
    assert!(healthy.page > unhealthy.page, "{unhealthy:?} → {healthy:?}");
    core.shutdown().await;
}

#[tokio::test]
async fn calls_fail_fast_while_down_and_other_modules_follow_the_restart() {
    let mut w = World::new();
    w.stage_all(&["probe", "relay", "chat"]);
    let mut r = fast_restarts();
    r.initial = Duration::from_secs(2);
    r.max = Duration::from_secs(2);
    let b = w.builder().call_timeout(Duration::from_secs(30)).restart(r);
    let core = w.start_with(b).await;
    core.load_many(&["probe", "relay", "chat"])
        .await
        .expect("load");
    // relay connects to probe once, so its call below is already in flight at the kill.
    assert_eq!(
        core.call(
            "relay",
            "forward",
            vec![text("probe"), text("echo"), Value::List(vec![int(1)])]
        )
        .await
        .expect("forward"),
        int(1)
    );

    // Calls in flight fail with `unavailable` when the process dies, not at their deadline:
    // the core's own and one from another module.
    let mut calls = Vec::new();
    for _ in 0..5 {
        let core = core.clone();
        calls.push(tokio::spawn(async move {
            core.call("probe", "sleep", vec![int(20_000)]).await
        }));
    }
    let core2 = core.clone();
    calls.push(tokio::spawn(async move {
        core2
            .call(
                "relay",
                "forward",
                vec![text("probe"), text("sleep"), Value::List(vec![int(20_000)])],
            )
            .await
    }));
    // Five of the core's and relay's one.
    wait_in_flight(&core, "probe", 6).await;
    let pid = pid_of(&core, "probe");
    signal(pid, libc::SIGKILL);
    let killed = Instant::now();
    for call in calls {
        let e = call.await.expect("task").expect_err("died");
        assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    }
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "in-flight calls took {took:?}"
    );

    // While it waits out its backoff, calls fail at once, from the core and from modules.
    wait_for("backoff", Duration::from_secs(5), || {
        core.module("probe").expect("probe").state == State::Backoff
    })
    .await;
    let started = Instant::now();
    let e = core
        .call("probe", "echo", vec![int(1)])
        .await
        .expect_err("down");
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    let e = core
        .call(
            "relay",
            "forward",
            vec![text("probe"), text("echo"), Value::List(vec![int(1)])],
        )
        .await
        .expect_err("down");
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(500), "took {took:?}");
    wait_restarted(&core, "probe", pid).await;

    // Modules hear moduleDown/moduleUp of others.
    for event in ["moduleDown", "moduleUp", "moduleCrashed"] {
        core.call("probe", "watch", vec![text("core"), text(event)])
            .await
            .expect("watch");
    }
    // And their subscriptions to a module's events survive its restart.
    core.call("probe", "watch", vec![text("chat"), text("chatMessage")])
        .await
        .expect("watch chat");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen_by_probe(&core)
        .await
        .iter()
        .any(|(_, d)| d.get(2) == Some(&text("before")))
    {
        assert!(Instant::now() < deadline, "probe's chat subscription");
        core.call("chat", "send", vec![text("t"), text("before")])
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let chat_pid = pid_of(&core, "chat");
    let relay_pid = pid_of(&core, "relay");
    signal(chat_pid, libc::SIGKILL);
    signal(relay_pid, libc::SIGKILL);
    wait_restarted(&core, "chat", chat_pid).await;
    wait_restarted(&core, "relay", relay_pid).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = seen_by_probe(&core).await;
        let has = |event: &str, first: &str, second: Option<&str>| {
            seen.iter().any(|(e, d)| {
                e == event
                    && d.first() == Some(&text(first))
                    && second.is_none_or(|s| d.get(1) == Some(&text(s)))
            })
        };
        if has("core.moduleDown", "relay", Some("crashed"))
            && has("core.moduleUp", "relay", None)
            && has(
                "core.moduleCrashed",
                "chat",
                Some("killed by signal 9 (SIGKILL)"),
            )
            && seen
                .iter()
                .any(|(e, d)| e == "chat.chatMessage" && d.get(2) == Some(&text("after")))
        {
            break;
        }
        assert!(Instant::now() < deadline, "probe saw: {seen:?}");
        core.call("chat", "send", vec![text("t"), text("after")])
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // probe's client reconnects to the new relay with a fresh token by itself.
    assert_eq!(
        core.call("probe", "bounce", vec![int(9)])
            .await
            .expect("bounce"),
        int(9)
    );
    core.shutdown().await;
}

/// What `probe.watch` collected: `(source.event, data)`.
async fn seen_by_probe(core: &logos_core::Core) -> Vec<(String, Vec<Value>)> {
    let seen = core.call("probe", "seen", vec![]).await.expect("seen");
    seen.as_list()
        .unwrap_or_default()
        .iter()
        .filter_map(|s| {
            let event = s.get("event")?.as_str()?.to_owned();
            let data = s.get("data")?.as_list()?.to_vec();
            Some((event, data))
        })
        .collect()
}

#[tokio::test]
async fn a_crash_report_carries_status_uptime_stderr_and_restart_count() {
    let mut w = World::new();
    w.stage("probe");
    let b = w.builder().restart(fast_restarts());
    let core = w.start_with(b).await;
    core.load("probe").await.expect("load");
    let mut events = CoreEvents::new(&core);
    for (round, code) in [(0u32, 42i32), (1, 43)] {
        let pid = pid_of(&core, "probe");
        let line = format!("about to die: disk on fire ({round})");
        // The line is in the pipe once `say` returns; the core reads it to the end before it
        // reports the exit.
        core.call("probe", "say", vec![text(&line)])
            .await
            .expect("say");
        // Up for a measurable while, which the report's uptime must show.
        wait_for("probe up 50 ms", Duration::from_secs(30), || {
            core.module("probe")
                .expect("probe")
                .uptime
                .is_some_and(|u| u >= Duration::from_millis(50))
        })
        .await;
        let _ = core.call("probe", "exit", vec![int(code.into())]).await;
        let d = events
            .wait("moduleCrashed", Duration::from_secs(5), |d| {
                d.get(4) == Some(&Value::from(round))
            })
            .await;
        assert_eq!(d[0], text("probe"));
        assert_eq!(d[1], Value::from(format!("exit code {code}")));
        assert!(d[2].as_u64().is_some_and(|ms| ms >= 50), "uptime {d:?}");
        let stderr = d[3].as_list().expect("stderr lines");
        assert!(stderr.contains(&text(&line)), "{stderr:?}");
        wait_restarted(&core, "probe", pid).await;

        let info = core.module("probe").expect("probe");
        assert_eq!(info.restarts, round + 1);
        let exit = info.last_exit.expect("last exit");
        assert_eq!((exit.code, exit.signal), (Some(code), None));
        assert!(exit.uptime >= Duration::from_millis(50));
        assert!(exit.stderr_tail.contains(&line));
        let info = core
            .call("core", "moduleInfo", vec![text("probe")])
            .await
            .expect("moduleInfo");
        let last = info.get("lastExit").expect("lastExit");
        assert_eq!(
            last.get("status"),
            Some(&Value::from(format!("exit code {code}")))
        );
        assert_eq!(last.get("code"), Some(&int(code.into())));
        assert!(last.get("uptimeMs").and_then(Value::as_u64).is_some());
        assert!(
            last.get("stderr")
                .and_then(Value::as_list)
                .is_some_and(|l| l.contains(&text(&line)))
        );
        assert_eq!(info.get("restarts"), Some(&Value::from(round + 1)));
    }
    core.shutdown().await;
}

/// Column `n` (0 = soft, 1 = hard) of row `name` of `/proc/<pid>/limits`.
fn limit(pid: u32, name: &str, n: usize) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l[name.len()..].split_whitespace().nth(n))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_module_past_its_limits_dies_alone_and_is_restarted() {
    let mut w = World::new();
    w.stage_all(&["probe", "calc"]);
    let mut settings = ModuleSettings::default();
    settings.limits = Limits {
        address_space: Some(512 << 20),
        open_files: Some(64),
        processes: Some(100_000),
    };
    // A backtrace (RUST_BACKTRACE may be set around the tests) would push the allocation
    // failure out of the 20 stderr lines a crash report keeps.
    settings.env = vec![("RUST_BACKTRACE".to_owned(), "0".to_owned())];
    let b = w
        .builder()
        .restart(fast_restarts())
        .module("probe", settings);
    let core = w.start_with(b).await;
    core.load_many(&["probe", "calc"]).await.expect("load");
    let pid = pid_of(&core, "probe");
    let calc_pid = pid_of(&core, "calc");

    // Applied before the module's code ran, soft = hard so it cannot raise them.
    for n in [0, 1] {
        assert_eq!(
            limit(pid, "Max address space", n),
            (512u64 << 20).to_string()
        );
        assert_eq!(limit(pid, "Max open files", n), "64");
    }
    // RLIMIT_NPROC is set too, but the kernel does not enforce it for root (and counts every
    // process of the user, not of the module), so only its presence is checked here.
    let hard: Option<u64> = limit(std::process::id(), "Max processes", 1).parse().ok();
    assert_eq!(
        limit(pid, "Max processes", 0),
        hard.map_or(100_000, |h| h.min(100_000)).to_string()
    );
    // Per module: the others keep what the core has.
    assert_eq!(
        limit(calc_pid, "Max open files", 0),
        limit(std::process::id(), "Max open files", 0)
    );

    // Too many files: the open fails inside the module, which keeps serving.
    let e = core
        .call("probe", "openFiles", vec![int(100)])
        .await
        .expect_err("limit");
    assert_eq!(e.code(), ErrorCode::MethodFailed);
    assert!(e.to_string().contains("Too many open files"), "{e}");
    core.call("probe", "closeFiles", vec![])
        .await
        .expect("close");
    assert_eq!(pid_of(&core, "probe"), pid);

    // Too much memory: the allocation aborts the process, with whatever it started.
    let sleeper = core
        .call("probe", "spawnSleeper", vec![])
        .await
        .expect("sleeper")
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .expect("pid");
    assert!(alive(sleeper));
    let e = core
        .call("probe", "allocate", vec![int(1 << 30)])
        .await
        .expect_err("aborted");
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    wait_restarted(&core, "probe", pid).await;
    let exit = core
        .module("probe")
        .expect("probe")
        .last_exit
        .expect("exit");
    assert_eq!(exit.signal, Some(libc::SIGABRT), "{exit:?}");
    assert!(
        exit.stderr_tail
            .iter()
            .any(|l| l.contains("memory allocation of 1073741824 bytes failed")),
        "{:?}",
        exit.stderr_tail
    );
    wait_for(
        "its helper process to die with it",
        Duration::from_secs(5),
        || !alive(sleeper),
    )
    .await;
    // Alone: the other module never noticed.
    assert_eq!(pid_of(&core, "calc"), calc_pid);
    assert_eq!(core.module("calc").expect("calc").restarts, 0);
    assert_eq!(
        core.call("calc", "add", vec![int(1), int(1)])
            .await
            .expect("calc"),
        int(2)
    );
    core.shutdown().await;
}

#[tokio::test]
async fn stats_count_the_calls_each_module_served_from_anyone() {
    let mut w = World::new();
    w.stage_all(&["probe", "relay", "calc"]);
    let b = w.builder().restart(fast_restarts());
    let core = w.start_with(b).await;
    core.load_many(&["probe", "relay"]).await.expect("load");
    for i in 0..20 {
        core.call("probe", "echo", vec![int(i)])
            .await
            .expect("echo");
    }
    for _ in 0..2 {
        core.call("probe", "panic", vec![text("no")])
            .await
            .expect_err("panics");
    }
    // Module-to-module calls never pass through the core; probe counts them itself.
    for _ in 0..3 {
        core.call(
            "relay",
            "forward",
            vec![text("probe"), text("echo"), Value::List(vec![int(1)])],
        )
        .await
        .expect("forward");
    }
    core.call("probe", "sleep", vec![int(30)])
        .await
        .expect("sleep");
    let stats = core.stats().await;
    let probe = stats.iter().find(|s| s.name == "probe").expect("probe");
    assert_eq!(probe.state, State::Ready);
    assert_eq!(probe.pid, core.module("probe").expect("probe").pid);
    assert_eq!(probe.calls, Some(26));
    assert_eq!(probe.errors, Some(2));
    assert_eq!(probe.in_flight, Some(0));
    let lat = probe.latency.expect("latency");
    assert!(lat.p50 <= lat.p90 && lat.p90 <= lat.p99 && lat.p99 <= lat.max);
    assert!(lat.max >= Duration::from_millis(30), "{lat:?}");
    assert!(probe.rss_bytes.is_some_and(|r| r > 0));
    assert!(probe.cpu_time.is_some());
    assert!(probe.uptime.is_some());
    let relay = stats.iter().find(|s| s.name == "relay").expect("relay");
    assert_eq!((relay.calls, relay.errors), (Some(3), Some(0)));
    let calc = stats.iter().find(|s| s.name == "calc").expect("calc");
    assert_eq!(
        (calc.state, calc.pid, calc.calls),
        (State::Known, None, None)
    );
    assert_eq!(calc.rss_bytes, None);

    // The same through the core module.
    let doc = core
        .call("core", "stats", vec![])
        .await
        .expect("core.stats");
    assert!(
        doc.get("core")
            .and_then(|c| c.get("rssBytes"))
            .and_then(Value::as_u64)
            .is_some_and(|r| r > 0),
        "{doc}"
    );
    let entry = doc
        .get("modules")
        .and_then(Value::as_list)
        .and_then(|l| {
            l.iter()
                .find(|m| m.get("name") == Some(&text("probe")))
                .cloned()
        })
        .expect("probe entry");
    assert_eq!(entry.get("calls"), Some(&Value::from(26u64)));
    assert_eq!(entry.get("errors"), Some(&Value::from(2u64)));
    assert!(
        entry
            .get("latencyUs")
            .and_then(|l| l.get("p99"))
            .and_then(Value::as_u64)
            .is_some()
    );

    // A hung module delays a report by at most the stats deadline, with no call figures.
    let blocked = probe_blocked(&w, &core, 2_500).await;
    let started = Instant::now();
    let stats = core.stats().await;
    assert!(started.elapsed() < logos_core::STATS_TIMEOUT + Duration::from_millis(500));
    let probe = stats.iter().find(|s| s.name == "probe").expect("probe");
    assert_eq!(probe.calls, None);
    assert!(probe.rss_bytes.is_some());
    blocked.await.expect("task").expect("block returns");

    // A new process counts from zero.
    let pid = pid_of(&core, "probe");
    signal(pid, libc::SIGKILL);
    wait_restarted(&core, "probe", pid).await;
    let stats = core.stats().await;
    let probe = stats.iter().find(|s| s.name == "probe").expect("probe");
    assert_eq!((probe.calls, probe.restarts), (Some(0), 1));
    core.shutdown().await;
}

#[tokio::test]
async fn a_module_without_stats_gets_null_call_figures_and_nothing_else_changes() {
    // pyecho (Python, standard library only) answers `$stats` with `unknown_method`.
    let mut w = World::new();
    w.stage_dir("pyecho");
    let core = w.start().await;
    core.load("pyecho").await.expect("load");
    core.call("pyecho", "echo", vec![int(1)])
        .await
        .expect("echo");
    let stats = core.stats().await;
    let py = stats.iter().find(|s| s.name == "pyecho").expect("pyecho");
    assert_eq!(py.state, State::Ready);
    assert_eq!((py.calls, py.errors, py.latency), (None, None, None));
    assert!(py.rss_bytes.is_some_and(|r| r > 0));
    assert_eq!(
        core.call("pyecho", "echo", vec![int(2)])
            .await
            .expect("still serving"),
        int(2)
    );
    core.shutdown().await;
}
