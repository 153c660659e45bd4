//! `logoscore dev [PATH]`: the module author's loop. Builds the module project in PATH (cargo
//! for a Rust project, nothing for Python), stages it, serves it in a core (one it starts,
//! with the module's dependencies from the modules dirs, or with `--attach` the running one),
//! then watches the sources and on every edit rebuilds and hot-swaps the module
//! (`Core::reload_hot`): callers see no error, and a build that fails leaves the old version
//! serving until the next good edit. Each swap is printed with its times (build, swap).
//! Ctrl-C or SIGTERM stops it: a core it started stops with every module, an attached core
//! gets the module unloaded, cargo is stopped mid-build, and the staging dir goes.
//!
//! This file owns the loop and what it prints (lines for people, or with `--json` one document
//! per step); the parts are beside it: `dev/project.rs` (what PATH is), `dev/build.rs`
//! (cargo), `dev/stage.rs` (the dir the core serves from), `dev/watch.rs` (notify, debounced),
//! `dev/host.rs` (the core). A metadata edit is served by a cold reload, since a hot swap keeps
//! the metadata the module was loaded with.

mod build;
mod host;
mod project;
mod stage;
mod watch;

use super::run::Signals;
use crate::Ctx;
use crate::error::Error;
use crate::output;
use host::{Host, OwnCore};
use project::{Kind, Project};
use stage::Stage;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bound on stopping (the core's modules, or the unload on an attached core).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What `dev` needs.
#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// The module project (a dir with metadata.json, and Cargo.toml for Rust).
    #[arg(default_value = ".", value_name = "PATH")]
    pub path: PathBuf,
    /// Serve the module in the running core (found as every client command finds it:
    /// --runtime-dir, --config-dir, $LOGOS_RUNTIME_DIR) instead of starting one.
    #[arg(long)]
    pub attach: bool,
    /// A modules dir for the core dev starts, where the module's dependencies are (repeat
    /// for more). [default: the default modules dir of `run`, when it exists]
    #[arg(short = 'm', long = "modules-dir", value_name = "DIR")]
    pub modules_dirs: Vec<PathBuf>,
    /// Where modules keep their data, for the core dev starts. [default: the core's]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Build with cargo's release profile.
    #[arg(long)]
    pub release: bool,
    /// Build once, write the module dir (metadata.json and what the core runs) to
    /// DIR/<name>, and exit: what `logoscore pack` and a modules dir take. Serves nothing.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["attach", "modules_dirs", "data_dir"])]
    pub out: Option<PathBuf>,
}

pub(crate) fn run(ctx: &Ctx, args: DevArgs) -> Result<(), Error> {
    if args.attach && (!args.modules_dirs.is_empty() || args.data_dir.is_some()) {
        return Err(Error::Usage(
            "-m and --data-dir set up the core dev starts; with --attach the running core keeps its own"
                .into(),
        ));
    }
    if !args.attach && ctx.config_dir.is_some() {
        return Err(Error::Usage(
            "--config-dir names a running core: add --attach to serve the module in it (or leave --config-dir out for a core of dev's own)"
                .into(),
        ));
    }
    init_logging(ctx.verbose);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    match args.out.clone() {
        Some(out) => rt.block_on(build_once(ctx, &args, &out)),
        None => rt.block_on(dev(ctx, args)),
    }
}

/// `--out DIR`: one build, staged into `DIR/<name>`.
async fn build_once(ctx: &Ctx, args: &DevArgs, out: &Path) -> Result<(), Error> {
    let project = Project::open(&args.path).await?;
    let stage = Stage::at(out, &project.name)?;
    let o = Out {
        json: ctx.json,
        color: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        release: args.release,
    };
    let started = Instant::now();
    if let Err(failure) = put(&project, &[], &stage, &o, &mut Serving::default()).await? {
        return Err(Error::Usage(format!(
            "{} was not built: {failure}",
            project.name
        )));
    }
    let dir = stage.dir().display().to_string();
    o.emit(
        serde_json::json!({
            "event": "built", "module": project.name, "dir": dir,
            "buildMs": ms(started.elapsed()),
        }),
        &format!(
            "dev: {} built into {dir} in {:.0} ms (`logoscore pack {dir}` makes a package of it)",
            project.name,
            ms(started.elapsed())
        ),
    )
}

/// Logs on stderr: the module's own output and the core's warnings; `-v` or `RUST_LOG` for
/// more.
fn init_logging(verbose: bool) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|f| !f.is_empty())
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| {
            tracing_subscriber::EnvFilter::new(if verbose { "debug" } else { "warn,module=info" })
        });
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .try_init();
}

/// What is being served.
#[derive(Debug, Default)]
struct Serving {
    /// The module is loaded in the core.
    loaded: bool,
    /// Its pid, as last seen.
    pid: Option<u32>,
    /// The metadata it was loaded with.
    metadata: Option<String>,
    /// Fingerprint of the staged files (projects without a build).
    files: Option<u64>,
}

async fn dev(ctx: &Ctx, args: DevArgs) -> Result<(), Error> {
    let mut signals = Signals::new()?;
    let project = Project::open(&args.path).await?;
    let stage = Stage::new(&project.name)?;
    let host = if args.attach {
        Host::attach(ctx).await?
    } else {
        let mut modules_dirs = vec![stage.modules_dir()];
        modules_dirs.extend(dependency_dirs(&args.modules_dirs)?);
        Host::start(OwnCore {
            runtime_dir: crate::client::RuntimeDir::resolve(ctx.runtime_dir.as_deref()).path,
            modules_dirs,
            data_dir: args.data_dir.clone(),
        })
        .await?
    };
    serve(ctx, args.release, project, stage, host, &mut signals).await
}

/// Where the core dev starts finds the module's dependencies: each `-m DIR` (checked), else
/// the first default modules dir of `run` that exists.
fn dependency_dirs(given: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    if given.is_empty() {
        return Ok(crate::cmd::run::default_modules_dirs()
            .into_iter()
            .filter(|d| d.is_dir())
            .take(1)
            .collect());
    }
    given
        .iter()
        .map(|d| {
            if !d.is_dir() {
                return Err(Error::Usage(format!(
                    "modules dir {} does not exist or is not a directory; it should hold <name>/metadata.json module dirs",
                    d.display()
                )));
            }
            std::path::absolute(d).map_err(|e| Error::io(format!("cannot resolve {}", d.display()), e))
        })
        .collect()
}

/// Builds, serves, watches and swaps until a signal.
async fn serve(
    ctx: &Ctx,
    release: bool,
    project: Project,
    stage: Stage,
    host: Host,
    signals: &mut Signals,
) -> Result<(), Error> {
    let out = Out {
        json: ctx.json,
        color: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        release,
    };
    let target_dir = match &project.kind {
        Kind::Cargo(pkg) => Some(pkg.target_dir.clone()),
        Kind::Files => None,
    };
    let extra: Vec<PathBuf> = target_dir
        .into_iter()
        .filter(|t| t.starts_with(&project.dir))
        .collect();
    let mut watch = match watch::Watch::start(&project.dir, extra.clone()) {
        Ok(w) => w,
        Err(e) => {
            host.close(&project.name, false).await;
            return Err(e);
        }
    };
    out.starting(&project, &host)?;
    let mut serving = Serving::default();
    let mut first = true;
    let result: Result<String, Error> = 'serve: loop {
        if !first {
            let changed = tokio::select! {
                c = watch.changed() => c.is_some(),
                sig = signals.recv() => break 'serve Ok(sig.to_owned()),
                gone = host.ended() => break 'serve gone,
            };
            if !changed {
                break 'serve Ok("the watch ended".to_owned());
            }
        }
        first = false;
        // Edits made during a round are served by the next one at once.
        loop {
            let step = round(&project, &extra, &stage, &host, &mut serving, &out);
            tokio::select! {
                r = step => if let Err(e) = r { break 'serve Err(e) },
                sig = signals.recv() => break 'serve Ok(sig.to_owned()),
                gone = host.ended() => break 'serve gone,
            }
            if !watch.pending().await {
                break;
            }
        }
    };
    let why = match &result {
        Ok(why) => why.clone(),
        Err(e) => e.to_string(),
    };
    let close = host.close(&project.name, serving.loaded);
    let stopped = tokio::select! {
        r = tokio::time::timeout(STOP_TIMEOUT, close) => r.is_ok(),
        _ = signals.recv() => false,
    };
    drop(stage);
    out.stopped(&why, stopped)?;
    result.map(|_| ())
}

/// One edit served: build, stage, check the metadata, then load, swap or cold-reload. Build,
/// metadata and start failures are printed and leave what serves in place; only local
/// failures (staging files, stdout) end `dev`.
async fn round(
    project: &Project,
    extra: &[PathBuf],
    stage: &Stage,
    host: &Host,
    serving: &mut Serving,
    out: &Out,
) -> Result<(), Error> {
    let edit = Instant::now();
    let (text, unchanged) = match put(project, extra, stage, out, serving).await? {
        Ok(staged) => staged,
        Err(_) => return Ok(()),
    };
    let built = edit.elapsed();
    let swap_started = Instant::now();
    if !serving.loaded || !host.is_ready(&project.name).await {
        let step = if serving.loaded {
            host.cold_reload(&project.name, stage.dir()).await
        } else {
            host.load(&project.name, stage.dir()).await
        };
        match step {
            Ok(pid) => {
                serving.loaded = true;
                serving.pid = pid;
                serving.metadata = Some(text);
                out.ready(project, pid, built, swap_started.elapsed(), host)
            }
            Err(e) => {
                let e = fatal(e)?;
                out.refused(project, "load", &format!("{e:#}"), None)
            }
        }
    } else if serving.metadata.as_deref() != Some(text.as_str()) {
        match host.cold_reload(&project.name, stage.dir()).await {
            Ok(pid) => {
                let old = serving.pid;
                serving.pid = pid;
                serving.metadata = Some(text);
                out.reloaded(project, old, pid, built, swap_started.elapsed())
            }
            Err(e) => {
                let e = fatal(e)?;
                serving.loaded = false;
                serving.pid = None;
                out.refused(project, "reload", &format!("{e:#}"), None)
            }
        }
    } else if unchanged {
        out.unchanged(project, serving.pid)
    } else {
        match host.swap(&project.name).await {
            Ok(s) => {
                serving.pid = s.new_pid;
                out.swapped(project, s, built, swap_started.elapsed())
            }
            Err(e) => {
                let e = fatal(e)?;
                out.refused(project, "swap", &format!("{e:#}"), serving.pid)
            }
        }
    }
}

/// `Err` for the errors `dev` cannot go on after (the attached core went away or refused
/// this client); others come back to be reported.
fn fatal(e: Error) -> Result<Error, Error> {
    match e {
        Error::Lost { .. } | Error::Refused { .. } => Err(e),
        other => Ok(other),
    }
}

/// Builds and stages the project with its checked metadata: `Ok((metadata, unchanged))`,
/// or `Err(why)` once the failure is printed (a failed build, bad metadata), leaving what was
/// served before in place.
async fn put(
    project: &Project,
    extra: &[PathBuf],
    stage: &Stage,
    out: &Out,
    serving: &mut Serving,
) -> Result<Result<(String, bool), String>, Error> {
    let unchanged = match &project.kind {
        Kind::Cargo(pkg) => match build::build(pkg, out.release, out.color).await? {
            build::Outcome::Failed { output, took } => {
                out.build_failed(project, &output, took, serving.pid)?;
                return Ok(Err("the build failed (compiler output above)".into()));
            }
            build::Outcome::Built {
                library,
                fresh,
                warnings,
            } => {
                if let Some(w) = warnings {
                    eprint!("{w}");
                }
                stage.put_file(&project.main, &library)?;
                fresh
            }
        },
        Kind::Files => {
            let skip = |p: &Path| watch::ignored(&project.dir, extra, p);
            let print = stage.put_tree(&project.dir, &skip)?;
            let same = serving.files == Some(print);
            serving.files = Some(print);
            same
        }
    };
    let text = match project::read_metadata(&project.dir) {
        Ok(t) => t,
        Err(e) => {
            out.refused(project, "metadata", &e.to_string(), serving.pid)?;
            return Ok(Err(e.to_string()));
        }
    };
    if let Err(faults) = project::check_staged(project, stage.dir(), &text) {
        out.refused(project, "metadata", &faults, serving.pid)?;
        return Ok(Err(faults));
    }
    stage.put_text(Path::new("metadata.json"), &text)?;
    Ok(Ok((text, unchanged)))
}

/// What `dev` prints: lines for people on stdout (compiler output on stderr), or one JSON
/// document per step with `--json`.
struct Out {
    json: bool,
    color: bool,
    /// cargo's release profile.
    release: bool,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

impl Out {
    fn emit(&self, doc: serde_json::Value, text: &str) -> Result<(), Error> {
        if self.json {
            output::json(&doc, false)?;
        } else {
            output::line(text)?;
        }
        Ok(())
    }

    fn starting(&self, p: &Project, host: &Host) -> Result<(), Error> {
        let lang = match p.kind {
            Kind::Cargo(_) => "rust",
            Kind::Files => "files",
        };
        let socket = host.socket();
        let text = format!(
            "dev: {} ({}) in {}{}",
            p.name,
            if lang == "rust" {
                "cargo build"
            } else {
                "no build step"
            },
            p.dir.display(),
            socket
                .as_ref()
                .map(|s| format!(", core at {}", s.display()))
                .unwrap_or_else(|| ", attached to the running core".into())
        );
        self.emit(
            serde_json::json!({
                "event": "starting", "module": p.name, "dir": p.dir, "build": lang,
                "socket": socket, "attached": socket.is_none(),
            }),
            &text,
        )
    }

    fn ready(
        &self,
        p: &Project,
        pid: Option<u32>,
        built: Duration,
        start: Duration,
        host: &Host,
    ) -> Result<(), Error> {
        let text = format!(
            "dev: {} ready (pid {}): build {:.0} ms, start {:.0} ms; watching {} (Ctrl-C stops){}",
            p.name,
            pid.map_or("?".into(), |p| p.to_string()),
            ms(built),
            ms(start),
            p.dir.display(),
            host.socket()
                .map(|s| format!(
                    "\n     try: logoscore{} call {} …",
                    runtime_flag(&s),
                    p.name
                ))
                .unwrap_or_default()
        );
        self.emit(
            serde_json::json!({
                "event": "ready", "module": p.name, "pid": pid,
                "buildMs": ms(built), "startMs": ms(start),
            }),
            &text,
        )
    }

    fn swapped(
        &self,
        p: &Project,
        s: host::Swapped,
        built: Duration,
        swap: Duration,
    ) -> Result<(), Error> {
        let pid = |p: Option<u32>| p.map_or("?".into(), |p| p.to_string());
        let text = format!(
            "dev: {} swapped (pid {} → {}) at {}: build {:.0} ms, swap {:.0} ms (new process ready in {:.0} ms while the old one served; old one gone {:.0} ms later)",
            p.name,
            pid(s.old_pid),
            pid(s.new_pid),
            clock(),
            ms(built),
            ms(swap),
            ms(s.start),
            ms(s.retire)
        );
        self.emit(
            serde_json::json!({
                "event": "swapped", "module": p.name, "oldPid": s.old_pid, "pid": s.new_pid,
                "buildMs": ms(built), "swapMs": ms(swap), "startMs": ms(s.start),
                "retireMs": ms(s.retire),
            }),
            &text,
        )
    }

    fn reloaded(
        &self,
        p: &Project,
        old: Option<u32>,
        pid: Option<u32>,
        built: Duration,
        took: Duration,
    ) -> Result<(), Error> {
        let text = format!(
            "dev: {}'s metadata changed: reloaded cold (pid {} → {}): build {:.0} ms, reload {:.0} ms",
            p.name,
            old.map_or("?".into(), |p| p.to_string()),
            pid.map_or("?".into(), |p| p.to_string()),
            ms(built),
            ms(took)
        );
        self.emit(
            serde_json::json!({
                "event": "reloaded", "module": p.name, "oldPid": old, "pid": pid,
                "buildMs": ms(built), "reloadMs": ms(took),
            }),
            &text,
        )
    }

    fn unchanged(&self, p: &Project, pid: Option<u32>) -> Result<(), Error> {
        self.emit(
            serde_json::json!({ "event": "unchanged", "module": p.name, "pid": pid }),
            &format!("dev: {} unchanged; nothing to swap", p.name),
        )
    }

    fn build_failed(
        &self,
        p: &Project,
        output: &str,
        took: Duration,
        serving: Option<u32>,
    ) -> Result<(), Error> {
        eprint!("{output}");
        let keeps = match serving {
            Some(pid) => format!("the running version (pid {pid}) keeps serving"),
            None => "nothing is served yet".to_owned(),
        };
        self.emit(
            serde_json::json!({
                "event": "buildFailed", "module": p.name, "buildMs": ms(took),
                "serving": serving, "output": output,
            }),
            &format!(
                "dev: {} build failed after {:.0} ms (compiler output above); {keeps}; fix it and save again",
                p.name,
                ms(took)
            ),
        )
    }

    /// A step refused (`metadata`, `load`, `swap`, `reload`), with why.
    fn refused(
        &self,
        p: &Project,
        step: &str,
        why: &str,
        serving: Option<u32>,
    ) -> Result<(), Error> {
        let keeps = match serving {
            Some(pid) => format!("the running version (pid {pid}) keeps serving"),
            None => "nothing is served".to_owned(),
        };
        let what = match step {
            "metadata" => "metadata is invalid",
            "load" => "could not be loaded",
            "swap" => "new version did not start",
            _ => "could not be reloaded",
        };
        self.emit(
            serde_json::json!({
                "event": format!("{step}Failed"), "module": p.name, "error": why,
                "serving": serving,
            }),
            &format!(
                "dev: {} {what}; {keeps}:\n  {}",
                p.name,
                why.replace('\n', "\n  ")
            ),
        )
    }

    fn stopped(&self, why: &str, clean: bool) -> Result<(), Error> {
        self.emit(
            serde_json::json!({ "event": "stopped", "why": why, "clean": clean }),
            &format!(
                "dev: stopped ({why}){}",
                if clean {
                    ""
                } else {
                    "; the core's guardian ends what is left"
                }
            ),
        )
    }
}

/// `--runtime-dir DIR` when a client would not find the core's socket by default.
fn runtime_flag(socket: &Path) -> String {
    let dir = socket.parent().unwrap_or(socket);
    if crate::client::RuntimeDir::resolve(None).path == dir {
        String::new()
    } else {
        format!(" --runtime-dir {}", dir.display())
    }
}

/// The wall-clock time of day (UTC), for the swap lines.
fn clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}
