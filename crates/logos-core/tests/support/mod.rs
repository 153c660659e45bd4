//! Shared by the integration tests: a fresh temp dir per test holding a modules dir, a runtime
//! dir and a data dir; example modules staged from the cargo target dir; helpers to write
//! hand-made (bad, scripted or switchable) modules; signals and a collector of `core` events
//! for supervision tests; and a guard that kills every process the test started
//! and removes the temp dir, even when the test fails.
//!
//! The modules and `logos_host` must have been built (`cargo build --workspace`), which the
//! README's test command does first.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use futures::FutureExt;
use logos_core::{Builder, Core, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[allow(unused_imports)] // each test binary uses a different subset
pub use logos_testkit::{alive, target_dir, workspace};

/// One test's private world.
pub struct World {
    pub dir: tempfile::TempDir,
    pub modules: PathBuf,
    pub runtime: PathBuf,
    pub data: PathBuf,
    core: Option<Core>,
}

impl World {
    pub fn new() -> World {
        // `LOGOS_TEST_LOG=debug cargo test …` shows the core's and the modules' logs.
        if let Ok(filter) = std::env::var("LOGOS_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let dir = tempfile::Builder::new()
            .prefix("logos-test-")
            .tempdir()
            .expect("temp dir");
        let modules = dir.path().join("modules");
        std::fs::create_dir_all(&modules).expect("modules dir");
        World {
            runtime: dir.path().join("run"),
            data: dir.path().join("data"),
            modules,
            dir,
            core: None,
        }
    }

    /// Stages an example module from `modules/` (see `logos_testkit::stage_module`).
    pub fn stage(&self, name: &str) -> &Self {
        logos_testkit::stage_module(&self.modules, name);
        self
    }

    /// Stages a module that needs no build (e.g. `modules/pyecho`); the same as `stage`.
    pub fn stage_dir(&self, name: &str) -> &Self {
        self.stage(name)
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
    pub fn script_module(&self, name: &str, deps: &str, script: &str) {
        logos_testkit::write_script_module(&self.modules, name, deps, script);
    }

    /// Stages example module `name` as an executable module: a shell script that, while the
    /// returned flag file exists, writes `refusing to start: <flag contents>` to stderr and
    /// exits 7 (a module that crashes at start), and otherwise execs `logos_host` with the
    /// built library. `restart` replaces the metadata's restart policy. Removing the flag is
    /// "fixing" the module.
    pub fn switchable(&self, name: &str, restart: &str) -> PathBuf {
        self.stage(name);
        let dir = self.modules.join(name);
        let meta = std::fs::read_to_string(dir.join("metadata.json")).expect("metadata.json");
        let mut json: serde_json::Value = serde_json::from_str(&meta).expect("metadata json");
        // Through the link staging made in the module dir: a confined module reads its own
        // dir (and what the operator's links there point to), not the target dir.
        let lib = dir.join(json["main"].as_str().expect("main"));
        json["main"] = "run.sh".into();
        json["restart"] = restart.into();
        std::fs::write(dir.join("metadata.json"), json.to_string()).expect("write metadata");
        // In the module dir, which the module may read (it cannot read the rest of the
        // test's temp dir).
        let flag = dir.join("broken");
        let script = format!(
            "#!/bin/sh\nif [ -e '{flag}' ]; then echo \"refusing to start: $(cat '{flag}')\" >&2; exit 7; fi\nexec '{host}' --module '{lib}' --name '{name}'\n",
            flag = flag.display(),
            host = target_dir().join("logos_host").display(),
            lib = lib.display(),
        );
        let path = dir.join("run.sh");
        std::fs::write(&path, script).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        flag
    }

    /// A builder pointing at this world's dirs and the built `logos_host`.
    pub fn builder(&self) -> Builder {
        Core::builder()
            .modules_dir(&self.modules)
            .runtime_dir(&self.runtime)
            .data_dir(&self.data)
            .host_binary(target_dir().join("logos_host"))
            .stop_grace(Duration::from_secs(2))
            .module_log(std::env::var("LOGOS_TEST_MODULE_LOG").unwrap_or_else(|_| "info".into()))
    }

    /// Starts a core with default settings.
    pub async fn start(&mut self) -> Core {
        let b = self.builder();
        self.start_with(b).await
    }

    pub async fn start_with(&mut self, b: Builder) -> Core {
        let core = b.build().expect("build").start().await.expect("start");
        self.core = Some(core.clone());
        core
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Tests shut down themselves; this is the net for a failing one. Signals are sent with
        // kill(2) directly: procps-ng 4.0.2's `kill -KILL -<pgid>` misreads some process group
        // ids and signals -1 (every process of the user) instead.
        if let Some(core) = self.core.take() {
            for m in core.modules() {
                if let Some(pid) = m.pid {
                    signal_group(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// Polls `cond` every 10 ms until it holds or `within` passes.
pub async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Calls `probe.block(ms)` in a task and returns once the call runs (probe's event loop is
/// blocked from then on); the task ends with the call.
pub async fn probe_blocked(
    w: &World,
    core: &Core,
    ms: i64,
) -> tokio::task::JoinHandle<Result<Value, logos_core::Error>> {
    // The marker probe writes in its data dir when `block` starts (`probe::BLOCKING_MARKER`).
    let marker = w.data.join("probe").join("blocking");
    let _ = std::fs::remove_file(&marker);
    let call = tokio::spawn({
        let core = core.clone();
        async move { core.call("probe", "block", vec![int(ms)]).await }
    });
    wait_for("probe to start blocking", Duration::from_secs(30), || {
        marker.exists()
    })
    .await;
    call
}

/// Waits until `name` serves `n` calls at once (its `$stats`), so a test acts while they run.
pub async fn wait_in_flight(core: &Core, name: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let busy = core
            .stats()
            .await
            .into_iter()
            .find(|m| m.name == name)
            .and_then(|m| m.in_flight);
        if busy == Some(n) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never served {n} calls at once (last: {busy:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `sig` to process `pid` (not its group). Never to 0, 1 or a negative pid, which
/// would reach a group or every process.
pub fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid)
        && pid > 1
    {
        // SAFETY: kill(2) has no memory-safety preconditions.
        let _ = unsafe { libc::kill(pid, sig) };
    }
}

/// Sends `sig` to the process group led by `pid` (a module and what it started).
pub fn signal_group(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid)
        && pid > 1
    {
        // SAFETY: kill(2) has no memory-safety preconditions.
        let _ = unsafe { libc::kill(-pid, sig) };
    }
}

/// Subscribes to every `core` event and collects them, for assertions on what the core told.
pub struct CoreEvents {
    sub: logos_core::Subscription,
    pub seen: Vec<(String, Vec<Value>)>,
}

impl CoreEvents {
    pub fn new(core: &Core) -> CoreEvents {
        CoreEvents {
            sub: core.subscribe("core", "").expect("subscribe core"),
            seen: Vec::new(),
        }
    }

    /// Waits until an event `event` whose data satisfies `pred` arrives (or was seen), and
    /// returns its data.
    pub async fn wait(
        &mut self,
        event: &str,
        within: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        if let Some((_, d)) = self.seen.iter().find(|(e, d)| e == event && pred(d)) {
            return d.clone();
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.sub.recv()).await {
                Ok(Some(logos_core::Notification::Event { event: e, data, .. })) => {
                    self.seen.push((e.clone(), data.clone()));
                    if e == event && pred(&data) {
                        return data;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => panic!("the core stopped while waiting for {event}"),
                Err(_) => panic!(
                    "no {event} within {within:?}; seen: {:?}",
                    self.seen
                        .iter()
                        .map(|(e, d)| format!("{e}{d:?}"))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Fails if an event `event` whose data satisfies `pred` arrives within `within` from now
    /// (what is queued already happened before, and is only recorded): for a module that must
    /// stay as it is (no restart, no other state) over that stretch.
    pub async fn none_within(
        &mut self,
        event: &str,
        within: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) {
        self.all(event);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.sub.recv()).await {
                Ok(Some(logos_core::Notification::Event { event: e, data, .. })) => {
                    assert!(
                        !(e == event && pred(&data)),
                        "unexpected {e}{data:?} within {within:?}"
                    );
                    self.seen.push((e, data));
                }
                Ok(Some(_)) => {}
                Ok(None) => panic!("the core stopped while watching for {event}"),
                Err(_) => return,
            }
        }
    }

    /// Every event `event` seen so far, after draining what is queued.
    pub fn all(&mut self, event: &str) -> Vec<Vec<Value>> {
        // Unconstrained: tokio's cooperative budget would otherwise report an empty queue
        // after 128 receives.
        while let Some(Some(n)) = tokio::task::unconstrained(self.sub.recv()).now_or_never() {
            if let logos_core::Notification::Event { event: e, data, .. } = n {
                self.seen.push((e, data));
            }
        }
        self.seen
            .iter()
            .filter(|(e, _)| e == event)
            .map(|(_, d)| d.clone())
            .collect()
    }
}

pub fn int(v: i64) -> Value {
    Value::from(v)
}

pub fn text(s: &str) -> Value {
    Value::from(s)
}
