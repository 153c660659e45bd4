//! Hostile peers: garbage, oversized and truncated frames, protocol violations. Each closes
//! only the offending connection, with the right `error` frame, and never panics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use logos_session::{Config, Refuse, Session};
use logos_wire::{ErrorCode, Message, Value};
use std::sync::Arc;
use support::*;
use tokio::io::AsyncWriteExt;

/// Expects the session to have sent `error` id 0 with `code` (message containing `needle`)
/// and closed the connection.
async fn expect_closed_with(raw: &mut RawPeer, session: &Session, code: ErrorCode, needle: &str) {
    let (got, message) = raw
        .closing_error()
        .await
        .expect("an error frame before EOF");
    assert_eq!(got, code, "{message}");
    assert!(message.contains(needle), "{message}");
    let reason = soon("session closed", session.closed()).await;
    assert!(reason.contains(code.as_str()), "{reason}");
    assert!(session.is_closed());
}

async fn raw() -> (RawPeer, Session, tokio::sync::mpsc::UnboundedReceiver<Seen>) {
    let (probe, seen) = Probe::quiet();
    let (raw, session) = raw_client(Arc::new(probe), Config::default()).await;
    (raw, session, seen)
}

#[tokio::test]
async fn garbage_bytes_close_only_that_connection_with_protocol_error() {
    let (alice, _bob) = pair(Arc::new(Refuse), Arc::new(Refuse)).await;
    let (mut raw, session, mut seen) = raw().await;
    raw.send_bytes(&[0, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef])
        .await;
    expect_closed_with(&mut raw, &session, ErrorCode::ProtocolError, "invalid").await;
    let reason = next_seen(&mut seen, |s| match s {
        Seen::Closed(r) => Some(r),
        _ => None,
    })
    .await;
    assert!(reason.contains("protocol_error"), "{reason}");
    // Another connection is unaffected.
    assert_eq!(soon("ping", alice.ping(SOON)).await, Ok(None));
}

#[tokio::test]
async fn oversized_length_prefix_is_refused_with_limit_before_the_body_arrives() {
    let (mut raw, session, _seen) = raw().await;
    let len = u32::try_from(logos_wire::codec::DEFAULT_MAX_FRAME + 1).unwrap();
    raw.send_bytes(&len.to_be_bytes()).await;
    expect_closed_with(&mut raw, &session, ErrorCode::Limit, "exceeds").await;
}

#[tokio::test]
async fn a_smaller_configured_cap_is_enforced() {
    let mut config = Config::default();
    config.max_frame = 100;
    let (mut raw, session) = raw_client(Arc::new(Refuse), config).await;
    raw.send(&Message::Event {
        source: "s".into(),
        event: "e".into(),
        data: vec![Value::Bytes(vec![0; 200].into())],
    })
    .await;
    expect_closed_with(&mut raw, &session, ErrorCode::Limit, "limit of 100").await;
}

#[tokio::test]
async fn truncated_frame_then_eof_is_a_protocol_error() {
    let (mut raw, session, _seen) = raw().await;
    raw.send_bytes(&[0, 0, 0, 50, 0x83, 0x02]).await;
    raw.sock.shutdown().await.unwrap();
    expect_closed_with(
        &mut raw,
        &session,
        ErrorCode::ProtocolError,
        "inside a frame",
    )
    .await;
}

#[tokio::test]
async fn empty_frame_is_a_protocol_error() {
    let (mut raw, session, _seen) = raw().await;
    raw.send_bytes(&[0, 0, 0, 0]).await;
    expect_closed_with(&mut raw, &session, ErrorCode::ProtocolError, "empty").await;
}

#[tokio::test]
async fn hello_after_the_handshake_is_a_protocol_error() {
    let (mut raw, session, _seen) = raw().await;
    raw.send(&Message::Hello(hello("again"))).await;
    expect_closed_with(
        &mut raw,
        &session,
        ErrorCode::ProtocolError,
        "unexpected hello",
    )
    .await;
}

#[tokio::test]
async fn call_id_zero_is_a_protocol_error() {
    let (mut raw, session, _seen) = raw().await;
    raw.send(&Message::Call(logos_wire::Call {
        id: 0,
        target: "t".into(),
        method: "m".into(),
        args: vec![],
        timeout_ms: 0,
        trace: None,
    }))
    .await;
    expect_closed_with(&mut raw, &session, ErrorCode::ProtocolError, "id 0").await;
}

#[tokio::test]
async fn stream_open_with_the_wrong_parity_is_a_protocol_error() {
    // The raw peer connected, so it must open odd ids.
    let (mut raw, session, _seen) = raw().await;
    raw.send(&Message::StreamOpen {
        stream: 2,
        protocol: "p".into(),
    })
    .await;
    expect_closed_with(&mut raw, &session, ErrorCode::ProtocolError, "id 2").await;
}

#[tokio::test]
async fn stream_data_beyond_credit_is_a_protocol_error() {
    let (mut raw, session, mut seen) = raw().await;
    raw.send(&Message::StreamOpen {
        stream: 1,
        protocol: "p".into(),
    })
    .await;
    // Keep the stream alive but never read it.
    let _stream = next_seen(&mut seen, |s| match s {
        Seen::Stream(_, s) => Some(s),
        _ => None,
    })
    .await;
    let chunk = Bytes::from(vec![0u8; logos_wire::credit::MAX_CHUNK]);
    for _ in 0..5 {
        raw.send(&Message::StreamData {
            stream: 1,
            data: chunk.clone(),
        })
        .await;
    }
    expect_closed_with(&mut raw, &session, ErrorCode::ProtocolError, "credit").await;
}

#[tokio::test]
async fn stream_data_after_fin_is_a_protocol_error() {
    let (mut raw, session, mut seen) = raw().await;
    raw.send(&Message::StreamOpen {
        stream: 1,
        protocol: "p".into(),
    })
    .await;
    let _stream = next_seen(&mut seen, |s| match s {
        Seen::Stream(_, s) => Some(s),
        _ => None,
    })
    .await;
    raw.send(&Message::StreamFin { stream: 1 }).await;
    raw.send(&Message::StreamData {
        stream: 1,
        data: Bytes::from_static(b"late"),
    })
    .await;
    expect_closed_with(
        &mut raw,
        &session,
        ErrorCode::ProtocolError,
        "after its stream_fin",
    )
    .await;
}

#[tokio::test]
async fn frames_for_unknown_streams_are_ignored() {
    let (mut raw, session, _seen) = raw().await;
    raw.send(&Message::StreamData {
        stream: 99,
        data: Bytes::from_static(b"x"),
    })
    .await;
    raw.send(&Message::StreamCredit {
        stream: 99,
        bytes: 10,
    })
    .await;
    raw.send(&Message::StreamFin { stream: 99 }).await;
    raw.send(&Message::StreamReset {
        stream: 99,
        code: ErrorCode::Cancelled,
        message: "x".into(),
    })
    .await;
    raw.send(&Message::Ping { nonce: 1 }).await;
    assert!(matches!(
        raw.recv().await,
        Some(Message::Pong { nonce: 1, .. })
    ));
    assert!(!session.is_closed());
}

#[tokio::test]
async fn peer_error_id_zero_closes_with_its_reason() {
    let (mut raw, session, _seen) = raw().await;
    raw.send(&Message::Error {
        id: 0,
        code: ErrorCode::Unauthorized,
        message: "token revoked".into(),
    })
    .await;
    let reason = soon("closed", session.closed()).await;
    assert!(reason.contains("unauthorized: token revoked"), "{reason}");
    // The session closes its side without answering.
    assert_eq!(raw.closing_error().await, None);
}

#[tokio::test]
async fn a_peer_that_calls_without_reading_meets_limit_not_our_memory() {
    const BIG: usize = 6 * 1024 * 1024;
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
    let (probe, _seen) = Probe::new(move |_, call: logos_wire::Call| {
        let _ = entered_tx.send(call.id);
        async move { Ok(Value::Bytes(vec![1; BIG].into())) }
    });
    let mut config = Config::default();
    config.max_calls_in_flight = 1;
    let (mut raw, session) = raw_client(Arc::new(probe), config).await;
    let call = |id| {
        Message::Call(logos_wire::Call {
            id,
            target: "session".into(),
            method: "big".into(),
            args: vec![],
            timeout_ms: 60_000,
            trace: None,
        })
    };
    raw.send(&call(1)).await;
    assert_eq!(soon("call 1", entered.recv()).await, Some(1));
    // Reply 1 is queued (the raw peer reads nothing), which puts the outbox over its mark.
    soon("reply 1 queued", async {
        while session.queued_bytes() < 4 * 1024 * 1024 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    raw.send(&call(2)).await;
    assert_eq!(soon("call 2", entered.recv()).await, Some(2));
    // Reply 2 cannot be queued yet and keeps its slot: call 3 is refused.
    raw.send(&call(3)).await;
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < 3 {
        match raw.recv().await.expect("answers before EOF") {
            Message::Reply { id, value } => {
                assert_eq!(value, Value::Bytes(vec![1; BIG].into()));
                answers.insert(id, None);
            }
            Message::Error { id, code, .. } => {
                answers.insert(id, Some(code));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(answers[&1], None);
    assert_eq!(answers[&2], None);
    assert_eq!(answers[&3], Some(ErrorCode::Limit));
    assert!(entered.try_recv().is_err(), "call 3 must not have run");
}
