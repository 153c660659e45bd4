//! What a module cannot do to the core through the built-ins (issue 10, items 3, 7, 9, 15):
//! stall it with a huge name, get past a configured deny of a built-in or change what runs
//! without permission, keep getting tokens while it stops, keep using a token the core has
//! replaced, or read another module's stderr. Each test drives `probe`, a real module
//! process, as the hostile module.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_core::{Core, Error, ErrorCode, State, Value};
use std::time::Duration;
use support::{CoreEvents, World, int, signal, text, wait_for, wait_in_flight};

/// `probe.invoke(target, method, args)`: a call made by the probe module itself.
async fn as_probe(
    core: &Core,
    target: &str,
    method: &str,
    args: Vec<Value>,
) -> Result<Value, Error> {
    core.call(
        "probe",
        "invoke",
        vec![text(target), text(method), Value::List(args)],
    )
    .await
}

fn state(core: &Core, name: &str) -> State {
    core.module(name).expect("known").state
}

#[tokio::test]
async fn issue_10_a_huge_module_name_is_refused_before_any_lookup() {
    let mut w = World::new();
    w.stage_all(&["probe", "calc"]);
    let core = w.start().await;
    core.load("probe").await.expect("load");
    let huge = "c".repeat(1 << 20);
    let short = |msg: &str| msg.len() < 1000 && msg.contains("1048576 bytes long, at most 64");

    // From a module, without any permission.
    for (target, method) in [
        ("core", "getPluginMethods"),
        ("core", "moduleInfo"),
        ("capability_module", "requestModule"),
    ] {
        let e = as_probe(&core, target, method, vec![text(&huge)])
            .await
            .expect_err(method);
        assert_eq!(e.code(), ErrorCode::InvalidArgs, "{target}.{method}");
        assert!(short(&e.to_string()), "{target}.{method}: {}", cut(&e));
    }
    // A module calling a module through the core by a huge name.
    let e = as_probe(&core, &huge, "x", vec![])
        .await
        .expect_err("target");
    assert_eq!(e.code(), ErrorCode::InvalidArgs, "{}", cut(&e));

    // From an operator, through the built-in and through the Rust API.
    for method in ["loadPlugin", "unloadPlugin", "reloadPlugin", "moduleInfo"] {
        let e = core
            .call("core", method, vec![text(&huge)])
            .await
            .expect_err(method);
        assert_eq!(e.code(), ErrorCode::InvalidArgs, "{method}");
        assert!(short(&e.to_string()), "{method}: {}", cut(&e));
    }
    let api: Vec<Result<(), Error>> = vec![
        core.load(&huge).await,
        core.unload(&huge, false).await,
        core.reload(&huge).await,
        core.module(&huge).map(drop),
        core.manifest(&huge).map(drop),
        core.interface(&huge).map(drop),
        core.subscribe(&huge, "").map(drop),
        core.call(&huge, "x", vec![]).await.map(drop),
    ];
    for r in api {
        match r {
            Err(e @ Error::InvalidName { .. }) => assert!(short(&e.to_string()), "{}", cut(&e)),
            Err(e) => panic!("expected InvalidName, got {}", cut(&e)),
            Ok(()) => panic!("a huge name was accepted"),
        }
    }
    // A near miss still gets its suggestion, and the core still serves.
    let e = core.module("calk").expect_err("unknown");
    assert!(e.to_string().contains("did you mean \"calc\""), "{e}");
    assert_eq!(
        core.call("probe", "echo", vec![int(1)])
            .await
            .expect("echo"),
        int(1)
    );
    core.shutdown().await;
}

fn cut(e: &Error) -> String {
    e.to_string().chars().take(300).collect()
}

#[tokio::test]
async fn issue_10_a_configured_deny_of_a_builtin_takes_effect() {
    let mut w = World::new();
    w.stage_all(&["probe", "relay"]);
    let b = w
        .builder()
        .deny("probe", "core")
        .deny("probe", "capability_module");
    let core = w.start_with(b).await;
    core.load_many(&["probe", "relay"]).await.expect("load");

    let e = as_probe(&core, "core", "listModules", vec![])
        .await
        .expect_err("denied core");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    assert!(
        e.to_string()
            .contains("probe may not call core: denied by configuration"),
        "{e}"
    );
    let e = core
        .call("probe", "requestToken", vec![text("relay")])
        .await
        .expect_err("denied capability_module");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    assert!(
        e.to_string()
            .contains("probe may not call capability_module: denied by configuration"),
        "{e}"
    );
    // The operator is not a module: the deny does not touch it.
    core.call("core", "listModules", vec![])
        .await
        .expect("operator");
    core.shutdown().await;
}

#[tokio::test]
async fn issue_10_changing_what_runs_needs_core_in_permissions_or_a_grant() {
    // Default policy: probe may read the core, not change what runs.
    let mut w = World::new();
    w.stage_all(&["probe", "calc"]);
    let core = w.start().await;
    core.load("probe").await.expect("load");
    let known = as_probe(&core, "core", "getKnownPlugins", vec![])
        .await
        .expect("reading is open");
    assert!(
        known.as_list().is_some_and(|l| l.contains(&text("calc"))),
        "{known}"
    );
    for (method, args) in [
        ("loadPlugin", vec![text("calc")]),
        ("unloadPlugin", vec![text("probe")]),
        ("reloadPlugin", vec![text("probe")]),
        ("processPlugin", vec![text("/nonexistent")]),
        ("shutdown", vec![]),
    ] {
        let e = as_probe(&core, "core", method, args)
            .await
            .expect_err(method);
        assert_eq!(e.code(), ErrorCode::Unauthorized, "{method}: {e}");
        assert!(
            e.to_string()
                .contains(&format!("probe may not call core.{method}")),
            "{e}"
        );
    }
    assert_eq!(state(&core, "calc"), State::Known);
    assert_eq!(state(&core, "probe"), State::Ready);
    core.shutdown().await;

    // A configured grant of probe -> core lets it.
    let mut w = World::new();
    w.stage_all(&["probe", "calc"]);
    let core = w.start_with(w.builder().grant("probe", "core")).await;
    core.load("probe").await.expect("load");
    as_probe(&core, "core", "loadPlugin", vec![text("calc")])
        .await
        .expect("granted");
    assert_eq!(state(&core, "calc"), State::Ready);
    core.shutdown().await;
}

#[tokio::test]
async fn issue_10_a_stopping_module_gets_no_token() {
    let mut w = World::new();
    w.stage_all(&["probe", "relay"]);
    // probe drains its calls in flight on shutdown for up to this long.
    let b = w.builder().stop_grace(Duration::from_secs(60));
    let core = w.start_with(b).await;
    core.load_many(&["probe", "relay"]).await.expect("load");
    let pid = core.module("probe").expect("probe").pid.expect("pid");
    // A long call keeps probe draining (and so its reply to the request below on its way)
    // until the test is done with it.
    let _keep = tokio::spawn({
        let core = core.clone();
        async move { core.call("probe", "sleep", vec![int(600_000)]).await }
    });
    let asked = tokio::spawn({
        let core = core.clone();
        async move {
            core.call("probe", "tokenWhen", vec![text("relay"), text("gate")])
                .await
        }
    });
    wait_in_flight(&core, "probe", 2).await;
    let unload = tokio::spawn({
        let core = core.clone();
        async move { core.unload("probe", false).await }
    });
    wait_for("probe stopping", Duration::from_secs(30), || {
        state(&core, "probe") == State::Stopping
    })
    .await;
    // Its tokens are revoked by now: the request it makes while stopping must fail.
    std::fs::write(w.data.join("probe/gate"), "").expect("gate");
    let e = tokio::time::timeout(Duration::from_secs(60), asked)
        .await
        .expect("the request ended")
        .expect("task")
        .expect_err("a stopping module got a token");
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    assert!(e.to_string().contains("probe is stopping"), "{e}");
    signal(pid, libc::SIGKILL);
    unload.await.expect("task").expect("unload");
    core.shutdown().await;
}

#[tokio::test]
async fn issue_10_a_new_token_replaces_the_old_one_at_the_target() {
    let mut w = World::new();
    w.stage_all(&["probe", "relay"]);
    let core = w.start().await;
    core.load_many(&["probe", "relay"]).await.expect("load");
    let endpoint = text(
        &core
            .runtime_dir()
            .join("modules/relay.sock")
            .display()
            .to_string(),
    );
    let token = || async {
        core.call("probe", "requestToken", vec![text("relay")])
            .await
            .expect("token")
    };
    let connect = |t: &Value| core.call("probe", "connectWith", vec![endpoint.clone(), t.clone()]);

    let first = token().await;
    connect(&first).await.expect("a fresh token works");
    let second = token().await;
    let e = connect(&first)
        .await
        .expect_err("the replaced token still works");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    assert!(e.to_string().contains("not a live token"), "{e}");
    connect(&second).await.expect("the new token works");
    core.shutdown().await;
}

/// Every `core.moduleCrashed` of `name` probe has seen: `(status, stderr)`.
async fn crashes_seen_by_probe(core: &Core, name: &str) -> Vec<(String, Vec<Value>)> {
    let seen = core.call("probe", "seen", vec![]).await.expect("seen");
    seen.as_list()
        .unwrap_or_default()
        .iter()
        .filter(|s| s.get("event").and_then(Value::as_str) == Some("core.moduleCrashed"))
        .filter_map(|s| {
            let data = s.get("data")?.as_list()?;
            (data.first()?.as_str()? == name).then(|| {
                (
                    data.get(1).and_then(Value::as_str).unwrap_or("").to_owned(),
                    data.get(3)
                        .and_then(Value::as_list)
                        .unwrap_or_default()
                        .to_vec(),
                )
            })
        })
        .collect()
}

fn last_exit_stderr(info: &Value) -> Vec<Value> {
    info.get("lastExit")
        .and_then(|e| e.get("stderr"))
        .and_then(Value::as_list)
        .unwrap_or_default()
        .to_vec()
}

#[tokio::test]
async fn issue_10_a_module_cannot_read_another_modules_stderr() {
    let mut w = World::new();
    w.stage("probe");
    let flag = w.switchable("calc", "on-failure");
    let core = w.start().await;
    let mut events = CoreEvents::new(&core);
    core.load_many(&["probe", "calc"]).await.expect("load");
    core.call("probe", "watch", vec![text("core"), text("moduleCrashed")])
        .await
        .expect("watch");

    // calc crashes, and its restart fails with a secret on stderr.
    std::fs::write(&flag, "SECRET-7f3a").expect("flag");
    let pid = core.module("calc").expect("calc").pid.expect("pid");
    signal(pid, libc::SIGKILL);
    let operator_view = events
        .wait("moduleCrashed", Duration::from_secs(60), |d| {
            d.first() == Some(&text("calc")) && d.get(1) == Some(&text("exit code 7"))
        })
        .await;
    assert!(
        format!("{:?}", operator_view[3]).contains("SECRET-7f3a"),
        "the operator sees calc's stderr: {operator_view:?}"
    );

    // probe got the same crash, without the lines.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let seen = crashes_seen_by_probe(&core, "calc").await;
        if seen.iter().any(|(status, _)| status == "exit code 7") {
            break seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "probe never saw calc crash: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for (status, stderr) in &seen {
        assert!(
            stderr.is_empty(),
            "probe saw calc's stderr ({status}): {stderr:?}"
        );
    }

    // Nor through moduleInfo or listModules; the operator still does.
    let info = as_probe(&core, "core", "moduleInfo", vec![text("calc")])
        .await
        .expect("moduleInfo");
    assert!(
        info.get("lastExit").is_some_and(|e| e != &Value::Null),
        "{info}"
    );
    assert!(last_exit_stderr(&info).is_empty(), "{info}");
    let list = as_probe(&core, "core", "listModules", vec![])
        .await
        .expect("listModules");
    for m in list.as_list().unwrap_or_default() {
        assert!(last_exit_stderr(m).is_empty(), "{m}");
    }
    let info = core
        .call("core", "moduleInfo", vec![text("calc")])
        .await
        .expect("operator moduleInfo");
    assert!(
        format!("{:?}", last_exit_stderr(&info)).contains("SECRET-7f3a"),
        "{info}"
    );
    core.shutdown().await;
}
