//! Python programs using only `ctypes`: `tests/ffi/python/app.py` runs the RFC's application
//! sequence, including an asynchronous call answered through a Python callback from
//! `logos_core_process_events`; `tests/ffi/python/reference_app.py` runs every function of the
//! reference implementation's 2026 header, declared with that header's signatures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::{World, assert_no_module_left, run};

#[test]
fn python_ctypes_runs_the_rfc_sequence() {
    assert!(
        support::have("python3"),
        "python3 is not on PATH; install it (the C API is tested from Python with ctypes)"
    );
    let world = World::new(&["chat"]);
    let mut cmd = world.command("python3");
    cmd.arg(support::ffi("python/app.py"))
        .arg(support::cdylib())
        .arg(&world.modules)
        // The RFC's variable for the host binary.
        .env("LOGOS_HOST_PATH", support::host())
        .env("LOGOS_RUNTIME_DIR", world.path().join("run"));
    let outcome = run(cmd, Duration::from_secs(60));
    outcome.assert_passed("app.py");
    assert_no_module_left(&outcome);
    assert!(
        !world.path().join("run").exists(),
        "cleanup left the runtime dir behind"
    );
}

#[test]
fn python_ctypes_runs_the_reference_2026_api() {
    assert!(
        support::have("python3"),
        "python3 is not on PATH; install it (the C API is tested from Python with ctypes)"
    );
    let world = World::new(&["calc", "chat", "greeter", "probe"]);
    let later = world.path().join("later");
    let persist = world.path().join("persist");
    std::fs::create_dir_all(&later).unwrap();
    logos_testkit::stage_module(&later, "kv");
    let mut cmd = world.command("python3");
    cmd.arg(support::ffi("python/reference_app.py"))
        .arg(support::cdylib())
        .arg(&world.modules)
        .arg(&later)
        .arg(&persist)
        .env("LOGOS_HOST_PATH", support::host());
    let outcome = run(cmd, Duration::from_secs(120));
    outcome.assert_passed("reference_app.py");
    assert_no_module_left(&outcome);
    assert!(
        persist.join("greeter").is_dir(),
        "the persistence path was not used"
    );
}
