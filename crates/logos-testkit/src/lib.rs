//! Helpers every integration test of the workspace needs the same way: where cargo put the
//! built binaries and module libraries, how to lay an example module out the way the core
//! discovers it (`<modules dir>/<name>/metadata.json` beside its `main`), and whether a process
//! is still alive.
//!
//! Tests that drive Node or Python install what they need through [`install`]: once, into a
//! cache under `target/`, so the README's test command passes on a fresh clone.
//!
//! Only tests depend on this crate. It never starts a core or a module itself: each test crate
//! keeps its own `World` for that, since what a test drives differs (the Rust API, the CLI,
//! the C API). Panics are the point here: a missing artifact fails the test with the fix.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod apt;
pub mod browser;
pub mod install;

pub use install::{npm_install, python_venv};

use std::path::{Path, PathBuf};

/// `target/<profile>`, found from the running test binary (`target/<profile>/deps/…`), so it
/// follows `CARGO_TARGET_DIR` and the profile without being told.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Stages example module `name` from `modules/` into `modules_dir`, with the example modules
/// its `permissions` name (the core refuses to load a module whose permissions name a module
/// it does not know, and the test modules `probe` and `relay` name each other and `chat`).
/// Dependencies are not staged: tests of missing dependencies need them absent. A module
/// already staged is left as it is.
///
/// A module whose `main` sits in its source folder (an executable such as `modules/pyecho`)
/// is copied verbatim, permissions included. Otherwise `main` is a library cargo built: its
/// `metadata.json` is copied and the library symlinked from the target dir (cheap, and the
/// core resolves it like a file).
///
/// # Panics
/// When the module has no metadata or its library was not built, naming the fix.
pub fn stage_module(modules_dir: &Path, name: &str) {
    let dest = modules_dir.join(name);
    if dest.join("metadata.json").exists() {
        return;
    }
    let src = workspace().join("modules").join(name);
    let meta = std::fs::read_to_string(src.join("metadata.json"))
        .unwrap_or_else(|e| panic!("{}/metadata.json: {e}", src.display()));
    let json: serde_json::Value = serde_json::from_str(&meta).expect("metadata.json is JSON");
    let main = json["main"]
        .as_str()
        .expect("metadata.json has a text \"main\"");
    stage_files(&src, &dest, &meta, main);
    let named = json["permissions"].as_array().cloned().unwrap_or_default();
    // "calc.add" names module calc.
    let modules = named
        .iter()
        .filter_map(serde_json::Value::as_str)
        .map(|p| p.split_once('.').map_or(p, |(m, _)| m));
    for other in modules {
        if !matches!(other, "core" | "capability_module") {
            stage_module(modules_dir, other);
        }
    }
}

fn stage_files(src: &Path, dest: &Path, meta: &str, main: &str) {
    if src.join(main).is_file() {
        copy_tree(src, dest);
        return;
    }
    std::fs::create_dir_all(dest).expect("module dir");
    std::fs::write(dest.join("metadata.json"), meta).expect("write metadata.json");
    let built = target_dir().join(main);
    assert!(
        built.is_file(),
        "{} is not built; run `cargo build --workspace` first",
        built.display()
    );
    std::os::unix::fs::symlink(&built, dest.join(main)).expect("symlink the module library");
}

/// Writes `<modules_dir>/<name>/metadata.json` with `json` verbatim (valid or not: tests of
/// bad metadata use this too) and returns the module dir.
pub fn write_metadata(modules_dir: &Path, name: &str, json: &str) -> PathBuf {
    let dir = modules_dir.join(name);
    std::fs::create_dir_all(&dir).expect("module dir");
    std::fs::write(dir.join("metadata.json"), json).expect("write metadata.json");
    dir
}

/// Writes an executable module `name` (restart `never`) whose main is the shell script
/// `script`; `deps` is the JSON of its `dependencies` field.
pub fn write_script_module(modules_dir: &Path, name: &str, deps: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let dir = write_metadata(
        modules_dir,
        name,
        &format!(
            r#"{{"name":"{name}","version":"1.0.0","main":"run.sh","dependencies":{deps},"restart":"never"}}"#
        ),
    );
    let path = dir.join("run.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn copy_tree(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).expect("module dir");
    for entry in std::fs::read_dir(src).expect("read module dir") {
        let entry = entry.expect("dir entry");
        let (from, to) = (entry.path(), dest.join(entry.file_name()));
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&from, &to);
        } else {
            // `fs::copy` copies the permission bits too, so an executable stays executable.
            std::fs::copy(&from, &to).expect("copy module file");
        }
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_free_pid_is_not() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX - 1));
    }

    #[test]
    fn paths_point_into_the_workspace() {
        assert!(workspace().join("Cargo.toml").is_file());
        assert!(target_dir().ends_with("debug") || target_dir().ends_with("release"));
    }
}
