//! The tutorial of docs/module-authoring.md, run as written (issue 15), so it cannot rot.
//!
//! Between `<!-- tutorial: begin -->` and `<!-- tutorial: end -->`, every fenced block marked
//! `sh tutorial` runs in bash (`set -euo pipefail`), in order, in the dir the previous one
//! ended in; `sh tutorial background` starts a long-running command (`logoscore dev`,
//! `logoscore run`) in a process group of its own. The doc's invisible directives say what to
//! check: `<!-- tutorial: wait "TEXT" -->` waits (with a deadline) until the newest background
//! command printed TEXT since the previous block started; `expect "TEXT"` asserts the previous
//! block printed TEXT; `stop` sends the newest background command SIGINT (Ctrl-C) and waits
//! for a clean exit. Blocks not marked (the trace step, illustrations) are not run.
//!
//! The commands run with the `logoscore` and `logos_host` just built first on `PATH`, and a
//! private runtime dir, data home and config home; Rust projects build in the warm
//! `target/scaffold` dir the other scaffold tests use.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{target_dir, wait_for, workspace};

/// One step of the tutorial.
#[derive(Debug, PartialEq)]
enum Step {
    Run(String),
    Background(String),
    Wait(String),
    Expect(String),
    Stop,
}

/// A wait may cover the first build of the SDK in a fresh target dir.
const WAIT: Duration = Duration::from_secs(20 * 60);
/// A foreground block (cargo test, a build) on a busy machine.
const BLOCK: Duration = Duration::from_secs(20 * 60);

/// The steps between the begin and end markers.
fn steps(doc: &str) -> Vec<Step> {
    let begin = doc
        .find("<!-- tutorial: begin -->")
        .expect("the doc has a tutorial: begin marker");
    let end = doc
        .find("<!-- tutorial: end -->")
        .expect("the doc has a tutorial: end marker");
    let mut out = Vec::new();
    let mut lines = doc[begin..end].lines();
    while let Some(line) = lines.next() {
        let line = line.trim_end();
        if let Some(info) = line.strip_prefix("```") {
            let mut body = String::new();
            for l in lines.by_ref() {
                if l.trim_end() == "```" {
                    break;
                }
                body.push_str(l);
                body.push('\n');
            }
            match info.trim() {
                "sh tutorial" => out.push(Step::Run(body)),
                "sh tutorial background" => out.push(Step::Background(body)),
                _ => {}
            }
        } else if let Some(d) = line
            .strip_prefix("<!-- tutorial: ")
            .and_then(|d| d.strip_suffix(" -->"))
        {
            let quoted = |word: &str| {
                d.strip_prefix(word)
                    .map(|rest| rest.trim().trim_matches('"').to_owned())
            };
            if let Some(t) = quoted("wait ") {
                out.push(Step::Wait(t));
            } else if let Some(t) = quoted("expect ") {
                out.push(Step::Expect(t));
            } else if d == "stop" {
                out.push(Step::Stop);
            } else if d != "begin" {
                panic!("unknown tutorial directive: {line}");
            }
        }
    }
    out
}

/// A background command: its output (stdout and stderr together) collected.
struct Background {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Background {
    fn text(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    fn signal_group(&self, sig: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, sig);
        }
    }

    fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal_group(rustix::process::Signal::TERM);
            if self.wait(Duration::from_secs(30)).is_none() {
                self.signal_group(rustix::process::Signal::KILL);
                let _ = self.child.wait();
            }
        }
    }
}

/// Reads `r` into `sink` until it ends.
fn collect(
    mut r: impl Read + Send + 'static,
    sink: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    })
}

/// bash with the tutorial's environment.
fn bash(home: &Path, script: &str, args: &[&Path]) -> Command {
    let mut cmd = Command::new("bash");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![target_dir()];
    dirs.extend(std::env::split_paths(&path));
    cmd.arg("-c")
        .arg(script)
        .arg("bash")
        .args(args)
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .env("LOGOS_RUNTIME_DIR", home.join("run"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env(
            "CARGO_TARGET_DIR",
            target_dir().parent().unwrap().join("scaffold"),
        )
        .env("CARGO_INCREMENTAL", "0")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_MANIFEST_DIR")
        .env_remove("LOGOSCORE_CONFIG_DIR")
        .env_remove("LOGOSCORE_TOKEN")
        .env_remove("LOGOS_PKG_DIR")
        .env_remove("LOGOS_PKG_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn the_module_authoring_tutorial_runs_as_written() {
    let doc = std::fs::read_to_string(workspace().join("docs/module-authoring.md")).unwrap();
    let steps = steps(&doc);
    assert!(
        steps.iter().filter(|s| matches!(s, Step::Run(_))).count() >= 5,
        "{steps:#?}"
    );
    let home = tempfile::Builder::new()
        .prefix("logos-tutorial-")
        .tempdir()
        .unwrap();
    let mut cwd: PathBuf = home.path().join("work");
    std::fs::create_dir_all(&cwd).unwrap();
    let state = home.path().join("cwd");
    let mut background: Vec<Background> = Vec::new();
    let mut last_output = String::new();
    let mut mark = 0;
    for step in &steps {
        let started = Instant::now();
        match step {
            Step::Run(block) => {
                mark = background.last().map_or(0, |b| b.text().len());
                let script = format!("set -euo pipefail\ncd \"$1\"\n{block}pwd > \"$2\"\n");
                let mut cmd = bash(home.path(), &script, &[&cwd, &state]);
                let mut child = cmd.spawn().unwrap();
                let output = Arc::new(Mutex::new(String::new()));
                let readers = [
                    collect(child.stdout.take().unwrap(), Arc::clone(&output)),
                    collect(child.stderr.take().unwrap(), Arc::clone(&output)),
                ];
                let mut status = None;
                wait_for(&format!("the block\n{block}"), BLOCK, || {
                    status = child.try_wait().unwrap();
                    status.is_some()
                });
                // The readers end when the pipes close (a command the block left running in
                // the background would hold them: the tutorial has none).
                for r in readers {
                    r.join().unwrap();
                }
                last_output = output.lock().unwrap().clone();
                let status = status.unwrap();
                assert!(
                    status.success(),
                    "the block\n{block}failed ({status}):\n{last_output}\n--- background output\n{}",
                    background.last().map(Background::text).unwrap_or_default()
                );
                cwd = PathBuf::from(std::fs::read_to_string(&state).unwrap().trim_end());
            }
            Step::Background(block) => {
                let command = block.trim();
                assert!(!command.contains('\n'), "one command per background block");
                mark = 0;
                let script = format!("cd \"$1\" && exec {command}");
                let mut cmd = bash(home.path(), &script, &[&cwd]);
                cmd.process_group(0);
                let mut child = cmd.spawn().unwrap();
                let output = Arc::new(Mutex::new(String::new()));
                // Detached: they end with the command.
                let _ = collect(child.stdout.take().unwrap(), Arc::clone(&output));
                let _ = collect(child.stderr.take().unwrap(), Arc::clone(&output));
                background.push(Background { child, output });
            }
            Step::Wait(text) => {
                let bg = background
                    .last_mut()
                    .expect("a wait needs a background command");
                let output = Arc::clone(&bg.output);
                let since = mark;
                let mut exited = None;
                let child = &mut bg.child;
                wait_for(
                    &format!("{text:?} from the background command"),
                    WAIT,
                    || {
                        let out = output.lock().unwrap();
                        if out.get(since..).is_some_and(|o| o.contains(text.as_str())) {
                            return true;
                        }
                        exited = child.try_wait().ok().flatten();
                        assert!(
                            exited.is_none(),
                            "the background command exited ({exited:?}) before printing {text:?}:\n{out}"
                        );
                        false
                    },
                );
            }
            Step::Expect(text) => {
                assert!(
                    last_output.contains(text.as_str()),
                    "expected {text:?} in:\n{last_output}"
                );
            }
            Step::Stop => {
                let mut bg = background.pop().expect("stop needs a background command");
                bg.signal_group(rustix::process::Signal::INT);
                let status = bg.wait(Duration::from_secs(60));
                assert!(
                    status.is_some_and(|s| s.success()),
                    "the background command did not stop cleanly on Ctrl-C ({status:?}):\n{}",
                    bg.text()
                );
            }
        }
        println!(
            "tutorial step {step:?}: {} ms",
            started.elapsed().as_millis()
        );
    }
    // Every background command has ended (`logoscore stop`), or ends now.
    for mut bg in background {
        if bg.wait(Duration::from_secs(60)).is_none() {
            panic!("a background command still runs:\n{}", bg.text());
        }
    }
}

#[test]
fn the_directives_parse() {
    let doc = "x\n<!-- tutorial: begin -->\n```sh tutorial\na\nb\n```\n<!-- tutorial: expect \"hi\" -->\n```sh\nnot run\n```\n```sh tutorial background\nserve\n```\n<!-- tutorial: wait \"up\" -->\n<!-- tutorial: stop -->\n<!-- tutorial: end -->\n```sh tutorial\nafter\n```\n";
    assert_eq!(
        steps(doc),
        vec![
            Step::Run("a\nb\n".into()),
            Step::Expect("hi".into()),
            Step::Background("serve\n".into()),
            Step::Wait("up".into()),
            Step::Stop,
        ]
    );
}
