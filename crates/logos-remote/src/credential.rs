//! The credential file a remote module connects with: where its core listens, the SHA-256 pin
//! of the core's certificate, and the module's secret.
//!
//! Owns the file format (one JSON document, `version` 1), reading it with every fault named
//! by file and field, and writing it 0600 in one step. The secret exists in clear only here
//! and in the process that presents it; the core keeps a salted hash (`logos-core`'s
//! `remote/credential.rs`). Never decides whether a credential is valid: the core does.
//!
//! ```json
//! {
//!   "version": 1,
//!   "module": "calc",
//!   "core": ["203.0.113.7:7443"],
//!   "pin": "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
//!   "secret": "<64 hex digits>",
//!   "issued_at": "2026-12-04T09:00:00Z",
//!   "expires_at": null
//! }
//! ```

use crate::error::Error;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;
use subtle::ConstantTimeEq;

/// Version of the credential file format.
pub const FORMAT_VERSION: u32 = 1;
/// Largest credential file read.
const MAX_FILE: u64 = 64 * 1024;
/// Length of a secret and of a pin, in bytes.
pub const SECRET_LEN: usize = 32;

/// The SHA-256 of the core's certificate (DER), which a remote module requires of the core it
/// connects to. Written `sha256:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pin([u8; 32]);

impl Pin {
    /// The pin of a certificate given in DER.
    pub fn of_certificate(der: &[u8]) -> Pin {
        Pin(Sha256::digest(der).into())
    }

    /// Whether `der` is the pinned certificate. Constant-time.
    pub fn matches(&self, der: &[u8]) -> bool {
        let other = Pin::of_certificate(der);
        self.0.ct_eq(&other.0).into()
    }

    /// Parses `sha256:<64 hex digits>`.
    pub fn parse(s: &str) -> Option<Pin> {
        let hex = s.strip_prefix("sha256:")?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).ok()?;
        Some(Pin(out))
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pin({self})")
    }
}

/// A module's 256-bit secret. `Debug` never shows it; equality is constant-time.
#[derive(Clone)]
pub struct Secret([u8; SECRET_LEN]);

impl Secret {
    /// A fresh secret from the OS generator.
    ///
    /// # Errors
    /// The generator's error (on Linux only before the entropy pool is ready).
    pub fn generate() -> Result<Secret, getrandom::Error> {
        let mut b = [0u8; SECRET_LEN];
        getrandom::fill(&mut b)?;
        Ok(Secret(b))
    }

    /// Wraps received bytes; `None` unless exactly [`SECRET_LEN`] long.
    pub fn from_slice(b: &[u8]) -> Option<Secret> {
        <[u8; SECRET_LEN]>::try_from(b).ok().map(Secret)
    }

    /// The secret, to present in the link `hello`.
    pub fn as_bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// 64 lowercase hex digits, as the file holds it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Secret {}

/// A parsed credential file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The module this credential is for; the core refuses it for any other name.
    pub module: String,
    /// Where the core listens, `host:port`, tried in order.
    pub core: Vec<String>,
    /// The core certificate's pin.
    pub pin: Pin,
    /// The module's secret.
    pub secret: Secret,
    /// When it was issued (RFC 3339), for people.
    pub issued_at: Option<String>,
    /// When the core stops accepting it (RFC 3339), for people; the core decides.
    pub expires_at: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    version: u32,
    module: String,
    core: Vec<String>,
    pin: String,
    secret: String,
    #[serde(default)]
    issued_at: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

impl Credential {
    /// The file's text (pretty JSON and a newline).
    pub fn to_json(&self) -> String {
        let doc = Doc {
            version: FORMAT_VERSION,
            module: self.module.clone(),
            core: self.core.clone(),
            pin: self.pin.to_string(),
            secret: self.secret.to_hex(),
            issued_at: self.issued_at.clone(),
            expires_at: self.expires_at.clone(),
        };
        // A struct of strings always serializes.
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Parses a credential document; `origin` names it in errors.
    ///
    /// # Errors
    /// [`Error::Credential`] naming the field and what is wrong with it.
    pub fn parse(text: &str, origin: &Path) -> Result<Credential, Error> {
        let bad = |problem: String| Error::Credential {
            path: origin.to_path_buf(),
            problem,
        };
        let doc: Doc = serde_json::from_str(text).map_err(|e| {
            bad(format!(
                "not a credential file ({e}); it should be what `logoscore remote grant` wrote"
            ))
        })?;
        if doc.version != FORMAT_VERSION {
            return Err(bad(format!(
                "field \"version\": {} is not supported (this build reads version {FORMAT_VERSION})",
                doc.version
            )));
        }
        if doc.module.is_empty() {
            return Err(bad("field \"module\": empty".to_owned()));
        }
        if doc.core.is_empty() {
            return Err(bad(
                "field \"core\": no address; it should list the core's host:port".to_owned(),
            ));
        }
        for (i, a) in doc.core.iter().enumerate() {
            if split_host_port(a).is_none() {
                return Err(bad(format!("field \"core[{i}]\": {a:?} is not host:port")));
            }
        }
        let pin = Pin::parse(&doc.pin).ok_or_else(|| {
            bad(format!(
                "field \"pin\": {:?} is not sha256:<64 hex digits>",
                doc.pin.chars().take(80).collect::<String>()
            ))
        })?;
        let mut secret = [0u8; SECRET_LEN];
        hex::decode_to_slice(&doc.secret, &mut secret)
            .map_err(|_| bad("field \"secret\": not 64 hex digits".to_owned()))?;
        Ok(Credential {
            module: doc.module,
            core: doc.core,
            pin,
            secret: Secret(secret),
            issued_at: doc.issued_at,
            expires_at: doc.expires_at,
        })
    }

    /// Reads a credential file. It must be a regular file that only its owner can read or
    /// write (0600 or stricter), as `logoscore remote grant` writes it.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read, [`Error::Credential`] for a mode others can read,
    /// or a document that is not a credential.
    pub fn read(path: &Path) -> Result<Credential, Error> {
        let io = |source| Error::Io {
            what: format!("reading the credential file {}", path.display()),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_o_nonblock())
            .open(path)
            .map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        let bad = |problem: String| Error::Credential {
            path: path.to_path_buf(),
            problem,
        };
        if !meta.is_file() {
            return Err(bad("it is not a regular file".to_owned()));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(bad(format!(
                "its mode is {:04o}, so others may read the secret; run `chmod 600 {}`",
                meta.mode() & 0o7777,
                path.display()
            )));
        }
        let mut text = String::new();
        file.take(MAX_FILE + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        if text.len() as u64 > MAX_FILE {
            return Err(bad(format!("it is larger than {MAX_FILE} bytes")));
        }
        Credential::parse(&text, path)
    }

    /// Writes the file 0600, created in one step; an existing file is an error, so a
    /// credential is never overwritten by accident.
    ///
    /// # Errors
    /// [`Error::Io`] (e.g. the file exists).
    pub fn write_new(&self, path: &Path) -> Result<(), Error> {
        let io = |source| Error::Io {
            what: format!("writing the credential file {}", path.display()),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        if let Err(e) = f
            .write_all(self.to_json().as_bytes())
            .and_then(|()| f.sync_all())
        {
            let _ = std::fs::remove_file(path);
            return Err(io(e));
        }
        Ok(())
    }
}

/// `O_NONBLOCK`, so a FIFO named like a credential file does not stall the reader.
fn libc_o_nonblock() -> i32 {
    0o4000
}

/// Splits `host:port` (`[v6]:port` too); `None` when it is not of that shape.
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Credential {
        Credential {
            module: "calc".to_owned(),
            core: vec!["127.0.0.1:7443".to_owned()],
            pin: Pin::of_certificate(b"cert"),
            secret: Secret([7; 32]),
            issued_at: Some("2026-12-04T09:00:00Z".to_owned()),
            expires_at: None,
        }
    }

    #[test]
    fn a_credential_round_trips_and_hides_its_secret() {
        let c = sample();
        let back = Credential::parse(&c.to_json(), Path::new("c.json")).unwrap();
        assert_eq!(back, c);
        assert!(!format!("{c:?}").contains("0707"));
    }

    #[test]
    fn faults_name_the_field() {
        let text = sample().to_json().replace("sha256:", "md5:");
        let e = Credential::parse(&text, Path::new("c.json")).unwrap_err();
        assert!(e.to_string().contains("field \"pin\""), "{e}");
        let text = sample().to_json().replace("127.0.0.1:7443", "nohost");
        let e = Credential::parse(&text, Path::new("c.json")).unwrap_err();
        assert!(e.to_string().contains("core[0]"), "{e}");
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        sample().write_new(&p).unwrap();
        assert!(Credential::read(&p).is_ok());
        assert!(sample().write_new(&p).is_err(), "never overwritten");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Credential::read(&p).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[test]
    fn host_port_is_split() {
        assert_eq!(split_host_port("127.0.0.1:80"), Some(("127.0.0.1", 80)));
        assert_eq!(split_host_port("[::1]:80"), Some(("::1", 80)));
        assert_eq!(split_host_port("x:99999"), None);
        assert_eq!(split_host_port(":80"), None);
    }
}
