//! The content-addressed store of one machine's packages, and which version of each module
//! is active.
//!
//! ```text
//! <pkg dir>/store/<root hash>/manifest.json, manifest.sig, module/…   read-only once there
//! <pkg dir>/store/.tmp-*                                             staging (cleaned under the lock)
//! <pkg dir>/modules/<name> -> ../store/<root>/module                 the active version
//! <pkg dir>/state/<name>.json                                        activation history, pin
//! <pkg dir>/.lock                                                    flock of every change
//! ```
//!
//! `modules/` is a modules dir as the core reads it, so `logoscore run -m <pkg dir>/modules`
//! (or the default modules dir, when the pkg dir is the default data dir) runs what is
//! installed. Every change is crash-safe: a package is unpacked and verified in a staging dir,
//! synced, then renamed into place (so `store/<root>` is complete or absent); the active
//! version is switched by renaming a new symlink over the old one (so it is the old or the
//! new, never neither); history is appended after the switch (so an interrupted switch leaves
//! the old version as the one `rollback` returns to). Several versions live side by side;
//! `rollback` needs no network. Never talks to a registry and never starts a module.

use crate::archive::{self, Limits, SignatureCheck};
use crate::error::{Error, Result};
use crate::manifest::{MANIFEST, Manifest, SIGNATURE};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Environment variable naming a phase at which an install stops and waits to be killed:
/// `unpacked`, `stored`, `switched`. Fault injection for the crash-safety tests only.
pub const PAUSE_ENV: &str = "LOGOS_PKG_PAUSE_AT";

/// The package dir.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// Held while changing the store (an exclusive `flock` on `<pkg dir>/.lock`).
#[derive(Debug)]
pub struct StoreLock {
    _file: std::fs::File,
}

/// A package in the store.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its root hash (the directory name).
    pub root: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// Whether it carries a signature.
    pub signed: bool,
}

/// Per-module state beside the pointer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleState {
    /// Roots in the order they were activated, most recent last, each at most once.
    #[serde(default)]
    pub history: Vec<String>,
    /// `pin NAME@VERSION`: upgrades keep this version.
    #[serde(default)]
    pub pinned: Option<semver::Version>,
}

/// One installed module as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    /// Module name.
    pub name: String,
    /// The active version, if the pointer is there.
    pub active: Option<VersionRef>,
    /// Pinned version.
    pub pinned: Option<semver::Version>,
    /// Every version in the store, oldest activation first.
    pub versions: Vec<VersionRef>,
    /// What `rollback` would switch to.
    pub previous: Option<String>,
}

/// Version and root, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionRef {
    /// Version.
    pub version: semver::Version,
    /// Root hash.
    pub root: String,
}

/// What [`Store::add`] did.
#[derive(Debug, Clone)]
pub struct Added {
    /// The package.
    pub entry: Entry,
    /// False when the same root was already in the store (nothing was written).
    pub fresh: bool,
}

impl Store {
    /// Opens (creating) the package dir.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be created.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Store> {
        let dir = dir.into();
        for sub in ["store", "modules", "state"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d)
                .map_err(|e| Error::io(format!("cannot create {}", d.display()), e))?;
        }
        Ok(Store { dir })
    }

    /// The package dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<pkg dir>/modules`: the modules dir of the active versions.
    pub fn modules_dir(&self) -> PathBuf {
        self.dir.join("modules")
    }

    /// `<pkg dir>/logos.lock`.
    pub fn lockfile(&self) -> PathBuf {
        self.dir.join("logos.lock")
    }

    /// Takes the store's lock (waiting for another logoscore to finish), then removes what an
    /// interrupted change left: staging dirs and half-made pointers.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn lock(&self) -> Result<StoreLock> {
        let path = self.dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::io(format!("cannot lock {}", path.display()), e.into()))?;
        for (sub, prefix) in [("store", ".tmp-"), ("modules", ".new-")] {
            for e in std::fs::read_dir(self.dir.join(sub))
                .into_iter()
                .flatten()
                .flatten()
            {
                if e.file_name().to_string_lossy().starts_with(prefix) {
                    let p = e.path();
                    tracing::info!(path = %p.display(), "removing what an interrupted install left");
                    let _ = if p.is_dir() && !p.is_symlink() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        }
        Ok(StoreLock { _file: file })
    }

    /// Verifies a package from `input` and adds it to the store (unless its root is there
    /// already). `check` decides on the signature before any file is written.
    ///
    /// # Errors
    /// Everything [`archive::read`] refuses; [`Error::Io`].
    pub fn add(
        &self,
        _lock: &StoreLock,
        input: impl Read,
        package: &str,
        limits: &Limits,
        check: &mut SignatureCheck<'_>,
    ) -> Result<Added> {
        let tmp =
            self.dir
                .join("store")
                .join(format!(".tmp-{}-{}", std::process::id(), random_hex(6)));
        let module = tmp.join("module");
        std::fs::create_dir_all(&module)
            .map_err(|e| Error::io(format!("cannot create {}", module.display()), e))?;
        let result = (|| {
            let un = archive::read(input, package, limits, check, Some(&module))?;
            std::fs::write(tmp.join(MANIFEST), &un.manifest_bytes)
                .map_err(|e| Error::io("cannot write the manifest into the store", e))?;
            if let Some(sig) = &un.signature {
                std::fs::write(tmp.join(SIGNATURE), format!("{}\n", hex::encode(sig)))
                    .map_err(|e| Error::io("cannot write the signature into the store", e))?;
            }
            Ok(un)
        })();
        let un = match result {
            Ok(un) => un,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let root = un.manifest.root.clone();
        let entry = Entry {
            root: root.clone(),
            manifest: un.manifest,
            signed: un.signature.is_some(),
        };
        let final_dir = self.dir.join("store").join(&root);
        if final_dir.exists() {
            let _ = std::fs::remove_dir_all(&tmp);
            return Ok(Added {
                entry,
                fresh: false,
            });
        }
        make_read_only(&module, &entry.manifest)?;
        sync_dir(&module)?;
        sync_dir(&tmp)?;
        pause("unpacked");
        std::fs::rename(&tmp, &final_dir).map_err(|e| {
            Error::io(
                format!("cannot move the package into {}", final_dir.display()),
                e,
            )
        })?;
        sync_dir(&self.dir.join("store"))?;
        pause("stored");
        Ok(Added { entry, fresh: true })
    }

    /// The package at `root`, if it is in the store.
    pub fn entry(&self, root: &str) -> Option<Entry> {
        if !is_root(root) {
            return None;
        }
        let dir = self.dir.join("store").join(root);
        let bytes = std::fs::read(dir.join(MANIFEST)).ok()?;
        let manifest = Manifest::from_bytes(&bytes).ok()?;
        Some(Entry {
            root: root.to_owned(),
            manifest,
            signed: dir.join(SIGNATURE).exists(),
        })
    }

    /// Every package in the store.
    pub fn entries(&self) -> Vec<Entry> {
        let mut out: Vec<Entry> = std::fs::read_dir(self.dir.join("store"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| self.entry(e.file_name().to_str()?))
            .collect();
        out.sort_by(|a, b| {
            (&a.manifest.name, &a.manifest.version).cmp(&(&b.manifest.name, &b.manifest.version))
        });
        out
    }

    /// The root the pointer of `name` names, if any.
    pub fn active(&self, name: &str) -> Option<String> {
        let target = std::fs::read_link(self.modules_dir().join(name)).ok()?;
        let root = target.parent()?.file_name()?.to_str()?.to_owned();
        is_root(&root).then_some(root)
    }

    /// The module's history and pin.
    pub fn state(&self, name: &str) -> ModuleState {
        std::fs::read(self.state_path(name))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.dir.join("state").join(format!("{name}.json"))
    }

    fn write_state(&self, name: &str, state: &ModuleState) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
        write_atomic(&self.state_path(name), &bytes)
    }

    /// Makes `root` the active version of its module: a new symlink renamed over the old one.
    /// Returns the root that was active before.
    ///
    /// # Errors
    /// [`Error::NotFound`] when `root` is not in the store; [`Error::Io`].
    pub fn activate(&self, _lock: &StoreLock, root: &str) -> Result<Option<String>> {
        let entry = self
            .entry(root)
            .ok_or_else(|| Error::NotFound(format!("package {root} is not in the store")))?;
        let name = entry.manifest.name.clone();
        let before = self.active(&name);
        let tmp = self
            .modules_dir()
            .join(format!(".new-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(Path::new("../store").join(root).join("module"), &tmp)
            .map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
        std::fs::rename(&tmp, self.modules_dir().join(&name))
            .map_err(|e| Error::io(format!("cannot switch {name} to {root}"), e))?;
        sync_dir(&self.modules_dir())?;
        pause("switched");
        let mut state = self.state(&name);
        if let Some(b) = &before
            && !state.history.contains(b)
        {
            state.history.push(b.clone());
        }
        state.history.retain(|r| r != root);
        state.history.push(root.to_owned());
        self.write_state(&name, &state)?;
        Ok(before)
    }

    /// What `rollback` switches to: the most recently activated version that is not the
    /// active one and is still in the store.
    pub fn previous(&self, name: &str) -> Option<String> {
        let active = self.active(name);
        self.state(name)
            .history
            .iter()
            .rev()
            .find(|r| Some(*r) != active.as_ref() && self.entry(r).is_some())
            .cloned()
    }

    /// Pins (or with `None` unpins) a module at a version.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn set_pin(
        &self,
        _lock: &StoreLock,
        name: &str,
        version: Option<semver::Version>,
    ) -> Result<()> {
        let mut state = self.state(name);
        state.pinned = version;
        self.write_state(name, &state)
    }

    /// Removes the module's pointer, state and every version of it from the store. Returns
    /// the roots removed.
    ///
    /// # Errors
    /// [`Error::NotFound`] when nothing of it is installed; [`Error::Io`].
    pub fn uninstall(&self, _lock: &StoreLock, name: &str) -> Result<Vec<String>> {
        let pointer = self.modules_dir().join(name);
        let had_pointer = pointer.symlink_metadata().is_ok();
        if had_pointer {
            std::fs::remove_file(&pointer)
                .map_err(|e| Error::io(format!("cannot remove {}", pointer.display()), e))?;
            sync_dir(&self.modules_dir())?;
        }
        let mut removed = Vec::new();
        for e in self
            .entries()
            .into_iter()
            .filter(|e| e.manifest.name == name)
        {
            let d = self.dir.join("store").join(&e.root);
            make_writable(&d);
            std::fs::remove_dir_all(&d)
                .map_err(|err| Error::io(format!("cannot remove {}", d.display()), err))?;
            removed.push(e.root);
        }
        let _ = std::fs::remove_file(self.state_path(name));
        if !had_pointer && removed.is_empty() {
            return Err(Error::NotFound(format!("{name} is not installed")));
        }
        Ok(removed)
    }

    /// Every module with a pointer or a version in the store.
    pub fn installed(&self) -> Vec<Installed> {
        let entries = self.entries();
        let mut names: Vec<String> = entries.iter().map(|e| e.manifest.name.clone()).collect();
        for e in std::fs::read_dir(self.modules_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Some(n) = e.file_name().to_str()
                && !n.starts_with('.')
            {
                names.push(n.to_owned());
            }
        }
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let state = self.state(&name);
                let active = self
                    .active(&name)
                    .and_then(|r| self.entry(&r))
                    .map(|e| VersionRef {
                        version: e.manifest.version.clone(),
                        root: e.root,
                    });
                let mut versions: Vec<VersionRef> = entries
                    .iter()
                    .filter(|e| e.manifest.name == name)
                    .map(|e| VersionRef {
                        version: e.manifest.version.clone(),
                        root: e.root.clone(),
                    })
                    .collect();
                versions.sort_by_key(|v| {
                    state
                        .history
                        .iter()
                        .position(|r| *r == v.root)
                        .unwrap_or(usize::MAX)
                });
                Installed {
                    previous: self.previous(&name),
                    name,
                    active,
                    pinned: state.pinned,
                    versions,
                }
            })
            .collect()
    }

    /// Re-hashes every file of every package and checks every pointer. Returns the problems
    /// found (none: the store is consistent).
    pub fn verify(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for e in std::fs::read_dir(self.dir.join("store"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                problems.push(format!("store/{name}: staging dir of an interrupted install (the next install removes it)"));
                continue;
            }
            let Some(entry) = self.entry(&name) else {
                problems.push(format!(
                    "store/{name}: not a package (no readable manifest, or not a root hash)"
                ));
                continue;
            };
            if entry.root != name {
                problems.push(format!("store/{name}: manifest root is {}", entry.root));
            }
            let module = e.path().join("module");
            let mut found = Vec::new();
            let _ = list_files(&module, &module, &mut found);
            found.sort();
            let listed: Vec<&str> = entry
                .manifest
                .files
                .iter()
                .map(|f| f.path.as_str())
                .collect();
            if found != listed {
                problems.push(format!("store/{name}: files differ from the manifest"));
                continue;
            }
            for f in &entry.manifest.files {
                match std::fs::read(module.join(&f.path)) {
                    Ok(b) if crate::manifest::sha256_hex(&b) == f.sha256 => {}
                    _ => problems.push(format!(
                        "store/{name}/module/{}: altered or unreadable",
                        f.path
                    )),
                }
            }
        }
        for e in std::fs::read_dir(self.modules_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                problems.push(format!(
                    "modules/{name}: half-made pointer of an interrupted switch"
                ));
                continue;
            }
            match self.active(&name).and_then(|r| self.entry(&r)) {
                Some(en) if en.manifest.name == name => {}
                Some(en) => problems.push(format!(
                    "modules/{name}: points at a package of {}",
                    en.manifest.name
                )),
                None => problems.push(format!(
                    "modules/{name}: does not point at a package in the store"
                )),
            }
        }
        problems
    }

    /// The package file of a stored version, rebuilt (the format is deterministic, so it is
    /// byte for byte the file that was installed).
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Io`].
    pub fn archive(&self, root: &str) -> Result<Vec<u8>> {
        let entry = self
            .entry(root)
            .ok_or_else(|| Error::NotFound(format!("package {root} is not in the store")))?;
        let dir = self.dir.join("store").join(root);
        let sig = match std::fs::read_to_string(dir.join(SIGNATURE)) {
            Ok(t) => Some(hex::decode(t.trim()).map_err(|_| Error::invalid(SIGNATURE, "not hex"))?),
            Err(_) => None,
        };
        let sources: Vec<PathBuf> = entry
            .manifest
            .files
            .iter()
            .map(|f| dir.join("module").join(&f.path))
            .collect();
        archive::write(&entry.manifest, sig.as_deref(), &sources)
    }
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            list_files(root, &p, out)?;
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

fn make_read_only(module: &Path, manifest: &Manifest) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    for f in &manifest.files {
        let p = module.join(&f.path);
        let mode = if f.executable { 0o555 } else { 0o444 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(format!("cannot set the mode of {}", p.display()), e))?;
    }
    Ok(())
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
            make_writable(&p);
        }
    }
}

fn is_root(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("cannot sync {}", dir.display()), e))
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
///
/// # Errors
/// [`Error::Io`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    (|| {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })()
    .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    if let Some(parent) = path.parent() {
        let _ = sync_dir(parent);
    }
    Ok(())
}

/// `n` random bytes as hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

fn pause(phase: &str) {
    if std::env::var(PAUSE_ENV).is_ok_and(|p| p == phase) {
        eprintln!("logos-pkg: paused at {phase}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
