//! Authentication and tokens (DESIGN.md §5): identity comes from the connection, tokens are
//! bound to one (caller, target) pair and die with either side, the access policy is enforced,
//! and hostile peers on a module's socket are cut off while the module keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use logos_core::{ErrorCode, Value};
use logos_session::{Refuse, SessionError};
use logos_wire::Hello;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::{World, int, text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn hello(identity: &str, token: &[u8]) -> Hello {
    Hello {
        major: logos_wire::PROTOCOL_MAJOR,
        minor: logos_wire::PROTOCOL_MINOR,
        identity: identity.to_owned(),
        token: Bytes::copy_from_slice(token),
        attrs: Default::default(),
    }
}

async fn connect_as(socket: &Path, identity: &str, token: &[u8]) -> Result<(), SessionError> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (session, _) = logos_session::connect(
        stream,
        hello(identity, token),
        Arc::new(Refuse),
        logos_session::Config::default(),
    )
    .await?;
    session.close(logos_session::Fault::new(ErrorCode::Cancelled, "test done"));
    Ok(())
}

fn token_of(v: Value) -> Vec<u8> {
    match v {
        Value::Bytes(b) => b.to_vec(),
        other => panic!("expected token bytes, got {other}"),
    }
}

#[tokio::test]
async fn a_module_cannot_request_a_token_in_another_modules_name() {
    let mut w = World::new();
    w.stage_all(&["probe", "relay"]);
    let core = w.start().await;
    core.load_many(&["probe", "relay"]).await.expect("load");
    let e = core
        .call(
            "probe",
            "requestTokenAs",
            vec![text("relay"), text("greeter")],
        )
        .await
        .expect_err("impersonation");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    assert!(e.to_string().contains("you are \"probe\""), "{e}");
    // Its own name in the same form is fine.
    core.call(
        "probe",
        "requestTokenAs",
        vec![text("relay"), text("probe")],
    )
    .await
    .expect("own name");
    core.shutdown().await;
}

#[tokio::test]
async fn the_access_policy_refuses_modules_outside_dependencies_and_permissions() {
    let mut w = World::new();
    w.stage_all(&["probe", "calc"]);
    let core = w.start().await;
    core.load_many(&["probe", "calc"]).await.expect("load");
    let e = core
        .call("probe", "requestToken", vec![text("calc")])
        .await
        .expect_err("probe may not call calc");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    assert!(
        e.to_string().contains("probe") && e.to_string().contains("calc"),
        "{e}"
    );
    core.shutdown().await;
}

#[tokio::test]
async fn a_token_works_only_for_its_caller_and_dies_when_the_target_restarts_or_unloads() {
    let mut w = World::new();
    w.stage_all(&["probe", "relay"]);
    let core = w.start().await;
    core.load_many(&["probe", "relay"]).await.expect("load");
    let socket = core.runtime_dir().join("modules/relay.sock");
    let token = token_of(
        core.call("probe", "requestToken", vec![text("relay")])
            .await
            .expect("token"),
    );
    assert_eq!(token.len(), 32);

    // This test process is not probe: the token bound to probe's pid is refused even when we
    // claim to be probe, and refused for any other name.
    for claimed in ["probe", "greeter", "relay"] {
        let e = connect_as(&socket, claimed, &token)
            .await
            .expect_err(claimed);
        assert!(
            matches!(e, SessionError::Refused(ref f) if f.code == ErrorCode::Unauthorized),
            "{claimed}: {e}"
        );
    }
    // A made-up token is refused too.
    let e = connect_as(&socket, "probe", &[7u8; 32])
        .await
        .expect_err("forged");
    assert!(matches!(e, SessionError::Refused(_)), "{e}");

    // Restart relay: every token naming it is gone; probe gets a fresh one by itself.
    core.reload("relay").await.expect("reload");
    let socket = core.runtime_dir().join("modules/relay.sock");
    let e = connect_as(&socket, "probe", &token)
        .await
        .expect_err("old token after restart");
    assert!(matches!(e, SessionError::Refused(_)), "{e}");
    assert_eq!(
        core.call("probe", "bounce", vec![int(3)])
            .await
            .expect("bounce after restart"),
        int(3)
    );

    core.unload("relay", false).await.expect("unload");
    assert!(!socket.exists(), "socket removed on unload");
    let e = core
        .call("probe", "bounce", vec![int(3)])
        .await
        .expect_err("relay is gone");
    assert!(
        matches!(e.code(), ErrorCode::NotLoaded | ErrorCode::Unavailable),
        "{e}"
    );
    core.shutdown().await;
}

#[tokio::test]
async fn hostile_peers_on_a_module_socket_are_cut_off_and_the_module_keeps_serving() {
    let mut w = World::new();
    w.stage("calc");
    let core = w.start().await;
    core.load("calc").await.expect("load");
    let socket = core.runtime_dir().join("modules/calc.sock");
    let control = core.control_socket();

    let garbage: &[u8] = b"\x00\x00\x00\x05\xff\xff\xff\xff\xff";
    let oversize: &[u8] = b"\x7f\xff\xff\xff";
    let truncated: &[u8] = b"\x00\x00\x01\x00\x86\x00\x01";
    let not_even_a_frame: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
    for target in [&socket, &control] {
        for bytes in [garbage, oversize, truncated, not_even_a_frame] {
            let mut s = tokio::net::UnixStream::connect(target)
                .await
                .expect("connect");
            s.write_all(bytes).await.expect("write");
            if bytes == truncated {
                // Half-close: the frame can never complete.
                s.shutdown().await.expect("shutdown");
            }
            let mut sink = Vec::new();
            // The peer closes the connection (possibly after an error frame).
            tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut sink))
                .await
                .expect("connection closed by the peer")
                .ok();
        }
    }
    // A peer that sends nothing at all is dropped after the handshake timeout; meanwhile and
    // after, everything keeps working.
    let silent = tokio::net::UnixStream::connect(&socket)
        .await
        .expect("connect");
    assert_eq!(
        core.call("calc", "add", vec![int(1), int(1)])
            .await
            .expect("add"),
        int(2)
    );
    let mut silent = silent;
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), silent.read_to_end(&mut sink))
        .await
        .expect("silent peer dropped")
        .ok();
    assert_eq!(
        core.call("calc", "mul", vec![int(6), int(7)])
            .await
            .expect("mul"),
        int(42)
    );
    core.shutdown().await;
}

/// Stopping a module revokes its tokens where they were granted (the modules it called), and
/// tells no other module: one it never called hears nothing of the stop.
#[tokio::test]
async fn a_stopped_modules_tokens_are_revoked_where_granted_and_nowhere_else() {
    let mut w = World::new();
    w.stage_all(&["probe", "relay", "calc"]);
    // The SDK logs each `$revoke` it serves at debug.
    let builder = w.builder().module_log("info,logos_sdk::serve::grant=debug");
    let core = w.start_with(builder).await;
    core.load_many(&["probe", "relay", "calc"])
        .await
        .expect("load");
    // probe calls relay, which calls probe back: each holds a token of the other.
    assert_eq!(
        core.call("probe", "bounce", vec![int(3)])
            .await
            .expect("bounce"),
        int(3)
    );
    core.unload("probe", false).await.expect("unload probe");
    for m in ["relay", "calc"] {
        core.unload(m, false).await.expect("unload");
    }
    let tail = |m: &str| {
        let exit = core.module(m).expect("listed").last_exit.expect("exited");
        assert_eq!(exit.code, Some(0), "{m}: {:?}", exit.stderr_tail);
        exit.stderr_tail
    };
    let relay = tail("relay");
    assert!(
        relay
            .iter()
            .any(|l| l.contains("tokens revoked") && l.contains("probe")),
        "relay was not told to revoke probe's tokens: {relay:#?}"
    );
    let calc = tail("calc");
    assert!(
        !calc.iter().any(|l| l.contains("tokens revoked")),
        "calc never granted probe a token, yet was told to revoke: {calc:#?}"
    );
    core.shutdown().await;
}
