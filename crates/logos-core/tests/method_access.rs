//! Method-level access control (issue 18; docs/security.md, "Methods"): permissions name
//! methods (`"calc.add"`, `"kv.*"`), the operator widens and narrows them per caller, the
//! target refuses every other method with `unauthorized` naming the rule, and the core counts
//! and logs each refusal. Real cores, `probe` calling real modules over their sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_core::{Core, ErrorCode, Value};
use std::time::Duration;
use support::{World, int, text};

/// Stages probe with `permissions` instead of its own, and the modules they name.
fn probe_with(w: &World, permissions: &[&str]) {
    w.stage_all(&["probe", "calc", "kv"]);
    let path = w.modules.join("probe/metadata.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["permissions"] = serde_json::json!(permissions);
    std::fs::write(&path, json.to_string()).unwrap();
}

async fn invoke(
    core: &Core,
    target: &str,
    method: &str,
    args: Vec<Value>,
) -> Result<Value, String> {
    core.call(
        "probe",
        "invoke",
        vec![text(target), text(method), Value::List(args)],
    )
    .await
    .map_err(|e| {
        assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
        e.to_string()
    })
}

fn denials(core: &Core, caller: &str, target: &str) -> u64 {
    core.denials()
        .iter()
        .find(|d| d.caller == caller && d.target == target)
        .map_or(0, |d| d.count)
}

#[tokio::test]
async fn issue_18_a_module_calls_only_the_methods_its_permissions_and_grants_name() {
    let mut w = World::new();
    probe_with(&w, &["calc.add", "kv.*", "core.reloadPlugin"]);
    let b = w
        .builder()
        .grant_methods("probe", "calc", ["sub"])
        .deny_methods("probe", "kv", ["set"]);
    let core = w.start_with(b).await;
    core.load_many(&["probe", "calc", "kv"])
        .await
        .expect("load");

    // Named by a permission, and widened by a grant.
    assert_eq!(
        invoke(&core, "calc", "add", vec![int(2), int(3)]).await,
        Ok(int(5))
    );
    assert_eq!(
        invoke(&core, "calc", "sub", vec![int(5), int(3)]).await,
        Ok(int(2))
    );
    // Neither: refused by calc itself, naming the rule and the fix.
    let e = invoke(&core, "calc", "mul", vec![int(2), int(3)])
        .await
        .expect_err("mul is not granted");
    assert!(
        e.contains("probe may not call calc.mul: probe may call only add, sub of calc"),
        "{e}"
    );
    assert!(e.contains(r#"methods = ["mul"]"#), "{e}");
    // A name outside calc's interface is refused the same way.
    let e = invoke(&core, "calc", "pow", vec![]).await.expect_err("pow");
    assert!(e.contains("probe may not call calc.pow"), "{e}");

    // kv.* with set narrowed away by the operator: reads work, the write is refused and
    // kv's state is unchanged.
    assert_eq!(
        invoke(&core, "kv", "get", vec![text("k")]).await,
        Ok(Value::Null)
    );
    let e = invoke(&core, "kv", "set", vec![text("k"), int(1)])
        .await
        .expect_err("set is denied");
    assert!(
        e.contains(r#"denied by configuration ([[deny]] caller = "probe", target = "kv", methods = ["set"])"#),
        "{e}"
    );
    assert_eq!(
        core.call("kv", "keys", vec![]).await.unwrap(),
        Value::List(vec![])
    );
    // The operator is not bound by module grants.
    core.call("kv", "set", vec![text("k"), int(1)])
        .await
        .unwrap();

    // Built-in methods that change what runs: only the one named.
    assert_eq!(
        invoke(&core, "core", "reloadPlugin", vec![text("kv")]).await,
        Ok(Value::Bool(true))
    );
    let e = invoke(&core, "core", "unloadPlugin", vec![text("calc")])
        .await
        .expect_err("unloadPlugin is not granted");
    assert!(e.contains("probe may not call core.unloadPlugin"), "{e}");
    assert!(core.module("calc").unwrap().state.is_loaded());

    // Each refusal is counted: the core's own (unloadPlugin) at once, the targets' as they
    // report them.
    support::wait_for(
        "the targets' refusals to be counted",
        Duration::from_secs(10),
        || denials(&core, "probe", "calc") >= 2 && denials(&core, "probe", "kv") >= 1,
    )
    .await;
    assert_eq!(denials(&core, "probe", "core"), 1);
    core.shutdown().await;
}

#[tokio::test]
async fn issue_18_greeter_calls_only_what_it_declares() {
    let mut w = World::new();
    w.stage_all(&["greeter", "calc", "chat"]);
    let core = w.start().await;
    core.load("greeter").await.expect("load");
    assert_eq!(
        core.call("greeter", "sum", vec![int(2), int(3)])
            .await
            .unwrap(),
        int(5)
    );
    assert_eq!(
        core.call("greeter", "greet", vec![text("Ada")])
            .await
            .unwrap(),
        text("Hello, Ada!")
    );
    core.shutdown().await;
}

#[tokio::test]
async fn issue_18_a_permission_naming_an_unknown_method_is_an_error_at_load() {
    let mut w = World::new();
    probe_with(&w, &["core.unloadPlugins"]);
    let core = w.start().await;
    let e = core.load("probe").await.expect_err("unknown method");
    let msg = e.to_string();
    assert_eq!(e.code(), ErrorCode::InvalidMetadata, "{msg}");
    assert!(msg.contains("\"permissions/0\""), "{msg}");
    assert!(msg.contains("did you mean core.unloadPlugin?"), "{msg}");
    core.shutdown().await;

    // Once calc has run, its interface is known and checked too.
    probe_with(&w, &["calc.pow"]);
    let core = w.start().await;
    core.load("calc").await.expect("calc");
    let e = core.load("probe").await.expect_err("unknown calc method");
    assert!(
        e.to_string()
            .contains("names no method of calc (it has: add, div, mul, sub)"),
        "{e}"
    );
    core.shutdown().await;
}
