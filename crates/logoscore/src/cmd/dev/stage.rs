//! The staging dir `logoscore dev` serves the module from: `<temp>/modules/<name>/` holding
//! the metadata and what the core runs (the built library, or a copy of the project's files),
//! so the core's modules dir holds this module only and the project dir is never written.
//!
//! Every file is replaced by a rename, never rewritten in place: the serving process keeps the
//! old inode (a library it has mapped is never changed under it) while the next process of a
//! hot swap opens the new one. Removed (with the temp dir) when dropped. Never builds and never
//! talks to the core.

use crate::error::Error;
use std::path::{Path, PathBuf};

/// The staging dir.
pub(crate) struct Stage {
    /// Removed when the stage is dropped (none for a dir given with `--out`).
    _temp: Option<tempfile::TempDir>,
    /// Holds `<name>/`.
    root: PathBuf,
    /// `<root>/modules/<name>`.
    dir: PathBuf,
}

impl Stage {
    /// A new, empty staging dir for module `name` (already checked to be a valid name).
    pub fn new(name: &str) -> Result<Stage, Error> {
        let root = tempfile::Builder::new()
            .prefix("logos-dev-")
            .tempdir()
            .map_err(|e| Error::io("cannot create a staging dir", e))?;
        let modules = root.path().join("modules");
        let dir = modules.join(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        Ok(Stage {
            _temp: Some(root),
            root: modules,
            dir,
        })
    }

    /// A staging dir `<out>/<name>` that stays (`dev --out`): a module dir made by an earlier
    /// `--out` is replaced; any other non-empty dir there is refused.
    pub fn at(out: &Path, name: &str) -> Result<Stage, Error> {
        let dir = out.join(name);
        if dir.join("metadata.json").is_file() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| Error::io(format!("cannot replace {}", dir.display()), e))?;
        } else if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(Error::Usage(format!(
                "{} exists and is not a module dir; give another --out",
                dir.display()
            )));
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        Ok(Stage {
            _temp: None,
            root: out.to_path_buf(),
            dir,
        })
    }

    /// The modules dir to give the core (holds only this module).
    pub fn modules_dir(&self) -> PathBuf {
        self.root.clone()
    }

    /// The module's dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Puts a copy of `from` at `rel` (permissions kept), replacing what was there in one
    /// rename.
    pub fn put_file(&self, rel: &Path, from: &Path) -> Result<(), Error> {
        let dest = self.dir.join(rel);
        let tmp = self.tmp_for(&dest)?;
        std::fs::copy(from, &tmp).map_err(|e| {
            Error::io(
                format!("cannot copy {} to {}", from.display(), tmp.display()),
                e,
            )
        })?;
        self.commit(&tmp, &dest)
    }

    /// Puts `text` at `rel`, replacing what was there in one rename.
    pub fn put_text(&self, rel: &Path, text: &str) -> Result<(), Error> {
        let dest = self.dir.join(rel);
        let tmp = self.tmp_for(&dest)?;
        std::fs::write(&tmp, text)
            .map_err(|e| Error::io(format!("cannot write {}", tmp.display()), e))?;
        self.commit(&tmp, &dest)
    }

    /// Copies the project's files (those `skip` lets through) into the stage, and returns a
    /// fingerprint of their paths and contents (equal fingerprints: nothing changed).
    pub fn put_tree(&self, project: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<u64, Error> {
        use std::hash::{Hash as _, Hasher as _};
        let mut files = Vec::new();
        let mut todo = vec![project.to_path_buf()];
        while let Some(dir) = todo.pop() {
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
                let path = entry.path();
                if skip(&path) {
                    continue;
                }
                let Ok(rel) = path.strip_prefix(project) else {
                    continue;
                };
                let kind = entry
                    .file_type()
                    .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
                if kind.is_dir() {
                    todo.push(path);
                } else if kind.is_file() {
                    self.put_file(rel, &path)?;
                    let bytes = std::fs::read(&path)
                        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
                    files.push((rel.to_path_buf(), bytes));
                }
            }
        }
        files.sort();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        files.hash(&mut h);
        Ok(h.finish())
    }

    fn tmp_for(&self, dest: &Path) -> Result<PathBuf, Error> {
        let parent = dest.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(parent.join(format!(".{name}.staging")))
    }

    fn commit(&self, tmp: &Path, dest: &Path) -> Result<(), Error> {
        std::fs::rename(tmp, dest)
            .map_err(|e| Error::io(format!("cannot move {} into place", dest.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_keeps_the_old_inode_for_who_opened_it() {
        let stage = Stage::new("m").unwrap();
        stage.put_text(Path::new("lib.so"), "one").unwrap();
        let held = std::fs::File::open(stage.dir().join("lib.so")).unwrap();
        stage.put_text(Path::new("lib.so"), "two").unwrap();
        let mut old = String::new();
        std::io::Read::read_to_string(&mut &held, &mut old).unwrap();
        assert_eq!(old, "one");
        assert_eq!(
            std::fs::read_to_string(stage.dir().join("lib.so")).unwrap(),
            "two"
        );
        let root = stage.modules_dir();
        drop(stage);
        assert!(!root.exists());
    }
}
