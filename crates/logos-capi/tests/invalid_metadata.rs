//! Issue 9, part 2, through the C API: `logos_core_load_plugin` of a module whose metadata.json
//! is invalid fails, and `logos_core_last_error()` names the fault (code `invalid_metadata`,
//! the file and the field) instead of "not known". Driven from Python with only `ctypes`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::{World, run};

const SCRIPT: &str = r#"
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.logos_core_set_plugins_dir.argtypes = [ctypes.c_char_p]
lib.logos_core_load_plugin.argtypes = [ctypes.c_char_p]
lib.logos_core_last_error.restype = ctypes.c_char_p
assert lib.logos_core_initialize() == 1
assert lib.logos_core_set_plugins_dir(sys.argv[2].encode()) == 1
assert lib.logos_core_start() == 1, lib.logos_core_last_error()
for name in sys.argv[3:]:
    ok = lib.logos_core_load_plugin(name.encode())
    print(name, ok, lib.logos_core_last_error().decode())
lib.logos_core_cleanup()
print("PASS")
"#;

#[test]
fn load_plugin_names_the_metadata_fault_in_the_last_error() {
    assert!(
        support::have("python3"),
        "python3 is not on PATH; install it (the C API is tested from Python with ctypes)"
    );
    let world = World::new(&[]);
    logos_testkit::write_metadata(
        &world.modules,
        "badversion",
        r#"{"name": "badversion", "version": "1.0", "main": "metadata.json"}"#,
    );
    let mut cmd = world.command("python3");
    cmd.arg("-c")
        .arg(SCRIPT)
        .arg(support::cdylib())
        .arg(&world.modules)
        .args(["badversion", "nothere"])
        .env("LOGOS_RUNTIME_DIR", world.path().join("run"));
    let outcome = run(cmd, Duration::from_secs(60));
    outcome.assert_passed("the ctypes script");
    let expected = format!(
        "badversion 0 invalid_metadata: badversion: {}/badversion/metadata.json: field \"version\": \"1.0\" is not a semver version (expected e.g. \"1.2.0\")",
        world.modules.display()
    );
    assert!(
        outcome.stdout.lines().any(|l| l == expected),
        "expected the line\n  {expected}\nin\n{}",
        outcome.stdout
    );
    assert!(
        outcome
            .stdout
            .lines()
            .any(|l| l.starts_with("nothere 0 unknown_module: ")),
        "{}",
        outcome.stdout
    );
}
