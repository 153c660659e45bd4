//! [`Config`]: the node's settings, read once at start.
//!
//! Sources, later ones winning per key: the defaults below, then `p2p.json` in the module's
//! data dir (kept by the operator across restarts), then the environment the core gives the
//! module (`[modules.p2p] env = { … }` in `logoscore.toml`). Every fault names its source and
//! key. Never opens a socket or touches the key file: `node.rs` and `key.rs` do.

use libp2p::Multiaddr;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Listen addresses when nothing is configured: every IPv4 interface, a port the kernel picks.
pub const DEFAULT_LISTEN: &str = "/ip4/0.0.0.0/tcp/0";
/// The key file's name in the data dir when nothing is configured.
pub const DEFAULT_KEY_FILE: &str = "identity.key";
/// How long a connection without streams stays open (libp2p's default is 0).
pub const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// Environment variables read, each overriding the `p2p.json` key in parentheses.
pub const ENV_LISTEN: &str = "LOGOS_P2P_LISTEN";
/// Bootstrap peers: multiaddrs, separated by spaces or commas (`bootstrap`).
pub const ENV_BOOTSTRAP: &str = "LOGOS_P2P_BOOTSTRAP";
/// The key file, relative to the data dir or absolute (`keyFile`).
pub const ENV_KEY_FILE: &str = "LOGOS_P2P_KEY_FILE";
/// Idle connection timeout in milliseconds (`idleTimeoutMs`).
pub const ENV_IDLE: &str = "LOGOS_P2P_IDLE_TIMEOUT_MS";

/// The node's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Addresses to listen on (`/ip4/…/tcp/…`).
    pub listen: Vec<Multiaddr>,
    /// Peers dialled at start.
    pub bootstrap: Vec<Multiaddr>,
    /// The identity key file (absolute).
    pub key_file: PathBuf,
    /// How long a connection without open streams is kept.
    pub idle_timeout: Duration,
}

/// The `p2p.json` document; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    listen: Option<Vec<String>>,
    bootstrap: Option<Vec<String>>,
    key_file: Option<String>,
    idle_timeout_ms: Option<u64>,
}

impl Config {
    /// Reads `<data_dir>/p2p.json` (if present) and then the variables of `env`.
    ///
    /// # Errors
    /// A message naming the file or variable, the key and what is wrong with it.
    pub fn load(data_dir: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let path = data_dir.join("p2p.json");
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str::<File>(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let from_file = |key: &str| format!("{} key \"{key}\"", path.display());

        let listen = match env(ENV_LISTEN) {
            Some(v) => addrs(&split(&v), ENV_LISTEN)?,
            None => match &file.listen {
                Some(v) => addrs(v, &from_file("listen"))?,
                None => addrs(&[DEFAULT_LISTEN.to_owned()], "the default")?,
            },
        };
        let bootstrap = match env(ENV_BOOTSTRAP) {
            Some(v) => addrs(&split(&v), ENV_BOOTSTRAP)?,
            None => match &file.bootstrap {
                Some(v) => addrs(v, &from_file("bootstrap"))?,
                None => Vec::new(),
            },
        };
        let key = env(ENV_KEY_FILE)
            .map(|v| (v, ENV_KEY_FILE.to_owned()))
            .or_else(|| file.key_file.clone().map(|v| (v, from_file("keyFile"))))
            .unwrap_or_else(|| (DEFAULT_KEY_FILE.to_owned(), "the default".to_owned()));
        if key.0.trim().is_empty() {
            return Err(format!("{}: the key file must not be empty", key.1));
        }
        let key_file = data_dir.join(&key.0);
        let idle_ms = match env(ENV_IDLE) {
            Some(v) => v.trim().parse::<u64>().map_err(|e| {
                format!("{ENV_IDLE}: {v:?} is not a whole number of milliseconds: {e}")
            })?,
            None => file
                .idle_timeout_ms
                .unwrap_or(DEFAULT_IDLE.as_millis() as u64),
        };
        Ok(Config {
            listen,
            bootstrap,
            key_file,
            idle_timeout: Duration::from_millis(idle_ms),
        })
    }
}

/// Splits a list written in one variable: spaces, commas or newlines between items.
fn split(v: &str) -> Vec<String> {
    v.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn addrs(items: &[String], source: &str) -> Result<Vec<Multiaddr>, String> {
    items
        .iter()
        .map(|s| {
            s.parse::<Multiaddr>().map_err(|e| {
                format!("{source}: {s:?} is not a multiaddr ({e}); write e.g. \"/ip4/127.0.0.1/tcp/4001\"")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_file_and_env_in_that_order() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(dir.path(), env(&[])).unwrap();
        assert_eq!(c.listen, vec![DEFAULT_LISTEN.parse::<Multiaddr>().unwrap()]);
        assert_eq!(c.key_file, dir.path().join(DEFAULT_KEY_FILE));
        assert!(c.bootstrap.is_empty());

        std::fs::write(
            dir.path().join("p2p.json"),
            r#"{"listen": ["/ip4/127.0.0.1/tcp/4001"], "keyFile": "k", "idleTimeoutMs": 5}"#,
        )
        .unwrap();
        let c = Config::load(dir.path(), env(&[])).unwrap();
        assert_eq!(c.listen[0].to_string(), "/ip4/127.0.0.1/tcp/4001");
        assert_eq!(c.key_file, dir.path().join("k"));
        assert_eq!(c.idle_timeout, Duration::from_millis(5));

        let c = Config::load(
            dir.path(),
            env(&[(ENV_LISTEN, "/ip4/127.0.0.1/tcp/0, /ip4/127.0.0.1/tcp/1")]),
        )
        .unwrap();
        assert_eq!(c.listen.len(), 2);
    }

    #[test]
    fn faults_name_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let e = Config::load(dir.path(), env(&[(ENV_BOOTSTRAP, "/ip4/nope")])).unwrap_err();
        assert!(
            e.starts_with("LOGOS_P2P_BOOTSTRAP: \"/ip4/nope\" is not a multiaddr"),
            "{e}"
        );
        std::fs::write(dir.path().join("p2p.json"), r#"{"lisen": []}"#).unwrap();
        let e = Config::load(dir.path(), env(&[])).unwrap_err();
        assert!(e.contains("p2p.json") && e.contains("lisen"), "{e}");
        let e = Config::load(dir.path(), env(&[(ENV_IDLE, "soon")]));
        assert!(e.is_err());
    }
}
