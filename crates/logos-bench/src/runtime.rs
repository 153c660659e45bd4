//! The rows measured through the logos runtime, each beside its baseline.
//!
//! Owns the benchmark world: a temp dir with generated module dirs (every one a [`EXE_NAME`]
//! symlink to the module's program, see `program.rs`), one [`Core`] over it, and the
//! measurement of each row. Module → module figures are taken inside the calling module; the
//! core only starts the measurement and collects the result. Never prints: rows go to
//! `report.rs`.

use crate::alone;
use crate::baseline;
use crate::program::ModuleProgram;
use crate::report::{Figure, Row, Status, Unit};
use crate::stats::{self, Summary};
use anyhow::{Context as _, Result, anyhow, bail};
use benchmod::{EXE_NAME, Heard};
use logos_core::{Builder, Core, Notification, RestartSettings, State, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Backoff configured for the crash row (every crash is the first in its window).
pub const BACKOFF: Duration = Duration::from_millis(10);
/// Payload of the call rows.
const PAYLOAD: u64 = 64;
/// Calls kept in flight by the pipelined row (the callee admits 1024 per connection).
const WINDOW: u64 = 512;
/// Events emitted between two waits for the subscribers' sockets (their queues hold 1024).
const BURST: u64 = 500;

/// How much of everything to do: the full run, or `--quick` smoke sizes.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    /// Alternating rounds of baseline and runtime for the comparative rows.
    pub rounds: usize,
    pub rtt_calls: u64,
    pub pipelined_calls: u64,
    pub stream_bytes: u64,
    pub fanout_subscribers: Vec<usize>,
    pub fanout_events: u64,
    pub starts: usize,
    pub load_sizes: Vec<usize>,
    pub crashes: usize,
    pub api_calls: u64,
    /// Payload sizes of the round-trip sweep, and calls per size and round.
    pub payload_sizes: Vec<u64>,
    pub payload_calls: u64,
}

impl Plan {
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                rounds: 1,
                rtt_calls: 300,
                pipelined_calls: 3_000,
                stream_bytes: 4 << 20,
                fanout_subscribers: vec![1, 8, 32],
                fanout_events: 300,
                starts: 4,
                load_sizes: vec![5, 10],
                crashes: 3,
                api_calls: 300,
                payload_sizes: vec![1024, 64 * 1024],
                payload_calls: 100,
            }
        } else {
            Plan {
                quick,
                rounds: 5,
                rtt_calls: 4_000,
                pipelined_calls: 200_000,
                stream_bytes: 64 << 20,
                fanout_subscribers: vec![1, 8, 32],
                fanout_events: 20_000,
                starts: 40,
                load_sizes: vec![10, 25, 50, 100],
                crashes: 20,
                api_calls: 20_000,
                payload_sizes: vec![1024, 16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024],
                payload_calls: 1_000,
            }
        }
    }

    fn largest_load(&self) -> usize {
        self.load_sizes.iter().copied().max().unwrap_or(0)
    }

    fn subscribers(&self) -> usize {
        self.fanout_subscribers.iter().copied().max().unwrap_or(0)
    }
}

/// The library module's file and the version its metadata gives (staged in `World::create`,
/// started without the core in `World::program`).
const PROBE_LIB: &str = "libprobe.so";
const PROBE_VERSION: &str = "1.0.0";
/// The same module as its own program (`modules/probe/src/main.rs`), and the module name it
/// is staged under: the executable module of the `start` row, when built beside this binary.
const PROBE_EXE: &str = "probe";
const PROBE_EXE_MODULE: &str = "probe-exe";

/// One generated module dir.
struct Spec {
    name: String,
    deps: Vec<String>,
    permissions: Vec<String>,
    restart: &'static str,
}

impl Spec {
    fn new(name: impl Into<String>) -> Spec {
        Spec {
            name: name.into(),
            deps: Vec::new(),
            permissions: Vec::new(),
            restart: "never",
        }
    }

    fn write(&self, modules: &Path, exe: &Path) -> Result<()> {
        let dir = modules.join(&self.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let deps: serde_json::Map<String, serde_json::Value> = self
            .deps
            .iter()
            .map(|d| (d.clone(), serde_json::Value::from("^1")))
            .collect();
        let meta = serde_json::json!({
            "name": self.name,
            "version": "1.0.0",
            "description": "logos-bench module",
            "author": "logos-bench",
            "type": "core",
            "dependencies": deps,
            "capabilities": [],
            "main": EXE_NAME,
            "restart": self.restart,
            "permissions": self.permissions,
        });
        std::fs::write(dir.join("metadata.json"), meta.to_string())?;
        std::os::unix::fs::symlink(exe, dir.join(EXE_NAME))
            .with_context(|| format!("linking {} into {}", exe.display(), dir.display()))?;
        Ok(())
    }
}

fn chain(i: usize) -> String {
    format!("chain{i:03}")
}

fn leaf(i: usize) -> String {
    format!("leaf{i:03}")
}

fn fan(size: usize) -> String {
    format!("fan{size:03}")
}

fn sub(i: usize) -> String {
    format!("sub{i:02}")
}

/// The temp dir, its modules and the core serving them; everything is stopped and removed
/// on [`World::close`] (and, as a net, when the temp dir drops).
pub struct World {
    pub core: Core,
    /// `logos_host`, when it and the `probe` library are built beside this executable and
    /// `probe` is staged: the start row also measures a library module.
    host: Option<PathBuf>,
    /// The `probe` program is built beside this executable and staged as [`PROBE_EXE_MODULE`]:
    /// the `start` row measures it, a small executable module as authors build theirs, and
    /// `start_bench_binary` this benchmark's own binary run as a module. It holds how the
    /// program is linked, in words for the `start` row's note.
    probe_exe: Option<&'static str>,
    /// `libprobe.so` or the `probe` program links libm: built with this benchmark's features,
    /// not as a module is (`probe_build.rs`); the rows that run them say so.
    probe_combined: bool,
    /// A builder for a second core over the same modules with spare hosts off
    /// (docs/architecture.md, "Spare hosts"), when `logos_host` is built: the
    /// `start_host_cold` row, so the start of a library module without a spare stays in view
    /// beside `start_host`. Started only for that row, so no other row pays its idle cost.
    cold: Option<Builder>,
    /// The `contexts` executable is built beside this one and staged (the
    /// `contexts_module` row).
    pub contexts: bool,
    /// The program every generated module but `bms` runs (the `rss` row says which).
    program: ModuleProgram,
    dir: tempfile::TempDir,
    /// The core's runtime dir (sockets), on a RAM file system when there is one.
    _run: tempfile::TempDir,
}

/// Where runtime dirs live on a real system: `$XDG_RUNTIME_DIR` (a tmpfs under systemd),
/// else `/dev/shm`, else the temp dir. Sockets are created and removed on every module start
/// and stop; on a disk file system that alone can cost as much as the process spawn.
fn runtime_parent() -> PathBuf {
    let writable =
        |d: &Path| std::fs::metadata(d).is_ok_and(|m| m.is_dir() && !m.permissions().readonly());
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
        && writable(&d)
    {
        return d;
    }
    let shm = PathBuf::from("/dev/shm");
    if writable(&shm) {
        return shm;
    }
    std::env::temp_dir()
}

impl World {
    /// Generates every module the plan needs and starts a core over them.
    ///
    /// # Errors
    /// When the files cannot be written or the core does not start.
    pub async fn create(plan: &Plan) -> Result<World> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let dir = tempfile::Builder::new()
            .prefix("logos-bench-")
            .tempdir()
            .context("creating the benchmark's temp dir")?;
        let modules = dir.path().join("modules");
        let program = ModuleProgram::beside(&exe);
        let mut specs = vec![Spec::new("bmb"), Spec::new("publisher")];
        let mut caller = Spec::new("bma");
        caller.permissions.push("bmb".into());
        specs.push(caller);
        let mut crasher = Spec::new("bmc");
        crasher.restart = "always";
        specs.push(crasher);
        for i in 0..plan.subscribers() {
            let mut s = Spec::new(sub(i));
            s.permissions.push("publisher".into());
            specs.push(s);
        }
        let largest = plan.largest_load();
        for i in 0..largest {
            let mut c = Spec::new(chain(i));
            if i > 0 {
                c.deps.push(chain(i - 1));
            }
            specs.push(c);
        }
        for i in 0..largest.saturating_sub(1) {
            specs.push(Spec::new(leaf(i)));
        }
        for &size in &plan.load_sizes {
            let mut root = Spec::new(fan(size));
            root.deps = (0..size.saturating_sub(1)).map(leaf).collect();
            specs.push(root);
        }
        for s in &specs {
            s.write(&modules, &program.path)?;
        }
        // `start_bench_binary`'s module: this whole binary, whichever program the others run.
        Spec::new("bms").write(&modules, &exe)?;
        // The usual kind of module: a library run by `logos_host`, if both are built.
        let built = exe.parent().map(Path::to_path_buf).unwrap_or_default();
        let (host, probe) = (built.join("logos_host"), built.join(PROBE_LIB));
        let host_probe = host.is_file() && probe.is_file();
        let probe_exe = built.join(PROBE_EXE);
        let probe_exe = probe_exe.is_file().then_some(probe_exe);
        let combined = |file: &Path| match crate::probe_build::links_libm(file) {
            Ok(combined) => combined,
            Err(e) => {
                eprintln!(
                    "logos-bench: cannot tell how {} was built ({e})",
                    file.display()
                );
                false
            }
        };
        let probe_combined =
            (host_probe && combined(&probe)) || probe_exe.as_deref().is_some_and(combined);
        if probe_combined {
            eprintln!(
                "logos-bench: warning: {} (said again in the start, start_host, \
                 start_host_cold and rss_host rows)",
                crate::probe_build::COMBINED
            );
        }
        if host_probe {
            let dir = modules.join("probe");
            std::fs::create_dir_all(&dir)?;
            let meta = serde_json::json!({
                "name": "probe", "version": PROBE_VERSION, "main": PROBE_LIB, "restart": "never",
            });
            std::fs::write(dir.join("metadata.json"), meta.to_string())?;
            std::os::unix::fs::symlink(&probe, dir.join(PROBE_LIB))?;
        }
        if let Some(exe) = &probe_exe {
            let dir = modules.join(PROBE_EXE_MODULE);
            std::fs::create_dir_all(&dir)?;
            let meta = serde_json::json!({
                "name": PROBE_EXE_MODULE, "version": PROBE_VERSION, "main": PROBE_EXE,
                "restart": "never",
            });
            std::fs::write(dir.join("metadata.json"), meta.to_string())?;
            std::os::unix::fs::symlink(exe, dir.join(PROBE_EXE))?;
        }
        // The contexts worker module, when built (its metadata says its crate's version).
        let contexts_exe = built.join("contexts");
        let contexts = contexts_exe.is_file();
        if contexts {
            let dir = modules.join("contexts");
            std::fs::create_dir_all(&dir)?;
            let meta = serde_json::json!({
                "name": "contexts", "version": "1.0.0", "main": "contexts", "restart": "never",
            });
            std::fs::write(dir.join("metadata.json"), meta.to_string())?;
            std::os::unix::fs::symlink(&contexts_exe, dir.join("contexts"))?;
        }
        let mut restart = RestartSettings::default();
        restart.initial = BACKOFF;
        restart.max = BACKOFF;
        restart.budget = 1_000_000;
        // Crashes are far apart compared to this, so each one restarts after `initial`.
        restart.window = Duration::from_millis(1);
        let run = tempfile::Builder::new()
            .prefix("logos-bench-run-")
            .tempdir_in(runtime_parent())
            .context("creating the benchmark's runtime dir")?;
        let builder = |name: &str| {
            let mut builder = Core::builder();
            if host_probe {
                builder = builder.host_binary(&host);
            }
            builder
                .modules_dir(&modules)
                .runtime_dir(run.path().join(name))
                .data_dir(dir.path().join(format!("data-{name}")))
                .call_timeout(Duration::from_secs(600))
                .stop_grace(Duration::from_secs(2))
                .module_log(
                    std::env::var("LOGOS_BENCH_MODULE_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .restart(restart)
        };
        let core = builder("logos")
            .build()?
            .start()
            .await
            .context("starting the core")?;
        let cold = host_probe.then(|| builder("cold").spare_host(false));
        let faults = core.faults();
        if !faults.is_empty() {
            core.shutdown().await;
            bail!("generated metadata was refused: {}", faults.join("; "));
        }
        Ok(World {
            core,
            cold,
            host: host_probe.then_some(host),
            probe_exe: probe_exe.as_deref().map(crate::probe_build::linking),
            probe_combined,
            contexts,
            program,
            dir,
            _run: run,
        })
    }

    /// How the core runs module `name` (`bms`, `probe` through `logos_host`, or the `probe`
    /// program), for starting it without the core.
    fn program(&self, name: &str) -> alone::Program {
        let dir = self.modules_dir().join(name);
        match &self.host {
            Some(host) if name == "probe" => alone::Program {
                name: name.into(),
                path: host.clone(),
                args: vec![
                    "--module".into(),
                    dir.join(PROBE_LIB).into_os_string(),
                    "--name".into(),
                    name.into(),
                    "--module-version".into(),
                    PROBE_VERSION.into(),
                ],
            },
            _ if name == PROBE_EXE_MODULE => alone::Program {
                name: name.into(),
                path: dir.join(PROBE_EXE),
                args: Vec::new(),
            },
            _ => alone::Program {
                name: name.into(),
                path: dir.join(EXE_NAME),
                args: Vec::new(),
            },
        }
    }

    /// The modules dir (for the C API driver, which runs its own core over it).
    pub fn modules_dir(&self) -> PathBuf {
        self.dir.path().join("modules")
    }

    /// Stops every module and the core.
    pub async fn close(self) {
        self.core.shutdown().await;
    }

    async fn call(&self, target: &str, method: &str, args: Vec<Value>) -> Result<Value> {
        self.core
            .call(target, method, args)
            .await
            .with_context(|| format!("{target}.{method}"))
    }

    /// The process id of a loaded module.
    fn pid(&self, name: &str) -> Result<u32> {
        self.core
            .module(name)
            .ok()
            .and_then(|m| m.pid)
            .ok_or_else(|| anyhow!("{name} has no process"))
    }

    async fn ensure_loaded(&self, names: &[&str]) -> Result<()> {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| self.core.module(n).map_or(true, |m| !m.state.is_loaded()))
            .collect();
        if !missing.is_empty() {
            self.core.load_many(&missing).await?;
        }
        Ok(())
    }

    /// Unloads every loaded module whose name starts with one of `prefixes`, dependents first.
    async fn unload_all(&self, prefixes: &[&str]) -> Result<()> {
        loop {
            let loaded: Vec<String> = self
                .core
                .modules()
                .into_iter()
                .filter(|m| m.state.is_loaded() && prefixes.iter().any(|p| m.name.starts_with(p)))
                .map(|m| m.name)
                .collect();
            let Some(first) = loaded.first() else {
                return Ok(());
            };
            self.core.unload(first, true).await?;
        }
    }
}

fn u64_list(v: &Value) -> Result<Vec<f64>> {
    let list = v
        .as_list()
        .ok_or_else(|| anyhow!("expected a list, got {v}"))?;
    list.iter()
        .map(|x| {
            x.as_u64()
                .map(|n| n as f64)
                .ok_or_else(|| anyhow!("not a count: {x}"))
        })
        .collect()
}

fn as_u64(v: &Value) -> Result<u64> {
    v.as_u64()
        .ok_or_else(|| anyhow!("expected a count, got {v}"))
}

/// Runs blocking baseline work off the runtime's thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow!("baseline task failed: {e}"))?
}

/// Module → module round trips, with two raw ping-pongs (one that waits as the runtime does,
/// polling briefly after traffic, and one that blocks) and (given `qt`, a Qt Remote Objects
/// build) Qt's round trip measured in the same rounds; returns the rows of all three. Each
/// side's CPU time per call is reported beside its latency, so polling shows as a cost.
pub async fn rtt(w: &World, plan: &Plan, qt: Option<&Path>) -> Result<(Vec<Row>, Option<Row>)> {
    w.ensure_loaded(&["bma", "bmb"]).await?;
    let (mut ours, mut poll, mut block) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ours_cpu, mut poll_cpu, mut block_cpu) = (
        CpuPerCall::default(),
        CpuPerCall::default(),
        CpuPerCall::default(),
    );
    let mut qt_rounds: Vec<crate::qt::QtFigures> = Vec::new();
    let mut qt_error = None;
    let n = plan.rtt_calls;
    // The processes a module → module call runs in: both modules and this one (the core).
    let pids = [w.pid("bma")?, w.pid("bmb")?, std::process::id()];
    for _ in 0..plan.rounds {
        for (wait, samples, cpu) in [
            (baseline::Wait::Poll, &mut poll, &mut poll_cpu),
            (baseline::Wait::Block, &mut block, &mut block_cpu),
        ] {
            let trips =
                blocking(move || baseline::round_trips(n as usize, PAYLOAD as usize, wait)).await?;
            cpu.add(trips.cpu_ns, trips.samples.len());
            samples.extend(trips.samples);
        }
        let before = crate::cpu::Snapshot::of(&pids);
        let v = w
            .call(
                "bma",
                "pingLoop",
                vec!["bmb".into(), n.into(), PAYLOAD.into()],
            )
            .await?;
        let after = crate::cpu::Snapshot::of(&pids);
        let calls = n as usize + (n as usize / 10).clamp(10, 2_000);
        ours_cpu.add(after.zip(before).map(|(a, b)| a.since(&b)), calls);
        ours.extend(u64_list(&v)?);
        if let (Some(build), None) = (qt, &qt_error) {
            let build = build.to_path_buf();
            match blocking(move || crate::qt::measure(&build, n as usize)).await {
                Ok(f) => qt_rounds.push(f),
                Err(e) => qt_error = Some(e),
            }
        }
    }
    let ours = stats::summarize(&mut ours);
    let qt_row = qt.map(|_| match qt_error {
        Some(e) => Row::skipped(QT_ID, QT_NAME, format!("Qt Remote Objects failed: {e:#}")),
        None => qt_row(&ours, &qt_rounds),
    });
    let poll = stats::summarize(&mut poll);
    let block = stats::summarize(&mut block);
    let cpu_text = |c: &CpuPerCall| {
        c.per_call().map_or("unreadable".to_owned(), |ns| {
            crate::report::format_value(ns, Unit::Nanos)
        })
    };

    let ratio = ours.median / poll.median;
    let mut row = Row::new(
        "rtt",
        "call round trip module → module, 64 B, one at a time",
    );
    row.ours = Some(Figure::latency(&ours));
    row.baseline = Some(Figure::latency(&poll));
    row.baseline_name = Some("raw socket ping-pong, polling like the runtime".into());
    row.ratio = Some(ratio);
    row.target = Some("≤ 1.5× the raw ping-pong that waits the same way".into());
    row.status = Status::check(ratio <= 1.5);
    row.note = Some(format!(
        "CPU per call (all processes): logos {}, raw polling {}, raw blocking {}; both poll for {} after traffic (logos_session busy_poll), then sleep",
        cpu_text(&ours_cpu),
        cpu_text(&poll_cpu),
        cpu_text(&block_cpu),
        crate::report::format_value(crate::poll_io::window().as_nanos() as f64, Unit::Nanos),
    ));
    row.extra("samples", ours.n as u64)
        .extra("ours_min_ns", ours.min)
        .extra("raw_min_ns", poll.min)
        .extra("ratio_vs_blocking", ours.median / block.median);
    ours_cpu.put(&mut row, "ours_cpu_per_call_ns");
    poll_cpu.put(&mut row, "raw_cpu_per_call_ns");

    let ratio = ours.median / block.median;
    let mut blocking_row = Row::new(
        "rtt_blocking",
        "call round trip module → module, 64 B, against a blocking ping-pong",
    );
    blocking_row.ours = Some(Figure::latency(&ours));
    blocking_row.baseline = Some(Figure::latency(&block));
    blocking_row.baseline_name = Some("raw socket ping-pong, blocking reads".into());
    blocking_row.ratio = Some(ratio);
    blocking_row.status = Status::Info;
    blocking_row.note = Some(format!(
        "CPU per call: logos {}, raw blocking {}: a ratio below 1 here is bought with CPU",
        cpu_text(&ours_cpu),
        cpu_text(&block_cpu),
    ));
    blocking_row.extra("raw_min_ns", block.min);
    ours_cpu.put(&mut blocking_row, "ours_cpu_per_call_ns");
    block_cpu.put(&mut blocking_row, "raw_cpu_per_call_ns");
    Ok((vec![row, blocking_row], qt_row))
}

/// CPU time summed over rounds, with the number of calls it paid for.
#[derive(Debug, Default)]
struct CpuPerCall {
    ns: u64,
    calls: usize,
    unreadable: bool,
}

impl CpuPerCall {
    fn add(&mut self, ns: Option<u64>, calls: usize) {
        match ns {
            Some(ns) => {
                self.ns = self.ns.saturating_add(ns);
                self.calls += calls;
            }
            None => self.unreadable = true,
        }
    }

    /// Nanoseconds of CPU per call, when every round could be read.
    fn per_call(&self) -> Option<f64> {
        (!self.unreadable && self.calls > 0).then(|| self.ns as f64 / self.calls as f64)
    }

    fn put(&self, row: &mut Row, key: &str) {
        if let Some(ns) = self.per_call() {
            row.extra(key, ns);
        }
    }
}

pub const QT_ID: &str = "qt";
pub const QT_NAME: &str = "same call, Qt Remote Objects (sync) as baseline";

/// Our round trip against the median of Qt's per-round medians.
fn qt_row(ours: &Summary, rounds: &[crate::qt::QtFigures]) -> Row {
    let median: Vec<f64> = rounds.iter().map(|f| f.sync_median_ns).collect();
    let p99: Vec<f64> = rounds.iter().map(|f| f.sync_p99_ns).collect();
    let pipelined: Vec<f64> = rounds.iter().filter_map(|f| f.pipelined_per_sec).collect();
    let qt = stats::median(&median);
    let ratio = ours.median / qt;
    let mut row = Row::new(QT_ID, QT_NAME);
    row.ours = Some(Figure::latency(ours));
    row.baseline = Some(Figure {
        value: qt,
        p99: Some(stats::median(&p99)),
        unit: Unit::Nanos,
    });
    row.baseline_name = Some("Qt Remote Objects".into());
    row.ratio = Some(ratio);
    row.target = Some("≤ 0.4× Qt".into());
    row.status = Status::check(ratio <= 0.4);
    if !pipelined.is_empty() {
        let rate = stats::median(&pipelined);
        row.extra("qt_pipelined_per_sec", rate);
        row.note = Some(format!(
            "Qt with all calls in flight: {}; its sync call waits in a nested event loop",
            crate::report::format_value(rate, Unit::PerSec)
        ));
    }
    row
}

/// Round trips with bigger arguments (echoed back, so each call carries the payload both
/// ways), against the raw ping-pong of the same size: how cost grows with payload.
pub async fn payload(w: &World, plan: &Plan) -> Result<Vec<Row>> {
    w.ensure_loaded(&["bma", "bmb"]).await?;
    let n = plan.payload_calls;
    let mut rows = Vec::new();
    for &size in &plan.payload_sizes {
        let (mut ours, mut raw) = (Vec::new(), Vec::new());
        for _ in 0..plan.rounds {
            raw.extend(
                blocking(move || {
                    baseline::round_trips(n as usize, size as usize, baseline::Wait::Block)
                })
                .await?
                .samples,
            );
            let v = w
                .call("bma", "pingLoop", vec!["bmb".into(), n.into(), size.into()])
                .await?;
            ours.extend(u64_list(&v)?);
        }
        let ours = stats::summarize(&mut ours);
        let raw = stats::summarize(&mut raw);
        let label = if size >= 1024 * 1024 {
            format!("{} MiB", size / (1024 * 1024))
        } else {
            format!("{} KiB", size / 1024)
        };
        let mut row = Row::new(
            format!("rtt_{size}"),
            format!("call round trip module → module, {label}"),
        );
        row.ours = Some(Figure::latency(&ours));
        row.baseline = Some(Figure::latency(&raw));
        row.baseline_name = Some("raw socket ping-pong".into());
        let ratio = ours.median / raw.median;
        row.ratio = Some(ratio);
        if size >= 1024 * 1024 {
            row.target = Some("≤ 1.5× (1 MiB)".into());
            row.status = Status::check(ratio <= 1.5);
        } else {
            row.target = Some("growth with payload".into());
            row.status = Status::Info;
        }
        row.extra("payload_bytes", size);
        rows.push(row);
    }
    Ok(rows)
}

/// Calls pipelined on one module → module connection, against raw pipelined messages.
pub async fn pipelined(w: &World, plan: &Plan) -> Result<Row> {
    w.ensure_loaded(&["bma", "bmb"]).await?;
    let n = plan.pipelined_calls;
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..plan.rounds {
        raw.push(blocking(move || baseline::pipelined(n as usize, PAYLOAD as usize)).await?);
        let ns = as_u64(
            &w.call(
                "bma",
                "pipeline",
                vec!["bmb".into(), n.into(), PAYLOAD.into(), WINDOW.into()],
            )
            .await?,
        )?;
        ours.push(n as f64 / (ns as f64 / 1e9));
    }
    let (ours, raw) = (stats::median(&ours), stats::median(&raw));
    let ratio = ours / raw;
    let mut row = Row::new(
        "pipelined",
        format!("pipelined calls, one connection, {WINDOW} in flight"),
    );
    row.ours = Some(Figure::of(ours, Unit::PerSec));
    row.baseline = Some(Figure::of(raw, Unit::PerSec));
    row.baseline_name = Some("raw pipelined messages".into());
    row.ratio = Some(ratio);
    row.target = Some("≥ 300k/s and ≥ 0.5×".into());
    row.status = Status::check(ours >= 300_000.0 && ratio >= 0.5);
    Ok(row)
}

/// A 64 MiB stream module → module, against a raw socket copy.
pub async fn stream(w: &World, plan: &Plan) -> Result<Row> {
    w.ensure_loaded(&["bma", "bmb"]).await?;
    let bytes = plan.stream_bytes;
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..plan.rounds {
        raw.push(blocking(move || baseline::stream(bytes)).await?);
        let ns = as_u64(
            &w.call("bma", "streamTo", vec!["bmb".into(), bytes.into()])
                .await?,
        )?;
        ours.push(bytes as f64 / (ns as f64 / 1e9));
    }
    let (ours, raw) = (stats::median(&ours), stats::median(&raw));
    let ratio = ours / raw;
    let mut row = Row::new(
        "stream",
        format!("stream module → module, {} MiB", bytes >> 20),
    );
    row.ours = Some(Figure::of(ours, Unit::BytesPerSec));
    row.baseline = Some(Figure::of(raw, Unit::BytesPerSec));
    row.baseline_name = Some("raw socket copy".into());
    row.ratio = Some(ratio);
    row.target = Some("≥ 0.7×".into());
    row.status = Status::check(ratio >= 0.7);
    Ok(row)
}

/// One publisher, 1 / 8 / 32 subscriber modules: deliveries per second, order checked.
pub async fn fanout(w: &World, plan: &Plan) -> Result<Vec<Row>> {
    w.ensure_loaded(&["publisher"]).await?;
    let mut rows = Vec::new();
    let mut listening = 0;
    for &k in &plan.fanout_subscribers {
        let names: Vec<String> = (0..k).map(sub).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        w.ensure_loaded(&refs).await?;
        for name in &names[listening.min(k)..] {
            w.call(name, "listen", vec!["publisher".into()]).await?;
        }
        listening = listening.max(k);
        // Subscriptions are made in the background: wait until the publisher sees them all.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = as_u64(&w.call("publisher", "subscribers", vec![]).await?)?;
            if seen as usize >= k {
                break;
            }
            if Instant::now() > deadline {
                bail!("only {seen} of {k} subscribers connected to the publisher");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for name in &names {
            w.call(name, "resetHeard", vec![]).await?;
        }
        let n = plan.fanout_events;
        let start_ns = as_u64(
            &w.call("publisher", "fanout", vec![n.into(), BURST.into()])
                .await?,
        )?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let heard = loop {
            let mut all = Vec::with_capacity(k);
            for name in &names {
                let v = w.call(name, "heard", vec![]).await?;
                all.push(heard_of(&v)?);
            }
            if all.iter().all(|h| h.received >= n) || Instant::now() > deadline {
                break all;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let received: u64 = heard.iter().map(|h| h.received).sum();
        let disorder: u64 = heard.iter().map(|h| h.out_of_order).sum();
        let end_ns = heard.iter().map(|h| h.last_ns).max().unwrap_or(start_ns);
        let secs = (end_ns.saturating_sub(start_ns) as f64 / 1e9).max(1e-9);
        let rate = received as f64 / secs;
        let expected = n * k as u64;
        let mut row = Row::new(
            format!("fanout_{k}"),
            format!(
                "event fan-out, 1 publisher → {k} subscriber module{}",
                if k == 1 { "" } else { "s" }
            ),
        );
        row.ours = Some(Figure::of(rate, Unit::PerSec));
        row.target = Some("deliveries/s; order per subscriber".into());
        let ok = received == expected && disorder == 0;
        row.status = if ok { Status::Info } else { Status::Missed };
        row.note = (!ok)
            .then(|| format!("{received} of {expected} events delivered, {disorder} out of order"));
        row.extra("events", n)
            .extra("subscribers", k as u64)
            .extra("delivered", received)
            .extra("out_of_order", disorder)
            .extra("order_ok", disorder == 0);
        rows.push(row);
    }
    // Each subscriber watches `core.moduleUp` (to re-subscribe after the publisher restarts)
    // and so wakes at every module start: leave them loaded and the start rows measure that.
    w.unload_all(&["sub", "publisher"]).await?;
    Ok(rows)
}

fn heard_of(v: &Value) -> Result<Heard> {
    Heard::from_value(v).ok_or_else(|| anyhow!("heard() returned {v}"))
}

/// Spawn → ready of one module (handshake included), against spawning `/bin/true`: an
/// executable module (the `probe` program when built, else this binary), this binary as a
/// module, and a library module run by `logos_host` when built.
pub async fn start(w: &World, plan: &Plan) -> Result<Vec<Row>> {
    let mut kinds = Vec::new();
    if w.probe_exe.is_some() {
        kinds.push((
            &w.core,
            PROBE_EXE_MODULE,
            "start",
            "module start: spawn → ready (handshake, auth), an executable module (probe)",
        ));
    }
    kinds.push((
        &w.core,
        "bms",
        if w.probe_exe.is_some() {
            "start_bench_binary"
        } else {
            "start"
        },
        "same, this benchmark's binary as the module (the core and every benchmark linked in)",
    ));
    if w.host.is_some() {
        kinds.push((
            &w.core,
            "probe",
            "start_host",
            "same, a library module via logos_host (probe), in the spare host kept for it",
        ));
    }
    let cold = match &w.cold {
        Some(b) => Some(
            b.clone()
                .build()?
                .start()
                .await
                .context("starting the core without spare hosts")?,
        ),
        None => None,
    };
    if let Some(cold) = &cold {
        kinds.push((
            cold,
            "probe",
            "start_host_cold",
            "same, with spare hosts off (logos_host created and loaded per start)",
        ));
    }
    let mut ours: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let mut alone: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let programs: Vec<Arc<alone::Program>> = kinds
        .iter()
        .map(|(_, name, _, _)| Arc::new(w.program(name)))
        .collect();
    let alone_dir = Arc::new(
        tempfile::Builder::new()
            .prefix("alone-")
            .tempdir_in(w.dir.path())
            .context("creating the dir of the modules started alone")?,
    );
    let mut raw = Vec::new();
    let mut forked = Vec::new();
    let true_bin = Path::new("/bin/true");
    // Warm the page cache and the core's paths once.
    for (core, name, _, _) in &kinds {
        core.load(name).await?;
        core.unload(name, false).await?;
    }
    // Only library modules start in a spare: the main core's spare starts during the loop are
    // `start_host`'s, and the row says how many of its starts found one.
    let spare_before = w.core.starts().spare;
    // One of each in turn, so drifting machine load hits baseline and runtime alike.
    let batch = 1;
    let mut done = 0;
    while done < plan.starts {
        let k = batch.min(plan.starts - done);
        raw.extend(
            blocking(move || baseline::spawn_and_reap(true_bin, k, baseline::Spawn::Plain)).await?,
        );
        forked.extend(
            blocking(move || baseline::spawn_and_reap(true_bin, k, baseline::Spawn::Fork)).await?,
        );
        for ((core, name, _, _), samples) in kinds.iter().zip(&mut ours) {
            for _ in 0..k {
                let t = Instant::now();
                core.load(name).await?;
                samples.push(t.elapsed().as_nanos() as f64);
                core.unload(name, false).await?;
            }
        }
        for (program, samples) in programs.iter().zip(&mut alone) {
            let (program, dir) = (program.clone(), alone_dir.clone());
            samples.extend(blocking(move || alone::spawn_to_hello(&program, dir.path(), k)).await?);
        }
        done += k;
    }
    let in_spare = w.core.starts().spare - spare_before;
    if let Some(cold) = &cold {
        cold.shutdown().await;
    }
    let raw = stats::summarize(&mut raw);
    let forked = stats::summarize(&mut forked);
    let mut rows = Vec::new();
    for (((_, _, id, title), mut samples), mut alone) in kinds.into_iter().zip(ours).zip(alone) {
        let ours = stats::summarize(&mut samples);
        let alone = stats::summarize(&mut alone);
        let ratio = ours.median / raw.median;
        let mut row = Row::new(id, title);
        row.ours = Some(Figure::latency(&ours));
        row.baseline = Some(Figure::latency(&raw));
        row.baseline_name = Some("spawn + reap /bin/true".into());
        row.ratio = Some(ratio);
        if id == "start_host_cold" || id == "start_bench_binary" {
            // Kept in view, not rows of the issue: the way every library module started
            // before spare hosts (the library start is `start_host`), and a 120 MB
            // benchmark binary that no author ships as a module (its start is `start`).
            row.status = Status::Info;
        } else {
            row.target = Some("≤ 2×".into());
            row.status = Status::check(ratio <= 2.0);
        }
        row.note = Some(format!(
            "/bin/true spawned by fork + exec (page tables copied, as the core's fallback and \
             other architectures create modules): {}; the module process alone (spawned like \
             /bin/true, no core, until its hello): {} ({:.2}×)",
            crate::report::format_value(forked.median, Unit::Nanos),
            crate::report::format_value(alone.median, Unit::Nanos),
            alone.median / raw.median,
        ));
        row.extra("true_fork_median_ns", forked.median)
            .extra("alone_median_ns", alone.median)
            .extra("alone_ratio", alone.median / raw.median);
        if id != "start_bench_binary" && w.probe_combined {
            row.note = row
                .note
                .map(|n| format!("{n}; {}", crate::probe_build::COMBINED));
        }
        if id == "start"
            && let Some(linking) = w.probe_exe
        {
            row.note = row.note.map(|n| format!("{n}; {linking}"));
        }
        if id == "start_host" {
            row.note = row.note.map(|n| {
                format!(
                    "{n}; {in_spare} of {} starts ran in a spare host",
                    plan.starts
                )
            });
            row.extra("starts_in_spare", in_spare as f64);
        }
        rows.push(row);
    }
    if w.probe_exe.is_none()
        && let Some(row) = rows.iter_mut().find(|r| r.id == "start")
    {
        row.note = row.note.take().map(|n| {
            format!(
                "{n}; the module is this benchmark's binary: the probe program is not built \
                 beside it (cargo build --release -p logos-host -p probe)"
            )
        });
    }
    if w.host.is_none() {
        for (id, title) in [
            (
                "start_host",
                "same, a library module via logos_host (probe)",
            ),
            ("start_host_cold", "same, with spare hosts off"),
        ] {
            rows.push(Row::skipped(
                id,
                title,
                "logos_host and libprobe.so are not built beside this binary \
                 (cargo build --release -p logos-host -p probe)",
            ));
        }
    }
    Ok(rows)
}

/// Loading N modules as a chain and as a wide fan, N up to 100; the idle RSS per module is
/// read while the largest fan is loaded.
pub async fn load(w: &World, plan: &Plan) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut rss_row = None;
    let mut idle_row = None;
    for (shape, root_of) in [("chain", chain_root as fn(usize) -> String), ("fan", fan)] {
        let mut per_module = Vec::new();
        for &size in &plan.load_sizes {
            let root = root_of(size);
            let t = Instant::now();
            w.core.load(&root).await?;
            let took = t.elapsed().as_nanos() as f64;
            per_module.push((size, took, took / size as f64));
            if shape == "fan" && size == plan.largest_load() {
                rss_row = Some(rss(w, plan, size).await?);
                idle_row = Some(idle_cpu(w, plan, size).await?);
            }
            w.unload_all(&[shape, "leaf"]).await?;
        }
        rows.push(load_row(shape, &per_module));
    }
    rows.extend(rss_row);
    rows.push(rss_host(w, plan).await);
    rows.push(rss_exe(w, plan).await);
    rows.extend(idle_row);
    Ok(rows)
}

/// Resident and proportional memory of an idle library module run by `logos_host` (probe):
/// a module built the usual way, beside the `rss` row's many processes of one program.
async fn rss_host(w: &World, plan: &Plan) -> Row {
    const ID: &str = "rss_host";
    const NAME: &str = "idle library module via logos_host (probe): RSS";
    if w.host.is_none() {
        return Row::skipped(
            ID,
            NAME,
            "logos_host and libprobe.so are not built beside this binary \
             (cargo build --release -p logos-host -p probe)",
        );
    }
    idle_memory(w, plan, "probe", ID, NAME).await
}

/// [`rss_host`] for the same module built as a program (`probe-exe`, as the `start` row
/// starts it): an executable module as module-authoring.md §10 says to build one.
async fn rss_exe(w: &World, plan: &Plan) -> Row {
    const ID: &str = "rss_exe";
    const NAME: &str = "idle executable module (the probe program): RSS";
    let Some(linking) = w.probe_exe else {
        return Row::skipped(
            ID,
            NAME,
            "the probe program is not built beside this binary \
             (cargo build --release -p logos-host -p probe)",
        );
    };
    let mut row = idle_memory(w, plan, PROBE_EXE_MODULE, ID, NAME).await;
    row.note = row.note.map(|n| format!("{n}; {linking}"));
    row
}

/// The RSS (and PSS, in the note) of `probe`, run as module `module`, after a moment idle,
/// against the 4 MiB target.
async fn idle_memory(w: &World, plan: &Plan, module: &str, id: &str, name: &str) -> Row {
    let measured = async {
        w.ensure_loaded(&[module]).await?;
        tokio::time::sleep(if plan.quick {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(500)
        })
        .await;
        let pid = w.pid(module)?;
        let rss = logos_core::process_usage(pid)
            .and_then(|u| u.rss_bytes)
            .ok_or_else(|| anyhow!("the memory of {module} (pid {pid}) could not be read"))?;
        let pss = logos_core::pss_bytes(pid);
        Ok::<_, anyhow::Error>((rss as f64, pss))
    };
    match measured.await {
        Ok((rss, pss)) => {
            let mut row = Row::new(id, name);
            row.ours = Some(Figure {
                value: rss,
                p99: None,
                unit: Unit::Bytes,
            });
            row.target = Some("≤ 4 MiB per module".into());
            row.status = Status::check(rss <= 4.0 * 1024.0 * 1024.0);
            row.note = Some(match pss {
                Some(pss) => format!(
                    "PSS {}",
                    crate::report::format_value(pss as f64, Unit::Bytes)
                ),
                None => "PSS unreadable".into(),
            });
            if let Some(pss) = pss {
                row.extra("pss_bytes", pss as f64);
            }
            if w.probe_combined {
                row.note = row
                    .note
                    .map(|n| format!("{n}; {}", crate::probe_build::COMBINED));
            }
            row
        }
        Err(e) => Row::failed(id, name, &e),
    }
}

/// CPU used by the core and every loaded module while nothing calls anything: heartbeats,
/// timers and whatever polls. Measured over a window (5 s, 0.5 s with --quick) as a share of
/// one CPU.
async fn idle_cpu(w: &World, plan: &Plan, size: usize) -> Result<Row> {
    let window = if plan.quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    let pids: Vec<u32> = w
        .core
        .modules()
        .into_iter()
        .filter(|m| m.state == State::Ready)
        .filter_map(|m| m.pid)
        .collect();
    let modules = pids.len();
    // The core runs in this process (its other threads are idle while this row runs). Its
    // time is read last before the window and first after it, from the process CPU clock:
    // reading the modules' `/proc` files costs this process a few milliseconds that belong
    // to the measurement, not to the core, and this process's own `schedstat` would hand
    // part of that cost to the window (`cpu::own_process_ns`).
    let modules_before = crate::cpu::Snapshot::of(&pids);
    let core_before = crate::cpu::own_process_ns();
    let t = Instant::now();
    tokio::time::sleep(window).await;
    let core_after = crate::cpu::own_process_ns();
    let elapsed = t.elapsed().as_nanos() as f64;
    let modules_after = crate::cpu::Snapshot::of(&pids);
    let (Some(modules_spent), Some(core_spent)) = (
        modules_after.zip(modules_before).map(|(a, b)| a.since(&b)),
        core_after
            .zip(core_before)
            .map(|(a, b)| a.saturating_sub(b)),
    ) else {
        bail!("the CPU time of the core or a module could not be read (a module exited?)");
    };
    let spent = modules_spent + core_spent;
    let share = spent as f64 / elapsed * 100.0;
    let mut row = Row::new(
        "idle_cpu",
        format!("CPU time each second, idle core with {modules} idle modules"),
    );
    row.ours = Some(Figure::of(spent as f64 / elapsed * 1e9, Unit::Nanos));
    row.target = Some("≤ 0.5 % of one CPU (5 ms of CPU each second)".into());
    row.status = Status::check(share <= 0.5);
    row.note = Some(format!(
        "{share:.2} % of one CPU over {:.1} s with {size} fan modules loaded: {} of CPU per second (the core {}, the modules {}), heartbeats included",
        elapsed / 1e9,
        crate::report::format_value(spent as f64 / elapsed * 1e9, Unit::Nanos),
        crate::report::format_value(core_spent as f64 / elapsed * 1e9, Unit::Nanos),
        crate::report::format_value(modules_spent as f64 / elapsed * 1e9, Unit::Nanos),
    ));
    row.extra("percent_of_one_cpu", share)
        .extra("core_ns_per_s", core_spent as f64 / elapsed * 1e9)
        .extra("modules_ns_per_s", modules_spent as f64 / elapsed * 1e9)
        .extra("modules", modules as u64)
        .extra("window_s", elapsed / 1e9);
    Ok(row)
}

fn chain_root(size: usize) -> String {
    chain(size.saturating_sub(1))
}

fn load_row(shape: &str, runs: &[(usize, f64, f64)]) -> Row {
    let (first, last) = match (runs.first(), runs.last()) {
        (Some(f), Some(l)) => (*f, *l),
        _ => return Row::skipped(&format!("load_{shape}"), shape, "no sizes"),
    };
    // Linear growth: the cost per module stays flat as the set grows.
    let growth = last.2 / first.2;
    let what = match shape {
        "chain" => "a chain (each depends on the previous)",
        _ => "a wide fan (one root over the rest)",
    };
    let mut row = Row::new(
        format!("load_{shape}"),
        format!("load {} modules as {what}", last.0),
    );
    row.ours = Some(Figure::of(last.1, Unit::Nanos));
    row.ratio = Some(growth);
    row.target = Some(format!(
        "linear: per-module cost at {} ≤ 1.5× that at {}",
        last.0, first.0
    ));
    row.status = Status::check(growth <= 1.5);
    let sizes: Vec<String> = runs
        .iter()
        .map(|(n, total, per)| {
            format!(
                "{n}: {} ({} per module)",
                crate::report::format_value(*total, Unit::Nanos),
                crate::report::format_value(*per, Unit::Nanos)
            )
        })
        .collect();
    row.note = Some(format!("{shape}: {}", sizes.join(", ")));
    row.extra(
        "runs",
        runs.iter()
            .map(|(n, total, per)| serde_json::json!({"modules": n, "total_ns": total, "per_module_ns": per}))
            .collect::<Vec<_>>(),
    );
    row.extra("per_module_ns", last.2);
    row
}

/// Resident and proportional memory of each loaded module process, after a moment idle.
async fn rss(w: &World, plan: &Plan, size: usize) -> Result<Row> {
    tokio::time::sleep(if plan.quick {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(500)
    })
    .await;
    let pids: Vec<u32> = w
        .core
        .modules()
        .into_iter()
        .filter(|m| {
            m.state == State::Ready && (m.name.starts_with("fan") || m.name.starts_with("leaf"))
        })
        .filter_map(|m| m.pid)
        .collect();
    let mut rss = Vec::new();
    let mut pss = Vec::new();
    for pid in &pids {
        if let Some(bytes) = logos_core::process_usage(*pid).and_then(|u| u.rss_bytes) {
            rss.push(bytes as f64);
        }
        if let Some(bytes) = logos_core::pss_bytes(*pid) {
            pss.push(bytes as f64);
        }
    }
    if rss.is_empty() {
        bail!("no module process memory could be read");
    }
    let rss = stats::summarize(&mut rss);
    let pss = stats::summarize(&mut pss);
    let mut row = Row::new(
        "rss",
        format!("idle module process memory (RSS), {} processes", rss.n),
    );
    row.ours = Some(Figure {
        value: rss.median,
        p99: None,
        unit: Unit::Bytes,
    });
    row.target = Some("≤ 4 MiB per module".into());
    row.status = Status::check(rss.median <= 4.0 * 1024.0 * 1024.0);
    row.note = Some(format!(
        "with {size} loaded: RSS max {}, PSS median {} (shared pages split between processes); {}",
        crate::report::format_value(rss.p99.max(rss.min), Unit::Bytes),
        crate::report::format_value(pss.median, Unit::Bytes),
        w.program.describe(),
    ));
    row.extra("own_program", w.program.own);
    row.extra("rss_max_bytes", stats_max(&rss))
        .extra("pss_median_bytes", pss.median);
    Ok(row)
}

fn stats_max(s: &Summary) -> f64 {
    s.p99.max(s.min)
}

/// SIGKILL a module and time until the core reports it up and ready again.
pub async fn restart(w: &World, plan: &Plan) -> Result<Row> {
    w.ensure_loaded(&["bmc"]).await?;
    let mut ups = w.core.subscribe("core", "moduleUp")?;
    let mut samples = Vec::new();
    for _ in 0..plan.crashes {
        let pid = w
            .core
            .module("bmc")?
            .pid
            .ok_or_else(|| anyhow!("bmc has no pid"))?;
        let pid = i32::try_from(pid)?;
        let t = Instant::now();
        // SAFETY: kill(2) with a pid the core reported for a module it started and a valid
        // signal number; nothing in this process is affected.
        if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
            bail!("kill -9 {pid}: {}", std::io::Error::last_os_error());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let note = tokio::time::timeout_at(deadline, ups.recv())
                .await
                .map_err(|_| anyhow!("bmc did not come back within 20 s"))?
                .ok_or_else(|| anyhow!("the core stopped"))?;
            if let Notification::Event { data, .. } = note
                && data.first().and_then(Value::as_str) == Some("bmc")
            {
                break;
            }
        }
        samples.push(t.elapsed().as_nanos() as f64);
        let state = w.core.module("bmc")?.state;
        if state != State::Ready {
            bail!("bmc is {state} after moduleUp");
        }
        // Let the new process settle before the next crash.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = stats::summarize(&mut samples);
    let limit = 50e6 + BACKOFF.as_nanos() as f64;
    let mut row = Row::new("restart", "crash (SIGKILL) → restarted and ready");
    row.ours = Some(Figure::latency(&s));
    row.target = Some(format!("≤ 50 ms + backoff ({} ms)", BACKOFF.as_millis()));
    row.status = Status::check(s.median <= limit);
    row.extra("backoff_ns", BACKOFF.as_nanos() as f64);
    Ok(row)
}

/// Hot swap of a module (`Core::reload_hot`: new process ready beside the old one, switch,
/// old one drained and gone) while a caller keeps calling: the row's figure is the longest
/// call that caller saw (the wait a swap can cause), against a cold reload of the same module
/// (stop, then start; during it calls fail) measured in the same run, as the issue states its
/// target ("no call waits more than 2× a cold start"). The whole swap's time is an extra.
pub async fn swap(w: &World, plan: &Plan) -> Result<Row> {
    w.ensure_loaded(&["bmc"]).await?;
    let mut hot = Vec::new();
    let mut cold = Vec::new();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let caller = {
        let core = w.core.clone();
        let stop = std::sync::Arc::clone(&stop);
        tokio::spawn(async move {
            let mut failed = 0u64;
            let mut longest = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let t = Instant::now();
                if core
                    .call("bmc", "echo", vec![Value::from(1)])
                    .await
                    .is_err()
                {
                    failed += 1;
                }
                longest = longest.max(t.elapsed());
            }
            (failed, longest)
        })
    };
    for _ in 0..plan.crashes {
        let t = Instant::now();
        w.core.reload_hot("bmc").await?;
        hot.push(t.elapsed().as_nanos() as f64);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (failed, longest) = caller.await?;
    for _ in 0..plan.crashes {
        let t = Instant::now();
        w.core.reload("bmc").await?;
        cold.push(t.elapsed().as_nanos() as f64);
    }
    let hot = stats::summarize(&mut hot);
    let cold = stats::summarize(&mut cold);
    let longest = longest.as_nanos() as f64;
    let mut row = Row::new("hot_swap", "longest call during hot swaps vs a cold reload");
    row.ours = Some(Figure {
        value: longest,
        p99: None,
        unit: Unit::Nanos,
    });
    row.baseline = Some(Figure::latency(&cold));
    row.baseline_name = Some("cold reload (stop, then start)".into());
    row.ratio = Some(longest / cold.median);
    row.target = Some("no failed call; no call waits > 2× a cold reload".into());
    row.status = Status::check(failed == 0 && longest <= 2.0 * cold.median);
    row.note = Some(format!(
        "{failed} calls failed during {} hot swaps; a whole swap (new ready, switch, old gone) took {} median",
        plan.crashes,
        crate::report::format_value(hot.median, Unit::Nanos)
    ));
    row.extra("failed_calls", failed as f64)
        .extra("swap_median_ns", hot.median)
        .extra("swap_p99_ns", hot.p99);
    Ok(row)
}

/// `core.call` from the embedding Rust API to a module: the reference the C API row is
/// compared with.
pub async fn rust_api(w: &World, plan: &Plan) -> Result<(Row, Summary)> {
    w.ensure_loaded(&["bmb"]).await?;
    // The same argument the C driver sends: 64 bytes of text.
    let payload = Value::from("Z".repeat(PAYLOAD as usize));
    for _ in 0..(plan.api_calls / 10).clamp(10, 2_000) {
        w.call("bmb", "echo", vec![payload.clone()]).await?;
    }
    let mut samples = Vec::with_capacity(plan.api_calls as usize);
    for _ in 0..plan.api_calls {
        let t = Instant::now();
        w.core.call("bmb", "echo", vec![payload.clone()]).await?;
        samples.push(t.elapsed().as_nanos() as f64);
    }
    let s = stats::summarize(&mut samples);
    let mut row = Row::new("rust_api", "call through the Rust API (Core::call), 64 B");
    row.ours = Some(Figure::latency(&s));
    row.status = Status::Info;
    Ok((row, s))
}
