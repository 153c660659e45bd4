//! Handshake: welcome, refusal, version mismatch, silent peers, wrong first message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_session::{Config, Fault, Refuse, SessionError};
use logos_wire::{ErrorCode, Message, Value, WireError};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::net::UnixStream;

#[tokio::test]
async fn handshake_ok_records_identity_attrs_and_peer_creds() {
    let (alice, bob) = pair(Arc::new(Refuse), Arc::new(Refuse)).await;
    assert_eq!(alice.peer().identity, "bob");
    assert_eq!(bob.peer().identity, "alice");
    assert_eq!(alice.peer().attrs.get("role"), Some(&Value::from("server")));
    assert_eq!(bob.peer().attrs.get("role"), Some(&Value::from("client")));
    assert_eq!(bob.peer().pid, Some(std::process::id()));
    assert_eq!(alice.peer().pid, Some(std::process::id()));
    assert!(bob.peer().uid.is_some());
    assert_ne!(alice.id(), bob.id());
    assert_eq!(soon("ping", alice.ping(SOON)).await, Ok(None));
    assert_eq!(soon("ping", bob.ping(SOON)).await, Ok(None));
}

#[tokio::test]
async fn refused_handshake_returns_the_peers_fault() {
    let (sa, sb) = UnixStream::pair().unwrap();
    let server = tokio::spawn(async move {
        let pending = logos_session::read_hello(sb, Config::default())
            .await
            .unwrap();
        assert_eq!(pending.hello.token.len(), 32);
        pending
            .refuse(Fault::new(ErrorCode::Unauthorized, "token not granted"))
            .await;
    });
    let err = soon(
        "connect",
        logos_session::connect(sa, hello("alice"), Arc::new(Refuse), Config::default()),
    )
    .await
    .unwrap_err();
    match err {
        SessionError::Refused(f) => {
            assert_eq!(f, Fault::new(ErrorCode::Unauthorized, "token not granted"));
        }
        other => panic!("expected Refused, got {other}"),
    }
    soon("server", server).await.unwrap();
}

#[tokio::test]
async fn version_mismatch_is_refused_on_the_wire_and_returned() {
    let (sa, sb) = UnixStream::pair().unwrap();
    let server = tokio::spawn(logos_session::read_hello(sb, Config::default()));
    let mut h = hello("alice");
    h.major = logos_wire::PROTOCOL_MAJOR + 1;
    h.minor = 3;
    let err = soon(
        "connect",
        logos_session::connect(sa, h, Arc::new(Refuse), Config::default()),
    )
    .await
    .unwrap_err();
    match err {
        SessionError::Refused(f) => {
            assert_eq!(f.code, ErrorCode::ProtocolError);
            assert!(f.message.contains("2.3"), "{f}");
        }
        other => panic!("expected Refused, got {other}"),
    }
    match soon("read_hello", server).await.unwrap() {
        Err(SessionError::Protocol(WireError::VersionMismatch {
            peer_major: 2,
            peer_minor: 3,
        })) => {}
        other => panic!("expected a version mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn connect_to_a_silent_peer_times_out() {
    let (sa, _silent) = UnixStream::pair().unwrap();
    let mut config = Config::default();
    config.handshake_timeout = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let err = soon(
        "connect",
        logos_session::connect(sa, hello("alice"), Arc::new(Refuse), config),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SessionError::HandshakeTimeout(d) if d == Duration::from_millis(200)),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn read_hello_from_a_silent_peer_times_out() {
    let (_silent, sb) = UnixStream::pair().unwrap();
    let mut config = Config::default();
    config.handshake_timeout = Duration::from_millis(200);
    let err = soon("read_hello", logos_session::read_hello(sb, config))
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::HandshakeTimeout(_)), "{err}");
}

#[tokio::test]
async fn anything_but_hello_first_is_a_protocol_error() {
    let (sa, sb) = UnixStream::pair().unwrap();
    let mut raw = RawPeer::new(sa);
    raw.send(&Message::Ping { nonce: 1 }).await;
    let err = soon(
        "read_hello",
        logos_session::read_hello(sb, Config::default()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SessionError::Protocol(_)), "{err}");
    let (code, message) = raw.closing_error().await.expect("an error frame");
    assert_eq!(code, ErrorCode::ProtocolError);
    assert!(message.contains("expected hello, got ping"), "{message}");
}

#[tokio::test]
async fn anything_but_welcome_answering_hello_is_a_protocol_error() {
    let (sa, sb) = UnixStream::pair().unwrap();
    let mut raw = RawPeer::new(sb);
    let client = tokio::spawn(logos_session::connect(
        sa,
        hello("alice"),
        Arc::new(Refuse),
        Config::default(),
    ));
    assert!(matches!(raw.recv().await, Some(Message::Hello(_))));
    raw.send(&Message::Ping { nonce: 1 }).await;
    let err = soon("connect", client).await.unwrap().unwrap_err();
    assert!(matches!(err, SessionError::Protocol(_)), "{err}");
}

#[tokio::test]
async fn garbage_instead_of_hello_is_refused() {
    let (sa, sb) = UnixStream::pair().unwrap();
    let mut raw = RawPeer::new(sa);
    raw.send_bytes(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]).await;
    let err = soon(
        "read_hello",
        logos_session::read_hello(sb, Config::default()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SessionError::Protocol(_)), "{err}");
    let (code, _) = raw.closing_error().await.expect("an error frame");
    assert_eq!(code, ErrorCode::ProtocolError);
}

#[tokio::test]
async fn frames_pipelined_after_hello_are_kept() {
    // The raw client sends hello and a call in one write; the call must not be lost.
    let (sa, sb) = UnixStream::pair().unwrap();
    let mut raw = RawPeer::new(sa);
    let mut bytes = Vec::new();
    logos_wire::encode_frame(&Message::Hello(hello("raw")), &mut bytes).unwrap();
    logos_wire::encode_frame(&Message::Ping { nonce: 42 }, &mut bytes).unwrap();
    raw.send_bytes(&bytes).await;
    let pending = soon(
        "read_hello",
        logos_session::read_hello(sb, Config::default()),
    )
    .await
    .unwrap();
    let _session = pending
        .accept("raw".into(), welcome("s"), Arc::new(Refuse))
        .await
        .unwrap();
    assert!(matches!(raw.recv().await, Some(Message::Welcome(_))));
    let pong = raw.recv().await;
    assert!(
        matches!(
            pong,
            Some(Message::Pong {
                nonce: 42,
                unhealthy: None
            })
        ),
        "{pong:?}"
    );
}

/// Protocol 1.1 added `invalid_metadata`; a peer that announced 1.0 must never receive it
/// (docs/protocol.md §5.2) and gets `unknown_module`, what 1.0 cores answered.
#[tokio::test]
async fn error_codes_newer_than_the_peers_minor_are_mapped_down() {
    for (minor, expected) in [
        (0, ErrorCode::UnknownModule),
        (1, ErrorCode::InvalidMetadata),
    ] {
        let (sa, sb) = UnixStream::pair().unwrap();
        let mut raw = RawPeer::new(sa);
        let mut hi = hello("raw");
        hi.minor = minor;
        raw.send(&Message::Hello(hi)).await;
        let pending = soon(
            "read_hello",
            logos_session::read_hello(sb, Config::default()),
        )
        .await
        .unwrap();
        let (probe, _seen) = Probe::new(|_, _| async {
            Err(Fault::new(
                ErrorCode::InvalidMetadata,
                "calc: modules/calc/metadata.json: field \"version\": …",
            ))
        });
        let session = pending
            .accept("raw".into(), welcome("s"), Arc::new(probe))
            .await
            .unwrap();
        assert_eq!(session.peer().minor, minor);
        assert!(matches!(raw.recv().await, Some(Message::Welcome(_))));
        raw.send(&Message::Call(logos_wire::Call {
            id: 1,
            target: "core".into(),
            method: "loadPlugin".into(),
            args: vec![Value::from("calc")],
            timeout_ms: 0,
            trace: None,
        }))
        .await;
        let (code, message) = raw
            .recv_until(|m| match m {
                Message::Error {
                    id: 1,
                    code,
                    message,
                } => Some((code, message)),
                _ => None,
            })
            .await;
        assert_eq!(code, expected, "peer minor {minor}");
        assert!(
            message.starts_with("calc: modules/calc/metadata.json"),
            "{message}"
        );
    }
}
