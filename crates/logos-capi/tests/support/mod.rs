//! Shared by the integration tests: where the built library, `logos_host` and the example
//! modules are; a fresh temp dir per test with the modules staged (metadata.json copied, the
//! library symlinked, as logos-core's tests do); and running a foreign program (C, Python,
//! Node) as a child process with a deadline, its output kept for the failure message.
//!
//! The library, `logos_host` and the modules must have been built (`cargo build --workspace`,
//! which the README's test command runs first). `target/<profile>` is found from the test
//! binary's own path, so debug and release builds both work.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)] // each test binary uses a different subset
pub use logos_testkit::{alive, target_dir, workspace};

/// This crate's dir.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails with how to build `path` when it is missing.
fn built(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.is_file(),
        "{} ({what}) is not built; run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// `target/<profile>/liblogos_core.so`.
pub fn cdylib() -> PathBuf {
    fresh(built(
        target_dir().join("liblogos_core.so"),
        "the C API library",
    ))
}

/// `target/<profile>/liblogos_core.a`.
pub fn staticlib() -> PathBuf {
    fresh(built(
        target_dir().join("liblogos_core.a"),
        "the C API static library",
    ))
}

/// Fails when `lib` is older than this crate's sources. `cargo test` does not rebuild this
/// crate's library (it has no rlib, so no test links it); only `cargo build` does. (Only this
/// crate's sources are checked: the crates below it change under other people's hands too.)
fn fresh(lib: PathBuf) -> PathBuf {
    let built_at = std::fs::metadata(&lib)
        .and_then(|m| m.modified())
        .expect("library mtime");
    if let Some((path, changed)) = newest(&crate_dir().join("src")) {
        assert!(
            changed <= built_at,
            "{} is older than {}; run `cargo build -p logos-capi` (cargo test does not rebuild it)",
            lib.display(),
            path.display()
        );
    }
    lib
}

/// The most recently modified file under `dir`.
fn newest(dir: &Path) -> Option<(PathBuf, std::time::SystemTime)> {
    let mut best: Option<(PathBuf, std::time::SystemTime)> = None;
    for entry in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let path = entry.path();
        let candidate = if path.is_dir() {
            newest(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .map(|t| (path, t))
        };
        if let Some((p, t)) = candidate
            && best.as_ref().is_none_or(|(_, b)| t > *b)
        {
            best = Some((p, t));
        }
    }
    best
}

/// `target/<profile>/logos_host`.
pub fn host() -> PathBuf {
    built(target_dir().join("logos_host"), "the module host")
}

/// The header.
pub fn include_dir() -> PathBuf {
    crate_dir().join("include")
}

/// A program under `tests/ffi/`.
pub fn ffi(path: &str) -> PathBuf {
    crate_dir().join("tests/ffi").join(path)
}

/// A fresh temp dir.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("logos-capi-test-")
        .tempdir()
        .expect("temp dir")
}

/// Whether `cmd` is on `PATH`.
pub fn have(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(cmd).is_file()))
}

/// One test's private world: a modules dir with example modules staged, a data dir, and a
/// scratch dir for build products.
pub struct World {
    pub dir: tempfile::TempDir,
    pub modules: PathBuf,
    pub data: PathBuf,
}

impl World {
    /// Stages `names` from `modules/` (metadata.json copied, the built library symlinked).
    pub fn new(names: &[&str]) -> World {
        let dir = scratch();
        let modules = dir.path().join("modules");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&modules).expect("modules dir");
        for name in names {
            logos_testkit::stage_module(&modules, name);
        }
        World { dir, modules, data }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A command with a clean logos environment: no inherited `LOGOS_*` setting, the data dir
    /// inside this world.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        for var in [
            "LOGOS_HOST",
            "LOGOS_HOST_PATH",
            "LOGOS_RUNTIME_DIR",
            "LOGOS_DATA_DIR",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("LOGOS_DATA_DIR", &self.data);
        cmd
    }

    /// Compiles `tests/ffi/c/<src>` against the header and the shared library (or, with
    /// `static_link`, the static one) into this world.
    pub fn compile_c(&self, src: &str, static_link: bool) -> PathBuf {
        let out = self.path().join(src.trim_end_matches(".c"));
        let mut cmd = Command::new("cc");
        cmd.args([
            "-std=c11",
            "-D_DEFAULT_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-g",
            "-I",
        ])
        .arg(include_dir())
        .arg(ffi(&format!("c/{src}")))
        .arg("-o")
        .arg(&out);
        if static_link {
            cmd.arg(staticlib()).args(["-lpthread", "-ldl", "-lm"]);
        } else {
            let dir = cdylib().parent().expect("target dir").to_path_buf();
            cmd.arg("-L")
                .arg(&dir)
                .arg(format!("-Wl,-rpath,{}", dir.display()))
                .args(["-llogos_core", "-lpthread"]);
        }
        let output = cmd.output().expect("running cc (install a C compiler)");
        assert!(
            output.status.success(),
            "cc failed for {src}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        out
    }
}

/// What a finished child did.
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Fails the test with the child's output unless it exited 0 and printed `PASS`.
    pub fn assert_passed(&self, what: &str) {
        assert!(
            self.status.success() && self.stdout.lines().any(|l| l == "PASS"),
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

/// Runs `cmd` to completion within `deadline`, killing it (and failing) when it takes longer.
pub fn run(mut cmd: Command, deadline: Duration) -> Outcome {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let out = reader(&mut child, true);
    let err = reader(&mut child, false);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within {deadline:?}; killed.\n--- stdout\n{}\n--- stderr\n{}",
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn reader(child: &mut Child, stdout: bool) -> std::thread::JoinHandle<String> {
    let mut pipe: Box<dyn Read + Send> = if stdout {
        Box::new(child.stdout.take().expect("stdout"))
    } else {
        Box::new(child.stderr.take().expect("stderr"))
    };
    std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = pipe.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    })
}

/// The pids a program printed as `pid <name> <n>` lines; none of them may still run.
pub fn assert_no_module_left(outcome: &Outcome) {
    for line in outcome.stdout.lines() {
        if let Some(rest) = line.strip_prefix("pid ") {
            let pid: u32 = rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("bad pid line {line:?}"));
            assert!(
                !alive(pid),
                "module process {pid} ({line}) outlived the program"
            );
        }
    }
}
