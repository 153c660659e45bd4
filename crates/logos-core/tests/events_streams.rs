//! Events and streams between real module processes: only subscribers receive, order per
//! publisher and subscriber holds, slow subscribers are bounded, and 64 MiB crosses a stream
//! to a slow reader intact while the writer never has more than one window in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_core::{Notification, Value};
use std::time::Duration;
use support::{World, int, text};

async fn next_event(sub: &mut logos_core::Subscription) -> (String, Vec<Value>) {
    match tokio::time::timeout(Duration::from_secs(10), sub.recv()).await {
        Ok(Some(Notification::Event { event, data, .. })) => (event, data),
        other => panic!("expected an event, got {other:?}"),
    }
}

/// How many events probe has seen; with `at_least` > 0, keeps sending chat messages until it
/// has seen that many (its subscription, made in the background, is live).
async fn seen_count(core: &logos_core::Core, at_least: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = core.call("probe", "seen", vec![]).await.expect("seen");
        let n = seen.as_list().map_or(0, <[Value]>::len);
        if n >= at_least {
            return n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "probe's subscription never became live"
        );
        if at_least > 0 {
            core.call("chat", "send", vec![text("sync"), text("ping")])
                .await
                .expect("send");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn subscribers_get_events_in_order_and_others_get_none() {
    let mut w = World::new();
    w.stage_all(&["calc", "chat", "greeter", "probe"]);
    let core = w.start().await;
    core.load_many(&["greeter", "probe"]).await.expect("load");
    // A module subscribes too (through the SDK, directly to chat).
    core.call("probe", "watch", vec![text("chat"), text("chatMessage")])
        .await
        .expect("watch");
    let baseline = seen_count(&core, 1).await;
    let mut chat = core
        .subscribe("chat", "chatMessage")
        .expect("subscribe chat");
    let mut calc = core.subscribe("calc", "").expect("subscribe calc");

    core.call("greeter", "greet", vec![text("Ada")])
        .await
        .expect("greet");
    let (event, data) = next_event(&mut chat).await;
    assert_eq!(event, "chatMessage");
    assert!(
        data[0].as_i64().is_some_and(|ts| ts > 1_600_000_000_000),
        "timestamp ms: {data:?}"
    );
    assert_eq!(&data[1..], &[text("greeter"), text("Hello, Ada!")]);

    for i in 0..100 {
        core.call(
            "chat",
            "send",
            vec![text("bob"), Value::from(format!("m{i}"))],
        )
        .await
        .expect("send");
    }
    for i in 0..100 {
        let (_, data) = next_event(&mut chat).await;
        assert_eq!(data[2], Value::from(format!("m{i}")), "order");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen_count(&core, 0).await < baseline + 101 {
        assert!(
            std::time::Instant::now() < deadline,
            "probe did not see all 101 messages"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // calc emitted nothing; its subscriber got nothing.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), calc.recv())
            .await
            .is_err()
    );
    core.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_bounded_and_told_what_it_lost() {
    let mut w = World::new();
    w.stage("probe");
    let core = w.start().await;
    core.load("probe").await.expect("load");
    let mut sub = core.subscribe("probe", "tick").expect("subscribe");
    let n = 20_000;
    core.call("probe", "flood", vec![int(n)])
        .await
        .expect("flood");
    // Read everything that arrives; the gaps are reported, the rest is in order.
    let mut last = -1i64;
    let mut received = 0i64;
    let mut lost = 0u64;
    loop {
        match tokio::time::timeout(Duration::from_secs(2), sub.recv()).await {
            Ok(Some(Notification::Event { data, .. })) => {
                let i = data[0].as_i64().expect("tick index");
                assert!(i > last, "order: {i} after {last}");
                last = i;
                received += 1;
            }
            Ok(Some(Notification::Lagged { dropped })) => lost += dropped,
            _ => break,
        }
        if last == n - 1 {
            break;
        }
    }
    assert!(received > 0);
    assert!(
        received < n || lost == 0,
        "bounded: {received} received, {lost} lost"
    );
    core.shutdown().await;
}

#[tokio::test]
async fn sixty_four_mib_reach_a_slow_reader_intact_within_one_window() {
    let mut w = World::new();
    w.stage_all(&["probe", "relay"]);
    let b = w.builder().call_timeout(Duration::from_secs(600));
    let core = w.start_with(b).await;
    core.load_many(&["probe", "relay"]).await.expect("load");
    let bytes = 64 * 1024 * 1024;
    let report = core
        .call(
            "probe",
            "streamTo",
            vec![text("relay"), text("sink"), int(bytes)],
        )
        .await
        .expect("stream");
    let sent = report.get("sent").and_then(Value::as_i64);
    let max_unacked = report
        .get("maxUnacked")
        .and_then(Value::as_u64)
        .expect("maxUnacked");
    assert_eq!(sent, Some(bytes));
    assert!(
        max_unacked <= logos_wire::credit::DEFAULT_WINDOW,
        "writer had {max_unacked} bytes in flight, window is {}",
        logos_wire::credit::DEFAULT_WINDOW
    );
    let sink = core
        .call("relay", "sinkResult", vec![])
        .await
        .expect("sinkResult");
    assert_eq!(sink.get("received").and_then(Value::as_i64), Some(bytes));
    assert_eq!(
        sink.get("hash"),
        report.get("hash"),
        "same bytes in the same order"
    );
    core.shutdown().await;
}
