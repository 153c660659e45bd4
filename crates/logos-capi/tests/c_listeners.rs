//! Event listeners at the edges of their life (`tests/ffi/c/listeners.c`, issue 10, items 8
//! and 12): no listener callback runs after `logos_core_cleanup` (the events it had queued are
//! dropped with it), and an application that does not drain events holds at most the byte
//! budget of them, the rest reported by one `lagged:` callback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::{World, assert_no_module_left, run};

#[test]
fn issue_10_listeners_end_at_cleanup_and_events_are_bounded_in_bytes() {
    let world = World::new(&["chat", "probe"]);
    let exe = world.compile_c("listeners.c", false);
    let mut cmd = world.command(&exe);
    cmd.arg(&world.modules);
    let outcome = run(cmd, Duration::from_secs(180));
    println!("{}", outcome.stdout);
    outcome.assert_passed("listeners.c");
    assert_no_module_left(&outcome);
}
