//! `logoscore run`: the daemon. Merges flags, the config file, the environment and defaults
//! into one [`logos_core::Builder`], sets up logging, starts the core, loads the boot modules,
//! tells the operator what to try next, and on SIGINT/SIGTERM (or `logoscore stop`) shuts
//! everything down in reverse dependency order within a bounded time.
//!
//! Precedence, for every setting: flag, then config file, then environment (`LOGOS_RUNTIME_DIR`,
//! `RUST_LOG`, …), then the core's defaults. Lists given by flags (`-m`, `--load`) replace the
//! config file's lists rather than extending them.
//!
//! Without `-m` (and without `modules_dirs` in the config file) the modules dir is the first of
//! `$XDG_DATA_HOME/logos/modules` (`~/.local/share/logos/modules`) and
//! `/usr/local/lib/logos/modules` that exists; `run` says which it used, and how to add
//! modules when it holds none.
//!
//! With a config dir (`--config-dir`, `$LOGOSCORE_CONFIG_DIR`; the reference's layout, see
//! `config_dir.rs`) the runtime dir defaults to `<config dir>/run`, module data to
//! `<config dir>/data`, named tokens live in `<config dir>/daemon/tokens.json`, and once the
//! core is ready `daemon/state.json` and `client/auto.json` announce it (removed again on
//! exit). Without one, named tokens live in `<runtime dir>/tokens.json`.
//!
//! Output: logs (tracing) on stderr; the "try next" hints on stderr as plain lines, outside the
//! log, and only with the human log format; with `--json` one readiness document on stdout
//! instead (`{"pid", "runtimeDir", "socket", "known", "loaded", "failed", "instance",
//! "configDir", "modulesDirs", "http", "httpUrl"}`; `http` is the bound address of `--http`,
//! null without it), which is also what scripts and tests wait for. Never talks to the core
//! over the socket: it owns the core.
//!
//! With `--http` (or `http` in the config file) it also serves metrics, the dashboard and
//! lifecycle actions (`logos-observe`, docs/operations.md) from before the boot loads until
//! the core has stopped, and feeds the dashboard's log tail from its own log. Under systemd
//! (`$NOTIFY_SOCKET`) it reports readiness, watchdog pings and stopping (`notify.rs`).

use crate::client::{RuntimeDir, Source};
use crate::config::{Config, LogFormat};
use crate::config_dir::{ConfigDir, State};
use crate::error::Error;
use crate::{Ctx, RunArgs, output};
use logos_core::{Builder, Core, ModuleSettings, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Bound on shutdown when neither `--shutdown-timeout` nor the config sets one.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the modules dirs came from, for what `run` tells the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ModulesFrom {
    /// `-m` or the config file.
    Given,
    /// The first default that exists.
    Default(PathBuf),
    /// No default exists (the paths looked at).
    NoDefault(Vec<PathBuf>),
}

/// Everything `run` needs, resolved.
struct Plan {
    builder: Builder,
    runtime: RuntimeDir,
    modules_dirs: Vec<PathBuf>,
    modules_from: ModulesFrom,
    config_dir: Option<ConfigDir>,
    data_dir: Option<PathBuf>,
    access_group: Option<u32>,
    load: Vec<String>,
    load_all: bool,
    log_filter: String,
    log_format: LogFormat,
    shutdown_timeout: Duration,
    /// The HTTP endpoint, if asked for.
    http: Option<logos_observe::HttpConfig>,
}

pub(crate) fn run(ctx: &Ctx, args: RunArgs) -> Result<(), Error> {
    let file = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let plan = plan(ctx, args, file)?;
    // The dashboard's log tail reads what the core logs about each module.
    let tap = plan.http.as_ref().map(|_| logos_observe::LogTap::new());
    init_logging(&plan.log_filter, plan.log_format, tap.clone())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    rt.block_on(serve(ctx.json, plan, tap))
}

/// Refuses the reference's daemon flags this core does not offer, saying why; none of them
/// is ever accepted and ignored.
fn refuse_unsupported(args: &RunArgs) -> Result<(), Error> {
    if !args.module_transport.is_empty() || args.insecure_tcp {
        return Err(Error::Usage(format!(
            "--module-transport {}: this core serves clients over its Unix socket only (run the client on the same host, or reach it through ssh); remote modules join with `--listen HOST:PORT` (TLS 1.3) and a credential from `logoscore remote grant`, see docs/remote-modules.md",
            args.module_transport.join(" ")
        )));
    }
    if args.persist_config {
        return Err(Error::Usage(
            "--persist-config: logoscore reads its settings from a config file instead; write them to logoscore.toml and pass -c logoscore.toml (see README)".into(),
        ));
    }
    match args.access_policy.as_deref() {
        None | Some("enforce") => Ok(()),
        Some(other) => Err(Error::Usage(format!(
            "--access-policy {other:?}: only `enforce` is accepted (and is what this core always does: a module may call what its metadata's dependencies and permissions name); put per-target rules in the config file as [[grant]] and [[deny]]"
        ))),
    }
}

/// Merges flags over the config file over the environment over defaults.
fn plan(ctx: &Ctx, args: RunArgs, file: Config) -> Result<Plan, Error> {
    refuse_unsupported(&args)?;
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (modules_dirs, modules_from): (Vec<PathBuf>, ModulesFrom) = if !args.modules_dirs.is_empty()
    {
        (
            args.modules_dirs.iter().map(|p| absolute(p)).collect(),
            ModulesFrom::Given,
        )
    } else if !file.modules_dirs.is_empty() {
        (file.modules_dirs.clone(), ModulesFrom::Given)
    } else {
        let candidates = default_modules_dirs();
        match candidates.iter().find(|d| d.is_dir()) {
            Some(d) => (vec![d.clone()], ModulesFrom::Default(d.clone())),
            None => (Vec::new(), ModulesFrom::NoDefault(candidates)),
        }
    };
    for dir in &modules_dirs {
        if !dir.is_dir() {
            return Err(Error::Usage(format!(
                "modules dir {} does not exist or is not a directory; it should hold <name>/metadata.json module dirs",
                dir.display()
            )));
        }
    }
    let (load, load_all) = if args.load.is_empty() && !args.load_all {
        (
            file.load.iter().map(ToString::to_string).collect(),
            file.load_all,
        )
    } else {
        (args.load.clone(), args.load_all)
    };
    let config_dir = ctx.config_dir.clone();
    let access_group = args.access_group.as_deref().map(group_id).transpose()?;
    let runtime = match (&ctx.runtime_dir, &file.runtime_dir, &config_dir) {
        (Some(p), _, _) => RuntimeDir {
            path: absolute(p),
            source: Source::Flag,
        },
        (None, Some(p), _) => RuntimeDir {
            path: p.clone(),
            source: Source::Config,
        },
        // A config dir isolates its core: never the shared default runtime dir.
        (None, None, Some(c)) => RuntimeDir {
            path: c.runtime_dir(access_group.is_some()),
            source: Source::Flag,
        },
        (None, None, None) => RuntimeDir::resolve(None),
    };
    let log_level = args
        .log_level
        .clone()
        .or_else(|| ctx.verbose.then(|| "debug".to_owned()));
    let log_filter = match (&log_level, file.log_level.as_ref().map(|f| &f.0)) {
        (Some(f), _) => {
            tracing_subscriber::EnvFilter::try_new(f).map_err(|e| {
                Error::Usage(format!(
                    "--log-level {f:?} is not a log filter ({e}); write e.g. info, debug or logos_core=debug,info"
                ))
            })?;
            f.clone()
        }
        (None, Some(f)) => f.clone(),
        (None, None) => std::env::var("RUST_LOG")
            .ok()
            .filter(|f| !f.is_empty() && tracing_subscriber::EnvFilter::try_new(f).is_ok())
            .unwrap_or_else(|| "info".to_owned()),
    };

    let mut b = Core::builder().runtime_dir(&runtime.path);
    for dir in &modules_dirs {
        b = b.modules_dir(dir);
    }
    let data_dir = args
        .data_dir
        .as_deref()
        .map(absolute)
        .or(file.data_dir.clone())
        .or_else(|| config_dir.as_ref().map(ConfigDir::data_dir));
    if let Some(d) = &data_dir {
        b = b.data_dir(d);
    }
    b = b.operator_tokens(match &config_dir {
        Some(c) => c.tokens_file(),
        None => runtime.path.join("tokens.json"),
    });
    // Modules must not read the operator's package signing keys (packages.rs) either.
    let keys = crate::packages::keys_dir();
    if keys.is_dir() {
        b = b.hide_from_modules(keys);
    }
    if let Some(c) = &config_dir {
        // The config dir's token files are the operator's: modules must not read them.
        b = b
            .hide_from_modules(c.daemon_dir())
            .hide_from_modules(c.client_dir());
    }
    if let Some(gid) = access_group {
        b = b.access_group(gid);
    }
    if let Some(h) = args.host.as_deref().map(absolute).or(file.host.clone()) {
        b = b.host_binary(h);
    }
    b = b.module_log(
        file.module_log
            .as_ref()
            .map_or_else(|| log_filter.clone(), |f| f.0.clone()),
    );
    if let Some(t) = file.call_timeout {
        b = b.call_timeout(t.0);
    }
    if let Some(t) = file.start_timeout {
        b = b.start_timeout(t.0);
    }
    if let Some(t) = file.stop_grace {
        b = b.stop_grace(t.0);
    }
    if let Some(t) = file.heartbeat {
        b = b.heartbeat(t.0);
    }
    if let Some(size) = file.max_frame {
        b = b.max_frame(usize::try_from(size.0).unwrap_or(usize::MAX));
    }
    if let Some(r) = &file.restart {
        b = b.restart(r.settings());
    }
    if let Some(strict) = file.strict_confinement {
        b = b.strict_confinement(strict);
    }
    if let Some(spare) = file.spare_host {
        b = b.spare_host(spare);
    }
    if let Some(n) = file.spans {
        b = b.spans(n);
    }
    for (name, m) in &file.modules {
        let mut s = ModuleSettings::default();
        s.restart = m.restart.map(|r| r.policy());
        s.call_timeout = m.call_timeout.map(|t| t.0);
        s.env = m.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        s.limits.address_space = m.limits.address_space.map(|s| s.0);
        s.limits.open_files = m.limits.open_files;
        s.limits.processes = m.limits.processes;
        s.filesystem.read = m.filesystem.read.clone();
        s.filesystem.write = m.filesystem.write.clone();
        s.network = m.network;
        s.protected = m.protected;
        s.writers = m.writers.iter().map(|w| w.as_str().to_owned()).collect();
        b = b.module(name.as_str(), s);
    }
    for r in &file.grant {
        b = match &r.methods {
            None => b.grant(r.caller.as_str(), r.target.as_str()),
            Some(ms) => b.grant_methods(r.caller.as_str(), r.target.as_str(), ms),
        };
    }
    for r in &file.deny {
        b = match &r.methods {
            None => b.deny(r.caller.as_str(), r.target.as_str()),
            Some(ms) => b.deny_methods(r.caller.as_str(), r.target.as_str(), ms),
        };
    }
    let tls = match (
        args.http_tls_cert
            .as_deref()
            .map(absolute)
            .or(file.http_tls_cert.clone()),
        args.http_tls_key
            .as_deref()
            .map(absolute)
            .or(file.http_tls_key.clone()),
    ) {
        (Some(cert), Some(key)) => Some(logos_observe::TlsFiles { cert, key }),
        (None, None) => None,
        _ => {
            return Err(Error::Usage(
                "HTTPS needs both a certificate and its key: give http_tls_cert and http_tls_key (or --http-tls-cert and --http-tls-key) together".into(),
            ));
        }
    };
    let http = args.http.or(file.http.map(|h| h.0)).map(|addr| {
        let mut c = logos_observe::HttpConfig::new(addr);
        c.insecure = args.http_insecure || file.http_insecure.unwrap_or(false);
        c.metrics_auth = file.http_metrics_auth.unwrap_or(false);
        c.tls = tls.clone();
        c
    });
    if http.is_none() && (args.http_insecure || tls.is_some()) {
        return Err(Error::Usage(
            "--http-insecure and the TLS settings only make sense with --http ADDR (or `http` in the config file)"
                .into(),
        ));
    }
    if let Some(c) = &http {
        c.check().map_err(|e| Error::Usage(e.to_string()))?;
    }
    if let Some(addr) = args.listen.clone().or(file.listen.clone()) {
        b = b.listen(addr);
    }
    if let Some(r) = &file.remote {
        let mut limits = logos_core::RemoteLimits::default();
        if let Some(t) = r.handshake_timeout {
            limits.handshake_timeout = t.0;
        }
        if let Some(n) = r.max_handshakes {
            limits.max_handshakes = n;
        }
        if let Some(n) = r.max_per_peer {
            limits.max_per_peer = n;
        }
        b = b.remote_limits(limits);
    }
    Ok(Plan {
        http,
        builder: b,
        runtime,
        modules_dirs,
        modules_from,
        config_dir,
        data_dir,
        access_group,
        load,
        load_all,
        log_filter,
        log_format: args.log_format.or(file.log_format).unwrap_or_default(),
        shutdown_timeout: args
            .shutdown_timeout
            .or(file.shutdown_timeout.map(|d| d.0))
            .unwrap_or(SHUTDOWN_TIMEOUT),
    })
}

/// `$XDG_DATA_HOME/logos/modules` (else `~/.local/share/logos/modules`), then
/// `/usr/local/lib/logos/modules`.
pub(crate) fn default_modules_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d).join("logos/modules"));
    } else if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(h).join(".local/share/logos/modules"));
    }
    dirs.push(PathBuf::from("/usr/local/lib/logos/modules"));
    dirs
}

/// The gid of `group` (a name, or a number).
fn group_id(group: &str) -> Result<u32, Error> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(Error::Usage(format!(
            "--access-group {group:?}: no such group (create it with `groupadd {group}` and add its members with `usermod -aG {group} USER`)"
        ))),
        Err(e) => Err(Error::Usage(format!(
            "--access-group {group:?}: cannot look up the group: {e}"
        ))),
    }
}

/// Installs the tracing subscriber: `filter` on stderr, human or JSON; and the dashboard's
/// log tap, with its own filter (module output and the core's lines about modules at info
/// and above, whatever the stderr filter lets through).
fn init_logging(
    filter: &str,
    format: LogFormat,
    tap: Option<logos_observe::LogTap>,
) -> Result<(), Error> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| Error::Usage(format!("{filter:?} is not a log filter: {e}")))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr = match format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let tap = tap.map(|t| {
        t.with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target("module", tracing::Level::INFO)
                .with_target("logos_core", tracing::Level::INFO),
        )
    });
    // Fails only if a subscriber is already set, which nothing here does.
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(tap)
        .try_init();
    Ok(())
}

/// SIGINT and SIGTERM as one stream (also `logoscore dev`'s).
pub(crate) struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    pub(crate) fn new() -> Result<Signals, Error> {
        let sig = |k| signal(k).map_err(|e| Error::io("cannot handle SIGINT/SIGTERM", e));
        Ok(Signals {
            int: sig(SignalKind::interrupt())?,
            term: sig(SignalKind::terminate())?,
        })
    }

    pub(crate) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

/// What the boot loads did.
#[derive(Debug, Default)]
struct Boot {
    failed: Vec<(String, String)>,
}

async fn serve(json: bool, plan: Plan, tap: Option<logos_observe::LogTap>) -> Result<(), Error> {
    let mut signals = Signals::new()?;
    match &plan.modules_from {
        ModulesFrom::Given => {}
        ModulesFrom::Default(d) => {
            tracing::info!(dir = %d.display(), "no -m given: using the default modules dir");
        }
        ModulesFrom::NoDefault(looked) => {
            let looked: Vec<String> = looked.iter().map(|d| d.display().to_string()).collect();
            tracing::warn!(
                "no modules dir: -m DIR was not given and none of the defaults exists ({}); the core knows no modules",
                looked.join(", ")
            );
        }
    }
    if let Some(c) = &plan.config_dir {
        if let Some(pid) = c.live_owner() {
            return Err(Error::Usage(format!(
                "a core (pid {pid}) already runs for config dir {}; stop it first (`logoscore --config-dir {} stop`), or use another config dir",
                c.shown(),
                c.path.display()
            )));
        }
        c.prepare(plan.access_group)?;
    }
    if plan.access_group.is_some() {
        reopen_runtime_dir(&plan.runtime.path);
    }
    let core = plan
        .builder
        .clone()
        .build()
        .map_err(Error::Start)?
        .start()
        .await
        .map_err(Error::Start)?;
    // Upgrades of modules loaded from a package dir are probed and rolled back (probation.rs).
    crate::probation::spawn_guards(&core, &plan.modules_dirs);
    // Up before the boot loads, so they can be watched.
    let http = match &plan.http {
        Some(config) => match logos_observe::Http::start(&core, config, tap).await {
            Ok(h) => Some(h),
            Err(e) => {
                bounded_stop(core.shutdown(), plan.shutdown_timeout, &mut signals).await?;
                return Err(Error::Usage(e.to_string()));
            }
        },
        None => None,
    };
    let http_addr = http.as_ref().map(|h| {
        let scheme = plan
            .http
            .as_ref()
            .map_or("http", logos_observe::HttpConfig::scheme);
        format!("{scheme}://{}", h.local_addr())
    });
    let result = serve_core(json, &plan, &core, http_addr, &mut signals).await;
    if let Some(h) = http {
        h.stop().await;
    }
    result
}

/// Boots, announces and runs `core` until a signal or `stop`, then shuts it down.
async fn serve_core(
    json: bool,
    plan: &Plan,
    core: &Core,
    http: Option<String>,
    signals: &mut Signals,
) -> Result<(), Error> {
    let boot = boot(core, &plan.load, plan.load_all);
    tokio::pin!(boot);
    let booted = tokio::select! {
        r = &mut boot => r,
        sig = signals.recv() => {
            tracing::info!("{sig} while loading modules: stopping once the current load ends");
            let finish = async {
                let _ = (&mut boot).await;
                core.shutdown().await;
            };
            return bounded_stop(finish, plan.shutdown_timeout, signals).await;
        }
    };
    let report = match booted {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("stopping: a boot module could not be loaded: {e}");
            bounded_stop(core.shutdown(), plan.shutdown_timeout, signals).await?;
            return Err(e);
        }
    };
    // Announced in the config dir from here until this function returns, however it does.
    let _announced = match &plan.config_dir {
        Some(c) => match announce_in(c, core, plan) {
            Ok(a) => Some(a),
            Err(e) => {
                bounded_stop(core.shutdown(), plan.shutdown_timeout, signals).await?;
                return Err(e);
            }
        },
        None => None,
    };
    announce(json, core, plan, &report, http.clone())?;
    crate::notify::ready(&format!(
        "{} modules loaded{}",
        core.modules()
            .iter()
            .filter(|m| m.state.is_loaded())
            .count(),
        http.map(|a| format!(", dashboard at http://{a}/"))
            .unwrap_or_default()
    ));
    let watchdog = crate::notify::spawn_watchdog(core);

    let result = tokio::select! {
        sig = signals.recv() => {
            tracing::info!("{sig}: stopping every module (again to exit at once)");
            crate::notify::stopping();
            bounded_stop(core.shutdown(), plan.shutdown_timeout, signals).await
        }
        () = core.stopped() => Ok(()),
    };
    if let Some(w) = watchdog {
        w.abort();
    }
    result
}

/// A runtime dir left shared (0710) by a core that died: back to 0700, which the core checks
/// before it shares it again.
fn reopen_runtime_dir(dir: &Path) {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    if let Ok(meta) = std::fs::symlink_metadata(dir)
        && meta.is_dir()
        && meta.uid() == rustix::process::getuid().as_raw()
        && meta.mode() & 0o7777 == 0o710
    {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
}

/// The config dir's announcement of this core; withdrawn when dropped.
struct Announced {
    dir: ConfigDir,
    instance: String,
    token: logos_core::Token,
}

impl Drop for Announced {
    fn drop(&mut self) {
        self.dir.withdraw(&self.instance, &self.token);
    }
}

/// Writes `client/auto.json`, `client/config.json` and `daemon/state.json` for a ready core.
fn announce_in(dir: &ConfigDir, core: &Core, plan: &Plan) -> Result<Announced, Error> {
    let token = logos_core::read_client_token(&core.client_token_path()).map_err(Error::Start)?;
    let socket = core.control_socket();
    let endpoint = serde_json::json!({ "transports": [{ "protocol": "local", "path": socket }] });
    let state = State {
        version: 1,
        instance_id: core.instance_id().to_owned(),
        pid: std::process::id(),
        started_at: logos_core::operators::rfc3339(std::time::SystemTime::now()),
        logoscore_version: env!("CARGO_PKG_VERSION").to_owned(),
        config_dir: dir.path.clone(),
        runtime_dir: plan.runtime.path.clone(),
        socket,
        data_dir: plan.data_dir.clone(),
        modules_dirs: plan.modules_dirs.clone(),
        resolved: serde_json::json!({
            "modules": { "core_service": endpoint, "capability_module": endpoint }
        }),
    };
    dir.announce(&state, &token, plan.access_group)?;
    Ok(Announced {
        dir: dir.clone(),
        instance: state.instance_id,
        token,
    })
}

/// Loads the boot modules. With `load_all`, a module that cannot be loaded is reported and the
/// rest keep running; a module named explicitly must load, or `run` fails.
async fn boot(core: &Core, names: &[String], load_all: bool) -> Result<Boot, Error> {
    let mut report = Boot::default();
    if load_all {
        let all: Vec<String> = core.modules().into_iter().map(|m| m.name).collect();
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        if let Err(e) = core.load_many(&refs).await {
            tracing::warn!(
                "loading every module in one plan failed ({e}); loading them one by one"
            );
            for name in &all {
                if let Err(e) = core.load(name).await {
                    tracing::error!(module = %name, "not loaded: {e}");
                    report.failed.push((name.clone(), e.to_string()));
                }
            }
        }
    }
    if !names.is_empty() {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        core.load_many(&refs).await.map_err(|e| Error::Remote {
            code: e.code(),
            message: crate::error::tidy(e.to_string()),
        })?;
    }
    Ok(report)
}

/// Runs `stop` within `limit`; a second signal abandons it (the core's guardian process kills
/// what is left once this process exits).
async fn bounded_stop(
    stop: impl std::future::Future<Output = ()>,
    limit: Duration,
    signals: &mut Signals,
) -> Result<(), Error> {
    tokio::select! {
        r = tokio::time::timeout(limit, stop) => r.map_err(|_| Error::ShutdownTimeout { timeout: limit }),
        sig = signals.recv() => Err(Error::Usage(format!(
            "{sig} again while stopping: exiting now; the core's guardian kills the modules that are left"
        ))),
    }
}

/// Tells the operator the core is up: a JSON document on stdout, or hints on stderr.
fn announce(
    json: bool,
    core: &Core,
    plan: &Plan,
    boot: &Boot,
    http: Option<String>,
) -> Result<(), Error> {
    let infos = core.modules();
    let loaded: Vec<String> = infos
        .iter()
        .filter(|m| m.state.is_loaded())
        .map(|m| m.name.clone())
        .collect();
    // Which default modules dir, and how to fill it: for people, also beside the JSON document.
    if plan.log_format == LogFormat::Human {
        eprint!("{}", modules_dir_note(&plan.modules_from, infos.is_empty()));
    }
    if json {
        let failed: Vec<serde_json::Value> = boot
            .failed
            .iter()
            .map(|(m, e)| serde_json::json!({ "module": m, "error": e }))
            .collect();
        output::json(
            &serde_json::json!({
                "pid": std::process::id(),
                "runtimeDir": plan.runtime.path,
                "socket": core.control_socket(),
                "known": infos.len(),
                "loaded": loaded,
                "failed": failed,
                "instance": core.instance_id(),
                "configDir": plan.config_dir.as_ref().map(|c| &c.path),
                "modulesDirs": plan.modules_dirs,
                "http": http.as_deref().and_then(|u| u.split_once("://")).map(|(_, a)| a),
                "httpUrl": http,
                "listen": core.listen_addr().map(|a| a.to_string()),
            }),
            false,
        )?;
        return Ok(());
    }
    if plan.log_format == LogFormat::Json {
        return Ok(());
    }
    let me = program(&plan.runtime, plan.config_dir.as_ref());
    let mut text = format!(
        "\nlogoscore: core running (pid {}), control socket {}\n",
        std::process::id(),
        core.control_socket().display()
    );
    if let Some(addr) = core.listen_addr() {
        text.push_str(&format!(
            "  remote modules connect to {addr} (TLS 1.3); issue a credential with `logoscore remote grant NAME`\n"
        ));
    }
    text.push_str(&match loaded.len() {
        0 if infos.is_empty() => {
            "  no modules known: point -m at a dir holding <name>/metadata.json, or add modules to the modules dir\n".to_owned()
        }
        0 => format!("  {} modules known, none loaded\n", infos.len()),
        n => format!(
            "  {n} of {} modules loaded: {}\n",
            infos.len(),
            loaded.join(", ")
        ),
    });
    for (m, _) in &boot.failed {
        text.push_str(&format!("  {m} could not be loaded (see the log above)\n"));
    }
    if let Some(u) = &http {
        text.push_str(&format!(
            "  dashboard {u}/ (log in with the client token), metrics {u}/metrics\n"
        ));
    }
    text.push_str("Try, from another terminal:\n");
    let mut tries: Vec<(String, &str)> = vec![(format!("{me} list"), "modules, states, pids")];
    match example_call(core, &loaded) {
        Some((module, call)) => {
            tries.push((format!("{me} info {module}"), "its methods and events"));
            tries.push((format!("{me} call {call}"), "call a method"));
        }
        None if !infos.is_empty() => {
            tries.push((format!("{me} load {}", infos[0].name), "load a module"));
        }
        None => {}
    }
    tries.push((format!("{me} watch"), "follow events (Ctrl-C ends)"));
    tries.push((format!("{me} stop"), "stop the core (or Ctrl-C here)"));
    let width = tries
        .iter()
        .map(|(c, _)| c.chars().count())
        .max()
        .unwrap_or(0);
    for (c, what) in tries {
        text.push_str(&format!("  {c:<width$}  {what}\n"));
    }
    eprint!("{text}");
    Ok(())
}

/// What `run` says about a default modules dir: which it used, and how to fill it when empty
/// (or, when none exists, where to create one).
fn modules_dir_note(from: &ModulesFrom, empty: bool) -> String {
    let add = "put each module in its own dir there (<dir>/<name>/metadata.json beside the module's library or executable; `cargo xtask stage` lays out the example modules in target/debug/modules), or pass -m DIR";
    match from {
        ModulesFrom::Given => String::new(),
        ModulesFrom::Default(d) if empty => format!(
            "logoscore: modules dir {} (the default; -m DIR uses another) holds no modules: {add}\n",
            d.display()
        ),
        ModulesFrom::Default(d) => format!(
            "logoscore: modules dir {} (the default; -m DIR uses another)\n",
            d.display()
        ),
        ModulesFrom::NoDefault(looked) => {
            let looked: Vec<String> = looked.iter().map(|d| d.display().to_string()).collect();
            format!(
                "logoscore: no modules dir: -m DIR was not given and none of the defaults exists ({}); create the first and {add}\n",
                looked.join(", ")
            )
        }
    }
}

/// How to run this binary from another terminal: `logoscore` when that name on `PATH` finds
/// it, else its full path; plus `--runtime-dir` when a client would not find this core alone.
fn program(runtime: &RuntimeDir, config_dir: Option<&ConfigDir>) -> String {
    let exe = std::env::current_exe().ok();
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            let candidate = d.join("logoscore");
            candidate.is_file()
                && exe.as_ref().is_none_or(|e| {
                    std::fs::canonicalize(&candidate).ok() == std::fs::canonicalize(e).ok()
                })
        })
    });
    let mut me = match (&exe, on_path) {
        (Some(e), false) => e.display().to_string(),
        _ => "logoscore".to_owned(),
    };
    match config_dir {
        // A client finds this core through its config dir, from the flag or the environment.
        Some(c) if ConfigDir::resolve(None).is_none_or(|env| env.path != c.path) => {
            me.push_str(&format!(" --config-dir {}", c.path.display()));
        }
        Some(_) => {}
        None if RuntimeDir::resolve(None).path != runtime.path => {
            me.push_str(&format!(" --runtime-dir {}", runtime.path.display()));
        }
        None => {}
    }
    me
}

/// `calc add 2 3`, or the first method of the first loaded module with sample arguments.
fn example_call(core: &Core, loaded: &[String]) -> Option<(String, String)> {
    let mut order: Vec<&String> = loaded.iter().filter(|n| n.as_str() == "calc").collect();
    order.extend(loaded.iter().filter(|n| n.as_str() != "calc"));
    for module in order {
        let Ok(iface) = core.interface(module) else {
            continue;
        };
        let methods = iface
            .get("methods")
            .and_then(Value::as_list)
            .unwrap_or_default();
        let Some(method) = methods.first() else {
            continue;
        };
        let Some(name) = method.get("name").and_then(Value::as_str) else {
            continue;
        };
        let mut next_int = 2;
        let args: Vec<String> = method
            .get("params")
            .and_then(Value::as_list)
            .unwrap_or_default()
            .iter()
            .map(
                |p| match p.get("type").and_then(Value::as_str).unwrap_or("any") {
                    "int" => {
                        next_int += 1;
                        (next_int - 1).to_string()
                    }
                    "float" => "1.5".to_owned(),
                    "bool" => "true".to_owned(),
                    "text" => "hello".to_owned(),
                    t if t.starts_with("list") => "'[]'".to_owned(),
                    t if t.starts_with("map") => "'{}'".to_owned(),
                    _ => "null".to_owned(),
                },
            )
            .collect();
        let mut call = format!("{module} {name}");
        for a in args {
            call.push(' ');
            call.push_str(&a);
        }
        return Some((module.clone(), call));
    }
    None
}
