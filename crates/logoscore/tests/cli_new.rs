//! `logoscore new` (issue 15): a generated project works with no edit. The Rust project's
//! tests pass with `cargo test` (its target dir is a cache under `target/scaffold`, so only
//! the first run compiles the SDK); the Python project's tests pass under pytest and it loads
//! into a real core and answers a call. Bad names and a non-empty dir are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;
use support::{World, finish, target_dir, workspace};

#[test]
fn a_new_rust_module_builds_and_its_tests_pass_with_no_edit() {
    let w = World::new();
    let dir = w.dir.path().join("hello-world");
    let doc = w.cli_json(&["new", "hello-world", "--dir", dir.to_str().unwrap()]);
    assert_eq!(doc["lang"], "rust", "{doc}");
    for f in [
        "Cargo.toml",
        "metadata.json",
        "src/lib.rs",
        "README.md",
        ".cargo/config.toml",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut test = Command::new(cargo);
    test.arg("test")
        .current_dir(&dir)
        .env(
            "CARGO_TARGET_DIR",
            target_dir().parent().unwrap().join("scaffold"),
        )
        .env("CARGO_INCREMENTAL", "0")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_MANIFEST_DIR");
    let out = finish(test, Duration::from_secs(20 * 60));
    out.ok();
    assert!(out.stdout.contains("2 passed"), "{}", out.stdout);
    // The metadata names what cargo built.
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["name"], "hello-world");
    assert_eq!(meta["main"], "libhello_world.so");
}

#[test]
fn a_new_python_module_loads_into_a_core_and_answers() {
    let w = World::new();
    let dir = w.modules.join("hello");
    w.cli(&[
        "new",
        "hello",
        "--lang",
        "python",
        "--dir",
        dir.to_str().unwrap(),
    ])
    .ok();
    // Its own tests, in the venv the SDK's tests use.
    let venv = logos_testkit::python_venv(&workspace().join("sdk/python/tests/requirements.txt"));
    let mut pytest = Command::new(venv.join("bin/python"));
    pytest
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .current_dir(&dir)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    finish(pytest, Duration::from_secs(120)).ok();

    let _daemon = w.daemon(&["--load", "hello"]);
    let doc = w.cli_json(&["call", "hello", "greet", "Ada"]);
    assert_eq!(doc["result"], "hello, Ada", "{doc}");
    let info = w.cli_json(&["info", "hello"]);
    let text = info.to_string();
    assert!(text.contains("greet") && text.contains("greeted"), "{text}");
    let out = w.cli(&["call", "hello", "greet", "str:"]);
    out.expect_code(4);
    assert!(
        out.stderr.contains("name must not be empty"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_names_and_occupied_dirs_are_refused() {
    let w = World::new();
    for (name, lang, why) in [
        ("../x", "python", "invalid module name"),
        ("core", "rust", "reserved"),
        ("my.mod", "rust", "cargo refuses"),
    ] {
        let out = w.cli(&[
            "new",
            name,
            "--lang",
            lang,
            "--dir",
            w.dir.path().join("p").to_str().unwrap(),
        ]);
        out.expect_code(1);
        assert!(
            out.stderr.to_lowercase().contains(why),
            "{name}: {}",
            out.stderr
        );
    }
    let taken = w.write("taken", "");
    let _ = std::fs::remove_file(&taken);
    std::fs::create_dir_all(&taken).unwrap();
    std::fs::write(taken.join("keep"), "mine").unwrap();
    let out = w.cli(&["new", "hello", "--dir", taken.to_str().unwrap()]);
    out.expect_code(1);
    assert!(out.stderr.contains("not empty"), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(taken.join("keep")).unwrap(), "mine");
}
