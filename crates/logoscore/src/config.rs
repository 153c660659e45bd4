//! `logoscore.toml`: the declarative config of `logoscore run`, and the duration and size
//! notations shared by the config file and the command line.
//!
//! Owns parsing and checking only: every key is known (`deny_unknown_fields`), every value has
//! its type, and every error names the file, the line and column, the key path and the fix.
//! Relative paths are made absolute against the config file's directory. Never builds a core
//! and never merges with flags: `cmd/run.rs` does that.
//!
//! Where an error points comes from the parser, never from scanning the text again. Values are
//! checked while they are read, inside the deserializer (module names are [`Name`]s, log
//! filters [`LogFilter`]s, durations [`Dur`]s), so every error carries the TOML parser's span and
//! `serde_path_to_error`'s key path (`grant[1].target`, `modules.calc.limits.open_files`,
//! entries of an array of tables counted from 0). The one check that needs several values
//! (restart timing: `initial` ≤ `max`, …) runs after parsing and reads the span of the value
//! it refuses, kept by [`toml::Spanned`].
//!
//! ```toml
//! modules_dirs = ["modules"]          # relative to this file
//! load = ["greeter"]                  # started at boot, dependencies first
//! runtime_dir = "/run/user/1000/logos"
//! log_level = "info"                  # a tracing filter
//! log_format = "human"                # or "json"
//! call_timeout = "30s"
//!
//! [restart]                           # backoff and budget of crash restarts
//! budget = 5
//! window = "60s"
//!
//! [modules.calc]
//! restart = "on-failure"              # always | on-failure | never
//! call_timeout = "5s"
//! env = { RUST_BACKTRACE = "1" }
//! limits = { address_space = "1GiB", open_files = 256, processes = 64 }
//! filesystem = { read = ["/srv/calc"] }  # grants what its metadata declares
//!
//! [[grant]]                           # greeter may also call calc.mul
//! caller = "greeter"
//! target = "calc"
//! methods = ["mul"]                   # left out: every method
//!
//! [[deny]]                            # … and never kv.set (a deny beats every grant)
//! caller = "greeter"
//! target = "kv"
//! methods = ["set"]
//! network = true                      # grants "network": true of its metadata
//!
//! [modules.wallet]
//! protected = true                    # confirms "protected": true of its metadata
//! writers = ["node"]                  # only node may call its write methods
//! ```

use logos_core::ModuleName;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Log output format of `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// One line per record for people.
    #[default]
    Human,
    /// One JSON object per record for machines.
    Json,
}

/// Restart policy as written in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Restart {
    Always,
    OnFailure,
    Never,
}

impl Restart {
    pub fn policy(self) -> logos_core::RestartPolicy {
        match self {
            Restart::Always => logos_core::RestartPolicy::Always,
            Restart::OnFailure => logos_core::RestartPolicy::OnFailure,
            Restart::Never => logos_core::RestartPolicy::Never,
        }
    }
}

/// A duration written as `"250ms"`, `"5s"`, `"1.5m"`, `"2h"`, or a whole number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dur(pub Duration);

/// A byte count written as a whole number or with a unit (`"512MiB"`, `"1GiB"`, `"64KB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Size(pub u64);

/// Where the HTTP endpoint listens: `"127.0.0.1:9464"`, `"[::1]:9464"`, `"localhost:9464"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HttpAddr(pub std::net::SocketAddr);

/// `ADDR:PORT` as [`HttpAddr`] reads it (`localhost` is `127.0.0.1`).
pub(crate) fn parse_http_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    let t = s.trim();
    let t = match t.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => t.to_owned(),
    };
    t.parse().map_err(|_| {
        format!(
            "{s:?} is not an address to listen on: write IP:PORT, e.g. 127.0.0.1:9464, [::1]:9464 or localhost:9464 (port 0 picks a free one)"
        )
    })
}

impl<'de> Deserialize<'de> for HttpAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HttpAddr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address such as \"127.0.0.1:9464\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HttpAddr, E> {
                parse_http_addr(s).map(HttpAddr).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A `tracing` filter (`"info"`, `"logos_core=debug,info"`), checked when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogFilter(pub String);

/// A module name, checked when read (the core's [`ModuleName`] rules).
///
/// The check runs inside the deserializer's visitor rather than after it (as
/// `ModuleName`'s own `Deserialize` does), so the TOML parser attaches the span of the very
/// value, even inside an array.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Name(pub ModuleName);

impl Name {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Lets the `modules` table be queried with a `&str`.
impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// Directories holding `<name>/metadata.json`.
    #[serde(default)]
    pub modules_dirs: Vec<PathBuf>,
    /// Modules to load at boot.
    #[serde(default)]
    pub load: Vec<Name>,
    /// Load every known module at boot.
    #[serde(default)]
    pub load_all: bool,
    /// Private dir for sockets and the client token.
    pub runtime_dir: Option<PathBuf>,
    /// Parent of the modules' data dirs.
    pub data_dir: Option<PathBuf>,
    /// The `logos_host` binary.
    pub host: Option<PathBuf>,
    /// Log filter of the core.
    pub log_level: Option<LogFilter>,
    /// Log format.
    pub log_format: Option<LogFormat>,
    /// Log filter handed to modules (`LOGOS_LOG`); defaults to `log_level`.
    pub module_log: Option<LogFilter>,
    /// Deadline of calls.
    pub call_timeout: Option<Dur>,
    /// Time a module has to become ready.
    pub start_timeout: Option<Dur>,
    /// Grace of a graceful module stop before SIGTERM.
    pub stop_grace: Option<Dur>,
    /// Heartbeat interval.
    pub heartbeat: Option<Dur>,
    /// Bound on the whole shutdown.
    pub shutdown_timeout: Option<Dur>,
    /// Largest frame on any connection.
    pub max_frame: Option<Size>,
    /// Crash restart timing.
    pub restart: Option<RestartConfig>,
    /// Per-module overrides, keyed by module name.
    #[serde(default)]
    pub modules: BTreeMap<Name, ModuleConfig>,
    /// Extra calls allowed: `{ caller = "a", target = "b" }`.
    #[serde(default)]
    pub grant: Vec<Rule>,
    /// Calls forbidden whatever the metadata says.
    #[serde(default)]
    pub deny: Vec<Rule>,
    /// Serve metrics and the dashboard over HTTP here.
    pub http: Option<HttpAddr>,
    /// Allow `http` on a non-loopback address (plain HTTP).
    pub http_insecure: Option<bool>,
    /// HTTPS: the PEM certificate chain and key.
    pub http_tls_cert: Option<PathBuf>,
    pub http_tls_key: Option<PathBuf>,
    /// Require an operator token for `/metrics` on loopback too.
    pub http_metrics_auth: Option<bool>,
    /// Refuse to start modules that would run unconfined (no Landlock).
    pub strict_confinement: Option<bool>,
    /// Keep a spare `logos_host` ready for the next library module's start (default on).
    pub spare_host: Option<bool>,
    /// Recent spans of calls kept for `logoscore trace` (0: modules report none).
    pub spans: Option<usize>,
    /// Where remote modules connect (`host:port`, TLS 1.3); off when absent.
    pub listen: Option<String>,
    /// Bounds of the remote module listener.
    pub remote: Option<RemoteConfig>,
}

/// `[remote]`: bounds of the remote module listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoteConfig {
    /// Time for the TLS handshake and the link hello (default 5 s).
    pub handshake_timeout: Option<Dur>,
    /// Connections in their handshake at once (default 64).
    pub max_handshakes: Option<usize>,
    /// Connections at once from one IP address (default 64).
    pub max_per_peer: Option<usize>,
}

/// `[restart]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestartConfig {
    pub initial: Option<Spanned<Dur>>,
    pub max: Option<Spanned<Dur>>,
    pub budget: Option<u32>,
    pub window: Option<Spanned<Dur>>,
}

impl RestartConfig {
    /// The core's restart settings: what the file says over the defaults.
    pub fn settings(&self) -> logos_core::RestartSettings {
        let mut s = logos_core::RestartSettings::default();
        if let Some(v) = &self.initial {
            s.initial = v.get_ref().0;
        }
        if let Some(v) = &self.max {
            s.max = v.get_ref().0;
        }
        if let Some(v) = self.budget {
            s.budget = v;
        }
        if let Some(v) = &self.window {
            s.window = v.get_ref().0;
        }
        s
    }

    /// Where `setting` (`restart.max`, as the core's restart check names it) is written.
    fn span_of(&self, setting: &str) -> Option<Range<usize>> {
        match setting.strip_prefix("restart.")? {
            "initial" => self.initial.as_ref().map(Spanned::span),
            "max" => self.max.as_ref().map(Spanned::span),
            "window" => self.window.as_ref().map(Spanned::span),
            _ => None,
        }
    }
}

/// `[modules.<name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModuleConfig {
    pub restart: Option<Restart>,
    pub call_timeout: Option<Dur>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Paths outside its own dirs the module may use, confirming its metadata's `filesystem`.
    #[serde(default)]
    pub filesystem: FilesystemConfig,
    /// Grants the network to a module whose metadata declares `"network": true`.
    #[serde(default)]
    pub network: bool,
    /// Confirms (or imposes) that the module is protected.
    #[serde(default)]
    pub protected: bool,
    /// For a protected module: the modules that may call its write methods.
    #[serde(default)]
    pub writers: Vec<Name>,
}

/// `[modules.<name>.filesystem]`: `read = [...]`, `write = [...]`, relative to this file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilesystemConfig {
    #[serde(default)]
    pub read: Vec<PathBuf>,
    #[serde(default)]
    pub write: Vec<PathBuf>,
}

/// `[modules.<name>.limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsConfig {
    /// Virtual memory (RLIMIT_AS).
    pub address_space: Option<Size>,
    /// Open file descriptors (RLIMIT_NOFILE).
    pub open_files: Option<u64>,
    /// Processes and threads of the user (RLIMIT_NPROC).
    pub processes: Option<u64>,
}

/// One grant or deny: the whole target, or only `methods` of it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rule {
    pub caller: Name,
    pub target: Name,
    /// Only these methods (a grant widens, a deny narrows); absent: every method.
    pub methods: Option<Vec<String>>,
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type or form.
    #[error("{}{}: {}{message}", path.display(), at(*line, *column), key.as_ref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        /// 1-based, when known.
        line: Option<usize>,
        column: Option<usize>,
        /// Key path, when known, e.g. `modules.calc.call_timeout` or `grant[1].target`
        /// (entries of an array of tables counted from 0).
        key: Option<String>,
        message: String,
    },
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

impl Config {
    /// Reads and checks `path`; relative paths inside become relative to its directory.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Invalid`] naming line and key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Config::parse(&text, path, &base)
    }

    /// Parses `text` (read from `path`, for messages); relative paths are joined to `base`.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Config, ConfigError> {
        let invalid = |key: Option<String>, span: Option<Range<usize>>, message: String| {
            let (line, column) = span.map_or((None, None), |s| {
                let (l, c) = line_col(text, s.start);
                (Some(l), Some(c))
            });
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                key,
                message,
            }
        };
        let document = toml::Deserializer::parse(text)
            .map_err(|e| invalid(None, e.span(), e.message().trim_end().to_owned()))?;
        let mut config: Config = serde_path_to_error::deserialize(document).map_err(|e| {
            let key = key_path(e.path());
            let e = e.into_inner();
            invalid(key, e.span(), e.message().trim_end().to_owned())
        })?;
        config
            .check()
            .map_err(|(key, span, message)| invalid(Some(key), span, message))?;
        let absolute = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        config.modules_dirs.iter_mut().for_each(absolute);
        config.runtime_dir.iter_mut().for_each(absolute);
        config.data_dir.iter_mut().for_each(absolute);
        config.host.iter_mut().for_each(absolute);
        for m in config.modules.values_mut() {
            m.filesystem.read.iter_mut().for_each(absolute);
            m.filesystem.write.iter_mut().for_each(absolute);
        }
        Ok(config)
    }

    /// Checks what no single value can: restart timing (`initial` ≤ `max`, bounds). The error
    /// is the refused value's key, its span and the message.
    fn check(&self) -> Result<(), (String, Option<Range<usize>>, String)> {
        // Out-of-range restart timing would fail the core's builder later (and, unchecked,
        // once overflowed the restart task): refuse it here, where the line is known.
        if let Some(r) = &self.restart
            && let Err(logos_core::Error::Config { setting, reason }) = r.settings().check()
        {
            let span = r.span_of(&setting);
            return Err((setting, span, reason));
        }
        Ok(())
    }
}

/// The key path of a deserialization error (`grant[1].target`), without the private field
/// names `Spanned` deserializes through; `None` at the document's root.
fn key_path(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut key = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: k } => push_key(&mut key, k),
            Segment::Enum { variant } => push_key(&mut key, variant),
            Segment::Unknown => push_key(&mut key, "?"),
        }
    }
    (!key.is_empty()).then_some(key)
}

fn push_key(path: &mut String, key: &str) {
    if key.starts_with("$__serde_spanned_private") {
        return;
    }
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    // `get` rather than slicing: a span that is not on a char boundary must not panic.
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// Parses `"250ms"`, `"5s"`, `"1.5m"`, `"2h"`; also used by `--timeout`.
///
/// # Errors
/// A message saying what form is expected.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        "" => {
            return Err(format!(
                "{s:?} has no unit; write e.g. \"500ms\", \"30s\", \"2m\" or \"1h\""
            ));
        }
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?}; use ms, s, m or h (e.g. \"30s\")"
            ));
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write e.g. \"500ms\", \"30s\" or \"2m\""))?;
    let d = Duration::try_from_secs_f64(n * scale).map_err(|_| format!("{s:?} is out of range"))?;
    if d.is_zero() {
        return Err(format!("{s:?} must be greater than zero"));
    }
    Ok(d)
}

/// Parses `"512MiB"`, `"1GiB"`, `"64KB"`, `"4096"`.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?}; use B, KiB, MiB, GiB (or KB, MB, GB), e.g. \"512MiB\""
            ));
        }
    };
    let n: u64 = num.parse().map_err(|_| {
        format!("{s:?} is not a size; write a whole number of bytes or e.g. \"512MiB\"")
    })?;
    n.checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too large"))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration such as \"500ms\", \"30s\", \"2m\" or a whole number of seconds",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                parse_duration(s).map(Dur).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                match u64::try_from(n) {
                    Ok(secs) if secs > 0 => Ok(Dur(Duration::from_secs(secs))),
                    _ => Err(E::custom(format!(
                        "{n} must be a positive number of seconds"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"512MiB\" or a whole number of bytes")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
                parse_size(s).map(Size).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
                u64::try_from(n)
                    .map(Size)
                    .map_err(|_| E::custom(format!("{n} must not be negative")))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for LogFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LogFilter;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a log filter such as \"info\" or \"logos_core=debug,info\"")
            }
            fn visit_str<E: de::Error>(self, f: &str) -> Result<LogFilter, E> {
                match tracing_subscriber::EnvFilter::try_new(f) {
                    Ok(_) => Ok(LogFilter(f.to_owned())),
                    Err(e) => Err(E::custom(format!(
                        "{f:?} is not a log filter ({e}); write e.g. \"info\" or \"logos_core=debug,info\""
                    ))),
                }
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a module name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Name, E> {
                ModuleName::new(s).map(Name).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/logoscore.toml"), Path::new("/etc"))
    }

    fn invalid(text: &str) -> (Option<usize>, Option<String>, String) {
        match parse(text) {
            Err(ConfigError::Invalid {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn a_full_config_parses() {
        let c = parse(
            r#"
modules_dirs = ["modules", "/opt/logos"]
load = ["greeter"]
runtime_dir = "run"
log_level = "debug"
log_format = "json"
call_timeout = "5s"
shutdown_timeout = 20

[restart]
initial = "50ms"
budget = 3

[modules.calc]
restart = "never"
call_timeout = "1.5s"
env = { A = "1" }
limits = { address_space = "1GiB", open_files = 64 }
filesystem = { read = ["/srv/calc", "share"], write = ["/var/cache/calc"] }
network = true
protected = true
writers = ["greeter"]

[[grant]]
caller = "chat"
target = "kv"
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.modules_dirs,
            [PathBuf::from("/etc/modules"), PathBuf::from("/opt/logos")]
        );
        assert_eq!(c.runtime_dir, Some(PathBuf::from("/etc/run")));
        assert_eq!(c.log_format, Some(LogFormat::Json));
        assert_eq!(c.shutdown_timeout, Some(Dur(Duration::from_secs(20))));
        let calc = &c.modules["calc"];
        assert_eq!(calc.restart, Some(Restart::Never));
        assert_eq!(calc.call_timeout, Some(Dur(Duration::from_millis(1500))));
        assert_eq!(calc.limits.address_space, Some(Size(1 << 30)));
        assert_eq!(calc.limits.open_files, Some(64));
        assert_eq!(
            calc.filesystem.read,
            [PathBuf::from("/srv/calc"), PathBuf::from("/etc/share")]
        );
        assert_eq!(calc.filesystem.write, [PathBuf::from("/var/cache/calc")]);
        assert!(calc.network);
        assert!(calc.protected);
        assert_eq!(calc.writers[0], "greeter");
        assert_eq!(c.grant[0].target, "kv");
        assert_eq!(c.restart.as_ref().and_then(|r| r.budget), Some(3));
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let (line, key, message) = invalid("load = []\nmodules_dir = [\"x\"]\n");
        assert_eq!(line, Some(2));
        assert_eq!(key.as_deref(), Some("modules_dir"));
        assert!(message.contains("unknown field `modules_dir`"), "{message}");
        assert!(
            message.contains("modules_dirs"),
            "lists the expected keys: {message}"
        );
    }

    #[test]
    fn an_unknown_key_in_a_module_table_is_named_with_its_line() {
        let (line, key, message) =
            invalid("[modules.calc]\nrestart = \"never\"\ntimeout = \"5s\"\n");
        assert_eq!(line, Some(3));
        assert_eq!(key.as_deref(), Some("modules.calc.timeout"));
        assert!(message.contains("call_timeout"), "{message}");
    }

    #[test]
    fn strict_confinement_and_filesystem_grants_are_checked() {
        assert_eq!(
            parse("spare_host = false\n")
                .ok()
                .and_then(|c| c.spare_host),
            Some(false)
        );
        assert!(parse("spare_host = \"no\"\n").is_err());
        assert_eq!(
            parse("strict_confinement = true\n")
                .ok()
                .and_then(|c| c.strict_confinement),
            Some(true)
        );
        let (line, key, message) =
            invalid("[modules.calc]\nfilesystem = { read = [\"/a\"], exec = [\"/b\"] }\n");
        assert_eq!(line, Some(2));
        assert_eq!(key.as_deref(), Some("modules.calc.filesystem.exec"));
        assert!(message.contains("`read` or `write`"), "{message}");
    }

    #[test]
    fn a_wrong_type_is_named_with_its_line() {
        let (line, key, message) = invalid("# comment\nload_all = \"yes\"\n");
        assert_eq!(line, Some(2));
        assert_eq!(key.as_deref(), Some("load_all"));
        assert!(message.contains("bool"), "{message}");
    }

    #[test]
    fn a_bad_duration_says_the_expected_form() {
        let (line, key, message) = invalid("\n\n[modules.kv]\ncall_timeout = \"5 parsecs\"\n");
        assert_eq!(line, Some(4));
        assert_eq!(key.as_deref(), Some("modules.kv.call_timeout"));
        assert!(message.contains("ms, s, m or h"), "{message}");
    }

    #[test]
    fn a_bad_restart_policy_lists_the_choices() {
        let (line, _, message) = invalid("[modules.kv]\nrestart = \"sometimes\"\n");
        assert_eq!(line, Some(2));
        assert!(message.contains("on-failure"), "{message}");
    }

    #[test]
    fn a_bad_module_name_is_refused_with_its_line() {
        let (line, key, _) =
            invalid("load = [\"calc\"]\n[modules.\"Bad Name\"]\nrestart = \"never\"\n");
        assert_eq!(key.as_deref(), Some("modules.Bad Name"));
        assert_eq!(line, Some(2));
    }

    #[test]
    fn restart_timing_out_of_bounds_is_refused_with_its_line() {
        let (line, key, message) = invalid("load = []\n[restart]\nmax = \"5000000000000h\"\n");
        assert_eq!(line, Some(3));
        assert_eq!(key.as_deref(), Some("restart.max"));
        assert!(
            message.contains("longer than the largest accepted"),
            "{message}"
        );
        let (line, key, message) = invalid("[restart]\ninitial = \"2m\"\nmax = \"1m\"\n");
        assert_eq!(line, Some(2));
        assert_eq!(key.as_deref(), Some("restart.initial"));
        assert!(message.contains("restart.max"), "{message}");
        let ok = parse("[restart]\ninitial = \"1s\"\nmax = \"24h\"\nwindow = \"1h\"\n");
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn a_bad_log_filter_is_refused() {
        let (line, key, message) = invalid("log_level = \"info,=[\"\n");
        assert_eq!(line, Some(1));
        assert_eq!(key.as_deref(), Some("log_level"));
        assert!(message.contains("log filter"), "{message}");
    }

    /// Line, column and key of an invalid config.
    fn located(text: &str) -> (Option<usize>, Option<usize>, Option<String>, String) {
        match parse(text) {
            Err(ConfigError::Invalid {
                line,
                column,
                key,
                message,
                ..
            }) => (line, column, key, message),
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn a_bad_second_grant_is_named_by_its_own_line_and_index() {
        let text = "[[grant]]\ncaller = \"chat\"\ntarget = \"kv\"\n\n[[grant]]\ncaller = \"chat\"\ntarget = \"Bad Name\"\n";
        let (line, column, key, message) = located(text);
        assert_eq!((line, column), (Some(7), Some(10)));
        assert_eq!(key.as_deref(), Some("grant[1].target"));
        assert!(message.contains("Bad Name"), "{message}");
        // An unknown key and a wrong type in the second entry, too.
        let (line, _, key, message) = located(
            "[[grant]]\ncaller = \"chat\"\ntarget = \"kv\"\n[[grant]]\ncaller = \"chat\"\ntraget = \"kv\"\n",
        );
        assert_eq!(line, Some(6));
        assert_eq!(key.as_deref(), Some("grant[1].traget"));
        assert!(message.contains("unknown field `traget`"), "{message}");
        let (line, column, key, _) = located(
            "[[deny]]\ncaller = \"a\"\ntarget = \"b\"\n[[deny]]\ncaller = 5\ntarget = \"b\"\n",
        );
        assert_eq!((line, column), (Some(5), Some(10)));
        assert_eq!(key.as_deref(), Some("deny[1].caller"));
    }

    #[test]
    fn a_bad_key_in_a_nested_limits_table_is_named_with_its_path() {
        let (line, key, message) = invalid(
            "[modules.calc]\nrestart = \"never\"\n\n[modules.calc.limits]\nopen_files = 64\nmemory = \"1GiB\"\n",
        );
        assert_eq!(line, Some(6));
        assert_eq!(key.as_deref(), Some("modules.calc.limits.memory"));
        assert!(
            message.contains("address_space"),
            "lists the known keys: {message}"
        );
        let (line, column, key, message) =
            located("[modules.kv]\nlimits = { open_files = 8, address_space = \"1 parsec\" }\n");
        assert_eq!((line, column), (Some(2), Some(44)));
        assert_eq!(key.as_deref(), Some("modules.kv.limits.address_space"));
        assert!(message.contains("unknown unit"), "{message}");
    }

    #[test]
    fn a_bad_name_in_a_list_is_named_by_its_index() {
        let (line, column, key, _) = located("load = [\n  \"calc\",\n  \"../etc\",\n]\n");
        assert_eq!((line, column), (Some(3), Some(3)));
        assert_eq!(key.as_deref(), Some("load[1]"));
        let e = parse("[modules.calc]\nenv = { A = 1 }\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("/etc/logoscore.toml:2:13: `modules.calc.env.A`: "),
            "{e}"
        );
    }

    #[test]
    fn invalid_toml_reports_the_line() {
        let (line, _, _) = invalid("load = [\"calc\"\nx = 1\n");
        assert!(line.is_some());
    }

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../../README.md");
        let section = readme.split("## logoscore").nth(1).unwrap_or_default();
        let example = section
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .unwrap_or_default();
        assert!(
            example.contains("[modules.calc]"),
            "README has a config example"
        );
        let c = parse(example).unwrap_or_else(|e| panic!("README example: {e}"));
        assert_eq!(c.load, ["greeter"]);
        assert_eq!(c.max_frame, Some(Size(16 << 20)));
        assert_eq!(c.grant.len(), 1);
        assert_eq!(c.http.map(|h| h.0.port()), Some(9464));
    }

    #[test]
    fn http_addresses_are_checked_where_written() {
        assert_eq!(
            parse_http_addr("localhost:9464").map(|a| a.to_string()),
            Ok("127.0.0.1:9464".to_owned())
        );
        assert!(parse_http_addr("[::1]:0").is_ok());
        for bad in ["9464", "localhost", "127.0.0.1", "example.com:80", ""] {
            let e = parse_http_addr(bad).err().unwrap_or_default();
            assert!(e.contains("127.0.0.1:9464"), "{bad:?}: {e}");
        }
        let (line, key, message) = invalid("http = \"nowhere\"\n");
        assert_eq!(line, Some(1));
        assert_eq!(key.as_deref(), Some("http"));
        assert!(message.contains("IP:PORT"), "{message}");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 1.5s "), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5").is_err_and(|e| e.contains("no unit")));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("s").is_err());
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("64KB"), Ok(64_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1TB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn the_error_message_reads_well() {
        let e = parse("load = []\nmodules_dir = [\"x\"]\n")
            .err()
            .map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(
            e.starts_with("/etc/logoscore.toml:2:1: `modules_dir`: unknown field"),
            "{e}"
        );
    }
}
