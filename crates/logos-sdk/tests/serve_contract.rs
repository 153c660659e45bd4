//! The module side of the module process contract, end to end: real `logos_host` processes
//! running the example and test modules, with `support::FakeCore` playing the core.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_sdk::{ErrorCode, Value};
use std::time::Duration;
use support::{FakeCore, eventually};

const LONG: Duration = Duration::from_secs(20);

#[tokio::test]
async fn calc_answers_over_the_control_connection() {
    let core = FakeCore::new();
    core.start("calc").await;
    assert_eq!(
        core.call("calc", "add", vec![2.into(), 3.into()]).await,
        Ok(Value::Int(5))
    );
    let f = core
        .call("calc", "div", vec![1.into(), 0.into()])
        .await
        .unwrap_err();
    assert_eq!(f.code, ErrorCode::MethodFailed);
    assert_eq!(f.message, "division by zero");
    let f = core.call("calc", "nope", vec![]).await.unwrap_err();
    assert_eq!(f.code, ErrorCode::UnknownMethod);
    let f = core
        .call("calc", "add", vec!["2".into(), 3.into()])
        .await
        .unwrap_err();
    assert_eq!(f.code, ErrorCode::InvalidArgs);
    assert!(
        f.message.contains("calc.add") && f.message.contains("`a`"),
        "{}",
        f.message
    );
    // Calls must target the module itself.
    let f = core
        .session("calc")
        .call("chat", "send", vec![], LONG)
        .await
        .unwrap_err();
    assert_eq!(f.code, ErrorCode::UnknownModule);
    // Healthy in pong.
    assert_eq!(core.session("calc").ping(LONG).await, Ok(None));
}

#[tokio::test]
async fn hello_carries_interface_and_version() {
    let core = FakeCore::new();
    core.start("chat").await;
    let attrs = core.attrs("chat");
    assert_eq!(attrs.get("version"), Some(&Value::from("1.0.0")));
    let iface = attrs.get("interface").unwrap();
    assert_eq!(iface.get("name"), Some(&Value::from("chat")));
    let methods = iface.get("methods").unwrap().as_list().unwrap();
    let names: Vec<&str> = methods
        .iter()
        .filter_map(|m| m.get("name").and_then(Value::as_str))
        .collect();
    assert_eq!(names, ["send", "history"]);
    let events = iface.get("events").unwrap().as_list().unwrap();
    assert_eq!(events[0].get("name"), Some(&Value::from("chatMessage")));
}

#[tokio::test]
async fn events_reach_exactly_the_subscribers() {
    let mut core = FakeCore::new();
    core.start("chat").await;
    core.start("probe").await;
    // probe subscribes to chat directly (token via the fake core); the core does not.
    core.call("probe", "watch", vec!["chat".into(), "chatMessage".into()])
        .await
        .unwrap();
    let seen = eventually(LONG, || async {
        core.call("chat", "send", vec!["ada".into(), "one".into()])
            .await
            .unwrap();
        let seen = core.call("probe", "seen", vec![]).await.unwrap();
        (!seen.as_list().unwrap().is_empty()).then_some(seen)
    })
    .await
    .expect("probe never saw a chat message");
    let first = &seen.as_list().unwrap()[0];
    assert_eq!(first.get("event"), Some(&Value::from("chat.chatMessage")));
    let data = first.get("data").unwrap().as_list().unwrap();
    assert_eq!(&data[1..], &[Value::from("ada"), Value::from("one")]);
    assert!(data[0].as_i64().unwrap() > 1_600_000_000_000);
    assert!(
        core.next_event(Duration::from_millis(200)).await.is_none(),
        "the core did not subscribe, so it must get nothing"
    );

    // Now the core subscribes to everything of chat ("" = all events).
    // No wait: the subscribe and the call travel in order on one connection, and the module
    // registers a subscription before it reads the next frame.
    core.session("chat").subscribe("chat", "").unwrap();
    core.call("chat", "send", vec!["bob".into(), "two".into()])
        .await
        .unwrap();
    let e = core.next_event(LONG).await.unwrap();
    assert_eq!(
        (e.source.as_str(), e.event.as_str()),
        ("chat", "chatMessage")
    );
    assert_eq!(&e.data[1..], &[Value::from("bob"), Value::from("two")]);
}

#[tokio::test]
async fn peers_need_a_live_token_for_exactly_their_name() {
    let core = FakeCore::new();
    core.start("calc").await;

    let refused = core.connect_peer("calc", "tester", vec![1; 32]).await;
    let msg = refused.unwrap_err().to_string();
    assert!(
        msg.contains("unauthorized") && msg.contains("no token was granted to \"tester\""),
        "{msg}"
    );

    let token = core.grant("tester", "calc", None).await;
    let peer = core
        .connect_peer("calc", "tester", token.clone())
        .await
        .unwrap();
    assert_eq!(
        peer.call("calc", "add", vec![1.into(), 1.into()], LONG)
            .await,
        Ok(Value::Int(2))
    );
    // Reserved methods are for the control connection only.
    let f = peer
        .call(
            "calc",
            "$grant",
            vec!["x".into(), Value::Bytes(vec![1].into()), Value::Null],
            LONG,
        )
        .await
        .unwrap_err();
    assert_eq!(f.code, ErrorCode::Unauthorized);

    // The same token under another name is worthless.
    let msg = core
        .connect_peer("calc", "impostor", token.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("no token was granted to \"impostor\""),
        "{msg}"
    );
    // A wrong token for the right name too.
    let msg = core
        .connect_peer("calc", "tester", vec![9; 32])
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not a live token"), "{msg}");

    // A grant bound to a pid admits only that pid (this test process is not pid 1).
    let bound = core.grant("pinned", "calc", Some(1)).await;
    let msg = core
        .connect_peer("calc", "pinned", bound)
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("bound to pid 1"), "{msg}");
    let mine = core.grant("pinned", "calc", Some(std::process::id())).await;
    core.connect_peer("calc", "pinned", mine).await.unwrap();

    // Revoking closes the live connection and kills the token.
    core.session("calc")
        .call("calc", "$revoke", vec!["tester".into()], LONG)
        .await
        .unwrap();
    tokio::time::timeout(LONG, peer.closed()).await.unwrap();
    let msg = core
        .connect_peer("calc", "tester", token)
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no token was granted"), "{msg}");
}

#[tokio::test]
async fn modules_call_each_other_through_tokens() {
    let core = FakeCore::new();
    core.start("calc").await;
    core.start("chat").await;
    core.start("greeter").await;
    assert_eq!(
        core.call("greeter", "sum", vec![2.into(), 3.into()]).await,
        Ok(Value::Int(5))
    );
    assert_eq!(
        core.call("greeter", "greet", vec!["Bob".into()]).await,
        Ok(Value::from("Hello, Bob!"))
    );
    let history = core.call("chat", "history", vec![]).await.unwrap();
    let last = history.as_list().unwrap().last().unwrap().clone();
    assert_eq!(last.get("nick"), Some(&Value::from("greeter")));
    assert_eq!(last.get("message"), Some(&Value::from("Hello, Bob!")));
    // A failure of the called module comes back with its code.
    let f = core
        .call("greeter", "sum", vec![i64::MAX.into(), 1.into()])
        .await
        .unwrap_err();
    assert_eq!(f.code, ErrorCode::MethodFailed);
    assert!(f.message.contains("overflow"), "{}", f.message);
}

#[tokio::test]
async fn calls_bounce_a_to_b_to_a() {
    let core = FakeCore::new();
    core.start("probe").await;
    core.start("relay").await;
    assert_eq!(
        core.call("probe", "bounce", vec![7.into()]).await,
        Ok(Value::Int(7))
    );
}

#[tokio::test]
async fn streams_are_flow_controlled_and_intact() {
    let core = FakeCore::new();
    core.start("probe").await;
    core.start("relay").await;
    let size: u64 = 3 * 1024 * 1024 + 12345;
    let report = core
        .call(
            "probe",
            "streamTo",
            vec!["relay".into(), "sink".into(), size.into()],
        )
        .await
        .unwrap();
    assert_eq!(report.get("sent"), Some(&Value::from(size)));
    let max_unacked = report.get("maxUnacked").unwrap().as_u64().unwrap();
    assert!(max_unacked <= 256 * 1024, "window exceeded: {max_unacked}");
    assert!(max_unacked > 0);
    let sink = core.call("relay", "sinkResult", vec![]).await.unwrap();
    assert_eq!(sink.get("received"), Some(&Value::from(size)));
    assert_eq!(sink.get("hash"), report.get("hash"));

    // A protocol nobody serves is reset.
    let f = core
        .call(
            "probe",
            "streamTo",
            vec!["relay".into(), "nope".into(), 10.into()],
        )
        .await
        .unwrap_err();
    assert_eq!(f.code, ErrorCode::MethodFailed);
}

#[tokio::test]
async fn panics_fail_the_call_not_the_module() {
    let core = FakeCore::new();
    core.start("probe").await;
    let f = core
        .call("probe", "panic", vec!["boom".into()])
        .await
        .unwrap_err();
    assert_eq!(f.code, ErrorCode::MethodFailed);
    assert!(f.message.contains("boom"), "{}", f.message);
    assert_eq!(
        core.call("probe", "echo", vec![Value::Bytes(vec![1, 2].into())])
            .await,
        Ok(Value::Bytes(vec![1, 2].into()))
    );
}

#[tokio::test]
async fn health_is_reported_in_pong() {
    let core = FakeCore::new();
    core.start("probe").await;
    core.call("probe", "setUnhealthy", vec!["disk full".into()])
        .await
        .unwrap();
    assert_eq!(
        core.session("probe").ping(LONG).await,
        Ok(Some("disk full".to_owned()))
    );
    core.call("probe", "setUnhealthy", vec![Value::Null])
        .await
        .unwrap();
    assert_eq!(core.session("probe").ping(LONG).await, Ok(None));
}

#[tokio::test]
async fn shutdown_lets_in_flight_calls_finish_then_exits_zero() {
    let core = FakeCore::new();
    core.start("probe").await;
    let session = core.session("probe");
    let slow = {
        let s = session.clone();
        tokio::spawn(async move { s.call("probe", "sleep", vec![300.into()], LONG).await })
    };
    // Shut down only once the module counts the call as running (its `$stats`).
    eventually(LONG, || async {
        let stats = core.call("probe", "$stats", vec![]).await.ok()?;
        (stats.get("inFlight") == Some(&Value::Int(1))).then_some(())
    })
    .await
    .expect("the slow call never started");
    session.send_shutdown(Duration::from_secs(5));
    assert_eq!(slow.await.unwrap(), Ok(Value::Int(300)));
    assert_eq!(core.wait_exit("probe", LONG).await, Some(0));
}

#[tokio::test]
async fn module_exits_when_the_core_goes_away() {
    let core = FakeCore::new();
    core.start("calc").await;
    core.session("calc").close(logos_sdk::Fault::new(
        ErrorCode::Unavailable,
        "core stopping",
    ));
    assert_eq!(core.wait_exit("calc", LONG).await, Some(0));
}

#[tokio::test]
async fn sigterm_exits_zero() {
    let core = FakeCore::new();
    core.start("calc").await;
    core.signal("calc", libc::SIGTERM);
    assert_eq!(core.wait_exit("calc", LONG).await, Some(0));
}

#[tokio::test]
async fn exit_code_is_the_modules() {
    let core = FakeCore::new();
    core.start("probe").await;
    let _ = core.call("probe", "exit", vec![7.into()]).await;
    assert_eq!(core.wait_exit("probe", LONG).await, Some(7));
}

#[tokio::test]
async fn clients_reconnect_and_resubscribe_after_a_restart() {
    let core = FakeCore::new();
    core.start("chat").await;
    core.start("probe").await;
    core.start("greeter").await;
    core.call("probe", "watch", vec!["chat".into(), "chatMessage".into()])
        .await
        .unwrap();
    // The subscription is made in the background: send until probe sees one.
    eventually(LONG, || async {
        core.call("greeter", "greet", vec!["one".into()])
            .await
            .unwrap();
        let seen = core.call("probe", "seen", vec![]).await.unwrap();
        (!seen.as_list().unwrap().is_empty()).then_some(())
    })
    .await
    .expect("first message not seen");

    core.kill("chat").await;
    // While chat is down, calls to it fail fast with unavailable.
    let started = std::time::Instant::now();
    let f = core
        .call("greeter", "greet", vec!["nobody".into()])
        .await
        .unwrap_err();
    assert_eq!(f.code, ErrorCode::Unavailable, "{f}");
    assert!(started.elapsed() < Duration::from_secs(5));

    core.start("chat").await;
    // greeter reconnects by itself; probe re-subscribes by itself (moduleUp or backoff).
    eventually(LONG, || async {
        let _ = core.call("greeter", "greet", vec!["two".into()]).await;
        let seen = core.call("probe", "seen", vec![]).await.unwrap();
        seen.as_list()
            .unwrap()
            .iter()
            .any(|s| {
                s.get("data")
                    .and_then(|d| d.as_list())
                    .is_some_and(|d| d.get(2) == Some(&Value::from("Hello, two!")))
            })
            .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("probe never re-subscribed\n{}", core.log("probe")));
}

#[tokio::test]
async fn kv_persists_across_restarts() {
    let core = FakeCore::new();
    core.start("kv").await;
    core.call(
        "kv",
        "set",
        vec!["k".into(), Value::Bytes(vec![0, 255].into())],
    )
    .await
    .unwrap();
    core.call("kv", "set", vec!["n".into(), Value::from(5)])
        .await
        .unwrap();
    assert_eq!(
        core.call("kv", "delete", vec!["n".into()]).await,
        Ok(Value::Bool(true))
    );
    core.kill("kv").await;
    core.start("kv").await;
    assert_eq!(
        core.call("kv", "get", vec!["k".into()]).await,
        Ok(Value::Bytes(vec![0, 255].into()))
    );
    assert_eq!(
        core.call("kv", "get", vec!["n".into()]).await,
        Ok(Value::Null)
    );
    assert_eq!(
        core.call("kv", "keys", vec![]).await,
        Ok(Value::List(vec!["k".into()]))
    );
}
