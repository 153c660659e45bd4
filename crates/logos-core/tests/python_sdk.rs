//! The Python SDK (`sdk/python`, package `logos-module`, issue 15).
//!
//! `pytest_passes` runs the SDK's own pytest suite (the docs/protocol.md vectors, the
//! interface derived from type hints, module processes driven over real sockets) in a venv
//! this test makes under `target/venv/` (cached; `logos_testkit::python_venv`), with the SDK
//! installed editable from the working tree. A module written with the SDK then runs in a real
//! core: it calls calc with a token, follows probe's events, sinks probe's stream and streams
//! into relay's slow sink, and its own events reach the core.
//!
//! Nothing is skipped: without python3, venv or PyPI the test fails with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_core::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{World, int, text};

fn sdk() -> PathBuf {
    logos_testkit::workspace().join("sdk/python")
}

/// A venv with pytest and the SDK installed editable (so it always runs the working tree).
fn venv() -> PathBuf {
    let venv = logos_testkit::python_venv(&sdk().join("tests/requirements.txt"));
    let python = venv.join("bin/python");
    let installed = Command::new(&python)
        .args([
            "-c",
            "import logos_module, os; print(os.path.dirname(logos_module.__file__))",
        ])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(&venv)
        .output()
        .expect("run the venv's python");
    let want = sdk().join("logos_module");
    let here = String::from_utf8_lossy(&installed.stdout).trim().to_owned();
    if !installed.status.success() || Path::new(&here) != want {
        // Serialised with other installers by pip's own file handling is not enough: take the
        // venv's lock file as `python_venv` does.
        let lock = std::fs::File::create(venv.with_extension("sdk.lock")).expect("lock file");
        lock.lock().expect("lock");
        let out = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--no-deps",
                "-e",
            ])
            .arg(sdk())
            .output()
            .expect("run pip");
        assert!(
            out.status.success(),
            "pip install -e sdk/python failed; check that PyPI is reachable (setuptools is \
             fetched for the build):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    venv
}

#[test]
fn pytest_passes() {
    let venv = venv();
    let out = Command::new(venv.join("bin/python"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .current_dir(sdk())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run pytest");
    assert!(
        out.status.success(),
        "pytest failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn wait_for_value(
    core: &logos_core::Core,
    what: &str,
    call: (&str, &str),
    mut ok: impl FnMut(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = core.call(call.0, call.1, vec![]).await.expect(what);
        if ok(&v) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: last {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_python_sdk_module_calls_streams_and_follows_events_in_a_real_core() {
    let mut w = World::new();
    logos_testkit::copy_tree(&sdk().join("tests/modules/pysum"), &w.modules.join("pysum"));
    w.stage_all(&["calc", "relay", "probe"]);
    // probe, as shipped, may not call pysum (its `streamTo` opens a stream there): allow it.
    let meta = std::fs::read_to_string(w.modules.join("probe/metadata.json")).expect("meta");
    let mut meta: serde_json::Value = serde_json::from_str(&meta).expect("json");
    meta["permissions"] = serde_json::json!(["pysum"]);
    w.write_metadata("probe", &meta.to_string());
    let core = w.start().await;
    core.load("pysum").await.expect("load pysum");

    // The interface comes from the type hints; private and decorated helpers are not in it.
    let interface = core.interface("pysum").expect("interface");
    let methods: Vec<&str> = interface
        .get("methods")
        .and_then(Value::as_list)
        .expect("methods")
        .iter()
        .filter_map(|m| m.get("name").and_then(Value::as_str))
        .collect();
    assert_eq!(
        methods,
        ["sum", "ticksSeen", "sinkResult", "sendToRelay"],
        "{interface}"
    );
    let sum = &interface.get("methods").and_then(Value::as_list).unwrap()[0];
    let params: Vec<(String, String)> = sum
        .get("params")
        .and_then(Value::as_list)
        .expect("params")
        .iter()
        .map(|p| {
            let field = |k| {
                p.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            (field("name"), field("type"))
        })
        .collect();
    assert_eq!(
        params,
        [("a".into(), "int".into()), ("b".into(), "int".into())]
    );
    assert_eq!(sum.get("returns"), Some(&text("int")));

    // A call that makes a call: pysum → calc with a token the core minted; the event it emits
    // reaches the core's subscription.
    let mut events = core.subscribe("pysum", "summed").expect("subscribe");
    assert_eq!(
        core.call("pysum", "sum", vec![int(40), int(2)])
            .await
            .expect("sum"),
        int(42)
    );
    match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
        Ok(Some(logos_core::Notification::Event { event, data, .. })) => {
            assert_eq!(
                (event.as_str(), data),
                ("summed", vec![int(40), int(2), int(42)])
            );
        }
        other => panic!("expected pysum.summed, got {other:?}"),
    }
    // calc's own error comes back through both hops with its code.
    let e = core
        .call("pysum", "sum", vec![Value::Int(i64::MAX), int(1)])
        .await
        .expect_err("overflow");
    assert_eq!(e.code(), logos_core::ErrorCode::MethodFailed, "{e}");
    let e = core
        .call("pysum", "sum", vec![text("1"), int(1)])
        .await
        .expect_err("a text is not an int");
    assert_eq!(e.code(), logos_core::ErrorCode::InvalidArgs, "{e}");
    assert!(e.to_string().contains("expected int, found text"), "{e}");

    // Events of another module, over pysum's own peer connection to probe.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        core.call("probe", "flood", vec![int(3)])
            .await
            .expect("flood");
        let seen = core.call("pysum", "ticksSeen", vec![]).await.expect("seen");
        if seen.as_list().is_some_and(|l| l.len() >= 3) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pysum never saw probe's ticks: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A stream into pysum: probe writes 600 KiB (more than the 256 KiB window), pysum hashes.
    let report = core
        .call(
            "probe",
            "streamTo",
            vec![text("pysum"), text("sink"), int(600 * 1024)],
        )
        .await
        .expect("streamTo");
    let sunk = wait_for_value(&core, "pysum's sink result", ("pysum", "sinkResult"), |v| {
        !matches!(v, Value::Null)
    })
    .await;
    assert_eq!(sunk.get("received"), Some(&int(600 * 1024)));
    assert_eq!(
        sunk.get("hash").and_then(Value::as_u64),
        report.get("hash").and_then(Value::as_u64),
        "{sunk} vs {report}"
    );

    // A stream out of pysum into relay's deliberately slow sink: credit must be respected.
    let sent = core
        .call("pysum", "sendToRelay", vec![int(700 * 1024)])
        .await
        .expect("sendToRelay");
    let relay = core
        .call("relay", "sinkResult", vec![])
        .await
        .expect("sinkResult");
    assert_eq!(relay.get("received"), Some(&int(700 * 1024)), "{relay}");
    assert_eq!(
        relay.get("hash").and_then(Value::as_u64),
        sent.get("hash").and_then(Value::as_u64)
    );

    core.unload("pysum", false).await.expect("unload");
    let exit = core
        .module("pysum")
        .expect("pysum")
        .last_exit
        .expect("exit");
    assert_eq!(exit.code, Some(0), "{:?}", exit.stderr_tail);
    core.shutdown().await;
}
