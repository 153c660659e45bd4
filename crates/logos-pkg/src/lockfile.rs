//! `logos.lock`: the exact versions and root hashes of a machine's active modules, in TOML,
//! so `logoscore install --locked` builds the same set elsewhere (same bytes, checked by root
//! hash). Owns the format only; never installs.

use crate::error::{Error, Result};
use semver::Version;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockfile {
    /// Format version (1).
    pub version: u32,
    /// One entry per module, sorted by name.
    #[serde(default, rename = "package")]
    pub packages: Vec<Locked>,
}

/// One module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locked {
    /// Module name.
    pub name: String,
    /// Exact version.
    pub version: Version,
    /// Root hash of its files.
    pub root: String,
    /// Registry URL it came from, or `file` for a local package.
    pub source: String,
    /// Signer name.
    #[serde(default)]
    pub signer: String,
}

impl Lockfile {
    /// Reads and checks `path`.
    ///
    /// # Errors
    /// [`Error::Io`], or [`Error::Invalid`] naming the line.
    pub fn load(path: &Path) -> Result<Lockfile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        let lock: Lockfile = toml::from_str(&text).map_err(|e| {
            Error::invalid(
                path.display().to_string(),
                e.to_string().trim_end().to_owned(),
            )
        })?;
        if lock.version != 1 {
            return Err(Error::invalid(
                path.display().to_string(),
                format!("lockfile version {} is not supported (1 is)", lock.version),
            ));
        }
        Ok(lock)
    }

    /// Writes it atomically.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut me = self.clone();
        me.packages.sort_by(|a, b| a.name.cmp(&b.name));
        let body = toml::to_string(&me).map_err(|e| Error::invalid("logos.lock", e.to_string()))?;
        let text = format!(
            "# logos.lock: written by logoscore; `logoscore install --locked` reproduces it.\n{body}"
        );
        crate::store::write_atomic(path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_sorted_and_refuses_other_versions() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("logos.lock");
        let l = |n: &str| Locked {
            name: n.into(),
            version: Version::new(1, 2, 3),
            root: "ab".repeat(32),
            source: "http://127.0.0.1:1".into(),
            signer: "alice".into(),
        };
        let lock = Lockfile {
            version: 1,
            packages: vec![l("zeta"), l("alpha")],
        };
        lock.save(&path).unwrap_or_else(|e| panic!("{e}"));
        let back = Lockfile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.packages[0].name, "alpha");
        assert_eq!(back.packages.len(), 2);
        std::fs::write(&path, "version = 2\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(Lockfile::load(&path).is_err_and(|e| e.to_string().contains("version 2")));
        std::fs::write(&path, "version = 1\n[[package]]\nname = 3\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(Lockfile::load(&path).is_err());
    }
}
