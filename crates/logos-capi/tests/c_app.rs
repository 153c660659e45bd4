//! A C program written against `include/logos_core.h` runs the RFC's application sequence
//! (`tests/ffi/c/app.c`): set the plugins dir, start, load chat, call a method, receive an event
//! through `logos_core_process_events`, unload, cleanup; linked against the shared library, the
//! static library, and (ignored by default) under valgrind memcheck.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::{World, assert_no_module_left, run};

#[test]
fn c_app_runs_the_rfc_sequence_against_the_shared_library() {
    let world = World::new(&["chat", "calc"]);
    let exe = world.compile_c("app.c", false);
    // No LOGOS_HOST: the library finds logos_host beside itself (target/<profile>).
    let mut cmd = world.command(&exe);
    cmd.arg(&world.modules);
    let outcome = run(cmd, Duration::from_secs(60));
    outcome.assert_passed("app.c (shared)");
    assert_no_module_left(&outcome);
}

#[test]
fn c_app_runs_the_rfc_sequence_against_the_static_library() {
    let world = World::new(&["chat", "calc"]);
    let exe = world.compile_c("app.c", true);
    // Linked statically, "beside the library" is beside the executable: say where the host is.
    let mut cmd = world.command(&exe);
    cmd.arg(&world.modules).env("LOGOS_HOST", support::host());
    let outcome = run(cmd, Duration::from_secs(60));
    outcome.assert_passed("app.c (static)");
    assert_no_module_left(&outcome);
}

/// `cargo test -p logos-capi -- --ignored` (needs valgrind). Fails on any memcheck error and
/// on definitely lost memory; prints the leak summary.
#[test]
#[ignore = "slow; needs valgrind: cargo test -p logos-capi --test c_app -- --ignored"]
fn c_app_is_clean_under_valgrind() {
    assert!(
        support::have("valgrind"),
        "valgrind is not installed (apt-get install valgrind)"
    );
    let world = World::new(&["chat", "calc"]);
    let exe = world.compile_c("app.c", false);
    let log = world.path().join("valgrind.log");
    let mut cmd = world.command("valgrind");
    cmd.args([
        "--tool=memcheck",
        "--leak-check=full",
        "--show-leak-kinds=definite",
        "--errors-for-leak-kinds=definite",
        "--error-exitcode=99",
        "--trace-children=no",
    ])
    .arg(format!("--log-file={}", log.display()))
    .arg(&exe)
    .arg(&world.modules);
    let outcome = run(cmd, Duration::from_secs(600));
    let report = std::fs::read_to_string(&log).unwrap_or_default();
    let summary: Vec<&str> = report
        .lines()
        .filter(|l| {
            [
                "ERROR SUMMARY",
                "definitely lost",
                "indirectly lost",
                "possibly lost",
                "still reachable",
                "in use at exit",
            ]
            .iter()
            .any(|k| l.contains(k))
        })
        .collect();
    println!("valgrind summary:\n{}", summary.join("\n"));
    assert!(
        outcome.status.success() && outcome.stdout.lines().any(|l| l == "PASS"),
        "app.c under valgrind failed ({}):\n--- stdout\n{}\n--- stderr\n{}\n--- valgrind\n{report}",
        outcome.status,
        outcome.stdout,
        outcome.stderr
    );
    assert!(
        report.contains("ERROR SUMMARY: 0 errors"),
        "memcheck found errors:\n{report}"
    );
    assert_no_module_left(&outcome);
}
