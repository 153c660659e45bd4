//! Who may operate a core through its control endpoint besides the holder of the boot client
//! token: named operator tokens (`logoscore issue-token --name N`), kept as SHA-256 hashes in a
//! JSON file, checked when a client connects and again on every request, so a revocation or an
//! expiry takes effect at once; and sharing the endpoint with an OS group.
//!
//! Owns the file format of the token store ([`TokenStore`]), its updates (a lock file
//! serialises writers, a rename publishes, so a reader never sees half a file) and the check.
//! The raw secret of a named token exists only in the per-name file handed to the operator
//! (0600, which the operator may delete once copied) and in the answer to `issue`; it is never
//! logged. Never decides what an operator may do (an operator may do everything: `conn.rs`) and
//! never touches module tokens (`token.rs`).
//!
//! Tokens are 256-bit random values, so one SHA-256 is enough to keep the file useless to a
//! reader; a slow password hash would only slow down every request.

use crate::token::{TOKEN_LEN, Token, secret_matches};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Largest token store read (a few hundred bytes per token).
const MAX_STORE_BYTES: u64 = 4 << 20;
/// Longest token name.
pub const MAX_TOKEN_NAME: usize = 64;
/// The name of the core's boot token (`client.token`), which the store never holds.
pub const AUTO_TOKEN: &str = "auto";
/// Version of the store's file format.
const FORMAT_VERSION: u32 = 1;

/// What can go wrong with the token store. Each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file could not be read, created or written.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted, naming the file.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The store file is not what this version writes.
    #[error("{}: {problem}", path.display())]
    Format {
        /// The store file.
        path: PathBuf,
        /// What is wrong, and where.
        problem: String,
    },
    /// A token name breaks the naming rule.
    #[error("token name {name:?} is invalid: {reason}")]
    InvalidName {
        /// The name as given (truncated).
        name: String,
        /// The rule it breaks.
        reason: String,
    },
    /// `issue` without `replace` for a name already issued.
    #[error(
        "a token named {name:?} already exists; pass --replace to issue a new one in its place"
    )]
    Exists {
        /// The name.
        name: String,
    },
    /// The OS random generator failed.
    #[error("cannot generate a token: {0}")]
    Random(String),
}

/// One named token as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The operator-chosen name.
    pub name: String,
    /// When it was issued.
    pub issued_at: SystemTime,
    /// When it stops working, if ever.
    pub expires_at: Option<SystemTime>,
    /// Valid only over local (Unix socket) connections. Every connection is local today;
    /// remote transports will refuse such a token.
    pub local_only: bool,
    /// Whether the raw per-name file is still there (the operator may delete it after copying).
    pub raw_file_present: bool,
}

/// What [`TokenStore::issue`] made.
#[derive(Debug)]
pub struct Issued {
    /// The listing entry.
    pub info: TokenInfo,
    /// The secret, to show the operator once.
    pub token: Token,
    /// The 0600 file holding the secret (`{"name", "token", …}`).
    pub file: PathBuf,
}

/// The result of checking a presented token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A live named token.
    Valid {
        /// Its name.
        name: String,
    },
    /// A named token whose expiry has passed.
    Expired {
        /// Its name.
        name: String,
    },
    /// Not a token of this store (never issued, revoked, or replaced).
    Unknown,
    /// The store cannot be read; nothing in it is accepted until it can.
    Unreadable(String),
}

/// A parsed store entry.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    hash: [u8; 32],
    issued_at: SystemTime,
    expires_at: Option<SystemTime>,
    local_only: bool,
}

impl Entry {
    fn info(&self, raw_file_present: bool) -> TokenInfo {
        TokenInfo {
            name: self.name.clone(),
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            local_only: self.local_only,
            raw_file_present,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    version: u32,
    tokens: Vec<FileEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    name: String,
    sha256: String,
    issued_at: String,
    expires_at: Option<String>,
    local_only: bool,
}

#[derive(Debug, Serialize)]
struct RawFile<'a> {
    name: &'a str,
    token: String,
    issued_at: String,
    expires_at: Option<String>,
    local_only: bool,
}

/// What identifies one version of the store file: a rename gives a new inode, an edit in
/// place a new size or modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// One read of the store file: its stamp (`None`: no file) and its entries.
type Snapshot = (Option<Stamp>, Arc<Vec<Entry>>);

/// A file of named operator tokens (`tokens.json`) and the dir of their raw files
/// (`tokens/<name>.json` beside it).
///
/// Reading is cheap to repeat: the parsed file is cached and read again only when the file
/// changes (one `stat` per check).
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    /// `None` stamp: the file does not exist.
    cache: Mutex<Option<Snapshot>>,
}

impl TokenStore {
    /// The store kept in `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> TokenStore {
        TokenStore {
            path: path.into(),
            cache: Mutex::new(None),
        }
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The dir of the raw per-name files.
    pub fn raw_dir(&self) -> PathBuf {
        self.dir().join("tokens")
    }

    /// The raw file of `name`.
    pub fn raw_path(&self, name: &str) -> PathBuf {
        self.raw_dir().join(format!("{name}.json"))
    }

    fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }

    /// Every named token, by name.
    ///
    /// # Errors
    /// [`StoreError::Io`] or [`StoreError::Format`] when the file cannot be read or parsed.
    pub fn list(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let mut out: Vec<TokenInfo> = self
            .entries()?
            .iter()
            .map(|e| e.info(self.raw_path(&e.name).is_file()))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Issues a new token `name`: writes its hash into the store and the secret into
    /// `tokens/<name>.json` (0600). With `replace`, an existing token of that name stops
    /// working at once; without, an existing name is an error.
    ///
    /// # Errors
    /// [`StoreError::InvalidName`], [`StoreError::Exists`], [`StoreError::Random`], and file
    /// errors; on any error the store is unchanged.
    pub fn issue(
        &self,
        name: &str,
        expires_at: Option<SystemTime>,
        local_only: bool,
        replace: bool,
    ) -> Result<Issued, StoreError> {
        check_name(name)?;
        if name == AUTO_TOKEN {
            return Err(StoreError::InvalidName {
                name: name.to_owned(),
                reason: "\"auto\" is the core's boot token (client.token), issued anew at every start; choose another name".to_owned(),
            });
        }
        self.ensure_dir()?;
        let _lock = self.lock()?;
        let mut entries = (*self.read_file()?.1).clone();
        if entries.iter().any(|e| e.name == name) {
            if !replace {
                return Err(StoreError::Exists {
                    name: name.to_owned(),
                });
            }
            entries.retain(|e| e.name != name);
        }
        let token = Token::generate().map_err(|e| StoreError::Random(e.to_string()))?;
        let entry = Entry {
            name: name.to_owned(),
            hash: digest(token.as_bytes()),
            issued_at: whole_seconds(SystemTime::now()),
            expires_at: expires_at.map(whole_seconds),
            local_only,
        };
        let file = self.write_raw(&entry, &token)?;
        entries.push(entry.clone());
        if let Err(e) = self.write_file(&entries) {
            let _ = std::fs::remove_file(&file);
            return Err(e);
        }
        Ok(Issued {
            info: entry.info(true),
            token,
            file,
        })
    }

    /// Revokes `name`: its hash leaves the store (so the next request with it is refused) and
    /// its raw file is removed. `Ok(false)` when there was no such token.
    ///
    /// # Errors
    /// [`StoreError::InvalidName`] and file errors.
    pub fn revoke(&self, name: &str) -> Result<bool, StoreError> {
        check_name(name)?;
        if !self.path.exists() {
            return Ok(false);
        }
        let _lock = self.lock()?;
        let mut entries = (*self.read_file()?.1).clone();
        let before = entries.len();
        entries.retain(|e| e.name != name);
        if entries.len() == before {
            return Ok(false);
        }
        self.write_file(&entries)?;
        match std::fs::remove_file(self.raw_path(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Io {
                    what: format!(
                        "revoked {name:?}, but cannot remove its raw file {}",
                        self.raw_path(name).display()
                    ),
                    source,
                });
            }
        }
        Ok(true)
    }

    /// Which named token `presented` is, if any, at time `now`. Constant-time in the secret.
    pub fn verify(&self, presented: &[u8], now: SystemTime) -> Verdict {
        if presented.len() != TOKEN_LEN {
            return Verdict::Unknown;
        }
        let entries = match self.entries() {
            Ok(e) => e,
            Err(e) => return Verdict::Unreadable(e.to_string()),
        };
        let hash = digest(presented);
        let mut found = None;
        for e in entries.iter() {
            if secret_matches(&e.hash, &hash) {
                found = Some(e);
            }
        }
        match found {
            None => Verdict::Unknown,
            Some(e) if e.expires_at.is_some_and(|t| t <= now) => Verdict::Expired {
                name: e.name.clone(),
            },
            Some(e) => Verdict::Valid {
                name: e.name.clone(),
            },
        }
    }

    /// The parsed file, from the cache when the file has not changed.
    fn entries(&self) -> Result<Arc<Vec<Entry>>, StoreError> {
        let stamp = match std::fs::metadata(&self.path) {
            Ok(m) => Some(Stamp::of(&m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(StoreError::Io {
                    what: format!("reading the token store {}", self.path.display()),
                    source,
                });
            }
        };
        {
            let cache = self.cache.lock();
            if let Some((s, entries)) = cache.as_ref()
                && *s == stamp
            {
                return Ok(Arc::clone(entries));
            }
        }
        let (stamp, entries) = self.read_file()?;
        *self.cache.lock() = Some((stamp, Arc::clone(&entries)));
        Ok(entries)
    }

    /// Reads and parses the file (no cache); a missing file is an empty store.
    fn read_file(&self) -> Result<Snapshot, StoreError> {
        let io = |source| StoreError::Io {
            what: format!("reading the token store {}", self.path.display()),
            source,
        };
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((None, Arc::new(Vec::new())));
            }
            Err(e) => return Err(io(e)),
        };
        let meta = file.metadata().map_err(io)?;
        let bad = |problem: String| StoreError::Format {
            path: self.path.clone(),
            problem,
        };
        if !meta.is_file() {
            return Err(bad("it is not a regular file; remove it".to_owned()));
        }
        if meta.uid() != crate::sys::uid() {
            return Err(bad(format!(
                "it is owned by uid {}, not by this user; remove it",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(bad(format!(
                "its mode is {:04o}, so others could add tokens; run `chmod 600 {}`",
                meta.mode() & 0o7777,
                self.path.display()
            )));
        }
        let mut text = String::new();
        file.take(MAX_STORE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        if text.len() as u64 > MAX_STORE_BYTES {
            return Err(bad(format!("it is larger than {MAX_STORE_BYTES} bytes")));
        }
        let entries = parse(&text).map_err(bad)?;
        Ok((Some(Stamp::of(&meta)), Arc::new(entries)))
    }

    /// Creates the store's dir (0700) when missing; refuses one others may write to.
    fn ensure_dir(&self) -> Result<(), StoreError> {
        let dir = self.dir();
        for d in [&dir, &self.raw_dir()] {
            let created = DirBuilder::new().recursive(true).mode(0o700).create(d);
            let meta = std::fs::symlink_metadata(d).map_err(|source| StoreError::Io {
                what: format!("creating the token dir {}", d.display()),
                source: created.err().unwrap_or(source),
            })?;
            if !meta.is_dir() || meta.uid() != crate::sys::uid() || meta.mode() & 0o022 != 0 {
                return Err(StoreError::Format {
                    path: d.clone(),
                    problem: format!(
                        "it must be a directory of this user that others cannot write to (mode {:04o}, owner uid {})",
                        meta.mode() & 0o7777,
                        meta.uid()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Serialises writers (two `issue-token`s at once) with `flock` on a lock file.
    fn lock(&self) -> Result<File, StoreError> {
        let path = self.dir().join("tokens.json.lock");
        let io = |source| StoreError::Io {
            what: format!("locking the token store ({})", path.display()),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io(e.into()))?;
        Ok(file)
    }

    /// Replaces the store file with `entries` (temp file, fsync, rename).
    fn write_file(&self, entries: &[Entry]) -> Result<(), StoreError> {
        let doc = FileDoc {
            version: FORMAT_VERSION,
            tokens: entries
                .iter()
                .map(|e| FileEntry {
                    name: e.name.clone(),
                    sha256: hex::encode(e.hash),
                    issued_at: rfc3339(e.issued_at),
                    expires_at: e.expires_at.map(rfc3339),
                    local_only: e.local_only,
                })
                .collect(),
        };
        let mut text = serde_json::to_string_pretty(&doc).map_err(|e| StoreError::Io {
            what: "encoding the token store".to_owned(),
            source: std::io::Error::other(e),
        })?;
        text.push('\n');
        let tmp = self
            .dir()
            .join(format!(".tokens.json.{}.tmp", std::process::id()));
        let io = |what: &str, source| StoreError::Io {
            what: format!("{what} {}", tmp.display()),
            source,
        };
        let _ = std::fs::remove_file(&tmp);
        let mut f = crate::sys::create_private_file(&tmp).map_err(|e| io("creating", e))?;
        if let Err(e) = f.write_all(text.as_bytes()).and_then(|()| f.sync_all()) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("writing", e));
        }
        if let Err(source) = std::fs::rename(&tmp, &self.path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(StoreError::Io {
                what: format!("replacing the token store {}", self.path.display()),
                source,
            });
        }
        Ok(())
    }

    /// Writes the raw file of a new token (0600, created in one step).
    fn write_raw(&self, entry: &Entry, token: &Token) -> Result<PathBuf, StoreError> {
        let path = self.raw_path(&entry.name);
        let io = |what: &str, source| StoreError::Io {
            what: format!("{what} the token file {}", path.display()),
            source,
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("removing the old", e)),
        }
        let raw = RawFile {
            name: &entry.name,
            token: token.to_hex(),
            issued_at: rfc3339(entry.issued_at),
            expires_at: entry.expires_at.map(rfc3339),
            local_only: entry.local_only,
        };
        let mut text = serde_json::to_string_pretty(&raw)
            .map_err(|e| io("encoding", std::io::Error::other(e)))?;
        text.push('\n');
        let mut f = crate::sys::create_private_file(&path).map_err(|e| io("creating", e))?;
        if let Err(e) = f.write_all(text.as_bytes()).and_then(|()| f.sync_all()) {
            let _ = std::fs::remove_file(&path);
            return Err(io("writing", e));
        }
        Ok(path)
    }
}

/// Parses the store file's text; the error names the entry and field.
fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let doc: FileDoc = serde_json::from_str(text).map_err(|e| format!("not a token store: {e}"))?;
    if doc.version != FORMAT_VERSION {
        return Err(format!(
            "version {} is not supported (this build reads version {FORMAT_VERSION})",
            doc.version
        ));
    }
    let mut out: Vec<Entry> = Vec::with_capacity(doc.tokens.len());
    for (i, t) in doc.tokens.into_iter().enumerate() {
        let at = |field: &str, problem: String| format!("tokens[{i}].{field}: {problem}");
        check_name(&t.name).map_err(|e| at("name", e.to_string()))?;
        if out.iter().any(|e| e.name == t.name) {
            return Err(at("name", format!("{:?} appears twice", t.name)));
        }
        let hash =
            unhex32(&t.sha256).ok_or_else(|| at("sha256", "expected 64 hex digits".to_owned()))?;
        let time = |field: &str, s: &str| {
            humantime::parse_rfc3339(s).map_err(|e| at(field, format!("{s:?}: {e}")))
        };
        let issued_at = time("issued_at", &t.issued_at)?;
        let expires_at = match &t.expires_at {
            Some(s) => Some(time("expires_at", s)?),
            None => None,
        };
        out.push(Entry {
            name: t.name,
            hash,
            issued_at,
            expires_at,
            local_only: t.local_only,
        });
    }
    Ok(out)
}

/// Checks a token name: 1 to 64 of ASCII letters, digits, `_`, `-`, `.`, not starting with
/// `.` or `-` (so it is a safe file name).
///
/// # Errors
/// [`StoreError::InvalidName`] naming the rule.
pub fn check_name(name: &str) -> Result<(), StoreError> {
    let bad = |reason: String| StoreError::InvalidName {
        name: name.chars().take(80).collect(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty".to_owned()));
    }
    if name.len() > MAX_TOKEN_NAME {
        return Err(bad(format!("it is longer than {MAX_TOKEN_NAME} bytes")));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(bad(format!(
            "it contains {c:?}; use ASCII letters, digits, \"_\", \"-\" and \".\""
        )));
    }
    if name.starts_with(['.', '-']) {
        return Err(bad("it must not start with \".\" or \"-\"".to_owned()));
    }
    Ok(())
}

/// Parses an expiry as `logoscore issue-token --expires` takes it: a duration from `now`
/// (`30d`, `12h`, `90m`, `45s`, or any `humantime` duration such as `1week`), a date
/// (`2026-12-31`, midnight UTC) or an RFC 3339 time (`2026-12-31T23:59:59Z`).
///
/// # Errors
/// A message saying which forms are accepted, or that the time has already passed.
pub fn parse_expiry(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let t = text.trim();
    let forms = "use a duration (30d, 12h, 90m, 45s), a date (2026-12-31) or a UTC time (2026-12-31T23:59:59Z)";
    let at = if let Ok(d) = humantime::parse_duration(t) {
        if d.is_zero() {
            return Err(format!("--expires {t:?} is zero; {forms}"));
        }
        now.checked_add(d)
            .ok_or_else(|| format!("--expires {t:?} is too far in the future"))?
    } else if t.len() == 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-' {
        humantime::parse_rfc3339(&format!("{t}T00:00:00Z"))
            .map_err(|e| format!("--expires {t:?}: {e}; {forms}"))?
    } else {
        humantime::parse_rfc3339(t).map_err(|e| format!("--expires {t:?}: {e}; {forms}"))?
    };
    if at <= now {
        return Err(format!("--expires {t:?} has already passed"));
    }
    Ok(at)
}

/// RFC 3339 UTC to the second, e.g. `2026-12-31T23:59:59Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Shares the control endpoint with OS group `gid` (the docker.sock model: membership grants
/// operator access): the runtime dir becomes group-traversable (0710) but not listable, the
/// control socket group-connectable (0660) and the client token group-readable (0640). The
/// module sockets stay private to this user.
///
/// # Errors
/// The OS error and the file it concerns, e.g. when this user is not a member of the group.
pub(crate) fn share_with_group(
    runtime_dir: &Path,
    socket: &Path,
    client_token: &Path,
    gid: u32,
) -> Result<(), StoreError> {
    for (path, mode) in [(runtime_dir, 0o710), (socket, 0o660), (client_token, 0o640)] {
        let io = |source| StoreError::Io {
            what: format!(
                "sharing {} with group {gid} (mode {mode:04o}); this user must be a member of that group",
                path.display()
            ),
            source,
        };
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    }
    Ok(())
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    // A token and a SHA-256 digest have the same length; reuse the token parser.
    Token::from_hex(s).map(|t| *t.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn store() -> Result<(tempfile::TempDir, TokenStore), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let s = TokenStore::new(dir.path().join("daemon/tokens.json"));
        Ok((dir, s))
    }

    #[test]
    fn issued_tokens_verify_until_revoked() -> TestResult {
        let (_d, s) = store()?;
        let now = SystemTime::now();
        assert_eq!(s.verify(&[7u8; 32], now), Verdict::Unknown);
        let alice = s.issue("alice", None, false, false)?;
        let bob = s.issue("bob", None, true, false)?;
        assert_eq!(
            s.verify(alice.token.as_bytes(), now),
            Verdict::Valid {
                name: "alice".into()
            }
        );
        assert_eq!(
            s.verify(bob.token.as_bytes(), now),
            Verdict::Valid { name: "bob".into() }
        );
        assert!(s.revoke("alice")?);
        assert!(!s.revoke("alice")?);
        assert_eq!(s.verify(alice.token.as_bytes(), now), Verdict::Unknown);
        assert!(!alice.file.exists(), "the raw file goes with the token");
        let names: Vec<String> = s.list()?.into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["bob"]);
        assert!(s.list()?[0].local_only);
        Ok(())
    }

    #[test]
    fn the_store_holds_hashes_and_the_raw_file_the_secret() -> TestResult {
        let (_d, s) = store()?;
        let issued = s.issue("ci", None, false, false)?;
        let hex_token = issued.token.to_hex();
        let stored = std::fs::read_to_string(s.path())?;
        assert!(!stored.contains(&hex_token), "{stored}");
        assert!(stored.contains(&hex::encode(digest(issued.token.as_bytes()))));
        let raw = std::fs::read_to_string(&issued.file)?;
        let raw: serde_json::Value = serde_json::from_str(&raw)?;
        assert_eq!(raw["token"], hex_token);
        for p in [s.path(), issued.file.as_path()] {
            assert_eq!(
                std::fs::metadata(p)?.mode() & 0o777,
                0o600,
                "{}",
                p.display()
            );
        }
        assert_eq!(std::fs::metadata(s.raw_dir())?.mode() & 0o777, 0o700);
        Ok(())
    }

    #[test]
    fn names_are_unique_unless_replaced() -> TestResult {
        let (_d, s) = store()?;
        let old = s.issue("alice", None, false, false)?;
        assert!(matches!(
            s.issue("alice", None, false, false),
            Err(StoreError::Exists { .. })
        ));
        let new = s.issue("alice", None, false, true)?;
        let now = SystemTime::now();
        assert_eq!(s.verify(old.token.as_bytes(), now), Verdict::Unknown);
        assert!(matches!(
            s.verify(new.token.as_bytes(), now),
            Verdict::Valid { .. }
        ));
        for bad in ["", "../x", ".hidden", "-x", "a b", "auto", &"x".repeat(65)] {
            assert!(s.issue(bad, None, false, false).is_err(), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn expired_tokens_are_refused() -> TestResult {
        let (_d, s) = store()?;
        let now = SystemTime::now();
        let t = s.issue("short", Some(now + Duration::from_secs(60)), false, false)?;
        assert!(matches!(
            s.verify(t.token.as_bytes(), now),
            Verdict::Valid { .. }
        ));
        assert_eq!(
            s.verify(t.token.as_bytes(), now + Duration::from_secs(61)),
            Verdict::Expired {
                name: "short".into()
            }
        );
        Ok(())
    }

    #[test]
    fn a_damaged_store_accepts_nothing_and_says_why() -> TestResult {
        let (_d, s) = store()?;
        let t = s.issue("alice", None, false, false)?;
        std::fs::write(s.path(), "{\"version\": 1, \"tokens\": [{\"name\": 5}]}")?;
        match s.verify(t.token.as_bytes(), SystemTime::now()) {
            Verdict::Unreadable(m) => assert!(m.contains("tokens.json"), "{m}"),
            other => panic!("{other:?}"),
        }
        std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o666))?;
        std::fs::write(s.path(), "{\"version\": 1, \"tokens\": []}")?;
        let msg = s.list().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("0666"), "{msg}");
        Ok(())
    }

    #[test]
    fn expiries_parse_in_the_reference_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let secs = |t: SystemTime| t.duration_since(now).map(|d| d.as_secs()).ok();
        assert_eq!(
            parse_expiry("30d", now).ok().and_then(secs),
            Some(30 * 86400)
        );
        assert_eq!(
            parse_expiry("12h", now).ok().and_then(secs),
            Some(12 * 3600)
        );
        assert_eq!(parse_expiry("90m", now).ok().and_then(secs), Some(90 * 60));
        assert_eq!(parse_expiry("45s", now).ok().and_then(secs), Some(45));
        assert_eq!(
            parse_expiry("2030-01-01", now).ok().map(rfc3339).as_deref(),
            Some("2030-01-01T00:00:00Z")
        );
        assert_eq!(
            parse_expiry("2030-01-01T12:00:00Z", now)
                .ok()
                .map(rfc3339)
                .as_deref(),
            Some("2030-01-01T12:00:00Z")
        );
        for bad in ["soon", "0s", "2001-01-01", "-5d", ""] {
            assert!(parse_expiry(bad, now).is_err(), "{bad:?}");
        }
    }
}
