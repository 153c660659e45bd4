//! Shared by the host's integration tests: compiling a tiny C-ABI module library with
//! `rustc` into a test's temp dir, so each test can make the library its case needs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes `src` as `<dir>/<file>.rs`, compiles it into `<dir>/lib<file>.so` and returns that
/// path; a failed compilation fails the test.
pub fn cdylib(dir: &Path, file: &str, src: &str) -> PathBuf {
    let src_path = dir.join(format!("{file}.rs"));
    std::fs::write(&src_path, src).unwrap();
    let out = dir.join(format!("lib{file}.so"));
    let status = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned()))
        .args(["--crate-type", "cdylib", "--edition", "2024", "-o"])
        .arg(&out)
        .arg(&src_path)
        .status()
        .unwrap();
    assert!(status.success(), "compiling the test library {file} failed");
    out
}
