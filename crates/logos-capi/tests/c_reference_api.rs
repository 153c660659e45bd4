//! A C program written from the reference implementation's 2026 `logos_core.h`
//! (`tests/ffi/c/reference_app.c` declares the reference's functions itself and never includes
//! ours) compiles, links against `liblogos_core.so` and runs every function of that header
//! against real modules: ensure-loaded with and without dependencies, dependency walks, the
//! module table and stats, the access policy (enforced on real module-to-module calls),
//! persistence path, transports, process_module and refresh (a module installed and removed
//! while the core runs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::{World, assert_no_module_left, run};

#[test]
fn c_app_from_the_reference_2026_header_runs_against_the_shared_library() {
    let world = World::new(&["calc", "chat", "greeter", "probe"]);
    let later = world.path().join("later");
    let outside = world.path().join("outside");
    let persist = world.path().join("persist");
    for d in [&later, &outside, &persist] {
        std::fs::create_dir_all(d).unwrap();
    }
    logos_testkit::stage_module(&later, "kv");
    logos_testkit::stage_module(&outside, "relay");
    let exe = world.compile_c("reference_app.c", false);
    let mut cmd = world.command(&exe);
    cmd.arg(&world.modules)
        .arg(&later)
        .arg(&outside)
        .arg(&persist);
    let outcome = run(cmd, Duration::from_secs(180));
    println!("{}", outcome.stdout);
    outcome.assert_passed("reference_app.c");
    assert_no_module_left(&outcome);
    // The persistence path won over $LOGOS_DATA_DIR.
    assert!(persist.join("chat").is_dir());
    assert!(!world.data.join("chat").exists());
}
