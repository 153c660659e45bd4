//! Issue 10, items 4, 6 and 8 at the session level: what a peer can make this side hold is
//! bounded. Stream credit beyond what was sent plus one window is a protocol error; the stream
//! lane has a high-water mark; events queued for a slow reader are bounded in bytes and the
//! loss is reported as `lagged`; a handshake frame is capped far below the frame cap; and a
//! listening socket keeps a bounded number of connections waiting for their hello, evicting
//! the oldest. Every test uses real Unix sockets; none sleeps to synchronise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use futures::FutureExt;
use logos_session::{Acceptor, Config, Refuse, Session, SessionError};
use logos_wire::{ErrorCode, MAX_HANDSHAKE_FRAME, Message, Value};
use std::sync::Arc;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

async fn raw() -> (RawPeer, Session) {
    let (probe, _seen) = Probe::quiet();
    raw_client(Arc::new(probe), Config::default()).await
}

/// Expects `error` id 0 with `code` (its message containing `needle`), then EOF.
async fn expect_closed_with(raw: &mut RawPeer, code: ErrorCode, needle: &str) {
    let (got, message) = raw
        .closing_error()
        .await
        .expect("an error frame before EOF");
    assert_eq!(got, code, "{message}");
    assert!(message.contains(needle), "{message}");
}

/// A stream the session opened to the raw peer, after the peer saw its `stream_open`.
async fn stream_to_raw(raw: &mut RawPeer, session: &Session) -> logos_session::ByteStream {
    let stream = session.open_stream("p").unwrap();
    let id = stream.id();
    raw.recv_until(|m| {
        matches!(m, Message::StreamOpen { stream, .. } if stream == id).then_some(())
    })
    .await;
    stream
}

#[tokio::test]
async fn issue_10_credit_may_return_only_what_was_sent() {
    let (mut raw, session) = raw().await;
    let mut stream = stream_to_raw(&mut raw, &session).await;
    let id = stream.id();
    stream.write_all(&[7; 100]).await.unwrap();
    let got = raw
        .recv_until(|m| match m {
            Message::StreamData { stream, data } if stream == id => Some(data.len()),
            _ => None,
        })
        .await;
    assert_eq!(got, 100);
    // Returning exactly what arrived is fine…
    raw.send(&Message::StreamCredit {
        stream: id,
        bytes: 100,
    })
    .await;
    raw.send(&Message::Ping { nonce: 1 }).await;
    raw.recv_until(|m| matches!(m, Message::Pong { nonce: 1, .. }).then_some(()))
        .await;
    assert!(!session.is_closed());
    assert_eq!(stream.unacknowledged(), 0);
    // …one byte more would let the sender run a window ahead of what it sent.
    raw.send(&Message::StreamCredit {
        stream: id,
        bytes: 1,
    })
    .await;
    expect_closed_with(&mut raw, ErrorCode::ProtocolError, "credit beyond").await;
    assert!(session.is_closed());
}

#[tokio::test]
async fn issue_10_huge_credit_is_a_protocol_error_not_a_license_to_buffer() {
    let (mut raw, session) = raw().await;
    let stream = stream_to_raw(&mut raw, &session).await;
    raw.send(&Message::StreamCredit {
        stream: stream.id(),
        bytes: 1 << 40,
    })
    .await;
    expect_closed_with(
        &mut raw,
        ErrorCode::ProtocolError,
        "stream_credit of 1099511627776",
    )
    .await;
    let reason = soon("closed", session.closed()).await;
    assert!(reason.contains("protocol_error"), "{reason}");
}

#[tokio::test]
async fn issue_10_the_stream_lane_is_bounded_when_the_peer_does_not_read() {
    // 32 streams with a full window each would queue 8 MiB for a peer that reads nothing.
    let (mut raw, session) = raw().await;
    let mut streams = Vec::new();
    for _ in 0..32 {
        streams.push(stream_to_raw(&mut raw, &session).await);
    }
    let chunk = vec![1u8; logos_wire::credit::MAX_CHUNK];
    let window = logos_wire::credit::DEFAULT_WINDOW;
    let mut written = 0usize;
    let mut blocked = None;
    // Without yielding, so the writer task never runs: everything written stays queued.
    'streams: for (i, s) in streams.iter_mut().enumerate() {
        while s.unacknowledged() < window {
            match s.write(&chunk).now_or_never() {
                Some(n) => written += n.unwrap(),
                None => {
                    blocked = Some(i);
                    break 'streams;
                }
            }
        }
    }
    let queued = session.queued_bytes();
    let blocked = blocked.unwrap_or_else(|| {
        panic!("every stream wrote its whole window ({written} bytes, {queued} queued)")
    });
    // The high-water mark (1 MiB) plus the chunk that crossed it plus frame heads.
    assert!(
        queued <= 1024 * 1024 + logos_wire::credit::MAX_CHUNK + 4096,
        "{queued} bytes queued for a peer that reads nothing"
    );
    assert!(
        streams[blocked].unacknowledged() < window,
        "blocked with credit left"
    );

    // Once the peer reads, the blocked writer is woken and goes on.
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0usize;
        loop {
            match raw.sock.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    });
    let s = &mut streams[blocked];
    soon("the blocked write", s.write_all(&chunk))
        .await
        .unwrap();
    drop(streams);
    session.close(logos_session::Fault::new(ErrorCode::Cancelled, "done"));
    soon("drain", drain).await.unwrap();
}

#[tokio::test]
async fn issue_10_events_for_a_slow_reader_are_bounded_in_bytes_and_reported_as_lagged() {
    // 600 events of 64 KiB are far fewer than the 1024 events the queue counts, and far more
    // than its 16 MiB byte budget.
    let (mut raw, session) = raw().await;
    let budget = Config::default().event_queue_bytes;
    let payload = vec![Value::Bytes(vec![3; 64 * 1024].into())];
    let mut accepted = 0u64;
    let mut refused = 0u64;
    for _ in 0..600 {
        if session.send_event("src", "big", payload.clone()) {
            accepted += 1;
        } else {
            refused += 1;
        }
        assert!(
            session.queued_event_bytes() <= budget,
            "{} event bytes queued, budget {budget}",
            session.queued_event_bytes()
        );
    }
    assert!(refused > 0, "all {accepted} events queued");
    assert!(session.queued_bytes() <= budget + 256 * 1024);

    // The reader catches up: it gets what was queued, then `lagged` before the next event.
    let mut seen = 0u64;
    while seen < accepted {
        match raw.recv().await.expect("events before EOF") {
            Message::Event { .. } => seen += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    soon("flushed", session.flush()).await;
    assert!(session.send_event("src", "small", vec![Value::Int(1)]));
    match raw.recv().await {
        Some(Message::Lagged { source, dropped }) => {
            assert_eq!(source, "src");
            assert_eq!(dropped, refused);
        }
        other => panic!("expected lagged, got {other:?}"),
    }
    match raw.recv().await {
        Some(Message::Event { event, .. }) => assert_eq!(event, "small"),
        other => panic!("expected the event, got {other:?}"),
    }
}

#[tokio::test]
async fn issue_10_a_16_mib_hello_is_refused_from_its_length_prefix() {
    let (a, b) = UnixStream::pair().unwrap();
    let server = tokio::spawn(logos_session::read_hello(b, Config::default()));
    let mut raw = RawPeer::new(a);
    // Within the 16 MiB frame cap, far beyond the handshake cap; no body follows.
    let len = u32::try_from(logos_wire::codec::DEFAULT_MAX_FRAME).unwrap();
    raw.send_bytes(&len.to_be_bytes()).await;
    expect_closed_with(&mut raw, ErrorCode::Limit, "before authentication").await;
    match soon("read_hello", server).await.unwrap() {
        Err(SessionError::Protocol(logos_wire::WireError::FrameTooLarge { len, max })) => {
            assert_eq!((len, max), (16 * 1024 * 1024, MAX_HANDSHAKE_FRAME));
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn issue_10_a_hello_just_under_the_handshake_cap_is_accepted() {
    let (a, b) = UnixStream::pair().unwrap();
    let server = tokio::spawn(logos_session::read_hello(b, Config::default()));
    let mut h = hello("big");
    h.attrs.insert(
        "pad".into(),
        Value::Bytes(vec![0; MAX_HANDSHAKE_FRAME - 100].into()),
    );
    RawPeer::new(a).send(&Message::Hello(h)).await;
    let pending = soon("read_hello", server).await.unwrap().unwrap();
    assert_eq!(pending.hello.identity, "big");
}

#[tokio::test]
async fn issue_10_an_oversized_welcome_is_refused_by_the_connecting_side() {
    let (a, b) = UnixStream::pair().unwrap();
    let client = tokio::spawn(logos_session::connect(
        a,
        hello("c"),
        Arc::new(Refuse),
        Config::default(),
    ));
    let mut raw = RawPeer::new(b);
    raw.recv_until(|m| matches!(m, Message::Hello(_)).then_some(()))
        .await;
    raw.send_bytes(&(1u32 << 20).to_be_bytes()).await;
    match soon("connect", client).await.unwrap() {
        Err(SessionError::Protocol(logos_wire::WireError::FrameTooLarge { .. })) => {}
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn issue_10_idle_handshakes_beyond_the_cap_are_evicted_oldest_first() {
    const MAX: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut acceptor = Acceptor::new(listener, MAX);
    let admission = acceptor.admission().clone();
    // Like the core's and the SDK's accept loops: one task per connection.
    let server = tokio::spawn(async move {
        loop {
            let (stream, ticket) = acceptor.accept().await;
            tokio::spawn(async move {
                let hello = logos_session::read_hello_admitted(stream, Config::default(), ticket);
                if let Ok(pending) = hello.await {
                    let session = pending
                        .accept("c".into(), welcome("server"), Arc::new(Refuse))
                        .await
                        .unwrap();
                    session.closed().await;
                }
            });
        }
    });

    // Idle peers, connected one after another: each accepted in turn, none sends a hello.
    let mut idle = Vec::new();
    for _ in 0..MAX + 6 {
        idle.push(RawPeer::new(UnixStream::connect(&path).await.unwrap()));
    }
    // The six that waited longest are told `limit` and closed; the newest MAX still wait.
    for (i, peer) in idle.iter_mut().take(6).enumerate() {
        let (code, message) = peer
            .closing_error()
            .await
            .unwrap_or_else(|| panic!("idle connection {i} closed without an error frame"));
        assert_eq!(code, ErrorCode::Limit, "{message}");
        assert!(message.contains("make room"), "{message}");
    }
    assert_eq!(admission.waiting(), MAX);

    // A real client still gets in at once, though its arrival pushes out one more idle peer.
    let (client, welcome) = soon(
        "connect",
        logos_session::connect(
            UnixStream::connect(&path).await.unwrap(),
            hello("c"),
            Arc::new(Refuse),
            Config::default(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(welcome.identity, "server");
    let (code, _) = idle[6].closing_error().await.expect("the next oldest");
    assert_eq!(code, ErrorCode::Limit);
    drop(client);
    server.abort();
}
