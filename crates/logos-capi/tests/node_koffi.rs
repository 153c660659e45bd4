//! A Node.js program (`tests/ffi/node/app.js`) runs the RFC's application sequence through the
//! koffi FFI package from the npm registry, pumping `logos_core_process_events` from a timer.
//!
//! Needs `node` and `npm ci --prefix crates/logos-capi/tests/ffi/node` (CI's `.ci/run` does
//! it). Skipped, saying so, only when `node` is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::{World, assert_no_module_left, run};

#[test]
fn node_koffi_runs_the_rfc_sequence() {
    if !support::have("node") {
        eprintln!("SKIPPED node_koffi_runs_the_rfc_sequence: `node` is not on PATH");
        return;
    }
    let dir = support::ffi("node");
    assert!(
        dir.join("node_modules/koffi").is_dir(),
        "koffi is not installed; run `npm ci --prefix {}`",
        dir.display()
    );
    let world = World::new(&["chat"]);
    let mut cmd = world.command("node");
    cmd.arg(dir.join("app.js"))
        .arg(support::cdylib())
        .arg(&world.modules)
        .arg(support::host());
    let outcome = run(cmd, Duration::from_secs(60));
    outcome.assert_passed("app.js");
    assert_no_module_left(&outcome);
}
