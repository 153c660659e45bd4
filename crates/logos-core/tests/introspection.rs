//! The `core` built-in module over the protocol, as an operator client sees it through the
//! control endpoint: the RFC Core Manager methods and `getPluginMethods` signatures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use logos_core::{ErrorCode, Value};
use logos_session::{Refuse, Session};
use logos_wire::Hello;
use std::sync::Arc;
use std::time::Duration;
use support::{World, text};

async fn client(
    core: &logos_core::Core,
    token: &[u8],
) -> Result<Session, logos_session::SessionError> {
    let stream = tokio::net::UnixStream::connect(core.control_socket()).await?;
    let hello = Hello {
        major: logos_wire::PROTOCOL_MAJOR,
        minor: logos_wire::PROTOCOL_MINOR,
        identity: "test-client".to_owned(),
        token: Bytes::copy_from_slice(token),
        attrs: Default::default(),
    };
    let (s, _) =
        logos_session::connect(stream, hello, Arc::new(Refuse), Default::default()).await?;
    Ok(s)
}

fn names(v: &Value) -> Vec<String> {
    v.as_list()
        .unwrap_or(&[])
        .iter()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn core_manager_methods_over_the_control_endpoint() {
    let mut w = World::new();
    w.stage_all(&["calc", "chat"]);
    let core = w.start().await;
    let token = logos_core::read_client_token(&core.client_token_path()).expect("token");
    let c = client(&core, token.as_bytes()).await.expect("client");
    let t = Duration::from_secs(30);

    let known = c
        .call("core", "getKnownPlugins", vec![], t)
        .await
        .expect("known");
    assert_eq!(names(&known), ["calc", "chat"]);
    assert_eq!(
        names(
            &c.call("core", "getLoadedPlugins", vec![], t)
                .await
                .expect("loaded")
        )
        .len(),
        0
    );
    assert_eq!(
        c.call("core", "loadPlugin", vec![text("chat")], t)
            .await
            .expect("load"),
        Value::Bool(true)
    );
    assert_eq!(
        names(
            &c.call("core", "getLoadedPlugins", vec![], t)
                .await
                .expect("loaded")
        ),
        ["chat"]
    );

    let iface = c
        .call("core", "getPluginMethods", vec![text("chat")], t)
        .await
        .expect("methods");
    let methods = iface
        .get("methods")
        .and_then(Value::as_list)
        .expect("methods list");
    let send = methods
        .iter()
        .find(|m| m.get("name") == Some(&text("send")))
        .expect("send method");
    let params: Vec<(String, String)> = send
        .get("params")
        .and_then(Value::as_list)
        .expect("params")
        .iter()
        .map(|p| {
            (
                p.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                p.get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        params,
        [
            ("nick".into(), "text".into()),
            ("message".into(), "text".into())
        ]
    );
    assert!(send.get("returns").is_some());
    let events = iface
        .get("events")
        .and_then(Value::as_list)
        .expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.get("name") == Some(&text("chatMessage")))
    );

    // Calls through the core reach modules for an operator.
    c.call("chat", "send", vec![text("op"), text("hi")], t)
        .await
        .expect("send via core");

    assert_eq!(
        c.call("core", "unloadPlugin", vec![text("chat")], t)
            .await
            .expect("unload"),
        Value::Bool(true)
    );
    let e = c
        .call("core", "getPluginMethods", vec![text("chat")], t)
        .await
        .expect_err("not loaded");
    assert_eq!(e.code, ErrorCode::NotLoaded);
    let e = c
        .call("core", "loadPlugin", vec![text("chta")], t)
        .await
        .expect_err("typo");
    assert_eq!(e.code, ErrorCode::UnknownModule);
    assert!(e.message.contains("chat"), "{}", e.message);

    // processPlugin registers a module from a path.
    let extra = w.dir.path().join("extra");
    std::fs::create_dir_all(extra.join("calc2")).expect("dir");
    std::fs::write(
        extra.join("calc2/metadata.json"),
        r#"{"name": "calc2", "version": "2.0.0", "main": "metadata.json"}"#,
    )
    .expect("write");
    let name = c
        .call(
            "core",
            "processPlugin",
            vec![Value::from(extra.join("calc2").display().to_string())],
            t,
        )
        .await
        .expect("processPlugin");
    assert_eq!(name, text("calc2"));
    assert!(
        names(
            &c.call("core", "getKnownPlugins", vec![], t)
                .await
                .expect("known")
        )
        .contains(&"calc2".to_owned())
    );
    core.shutdown().await;
}

#[tokio::test]
async fn a_client_with_a_wrong_token_is_refused() {
    let mut w = World::new();
    let core = w.start().await;
    let e = client(&core, &[0u8; 32]).await.expect_err("refused");
    assert!(e.to_string().contains("client token"), "{e}");
    core.shutdown().await;
}
