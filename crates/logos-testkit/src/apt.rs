//! Debian packages a test needs (a browser, `promtool`), installed with apt-get when their
//! binary is missing: once, under a file lock in `target/`, so parallel tests wait for one
//! installer. Never skips: when the package cannot be installed the calling test panics with
//! apt's output and the fix.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `bin` (an absolute path), installing Debian package `package` first if it is missing.
///
/// # Panics
/// When it is missing and `apt-get install -y <package>` fails (not root, no network to the
/// Debian mirrors), with apt's output.
pub fn ensure(bin: &str, package: &str) -> PathBuf {
    let bin = PathBuf::from(bin);
    if bin.is_file() {
        return bin;
    }
    let lock_path = crate::target_dir().join(format!("{package}-install.lock"));
    let lock = std::fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    if bin.is_file() {
        return bin;
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{} is not installed and apt-get cannot run ({e}); install it: apt-get install -y {package}", bin.display()))
    };
    let install = ["install", "-y", "-q", "--no-install-recommends", package];
    let mut out = apt(&install);
    if !out.status.success() {
        let update = apt(&["update", "-q"]);
        if !update.status.success() {
            panic!(
                "{} is not installed and `apt-get update` failed:\n{}{}",
                bin.display(),
                String::from_utf8_lossy(&update.stdout),
                String::from_utf8_lossy(&update.stderr)
            );
        }
        out = apt(&install);
    }
    assert!(
        out.status.success() && bin.is_file(),
        "{} is not installed and `apt-get install -y {package}` failed (run the tests as root, or install it):\n{}{}",
        bin.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// Prometheus's `promtool` (Debian package `prometheus`), installed first if needed.
///
/// # Panics
/// As [`ensure`].
pub fn promtool() -> PathBuf {
    ensure("/usr/bin/promtool", "prometheus")
}
