//! Discovery, metadata validation, dependency resolution and the load contract, against real
//! module processes: `load` returns only when ready, dependencies start first, failures name
//! the chain or carry the module's exit status and stderr, and a failed load leaves nothing
//! running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_core::{ErrorCode, State, Value};
use std::time::Duration;
use support::{World, alive, int, text};

#[tokio::test]
async fn greeter_pulls_in_its_dependencies_and_works_once_load_returns() {
    let mut w = World::new();
    w.stage_all(&["calc", "chat", "greeter"]);
    let core = w.start().await;
    core.load("greeter").await.expect("load greeter");
    for m in ["calc", "chat", "greeter"] {
        assert_eq!(core.module(m).expect(m).state, State::Ready, "{m}");
    }
    // Ready means callable at once, no retry needed.
    let hello = core
        .call("greeter", "greet", vec![text("Ada")])
        .await
        .expect("greet");
    assert_eq!(hello, text("Hello, Ada!"));
    let sum = core
        .call("greeter", "sum", vec![int(2), int(3)])
        .await
        .expect("sum");
    assert_eq!(sum, int(5));
    let loaded = core
        .call("core", "getLoadedPlugins", vec![])
        .await
        .expect("loaded");
    let names: Vec<&str> = loaded
        .as_list()
        .unwrap_or(&[])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(names, ["calc", "chat", "greeter"]);
    core.shutdown().await;
}

#[tokio::test]
async fn a_shared_dependency_starts_once() {
    let mut w = World::new();
    w.stage_all(&["calc", "chat", "greeter"]);
    let core = w.start().await;
    core.load_many(&["greeter", "calc", "chat"])
        .await
        .expect("load");
    let calc_pid = core.module("calc").expect("calc").pid;
    core.load("greeter").await.expect("load again is a no-op");
    assert_eq!(core.module("calc").expect("calc").pid, calc_pid);
    core.shutdown().await;
}

#[tokio::test]
async fn missing_dependency_version_mismatch_and_cycle_fail_before_anything_starts() {
    let mut w = World::new();
    w.stage("calc");
    w.script_module("needy", r#"{"ghost": "^1"}"#, "exit 9");
    w.script_module("picky", r#"{"calc": "^2.0"}"#, "exit 9");
    w.script_module("a", r#"{"b": "*"}"#, "exit 9");
    w.script_module("b", r#"{"c": "*"}"#, "exit 9");
    w.script_module("c", r#"["a"]"#, "exit 9");
    let core = w.start().await;

    let e = core.load("needy").await.expect_err("missing").to_string();
    assert!(e.contains("needy -> ghost"), "{e}");
    assert!(e.contains("not a known module"), "{e}");

    let e = core.load("picky").await.expect_err("mismatch");
    assert!(e.to_string().contains("picky -> calc (^2.0)"), "{e}");
    assert!(e.to_string().contains("1.0.0"), "{e}");

    let e = core.load("a").await.expect_err("cycle").to_string();
    assert!(e.contains("a -> b -> c -> a"), "{e}");

    // Nothing was started by any of these.
    assert!(core.modules().iter().all(|m| m.pid.is_none()));
    assert_ne!(core.module("calc").expect("calc").state, State::Ready);
    core.shutdown().await;
}

#[tokio::test]
async fn bad_metadata_is_reported_with_file_and_field_and_the_rest_still_registers() {
    let mut w = World::new();
    w.stage("calc");
    w.write_metadata("badjson", r#"{"name": "badjson", "version": "1.0.0",,}"#);
    w.write_metadata("noversion", r#"{"name": "noversion", "main": "x"}"#);
    w.write_metadata(
        "wrongtype",
        r#"{"name": "wrongtype", "version": 5, "main": "x"}"#,
    );
    w.write_metadata(
        "dots",
        r#"{"name": "../x", "version": "1.0.0", "main": "x"}"#,
    );
    let long = "l".repeat(65);
    w.write_metadata(
        &long,
        &format!(r#"{{"name": "{long}", "version": "1.0.0", "main": "x"}}"#),
    );
    w.write_metadata(
        "nomain",
        r#"{"name": "nomain", "version": "1.0.0", "main": "missing.so"}"#,
    );
    w.write_metadata("badrange", r#"{"name": "badrange", "version": "1.0.0", "main": "metadata.json", "dependencies": {"calc": "^^1"}}"#);
    let core = w.start().await;

    let known: Vec<String> = core.modules().into_iter().map(|m| m.name).collect();
    assert_eq!(known, ["calc"], "only the valid module registers");
    let faults = core.faults().join("\n");
    for (dir, field) in [
        ("badjson", "metadata.json:1:40"),
        ("noversion", "version"),
        ("wrongtype", "version"),
        ("dots", "name"),
        (long.as_str(), "name"),
        ("nomain", "main"),
        ("badrange", "dependencies"),
    ] {
        let line = faults
            .lines()
            .find(|l| l.contains(&format!("/{dir}/metadata.json")))
            .unwrap_or_else(|| panic!("no fault for {dir} in:\n{faults}"));
        assert!(
            line.contains(field),
            "fault for {dir} should name {field}: {line}"
        );
    }
    core.shutdown().await;
}

#[tokio::test]
async fn a_module_that_exits_during_start_fails_the_load_with_status_and_stderr() {
    let mut w = World::new();
    w.script_module(
        "crashy",
        "{}",
        "echo 'boom: cannot open wallet' >&2\nexit 3",
    );
    let core = w.start().await;
    let e = core.load("crashy").await.expect_err("must fail");
    let text = e.to_string();
    assert!(text.contains("exit code 3"), "{text}");
    assert!(text.contains("boom: cannot open wallet"), "{text}");
    assert_ne!(core.module("crashy").expect("crashy").state, State::Ready);
    core.shutdown().await;
}

#[tokio::test]
async fn a_module_that_never_becomes_ready_fails_the_load_and_is_killed() {
    let mut w = World::new();
    // Modules may write only in their data dir (Landlock).
    let pidfile = w.data.join("sleepy/pid");
    w.script_module(
        "sleepy",
        "{}",
        "echo $$ > \"$LOGOS_DATA_DIR/pid\"\nexec sleep 60",
    );
    let b = w.builder().start_timeout(Duration::from_millis(500));
    let core = w.start_with(b).await;
    let e = core.load("sleepy").await.expect_err("must time out");
    assert_eq!(e.code(), ErrorCode::Timeout, "{e}");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    support::wait_for(
        "the stuck module to be killed",
        Duration::from_secs(5),
        || !alive(pid),
    )
    .await;
    core.shutdown().await;
}

#[tokio::test]
async fn a_failed_load_stops_what_it_started() {
    let mut w = World::new();
    w.stage("calc");
    w.script_module("broken", "{}", "exit 1");
    w.write_metadata(
        "app",
        r#"{"name": "app", "version": "1.0.0", "main": "run.sh", "dependencies": {"calc": "^1", "broken": "*"}}"#,
    );
    std::fs::copy(
        w.modules.join("broken/run.sh"),
        w.modules.join("app/run.sh"),
    )
    .expect("copy");
    let core = w.start().await;
    core.load("app").await.expect_err("broken fails");
    // calc started in the same layer as broken; it must be stopped again.
    let calc = core.module("calc").expect("calc");
    assert!(!calc.state.is_loaded(), "calc left {:?}", calc.state);
    assert!(calc.pid.is_none());
    core.shutdown().await;
}

#[tokio::test]
async fn unload_refuses_with_dependents_unless_cascading() {
    let mut w = World::new();
    w.stage_all(&["calc", "chat", "greeter"]);
    let core = w.start().await;
    core.load("greeter").await.expect("load");
    let e = core
        .unload("calc", false)
        .await
        .expect_err("greeter depends on calc");
    assert!(e.to_string().contains("greeter"), "{e}");
    core.unload("calc", true).await.expect("cascade");
    assert!(!core.module("greeter").expect("g").state.is_loaded());
    assert!(!core.module("calc").expect("c").state.is_loaded());
    assert_eq!(core.module("chat").expect("chat").state, State::Ready);
    let e = core
        .call("calc", "add", vec![int(1), int(2)])
        .await
        .expect_err("unloaded");
    assert_eq!(e.code(), ErrorCode::NotLoaded);
    core.shutdown().await;
}
