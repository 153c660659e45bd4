//! Calls: concurrency and ordering, deadlines both ways, cancel, re-entrancy, panics, limits,
//! connection loss, ping, shutdown, close.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use futures::future::join_all;
use logos_session::{Config, Fault, Handler, Refuse, Session};
use logos_wire::{Call, ErrorCode, Message, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::sync::{mpsc, oneshot};

/// Sends on drop: proves a handler future was dropped.
struct DropSignal(Option<oneshot::Sender<()>>);
impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// A handler whose `hang` method never finishes and reports when its future is dropped.
fn hanging() -> (
    Arc<dyn Handler>,
    mpsc::UnboundedReceiver<()>,
    mpsc::UnboundedReceiver<u64>,
) {
    let (dropped_tx, dropped_rx) = mpsc::unbounded_channel();
    let (started_tx, started_rx) = mpsc::unbounded_channel();
    let (probe, _) = Probe::new(move |_, call: Call| {
        let dropped_tx = dropped_tx.clone();
        let _ = started_tx.send(call.id);
        async move {
            let (tx, rx) = oneshot::channel();
            let _signal = DropSignal(Some(tx));
            tokio::spawn(async move {
                if rx.await.is_ok() {
                    let _ = dropped_tx.send(());
                }
            });
            futures::future::pending::<()>().await;
            Ok(Value::Null)
        }
    });
    (Arc::new(probe), dropped_rx, started_rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_calls_get_their_own_replies_out_of_order() {
    // Later calls finish first: call n returns only once call n + 1 has, so every call is in
    // flight at once and the replies come back in reverse order.
    let finished = Arc::new(tokio::sync::watch::Sender::new(1000i64));
    let (probe, _) = Probe::new(move |_, call: Call| {
        let finished = Arc::clone(&finished);
        async move {
            let n = call.args[0].as_i64().unwrap();
            finished
                .subscribe()
                .wait_for(|f| *f == n + 1)
                .await
                .map(|_| ())
                .unwrap();
            finished.send_replace(n);
            Ok(Value::from(n * 2))
        }
    });
    let (alice, _bob) = pair(Arc::new(Refuse), Arc::new(probe)).await;
    let calls = (0..1000i64).map(|n| {
        let alice = alice.clone();
        async move {
            let v = alice
                .call("bob", "double", vec![Value::from(n)], SOON)
                .await
                .unwrap();
            assert_eq!(v.as_i64(), Some(n * 2));
        }
    });
    soon("1000 calls", join_all(calls)).await;
}

#[tokio::test]
async fn call_timeout_names_the_method_and_cancels_the_handler() {
    let (h, mut dropped, _) = hanging();
    let (alice, _bob) = pair(Arc::new(Refuse), h).await;
    let started = Instant::now();
    let err = alice
        .call("bob", "hang", vec![], Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(err.code, ErrorCode::Timeout);
    assert!(err.message.contains("bob.hang"), "{err}");
    assert!(err.message.contains("100ms"), "{err}");
    soon("handler future dropped by cancel", dropped.recv())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_short_deadline_behind_a_long_one_still_times_out_on_time() {
    // One task keeps the connection's deadlines: a call whose deadline is earlier than the
    // one it sleeps towards must wake it, or that call would wait out the long one. The
    // peer never answers (nor enforces the deadline it is sent), so only the caller's own
    // deadline can end the call; it must still tell the peer it gave up.
    let (mut raw, alice) = raw_client(Arc::new(Refuse), Config::default()).await;
    let long = tokio::spawn({
        let alice = alice.clone();
        async move {
            alice
                .call("raw", "hang", vec![], Duration::from_secs(600))
                .await
        }
    });
    let first = soon("the long call", raw.recv()).await;
    assert!(matches!(first, Some(Message::Call(_))), "{first:?}");
    let began = Instant::now();
    let err = soon(
        "the short call's timeout",
        alice.call("raw", "hang", vec![], Duration::from_millis(100)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::Timeout);
    assert!(err.message.contains("raw.hang"), "{err}");
    assert!(
        began.elapsed() >= Duration::from_millis(100),
        "early: {err}"
    );
    let short = match soon("the short call", raw.recv()).await {
        Some(Message::Call(call)) => call.id,
        other => panic!("expected the short call, got {other:?}"),
    };
    match soon("its cancel", raw.recv()).await {
        Some(Message::Cancel { id }) => assert_eq!(id, short),
        other => panic!("expected a cancel of call {short}, got {other:?}"),
    }
    assert!(!long.is_finished(), "the long call must still wait");
    long.abort();
}

#[tokio::test]
async fn a_deadline_that_passes_after_its_answer_fails_no_other_call() {
    // A quick call arms a deadline it no longer needs once answered; when that deadline
    // passes, only calls past their own deadline may fail.
    let (probe, _) = Probe::new(|_, call: Call| async move {
        if call.method == "hang" {
            futures::future::pending::<()>().await;
        }
        Ok(Value::from("done"))
    });
    let (alice, _bob) = pair(Arc::new(Refuse), Arc::new(probe)).await;
    let quick = alice
        .call("bob", "quick", vec![], Duration::from_millis(50))
        .await;
    assert_eq!(quick, Ok(Value::from("done")));
    let began = Instant::now();
    let err = soon(
        "the hanging call's timeout",
        alice.call("bob", "hang", vec![], Duration::from_millis(400)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::Timeout);
    assert!(
        began.elapsed() >= Duration::from_millis(400),
        "failed at the quick call's deadline, not its own: {:?}",
        began.elapsed()
    );
    assert!(err.message.contains("bob.hang"), "{err}");
}

#[tokio::test]
async fn dropping_the_call_future_cancels_the_handler() {
    let (h, mut dropped, mut started) = hanging();
    let (alice, _bob) = pair(Arc::new(Refuse), h).await;
    let mut call = Box::pin(alice.call("bob", "hang", vec![], SOON));
    tokio::select! {
        _ = &mut call => panic!("hang returned"),
        id = started.recv() => assert_eq!(id, Some(1)),
    }
    drop(call);
    soon("handler future dropped by cancel", dropped.recv())
        .await
        .unwrap();
}

#[tokio::test]
async fn incoming_deadline_is_enforced_by_the_callee() {
    let (h, mut dropped, _) = hanging();
    let mut config = Config::default();
    config.default_call_timeout = Duration::from_millis(100);
    let (mut raw, _session) = raw_client(h, config).await;
    let call = |id, timeout_ms| {
        Message::Call(Call {
            id,
            target: "session".into(),
            method: "hang".into(),
            args: vec![],
            timeout_ms,
            trace: None,
        })
    };
    raw.send(&call(1, 50)).await;
    raw.send(&call(2, 0)).await;
    for _ in 0..2 {
        let (id, code, message) = raw
            .recv_until(|m| match m {
                Message::Error { id, code, message } => Some((id, code, message)),
                _ => None,
            })
            .await;
        assert!(id == 1 || id == 2);
        assert_eq!(code, ErrorCode::Timeout);
        assert!(message.contains("session.hang"), "{message}");
        soon("handler future dropped", dropped.recv())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn cancel_from_the_peer_drops_the_handler_and_sends_nothing() {
    let (h, mut dropped, mut started) = hanging();
    let (mut raw, _session) = raw_client(h, Config::default()).await;
    raw.send(&Message::Call(Call {
        id: 5,
        target: "session".into(),
        method: "hang".into(),
        args: vec![],
        timeout_ms: 60_000,
        trace: None,
    }))
    .await;
    assert_eq!(soon("call started", started.recv()).await, Some(5));
    raw.send(&Message::Cancel { id: 5 }).await;
    soon("handler future dropped", dropped.recv())
        .await
        .unwrap();
    // No answer to the cancelled call comes before the answer to a later ping.
    raw.send(&Message::Ping { nonce: 9 }).await;
    match raw.recv().await {
        Some(Message::Pong { nonce: 9, .. }) => {}
        other => panic!("expected only the pong, got {other:?}"),
    }
    // The id may be reused once cancelled.
    raw.send(&Message::Call(Call {
        id: 5,
        target: "session".into(),
        method: "hang".into(),
        args: vec![],
        timeout_ms: 60_000,
        trace: None,
    }))
    .await;
    assert_eq!(soon("call restarted", started.recv()).await, Some(5));
}

/// Serves `outer` by calling `inner` back on the caller, over the same connection.
fn reentrant() -> Arc<dyn Handler> {
    let (probe, _) = Probe::new(|session: Session, call: Call| async move {
        match call.method.as_str() {
            "outer" => {
                let v = session
                    .call("alice", "inner", vec![Value::from(20)], SOON)
                    .await?;
                Ok(Value::from(v.as_i64().unwrap_or(0) + 1))
            }
            "inner" => Ok(Value::from(call.args[0].as_i64().unwrap_or(0) * 2)),
            m => Err(Fault::new(ErrorCode::UnknownMethod, m.to_owned())),
        }
    });
    Arc::new(probe)
}

#[tokio::test]
async fn reentrant_call_a_to_b_to_a_over_one_connection() {
    let (alice, bob) = pair(reentrant(), reentrant()).await;
    let v = soon("outer", alice.call("bob", "outer", vec![], SOON))
        .await
        .unwrap();
    assert_eq!(v.as_i64(), Some(41));
    let v = soon("outer", bob.call("alice", "outer", vec![], SOON))
        .await
        .unwrap();
    assert_eq!(v.as_i64(), Some(41));
}

#[tokio::test]
async fn panicking_handler_replies_method_failed_and_the_session_keeps_serving() {
    let (probe, _) = Probe::new(|_, call: Call| async move {
        if call.method == "boom" {
            panic!("boom at {}", call.id);
        }
        Ok(Value::from("fine"))
    });
    let (alice, _bob) = pair(Arc::new(Refuse), Arc::new(probe)).await;
    let err = soon("boom", alice.call("bob", "boom", vec![], SOON))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::MethodFailed);
    assert_eq!(err.message, "method panicked: boom at 1");
    let ok = soon("ok", alice.call("bob", "ok", vec![], SOON))
        .await
        .unwrap();
    assert_eq!(ok, Value::from("fine"));
}

/// A handler that panics while *building* the future, not while polling it.
struct PanicsEagerly;
impl Handler for PanicsEagerly {
    fn call(
        &self,
        _: Session,
        _: Call,
    ) -> futures::future::BoxFuture<'static, Result<Value, Fault>> {
        panic!("eager")
    }
}

#[tokio::test]
async fn handler_panicking_before_its_future_exists_is_method_failed_too() {
    let (alice, _bob) = pair(Arc::new(Refuse), Arc::new(PanicsEagerly)).await;
    let err = soon("eager", alice.call("bob", "x", vec![], SOON))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Fault::new(ErrorCode::MethodFailed, "method panicked: eager")
    );
    let err = soon("again", alice.call("bob", "x", vec![], SOON))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::MethodFailed);
}

/// Serves `now` at once (`Handler::call_now`), panics there on `boom`, and gives every other
/// call back for its future, which answers `later`.
struct AtOnce;
impl Handler for AtOnce {
    fn call_now(&self, _: &Session, call: Call) -> Result<Result<Value, Fault>, Call> {
        match call.method.as_str() {
            "now" => Ok(Ok(Value::List(call.args))),
            "boom" => panic!("at once"),
            "refused" => Ok(Err(Fault::new(ErrorCode::InvalidArgs, "not that"))),
            _ => Err(call),
        }
    }
    fn call(
        &self,
        _: Session,
        call: Call,
    ) -> futures::future::BoxFuture<'static, Result<Value, Fault>> {
        Box::pin(async move { Ok(Value::from(format!("later: {}", call.method))) })
    }
}

#[tokio::test]
async fn a_call_served_at_once_is_answered_and_one_given_back_runs_its_future() {
    let (alice, _bob) = pair(Arc::new(Refuse), Arc::new(AtOnce)).await;
    let now = soon(
        "now",
        alice.call("bob", "now", vec![1.into(), "a".into()], SOON),
    )
    .await;
    assert_eq!(now, Ok(Value::List(vec![1.into(), "a".into()])));
    let later = soon("later", alice.call("bob", "other", vec![], SOON)).await;
    assert_eq!(later, Ok(Value::from("later: other")));
    let refused = soon("refused", alice.call("bob", "refused", vec![], SOON)).await;
    assert_eq!(refused, Err(Fault::new(ErrorCode::InvalidArgs, "not that")));
    let err = soon("boom", alice.call("bob", "boom", vec![], SOON))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Fault::new(ErrorCode::MethodFailed, "method panicked: at once")
    );
    // The connection keeps serving both ways.
    let now = soon("again", alice.call("bob", "now", vec![], SOON)).await;
    assert_eq!(now, Ok(Value::List(vec![])));
    let later = soon("later again", alice.call("bob", "x", vec![], SOON)).await;
    assert_eq!(later, Ok(Value::from("later: x")));
}

#[tokio::test]
async fn handler_faults_cross_unchanged() {
    let (alice, _bob) = pair(Arc::new(Refuse), Arc::new(Refuse)).await;
    let err = soon("call", alice.call("bob", "nope", vec![], SOON))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Fault::new(ErrorCode::UnknownMethod, "bob.nope is not served here")
    );
}

#[tokio::test]
async fn connection_closed_mid_call_fails_it_at_once_with_unavailable() {
    let (h, _dropped, mut started) = hanging();
    let (alice, bob) = pair(Arc::new(Refuse), h).await;
    let began = Instant::now();
    let call = tokio::spawn({
        let alice = alice.clone();
        async move {
            alice
                .call("bob", "hang", vec![], Duration::from_secs(60))
                .await
        }
    });
    soon("call started", started.recv()).await.unwrap();
    bob.close(Fault::new(ErrorCode::Unavailable, "bob is going away"));
    let err = soon("call to fail", call).await.unwrap().unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(err.message.contains("bob is going away"), "{err}");
    assert!(began.elapsed() < Duration::from_secs(10));
    // New calls fail at once too.
    let err = soon("late call", alice.call("bob", "hang", vec![], SOON))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
}

#[tokio::test]
async fn peer_socket_dropped_mid_call_fails_it_with_unavailable() {
    let (mut raw, session) = raw_client(Arc::new(Refuse), Config::default()).await;
    let call = tokio::spawn({
        let session = session.clone();
        async move {
            session
                .call("raw", "x", vec![], Duration::from_secs(60))
                .await
        }
    });
    raw.recv_until(|m| matches!(m, Message::Call(_)).then_some(()))
        .await;
    drop(raw);
    let err = soon("call to fail", call).await.unwrap().unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(
        soon("closed", session.closed())
            .await
            .contains("peer closed")
    );
    assert!(session.is_closed());
}

#[tokio::test]
async fn calls_beyond_the_in_flight_limit_get_limit() {
    let (h, _dropped, mut started) = hanging();
    let mut config = Config::default();
    config.max_calls_in_flight = 2;
    let (alice, _bob) = pair_with(Arc::new(Refuse), h, config).await;
    let mut running = Vec::new();
    for _ in 0..2 {
        let alice = alice.clone();
        running.push(tokio::spawn(async move {
            alice.call("bob", "hang", vec![], SOON).await
        }));
        soon("call started", started.recv()).await.unwrap();
    }
    let err = soon("third", alice.call("bob", "hang", vec![], SOON))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Limit);
    assert!(err.message.contains("bob.hang"), "{err}");
    for r in running {
        r.abort();
    }
}

#[tokio::test]
async fn replies_for_unknown_ids_are_ignored() {
    let (mut raw, session) = raw_client(Arc::new(Refuse), Config::default()).await;
    raw.send(&Message::Reply {
        id: 999,
        value: Value::Null,
    })
    .await;
    raw.send(&Message::Error {
        id: 998,
        code: ErrorCode::Timeout,
        message: "late".into(),
    })
    .await;
    raw.send(&Message::Ping { nonce: 3 }).await;
    assert!(matches!(
        raw.recv().await,
        Some(Message::Pong { nonce: 3, .. })
    ));
    assert!(!session.is_closed());
}

#[tokio::test]
async fn duplicate_in_flight_id_is_a_protocol_error() {
    let (h, _dropped, mut started) = hanging();
    let (mut raw, session) = raw_client(h, Config::default()).await;
    let call = Message::Call(Call {
        id: 7,
        target: "session".into(),
        method: "hang".into(),
        args: vec![],
        timeout_ms: 60_000,
        trace: None,
    });
    raw.send(&call).await;
    soon("call started", started.recv()).await.unwrap();
    raw.send(&call).await;
    let (code, message) = raw.closing_error().await.expect("error frame");
    assert_eq!(code, ErrorCode::ProtocolError);
    assert!(message.contains("call id 7"), "{message}");
    assert!(
        soon("closed", session.closed())
            .await
            .contains("protocol_error")
    );
}

#[tokio::test]
async fn ping_reports_the_handlers_health() {
    let (probe, _) = Probe::quiet();
    let probe = Arc::new(probe);
    let (alice, _bob) = pair(Arc::new(Refuse), probe.clone()).await;
    assert_eq!(soon("ping", alice.ping(SOON)).await, Ok(None));
    probe.set_health(Some("disk full"));
    assert_eq!(
        soon("ping", alice.ping(SOON)).await,
        Ok(Some("disk full".into()))
    );
}

#[tokio::test]
async fn ping_to_a_peer_that_never_answers_times_out() {
    let (_raw, session) = raw_client(Arc::new(Refuse), Config::default()).await;
    let err = soon("ping", session.ping(Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Timeout);
}

#[tokio::test]
async fn shutdown_and_subscriptions_reach_the_handler() {
    let (probe, mut seen) = Probe::quiet();
    let (alice, _bob) = pair(Arc::new(Refuse), Arc::new(probe)).await;
    alice.subscribe("chat", "message").unwrap();
    alice.unsubscribe("chat", "").unwrap();
    alice.send_shutdown(Duration::from_millis(1500));
    let s = next_seen(&mut seen, |s| match s {
        Seen::Subscribe(a, b) => Some((a, b)),
        _ => None,
    })
    .await;
    assert_eq!(s, ("chat".into(), "message".into()));
    let s = next_seen(&mut seen, |s| match s {
        Seen::Unsubscribe(a, b) => Some((a, b)),
        _ => None,
    })
    .await;
    assert_eq!(s, ("chat".into(), String::new()));
    let grace = next_seen(&mut seen, |s| match s {
        Seen::Shutdown(g) => Some(g),
        _ => None,
    })
    .await;
    assert_eq!(grace, Duration::from_millis(1500));
}

#[tokio::test]
async fn close_tells_the_peer_and_handlers_hear_closed_exactly_once() {
    let (pa, mut seen_a) = Probe::quiet();
    let (pb, mut seen_b) = Probe::quiet();
    let (alice, bob) = pair(Arc::new(pa), Arc::new(pb)).await;
    alice.close(Fault::new(ErrorCode::Unauthorized, "token revoked"));
    alice.close(Fault::new(ErrorCode::Limit, "second close is ignored"));
    assert!(alice.is_closed());
    let reason = soon("bob closed", bob.closed()).await;
    assert!(reason.contains("unauthorized: token revoked"), "{reason}");
    assert!(
        soon("alice closed", alice.closed())
            .await
            .contains("token revoked")
    );
    for seen in [&mut seen_a, &mut seen_b] {
        let reason = next_seen(seen, |s| match s {
            Seen::Closed(r) => Some(r),
            _ => None,
        })
        .await;
        assert!(reason.contains("token revoked"), "{reason}");
    }
    // Exactly once: once both sessions are gone, no second `closed` was recorded.
    drop((alice, bob));
    for seen in [&mut seen_a, &mut seen_b] {
        while let Ok(s) = seen.try_recv() {
            assert!(!matches!(s, Seen::Closed(_)), "closed reported twice");
        }
    }
}

#[tokio::test]
async fn oversized_call_is_refused_locally_and_the_connection_survives() {
    let mut config = Config::default();
    config.max_frame = 1024;
    let (alice, _bob) = pair_with(Arc::new(Refuse), Arc::new(Refuse), config).await;
    let err = soon(
        "big call",
        alice.call("bob", "x", vec![Value::Bytes(vec![0; 4096].into())], SOON),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::Limit);
    assert_eq!(soon("ping", alice.ping(SOON)).await, Ok(None));
}
