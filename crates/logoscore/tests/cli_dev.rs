//! `logoscore dev` (issue 15), with real processes all the way: a project made by
//! `logoscore new`, `logoscore dev` run in it (cargo, a core, `logos_host`), a client calling
//! the module in a loop (`logoscore call`, one process per call) while the test edits the
//! method's source, and the new answer awaited with a deadline. Every call must succeed.
//!
//! No timing is asserted (the machine is shared); the edit→live figures are printed (run with
//! `--nocapture` to see them). Rust projects build in the target dir `cli_new.rs` uses
//! (`target/scaffold`, CARGO_INCREMENTAL=0 like it, so both share one warm cache and the SDK
//! is compiled once); each test uses its own module name, so their libraries never collide.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{EXIT, Proc, World, alive, target_dir, wait_for};

/// The first build of a Rust project may compile the SDK and its dependencies.
const FIRST_BUILD: Duration = Duration::from_secs(20 * 60);
/// An edit served (a rebuild of the module's own crate, or a copy for Python), on a busy machine.
const EDIT: Duration = Duration::from_secs(5 * 60);

/// The warm target dir of generated Rust projects.
fn scaffold_target() -> PathBuf {
    target_dir().parent().unwrap().join("scaffold")
}

/// `logoscore new ARGS…` run in `dir`.
fn new_project(w: &World, dir: &Path, args: &[&str]) {
    let mut cmd = w.command();
    cmd.arg("new").args(args).current_dir(dir);
    let out = support::finish(cmd, support::COMMAND);
    out.ok();
}

/// A running `logoscore --json dev`, its stdout read as one JSON event per line.
struct Dev {
    proc: Proc,
    /// Events read so far.
    seen: Vec<serde_json::Value>,
}

impl Dev {
    /// `logoscore --runtime-dir <w> --json dev [ARGS…]` in `project`, with the warm target dir
    /// and no default modules dir.
    fn start(w: &World, project: &Path, args: &[&str]) -> Dev {
        let mut cmd = dev_command(w, project);
        cmd.arg("--json").arg("dev").args(args);
        if !args.contains(&"--attach") {
            cmd.arg("--data-dir").arg(&w.data);
        }
        Dev {
            proc: Proc::spawn(&mut cmd),
            seen: Vec::new(),
        }
    }

    /// The next event named `event` (others are kept in `seen`); panics at the deadline.
    #[track_caller]
    fn wait(&mut self, event: &str, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(line) = self.proc.next_line(left) else {
                panic!(
                    "no {event:?} from logoscore dev within {within:?}; events so far: {:#?}\n--- stderr\n{}",
                    self.seen,
                    self.proc.stderr_text()
                );
            };
            let doc: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("dev printed a line that is not JSON ({e}): {line}"));
            self.seen.push(doc.clone());
            if doc["event"] == event {
                return doc;
            }
        }
    }

    /// SIGTERM, then the exit status and the `stopped` event.
    fn stop(&mut self) -> serde_json::Value {
        self.proc.signal(rustix::process::Signal::TERM);
        let stopped = self.wait("stopped", EXIT);
        let status = self
            .proc
            .wait(EXIT)
            .unwrap_or_else(|| panic!("dev did not exit\n{}", self.proc.stderr_text()));
        assert!(status.success(), "{status:?}\n{}", self.proc.stderr_text());
        stopped
    }
}

/// `logoscore --runtime-dir <w>` to run in `project`: the scaffold target dir, and a data
/// home of the test's own (so no default modules dir of the machine is used).
fn dev_command(w: &World, project: &Path) -> Command {
    let mut cmd = w.command();
    cmd.current_dir(project)
        .env("CARGO_TARGET_DIR", scaffold_target())
        .env("CARGO_INCREMENTAL", "0")
        .env("XDG_DATA_HOME", w.dir.path().join("xdg"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_MANIFEST_DIR");
    cmd
}

/// Every answer of a [`Caller`], with when it came: the result, or the failure.
type Answers = Arc<Mutex<Vec<(Instant, Result<String, String>)>>>;

/// A client calling `module.greet("Ada")` in a loop, one `logoscore call` per call, until
/// stopped; every answer is kept with when it came.
struct Caller {
    stop: Arc<AtomicBool>,
    answers: Answers,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Caller {
    fn start(w: &World, module: &str) -> Caller {
        let stop = Arc::new(AtomicBool::new(false));
        let answers: Answers = Arc::new(Mutex::new(Vec::new()));
        let mut base = w.command();
        base.args(["--json", "call", module, "greet", "Ada"]);
        let (s, a) = (Arc::clone(&stop), Arc::clone(&answers));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let mut cmd = Command::new(base.get_program());
                cmd.args(base.get_args()).stdin(std::process::Stdio::null());
                for (k, v) in base.get_envs() {
                    match v {
                        Some(v) => cmd.env(k, v),
                        None => cmd.env_remove(k),
                    };
                }
                let out = support::finish(cmd, support::COMMAND);
                let answer = if out.code == Some(0) {
                    let doc: serde_json::Value =
                        serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null);
                    match doc["result"].as_str() {
                        Some(r) => Ok(r.to_owned()),
                        None => Err(format!("unexpected answer: {}", out.stdout)),
                    }
                } else {
                    Err(format!("exit {:?}: {}", out.code, out.stderr.trim()))
                };
                a.lock().unwrap().push((Instant::now(), answer));
            }
        });
        Caller {
            stop,
            answers,
            thread: Some(thread),
        }
    }

    /// Waits until an answer equal to `want` came after `since`; returns when.
    #[track_caller]
    fn wait_answer(&self, want: &str, since: Instant, within: Duration) -> Instant {
        let mut at = None;
        wait_for(&format!("the answer {want:?}"), within, || {
            at = self
                .answers
                .lock()
                .unwrap()
                .iter()
                .find(|(t, a)| *t >= since && a.as_deref() == Ok(want))
                .map(|(t, _)| *t);
            at.is_some()
        });
        at.unwrap()
    }

    /// Stops the loop; every answer.
    fn finish(mut self) -> Vec<Result<String, String>> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let answers = self.answers.lock().unwrap();
        answers.iter().map(|(_, a)| a.clone()).collect()
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Replaces `from` by `to` in `file` (which must contain it).
fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", file.display());
    std::fs::write(file, text.replace(from, to)).unwrap();
}

/// Asserts no call failed and every answer is one of `allowed`.
#[track_caller]
fn assert_no_failed_call(answers: &[Result<String, String>], allowed: &[&str]) {
    let failed: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed during the swaps: {failed:#?}",
        failed.len(),
        answers.len()
    );
    for a in answers.iter().flatten() {
        assert!(allowed.contains(&a.as_str()), "unexpected answer {a:?}");
    }
}

/// Edits the method, waits for the new answer, and returns edit→live plus dev's figures.
fn swap_once(
    dev: &mut Dev,
    caller: &Caller,
    file: &Path,
    from: &str,
    to: &str,
    answer: &str,
) -> (Duration, serde_json::Value) {
    let edited = Instant::now();
    edit(file, from, to);
    let live = caller.wait_answer(answer, edited, EDIT);
    let swapped = dev.wait("swapped", EDIT);
    (live.duration_since(edited), swapped)
}

#[test]
fn issue_15_rust_new_then_dev_swaps_an_edit_with_no_failed_call() {
    let w = World::new();
    new_project(&w, w.dir.path(), &["hello"]);
    let project = w.dir.path().join("hello");
    let mut dev = Dev::start(&w, &project, &[]);
    let ready = dev.wait("ready", FIRST_BUILD);
    let first_pid = ready["pid"].as_u64().unwrap() as u32;
    assert!(alive(first_pid));

    let caller = Caller::start(&w, "hello");
    caller.wait_answer("hello, Ada", Instant::now() - EDIT, EDIT);
    let lib = project.join("src/lib.rs");
    let mut figures = Vec::new();
    for (from, to, answer) in [
        (
            "format!(\"hello, {name}\")",
            "format!(\"howdy, {name}\")",
            "howdy, Ada",
        ),
        (
            "format!(\"howdy, {name}\")",
            "format!(\"hi there, {name}\")",
            "hi there, Ada",
        ),
    ] {
        figures.push(swap_once(&mut dev, &caller, &lib, from, to, answer));
    }
    let answers = caller.finish();
    assert_no_failed_call(&answers, &["hello, Ada", "howdy, Ada", "hi there, Ada"]);
    for (live, swapped) in &figures {
        println!(
            "logoscore dev, Rust: edit → live {} ms (build {} ms, swap {} ms); {} calls, 0 failed",
            live.as_millis(),
            swapped["buildMs"],
            swapped["swapMs"],
            answers.len()
        );
    }
    // Swapped for real: a new process each time, the old one gone.
    let last = figures[1].1["pid"].as_u64().unwrap() as u32;
    assert_ne!(last, first_pid);
    wait_for("the first process to exit", EXIT, || !alive(first_pid));

    dev.stop();
    assert!(!alive(last), "the module outlived dev");
    assert!(!w.socket().exists(), "dev's core left its socket");
}

#[test]
fn a_build_error_is_shown_and_the_old_version_keeps_serving() {
    let w = World::new();
    new_project(&w, w.dir.path(), &["oops"]);
    let project = w.dir.path().join("oops");
    let mut dev = Dev::start(&w, &project, &[]);
    let pid = dev.wait("ready", FIRST_BUILD)["pid"].as_u64().unwrap();

    let lib = project.join("src/lib.rs");
    edit(
        &lib,
        "format!(\"hello, {name}\")",
        "format!(\"hello, {nmae}\")",
    );
    let failed = dev.wait("buildFailed", EDIT);
    assert_eq!(failed["serving"].as_u64(), Some(pid), "{failed}");
    let output = failed["output"].as_str().unwrap();
    assert!(
        output.contains("error") && output.contains("nmae"),
        "{output}"
    );
    // The compiler's output is on stderr for the person at the terminal.
    dev.proc.wait_stderr("nmae", EXIT);
    // The old version still answers, from the same process.
    assert_eq!(w.call_result("oops", &["greet", "Ada"]), "hello, Ada");
    assert_eq!(w.pids(), vec![("oops".to_owned(), pid as u32)]);

    // The next good edit swaps again.
    edit(
        &lib,
        "format!(\"hello, {nmae}\")",
        "format!(\"fixed, {name}\")",
    );
    let swapped = dev.wait("swapped", EDIT);
    assert_eq!(swapped["oldPid"].as_u64(), Some(pid));
    assert_eq!(w.call_result("oops", &["greet", "Ada"]), "fixed, Ada");
    dev.stop();
}

#[test]
fn issue_15_python_new_then_dev_swaps_an_edit_with_no_failed_call() {
    let w = World::new();
    new_project(&w, w.dir.path(), &["pyhello", "--lang", "python"]);
    let project = w.dir.path().join("pyhello");
    let mut dev = Dev::start(&w, &project, &[]);
    dev.wait("ready", EDIT);
    let caller = Caller::start(&w, "pyhello");
    caller.wait_answer("hello, Ada", Instant::now() - EDIT, EDIT);
    let module = project.join("module.py");
    let mut figures = Vec::new();
    for (from, to, answer) in [
        ("f\"hello, {name}\"", "f\"howdy, {name}\"", "howdy, Ada"),
        (
            "f\"howdy, {name}\"",
            "f\"hi there, {name}\"",
            "hi there, Ada",
        ),
    ] {
        figures.push(swap_once(&mut dev, &caller, &module, from, to, answer));
    }
    let answers = caller.finish();
    assert_no_failed_call(&answers, &["hello, Ada", "howdy, Ada", "hi there, Ada"]);
    for (live, swapped) in &figures {
        println!(
            "logoscore dev, Python: edit → live {} ms (stage {} ms, swap {} ms); {} calls, 0 failed",
            live.as_millis(),
            swapped["buildMs"],
            swapped["swapMs"],
            answers.len()
        );
    }
    // A Python error at import is a failed start: the old version keeps serving.
    edit(
        &module,
        "from logos_module import",
        "import no_such_module\nfrom logos_module import",
    );
    let failed = dev.wait("swapFailed", EDIT);
    assert!(
        failed["error"].as_str().unwrap().contains("no_such_module"),
        "{failed}"
    );
    assert_eq!(w.call_result("pyhello", &["greet", "Ada"]), "hi there, Ada");
    // The project dir is never written (no __pycache__, no staged copies).
    let mut names: Vec<String> = std::fs::read_dir(&project)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".gitignore",
            "README.md",
            "logos_module",
            "metadata.json",
            "module.py",
            "test_module.py"
        ]
    );
    dev.stop();
}

#[test]
fn dev_attaches_to_a_running_core_and_unloads_the_module_when_it_ends() {
    let w = World::new();
    let daemon = w.daemon(&[]);
    let project = w.dir.path().join("attached");
    new_project(&w, w.dir.path(), &["attached", "--lang", "python"]);
    let mut dev = Dev::start(&w, &project, &["--attach"]);
    let start = dev.wait("starting", EDIT);
    assert_eq!(start["attached"], true, "{start}");
    dev.wait("ready", EDIT);
    assert_eq!(w.call_result("attached", &["greet", "Ada"]), "hello, Ada");
    edit(
        &project.join("module.py"),
        "f\"hello, {name}\"",
        "f\"hey, {name}\"",
    );
    dev.wait("swapped", EDIT);
    assert_eq!(w.call_result("attached", &["greet", "Ada"]), "hey, Ada");
    dev.stop();
    // The core still runs; the module (whose staged files went with dev) is unloaded.
    let list = w.cli_json(&["list", "--loaded"]);
    assert_eq!(list, serde_json::json!([]), "{list}");
    assert!(alive(daemon.proc.pid()));
}

#[test]
fn dev_refuses_what_it_cannot_serve_with_a_clear_error() {
    let w = World::new();
    let run = |dir: &Path, args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = dev_command(&w, dir);
        cmd.arg("dev").args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        support::finish(cmd, support::COMMAND)
    };
    // Not a module project.
    let empty = w.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run(&empty, &[], &[]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("not a module project") && out.stderr.contains("logoscore new"),
        "{}",
        out.stderr
    );
    let out = run(&empty, &["no/such/dir"], &[]);
    out.expect_code(1);
    assert!(out.stderr.contains("not a directory"), "{}", out.stderr);

    // Bad metadata: syntax, and a name that is not one.
    let bad = w.dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("metadata.json"), "{\"name\": \"bad\",").unwrap();
    let out = run(&bad, &[], &[]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("metadata.json") && out.stderr.contains("invalid JSON"),
        "{}",
        out.stderr
    );
    std::fs::write(
        bad.join("metadata.json"),
        r#"{"name": "../up", "version": "1.0.0"}"#,
    )
    .unwrap();
    let out = run(&bad, &[], &[]);
    out.expect_code(1);
    assert!(out.stderr.contains("field \"name\""), "{}", out.stderr);

    // A Rust project with no cargo to build it.
    let rust = w.dir.path().join("nocargo");
    new_project(&w, w.dir.path(), &["nocargo"]);
    let out = run(&rust, &[], &[("CARGO", "/nonexistent/cargo")]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("/nonexistent/cargo") && out.stderr.contains("install Rust"),
        "{}",
        out.stderr
    );

    // --attach with no core there.
    let py = w.dir.path().join("lonely");
    new_project(&w, w.dir.path(), &["lonely", "--lang", "python"]);
    let out = run(&py, &["--attach"], &[]);
    out.expect_code(2);
    assert!(out.stderr.contains("no core is running"), "{}", out.stderr);

    // A bad edit of the metadata while serving is refused; the old version keeps serving.
    let mut dev = Dev::start(&w, &py, &[]);
    let pid = dev.wait("ready", EDIT)["pid"].as_u64();
    edit(
        &py.join("metadata.json"),
        "\"version\": \"0.1.0\"",
        "\"version\": \"one\"",
    );
    let refused = dev.wait("metadataFailed", EDIT);
    let why = refused["error"].as_str().unwrap();
    assert!(
        why.contains("field \"version\"")
            && why.contains(&py.join("metadata.json").display().to_string()),
        "{why}"
    );
    assert_eq!(refused["serving"].as_u64(), pid);
    assert_eq!(w.call_result("lonely", &["greet", "Ada"]), "hello, Ada");
    dev.stop();
}

#[test]
fn dev_ends_with_its_core_and_with_an_attached_core_that_goes_away() {
    let w = World::new();
    new_project(&w, w.dir.path(), &["ender", "--lang", "python"]);
    let project = w.dir.path().join("ender");

    // `logoscore stop` stops dev's own core: dev ends cleanly, and so does the module.
    let mut dev = Dev::start(&w, &project, &[]);
    let pid = dev.wait("ready", EDIT)["pid"].as_u64().unwrap() as u32;
    w.cli(&["stop"]).ok();
    let stopped = dev.wait("stopped", EXIT);
    assert_eq!(stopped["why"], "the core was stopped", "{stopped}");
    let status = dev.proc.wait(EXIT).expect("dev exits");
    assert!(status.success(), "{status:?}\n{}", dev.proc.stderr_text());
    assert!(!alive(pid));

    // An attached core that stops: dev says so and exits 2 (cannot reach the core).
    let mut daemon = w.daemon(&[]);
    let mut dev = Dev::start(&w, &project, &["--attach"]);
    dev.wait("ready", EDIT);
    w.cli(&["stop"]).ok();
    daemon.wait_exit(EXIT);
    dev.wait("stopped", EXIT);
    let status = dev.proc.wait(EXIT).expect("dev exits");
    assert_eq!(status.code(), Some(2), "{}", dev.proc.stderr_text());
    assert!(
        dev.proc
            .stderr_text()
            .contains("lost the connection to the core"),
        "{}",
        dev.proc.stderr_text()
    );
}

#[test]
fn dev_loads_the_dependencies_from_the_modules_dirs_and_reloads_on_a_metadata_edit() {
    let w = World::new();
    w.stage("calc");
    new_project(&w, w.dir.path(), &["needy", "--lang", "python"]);
    let project = w.dir.path().join("needy");
    let metadata = project.join("metadata.json");
    edit(
        &metadata,
        "\"dependencies\": {}",
        "\"dependencies\": {\"calc\": \"^1\"}",
    );
    let modules = w.modules.to_str().unwrap();

    // Without the dir that holds calc, the load fails and says why; nothing is served.
    let mut dev = Dev::start(&w, &project, &[]);
    let failed = dev.wait("loadFailed", EDIT);
    assert!(
        failed["error"].as_str().unwrap().contains("calc"),
        "{failed}"
    );
    dev.stop();

    let mut dev = Dev::start(&w, &project, &["-m", modules]);
    let pid = dev.wait("ready", EDIT)["pid"].as_u64();
    let mut loaded: Vec<String> = w
        .cli_json(&["list", "--loaded"])
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    loaded.sort();
    assert_eq!(loaded, ["calc", "needy"]);
    // A metadata edit is served by a cold reload (a hot swap keeps the loaded metadata).
    edit(&metadata, "greets, and", "greets warmly, and");
    let reloaded = dev.wait("reloaded", EDIT);
    assert_eq!(reloaded["oldPid"].as_u64(), pid, "{reloaded}");
    let info = w.cli_json(&["info", "needy"]).to_string();
    assert!(info.contains("greets warmly"), "{info}");
    dev.stop();
    assert!(!w.socket().exists());
}
