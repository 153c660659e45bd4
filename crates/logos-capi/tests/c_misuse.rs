//! A C program (`tests/ffi/c/misuse.c`) does everything wrong an application can: calls before
//! start and after cleanup, NULL and invalid UTF-8 arguments, bad `params_json`, deadlines,
//! cleanup under calls in flight, initialize/cleanup cycles, many threads at once, and event
//! floods; every answer is a clean error code, never a crash or a hang.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::{World, assert_no_module_left, run};

#[test]
fn c_misuse_fails_cleanly_from_every_thread() {
    let world = World::new(&["calc", "chat", "greeter", "probe"]);
    let exe = world.compile_c("misuse.c", false);
    let mut cmd = world.command(&exe);
    cmd.arg(&world.modules);
    let outcome = run(cmd, Duration::from_secs(180));
    outcome.assert_passed("misuse.c");
    assert_no_module_left(&outcome);
}
