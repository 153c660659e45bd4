//! A Python program using only `ctypes` (`tests/ffi/python/app.py`) runs the RFC's application
//! sequence, including an asynchronous call answered through a Python callback from
//! `logos_core_process_events`.

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
