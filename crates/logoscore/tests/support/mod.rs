//! Shared by the integration tests: a fresh temp dir per test (modules dir, runtime dir, data
//! dir), example modules staged from the cargo target dir the way
//! `crates/logos-core/tests/support` does, the real `logoscore` binary run with deadlines, and
//! guards that kill and reap every process a test started (the daemon with SIGTERM then
//! SIGKILL, module process groups as a last resort), even when the test fails.
//!
//! The modules and `logos_host` must have been built (`cargo build --workspace`), which the
//! README's test command does first. Nothing here sleeps without a condition: every wait polls
//! a condition until a deadline.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The operator's grant of the network to `p2p` (it declares `"network": true`), as
/// docs/security.md says an operator writes it in `logoscore.toml`.
pub const P2P_NETWORK: &str = "[modules.p2p]\nnetwork = true\n";

/// Deadline of a client command.
pub const COMMAND: Duration = Duration::from_secs(60);
/// Deadline of the daemon becoming ready (spawning and handshaking every boot module).
pub const READY: Duration = Duration::from_secs(60);
/// Deadline of a process ending after it was asked to.
pub const EXIT: Duration = Duration::from_secs(30);

/// The `logoscore` binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_logoscore"))
}

#[allow(unused_imports)] // each test binary uses a different subset
pub use logos_testkit::{alive, target_dir, workspace};

/// What a finished command printed and how it ended.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Asserts the exit code, showing both streams when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts success.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }

    /// stdout parsed as one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", self.stdout))
    }
}

/// One test's private world.
pub struct World {
    pub dir: tempfile::TempDir,
    pub modules: PathBuf,
    pub runtime: PathBuf,
    pub data: PathBuf,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("logoscore-test-")
            .tempdir()
            .expect("temp dir");
        let modules = dir.path().join("modules");
        std::fs::create_dir_all(&modules).expect("modules dir");
        World {
            runtime: dir.path().join("run"),
            data: dir.path().join("data"),
            modules,
            dir,
        }
    }

    /// Copies an example module (metadata.json + a link to its built library) into the
    /// modules dir.
    pub fn stage(&self, name: &str) -> &Self {
        logos_testkit::stage_module(&self.modules, name);
        self
    }

    /// Writes `<data>/p2p/p2p.json` so the `p2p` module listens on loopback only (issue 12).
    pub fn p2p_on_loopback(&self) -> &Self {
        let dir = self.data.join("p2p");
        std::fs::create_dir_all(&dir).expect("p2p's data dir");
        std::fs::write(
            dir.join("p2p.json"),
            r#"{"listen": ["/ip4/127.0.0.1/tcp/0"]}"#,
        )
        .expect("p2p.json");
        self
    }

    pub fn stage_all(&self, names: &[&str]) -> &Self {
        for n in names {
            self.stage(n);
        }
        self
    }

    /// Writes `<modules>/<name>/metadata.json` with `json` verbatim.
    pub fn write_metadata(&self, name: &str, json: &str) -> PathBuf {
        logos_testkit::write_metadata(&self.modules, name, json)
    }

    /// Writes an executable module `name` whose main is the shell script `script`.
    pub fn script_module(&self, name: &str, script: &str) {
        logos_testkit::write_script_module(&self.modules, name, "{}", script);
    }

    /// Writes a file in the temp dir and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// `logoscore --runtime-dir <this world's>` with a clean environment for the core.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("--runtime-dir")
            .arg(&self.runtime)
            .env("LOGOS_HOST", target_dir().join("logos_host"))
            .env_remove("LOGOS_RUNTIME_DIR")
            .env_remove("LOGOSCORE_CONFIG_DIR")
            .env_remove("LOGOSCORE_TOKEN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a client command to its end (killed at the deadline).
    pub fn cli(&self, args: &[&str]) -> Outcome {
        let mut cmd = self.command();
        cmd.args(args);
        finish(cmd, COMMAND)
    }

    /// `--json` + the command; asserts exit 0 and returns the document.
    #[track_caller]
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        out.ok();
        out.json()
    }

    /// `call MODULE ARGS…` that must succeed; its result.
    #[track_caller]
    pub fn call_result(&self, module: &str, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["call", module];
        all.extend_from_slice(args);
        let doc = self.cli_json(&all);
        assert_eq!(doc["status"], "ok", "{doc}");
        doc["result"].clone()
    }

    /// `call MODULE ARGS…` that must fail (exit 4) with the stable error `name`; its stderr.
    #[track_caller]
    pub fn call_fails(&self, module: &str, args: &[&str], name: &str) -> String {
        let mut all = vec!["call", module];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        out.expect_code(4);
        assert!(
            out.stderr.contains(&format!("{name}: ")),
            "expected {name}:\n{}",
            out.stderr
        );
        out.stderr.clone()
    }

    /// Starts `logoscore --json run -m <modules> --data-dir <data> ARGS…` and waits for its
    /// readiness document.
    pub fn daemon(&self, args: &[&str]) -> Daemon {
        let mut cmd = self.command();
        cmd.arg("--json")
            .arg("run")
            .arg("-m")
            .arg(&self.modules)
            .arg("--data-dir")
            .arg(&self.data)
            .args(args);
        let mut d = Daemon::spawn(cmd);
        d.ready = d.wait_ready();
        d
    }

    /// [`World::daemon`] with `-c <temp dir>/logoscore.toml` holding `config`.
    pub fn daemon_config(&self, config: &str, args: &[&str]) -> Daemon {
        let path = self.write("logoscore.toml", config);
        let mut all = vec!["-c", path.to_str().expect("UTF-8 temp dir")];
        all.extend_from_slice(args);
        self.daemon(&all)
    }

    /// This world's config dir (the reference's `--config-dir`), not created.
    pub fn cfg(&self) -> PathBuf {
        self.dir.path().join("cfg")
    }

    /// `logoscore` with a clean environment and neither a runtime dir nor a config dir.
    pub fn bare(&self) -> Command {
        let mut cmd = Command::new(bin());
        cmd.env("LOGOS_HOST", target_dir().join("logos_host"))
            .env_remove("LOGOS_RUNTIME_DIR")
            .env_remove("LOGOSCORE_CONFIG_DIR")
            .env_remove("LOGOSCORE_TOKEN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// `logoscore --config-dir <cfg> ARGS…` to its end.
    pub fn cfg_cli(&self, args: &[&str]) -> Outcome {
        let mut cmd = self.bare();
        cmd.arg("--config-dir").arg(self.cfg()).args(args);
        finish(cmd, COMMAND)
    }

    /// As [`World::cfg_cli`] with `--json`; asserts exit 0 and returns the document.
    #[track_caller]
    pub fn cfg_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cfg_cli(&all);
        out.ok();
        out.json()
    }

    /// Starts the reference's way, `logoscore --config-dir <cfg> -D -m <modules> ARGS…` (plus
    /// `--json` for the readiness line), and waits until it is ready.
    pub fn cfg_daemon(&self, args: &[&str]) -> Daemon {
        let mut cmd = self.bare();
        cmd.arg("--config-dir")
            .arg(self.cfg())
            .arg("--json")
            .arg("-D")
            .arg("-m")
            .arg(&self.modules)
            .args(args);
        let mut d = Daemon::spawn(cmd);
        d.ready = d.wait_ready();
        d
    }

    pub fn socket(&self) -> PathBuf {
        self.runtime.join("core.sock")
    }

    pub fn token(&self) -> PathBuf {
        self.runtime.join("client.token")
    }

    /// `name → pid` of running modules, from `list --json`.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let list = self.cli_json(&["list"]);
        list.as_array()
            .expect("list is an array")
            .iter()
            .filter_map(|m| {
                let pid = u32::try_from(m["pid"].as_u64()?).ok()?;
                Some((m["name"].as_str()?.to_owned(), pid))
            })
            .collect()
    }
}

/// Runs `cmd` with piped output until it exits or `within` passes (then it is killed).
pub fn finish(mut cmd: Command, within: Duration) -> Outcome {
    let mut p = Proc::spawn(&mut cmd);
    let status = p.wait(within);
    let status = match status {
        Some(s) => s,
        None => {
            p.kill();
            panic!(
                "{cmd:?} did not finish within {within:?}\n--- stderr\n{}",
                p.stderr_text()
            );
        }
    };
    Outcome {
        code: status.code(),
        stdout: p.stdout_rest(Duration::from_secs(5)),
        stderr: p.stderr_text(),
    }
}

/// A child process with its stdout as a stream of lines and its stderr collected; killed and
/// reaped on drop.
pub struct Proc {
    pub child: Child,
    lines: Receiver<String>,
    stdout_done: Receiver<()>,
    stderr: Arc<Mutex<String>>,
    stderr_done: Receiver<()>,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let (tx, lines) = channel();
        let (done_tx, stdout_done) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
            let _ = done_tx.send(());
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let (edone_tx, stderr_done) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(err);
            let mut buf = [0u8; 4096];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
            let _ = edone_tx.send(());
        });
        Proc {
            child,
            lines,
            stdout_done,
            stderr,
            stderr_done,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line, or `None` at the deadline or end of output.
    pub fn next_line(&self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    /// The rest of stdout once the process has closed it.
    pub fn stdout_rest(&self, within: Duration) -> String {
        let _ = self.stdout_done.recv_timeout(within);
        let mut s = String::new();
        while let Ok(l) = self.lines.try_recv() {
            s.push_str(&l);
            s.push('\n');
        }
        s
    }

    /// Everything written to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until stderr contains `needle`.
    #[track_caller]
    pub fn wait_stderr(&self, needle: &str, within: Duration) {
        let s = &self.stderr;
        wait_for(&format!("{needle:?} on stderr"), within, || {
            s.lock().unwrap_or_else(|p| p.into_inner()).contains(needle)
        });
    }

    /// Waits for the exit (reaping it); `None` at the deadline.
    pub fn wait(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    let _ = self.stderr_done.recv_timeout(Duration::from_secs(5));
                    return Some(s);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => return None,
            }
        }
    }

    /// Sends a signal.
    pub fn signal(&self, sig: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid() as i32) {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// A running `logoscore run`.
pub struct Daemon {
    pub proc: Proc,
    /// The readiness document (`{"pid", "runtimeDir", "socket", "known", "loaded", "failed"}`).
    pub ready: serde_json::Value,
}

impl Daemon {
    pub fn spawn(cmd: Command) -> Daemon {
        let mut cmd = cmd;
        Daemon {
            proc: Proc::spawn(&mut cmd),
            ready: serde_json::Value::Null,
        }
    }

    /// Reads the readiness document (first stdout line).
    pub fn wait_ready(&mut self) -> serde_json::Value {
        let Some(line) = self.proc.next_line(READY) else {
            let status = self.proc.wait(Duration::from_secs(1));
            panic!(
                "logoscore run did not become ready within {READY:?} (exit: {status:?})\n--- stderr\n{}",
                self.proc.stderr_text()
            );
        };
        serde_json::from_str(&line).unwrap_or_else(|e| {
            // Not a readiness line: most likely a (pretty) error document; show all of it.
            let rest = self.proc.stdout_rest(Duration::from_secs(5));
            panic!(
                "readiness line is not JSON ({e}): {line}\n{rest}\n--- stderr\n{}",
                self.proc.stderr_text()
            )
        })
    }

    /// Names in the readiness document's `loaded`.
    pub fn loaded(&self) -> Vec<String> {
        self.ready["loaded"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits for the daemon to exit; panics with its stderr at the deadline.
    #[track_caller]
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        match self.proc.wait(within) {
            Some(s) => s,
            None => panic!(
                "logoscore run did not exit within {within:?}\n--- stderr\n{}",
                self.proc.stderr_text()
            ),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.proc.child.try_wait() {
            // A clean stop first, so the core removes its files; then the hammer.
            self.proc.signal(rustix::process::Signal::TERM);
            if self.proc.wait(EXIT).is_none() {
                self.proc.kill();
            }
        }
    }
}

/// Polls `cond` every 10 ms until it holds or `within` passes.
#[track_caller]
pub fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
