//! The core's store of remote module credentials: which module may connect with which secret,
//! until when, and which modules it may call.
//!
//! Owns the file (`<data dir>/.logos-core/remote/credentials.json`, 0600, replaced by rename)
//! and the check of a presented secret. A secret is kept only as SHA-256 over a per-credential
//! random salt and the secret: the secret is 256 random bits, so a fast hash already makes the
//! file useless to a reader (nothing to guess), and the salt keeps equal secrets from looking
//! equal; a slow password hash would only slow down every connection. Every check hashes the
//! presented secret with every entry's salt and compares in constant time, so the store can
//! say which module a credential really belongs to, and that it was revoked or has expired.
//! Revoked and replaced credentials stay as tombstones (the newest
//! [`MAX_TOMBSTONES`]) so refusals can say so. Never decides anything about a module beyond
//! "is this its credential", and never logs a secret.

use crate::error::Error;
use crate::name::ModuleName;
use crate::operators::rfc3339;
use logos_remote::Secret;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use subtle::ConstantTimeEq;

/// Revoked or replaced credentials remembered, to tell why one is refused.
const MAX_TOMBSTONES: usize = 256;
const FORMAT_VERSION: u32 = 1;

/// One credential as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteCredentialInfo {
    /// The module it is for.
    pub module: String,
    /// When it was issued.
    pub issued_at: SystemTime,
    /// When it stops working, if ever.
    pub expires_at: Option<SystemTime>,
    /// Modules it may call beyond the built-ins (its metadata may name no others).
    pub allow: Vec<String>,
    /// When it was revoked (or replaced by a newer grant), if it was.
    pub revoked_at: Option<SystemTime>,
}

/// What checking a presented credential found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The live credential of the module: it may call `allow`, until `expires_at`.
    Valid {
        allow: BTreeSet<String>,
        expires_at: Option<SystemTime>,
    },
    /// A live credential, but of another module.
    OtherModule { owner: String },
    /// The module's credential, revoked (or replaced) at that time.
    Revoked { at: SystemTime },
    /// The module's credential, expired at that time.
    Expired { at: SystemTime },
    /// No credential of this store.
    Unknown,
}

#[derive(Debug, Clone)]
struct Entry {
    module: String,
    salt: [u8; 16],
    hash: [u8; 32],
    issued_at: SystemTime,
    expires_at: Option<SystemTime>,
    allow: BTreeSet<String>,
    revoked_at: Option<SystemTime>,
}

impl Entry {
    fn info(&self) -> RemoteCredentialInfo {
        RemoteCredentialInfo {
            module: self.module.clone(),
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            allow: self.allow.iter().cloned().collect(),
            revoked_at: self.revoked_at,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    version: u32,
    credentials: Vec<FileEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    module: String,
    salt: String,
    sha256: String,
    issued_at: String,
    expires_at: Option<String>,
    allow: Vec<String>,
    revoked_at: Option<String>,
}

/// The credential store of one core. The core is its only writer.
#[derive(Debug)]
pub(crate) struct Store {
    path: PathBuf,
    entries: Mutex<Vec<Entry>>,
}

fn salted(salt: &[u8; 16], secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret);
    h.finalize().into()
}

fn setup(reason: String) -> Error {
    Error::RemoteSetup { reason }
}

impl Store {
    /// Opens the store in `path` (a missing file is an empty store).
    ///
    /// # Errors
    /// [`Error::RemoteSetup`] naming the file and what is wrong with it.
    pub fn open(path: PathBuf) -> Result<Store, Error> {
        let entries = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).map_err(|p| setup(format!("{}: {p}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(setup(format!("reading {}: {e}", path.display()))),
        };
        Ok(Store {
            path,
            entries: Mutex::new(entries),
        })
    }

    /// Issues a new credential for `module`, replacing (revoking) its live one. Returns the
    /// secret, which is stored only hashed.
    ///
    /// # Errors
    /// The generator or the file failed; the store is unchanged then.
    pub fn grant(
        &self,
        module: &ModuleName,
        expires_at: Option<SystemTime>,
        allow: BTreeSet<String>,
    ) -> Result<(Secret, RemoteCredentialInfo), Error> {
        let secret =
            Secret::generate().map_err(|e| setup(format!("cannot generate a secret: {e}")))?;
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| setup(format!("cannot generate a salt: {e}")))?;
        let now = whole_seconds(SystemTime::now());
        let entry = Entry {
            module: module.as_str().to_owned(),
            salt,
            hash: salted(&salt, secret.as_bytes()),
            issued_at: now,
            expires_at: expires_at.map(whole_seconds),
            allow,
            revoked_at: None,
        };
        let info = entry.info();
        let mut entries = self.entries.lock();
        let mut next = entries.clone();
        for e in next.iter_mut().filter(|e| e.module == module.as_str()) {
            e.revoked_at.get_or_insert(now);
        }
        next.push(entry);
        prune(&mut next);
        self.write(&next)?;
        *entries = next;
        Ok((secret, info))
    }

    /// Revokes the live credential of `module`; `Ok(false)` when it has none.
    ///
    /// # Errors
    /// The file could not be written; the store is unchanged then.
    pub fn revoke(&self, module: &str) -> Result<bool, Error> {
        let mut entries = self.entries.lock();
        let mut next = entries.clone();
        let now = whole_seconds(SystemTime::now());
        let mut found = false;
        for e in next
            .iter_mut()
            .filter(|e| e.module == module && e.revoked_at.is_none())
        {
            e.revoked_at = Some(now);
            found = true;
        }
        if !found {
            return Ok(false);
        }
        self.write(&next)?;
        *entries = next;
        Ok(true)
    }

    /// Every credential, live ones first, then tombstones, each by module.
    pub fn list(&self) -> Vec<RemoteCredentialInfo> {
        let mut out: Vec<RemoteCredentialInfo> =
            self.entries.lock().iter().map(Entry::info).collect();
        out.sort_by(|a, b| {
            (a.revoked_at.is_some(), &a.module)
                .cmp(&(b.revoked_at.is_some(), &b.module))
                .then(b.issued_at.cmp(&a.issued_at))
        });
        out
    }

    /// Whether `secret` is the live credential of `module` at `now`, and if not, why.
    pub fn verify(&self, module: &str, secret: &[u8], now: SystemTime) -> Verdict {
        let entries = self.entries.lock();
        // Every entry is hashed and compared, so the time taken does not tell which matched.
        let mut found: Option<&Entry> = None;
        for e in entries.iter() {
            let h = salted(&e.salt, secret);
            if bool::from(h.ct_eq(&e.hash)) {
                found = Some(e);
            }
        }
        match found {
            None => Verdict::Unknown,
            Some(e) if e.module != module => match e.revoked_at {
                None => Verdict::OtherModule {
                    owner: e.module.clone(),
                },
                // A dead credential of another module is just not this module's.
                Some(_) => Verdict::Unknown,
            },
            Some(e) => match (e.revoked_at, e.expires_at) {
                (Some(at), _) => Verdict::Revoked { at },
                (None, Some(at)) if at <= now => Verdict::Expired { at },
                (None, expires_at) => Verdict::Valid {
                    allow: e.allow.clone(),
                    expires_at,
                },
            },
        }
    }

    fn write(&self, entries: &[Entry]) -> Result<(), Error> {
        let doc = FileDoc {
            version: FORMAT_VERSION,
            credentials: entries
                .iter()
                .map(|e| FileEntry {
                    module: e.module.clone(),
                    salt: hex::encode(e.salt),
                    sha256: hex::encode(e.hash),
                    issued_at: rfc3339(e.issued_at),
                    expires_at: e.expires_at.map(rfc3339),
                    allow: e.allow.iter().cloned().collect(),
                    revoked_at: e.revoked_at.map(rfc3339),
                })
                .collect(),
        };
        let mut text = serde_json::to_string_pretty(&doc)
            .map_err(|e| setup(format!("encoding the credential store: {e}")))?;
        text.push('\n');
        write_private(&self.path, text.as_bytes())
            .map_err(|e| setup(format!("writing {}: {e}", self.path.display())))
    }
}

/// Writes `bytes` to `path` through a 0600 temp file and a rename.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = crate::sys::create_private_file(&tmp)?;
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Keeps every live entry and the newest tombstones.
fn prune(entries: &mut Vec<Entry>) {
    let dead = entries.iter().filter(|e| e.revoked_at.is_some()).count();
    if dead <= MAX_TOMBSTONES {
        return;
    }
    let mut drop = dead - MAX_TOMBSTONES;
    entries.retain(|e| {
        if drop > 0 && e.revoked_at.is_some() {
            drop -= 1;
            false
        } else {
            true
        }
    });
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let doc: FileDoc =
        serde_json::from_str(text).map_err(|e| format!("not a credential store: {e}"))?;
    if doc.version != FORMAT_VERSION {
        return Err(format!(
            "version {} is not supported (this build reads version {FORMAT_VERSION})",
            doc.version
        ));
    }
    let mut out = Vec::with_capacity(doc.credentials.len());
    for (i, c) in doc.credentials.into_iter().enumerate() {
        let at = |field: &str, problem: String| format!("credentials[{i}].{field}: {problem}");
        let mut salt = [0u8; 16];
        hex::decode_to_slice(&c.salt, &mut salt)
            .map_err(|_| at("salt", "expected 32 hex digits".to_owned()))?;
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&c.sha256, &mut hash)
            .map_err(|_| at("sha256", "expected 64 hex digits".to_owned()))?;
        let time = |field: &str, s: &str| {
            humantime::parse_rfc3339(s).map_err(|e| at(field, format!("{s:?}: {e}")))
        };
        let issued_at = time("issued_at", &c.issued_at)?;
        let expires_at = c
            .expires_at
            .as_deref()
            .map(|s| time("expires_at", s))
            .transpose()?;
        let revoked_at = c
            .revoked_at
            .as_deref()
            .map(|s| time("revoked_at", s))
            .transpose()?;
        out.push(Entry {
            module: c.module,
            salt,
            hash,
            issued_at,
            expires_at,
            allow: c.allow.into_iter().collect(),
            revoked_at,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn name(n: &str) -> ModuleName {
        match ModuleName::new(n) {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn verdicts_say_why_and_survive_a_reopen() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("credentials.json");
        let store = Store::open(path.clone())?;
        let now = SystemTime::now();
        let (calc, _) = store.grant(&name("calc"), None, BTreeSet::new())?;
        let (chat, _) = store.grant(
            &name("chat"),
            Some(now + Duration::from_secs(3600)),
            BTreeSet::from(["calc".to_owned()]),
        )?;
        assert_eq!(
            store.verify("calc", calc.as_bytes(), now),
            Verdict::Valid {
                allow: BTreeSet::new(),
                expires_at: None
            }
        );
        assert_eq!(
            store.verify("chat", calc.as_bytes(), now),
            Verdict::OtherModule {
                owner: "calc".to_owned()
            }
        );
        assert!(matches!(
            store.verify("chat", chat.as_bytes(), now + Duration::from_secs(7200)),
            Verdict::Expired { .. }
        ));
        assert_eq!(store.verify("calc", &[0; 32], now), Verdict::Unknown);
        assert!(store.revoke("calc")?);
        assert!(!store.revoke("calc")?);
        assert!(matches!(
            store.verify("calc", calc.as_bytes(), now),
            Verdict::Revoked { .. }
        ));
        // A new grant replaces the old credential.
        let (chat2, _) = store.grant(&name("chat"), None, BTreeSet::new())?;
        assert!(matches!(
            store.verify("chat", chat.as_bytes(), now),
            Verdict::Revoked { .. }
        ));
        let reopened = Store::open(path.clone())?;
        assert!(matches!(
            reopened.verify("chat", chat2.as_bytes(), now),
            Verdict::Valid { .. }
        ));
        let text = std::fs::read_to_string(&path)?;
        assert!(
            !text.contains(&chat2.to_hex()),
            "the secret is never stored"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o600
        );
        Ok(())
    }
}
