//! The config dir of the reference `logoscore` (`--config-dir`, `$LOGOSCORE_CONFIG_DIR`):
//! where a core started with one announces itself, and where its clients find it and its token.
//!
//! ```text
//! <dir>/daemon/state.json     pid, instance id, endpoints: written once the core is ready,
//!                             removed when it exits (0600)
//! <dir>/daemon/tokens.json    named operator tokens, hashed; raw ones in daemon/tokens/<name>.json
//! <dir>/client/auto.json      {"token": "<hex>"}: the core's boot token (0600; 0640 shared)
//! <dir>/client/config.json    {"version": 2, "token_file", "instance_id", "daemon": {…}}
//! <dir>/run/                  the runtime dir (sockets), unless --runtime-dir names one
//! <dir>/data/                 module data, unless --data-dir / --persistence-path names one
//! ```
//!
//! Owns this layout: writing it for `run` and reading it for clients. A client given a config
//! dir talks only to the core that dir names: it takes the socket from `daemon/state.json` (or,
//! when `daemon/` is private to the core's user, from `client/config.json`), checks the peer's
//! pid before it sends a token and the instance id in the core's `welcome` after, and never
//! falls back to the default runtime dir. Never talks to the core and never starts one.

use crate::error::Error;
use logos_core::Token;
use serde::{Deserialize, Serialize};
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `sun_path` holds 108 bytes including the terminating NUL.
const SOCKET_PATH_MAX: usize = 107;
/// Room kept for a module socket under `<runtime>/modules/`: names up to 32 bytes (longer
/// ones, up to the 64 allowed, may not fit and are refused at load with the path).
const MODULE_SOCKET_TAIL: usize = "/modules/".len() + 32 + ".sock".len();

/// A resolved config dir.
#[derive(Debug, Clone)]
pub(crate) struct ConfigDir {
    pub path: PathBuf,
    /// `--config-dir` (else `$LOGOSCORE_CONFIG_DIR`), for messages.
    pub from_flag: bool,
}

/// `daemon/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct State {
    pub version: u32,
    pub instance_id: String,
    pub pid: u32,
    pub started_at: String,
    pub logoscore_version: String,
    pub config_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub socket: PathBuf,
    pub data_dir: Option<PathBuf>,
    pub modules_dirs: Vec<PathBuf>,
    /// The reference's shape: `resolved.modules.<name>.transports[]`.
    pub resolved: serde_json::Value,
}

/// Where a client goes and what it must find there.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub socket: PathBuf,
    /// The core's pid, when `state.json` was readable.
    pub pid: Option<u32>,
    /// The instance id the core must announce.
    pub instance: Option<String>,
    /// The token file, when not from `$LOGOSCORE_TOKEN`.
    pub token_file: PathBuf,
}

impl ConfigDir {
    /// `--config-dir`, else `$LOGOSCORE_CONFIG_DIR`, else none; made absolute.
    pub fn resolve(flag: Option<&Path>) -> Option<ConfigDir> {
        let (p, from_flag) = match flag {
            Some(p) => (p.to_path_buf(), true),
            None => (
                PathBuf::from(std::env::var_os("LOGOSCORE_CONFIG_DIR").filter(|v| !v.is_empty())?),
                false,
            ),
        };
        Some(ConfigDir {
            path: std::path::absolute(&p).unwrap_or(p),
            from_flag,
        })
    }

    pub fn daemon_dir(&self) -> PathBuf {
        self.path.join("daemon")
    }

    pub fn client_dir(&self) -> PathBuf {
        self.path.join("client")
    }

    pub fn state_file(&self) -> PathBuf {
        self.daemon_dir().join("state.json")
    }

    pub fn tokens_file(&self) -> PathBuf {
        self.daemon_dir().join("tokens.json")
    }

    pub fn auto_token_file(&self) -> PathBuf {
        self.client_dir().join("auto.json")
    }

    pub fn client_config_file(&self) -> PathBuf {
        self.client_dir().join("config.json")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.path.join("data")
    }

    /// `--config-dir D` or `$LOGOSCORE_CONFIG_DIR`, as a person would retype it.
    pub fn shown(&self) -> String {
        let how = if self.from_flag {
            "--config-dir"
        } else {
            "$LOGOSCORE_CONFIG_DIR"
        };
        format!("{} (from {how})", self.path.display())
    }

    /// The runtime dir of a core of this config dir: `<dir>/run` when its sockets' paths fit
    /// in a Unix socket address, else a dir named after this config dir in the default
    /// runtime dir's parent (in `/tmp` when `shared` with a group, which must reach it).
    pub fn runtime_dir(&self, shared: bool) -> PathBuf {
        let inside = self.path.join("run");
        if inside.as_os_str().len() + MODULE_SOCKET_TAIL <= SOCKET_PATH_MAX {
            return inside;
        }
        let default = logos_core::default_runtime_dir();
        let parent = match default.parent() {
            Some(p) if !shared => p.to_path_buf(),
            _ => PathBuf::from("/tmp"),
        };
        // Short, so the module sockets under it fit a socket address.
        let hash = fnv1a(self.path.as_os_str().as_encoded_bytes());
        parent.join(format!("logos-{:08x}", hash as u32 ^ (hash >> 32) as u32))
    }

    /// The pid of a live `logoscore` that announced itself here, if any (a config dir has one
    /// core at a time).
    pub fn live_owner(&self) -> Option<u32> {
        let state = read_json::<State>(&self.state_file()).ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", state.pid)).ok()?;
        (pid_alive(state.pid) && comm.trim().starts_with("logoscore")).then_some(state.pid)
    }

    /// Creates the dir tree for a core (`daemon/` always private; the rest group-usable when
    /// the core is shared with `group`).
    pub fn prepare(&self, group: Option<u32>) -> Result<(), Error> {
        let shared = |private: u32, grp: u32| if group.is_some() { grp } else { private };
        for (dir, mode) in [
            (self.path.clone(), shared(0o700, 0o710)),
            (self.daemon_dir(), 0o700),
            (self.client_dir(), shared(0o700, 0o750)),
        ] {
            make_dir(&dir, mode, if mode == 0o700 { None } else { group })?;
        }
        Ok(())
    }

    /// Announces a ready core: `client/auto.json`, `client/config.json` (unless an operator
    /// wrote their own), then `daemon/state.json` last, since clients take it as "ready".
    pub fn announce(&self, state: &State, token: &Token, group: Option<u32>) -> Result<(), Error> {
        let client_mode = if group.is_some() { 0o640 } else { 0o600 };
        write_atomic(
            &self.auto_token_file(),
            &json_text(&serde_json::json!({ "token": token.to_hex() })),
            client_mode,
            group,
        )?;
        let endpoint = serde_json::json!({ "transport": "local", "path": state.socket });
        let config = serde_json::json!({
            "version": 2,
            "token_file": "auto.json",
            "instance_id": state.instance_id,
            "daemon": { "core_service": endpoint, "capability_module": endpoint },
        });
        if self.client_config_is_ours() {
            write_atomic(
                &self.client_config_file(),
                &json_text(&config),
                client_mode,
                group,
            )?;
        } else {
            tracing::warn!(
                "leaving {} as it is: it names a remote endpoint (this core serves local clients only)",
                self.client_config_file().display()
            );
        }
        write_atomic(
            &self.state_file(),
            &json_text(&serde_json::to_value(state).unwrap_or_default()),
            0o600,
            None,
        )
    }

    /// Removes what [`ConfigDir::announce`] wrote for this instance (and only if it is still
    /// this instance's: a later core may have replaced it).
    pub fn withdraw(&self, instance: &str, token: &Token) {
        if read_json::<State>(&self.state_file()).is_ok_and(|s| s.instance_id == instance) {
            let _ = std::fs::remove_file(self.state_file());
        }
        let ours = std::fs::read_to_string(self.auto_token_file())
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v["token"].as_str() == Some(token.to_hex().as_str()));
        if ours {
            let _ = std::fs::remove_file(self.auto_token_file());
        }
    }

    /// Whether `client/config.json` is missing or was written by a core (local endpoints
    /// only), so a core may rewrite it.
    fn client_config_is_ours(&self) -> bool {
        match read_json::<serde_json::Value>(&self.client_config_file()) {
            Err(_) => true,
            Ok(v) => v["daemon"].as_object().is_none_or(|d| {
                d.values()
                    .all(|e| e["transport"].as_str().is_none_or(|t| t == "local"))
            }),
        }
    }

    /// Where the core of this config dir is, for a client.
    ///
    /// # Errors
    /// [`Error::NoCore`] when no core runs for it (no `state.json`, or a stale one whose pid
    /// is gone), [`Error::Unreachable`] when its files cannot be read.
    pub fn find(&self) -> Result<Found, Error> {
        let start = format!(
            "start one with `logoscore -D --config-dir {} -m DIR`",
            self.path.display()
        );
        let no_core = |why: String| Error::NoCore {
            place: format!("config dir {}", self.shown()),
            hint: format!("{why}; {start}"),
        };
        match read_json::<State>(&self.state_file()) {
            Ok(state) => {
                if !pid_alive(state.pid) {
                    return Err(no_core(format!(
                        "{} is stale: its core (pid {}) is gone",
                        self.state_file().display(),
                        state.pid
                    )));
                }
                Ok(Found {
                    socket: state.socket,
                    pid: Some(state.pid),
                    instance: Some(state.instance_id),
                    token_file: self.token_file(),
                })
            }
            Err(ReadError::Missing) => Err(no_core(
                "it has no daemon/state.json, which a core writes once it is ready".to_owned(),
            )),
            // daemon/ is private to the core's user; a member of its access group reads the
            // client side.
            Err(ReadError::Denied) => {
                let config: serde_json::Value = read_json(&self.client_config_file())
                    .map_err(|e| self.unreadable(&self.client_config_file(), e))?;
                let socket = config["daemon"]["core_service"]["path"]
                    .as_str()
                    .map(PathBuf::from)
                    .ok_or_else(|| Error::Unreachable {
                        place: format!("config dir {}", self.shown()),
                        reason: format!(
                            "{} names no local core_service path, and daemon/state.json is not readable by this user",
                            self.client_config_file().display()
                        ),
                    })?;
                Ok(Found {
                    socket,
                    pid: None,
                    instance: config["instance_id"].as_str().map(str::to_owned),
                    token_file: self.token_file(),
                })
            }
            Err(e) => Err(self.unreadable(&self.state_file(), e)),
        }
    }

    /// `client/<token_file>` as `client/config.json` names it, else `client/auto.json`.
    fn token_file(&self) -> PathBuf {
        read_json::<serde_json::Value>(&self.client_config_file())
            .ok()
            .and_then(|c| c["token_file"].as_str().map(str::to_owned))
            .filter(|f| Path::new(f).file_name().is_some_and(|n| n == f.as_str()))
            .map_or_else(|| self.auto_token_file(), |f| self.client_dir().join(f))
    }

    fn unreadable(&self, file: &Path, e: ReadError) -> Error {
        Error::Unreachable {
            place: format!("config dir {}", self.shown()),
            reason: format!("cannot read {}: {e}", file.display()),
        }
    }
}

/// Reads a token file of the reference's form, `{"token": "<hex>"}` (`client/auto.json`, a
/// copied `daemon/tokens/<name>.json`).
///
/// # Errors
/// A message naming the file and what is wrong.
pub(crate) fn read_token_file(path: &Path) -> Result<Token, String> {
    let v: serde_json::Value = read_json(path).map_err(|e| format!("{}: {e}", path.display()))?;
    v["token"]
        .as_str()
        .and_then(Token::from_hex)
        .ok_or_else(|| {
            format!(
                "{}: expected {{\"token\": \"<64 hex digits>\"}}",
                path.display()
            )
        })
}

/// Why a JSON file could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    Missing,
    Denied,
    Io(std::io::Error),
    Json(serde_json::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Missing => f.write_str("it does not exist"),
            ReadError::Denied => f.write_str("permission denied"),
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Json(e) => write!(f, "not the expected JSON: {e}"),
        }
    }
}

/// Reads a small JSON file (at most 1 MiB).
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ReadError> {
    use std::io::Read as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => ReadError::Missing,
            ErrorKind::PermissionDenied => ReadError::Denied,
            _ => ReadError::Io(e),
        })?;
    if !file.metadata().map_err(ReadError::Io)?.is_file() {
        return Err(ReadError::Io(std::io::Error::other("not a regular file")));
    }
    let mut text = String::new();
    file.take(1 << 20)
        .read_to_string(&mut text)
        .map_err(ReadError::Io)?;
    serde_json::from_str(&text).map_err(ReadError::Json)
}

/// Whether process `pid` runs: it exists (signal 0; EPERM means another user's) and is not
/// a zombie (it exited and waits for its parent to reap it).
pub(crate) fn pid_alive(pid: u32) -> bool {
    let exists = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|p| {
            !matches!(
                rustix::process::test_kill_process(p),
                Err(rustix::io::Errno::SRCH)
            )
        });
    // /proc/<pid>/stat: "pid (comm) S …"; comm may hold spaces and parentheses.
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
        })
        .is_some_and(|state| state == 'Z');
    exists && !zombie
}

fn json_text(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// Creates `dir` with `mode` (and group `group`) or brings an existing one of this user to
/// it; refuses a dir of another user or a symlink.
fn make_dir(dir: &Path, mode: u32, group: Option<u32>) -> Result<(), Error> {
    let io = |what: &str, e| Error::io(format!("{what} {}", dir.display()), e);
    let created = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| io("cannot create", created.err().unwrap_or(e)))?;
    use std::os::unix::fs::MetadataExt as _;
    if !meta.is_dir() || meta.uid() != rustix::process::getuid().as_raw() {
        return Err(Error::Usage(format!(
            "{} must be a directory of this user (uid {}); choose another --config-dir",
            dir.display(),
            rustix::process::getuid().as_raw()
        )));
    }
    if let Some(gid) = group {
        std::os::unix::fs::chown(dir, None, Some(gid))
            .map_err(|e| io("cannot give its group to", e))?;
    }
    if meta.mode() & 0o7777 != mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io("cannot set the mode of", e))?;
    }
    Ok(())
}

/// Writes `text` to `path` through a temp file (mode `mode`, group `group`) and a rename, so a
/// reader sees the old file or the new one, never half of one.
fn write_atomic(path: &Path, text: &str, mode: u32, group: Option<u32>) -> Result<(), Error> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let io = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("cannot write", e))?;
    let written = f
        .write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| match group {
            Some(gid) => std::os::unix::fs::chown(&tmp, None, Some(gid)),
            None => Ok(()),
        })
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("cannot write", e));
    }
    Ok(())
}

/// FNV-1a: a stable, non-secret name for a long config dir's runtime dir.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(p: &Path) -> ConfigDir {
        ConfigDir {
            path: p.to_path_buf(),
            from_flag: true,
        }
    }

    #[test]
    fn short_config_dirs_hold_their_runtime_dir() {
        assert_eq!(
            dir(Path::new("/tmp/ls-a")).runtime_dir(false),
            Path::new("/tmp/ls-a/run")
        );
        let temp = Path::new("/tmp/logoscore-test-l0FTrf/cfg");
        assert_eq!(dir(temp).runtime_dir(false), temp.join("run"));
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(60)));
        let rt = dir(&long).runtime_dir(false);
        assert!(!rt.starts_with(&long), "{}", rt.display());
        assert_eq!(rt, dir(&long).runtime_dir(false), "stable");
        assert!(dir(&long).runtime_dir(true).starts_with("/tmp"));
        assert!(rt.as_os_str().len() + MODULE_SOCKET_TAIL <= SOCKET_PATH_MAX);
    }

    #[test]
    fn announce_then_find_then_withdraw() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let c = dir(tmp.path());
        c.prepare(None)?;
        let token = Token::generate()?;
        let state = State {
            version: 1,
            instance_id: "abc".into(),
            pid: std::process::id(),
            started_at: "2026-01-01T00:00:00Z".into(),
            logoscore_version: "0".into(),
            config_dir: c.path.clone(),
            runtime_dir: c.runtime_dir(false),
            socket: c.runtime_dir(false).join("core.sock"),
            data_dir: None,
            modules_dirs: vec![],
            resolved: serde_json::Value::Null,
        };
        c.announce(&state, &token, None)?;
        use std::os::unix::fs::MetadataExt as _;
        for f in [c.state_file(), c.auto_token_file(), c.client_config_file()] {
            assert_eq!(
                std::fs::metadata(&f)?.mode() & 0o777,
                0o600,
                "{}",
                f.display()
            );
        }
        assert_eq!(std::fs::metadata(c.daemon_dir())?.mode() & 0o777, 0o700);
        let found = c.find()?;
        assert_eq!(found.socket, state.socket);
        assert_eq!(found.instance.as_deref(), Some("abc"));
        assert_eq!(read_token_file(&found.token_file)?, token);
        c.withdraw("other", &token);
        assert!(
            c.state_file().exists(),
            "another instance's withdraw leaves it"
        );
        c.withdraw("abc", &token);
        assert!(!c.state_file().exists() && !c.auto_token_file().exists());
        assert!(matches!(c.find(), Err(Error::NoCore { .. })));
        Ok(())
    }

    #[test]
    fn a_stale_state_file_is_no_core() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let c = dir(tmp.path());
        c.prepare(None)?;
        // pid 2^22+ does not exist on Linux (pid_max is at most 2^22).
        std::fs::write(
            c.state_file(),
            r#"{"version":1,"instance_id":"x","pid":4194305,"started_at":"","logoscore_version":"","config_dir":"/","runtime_dir":"/","socket":"/s","data_dir":null,"modules_dirs":[],"resolved":null}"#,
        )?;
        match c.find() {
            Err(e @ Error::NoCore { .. }) => assert!(e.to_string().contains("stale"), "{e}"),
            other => panic!("{other:?}"),
        }
        Ok(())
    }
}
