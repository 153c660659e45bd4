//! Where packages live and how they are handled on this machine: the package dir (store,
//! active versions, `logos.lock`), the package config dir (`packages.toml`, own keys, trust
//! store), and `packages.toml` itself. Shared by every package command and by the daemon's
//! probation guard.
//!
//! ```toml
//! policy = "require"                 # require (default) | warn | none
//! probation = "30s"                  # after an upgrade of a loaded module
//! ping = false                       # opt-in anonymous adoption pings
//!
//! [[registry]]                       # several: federated; trust is in the signature
//! name = "main"
//! url = "https://registry.example"
//!
//! [check]                            # thresholds of `logoscore check`: [warn, fail]
//! start_time = ["2s", "10s"]
//! idle_rss = ["64MiB", "256MiB"]
//! p99 = ["20ms", "200ms"]
//! calls = 200                        # calls per probe method under load
//! concurrency = 8
//! limits = { address_space = "4GiB", open_files = 1024 }
//! ```
//!
//! Owns parsing (every key known, errors name the file, line and key) and path defaults.
//! Never installs anything itself.

use crate::config::{Dur, Size};
use crate::error::Error;
use clap::Args;
use logos_pkg::{Keyring, Policy, Store};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Flags every package command takes.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct PkgArgs {
    /// Package dir: store, active versions (`<dir>/modules`, a modules dir for `run -m`),
    /// `logos.lock`. [default: $LOGOS_PKG_DIR, else $XDG_DATA_HOME/logos]
    #[arg(long, global = true, value_name = "DIR")]
    pub pkg_dir: Option<PathBuf>,
    /// Package config dir: `packages.toml`, own keys (`keys/`), trust store (`trusted/`).
    /// [default: $LOGOS_PKG_CONFIG, else $XDG_CONFIG_HOME/logos]
    #[arg(long, global = true, value_name = "DIR")]
    pub pkg_config: Option<PathBuf>,
    /// A registry URL to use instead of those in `packages.toml` (repeatable).
    #[arg(long = "registry", global = true, value_name = "URL")]
    pub registries: Vec<String>,
}

/// One `[[registry]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistryConfig {
    /// A name for people reading the file (not used by logoscore).
    #[serde(default, rename = "name")]
    pub _name: Option<String>,
    /// Base URL.
    pub url: String,
}

/// `[check]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CheckConfig {
    pub start_time: [Dur; 2],
    pub idle_rss: [Size; 2],
    pub p99: [Dur; 2],
    pub calls: u32,
    pub concurrency: u32,
    pub limits: CheckLimits,
}

/// `[check.limits]`: applied to the module while it is checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CheckLimits {
    pub address_space: Size,
    pub open_files: u64,
}

impl Default for CheckLimits {
    fn default() -> Self {
        CheckLimits {
            address_space: Size(4 << 30),
            open_files: 1024,
        }
    }
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            start_time: [Dur(Duration::from_secs(2)), Dur(Duration::from_secs(10))],
            idle_rss: [Size(64 << 20), Size(256 << 20)],
            p99: [
                Dur(Duration::from_millis(20)),
                Dur(Duration::from_millis(200)),
            ],
            calls: 200,
            concurrency: 8,
            limits: CheckLimits::default(),
        }
    }
}

/// `packages.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PkgConfig {
    #[serde(default)]
    pub policy: Policy,
    #[serde(default = "default_probation")]
    pub probation: Dur,
    #[serde(default)]
    pub ping: bool,
    #[serde(default, rename = "registry")]
    pub registries: Vec<RegistryConfig>,
    #[serde(default)]
    pub check: CheckConfig,
}

fn default_probation() -> Dur {
    Dur(Duration::from_secs(30))
}

impl Default for PkgConfig {
    fn default() -> Self {
        PkgConfig {
            policy: Policy::Require,
            probation: default_probation(),
            ping: false,
            registries: Vec::new(),
            check: CheckConfig::default(),
        }
    }
}

/// Everything a package command works with.
pub(crate) struct Pkg {
    pub store_dir: PathBuf,
    pub config_dir: PathBuf,
    pub config: PkgConfig,
    pub keyring: Keyring,
    /// Registry URLs in order: flags, else the config file's.
    pub registries: Vec<String>,
}

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `$LOGOS_PKG_DIR`, else the default data dir (`$XDG_DATA_HOME/logos`).
pub(crate) fn default_pkg_dir() -> PathBuf {
    env_dir("LOGOS_PKG_DIR").unwrap_or_else(logos_core::default_data_dir)
}

fn default_config_dir() -> PathBuf {
    if let Some(d) = env_dir("LOGOS_PKG_CONFIG") {
        return d;
    }
    if let Some(d) = env_dir("XDG_CONFIG_HOME") {
        return d.join("logos");
    }
    match env_dir("HOME") {
        Some(h) => h.join(".config/logos"),
        None => logos_core::default_runtime_dir().join("config"),
    }
}

/// The operator's signing keys (`<pkg config dir>/keys`) as `logoscore run` finds them
/// (`$LOGOS_PKG_CONFIG`, else the default): withheld from modules.
pub(crate) fn keys_dir() -> PathBuf {
    default_config_dir().join("keys")
}

impl Pkg {
    /// Resolves dirs and reads `packages.toml` (absent: defaults).
    ///
    /// # Errors
    /// [`Error::Usage`] naming the file, line and key of a bad config.
    pub fn load(args: &PkgArgs) -> Result<Pkg, Error> {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let store_dir = args
            .pkg_dir
            .as_deref()
            .map(abs)
            .unwrap_or_else(default_pkg_dir);
        let config_dir = args
            .pkg_config
            .as_deref()
            .map(abs)
            .unwrap_or_else(default_config_dir);
        let file = config_dir.join("packages.toml");
        let config = match std::fs::read_to_string(&file) {
            Ok(text) => parse_config(&text, &file)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PkgConfig::default(),
            Err(e) => return Err(Error::io(format!("cannot read {}", file.display()), e)),
        };
        let registries = if args.registries.is_empty() {
            config.registries.iter().map(|r| r.url.clone()).collect()
        } else {
            args.registries.clone()
        };
        Ok(Pkg {
            keyring: Keyring::new(&config_dir),
            store_dir,
            config_dir,
            config,
            registries,
        })
    }

    /// Opens the store (creating the package dir).
    ///
    /// # Errors
    /// [`Error::Package`].
    pub fn store(&self) -> Result<Store, Error> {
        Ok(Store::open(&self.store_dir)?)
    }

    /// Clients of the registries, or a usage error saying how to configure one.
    ///
    /// # Errors
    /// [`Error::Usage`] when none is configured.
    pub fn clients(&self) -> Result<Vec<logos_pkg::client::Client>, Error> {
        if self.registries.is_empty() {
            return Err(Error::Usage(format!(
                "no registry configured: pass --registry URL or add [[registry]] url = \"…\" to {}",
                self.config_dir.join("packages.toml").display()
            )));
        }
        self.registries
            .iter()
            .map(|u| logos_pkg::client::Client::new(u).map_err(Error::from))
            .collect()
    }

    /// The key to sign with: `name`, else the only own key.
    ///
    /// # Errors
    /// [`Error::Usage`] when none or several exist and none was named.
    pub fn signing_key(&self, name: Option<&str>) -> Result<logos_pkg::KeyPair, Error> {
        if let Some(n) = name {
            return Ok(self.keyring.load(n)?);
        }
        match self.keyring.own().as_slice() {
            [one] => Ok(self.keyring.load(one)?),
            [] => Err(Error::Usage(format!(
                "no signing key in {}: create one with `logoscore key new NAME`",
                self.config_dir.join("keys").display()
            ))),
            many => Err(Error::Usage(format!(
                "several keys ({}): say which with --key NAME",
                many.join(", ")
            ))),
        }
    }

    /// The random install id for adoption pings (created on first use), if pings are on.
    pub fn install_id(&self) -> Option<String> {
        if !self.config.ping {
            return None;
        }
        let path = self.store_dir.join("install-id");
        if let Ok(id) = std::fs::read_to_string(&path)
            && id.trim().len() == 32
        {
            return Some(id.trim().to_owned());
        }
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).ok()?;
        let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
        logos_pkg::store::write_atomic(&path, id.as_bytes()).ok()?;
        Some(id)
    }
}

fn parse_config(text: &str, path: &Path) -> Result<PkgConfig, Error> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        Error::Usage(format!(
            "{}{}: {}",
            path.display(),
            line.map(|l| format!(":{l}")).unwrap_or_default(),
            e.message().trim_end()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_config_parses_and_require_is_the_default() {
        let doc = include_str!("packages.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
            .collect();
        let c =
            parse_config(&example, Path::new("packages.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.policy, Policy::Require);
        assert_eq!(c.registries.len(), 1);
        assert_eq!(c.check.calls, 200);
        let d = parse_config("", Path::new("p.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.policy, Policy::Require, "require unless chosen");
        assert_eq!(d.probation.0, Duration::from_secs(30));
        let e = parse_config("policy = \"lax\"\n", Path::new("p.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("p.toml:1") && e.contains("require"), "{e}");
    }
}
