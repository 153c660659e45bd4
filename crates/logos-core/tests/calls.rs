//! Calls end to end through real module processes: results versus every error code, deadlines,
//! panics, re-entrant A→B→A calls and many calls in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_core::{ErrorCode, Value};
use std::time::Duration;
use support::{World, int, text};

#[tokio::test]
async fn results_and_each_error_code_are_distinct() {
    let mut w = World::new();
    w.stage_all(&["calc", "probe", "relay", "kv"]);
    let core = w.start().await;
    core.load_many(&["calc", "probe"]).await.expect("load");

    assert_eq!(
        core.call("calc", "add", vec![int(2), int(3)])
            .await
            .expect("add"),
        int(5)
    );
    assert_eq!(
        core.call("calc", "div", vec![int(7), int(2)])
            .await
            .expect("div"),
        int(3)
    );
    // A method returning null is a result, not an error.
    assert_eq!(
        core.call("probe", "echo", vec![Value::Null])
            .await
            .expect("echo"),
        Value::Null
    );

    let code = |r: Result<Value, logos_core::Error>| r.expect_err("must fail").code();
    let e = core
        .call("calc", "div", vec![int(1), int(0)])
        .await
        .expect_err("div 0");
    assert_eq!(e.code(), ErrorCode::MethodFailed);
    assert!(e.to_string().contains("division by zero"), "{e}");
    assert_eq!(
        code(core.call("calc", "nope", vec![]).await),
        ErrorCode::UnknownMethod
    );
    assert_eq!(
        code(core.call("calc", "add", vec![text("x"), int(1)]).await),
        ErrorCode::InvalidArgs
    );
    assert_eq!(
        code(core.call("calc", "add", vec![int(1)]).await),
        ErrorCode::InvalidArgs
    );
    assert_eq!(
        code(core.call("calk", "add", vec![]).await),
        ErrorCode::UnknownModule
    );
    assert_eq!(
        code(core.call("kv", "get", vec![text("k")]).await),
        ErrorCode::NotLoaded
    );
    let e = core.call("calk", "add", vec![]).await.expect_err("unknown");
    assert!(e.to_string().contains("calc"), "suggests calc: {e}");
    core.shutdown().await;
}

#[tokio::test]
async fn a_call_past_its_deadline_fails_with_timeout() {
    let mut w = World::new();
    w.stage("probe");
    let b = w.builder().call_timeout(Duration::from_millis(300));
    let core = w.start_with(b).await;
    core.load("probe").await.expect("load");
    let started = std::time::Instant::now();
    let e = core
        .call("probe", "sleep", vec![int(20_000)])
        .await
        .expect_err("deadline");
    assert_eq!(e.code(), ErrorCode::Timeout, "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "returned at the deadline, not the sleep"
    );
    // The module still serves.
    assert_eq!(
        core.call("probe", "sleep", vec![int(1)])
            .await
            .expect("short"),
        int(1)
    );
    core.shutdown().await;
}

#[tokio::test]
async fn a_panicking_handler_fails_that_call_and_the_module_keeps_serving() {
    let mut w = World::new();
    w.stage("probe");
    let core = w.start().await;
    core.load("probe").await.expect("load");
    let pid = core.module("probe").expect("probe").pid;
    let e = core
        .call("probe", "panic", vec![text("kaboom")])
        .await
        .expect_err("panic");
    assert_eq!(e.code(), ErrorCode::MethodFailed);
    assert!(e.to_string().contains("kaboom"), "{e}");
    assert_eq!(
        core.call("probe", "echo", vec![int(1)])
            .await
            .expect("echo"),
        int(1)
    );
    assert_eq!(
        core.module("probe").expect("probe").pid,
        pid,
        "same process"
    );
    core.shutdown().await;
}

#[tokio::test]
async fn a_handler_may_call_back_its_caller_without_deadlock() {
    let mut w = World::new();
    w.stage_all(&["probe", "relay"]);
    let core = w.start().await;
    core.load_many(&["probe", "relay"]).await.expect("load");
    // probe.bounce → relay.forward → probe.echo → back.
    for n in [7, 8, 9] {
        assert_eq!(
            core.call("probe", "bounce", vec![int(n)])
                .await
                .expect("bounce"),
            int(n)
        );
    }
    core.shutdown().await;
}

#[tokio::test]
async fn many_calls_in_flight_on_one_connection_complete_out_of_order() {
    let mut w = World::new();
    w.stage("probe");
    let core = w.start().await;
    core.load("probe").await.expect("load");
    let calls = (0..200i64).map(|i| {
        let core = core.clone();
        async move {
            // Later calls sleep less, so replies come back out of order.
            let ms = (200 - i) % 50;
            (ms, core.call("probe", "sleep", vec![int(ms)]).await)
        }
    });
    for (ms, r) in futures::future::join_all(calls).await {
        assert_eq!(r.expect("sleep"), int(ms));
    }
    core.shutdown().await;
}
