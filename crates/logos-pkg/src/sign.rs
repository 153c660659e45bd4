//! Ed25519 keys and signatures: the operator's own keys (`<config>/keys/<name>.key`, 0600),
//! the trust store (`<config>/trusted/<name>.json`), the signature policy, and the one
//! verification every package, publish request and review goes through.
//!
//! A package signature covers the manifest's exact bytes, which hold the signer's name and
//! key and every file's hash: changing any byte of any part breaks it. Each kind of signed
//! message has its own domain prefix, so a signature over a review can never pass as one
//! over a manifest. Never reads archives and never talks to a network.

use crate::error::{Error, Result};
use crate::manifest::{Manifest, check_signer_name};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Domain prefix of package manifest signatures.
pub const MANIFEST_DOMAIN: &[u8] = b"logos-pkg/manifest/v1\n";
/// Domain prefix of publish requests.
pub const PUBLISH_DOMAIN: &[u8] = b"logos-pkg/publish/v1\n";
/// Domain prefix of reviews.
pub const REVIEW_DOMAIN: &[u8] = b"logos-pkg/review/v1\n";

/// What to do with packages whose signature is missing or not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Refuse unless signed by a trusted key (the default).
    #[default]
    Require,
    /// Install, with a warning, what `require` would refuse (never an altered package).
    Warn,
    /// Do not check signatures at all (never for altered contents: hashes are still checked).
    None,
}

/// An operator's own key pair, as stored (0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    name: String,
    secret: String,
    public: String,
}

/// A public key with its name (a trust store entry, or a key to share).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKey {
    /// The signer name packages carry.
    pub name: String,
    /// 64 hex digits.
    pub key: String,
}

impl PublicKey {
    /// A short fingerprint: the first 16 hex digits of the key's SHA-256.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.key)
    }
}

/// First 16 hex digits of SHA-256 of a hex key.
pub fn fingerprint(key_hex: &str) -> String {
    let bytes = hex::decode(key_hex).unwrap_or_default();
    crate::manifest::sha256_hex(&bytes)[..16].to_owned()
}

/// One of the operator's signing keys.
#[derive(Clone)]
pub struct KeyPair {
    /// The name it signs as.
    pub name: String,
    key: SigningKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A fresh key from the OS's random source.
    ///
    /// # Errors
    /// [`Error::Key`] for a bad name or when the OS has no randomness.
    pub fn generate(name: &str) -> Result<KeyPair> {
        check_signer_name(name).map_err(|reason| Error::Key {
            name: name.to_owned(),
            reason,
        })?;
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| Error::Key {
            name: name.to_owned(),
            reason: format!("no randomness from the OS: {e}"),
        })?;
        Ok(KeyPair {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&secret),
        })
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: hex::encode(self.key.verifying_key().to_bytes()),
        }
    }

    /// Signs `domain || message`.
    pub fn sign(&self, domain: &[u8], message: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(domain.len() + message.len());
        m.extend_from_slice(domain);
        m.extend_from_slice(message);
        self.key.sign(&m).to_bytes().to_vec()
    }
}

/// Checks `signature` over `domain || message` with `key_hex`.
///
/// # Errors
/// A reason text: a malformed key or signature, or one that does not verify.
pub fn verify(
    domain: &[u8],
    message: &[u8],
    key_hex: &str,
    signature: &[u8],
) -> Result<(), String> {
    let key = parse_key(key_hex)?;
    let sig: [u8; 64] = signature
        .try_into()
        .map_err(|_| "the signature is not 64 bytes")?;
    let mut m = Vec::with_capacity(domain.len() + message.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(message);
    key.verify_strict(&m, &Signature::from_bytes(&sig))
        .map_err(|_| {
            "the signature does not verify: the signed bytes or the signature were altered"
                .to_owned()
        })
}

/// Parses a hex Ed25519 public key.
///
/// # Errors
/// Why it is not one.
pub fn parse_key(key_hex: &str) -> Result<VerifyingKey, String> {
    let key: [u8; 32] = hex::decode(key_hex)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or("the public key is not 32 bytes of hex")?;
    VerifyingKey::from_bytes(&key).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

/// The operator's keys and trust store, under one config dir.
#[derive(Debug, Clone)]
pub struct Keyring {
    dir: PathBuf,
}

impl Keyring {
    /// Keys in `<dir>/keys`, trust in `<dir>/trusted`.
    pub fn new(dir: impl Into<PathBuf>) -> Keyring {
        Keyring { dir: dir.into() }
    }

    /// The config dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn key_path(&self, name: &str) -> PathBuf {
        self.dir.join("keys").join(format!("{name}.key"))
    }

    fn trust_path(&self, name: &str) -> PathBuf {
        self.dir.join("trusted").join(format!("{name}.json"))
    }

    /// Generates and stores a new key, and trusts its public half (a key's owner trusts it).
    ///
    /// # Errors
    /// [`Error::Key`] when one of that name exists or the name is bad; [`Error::Io`].
    pub fn create(&self, name: &str) -> Result<KeyPair> {
        let pair = KeyPair::generate(name)?;
        let path = self.key_path(name);
        if path.exists() {
            return Err(Error::Key {
                name: name.to_owned(),
                reason: format!("exists already ({}); pick another name", path.display()),
            });
        }
        let file = KeyFile {
            name: name.to_owned(),
            secret: hex::encode(pair.key.to_bytes()),
            public: pair.public().key,
        };
        let text = serde_json::to_vec_pretty(&file).unwrap_or_default();
        write_private(&path, &text)?;
        self.trust(&pair.public())?;
        Ok(pair)
    }

    /// Loads one of the operator's keys.
    ///
    /// # Errors
    /// [`Error::Key`] when it does not exist or is unreadable or damaged, or readable by others.
    pub fn load(&self, name: &str) -> Result<KeyPair> {
        let path = self.key_path(name);
        let err = |reason: String| Error::Key {
            name: name.to_owned(),
            reason,
        };
        check_signer_name(name).map_err(err)?;
        let meta = std::fs::metadata(&path).map_err(|e| {
            err(format!(
                "cannot read {}: {e}; create it with `logoscore key new {name}`",
                path.display()
            ))
        })?;
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err(format!(
                "{} is readable by others (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            )));
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        let file: KeyFile = serde_json::from_slice(&bytes)
            .map_err(|e| err(format!("{} is damaged: {e}", path.display())))?;
        let secret: [u8; 32] = hex::decode(&file.secret)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| err(format!("{}: secret is not 32 bytes of hex", path.display())))?;
        let pair = KeyPair {
            name: file.name,
            key: SigningKey::from_bytes(&secret),
        };
        if pair.public().key != file.public || pair.name != name {
            return Err(err(format!(
                "{}: name or public key does not match the secret",
                path.display()
            )));
        }
        Ok(pair)
    }

    /// The operator's key names, sorted.
    pub fn own(&self) -> Vec<String> {
        list_names(&self.dir.join("keys"), ".key")
    }

    /// Adds or replaces a trusted key.
    ///
    /// # Errors
    /// [`Error::Key`] for a bad name or key; [`Error::Io`].
    pub fn trust(&self, key: &PublicKey) -> Result<()> {
        let err = |reason: String| Error::Key {
            name: key.name.clone(),
            reason,
        };
        check_signer_name(&key.name).map_err(err)?;
        parse_key(&key.key).map_err(err)?;
        let text = serde_json::to_vec_pretty(key).unwrap_or_default();
        write_private(&self.trust_path(&key.name), &text)
    }

    /// Removes a trusted key.
    ///
    /// # Errors
    /// [`Error::Key`] when it is not trusted.
    pub fn untrust(&self, name: &str) -> Result<PublicKey> {
        let k = self.trusted_key(name).ok_or_else(|| Error::Key {
            name: name.to_owned(),
            reason: "is not in the trust store (see `logoscore key list`)".into(),
        })?;
        std::fs::remove_file(self.trust_path(name)).map_err(|e| {
            Error::io(
                format!("cannot remove {}", self.trust_path(name).display()),
                e,
            )
        })?;
        Ok(k)
    }

    /// A trusted key by name.
    pub fn trusted_key(&self, name: &str) -> Option<PublicKey> {
        check_signer_name(name).ok()?;
        let bytes = std::fs::read(self.trust_path(name)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Every trusted key, sorted by name.
    pub fn trusted(&self) -> Vec<PublicKey> {
        list_names(&self.dir.join("trusted"), ".json")
            .iter()
            .filter_map(|n| self.trusted_key(n))
            .collect()
    }

    /// Decides whether a package may be used: under `require`, it must be signed, the
    /// signature must verify, and the signer's name must be trusted with exactly that key.
    /// Returns a warning for `warn` when `require` would have refused.
    ///
    /// # Errors
    /// [`Error::Untrusted`] with the exact reason.
    pub fn check_package(
        &self,
        manifest: &Manifest,
        manifest_bytes: &[u8],
        signature: Option<&[u8]>,
        policy: Policy,
    ) -> Result<Option<String>> {
        if policy == Policy::None {
            return Ok(None);
        }
        let id = manifest.id();
        let problem = match (&manifest.signer, signature) {
            (_, None) => Some(
                "is not signed (no manifest.sig); ask its author for a signed package".to_owned(),
            ),
            (None, Some(_)) => Some("has a signature but its manifest names no signer".to_owned()),
            (Some(s), Some(sig)) => match verify(MANIFEST_DOMAIN, manifest_bytes, &s.key, sig) {
                Err(e) => {
                    // An altered package is refused whatever the policy.
                    return Err(Error::Untrusted {
                        package: id,
                        reason: format!(
                            "signed by {:?} (key {}), but {e}",
                            s.name,
                            fingerprint(&s.key)
                        ),
                    });
                }
                Ok(()) => match self.trusted_key(&s.name) {
                    Some(t) if t.key == s.key => None,
                    Some(t) => Some(format!(
                        "is signed by {:?} with key {}, but the trust store has {:?} with key {}; if the key changed, check with its owner, then `logoscore key trust {} <new key>`",
                        s.name,
                        fingerprint(&s.key),
                        s.name,
                        t.fingerprint(),
                        s.name
                    )),
                    None => Some(format!(
                        "is signed by {:?} (key {}), which is not in the trust store; if you trust them, `logoscore key trust {} {}`",
                        s.name,
                        fingerprint(&s.key),
                        s.name,
                        s.key
                    )),
                },
            },
        };
        match (problem, policy) {
            (None, _) => Ok(None),
            (Some(p), Policy::Warn) => {
                Ok(Some(format!("{id} {p} (installed anyway: policy is warn)")))
            }
            (Some(p), _) => Err(Error::Untrusted {
                package: id,
                reason: format!("{p} (policy require)"),
            }),
        }
    }
}

fn list_names(dir: &Path, suffix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(suffix)
                .map(str::to_owned)
        })
        .collect();
    out.sort();
    out
}

/// Writes `bytes` to `path` atomically with mode 0600 (parents 0700).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(format!("cannot write {}", tmp.display()), e))?;
    use std::io::Write as _;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(format!("cannot write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_with_domains() {
        let k = KeyPair::generate("alice").unwrap_or_else(|e| panic!("{e}"));
        let sig = k.sign(MANIFEST_DOMAIN, b"hello");
        let pk = k.public().key;
        assert!(verify(MANIFEST_DOMAIN, b"hello", &pk, &sig).is_ok());
        assert!(verify(REVIEW_DOMAIN, b"hello", &pk, &sig).is_err());
        assert!(verify(MANIFEST_DOMAIN, b"hellp", &pk, &sig).is_err());
    }
}
