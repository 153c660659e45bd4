//! A thread that polls for its own call's answer (`PollingCaller`, as the C API's caller
//! thread does) reads the connection itself: it gets its answer, and everything the peer sent
//! before it, in order, even when the connection's reader task cannot run at all. Real Unix
//! sockets, two runtimes: the peer's is driven on its own thread, the caller's is not driven
//! while the caller waits, so only `PollingCaller::read_now` can take the answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_session::{Config, Fault, PollingCaller, Session};
use logos_wire::{Call, ErrorCode, Value};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use support::*;
use tokio::runtime::{Builder, Runtime};

/// Alice (connected, her runtime returned undriven) and Bob (accepted, on a one-worker
/// runtime of his own), Bob echoing each call's first argument after sending Alice the
/// event `before` carrying it, and closing the connection on a call of `leave`.
fn pair_on_two_runtimes() -> (Runtime, Session, Runtime, Session, SeenRx) {
    let bob_rt = Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let alice_rt = Builder::new_current_thread().enable_all().build().unwrap();
    let (sa, sb) = std::os::unix::net::UnixStream::pair().unwrap();
    sa.set_nonblocking(true).unwrap();
    sb.set_nonblocking(true).unwrap();
    let (bob_probe, _) = Probe::new(|session: Session, call: Call| async move {
        if call.method == "leave" {
            session.close(Fault::new(ErrorCode::Unavailable, "bob leaves"));
            return Ok(Value::Null);
        }
        let arg = call.args.first().cloned().unwrap_or(Value::Null);
        session.send_event("bob", "before", vec![arg.clone()]);
        Ok(arg)
    });
    let server = bob_rt.spawn(async move {
        let sb = tokio::net::UnixStream::from_std(sb).unwrap();
        let pending = logos_session::read_hello(sb, Config::default())
            .await
            .unwrap();
        pending
            .accept("alice".into(), welcome("bob"), Arc::new(bob_probe))
            .await
            .unwrap()
    });
    let (alice_probe, seen) = Probe::quiet();
    let alice = alice_rt.block_on(async move {
        let sa = tokio::net::UnixStream::from_std(sa).unwrap();
        soon(
            "connect",
            logos_session::connect(sa, hello("alice"), Arc::new(alice_probe), Config::default()),
        )
        .await
        .unwrap()
        .0
    });
    let bob = bob_rt.block_on(server).unwrap();
    (alice_rt, alice, bob_rt, bob, seen)
}

/// What Alice's handler saw.
type SeenRx = tokio::sync::mpsc::UnboundedReceiver<Seen>;

/// Polls `fut` on this thread (never driving any runtime), reading with
/// `PollingCaller::read_now` between polls, until it is ready; `(output, reads that took
/// bytes)`. Panics after `SOON`.
fn wait_reading<F: Future>(fut: F) -> (F::Output, usize) {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    let deadline = Instant::now() + SOON;
    let mut reads = 0;
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return (out, reads);
        }
        assert!(
            Instant::now() < deadline,
            "no answer within {SOON:?} ({reads} reads took bytes)"
        );
        if PollingCaller::read_now() {
            reads += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

#[test]
fn a_polling_caller_takes_its_answer_off_the_socket_while_the_reader_task_cannot_run() {
    let (alice_rt, alice, _bob_rt, _bob, mut seen) = pair_on_two_runtimes();
    // One call the usual way, so the reader and writer tasks have started and run.
    let first = alice_rt.block_on(alice.call("bob", "echo", vec![Value::from("one")], SOON));
    assert_eq!(first, Ok(Value::from("one")));

    // From here Alice's runtime is never driven: her reader task cannot read.
    let _context = alice_rt.enter();
    let _polling = PollingCaller::mark();
    for word in ["two", "three", "four"] {
        let (answer, reads) =
            wait_reading(alice.call("bob", "echo", vec![Value::from(word)], SOON));
        assert_eq!(answer, Ok(Value::from(word)));
        assert!(reads >= 1, "the answer came without a read on this thread");
    }
    // The events Bob sent before each answer were taken too and handed to Alice's handler,
    // in the order sent. (Bob's writer may put an event behind the answer that followed it,
    // so the last one may still be unread; every earlier one has been read.)
    let mut events = Vec::new();
    while let Ok(s) = seen.try_recv() {
        if let Seen::Event(source, event, data) = s {
            assert_eq!((source.as_str(), event.as_str()), ("bob", "before"));
            events.push(data);
        }
    }
    let words: Vec<Vec<Value>> = ["one", "two", "three", "four"]
        .iter()
        .map(|w| vec![Value::from(*w)])
        .collect();
    assert!(events.len() >= 3, "events seen: {events:?}");
    assert_eq!(events, words[..events.len()]);
}

#[test]
fn an_unmarked_thread_or_one_without_a_call_reads_nothing() {
    let (alice_rt, alice, _bob_rt, _bob, _seen) = pair_on_two_runtimes();
    let _context = alice_rt.enter();
    // Not marked: nothing to read for, whatever the socket holds.
    assert!(!PollingCaller::read_now());
    // Marked, but no call made on this thread yet.
    let polling = PollingCaller::mark();
    assert!(!PollingCaller::read_now());
    // A call made while marked, then the mark dropped: the thread no longer reads.
    let mut call = std::pin::pin!(alice.call("bob", "echo", vec![Value::from("x")], SOON));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(call.as_mut().poll(&mut cx).is_pending());
    drop(polling);
    assert!(!PollingCaller::read_now());
    // Marked again: the earlier call's connection is forgotten with the old mark.
    let _again = PollingCaller::mark();
    assert!(!PollingCaller::read_now());
}

#[test]
fn a_polling_caller_whose_peer_leaves_is_told_at_once_and_closed_runs_once() {
    let (alice_rt, alice, _bob_rt, _bob, mut seen) = pair_on_two_runtimes();
    {
        let _context = alice_rt.enter();
        let _polling = PollingCaller::mark();
        let (answer, _) = wait_reading(alice.call("bob", "leave", vec![], SOON));
        let fault = answer.expect_err("Bob left without answering");
        assert_eq!(fault.code, ErrorCode::Unavailable, "{fault}");
        assert!(fault.message.contains("bob leaves"), "{fault}");
        assert!(alice.is_closed());
    }
    // `Handler::closed` is the reader task's to run, once her runtime runs again; once only.
    let reason = alice_rt.block_on(soon("Alice's handler told of the close", async {
        loop {
            match seen.recv().await {
                Some(Seen::Closed(reason)) => return reason,
                Some(_) => {}
                None => panic!("Alice's handler is gone"),
            }
        }
    }));
    assert!(reason.contains("bob leaves"), "{reason}");
    alice_rt.block_on(tokio::task::yield_now());
    while let Ok(s) = seen.try_recv() {
        assert!(!matches!(s, Seen::Closed(_)), "closed ran twice");
    }
}
