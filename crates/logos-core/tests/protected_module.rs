//! Protected modules (issue 18; docs/security.md, "Protected modules"): a module whose
//! metadata says `"protected": true` runs only once the operator confirms it; then its
//! methods not marked `#[read_only]` serve only the writers the operator lists, its data dir
//! is out of every other module's reach, and no module process keeps a capability. Real
//! cores, `kv` as the protected module, `probe` as an ordinary caller, `relay` as the writer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_core::{Core, ErrorCode, ModuleSettings, Value};
use std::time::Duration;
use support::{World, int, text};

/// Sets `key` of `module`'s staged metadata to `value`.
fn set_metadata(w: &World, module: &str, key: &str, value: serde_json::Value) {
    let path = w.modules.join(module).join("metadata.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json[key] = value;
    std::fs::write(&path, json.to_string()).unwrap();
}

fn protected(writers: &[&str]) -> ModuleSettings {
    let mut s = ModuleSettings::default();
    s.protected = true;
    s.writers = writers.iter().map(|w| (*w).to_owned()).collect();
    s
}

async fn probe_calls(core: &Core, method: &str, args: Vec<Value>) -> Result<Value, String> {
    core.call(
        "probe",
        "invoke",
        vec![text("kv"), text(method), Value::List(args)],
    )
    .await
    .map_err(|e| {
        assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
        e.to_string()
    })
}

/// A capability line of `/proc/<pid>/status` (`CapEff`, `CapBnd`, …).
fn capabilities(pid: u32, line: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{line}:")))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn issue_18_a_protected_module_serves_writes_only_to_its_writers() {
    let mut w = World::new();
    w.stage_all(&["kv", "probe", "relay"]);
    set_metadata(&w, "kv", "protected", true.into());
    set_metadata(
        &w,
        "probe",
        "permissions",
        serde_json::json!(["kv", "relay", "chat"]),
    );

    // Claimed by its metadata, not confirmed by the operator: refused.
    let core = w.start().await;
    let e = core.load("kv").await.expect_err("unconfirmed");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    assert!(
        e.to_string().contains("[modules.kv] protected = true"),
        "{e}"
    );
    core.shutdown().await;

    let core = w
        .start_with(w.builder().module("kv", protected(&["relay"])))
        .await;
    core.load_many(&["kv", "probe", "relay"])
        .await
        .expect("load");

    // probe may call kv (its permissions say so), but only the read-only methods.
    assert_eq!(
        probe_calls(&core, "get", vec![text("k")]).await,
        Ok(Value::Null)
    );
    assert_eq!(
        probe_calls(&core, "keys", vec![]).await,
        Ok(Value::List(vec![]))
    );
    for (method, args) in [
        ("set", vec![text("k"), int(666)]),
        ("delete", vec![text("k")]),
        ("import", vec![]),
    ] {
        let e = probe_calls(&core, method, args).await.expect_err(method);
        assert!(
            e.contains(&format!(
                "probe may not call kv.{method}: kv is protected and only its writers (relay)"
            )),
            "{e}"
        );
    }
    // The writer writes.
    core.call(
        "relay",
        "forward",
        vec![
            text("kv"),
            text("set"),
            Value::List(vec![text("k"), int(1)]),
        ],
    )
    .await
    .expect("relay writes");
    assert_eq!(
        core.call("kv", "get", vec![text("k")]).await.unwrap(),
        int(1)
    );
    assert_eq!(
        core.call("kv", "keys", vec![]).await.unwrap(),
        Value::List(vec![text("k")])
    );

    let info = core
        .call("core", "moduleInfo", vec![text("kv")])
        .await
        .unwrap();
    assert_eq!(info.get("protected"), Some(&Value::Bool(true)));
    assert_eq!(info.get("writers"), Some(&Value::List(vec![text("relay")])));
    let interface = core.interface("kv").unwrap();
    let get = interface
        .get("methods")
        .and_then(Value::as_list)
        .and_then(|ms| {
            ms.iter()
                .find(|m| m.get("name") == Some(&text("get")))
                .cloned()
        })
        .unwrap();
    assert_eq!(get.get("readOnly"), Some(&Value::Bool(true)));

    // Every refusal was counted against probe -> kv.
    support::wait_for(
        "kv's refusals to be counted",
        Duration::from_secs(10),
        || {
            core.denials()
                .iter()
                .any(|d| d.caller == "probe" && d.target == "kv" && d.count >= 3)
        },
    )
    .await;

    // No module process holds a capability (the core runs as root in CI: this is the drop).
    for module in ["kv", "probe", "relay"] {
        let pid = core.module(module).unwrap().pid.unwrap();
        for set in ["CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"] {
            assert_eq!(capabilities(pid, set), "0000000000000000", "{module} {set}");
        }
    }
    core.shutdown().await;
}

#[tokio::test]
async fn issue_18_no_grant_reaches_into_a_protected_modules_data_dir() {
    let mut w = World::new();
    w.stage("kv");
    let kv_data = w.data.join("kv");
    std::fs::create_dir_all(&kv_data).unwrap();
    std::fs::write(kv_data.join("planted"), "kv's state").unwrap();
    let dir = w.write_metadata(
        "peek",
        &format!(
            r#"{{"name":"peek","version":"1.0.0","main":"run.sh","restart":"never","filesystem":{{"read":["{}"]}}}}"#,
            w.data.display()
        ),
    );
    std::fs::write(
        dir.join("run.sh"),
        "#!/bin/sh\ncat \"$1\" > \"$LOGOS_DATA_DIR/report\"\nexit 0\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let mut peek = ModuleSettings::default();
    peek.filesystem.read = vec!["/".into()];
    let core = w
        .start_with(
            w.builder()
                .module("kv", protected(&[]))
                .module("peek", peek),
        )
        .await;
    let e = core.load("peek").await.expect_err("kv's data dir");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    assert!(
        e.to_string().contains("the data dir of a protected module"),
        "{e}"
    );
    assert!(!w.data.join("peek/report").exists());
    core.shutdown().await;
}
