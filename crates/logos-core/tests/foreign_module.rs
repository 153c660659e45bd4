//! A module written in another language (issue 2, point 5): `modules/pyecho` is a standalone
//! Python program (on the Python SDK, `sdk/python`, which uses the standard library only)
//! whose metadata `main` names the script. These tests
//! run it in a real core, exactly as a Rust module: handshake and interface, calls with every
//! kind of value and error, events to the core and to another module over a peer connection,
//! tokens on its socket, heartbeats, and a graceful unload that ends with exit code 0.
//!
//! python3 is on every machine these tests run on; nothing is skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use logos_core::{Core, ErrorCode, Notification, State, Value};
use logos_session::SessionError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use support::{CoreEvents, World, alive, int, text, wait_for};

/// A value with one of everything: a map holding a list, bytes, negative and extreme ints, a
/// float, text (not ASCII), null, bool and an empty map.
fn nested_value() -> Value {
    let mut inner = BTreeMap::new();
    inner.insert("empty".to_owned(), Value::Map(BTreeMap::new()));
    inner.insert("flag".to_owned(), Value::Bool(true));
    let mut m = BTreeMap::new();
    m.insert(
        "list".to_owned(),
        Value::List(vec![
            int(1),
            int(-42),
            Value::Int(i64::MIN),
            Value::UInt(u64::MAX),
            Value::Float(-1.5),
            Value::Null,
            Value::List(vec![text("deep"), Value::Map(inner)]),
        ]),
    );
    m.insert(
        "bytes".to_owned(),
        Value::Bytes(vec![0, 1, 0xfe, 0xff].into()),
    );
    m.insert("negative".to_owned(), int(-7));
    m.insert("float".to_owned(), Value::Float(0.1));
    m.insert("text".to_owned(), text("héllo wörld €"));
    m.insert("null".to_owned(), Value::Null);
    Value::Map(m)
}

async fn next_event(sub: &mut logos_core::Subscription) -> (String, Vec<Value>) {
    match tokio::time::timeout(Duration::from_secs(10), sub.recv()).await {
        Ok(Some(Notification::Event { event, data, .. })) => (event, data),
        other => panic!("expected an event, got {other:?}"),
    }
}

fn code(r: Result<Value, logos_core::Error>) -> (ErrorCode, String) {
    let e = r.expect_err("must fail");
    (e.code(), e.to_string())
}

/// Names of the entries of `list` (the interface's `methods` or `events`).
fn names(interface: &Value, list: &str) -> Vec<String> {
    interface
        .get(list)
        .and_then(Value::as_list)
        .expect(list)
        .iter()
        .map(|m| {
            m.get("name")
                .and_then(Value::as_str)
                .expect("name")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_python_module_serves_calls_and_events_and_exits_0_on_unload() {
    let mut w = World::new();
    w.stage_dir("pyecho");
    // Frequent heartbeats: a module that did not answer pings would be killed within a second.
    let b = w.builder().heartbeat(Duration::from_millis(100));
    let core = w.start_with(b).await;
    core.load("pyecho").await.expect("load pyecho");
    let pid = core.module("pyecho").expect("pyecho").pid.expect("pid");

    // The interface it sent in its hello is what the core reports.
    let interface = core.interface("pyecho").expect("interface");
    assert_eq!(
        names(&interface, "methods"),
        ["echo", "upper", "add", "fail"]
    );
    assert_eq!(names(&interface, "events"), ["echoed"]);
    assert_eq!(interface.get("version"), Some(&text("1.0.0")));
    assert_eq!(
        core.call("core", "getPluginMethods", vec![text("pyecho")])
            .await
            .expect("getPluginMethods"),
        interface
    );

    // Results: every kind of value survives the round trip through Python.
    let mut events = core.subscribe("pyecho", "echoed").expect("subscribe");
    let v = nested_value();
    assert_eq!(
        core.call("pyecho", "echo", vec![v.clone()])
            .await
            .expect("echo"),
        v
    );
    let (event, data) = next_event(&mut events).await;
    assert_eq!(event, "echoed");
    assert_eq!(data, vec![v]);
    assert_eq!(
        core.call("pyecho", "echo", vec![Value::Null])
            .await
            .expect("echo null"),
        Value::Null,
        "null is a result"
    );
    assert_eq!(next_event(&mut events).await.1, vec![Value::Null]);
    assert_eq!(
        core.call("pyecho", "upper", vec![text("logos é")])
            .await
            .expect("upper"),
        text("LOGOS É")
    );
    assert_eq!(
        core.call("pyecho", "add", vec![int(40), int(-2)])
            .await
            .expect("add"),
        int(38)
    );

    // Errors: each with its own code, and the module's own message for method_failed.
    let (c, msg) = code(core.call("pyecho", "fail", vec![text("it broke")]).await);
    assert_eq!(c, ErrorCode::MethodFailed, "{msg}");
    assert!(msg.contains("it broke"), "{msg}");
    let (c, msg) = code(core.call("pyecho", "mul", vec![int(1)]).await);
    assert_eq!(c, ErrorCode::UnknownMethod, "{msg}");
    assert!(msg.contains("mul") && msg.contains("echo"), "{msg}");
    let (c, msg) = code(core.call("pyecho", "upper", vec![int(5)]).await);
    assert_eq!(c, ErrorCode::InvalidArgs, "{msg}");
    assert!(msg.contains("expected text, found int"), "{msg}");
    let (c, msg) = code(
        core.call("pyecho", "add", vec![int(1), Value::Bool(true)])
            .await,
    );
    assert_eq!(c, ErrorCode::InvalidArgs, "a bool is not an int: {msg}");
    let (c, msg) = code(core.call("pyecho", "add", vec![int(1)]).await);
    assert_eq!(c, ErrorCode::InvalidArgs, "{msg}");
    let (c, msg) = code(
        core.call("pyecho", "add", vec![Value::Int(i64::MAX), int(1)])
            .await,
    );
    assert_eq!(c, ErrorCode::MethodFailed, "{msg}");
    assert!(msg.contains("overflow"), "{msg}");

    // Many calls in flight at once, answered by id.
    let calls = (0..50).map(|i| {
        let core = core.clone();
        async move { core.call("pyecho", "add", vec![int(i), int(i)]).await }
    });
    for (i, r) in futures::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(r.expect("add"), int(2 * i as i64));
    }

    // The Python SDK counts in the module's heartbeat page too (docs/architecture.md §9).
    wait_for(
        "beats on the Python module's page",
        Duration::from_secs(20),
        || core.heartbeats().page >= 3,
    )
    .await;

    // Still the same process after many heartbeats.
    CoreEvents::new(&core)
        .none_within("stateChanged", Duration::from_millis(500), |d| {
            d.first() == Some(&text("pyecho"))
        })
        .await;
    let info = core.module("pyecho").expect("pyecho");
    assert_eq!(info.state, State::Ready);
    assert_eq!(info.pid, Some(pid));
    assert_eq!(info.restarts, 0);

    // Unload: `shutdown` on fd 3, and the script exits 0 within the grace.
    core.unload("pyecho", false).await.expect("unload");
    let info = core.module("pyecho").expect("pyecho");
    assert_eq!(info.state, State::Stopped);
    let exit = info.last_exit.expect("exit recorded");
    assert_eq!(
        exit.code,
        Some(0),
        "{}: {:?}",
        exit.status_text(),
        exit.stderr_tail
    );
    assert!(!alive(pid));
    core.shutdown().await;
}

/// Connects to `socket` as `identity` with `token`; Ok if the module welcomed us.
async fn connect_as(
    socket: &std::path::Path,
    identity: &str,
    token: &[u8],
) -> Result<(), SessionError> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let hello = logos_wire::Hello {
        major: logos_wire::PROTOCOL_MAJOR,
        minor: logos_wire::PROTOCOL_MINOR,
        identity: identity.to_owned(),
        token: Bytes::copy_from_slice(token),
        attrs: Default::default(),
    };
    let (session, _) = logos_session::connect(
        stream,
        hello,
        Arc::new(logos_session::Refuse),
        logos_session::Config::default(),
    )
    .await?;
    session.close(logos_session::Fault::new(ErrorCode::Cancelled, "test done"));
    Ok(())
}

/// The `pyecho.echoed` events probe has seen, echoing until they are `enough` (probe
/// subscribes in the background).
async fn seen_by_probe(core: &Core, enough: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = core.call("probe", "seen", vec![]).await.expect("seen");
        let seen: Vec<Value> = seen.as_list().expect("list").to_vec();
        if enough(&seen) {
            return seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "probe's subscription to pyecho never became live"
        );
        core.call("pyecho", "echo", vec![text("sync")])
            .await
            .expect("echo");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_python_module_serves_peers_that_hold_a_granted_token_and_only_those() {
    let mut w = World::new();
    w.stage_dir("pyecho");
    w.stage("probe");
    // probe, as shipped, may not call pyecho: allow it here.
    let meta = std::fs::read_to_string(w.modules.join("probe/metadata.json")).expect("meta");
    let mut meta: serde_json::Value = serde_json::from_str(&meta).expect("json");
    meta["permissions"] = serde_json::json!(["pyecho"]);
    w.write_metadata("probe", &meta.to_string());
    // … except `upper` (issue 18: pyecho enforces the method grant that comes with the token).
    let core = w
        .start_with(w.builder().deny_methods("probe", "pyecho", ["upper"]))
        .await;
    core.load_many(&["pyecho", "probe"]).await.expect("load");

    // probe (the Rust SDK) gets a token from the core, which hands it to pyecho with `$grant`;
    // probe connects to pyecho's socket with it and subscribes there.
    core.call("probe", "watch", vec![text("pyecho"), text("echoed")])
        .await
        .expect("watch");
    seen_by_probe(&core, |seen| !seen.is_empty()).await;
    core.call("pyecho", "echo", vec![text("to probe")])
        .await
        .expect("echo");
    // Waits for that very event: a `sync` echo sent while the subscription was settling may
    // still arrive after it.
    let data = Value::List(vec![text("to probe")]);
    let ours = |e: &&Value| e.get("data") == Some(&data);
    let seen = seen_by_probe(&core, |seen| seen.iter().any(|e| ours(&e))).await;
    let event = seen.iter().find(ours).expect("the echo of \"to probe\"");
    assert_eq!(event.get("event"), Some(&text("pyecho.echoed")));

    // A token is bound to its caller and its pid: this process may not use probe's.
    let socket = core.runtime_dir().join("modules/pyecho.sock");
    let token = match core
        .call("probe", "requestToken", vec![text("pyecho")])
        .await
        .expect("token")
    {
        Value::Bytes(b) => b,
        other => panic!("expected token bytes, got {other}"),
    };
    for (claimed, token) in [
        ("probe", &token[..]),
        ("greeter", &token[..]),
        ("probe", &[7u8; 32][..]),
        ("probe", &[][..]),
    ] {
        let e = connect_as(&socket, claimed, token)
            .await
            .expect_err(claimed);
        assert!(
            matches!(e, SessionError::Refused(ref f) if f.code == ErrorCode::Unauthorized),
            "{claimed}: {e}"
        );
    }
    // Garbage on its socket is refused and changes nothing.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::UnixStream::connect(&socket)
            .await
            .expect("connect");
        raw.write_all(&[0, 0, 0, 2, 0x9f, 0xff])
            .await
            .expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer))
            .await
            .expect("closed")
            .expect("read");
        assert!(
            String::from_utf8_lossy(&answer).contains("protocol_error"),
            "{answer:?}"
        );
    }
    assert_eq!(
        core.call("pyecho", "add", vec![int(2), int(2)])
            .await
            .expect("still serving"),
        int(4)
    );

    // The method grant: echo is served, upper refused by pyecho with the operator's rule.
    let invoke = |method: &str| {
        core.call(
            "probe",
            "invoke",
            vec![text("pyecho"), text(method), Value::List(vec![text("ab")])],
        )
    };
    assert_eq!(invoke("echo").await.expect("echo"), text("ab"));
    let e = invoke("upper").await.expect_err("upper is denied");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    assert!(
        e.to_string()
            .contains(r#"[[deny]] caller = "probe", target = "pyecho", methods = ["upper"]"#),
        "{e}"
    );

    // Unloading probe revokes its tokens at pyecho (`$revoke`); pyecho keeps running and
    // then shuts down cleanly too.
    core.unload("probe", false).await.expect("unload probe");
    assert_eq!(
        core.call("pyecho", "echo", vec![int(1)])
            .await
            .expect("after revoke"),
        int(1)
    );
    core.unload("pyecho", false).await.expect("unload pyecho");
    let exit = core
        .module("pyecho")
        .expect("pyecho")
        .last_exit
        .expect("exit");
    assert_eq!(exit.code, Some(0), "{:?}", exit.stderr_tail);
    core.shutdown().await;
}
