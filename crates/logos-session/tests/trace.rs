//! The trace context of calls (protocol 1.2, docs/protocol.md §6.6) between a session and a raw
//! peer: it reaches a 1.2 peer and the handler, it is never sent to a 1.1 peer, calls from a
//! peer that sends none still work, and a malformed one closes the connection with an error
//! naming the field.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_session::{Config, Fault, Session};
use logos_wire::{Call, ErrorCode, Message, TraceContext, Value};
use std::sync::Arc;
use support::*;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

const CTX: TraceContext = TraceContext {
    trace_id: [0x4b; 16],
    span_id: [0x0f; 8],
    flags: 1,
};

/// A session accepted from a raw peer that announced `minor`; the handler forwards each
/// call's trace.
async fn with_peer(
    minor: u16,
) -> (
    RawPeer,
    Session,
    mpsc::UnboundedReceiver<Option<TraceContext>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (probe, _seen) = Probe::new(move |_s: Session, call: Call| {
        let _ = tx.send(call.trace);
        async move { Ok::<Value, Fault>(Value::from("ok")) }
    });
    let (sa, sb) = UnixStream::pair().unwrap();
    let mut raw = RawPeer::new(sa);
    let mut h = hello("raw");
    h.minor = minor;
    raw.send(&Message::Hello(h)).await;
    let pending = soon(
        "read_hello",
        logos_session::read_hello(sb, Config::default()),
    )
    .await
    .unwrap();
    let session = pending
        .accept("raw".into(), welcome("session"), Arc::new(probe))
        .await
        .unwrap();
    assert!(matches!(raw.recv().await, Some(Message::Welcome(_))));
    (raw, session, rx)
}

fn call(id: u64, trace: Option<TraceContext>) -> Message {
    Message::Call(Call {
        id,
        target: "session".into(),
        method: "m".into(),
        args: vec![],
        timeout_ms: 0,
        trace,
    })
}

/// A traced call from the session to a raw peer announcing minor `minor`, answered: the
/// peer, the handler's trace channel, and the context the peer saw on the call.
async fn traced_call_to(
    minor: u16,
) -> (
    RawPeer,
    mpsc::UnboundedReceiver<Option<TraceContext>>,
    Option<TraceContext>,
) {
    let (mut raw, session, traces) = with_peer(minor).await;
    let out = tokio::spawn(async move {
        session
            .call_traced("raw", "m", vec![], SOON, Some(CTX))
            .await
    });
    let (id, trace) = raw
        .recv_until(|m| match m {
            Message::Call(c) => Some((c.id, c.trace)),
            _ => None,
        })
        .await;
    raw.send(&Message::Reply {
        id,
        value: Value::Null,
    })
    .await;
    out.await.unwrap().unwrap();
    (raw, traces, trace)
}

#[tokio::test]
async fn a_1_2_peer_gets_the_context_and_sends_it() {
    let (mut raw, mut traces, trace) = traced_call_to(2).await;
    assert_eq!(trace, Some(CTX));

    raw.send(&call(1, Some(CTX))).await;
    assert_eq!(soon("the handler", traces.recv()).await, Some(Some(CTX)));
}

#[tokio::test]
async fn an_old_peer_gets_no_context_and_its_calls_work() {
    let (mut raw, mut traces, trace) = traced_call_to(1).await;
    assert_eq!(trace, None, "a 1.1 peer would refuse a 7-item call");

    // A 6-item call, as a 1.0/1.1 peer sends it: served, with no context.
    raw.send(&call(1, None)).await;
    assert_eq!(soon("the handler", traces.recv()).await, Some(None));
    let reply = raw
        .recv_until(|m| match m {
            Message::Reply { id: 1, value } => Some(value),
            _ => None,
        })
        .await;
    assert_eq!(reply, Value::from("ok"));
}

#[tokio::test]
async fn a_malformed_context_closes_the_connection_naming_the_field() {
    let (mut raw, session, _traces) = with_peer(2).await;
    // call {id 1, "calc", "add", [], 0, trace: [15-byte trace id, span, 1]} (protocol.md §13.3)
    let frame = hex_bytes(
        "00000029 8702016463616c63 636164648000834f 4bf92f3577b34da6 a3ce929d0e0e4748
         00f067aa0ba902b7 01",
    );
    raw.send_bytes(&frame).await;
    let (code, message) = raw.closing_error().await.expect("an error id 0");
    assert_eq!(code, ErrorCode::ProtocolError);
    assert!(message.contains("call.trace.trace_id"), "{message}");
    assert!(message.contains("expected 16 bytes, found 15"), "{message}");
    soon("the session closes", session.closed()).await;
}

fn hex_bytes(text: &str) -> Vec<u8> {
    let digits: String = text.split_whitespace().collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}
