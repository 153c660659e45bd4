//! [`Builder`]: every setting of a [`Core`], checked before anything starts.
//!
//! Owns defaults and validation of configuration given from code (the CLI maps its flags and
//! config file onto this). Never starts a process or touches the file system: that is
//! [`Core::start`].

use crate::api::Core;
use crate::error::Error;
use crate::manifest::{Manifest, RestartPolicy};
use crate::name::ModuleName;
use crate::sys::Limits;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Per-module settings that override what its metadata says.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ModuleSettings {
    /// Restart policy instead of the metadata's.
    pub restart: Option<RestartPolicy>,
    /// Deadline for calls to this module instead of the core-wide one.
    pub call_timeout: Option<Duration>,
    /// Resource limits applied before the module's code runs.
    pub limits: Limits,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The operator's grant of file system paths outside the module's own dirs: each path the
    /// module declares in its metadata (`filesystem`) must lie beneath one of these.
    pub filesystem: FsGrant,
    /// The operator's grant of the network (IP sockets) to a module whose metadata says
    /// `"network": true`. Without both it has none.
    pub network: bool,
    /// The operator's confirmation that the module is protected (its metadata says
    /// `"protected": true`; an unconfirmed claim refuses the load). Also protects a module
    /// whose metadata does not ask for it.
    pub protected: bool,
    /// For a protected module: the modules that may call its write methods (those not marked
    /// read-only). Listing a module here also lets it call the protected module.
    pub writers: Vec<String>,
}

/// File system paths an operator grants one module (docs/security.md, "Declared
/// confinement"). A grant only confirms what the module declares in its metadata: a declared
/// path outside the module's own dirs is allowed when it lies beneath a granted one of the
/// same kind (a `write` grant also covers reading). Nothing is given that was not declared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FsGrant {
    /// Paths the module may read beneath.
    pub read: Vec<PathBuf>,
    /// Paths the module may read and write beneath.
    pub write: Vec<PathBuf>,
}

/// Restart timing: exponential backoff from `initial` to `max`, and at most `budget` crash
/// restarts within `window` before the module is `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestartSettings {
    /// First delay (default 100 ms).
    pub initial: Duration,
    /// Largest delay (default 10 s).
    pub max: Duration,
    /// Restarts allowed within `window` (default 5).
    pub budget: u32,
    /// Window of the budget (default 60 s).
    pub window: Duration,
}

impl RestartSettings {
    /// Largest accepted `initial` and `max` delay (one day): a longer backoff is a module
    /// left down, which `restart = "never"` says better.
    pub const MAX_DELAY: Duration = Duration::from_secs(24 * 60 * 60);
    /// Largest accepted budget `window` (30 days).
    pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 24 * 60 * 60);

    /// Checks the bounds [`Builder::build`] enforces: every duration above zero, `initial` at
    /// most `max`, delays at most [`Self::MAX_DELAY`], the window at most
    /// [`Self::MAX_WINDOW`].
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting (`restart.initial`, `restart.max`,
    /// `restart.window`), what is wrong and the bound.
    pub fn check(&self) -> Result<(), Error> {
        let config = |setting: &str, reason: String| Error::Config {
            setting: format!("restart.{setting}"),
            reason,
        };
        for (setting, d, limit) in [
            ("initial", self.initial, Self::MAX_DELAY),
            ("max", self.max, Self::MAX_DELAY),
            ("window", self.window, Self::MAX_WINDOW),
        ] {
            if d.is_zero() {
                return Err(config(setting, "must be greater than zero".into()));
            }
            if d > limit {
                return Err(config(
                    setting,
                    format!(
                        "{d:?} is longer than the largest accepted {limit:?}; use restart = \"never\" to keep a crashed module down"
                    ),
                ));
            }
        }
        if self.initial > self.max {
            return Err(config(
                "initial",
                format!(
                    "{:?} is longer than restart.max ({:?}); the first delay cannot exceed the largest",
                    self.initial, self.max
                ),
            ));
        }
        Ok(())
    }
}

impl Default for RestartSettings {
    fn default() -> Self {
        RestartSettings {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            budget: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// Bounds of the remote module listener (`Builder::listen`); each default documented on its
/// field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteLimits {
    /// Time a new connection has for the TLS handshake and the link `hello` (default 5 s).
    pub handshake_timeout: Duration,
    /// Connections in their handshake at once (default 64); one more pushes out the one that
    /// has waited longest, so idle connections never lock real ones out.
    pub max_handshakes: usize,
    /// Connections at once from one IP address, links of remote modules included (default
    /// 64); more are closed as soon as they are accepted.
    pub max_per_peer: usize,
}

impl Default for RemoteLimits {
    fn default() -> Self {
        RemoteLimits {
            handshake_timeout: Duration::from_secs(5),
            max_handshakes: 64,
            max_per_peer: 64,
        }
    }
}

/// Resolved settings of a core (what [`Builder`] produced).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub modules_dirs: Vec<PathBuf>,
    pub runtime_dir: PathBuf,
    pub data_dir: PathBuf,
    pub host: Option<PathBuf>,
    pub call_timeout: Duration,
    pub start_timeout: Duration,
    pub stop_grace: Duration,
    pub heartbeat: Duration,
    pub module_log: String,
    pub modules: HashMap<String, ModuleSettings>,
    pub grants: Vec<(String, String)>,
    pub denies: Vec<(String, String)>,
    /// (caller, target, methods) granted beyond the metadata.
    pub method_grants: Vec<(String, String, Vec<String>)>,
    /// (caller, target, methods) denied whatever else allows them.
    pub method_denies: Vec<(String, String, Vec<String>)>,
    pub restrictions: Vec<(String, Vec<String>)>,
    pub restart: RestartSettings,
    pub session: logos_session::Config,
    /// Confine modules with the default Landlock ruleset (where the kernel has Landlock).
    pub landlock: bool,
    /// Keep a spare `logos_host` started ahead of need for the next library module's start
    /// (docs/architecture.md, "Spare hosts").
    pub spare_host: bool,
    /// Spans kept for `core.getTraces` (0: modules report none).
    pub spans: usize,
    /// Paths confined modules may not read besides the runtime dir.
    pub hidden: Vec<PathBuf>,
    /// Refuse to start modules that would run unconfined (no Landlock).
    pub strict_confinement: bool,
    /// How module processes are created: `clone3` into their cgroup where the kernel allows
    /// (`Auto`), or always `fork` and a cgroup migration (`Migrate`, when the environment
    /// variable `LOGOS_CLONE3` is `off` as the core is built: a switch to test that path).
    pub spawn_mode: crate::sys::SpawnMode,
    pub operator_tokens: Option<PathBuf>,
    pub access_group: Option<u32>,
    /// Where remote modules connect (`host:port`), when they may.
    pub listen: Option<String>,
    pub remote: RemoteLimits,
}

impl Settings {
    /// The core's own private files for remote modules: its TLS key pair and the credential
    /// store. Inside the data dir, under a name no module can have (names never start with
    /// `.`), and withheld from confined modules.
    pub fn remote_dir(&self) -> PathBuf {
        self.data_dir.join(".logos-core").join("remote")
    }

    /// The restart policy of a module: its configuration override, else its metadata's.
    pub fn restart_policy(&self, manifest: &Manifest) -> RestartPolicy {
        self.modules
            .get(manifest.name.as_str())
            .and_then(|o| o.restart)
            .unwrap_or(manifest.restart)
    }

    /// The deadline of calls to `module`: its own, else the core-wide one.
    pub fn call_timeout(&self, module: &str) -> Duration {
        self.modules
            .get(module)
            .and_then(|m| m.call_timeout)
            .unwrap_or(self.call_timeout)
    }
}

/// Configures and creates a [`Core`].
///
/// # Examples
/// ```no_run
/// # async fn run() -> Result<(), logos_core::Error> {
/// use logos_core::{Core, Value};
/// let core = Core::builder()
///     .modules_dir("/opt/logos/modules")
///     .runtime_dir("/run/user/1000/logos")
///     .build()?
///     .start()
///     .await?;
/// core.load("calc").await?;
/// let five = core.call("calc", "add", vec![Value::from(2), Value::from(3)]).await?;
/// assert_eq!(five, Value::from(5));
/// core.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Builder {
    modules_dirs: Vec<PathBuf>,
    runtime_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    host: Option<PathBuf>,
    call_timeout: Option<Duration>,
    start_timeout: Option<Duration>,
    stop_grace: Option<Duration>,
    heartbeat: Option<Duration>,
    module_log: Option<String>,
    modules: HashMap<String, ModuleSettings>,
    grants: Vec<(String, String)>,
    denies: Vec<(String, String)>,
    method_grants: Vec<(String, String, Vec<String>)>,
    method_denies: Vec<(String, String, Vec<String>)>,
    restrictions: Vec<(String, Vec<String>)>,
    restart: Option<RestartSettings>,
    max_frame: Option<usize>,
    landlock: Option<bool>,
    spare_host: Option<bool>,
    spans: Option<usize>,
    strict_confinement: bool,
    hidden: Vec<PathBuf>,
    operator_tokens: Option<PathBuf>,
    access_group: Option<u32>,
    listen: Option<String>,
    remote: Option<RemoteLimits>,
}

impl Builder {
    /// Accepts remote modules on `addr` (`host:port`; port 0 picks a free port, see
    /// [`Core::listen_addr`](crate::Core::listen_addr)): TCP with TLS 1.3 only, each module
    /// authenticated by a credential from [`Core::grant_remote`](crate::Core::grant_remote).
    /// Default: off, nothing listens on TCP.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Some(addr.into());
        self
    }

    /// Bounds of the remote module listener (handshake time, handshakes at once, connections
    /// per peer address).
    pub fn remote_limits(mut self, limits: RemoteLimits) -> Self {
        self.remote = Some(limits);
        self
    }

    /// Adds a directory holding `<name>/metadata.json` module dirs. Repeatable; earlier dirs win
    /// when two hold the same module name.
    pub fn modules_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.modules_dirs.push(dir.into());
        self
    }

    /// Private directory for sockets and the client token (created 0700). Default:
    /// `$XDG_RUNTIME_DIR/logos`, else `/tmp/logos-<uid>`.
    pub fn runtime_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.runtime_dir = Some(dir.into());
        self
    }

    /// Parent of each module's data dir (`<data_dir>/<name>`). Default:
    /// `$XDG_DATA_HOME/logos`, else `~/.local/share/logos`.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// The `logos_host` binary used to run library modules. Default: `$LOGOS_HOST`, else
    /// `logos_host` beside the running executable (or its parent dir), else on `PATH`.
    pub fn host_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.host = Some(path.into());
        self
    }

    /// Deadline of calls that do not set their own (default 30 s).
    pub fn call_timeout(mut self, t: Duration) -> Self {
        self.call_timeout = Some(t);
        self
    }

    /// Time a module has from spawn to `ready` (default 10 s).
    pub fn start_timeout(mut self, t: Duration) -> Self {
        self.start_timeout = Some(t);
        self
    }

    /// Grace period of a graceful stop before SIGTERM, then SIGKILL (default 5 s).
    pub fn stop_grace(mut self, t: Duration) -> Self {
        self.stop_grace = Some(t);
        self
    }

    /// Interval of the heartbeat ping on each module's control connection (default 1 s); a
    /// module missing three in a row is killed and handled as crashed.
    pub fn heartbeat(mut self, t: Duration) -> Self {
        self.heartbeat = Some(t);
        self
    }

    /// `tracing` filter handed to modules in `LOGOS_LOG` (default `info`).
    pub fn module_log(mut self, filter: impl Into<String>) -> Self {
        self.module_log = Some(filter.into());
        self
    }

    /// Overrides for one module.
    pub fn module(mut self, name: impl Into<String>, settings: ModuleSettings) -> Self {
        self.modules.insert(name.into(), settings);
        self
    }

    /// Lets `caller` call `target` beyond its metadata.
    pub fn grant(mut self, caller: impl Into<String>, target: impl Into<String>) -> Self {
        self.grants.push((caller.into(), target.into()));
        self
    }

    /// Forbids `caller` to call `target`, whatever its metadata says.
    pub fn deny(mut self, caller: impl Into<String>, target: impl Into<String>) -> Self {
        self.denies.push((caller.into(), target.into()));
        self
    }

    /// Lets `caller` call these `methods` of `target` beyond its metadata (widening a
    /// method-level permission, or granting a module it does not name at all, for these
    /// methods only). Built-in `core` methods that change what runs count too.
    pub fn grant_methods<S: Into<String>>(
        mut self,
        caller: impl Into<String>,
        target: impl Into<String>,
        methods: impl IntoIterator<Item = S>,
    ) -> Self {
        self.method_grants.push((
            caller.into(),
            target.into(),
            methods.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Forbids `caller` to call these `methods` of `target`, whatever its metadata and the
    /// grants say (narrowing). The target refuses them with `unauthorized` naming this rule.
    pub fn deny_methods<S: Into<String>>(
        mut self,
        caller: impl Into<String>,
        target: impl Into<String>,
        methods: impl IntoIterator<Item = S>,
    ) -> Self {
        self.method_denies.push((
            caller.into(),
            target.into(),
            methods.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Lets only `allowed_callers` call `target` (the reference implementation's access
    /// policy restriction): their metadata and grants no longer matter for calls to `target`,
    /// and a module not listed may not call it even if it depends on it. Denies still win. A
    /// later restriction of the same target replaces this one.
    pub fn restrict<S: Into<String>>(
        mut self,
        target: impl Into<String>,
        allowed_callers: impl IntoIterator<Item = S>,
    ) -> Self {
        self.restrictions.push((
            target.into(),
            allowed_callers.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Restart backoff and budget.
    pub fn restart(mut self, r: RestartSettings) -> Self {
        self.restart = Some(r);
        self
    }

    /// Largest frame accepted on any connection (default 16 MiB).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = Some(bytes);
        self
    }

    /// Whether modules run under the default Landlock ruleset (docs/security.md). Default:
    /// `true`, unless the environment variable `LOGOS_LANDLOCK` is `off` when the core is built.
    /// `false` runs modules as on a kernel without Landlock: they can read the operator's
    /// client token, the core says so in a warning, and `logoscore info` shows
    /// `confinement: none`. Meant for tests of that path and for debugging a module.
    pub fn landlock(mut self, enabled: bool) -> Self {
        self.landlock = Some(enabled);
        self
    }

    /// Whether the core keeps a spare `logos_host` started ahead of need, so that a library
    /// module's start skips creating a process and loading the host (docs/architecture.md,
    /// "Spare hosts"): after each library module's start, one `logos_host --spare` waits
    /// for the next, confined like a module in all that does not depend on which module, and
    /// confines itself by its module's order before it loads the library. Costs one idle
    /// process (1.5 MiB resident, PSS 0.5 MiB) while library modules run. Default: `true`,
    /// unless the environment variable `LOGOS_SPARE_HOST` is `off` when the core is built.
    pub fn spare_host(mut self, enabled: bool) -> Self {
        self.spare_host = Some(enabled);
        self
    }

    /// How many recent spans of calls the core keeps for `core.getTraces` and `logoscore
    /// trace` (docs/tracing.md); the oldest go first. `0` turns span reports off: modules
    /// are told in `welcome` not to send any, and the core records none of its own. Default:
    /// [`DEFAULT_SPANS`](crate::DEFAULT_SPANS), or the environment variable `LOGOS_SPANS`
    /// (a number, or `off`) when the core is built.
    pub fn spans(mut self, capacity: usize) -> Self {
        self.spans = Some(capacity);
        self
    }

    /// Refuses to start a module that would run unconfined, i.e. where the kernel has no
    /// Landlock (or it is turned off): its load fails with [`Error::Unconfined`] instead of
    /// the warning. Default: `false` (warn once, report `confinement: none`, run).
    pub fn strict_confinement(mut self, strict: bool) -> Self {
        self.strict_confinement = strict;
        self
    }

    /// Withholds `path` (a directory or file) from confined modules, like the runtime dir: for
    /// operator secrets kept elsewhere, such as a `logoscore` config dir's `daemon/` and
    /// `client/`. The operator token store given to [`Builder::operator_tokens`] is withheld
    /// without being named here. Has no effect where modules run unconfined.
    pub fn hide_from_modules(mut self, path: impl Into<PathBuf>) -> Self {
        self.hidden.push(path.into());
        self
    }

    /// A store of named operator tokens (`tokens.json`, see [`crate::operators::TokenStore`])
    /// whose live tokens open the control endpoint like the client token does. The file is
    /// read again whenever it changes and checked on every request, so a revoked or expired
    /// token stops working at once. Default: none (only the client token).
    pub fn operator_tokens(mut self, path: impl Into<PathBuf>) -> Self {
        self.operator_tokens = Some(path.into());
        self
    }

    /// Shares the control endpoint with the OS group `gid`: runtime dir 0710, `core.sock`
    /// 0660 and `client.token` 0640, all group-owned by `gid` (this user must be a member).
    /// Members of the group become operators. Default: private to this user.
    pub fn access_group(mut self, gid: u32) -> Self {
        self.access_group = Some(gid);
        self
    }

    /// Checks the settings and creates the core (not started).
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting: a module name in overrides or grants that is not
    /// a valid name, a zero timeout, a frame cap below 1 KiB, restart timing out of bounds
    /// ([`RestartSettings::check`]).
    pub fn build(self) -> Result<Core, Error> {
        let config = |setting: &str, reason: String| Error::Config {
            setting: setting.to_owned(),
            reason,
        };
        for (name, m) in &self.modules {
            ModuleName::new(name).map_err(|e| config("modules", e.to_string()))?;
            for w in &m.writers {
                ModuleName::new(w).map_err(|e| config("writers", format!("{name}: {e}")))?;
            }
            if !m.writers.is_empty() && !m.protected {
                return Err(config(
                    "writers",
                    format!(
                        "{name} lists writers but is not protected; set protected = true or remove the writers"
                    ),
                ));
            }
        }
        for (a, b) in self.grants.iter().chain(&self.denies) {
            for n in [a, b] {
                ModuleName::new(n).map_err(|e| config("grant/deny", e.to_string()))?;
            }
        }
        for (a, b, methods) in self.method_grants.iter().chain(&self.method_denies) {
            for n in [a, b] {
                ModuleName::new(n).map_err(|e| config("grant/deny", e.to_string()))?;
            }
            if methods.is_empty() {
                return Err(config(
                    "grant/deny",
                    format!(
                        "{a} -> {b}: methods is empty; list methods, or leave methods out to mean every method"
                    ),
                ));
            }
            for m in methods {
                crate::manifest::check_method_name(m)
                    .map_err(|e| config("grant/deny", format!("{a} -> {b}: {e}")))?;
            }
        }
        for (target, callers) in &self.restrictions {
            let t = ModuleName::new(target).map_err(|e| config("restrictions", e.to_string()))?;
            if t.is_reserved() {
                return Err(config(
                    "restrictions",
                    format!(
                        "{target} is a built-in module every module may call and cannot be restricted; remove it from the restrictions"
                    ),
                ));
            }
            for c in callers {
                ModuleName::new(c).map_err(|e| config("restrictions", format!("{target}: {e}")))?;
            }
        }
        let positive = |setting: &str, d: Option<Duration>, default: Duration| {
            let d = d.unwrap_or(default);
            if d.is_zero() {
                Err(config(setting, "must be greater than zero".into()))
            } else {
                Ok(d)
            }
        };
        let mut session = logos_session::Config::default();
        if let Some(max) = self.max_frame {
            if max < 1024 {
                return Err(config("max_frame", format!("{max} bytes is below 1 KiB")));
            }
            session.max_frame = max;
        }
        let call_timeout = positive("call_timeout", self.call_timeout, Duration::from_secs(30))?;
        session.default_call_timeout = call_timeout;
        let restart = self.restart.unwrap_or_default();
        restart.check()?;
        if let Some(addr) = &self.listen
            && logos_remote::credential::split_host_port(addr).is_none()
        {
            return Err(config(
                "listen",
                format!("{addr:?} is not host:port, e.g. 0.0.0.0:7443 or 127.0.0.1:0"),
            ));
        }
        let remote = self.remote.unwrap_or_default();
        if remote.handshake_timeout.is_zero()
            || remote.max_handshakes == 0
            || remote.max_per_peer == 0
        {
            return Err(config(
                "remote limits",
                "every remote limit must be greater than zero".into(),
            ));
        }
        let data_dir = self.data_dir.unwrap_or_else(default_data_dir);
        let remote_dir = data_dir.join(".logos-core");
        let settings = Settings {
            modules_dirs: self.modules_dirs,
            runtime_dir: self.runtime_dir.unwrap_or_else(default_runtime_dir),
            data_dir,
            host: self.host,
            call_timeout,
            start_timeout: positive("start_timeout", self.start_timeout, Duration::from_secs(10))?,
            stop_grace: positive("stop_grace", self.stop_grace, Duration::from_secs(5))?,
            heartbeat: positive("heartbeat", self.heartbeat, Duration::from_secs(1))?,
            module_log: self.module_log.unwrap_or_else(|| "info".to_owned()),
            modules: self.modules,
            grants: self.grants,
            denies: self.denies,
            method_grants: self.method_grants,
            method_denies: self.method_denies,
            restrictions: self.restrictions,
            restart,
            session,
            landlock: self
                .landlock
                .unwrap_or_else(|| std::env::var_os("LOGOS_LANDLOCK").is_none_or(|v| v != "off")),
            spare_host: self
                .spare_host
                .unwrap_or_else(|| std::env::var_os("LOGOS_SPARE_HOST").is_none_or(|v| v != "off")),
            spans: self.spans.unwrap_or_else(spans_from_env),
            strict_confinement: self.strict_confinement,
            spawn_mode: if std::env::var_os("LOGOS_CLONE3").is_some_and(|v| v == "off") {
                crate::sys::SpawnMode::Migrate
            } else {
                crate::sys::SpawnMode::Auto
            },
            hidden: self
                .hidden
                .into_iter()
                .chain(self.operator_tokens.iter().cloned())
                .chain(std::iter::once(remote_dir))
                .collect(),
            operator_tokens: self.operator_tokens,
            access_group: self.access_group,
            listen: self.listen,
            remote,
        };
        Ok(Core::new(settings))
    }
}

/// `$XDG_RUNTIME_DIR/logos`, else `/tmp/logos-<uid>`.
pub fn default_runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("logos"),
        _ => PathBuf::from(format!("/tmp/logos-{}", crate::sys::uid())),
    }
}

/// `$XDG_DATA_HOME/logos`, else `~/.local/share/logos`, else `<runtime dir>/data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("logos");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".local/share/logos");
    }
    default_runtime_dir().join("data")
}

/// `LOGOS_SPANS`: a count, or `off` (0); anything else (or unset) is the default.
fn spans_from_env() -> usize {
    match std::env::var("LOGOS_SPANS") {
        Ok(v) if v == "off" => 0,
        Ok(v) => v.parse().unwrap_or_else(|_| {
            tracing::warn!(
                "LOGOS_SPANS={v:?} is neither a number nor \"off\"; keeping {} spans",
                crate::DEFAULT_SPANS
            );
            crate::DEFAULT_SPANS
        }),
        Err(_) => crate::DEFAULT_SPANS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(r: RestartSettings) -> (String, String) {
        match Core::builder().restart(r).build() {
            Err(Error::Config { setting, reason }) => (setting, reason),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    fn refused_msg(b: Builder) -> String {
        match b.build() {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn restart_timing_out_of_bounds_is_refused_by_name() {
        let d = RestartSettings::default;
        let (setting, reason) = refused(RestartSettings {
            max: Duration::MAX,
            ..d()
        });
        assert_eq!(setting, "restart.max");
        assert!(
            reason.contains("longer than the largest accepted"),
            "{reason}"
        );
        let huge = RestartSettings {
            initial: Duration::MAX,
            max: Duration::MAX,
            ..d()
        };
        assert_eq!(refused(huge).0, "restart.initial");
        let never_forgets = RestartSettings {
            window: Duration::MAX,
            ..d()
        };
        assert_eq!(refused(never_forgets).0, "restart.window");
        let zero = RestartSettings {
            window: Duration::ZERO,
            ..d()
        };
        assert_eq!(refused(zero).0, "restart.window");
        let (setting, reason) = refused(RestartSettings {
            initial: Duration::from_secs(20),
            max: Duration::from_secs(10),
            ..d()
        });
        assert_eq!(setting, "restart.initial");
        assert!(reason.contains("restart.max"), "{reason}");

        let edge = RestartSettings {
            max: RestartSettings::MAX_DELAY,
            window: RestartSettings::MAX_WINDOW,
            ..d()
        };
        assert!(Core::builder().restart(edge).build().is_ok());
        assert!(Core::builder().build().is_ok());
    }

    #[test]
    fn restrictions_are_checked() {
        assert!(
            Core::builder()
                .restrict("calc", ["greeter"])
                .build()
                .is_ok()
        );
        assert!(
            Core::builder()
                .restrict("kv", Vec::<String>::new())
                .build()
                .is_ok()
        );
        let e = refused_msg(Core::builder().restrict("core", ["greeter"]));
        assert!(e.contains("core is a built-in module"), "{e}");
        let e = refused_msg(Core::builder().restrict("calc", ["Bad Name"]));
        assert!(e.starts_with("invalid setting restrictions: calc: "), "{e}");
        let e = refused_msg(Core::builder().restrict("", ["greeter"]));
        assert!(e.starts_with("invalid setting restrictions: "), "{e}");
    }
}
