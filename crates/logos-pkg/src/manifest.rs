//! `manifest.json` of a package: the module's identity (from its `metadata.json`), every
//! file with its size, SHA-256 and executable bit, the root hash over them, the target
//! triples, the signer, and the quality report embedded at publish.
//!
//! Owns the document's shape, its checks and the root hash. The manifest's bytes are what is
//! signed (`sign.rs`), so it is written once, deterministically (fields in a fixed order,
//! maps sorted), and read back from the exact bytes in the archive. Never touches archives or
//! the file system.

use crate::error::{Error, Result};
use crate::quality::Report;
use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The format version this crate writes and reads.
pub const FORMAT: u32 = 1;
/// The manifest's name inside the archive (always the first entry).
pub const MANIFEST: &str = "manifest.json";
/// The signature's name inside the archive (the second entry, when signed).
pub const SIGNATURE: &str = "manifest.sig";
/// The module metadata every package carries as a file.
pub const METADATA: &str = "metadata.json";
/// Target of packages without native code (scripts, data).
pub const ANY_TARGET: &str = "any";

/// One file of the module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative path with `/` separators, normal components only.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the contents.
    pub sha256: String,
    /// Mode 0755 in the archive and in the store (else 0644).
    #[serde(default)]
    pub executable: bool,
}

/// Who signed: the name travels inside the signed bytes, so it cannot be swapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signer {
    /// The signer's name (a key name: letters, digits, `-`, `_`, `.`, `@`).
    pub name: String,
    /// The Ed25519 public key, 64 hex digits.
    pub key: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// Module name (equals `metadata.json`'s).
    pub name: String,
    /// Module version (equals `metadata.json`'s).
    pub version: Version,
    /// From metadata.
    #[serde(default)]
    pub description: String,
    /// From metadata.
    #[serde(default)]
    pub author: String,
    /// From metadata: module → semver range (the RFC's plain list becomes `*`).
    #[serde(default)]
    pub dependencies: BTreeMap<String, VersionReq>,
    /// Target triples the native code was built for, or `["any"]`.
    pub targets: Vec<String>,
    /// Every file, sorted by path.
    pub files: Vec<FileEntry>,
    /// [`root_hash`] of `files`.
    pub root: String,
    /// The signer (also present in unsigned packages that were prepared for a key).
    pub signer: Option<Signer>,
    /// The quality report `publish` embeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Report>,
}

impl Manifest {
    /// Parses and checks manifest bytes as found in an archive.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field.
    pub fn from_bytes(bytes: &[u8]) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(MANIFEST, format!("not a package manifest: {e}")))?;
        m.check()?;
        Ok(m)
    }

    /// The exact bytes written into archives (and signed).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain structs and BTreeMaps cannot fail.
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Checks everything that does not need the files: format, names, paths, sorted unique
    /// entries, hash forms, the root hash.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field.
    pub fn check(&self) -> Result<()> {
        let bad =
            |field: &str, why: String| Err(Error::invalid(format!("{MANIFEST}: {field}"), why));
        if self.format != FORMAT {
            return bad(
                "format",
                format!(
                    "format {} is not supported (this logoscore reads format {FORMAT}); upgrade logoscore",
                    self.format
                ),
            );
        }
        check_module_name(&self.name).or_else(|e| bad("name", e))?;
        for dep in self.dependencies.keys() {
            check_module_name(dep).or_else(|e| bad("dependencies", e))?;
        }
        if self.targets.is_empty() {
            return bad("targets", "is empty; give a triple or \"any\"".into());
        }
        if self.files.is_empty() {
            return bad("files", "is empty".into());
        }
        for w in self.files.windows(2) {
            if w[0].path >= w[1].path {
                return bad(
                    "files",
                    format!(
                        "{:?} and {:?} are not sorted or not unique",
                        w[0].path, w[1].path
                    ),
                );
            }
        }
        for f in &self.files {
            check_path(&f.path).or_else(|e| bad("files", format!("{:?}: {e}", f.path)))?;
            if f.path == MANIFEST || f.path == SIGNATURE {
                return bad(
                    "files",
                    format!("{:?} is reserved for the package itself", f.path),
                );
            }
            if !is_hex(&f.sha256, 64) {
                return bad(
                    "files",
                    format!("{:?}: sha256 is not 64 hex digits", f.path),
                );
            }
        }
        if !self.files.iter().any(|f| f.path == METADATA) {
            return bad(
                "files",
                format!("no {METADATA}: every package carries its module's metadata"),
            );
        }
        if let Some(s) = &self.signer {
            check_signer_name(&s.name).or_else(|e| bad("signer.name", e))?;
            if !is_hex(&s.key, 64) {
                return bad("signer.key", "is not 64 hex digits".into());
            }
        }
        let root = root_hash(&self.files);
        if self.root != root {
            return bad(
                "root",
                format!(
                    "{} does not match the files (their root is {root})",
                    self.root
                ),
            );
        }
        Ok(())
    }

    /// Whether the package runs on `triple`.
    pub fn runs_on(&self, triple: &str) -> bool {
        self.targets.iter().any(|t| t == triple || t == ANY_TARGET)
    }
}

/// The root hash: SHA-256 over one line per file (`sha256 size x|- path`), in path order, so
/// it names the exact contents, sizes, modes and paths of the module.
pub fn root_hash(files: &[FileEntry]) -> String {
    let mut h = Sha256::new();
    h.update(b"logos-pkg/root/v1\n");
    for f in files {
        let mode = if f.executable { "x" } else { "-" };
        h.update(format!("{} {} {mode} {}\n", f.sha256, f.size, f.path).as_bytes());
    }
    hex::encode(h.finalize())
}

/// SHA-256 as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The triple this binary was built for, as packages record it (e.g.
/// `x86_64-unknown-linux-gnu`).
pub fn host_target() -> String {
    let env = if cfg!(target_env = "musl") {
        "musl"
    } else {
        "gnu"
    };
    format!(
        "{}-unknown-{}-{env}",
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// A module name as the core accepts it: 1–64 of lower-case letters, digits, `_`, `-`, not
/// starting with a digit or `-`.
///
/// # Errors
/// Why not.
pub fn check_module_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name.as_bytes()[0].is_ascii_lowercase();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a module name (1 to 64 of a-z, 0-9, _ and -, starting with a letter)"
        ))
    }
}

/// A key or signer name: 1–64 of letters, digits, `-`, `_`, `.`, `@`, not starting with `.`.
///
/// # Errors
/// Why not.
pub fn check_signer_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a key name (1 to 64 of letters, digits, -, _, . and @, not starting with . or -)"
        ))
    }
}

/// A path inside a package: relative, `/`-separated normal components (no `.`, `..`, empty
/// parts, backslashes or NUL), at most 255 bytes.
///
/// # Errors
/// Why not.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.len() > 255 {
        return Err("path longer than 255 bytes".into());
    }
    if path.starts_with('/') {
        return Err("absolute path".into());
    }
    if path.contains('\\') || path.contains('\0') {
        return Err("backslash or NUL in path".into());
    }
    for part in path.split('/') {
        match part {
            "" => return Err("empty path component (`//` or trailing `/`)".into()),
            "." => return Err("`.` component".into()),
            ".." => return Err("`..` component (escapes the module dir)".into()),
            _ => {}
        }
    }
    Ok(())
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The fields of a module's `metadata.json` a package records, read leniently (the core
/// checks the rest when it loads the module).
#[derive(Debug, Clone)]
pub struct ModuleMeta {
    /// `name`.
    pub name: String,
    /// `version`.
    pub version: Version,
    /// `description`.
    pub description: String,
    /// `author`.
    pub author: String,
    /// `dependencies` as ranges.
    pub dependencies: BTreeMap<String, VersionReq>,
    /// `permissions`.
    pub permissions: Vec<String>,
    /// `main`.
    pub main: Option<String>,
}

impl ModuleMeta {
    /// Parses `metadata.json` bytes.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field.
    pub fn parse(bytes: &[u8]) -> Result<ModuleMeta> {
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(METADATA, format!("not JSON: {e}")))?;
        let text = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
        let name = text("name")
            .ok_or_else(|| Error::invalid(format!("{METADATA}: name"), "missing or not text"))?
            .to_owned();
        check_module_name(&name).map_err(|e| Error::invalid(format!("{METADATA}: name"), e))?;
        let version = text("version")
            .ok_or_else(|| Error::invalid(format!("{METADATA}: version"), "missing or not text"))?;
        let version = Version::parse(version).map_err(|e| {
            Error::invalid(
                format!("{METADATA}: version"),
                format!("{version:?} is not semver ({e})"),
            )
        })?;
        let mut dependencies = BTreeMap::new();
        match v.get("dependencies") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(names)) => {
                for n in names {
                    let n = n.as_str().ok_or_else(|| {
                        Error::invalid(format!("{METADATA}: dependencies"), "entries must be names")
                    })?;
                    dependencies.insert(n.to_owned(), VersionReq::STAR);
                }
            }
            Some(serde_json::Value::Object(map)) => {
                for (n, r) in map {
                    let r = r.as_str().ok_or_else(|| {
                        Error::invalid(
                            format!("{METADATA}: dependencies/{n}"),
                            "must be a range text",
                        )
                    })?;
                    let req = VersionReq::parse(r).map_err(|e| {
                        Error::invalid(
                            format!("{METADATA}: dependencies/{n}"),
                            format!("{r:?} is not a semver range ({e})"),
                        )
                    })?;
                    dependencies.insert(n.clone(), req);
                }
            }
            Some(_) => {
                return Err(Error::invalid(
                    format!("{METADATA}: dependencies"),
                    "must be a map of ranges or a list of names",
                ));
            }
        }
        let permissions = v
            .get("permissions")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(ModuleMeta {
            name,
            version,
            description: text("description").unwrap_or_default().to_owned(),
            author: text("author").unwrap_or_default().to_owned(),
            dependencies,
            permissions,
            main: text("main").map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in ["a", "lib/x.so", "a.b/c-d_e"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "a/",
            "./a",
            "a\\b",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn root_hash_covers_modes() {
        let f = |x| FileEntry {
            path: "a".into(),
            size: 1,
            sha256: "0".repeat(64),
            executable: x,
        };
        assert_ne!(root_hash(&[f(false)]), root_hash(&[f(true)]));
    }
}
