//! Building a Cargo module project: `cargo build --lib` with JSON messages, from which the
//! cdylib's path is read (never guessed from names), and the compiler's own output kept to show
//! when the build fails.
//!
//! cargo runs in a process group of its own, so stopping `dev` mid-build stops cargo and every
//! rustc it started (dropping [`Build`] signals the group). Never stages and never talks to the
//! core.

use super::project::{CargoPackage, no_cargo};
use crate::error::Error;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt as _;

/// A finished build.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The library, and whether cargo found it up to date (nothing was compiled).
    Built {
        library: PathBuf,
        fresh: bool,
        /// Warnings cargo printed, if any.
        warnings: Option<String>,
    },
    /// The compiler's output.
    Failed { output: String, took: Duration },
}

/// Builds the package's library.
///
/// # Errors
/// [`Error::Usage`] when cargo cannot be started; a failed compile is an
/// [`Outcome::Failed`], not an error.
///
/// # Cancel safety
/// Dropping the future stops cargo and its compilers (SIGTERM to their process group).
pub(crate) async fn build(
    pkg: &CargoPackage,
    release: bool,
    color: bool,
) -> Result<Outcome, Error> {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(&pkg.cargo);
    cmd.args(["build", "--lib", "--message-format=json-render-diagnostics"]);
    if release {
        cmd.arg("--release");
    }
    cmd.arg(if color {
        "--color=always"
    } else {
        "--color=never"
    })
    .arg("--manifest-path")
    .arg(&pkg.manifest)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| no_cargo(&pkg.cargo, &e))?;
    let group = Group(child.id());
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let read_out = async {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s).await;
        }
        s
    };
    let read_err = async {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s).await;
        }
        s
    };
    let (stdout, stderr, status) = tokio::join!(read_out, read_err, child.wait());
    let status = status.map_err(|e| Error::io("cannot wait for cargo", e))?;
    group.disarm();
    let took = started.elapsed();
    if !status.success() {
        return Ok(Outcome::Failed {
            output: stderr,
            took,
        });
    }
    let Some((library, fresh)) = cdylib(&stdout, pkg) else {
        return Ok(Outcome::Failed {
            output: format!(
                "{stderr}\ncargo built no cdylib for {}; its [lib] needs crate-type = [\"cdylib\", \"rlib\"]",
                pkg.manifest.display()
            ),
            took,
        });
    };
    let warnings = stderr.contains("warning").then_some(stderr);
    Ok(Outcome::Built {
        library,
        fresh,
        warnings,
    })
}

/// The cdylib of the package in cargo's JSON messages, and whether it was fresh.
fn cdylib(messages: &str, pkg: &CargoPackage) -> Option<(PathBuf, bool)> {
    let ours = std::fs::canonicalize(&pkg.manifest).unwrap_or_else(|_| pkg.manifest.clone());
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| {
            m.get("reason").and_then(serde_json::Value::as_str) == Some("compiler-artifact")
        })
        .filter(|m| {
            m.get("manifest_path")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.into()) == ours)
        })
        .find_map(|m| {
            let is_cdylib = m
                .pointer("/target/crate_types")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"));
            if !is_cdylib {
                return None;
            }
            let fresh = m
                .get("fresh")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            m.get("filenames")
                .and_then(serde_json::Value::as_array)?
                .iter()
                .filter_map(serde_json::Value::as_str)
                .find(|f| f.ends_with(".so"))
                .map(|f| (PathBuf::from(f), fresh))
        })
}

/// cargo's process group, sent SIGTERM when dropped before [`Group::disarm`].
struct Group(Option<u32>);

impl Group {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self
            .0
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cdylib_is_read_from_the_messages() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(&manifest, "").unwrap();
        let pkg = CargoPackage {
            cargo: "cargo".into(),
            manifest: manifest.clone(),
            target_dir: dir.path().join("target"),
        };
        let m = manifest.display();
        let messages = format!(
            r#"{{"reason":"compiler-artifact","manifest_path":"/elsewhere/Cargo.toml","target":{{"crate_types":["cdylib"]}},"filenames":["/x/libother.so"],"fresh":true}}
not json
{{"reason":"compiler-artifact","manifest_path":"{m}","target":{{"crate_types":["cdylib","rlib"]}},"filenames":["/t/libhello.rlib","/t/libhello.so"],"fresh":false}}
{{"reason":"build-finished","success":true}}"#
        );
        assert_eq!(
            cdylib(&messages, &pkg),
            Some((PathBuf::from("/t/libhello.so"), false))
        );
        assert_eq!(cdylib("", &pkg), None);
    }
}
