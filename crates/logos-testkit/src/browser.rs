//! Headless Chromium for tests that look at a page the way a person would: Debian's
//! `chromium` package, installed with apt-get when it is missing (once, under a file lock in
//! `target/`, so parallel tests wait for one installer), then run with flags that keep it off
//! the network and out of the user's profile.
//!
//! Never skips: when Chromium cannot be installed or run, the calling test panics with the
//! command, its output and the fix.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's package puts it.
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one page load (screenshot or DOM dump) may take.
const PAGE_DEADLINE: Duration = Duration::from_secs(120);

/// The Chromium binary, installed first if needed.
///
/// # Panics
/// When it is missing and `apt-get install -y chromium` fails (not root, no network to the
/// Debian mirrors), with apt's output.
pub fn chromium() -> PathBuf {
    crate::apt::ensure(CHROMIUM, "chromium")
}

/// Runs headless Chromium on `url` with `extra` flags (e.g. `--screenshot=…` or
/// `--dump-dom`) in a fresh profile under `profile`, and returns its stdout.
///
/// # Panics
/// When it fails or takes longer than two minutes, with its stderr.
pub fn headless(profile: &Path, url: &str, extra: &[String]) -> String {
    let bin = chromium();
    let mut child = Command::new(&bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < PAGE_DEADLINE => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish with {url} within {PAGE_DEADLINE:?}");
            }
        }
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("chromium: {e}"));
    assert!(
        out.status.success(),
        "chromium {extra:?} {url} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
