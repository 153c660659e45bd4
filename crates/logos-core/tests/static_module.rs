//! An executable module linked static, as docs/module-authoring.md §10 recommends for the
//! fastest start: `modules/probe`'s program built with `-C target-feature=+crt-static` (a
//! static-pie, no dynamic loader, no `libgcc_s`), run by a real core under its default
//! confinement (seccomp filter, Landlock, rlimits). It must start, answer, stop cleanly and
//! restart like the dynamically linked program, with no shared library mapped.
//!
//! The program is built by `cargo rustc` into its own target dir under `target/` (a cache:
//! the first run compiles the SDK's dependencies once more, later runs link only), so the
//! workspace's `target/<profile>/probe` is never replaced under the tests that run it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_core::{ErrorCode, State, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::{World, alive, int, target_dir, text, wait_for, workspace};

/// Builds `probe`'s program static and returns its path.
fn static_probe() -> PathBuf {
    let dir = target_dir();
    let cache = dir
        .parent()
        .expect("target/<profile> has a parent")
        .join("static-module");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args(["rustc", "--quiet", "-p", "probe", "--bin", "probe"])
        .arg("--target-dir")
        .arg(&cache)
        .args(["--", "-C", "target-feature=+crt-static"])
        .env("CARGO_INCREMENTAL", "0")
        // The recipe under test is the flag above; flags from the environment would change it.
        .env_remove("RUSTFLAGS")
        .output()
        .expect("running cargo rustc");
    assert!(
        out.status.success(),
        "building probe static failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let profile = dir.file_name().expect("profile dir name");
    cache.join(profile).join("probe")
}

#[tokio::test]
async fn a_static_executable_module_starts_answers_and_stops_under_confinement() {
    let program = static_probe();
    let mut w = World::new();
    let dir = w.modules.join("probe-static");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(&program, dir.join("probe")).unwrap();
    w.write_metadata(
        "probe-static",
        r#"{"name": "probe-static", "version": "1.0.0", "main": "probe", "restart": "on-failure",
            "description": "probe's program, linked static"}"#,
    );
    let core = w.start().await;
    core.load("probe-static").await.expect("load");

    let pid = match core.call("probe-static", "pid", vec![]).await.expect("pid") {
        Value::UInt(p) => u32::try_from(p).unwrap(),
        Value::Int(p) => u32::try_from(p).unwrap(),
        other => panic!("pid answered {other:?}"),
    };
    assert_eq!(
        core.modules()
            .iter()
            .find(|m| m.name == "probe-static")
            .and_then(|m| m.pid),
        Some(pid)
    );
    // Static: nothing but the program itself (and the kernel's vdso) is mapped from a file.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let shared: Vec<&str> = maps.lines().filter(|l| l.contains(".so")).collect();
    assert!(
        shared.is_empty(),
        "a static module maps shared libraries: {shared:?}"
    );
    // Confined like any module: the seccomp filter is installed.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(
        status.lines().any(|l| l == "Seccomp:\t2"),
        "no seccomp filter: {status}"
    );

    assert_eq!(
        core.call("probe-static", "echo", vec![text("héllo")])
            .await
            .expect("echo"),
        text("héllo")
    );
    // A panic unwinds through the unwinder linked in (`libgcc_eh`, not `libgcc_s`): the
    // call fails with the message and the module stays up.
    let e = core
        .call("probe-static", "panic", vec![text("kaboom")])
        .await
        .expect_err("panic");
    assert_eq!(e.code(), ErrorCode::MethodFailed);
    assert!(e.to_string().contains("kaboom"), "{e}");
    assert_eq!(
        core.call("probe-static", "echo", vec![int(1)])
            .await
            .expect("echo after a panic"),
        int(1)
    );
    // A crash is supervised as any module's: restarted under its policy.
    core.call("probe-static", "exit", vec![int(3)])
        .await
        .expect_err("exit ends the call");
    wait_for("the restart", Duration::from_secs(20), || {
        core.modules().iter().any(|m| {
            m.name == "probe-static"
                && m.state == State::Ready
                && m.restarts == 1
                && m.pid.is_some_and(|p| p != pid)
        })
    })
    .await;
    assert!(!alive(pid), "the exited module was reaped");

    let new_pid = core
        .modules()
        .iter()
        .find(|m| m.name == "probe-static")
        .and_then(|m| m.pid)
        .unwrap();
    core.unload("probe-static", false).await.expect("unload");
    wait_for("the module to exit", Duration::from_secs(10), || {
        !alive(new_pid)
    })
    .await;
    let info = core
        .modules()
        .into_iter()
        .find(|m| m.name == "probe-static")
        .expect("still listed");
    assert_ne!(info.state, State::Ready);
    let exit = info.last_exit.expect("an exit report");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    core.shutdown().await;
}
