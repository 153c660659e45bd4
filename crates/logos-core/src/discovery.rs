//! Finding modules: which `<dir>/<name>/metadata.json` exist and which of them are valid.
//!
//! Owns the scan of the configured modules dirs and the rule for a name found twice (the first
//! dir wins). A module with bad metadata becomes a fault and is not registered; every other
//! module still is, so one broken module never hides the rest. Reads directories and metadata
//! files only; never starts a process, never resolves dependencies (`resolver.rs`), never keeps
//! state between scans (the registry decides what a rescan changes).

use crate::manifest::{Location, METADATA_FILE, Manifest, ManifestError, ManifestFault};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What a scan found.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Discovery {
    /// Valid modules, sorted by name, names unique.
    pub manifests: Vec<Manifest>,
    /// Everything that was refused, in scan order: unreadable dirs, invalid metadata, names
    /// already taken by an earlier dir.
    pub faults: Vec<ManifestFault>,
    /// The modules whose metadata is invalid, by directory name (the name an operator types),
    /// so that asking for one names its faults instead of "not known".
    pub invalid: BTreeMap<String, ManifestError>,
}

/// Scans each of `dirs`, in order, for `<name>/metadata.json`.
///
/// - Entries are visited in byte order of their names, so the result is deterministic.
/// - Hidden entries (`.git`), plain files and directories without `metadata.json` are skipped.
/// - A dir that cannot be read is a fault; the other dirs are still scanned.
/// - The same module name in two dirs: the first dir's copy wins even if it is invalid (so a
///   broken override never silently falls back to another copy) and the second is a fault
///   naming both paths. A dir listed twice is scanned once.
pub fn discover(dirs: &[PathBuf]) -> Discovery {
    let mut found = Discovery::default();
    let mut scanned: BTreeSet<PathBuf> = BTreeSet::new();
    // Module name (directory name) → the directory that claimed it.
    let mut claimed: BTreeMap<OsString, PathBuf> = BTreeMap::new();
    let mut manifests: Vec<Manifest> = Vec::new();

    for dir in dirs {
        let identity = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if !scanned.insert(identity) {
            tracing::debug!(dir = %dir.display(), "modules dir listed twice; scanned once");
            continue;
        }
        let entries = match list_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                found.faults.push(ManifestFault::new(
                    dir.clone(),
                    Location::File,
                    format!(
                        "cannot read modules dir: {e}; create it, make it readable, or remove it from the modules dirs"
                    ),
                ));
                continue;
            }
        };
        for (file_name, module_dir) in entries {
            if file_name.as_encoded_bytes().starts_with(b".") || !module_dir.is_dir() {
                continue;
            }
            let metadata = module_dir.join(METADATA_FILE);
            match metadata.try_exists() {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(dir = %module_dir.display(), "no {METADATA_FILE}; not a module");
                    continue;
                }
                Err(e) => {
                    found.faults.push(ManifestFault::new(
                        metadata,
                        Location::File,
                        format!("cannot be checked: {e}"),
                    ));
                    continue;
                }
            }
            if let Some(first) = claimed.get(&file_name) {
                found.faults.push(ManifestFault::new(
                    metadata,
                    Location::File,
                    format!(
                        "module {:?} is also in {}; the first modules dir wins, so this copy is not registered; remove one copy or reorder the modules dirs",
                        file_name.to_string_lossy(),
                        first.display()
                    ),
                ));
                continue;
            }
            let name = file_name.to_string_lossy().into_owned();
            claimed.insert(file_name, module_dir.clone());
            match Manifest::load(&module_dir) {
                Ok(m) => manifests.push(m),
                Err(e) => {
                    found.faults.extend(e.faults().iter().cloned());
                    found.invalid.insert(name, e);
                }
            }
        }
    }
    manifests.sort_by(|a, b| a.name.cmp(&b.name));
    found.manifests = manifests;
    found
}

/// The entries of `dir` as (file name, path), sorted by file name.
fn list_dir(dir: &Path) -> std::io::Result<Vec<(OsString, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        out.push((entry.file_name(), entry.path()));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn write_module(root: &Path, name: &str, json: &str) -> std::io::Result<PathBuf> {
        let dir = root.join(name);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(format!("lib{name}.so")), b"")?;
        fs::write(dir.join(METADATA_FILE), json)?;
        Ok(dir)
    }

    fn valid(name: &str, version: &str) -> String {
        format!(r#"{{"name":"{name}","version":"{version}","main":"lib{name}.so"}}"#)
    }

    fn names(d: &Discovery) -> Vec<&str> {
        d.manifests.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn finds_valid_modules_sorted() -> TestResult {
        let tmp = tempfile::tempdir()?;
        for n in ["kv", "calc", "chat"] {
            write_module(tmp.path(), n, &valid(n, "1.0.0"))?;
        }
        fs::write(tmp.path().join("README"), "not a module")?;
        fs::create_dir(tmp.path().join("empty"))?;
        fs::create_dir(tmp.path().join(".git"))?;
        let d = discover(&[tmp.path().to_path_buf()]);
        assert_eq!(names(&d), vec!["calc", "chat", "kv"]);
        assert!(d.faults.is_empty(), "{:?}", d.faults);
        Ok(())
    }

    #[test]
    fn bad_module_is_a_fault_and_the_rest_still_register() -> TestResult {
        let tmp = tempfile::tempdir()?;
        write_module(tmp.path(), "calc", &valid("calc", "1.0.0"))?;
        write_module(tmp.path(), "broken", r#"{"name":"broken","version":"x"}"#)?;
        write_module(tmp.path(), "wrongname", &valid("other", "1.0.0"))?;
        let d = discover(&[tmp.path().to_path_buf()]);
        assert_eq!(names(&d), vec!["calc"]);
        // broken: version + main; wrongname: name mismatch (its main names libother.so too).
        assert!(
            d.faults
                .iter()
                .any(|f| f.pointer() == Some("/version")
                    && f.path().ends_with("broken/metadata.json"))
        );
        assert!(
            d.faults
                .iter()
                .any(|f| f.pointer() == Some("/name")
                    && f.path().ends_with("wrongname/metadata.json"))
        );
        // Each refused module's faults are kept under its directory name too.
        assert_eq!(
            d.invalid.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["broken", "wrongname"]
        );
        assert!(
            d.invalid["broken"]
                .faults()
                .iter()
                .any(|f| f.pointer() == Some("/version"))
        );
        Ok(())
    }

    #[test]
    fn unreadable_dir_is_a_fault() -> TestResult {
        let tmp = tempfile::tempdir()?;
        write_module(tmp.path(), "calc", &valid("calc", "1.0.0"))?;
        let missing = tmp.path().join("nope");
        let d = discover(&[missing.clone(), tmp.path().to_path_buf()]);
        assert_eq!(names(&d), vec!["calc"]);
        assert_eq!(d.faults.len(), 1);
        assert_eq!(d.faults[0].path(), missing.as_path());
        assert!(d.faults[0].message().contains("cannot read modules dir"));
        Ok(())
    }

    #[test]
    fn first_dir_wins_and_second_is_named() -> TestResult {
        let a = tempfile::tempdir()?;
        let b = tempfile::tempdir()?;
        write_module(a.path(), "calc", &valid("calc", "1.0.0"))?;
        write_module(b.path(), "calc", &valid("calc", "2.0.0"))?;
        write_module(b.path(), "kv", &valid("kv", "1.0.0"))?;
        let d = discover(&[a.path().to_path_buf(), b.path().to_path_buf()]);
        assert_eq!(names(&d), vec!["calc", "kv"]);
        assert_eq!(d.manifests[0].version, semver::Version::new(1, 0, 0));
        assert_eq!(d.faults.len(), 1);
        let msg = d.faults[0].to_string();
        assert!(
            msg.contains(&b.path().join("calc").display().to_string()),
            "{msg}"
        );
        assert!(
            msg.contains(&a.path().join("calc").display().to_string()),
            "{msg}"
        );
        Ok(())
    }

    #[test]
    fn invalid_first_copy_still_claims_the_name() -> TestResult {
        let a = tempfile::tempdir()?;
        let b = tempfile::tempdir()?;
        write_module(a.path(), "calc", "{")?;
        write_module(b.path(), "calc", &valid("calc", "2.0.0"))?;
        let d = discover(&[a.path().to_path_buf(), b.path().to_path_buf()]);
        assert!(d.manifests.is_empty());
        assert_eq!(d.faults.len(), 2);
        Ok(())
    }

    #[test]
    fn same_dir_twice_is_scanned_once() -> TestResult {
        let a = tempfile::tempdir()?;
        write_module(a.path(), "calc", &valid("calc", "1.0.0"))?;
        let d = discover(&[a.path().to_path_buf(), a.path().join(".")]);
        assert_eq!(names(&d), vec!["calc"]);
        assert!(d.faults.is_empty(), "{:?}", d.faults);
        Ok(())
    }
}
