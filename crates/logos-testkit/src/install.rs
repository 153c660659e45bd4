//! Installing what a test needs from a package registry, once, into a cache under `target/`:
//! Node packages from a `package-lock.json` ([`npm_install`]) and a Python virtual environment
//! from a `requirements.txt` ([`python_venv`]).
//!
//! The README's test command must pass on a fresh clone with nothing run first, so a test
//! that drives Node or Python installs its packages itself. Each install lands in its own
//! directory named after a hash of the files that define it (`target/npm/<name>-<hash>/`,
//! `target/venv/<name>-<hash>/`): a changed lockfile gets a fresh directory, an unchanged one
//! is reused for free. A file lock beside the directory serialises installers, so test threads
//! and parallel test binaries wait for the first one instead of racing it; a `.complete` marker
//! written last tells a finished install from one that was interrupted (which is wiped and
//! redone).
//!
//! Never skips: when a tool is missing or the registry cannot be reached, the calling test
//! panics with the command, its output and the fix. Never writes outside the cache directory
//! (npm's and pip's own download caches in the home directory aside).
//!
//! The directory hash is FNV-1a (the `fnv` crate): it only has to tell lockfiles apart, not
//! resist an attacker; `npm ci` and `pip` check what they download against the lockfile and
//! the registry themselves.

use std::fs::File;
use std::hash::Hasher as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one `npm ci` or `pip install` may take before the test fails. Generous: two cores
/// shared by parallel builds, and a cold registry cache.
const INSTALL_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// Written into an install directory when everything in it is in place.
const MARKER: &str = ".complete";

/// Installs the npm packages locked by `<project>/package-lock.json` (with `npm ci`, so exactly
/// the locked versions) into `target/npm/<project name>-<hash>/` and returns its
/// `node_modules` directory.
///
/// Point Node at it with `NODE_PATH=<returned dir>`; `require("koffi")` then finds the package
/// from any script. The first call for a lockfile installs, later calls (in this process or
/// any other) return at once; concurrent first calls wait for one install.
///
/// # Panics
///
/// When `project` has no `package.json` or `package-lock.json`, `npm` is not on `PATH`, or
/// `npm ci` fails or takes longer than 15 minutes: the message has npm's output and the fix.
pub fn npm_install(project: &Path) -> PathBuf {
    let files = [
        project.join("package.json"),
        project.join("package-lock.json"),
    ];
    let contents = read_all(
        &files,
        "npm_install needs a package.json and its package-lock.json",
    );
    let dir = cached("npm", &label(project), &contents, |dir| {
        for (file, bytes) in files.iter().zip(&contents) {
            let name = file.file_name().unwrap_or_default();
            std::fs::write(dir.join(name), bytes)
                .map_err(|e| format!("writing {}: {e}", dir.join(name).display()))?;
        }
        let mut npm = Command::new("npm");
        npm.current_dir(dir)
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .env("npm_config_update_notifier", "false");
        run_logged(
            npm,
            dir,
            "npm ci",
            "install Node.js and npm (e.g. `apt-get install nodejs npm`)",
        )
    });
    dir.join("node_modules")
}

/// Creates a Python virtual environment with the packages of `requirements` (a pip
/// requirements file) in `target/venv/<file stem>-<hash>/` and returns that directory; its
/// interpreter is `<dir>/bin/python`.
///
/// The venv is made by the `python3` on `PATH` (`python3 -m venv`), then
/// `pip install -r requirements` runs inside it. The hash covers the requirements file and
/// that interpreter's version, so editing the file or upgrading Python gives a new venv. The
/// first call installs; later calls, in any process, return at once; concurrent first calls
/// wait for one install.
///
/// # Panics
///
/// When `requirements` cannot be read, `python3` or its `venv` module is missing, or
/// `pip install` fails or takes longer than 15 minutes: the message has pip's output and the
/// fix.
pub fn python_venv(requirements: &Path) -> PathBuf {
    let mut contents = read_all(
        &[requirements.to_path_buf()],
        "python_venv needs a requirements file",
    );
    contents.push(python_version().into_bytes());
    let name = requirements
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "requirements".to_owned());
    cached("venv", &name, &contents, |dir| {
        let mut venv = Command::new("python3");
        venv.args(["-m", "venv"]).arg(dir);
        run_logged(
            venv,
            dir,
            "python3 -m venv",
            "install Python's venv module (e.g. `apt-get install python3-venv`)",
        )?;
        let copy = dir.join("requirements.txt");
        std::fs::write(&copy, &contents[0])
            .map_err(|e| format!("writing {}: {e}", copy.display()))?;
        let mut pip = Command::new(dir.join("bin/python"));
        pip.args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
        ])
        .arg(&copy);
        run_logged(
            pip,
            dir,
            "pip install -r",
            "check that PyPI is reachable and the requirements file names real packages",
        )
    })
}

/// `python3 --version`, so a venv is rebuilt for another interpreter.
fn python_version() -> String {
    match Command::new("python3").arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(out) => panic!(
            "`python3 --version` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            panic!("cannot run python3 ({e}); install Python 3 (e.g. `apt-get install python3`)")
        }
    }
}

/// The last path component of `project`, for a readable cache directory name.
fn label(project: &Path) -> String {
    project
        .canonicalize()
        .unwrap_or_else(|_| project.to_path_buf())
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "project".to_owned())
}

fn read_all(files: &[PathBuf], why: &str) -> Vec<Vec<u8>> {
    files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e} ({why})", f.display())))
        .collect()
}

/// The FNV-1a hash of `parts`, each length-prefixed so `["ab", "c"]` ≠ `["a", "bc"]`, as 16 hex
/// digits.
fn hash(parts: &[Vec<u8>]) -> String {
    let mut h = fnv::FnvHasher::default();
    for p in parts {
        h.write_u64(p.len() as u64);
        h.write(p);
    }
    format!("{:016x}", h.finish())
}

/// `target/<kind>/<name>-<hash of parts>/`, filled by `fill` exactly once across threads and
/// processes.
///
/// Holds an exclusive file lock on `<dir>.lock` while checking and filling; an interrupted
/// earlier fill (no marker) is wiped first. The marker is written only after `fill` succeeds.
///
/// # Panics
///
/// With `fill`'s error, or when the cache directory cannot be created or locked.
fn cached(
    kind: &str,
    name: &str,
    parts: &[Vec<u8>],
    fill: impl FnOnce(&Path) -> Result<(), String>,
) -> PathBuf {
    let root = cache_root().join(kind);
    let leaf = format!("{name}-{}", hash(parts));
    let dir = root.join(&leaf);
    if dir.join(MARKER).is_file() {
        return dir;
    }
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("creating {}: {e}", root.display()));
    let lock_path = root.join(format!("{leaf}.lock"));
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", lock_path.display()));
    // Blocks while another thread or process installs the same thing.
    lock.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", lock_path.display()));
    if dir.join(MARKER).is_file() {
        return dir;
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .unwrap_or_else(|e| panic!("removing the unfinished install {}: {e}", dir.display()));
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    if let Err(e) = fill(&dir) {
        panic!("setting up {} failed: {e}", dir.display());
    }
    std::fs::write(dir.join(MARKER), b"")
        .unwrap_or_else(|e| panic!("writing {}: {e}", dir.join(MARKER).display()));
    dir
}

/// `target/`, the parent of `target/<profile>`; it follows `CARGO_TARGET_DIR`.
fn cache_root() -> PathBuf {
    let profile = crate::target_dir();
    profile.parent().map(Path::to_path_buf).unwrap_or(profile)
}

/// Runs `cmd` with its output in `<dir>.<program>.log` (beside `dir`, so a wipe of an
/// unfinished install keeps it), within [`INSTALL_DEADLINE`]. The error names the command,
/// how it ended, the log's tail and `fix` (said when the program is missing).
fn run_logged(mut cmd: Command, dir: &Path, what: &str, fix: &str) -> Result<(), String> {
    let program = what.split_whitespace().next().unwrap_or("install");
    let mut log_name = dir.file_name().unwrap_or_default().to_os_string();
    log_name.push(format!(".{program}.log"));
    let log_path = dir.with_file_name(log_name);
    let log =
        File::create(&log_path).map_err(|e| format!("creating {}: {e}", log_path.display()))?;
    let err = log
        .try_clone()
        .map_err(|e| format!("cloning {}: {e}", log_path.display()))?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(err);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `{what}` ({e}); {fix}"))?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > INSTALL_DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{what}` did not finish within {INSTALL_DEADLINE:?} and was killed; output:\n{}",
                    tail(&log_path)
                ));
            }
            // Polling the child's exit (with the deadline above) is the condition waited on.
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for `{what}`: {e}")),
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{what}` failed ({status}) in {}; output:\n{}",
            dir.display(),
            tail(&log_path)
        ))
    }
}

/// The last 4 KiB of a log file.
fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let cut = text.len().saturating_sub(4096);
    let start = (cut..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn lock_of(dir: &Path) -> PathBuf {
        let mut name = dir.file_name().unwrap().to_os_string();
        name.push(".lock");
        dir.with_file_name(name)
    }

    #[test]
    fn hash_tells_parts_apart() {
        let a = hash(&[b"ab".to_vec(), b"c".to_vec()]);
        let b = hash(&[b"a".to_vec(), b"bc".to_vec()]);
        assert_ne!(a, b);
        assert_eq!(a, hash(&[b"ab".to_vec(), b"c".to_vec()]));
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn concurrent_callers_fill_once() {
        // A key no other test uses, fresh per run.
        let unique = format!("{}-{:?}", std::process::id(), Instant::now());
        let parts = vec![unique.into_bytes()];
        let fills = AtomicUsize::new(0);
        let dirs: Vec<PathBuf> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        cached("testkit-selftest", "once", &parts, |dir| {
                            fills.fetch_add(1, Ordering::SeqCst);
                            std::fs::write(dir.join("filled"), b"yes").map_err(|e| e.to_string())
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(fills.load(Ordering::SeqCst), 1);
        assert!(dirs.windows(2).all(|w| w[0] == w[1]));
        assert!(dirs[0].join("filled").is_file());
        let _ = std::fs::remove_dir_all(&dirs[0]);
        let _ = std::fs::remove_file(lock_of(&dirs[0]));
    }

    #[test]
    fn an_interrupted_fill_is_redone_and_a_failure_panics_with_the_reason() {
        let unique = format!("{}-{:?}", std::process::id(), Instant::now());
        let parts = vec![unique.into_bytes()];
        let failed = std::panic::catch_unwind(|| {
            cached("testkit-selftest", "fails", &parts, |dir| {
                std::fs::write(dir.join("half"), b"").map_err(|e| e.to_string())?;
                Err("the registry is unreachable".to_owned())
            })
        });
        let message = failed
            .err()
            .and_then(|p| p.downcast::<String>().ok())
            .map(|s| *s)
            .unwrap_or_default();
        assert!(message.contains("the registry is unreachable"), "{message}");
        let dir = cached("testkit-selftest", "fails", &parts, |dir| {
            assert!(!dir.join("half").exists(), "leftovers were not wiped");
            Ok(())
        });
        assert!(dir.join(MARKER).is_file());
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(lock_of(&dir));
    }

    #[test]
    fn python_venv_installs_the_requirements() {
        let tmp = std::env::temp_dir().join(format!("testkit-venv-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let req = tmp.join("selftest-requirements.txt");
        // A small pure-Python package, pinned.
        std::fs::write(&req, "iniconfig==2.0.0\n").unwrap();
        let venv = python_venv(&req);
        let out = Command::new(venv.join("bin/python"))
            .args(["-c", "import iniconfig, sys; print(sys.prefix)"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let prefix = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert_eq!(
            Path::new(&prefix).canonicalize().unwrap(),
            venv.canonicalize().unwrap()
        );
        // Cached: the second call does not install again.
        assert_eq!(python_venv(&req), venv);
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
