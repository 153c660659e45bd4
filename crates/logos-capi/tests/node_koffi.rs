//! A Node.js program (`tests/ffi/node/app.js`) runs the RFC's application sequence through the
//! koffi FFI package from the npm registry, pumping `logos_core_process_events` from a timer.
//!
//! koffi is installed by the test itself (`npm ci` from `tests/ffi/node/package-lock.json`,
//! once, into a cache under `target/npm/`; see `logos_testkit::install`) and found through
//! `NODE_PATH`. A missing `node`, or an install that fails, fails the test with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::{World, assert_no_module_left, run};

#[test]
fn node_koffi_runs_the_rfc_sequence() {
    assert!(
        support::have("node"),
        "`node` is not on PATH; install Node.js (e.g. `apt-get install nodejs npm`): the C API is tested from Node through koffi"
    );
    let dir = support::ffi("node");
    let node_modules = logos_testkit::npm_install(&dir);
    assert!(
        node_modules.join("koffi").is_dir(),
        "npm ci in {} did not install koffi",
        node_modules.display()
    );
    let world = World::new(&["chat"]);
    let mut cmd = world.command("node");
    cmd.arg(dir.join("app.js"))
        .arg(support::cdylib())
        .arg(&world.modules)
        .arg(support::host())
        .env("NODE_PATH", &node_modules);
    let outcome = run(cmd, Duration::from_secs(60));
    outcome.assert_passed("app.js");
    assert_no_module_left(&outcome);
}
