//! The file-system backend: a directory per context under one base directory, reached only
//! through `cap-std` directory handles.
//!
//! The base directory is opened once (the only ambient path), each context's directory is
//! opened from it with `O_NOFOLLOW` when the context is activated and the handle is held;
//! every file operation is relative to that handle. So:
//! - no key can name anything outside (keys are validated, and file names are not even
//!   derived from their text: a value lives in `v-<sha256(key) hex>`);
//! - a symlink planted in a context directory is never followed (`O_NOFOLLOW` on every
//!   open; a planted link reads as an error, and writes replace the link, not its target);
//! - a hard link planted there is refused on read (a value file must have one link) and
//!   replaced, never written through, on write (temp file + `rename`);
//! - swapping a context's directory for a symlink after activation changes nothing: the
//!   worker holds the directory itself, not its path. Before activation, the swapped-in
//!   symlink is refused (`open_dir_nofollow`).
//!
//! Each value file holds `u16 key length (BE) ‖ key ‖ value`, so `list` can tell keys from
//! hashes. Writes are atomic per key (temp file, `fsync`, `rename`), not across keys.

use super::{Backend, Change, Namespace};
use crate::error::Error;
use crate::id::ContextId;
use crate::key::StorageKey;
use crate::state::ContextState;
use cap_fs_ext::{DirExt as _, FollowSymlinks, MetadataExt as _, OpenOptionsFollowExt as _};
use cap_std::fs::{Dir, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::path::Path;

const BACKEND: &str = "fs";

/// Contexts as directories under a base directory.
#[derive(Debug)]
pub struct FsBackend {
    base: Dir,
}

impl FsBackend {
    /// Opens (creating when missing) `base`.
    ///
    /// # Errors
    /// [`Error::Storage`] when it cannot be created or opened.
    pub fn new(base: &Path) -> Result<FsBackend, Error> {
        std::fs::create_dir_all(base)
            .map_err(|e| Error::storage(BACKEND, format!("creating {}", base.display()), e))?;
        let base = Dir::open_ambient_dir(base, cap_std::ambient_authority())
            .map_err(|e| Error::storage(BACKEND, format!("opening {}", base.display()), e))?;
        Ok(FsBackend { base })
    }
}

impl Backend for FsBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn open(&self, context: ContextId, _: &ContextState) -> Result<Box<dyn Namespace>, Error> {
        let name = context.to_string();
        match self.base.create_dir(&name) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::storage(BACKEND, format!("creating {name}"), e)),
        }
        let dir = self.base.open_dir_nofollow(&name).map_err(|e| {
            Error::storage(
                BACKEND,
                format!("opening the directory of {name} (a symlink is refused)"),
                e,
            )
        })?;
        Ok(Box::new(FsNamespace { dir }))
    }

    fn destroy(&self, context: ContextId) -> Result<(), Error> {
        let name = context.to_string();
        match self.base.remove_dir_all(&name) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::storage(BACKEND, format!("removing {name}"), e)),
        }
    }
}

/// One context's directory, held open.
#[derive(Debug)]
pub struct FsNamespace {
    dir: Dir,
}

fn file_name(key: &StorageKey) -> String {
    format!(
        "v-{}",
        hex::encode(crate::signing::sha256(key.as_str().as_bytes()))
    )
}

impl FsNamespace {
    /// Reads a value file: (key, value). Refuses symlinks, non-files and hard-linked files.
    fn read_file(&self, name: &str) -> Result<Option<(String, Vec<u8>)>, Error> {
        let mut opts = OpenOptions::new();
        opts.read(true).follow(FollowSymlinks::No);
        let mut file = match self.dir.open_with(name, &opts) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::storage(
                    BACKEND,
                    format!("opening {name} (symlinks are refused)"),
                    e,
                ));
            }
        };
        let meta = file
            .metadata()
            .map_err(|e| Error::storage(BACKEND, format!("stat {name}"), e))?;
        if !meta.is_file() {
            return Err(Error::storage(
                BACKEND,
                format!("reading {name}"),
                "not a regular file",
            ));
        }
        if meta.nlink() != 1 {
            return Err(Error::storage(
                BACKEND,
                format!("reading {name}"),
                format!(
                    "the file has {} links; a value file has exactly one (a planted hard link?)",
                    meta.nlink()
                ),
            ));
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::storage(BACKEND, format!("reading {name}"), e))?;
        let corrupt = || Error::storage(BACKEND, format!("reading {name}"), "corrupt value file");
        let len = usize::from(u16::from_be_bytes(
            bytes
                .get(..2)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(corrupt)?,
        ));
        let key = bytes.get(2..2 + len).ok_or_else(corrupt)?;
        let key = String::from_utf8(key.to_vec()).map_err(|_| corrupt())?;
        Ok(Some((key, bytes[2 + len..].to_vec())))
    }

    fn write(&self, key: &StorageKey, value: &[u8]) -> Result<(), Error> {
        let name = file_name(key);
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(|e| Error::storage(BACKEND, "temp name", e))?;
        let tmp = format!("t-{}", hex::encode(suffix));
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true).follow(FollowSymlinks::No);
        let result = (|| {
            let mut f = self.dir.open_with(&tmp, &opts)?;
            let len = u16::try_from(key.as_str().len()).map_err(std::io::Error::other)?;
            f.write_all(&len.to_be_bytes())?;
            f.write_all(key.as_str().as_bytes())?;
            f.write_all(value)?;
            f.sync_all()?;
            // `rename` replaces a planted link itself, never what it points to.
            self.dir.rename(&tmp, &self.dir, &name)
        })();
        if let Err(e) = result {
            let _ = self.dir.remove_file(&tmp);
            return Err(Error::storage(BACKEND, format!("writing {key}"), e));
        }
        Ok(())
    }
}

impl Namespace for FsNamespace {
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, Error> {
        match self.read_file(&file_name(key))? {
            Some((stored, value)) if stored == key.as_str() => Ok(Some(value)),
            Some(_) => Err(Error::storage(
                BACKEND,
                format!("reading {key}"),
                "the file holds another key",
            )),
            None => Ok(None),
        }
    }

    fn size_of(&self, key: &StorageKey) -> Result<Option<u64>, Error> {
        // Something planted under the key's name (a link, a directory) is not a value of
        // this context: it counts nothing, and a write replaces it.
        match self.dir.symlink_metadata(file_name(key)) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::storage(BACKEND, format!("stat {key}"), e)),
            Ok(m) if !m.is_file() || m.nlink() != 1 => Ok(None),
            Ok(_) => Ok(self.get(key)?.map(|v| v.len() as u64)),
        }
    }

    fn list(&self, prefix: &str, limit: usize) -> Result<Vec<StorageKey>, Error> {
        let mut keys = Vec::new();
        let entries = self
            .dir
            .entries()
            .map_err(|e| Error::storage(BACKEND, "listing", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::storage(BACKEND, "listing", e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str().filter(|n| n.starts_with("v-")) else {
                continue;
            };
            // A file that cannot be read safely is not listed (and `get` reports it).
            if let Ok(Some((key, _))) = self.read_file(name)
                && key.starts_with(prefix)
                && let Ok(k) = StorageKey::parse(&key)
            {
                keys.push(k);
            }
        }
        keys.sort();
        keys.truncate(limit);
        Ok(keys)
    }

    fn apply(&self, changes: &[Change]) -> Result<(), Error> {
        for c in changes {
            match c {
                Change::Put(k, v) => self.write(k, v)?,
                Change::Delete(k) => match self.dir.remove_file(file_name(k)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::storage(BACKEND, format!("deleting {k}"), e)),
                },
            }
        }
        Ok(())
    }

    fn usage(&self) -> Result<u64, Error> {
        let mut total = 0u64;
        for k in self.list("", usize::MAX)? {
            total += k.cost() + self.size_of(&k)?.unwrap_or(0);
        }
        Ok(total)
    }
}
