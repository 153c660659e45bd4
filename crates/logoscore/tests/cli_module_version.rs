//! A module whose own version (its Cargo.toml's, embedded by `#[module]`) differs from its
//! `metadata.json` is refused at load with a message naming both: by `logos_host` before any
//! module code runs for a library, and by the core at the handshake for an executable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use support::{World, target_dir};

#[test]
fn a_library_built_as_another_version_is_refused_by_the_host() {
    let w = World::new();
    w.stage("calc");
    let dir = w.write_metadata(
        "calc",
        r#"{"name": "calc", "version": "1.2.0", "main": "libcalc.so"}"#,
    );
    let d = w.daemon(&[]);
    let out = w.cli(&["load", "calc"]);
    out.expect_code(3);
    assert!(
        out.stderr
            .contains("was built as version 1.0.0 (the `version` in its Cargo.toml")
            && out.stderr.contains("but its metadata.json says 1.2.0"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(&dir.join("libcalc.so").display().to_string()),
        "names the library: {}",
        out.stderr
    );
    // With the metadata corrected, the same library loads (in a core that reads it anew).
    drop(d);
    w.write_metadata(
        "calc",
        r#"{"name": "calc", "version": "1.0.0", "main": "libcalc.so"}"#,
    );
    let _d = w.daemon(&[]);
    w.cli(&["load", "calc"]).ok();
    w.cli(&["call", "calc", "add", "2", "3"]).ok();
}

#[test]
fn an_executable_saying_another_version_is_refused_at_the_handshake() {
    let w = World::new();
    let dir = w.write_metadata(
        "calc",
        r#"{"name": "calc", "version": "2.0.0", "main": "run.sh", "restart": "never"}"#,
    );
    // An executable module: the core runs the script, which runs calc (version 1.0.0) without
    // telling logos_host what to expect, so only the handshake can catch it. The library is
    // linked into the module dir, as staging does: a confined module reads its own dir (and
    // what the operator's links there point to), not the target dir.
    std::os::unix::fs::symlink(target_dir().join("libcalc.so"), dir.join("libcalc.so")).unwrap();
    let script = dir.join("run.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' --module '{}' --name calc\n",
            target_dir().join("logos_host").display(),
            dir.join("libcalc.so").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _d = w.daemon(&[]);
    let out = w.cli(&["load", "calc"]);
    out.expect_code(3);
    assert!(
        out.stderr.contains(&format!(
            "module \"calc\" says it is version 1.0.0 (its hello; for a Rust module, the version in its Cargo.toml) but {} says 2.0.0",
            dir.join("metadata.json").display()
        )),
        "{}",
        out.stderr
    );
}
