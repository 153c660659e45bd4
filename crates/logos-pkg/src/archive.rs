//! The `.lgx` archive: a zstd-compressed tar whose first entry is `manifest.json`, second
//! (when signed) `manifest.sig`, then every module file in path order; owners, groups and
//! times zeroed, modes 0644 or 0755. The same inputs always give the same bytes.
//!
//! Owns writing and, above all, reading hostile archives. [`read`] refuses, naming the entry:
//! symlinks, hard links, devices, FIFOs, directories and any other non-regular entry; absolute
//! or `..` paths; duplicates; files the manifest does not list (or lists and are missing);
//! sizes over the caps of [`Limits`] (the compressed file, each file, the total unpacked,
//! the entry count, and the decompressed stream itself, so a bomb stops at the cap); modes,
//! owners or times a deterministic writer never produces; and any size or SHA-256 mismatch.
//! The signature is checked (through the caller's hook) as soon as the manifest and
//! signature are read, before a byte of module code is written anywhere.
//!
//! Never follows a path out of the destination: files are created with `create_new` under
//! checked relative paths, in a fresh directory the caller owns.

use crate::error::{Error, Result};
use crate::manifest::{
    ANY_TARGET, FORMAT, FileEntry, MANIFEST, METADATA, Manifest, ModuleMeta, SIGNATURE, Signer,
    check_path, root_hash,
};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Caps applied while reading. The defaults suit module packages; each is documented in
/// `docs/packages.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The `.lgx` file itself (default 256 MiB).
    pub max_compressed: u64,
    /// Sum of all file sizes (default 1 GiB).
    pub max_unpacked: u64,
    /// One file (default 512 MiB).
    pub max_file: u64,
    /// Entries in the archive (default 10 000).
    pub max_entries: usize,
    /// `manifest.json` (default 4 MiB).
    pub max_manifest: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_compressed: 256 << 20,
            max_unpacked: 1 << 30,
            max_file: 512 << 20,
            max_entries: 10_000,
            max_manifest: 4 << 20,
        }
    }
}

/// What [`read`] found, after every check passed.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// The manifest's exact bytes (what the signature covers).
    pub manifest_bytes: Vec<u8>,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The 64-byte signature, when the package is signed.
    pub signature: Option<Vec<u8>>,
}

/// A module dir's contents, ready to be written as a package.
#[derive(Debug, Clone)]
pub struct Contents {
    /// The manifest (signer set, root computed).
    pub manifest: Manifest,
    /// Where each listed file's bytes come from, in manifest order.
    pub sources: Vec<PathBuf>,
}

/// Reads a module dir (`metadata.json` beside its files) into a manifest. Hidden entries
/// (`.git`, `.cache`) are left out; symlinks to files are followed (a staged module links its
/// library from the build tree), symlinks to directories and special files are refused.
/// `targets`: the triples to record; empty means the host's when the dir holds ELF files,
/// else `any`.
///
/// # Errors
/// [`Error::Invalid`] for bad metadata or paths, [`Error::Io`] for unreadable files.
pub fn collect(dir: &Path, targets: &[String], signer: Option<Signer>) -> Result<Contents> {
    let meta_bytes = std::fs::read(dir.join(METADATA))
        .map_err(|e| Error::io(format!("cannot read {}", dir.join(METADATA).display()), e))?;
    let meta = ModuleMeta::parse(&meta_bytes)?;
    let mut found = Vec::new();
    walk(dir, dir, &mut found)?;
    found.sort();
    let mut files = Vec::new();
    let mut sources = Vec::new();
    let mut native = false;
    for (rel, abs) in found {
        let bytes = std::fs::read(&abs)
            .map_err(|e| Error::io(format!("cannot read {}", abs.display()), e))?;
        native |= bytes.starts_with(b"\x7fELF");
        let mode = std::fs::metadata(&abs)
            .map_err(|e| Error::io(format!("cannot stat {}", abs.display()), e))?;
        use std::os::unix::fs::PermissionsExt as _;
        files.push(FileEntry {
            sha256: hex::encode(Sha256::digest(&bytes)),
            size: bytes.len() as u64,
            executable: mode.permissions().mode() & 0o111 != 0,
            path: rel,
        });
        sources.push(abs);
    }
    let targets = if !targets.is_empty() {
        targets.to_vec()
    } else if native {
        vec![crate::manifest::host_target()]
    } else {
        vec![ANY_TARGET.to_owned()]
    };
    let manifest = Manifest {
        format: FORMAT,
        name: meta.name,
        version: meta.version,
        description: meta.description,
        author: meta.author,
        dependencies: meta.dependencies,
        targets,
        root: root_hash(&files),
        files,
        signer,
        quality: None,
    };
    manifest.check()?;
    Ok(Contents { manifest, sources })
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::metadata(&path)
            .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if meta.is_dir() {
            if is_link {
                return Err(Error::invalid(
                    path.display().to_string(),
                    "is a symlink to a directory; packages hold regular files only (copy it)",
                ));
            }
            walk(root, &path, out)?;
        } else if meta.is_file() {
            let rel = path
                .strip_prefix(root)
                .ok()
                .and_then(Path::to_str)
                .ok_or_else(|| Error::invalid(path.display().to_string(), "path is not UTF-8"))?
                .to_owned();
            check_path(&rel).map_err(|e| Error::invalid(path.display().to_string(), e))?;
            out.push((rel, path));
        } else {
            return Err(Error::invalid(
                path.display().to_string(),
                "is not a regular file; packages hold regular files only",
            ));
        }
    }
    Ok(())
}

/// Writes the archive: manifest, signature (if any), then each file from `sources`.
///
/// # Errors
/// [`Error::Io`] when a source cannot be read or changed since [`collect`] (size or hash).
pub fn write(
    manifest: &Manifest,
    signature: Option<&[u8]>,
    sources: &[PathBuf],
) -> Result<Vec<u8>> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |e| Error::io(what, e)
    };
    let enc = zstd::stream::Encoder::new(Vec::new(), 3).map_err(io("zstd"))?;
    let mut tar = tar::Builder::new(enc);
    let manifest_bytes = manifest.to_bytes();
    append(&mut tar, MANIFEST, false, &manifest_bytes)?;
    if let Some(sig) = signature {
        append(
            &mut tar,
            SIGNATURE,
            false,
            format!("{}\n", hex::encode(sig)).as_bytes(),
        )?;
    }
    for (f, src) in manifest.files.iter().zip(sources) {
        let bytes = std::fs::read(src).map_err(io(&format!("cannot read {}", src.display())))?;
        if bytes.len() as u64 != f.size || hex::encode(Sha256::digest(&bytes)) != f.sha256 {
            return Err(Error::invalid(
                src.display().to_string(),
                "changed while the package was being built; build it again",
            ));
        }
        append(&mut tar, &f.path, f.executable, &bytes)?;
    }
    let enc = tar.into_inner().map_err(io("tar"))?;
    enc.finish().map_err(io("zstd"))
}

fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, exec: bool, data: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(data.len() as u64);
    h.set_mode(if exec { 0o755 } else { 0o644 });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    tar.append_data(&mut h, path, data)
        .map_err(|e| Error::io(format!("cannot add {path} to the archive"), e))
}

/// Counts bytes that pass and fails once `limit` is exceeded.
struct Capped<R> {
    inner: R,
    left: u64,
    hit: Arc<AtomicBool>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.hit.store(true, Ordering::SeqCst);
            return Err(std::io::Error::other("size cap exceeded"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Signature check run after the manifest (and signature) are read and before any file is
/// written: `(manifest, manifest bytes, signature)`.
pub type SignatureCheck<'a> = dyn FnMut(&Manifest, &[u8], Option<&[u8]>) -> Result<()> + 'a;

/// Reads and verifies an archive from `input`; with `dest`, writes the module files under it
/// (which must be an empty directory). `package` names the archive in errors.
///
/// # Errors
/// [`Error::Refused`] for every rule of the format (module doc), [`Error::Untrusted`] from
/// `check`, [`Error::Io`] when `dest` cannot be written.
pub fn read(
    input: impl Read,
    package: &str,
    limits: &Limits,
    check: &mut SignatureCheck<'_>,
    dest: Option<&Path>,
) -> Result<Unpacked> {
    let refuse = |entry: Option<&str>, reason: String| Error::Refused {
        package: package.to_owned(),
        entry: entry.map(str::to_owned),
        reason,
    };
    let in_hit = Arc::new(AtomicBool::new(false));
    let out_hit = Arc::new(AtomicBool::new(false));
    let capped_in = Capped {
        inner: input,
        left: limits.max_compressed,
        hit: Arc::clone(&in_hit),
    };
    let caps_hit = |e: &std::io::Error| -> Error {
        if in_hit.load(Ordering::SeqCst) {
            refuse(
                None,
                format!(
                    "the package file is larger than the cap of {} bytes",
                    limits.max_compressed
                ),
            )
        } else if out_hit.load(Ordering::SeqCst) {
            refuse(
                None,
                format!(
                    "decompresses to more than the cap of {} bytes (a decompression bomb?)",
                    limits.max_unpacked
                ),
            )
        } else {
            refuse(None, format!("not a zstd-compressed tar archive: {e}"))
        }
    };
    let decoder = zstd::stream::Decoder::new(capped_in).map_err(|e| caps_hit(&e))?;
    // Headers and padding cost at most 1.5 KiB per entry on top of the file bytes.
    let stream_cap = limits
        .max_unpacked
        .saturating_add(limits.max_manifest)
        .saturating_add(1536 * (limits.max_entries as u64 + 4));
    let capped_out = Capped {
        inner: decoder,
        left: stream_cap,
        hit: Arc::clone(&out_hit),
    };
    let mut archive = tar::Archive::new(capped_out);
    let entries = archive.entries().map_err(|e| caps_hit(&e))?;

    let mut manifest: Option<(Manifest, Vec<u8>)> = None;
    let mut signature: Option<Vec<u8>> = None;
    let mut checked = false;
    let mut seen = std::collections::BTreeSet::new();
    let mut total: u64 = 0;
    let mut index = 0usize;
    for entry in entries {
        let mut entry = entry.map_err(|e| caps_hit(&e))?;
        index += 1;
        if index > limits.max_entries + 2 {
            return Err(refuse(
                None,
                format!("more than {} entries", limits.max_entries),
            ));
        }
        let path_bytes = entry.path_bytes().into_owned();
        let path = String::from_utf8(path_bytes)
            .map_err(|_| refuse(None, format!("entry {index}: path is not UTF-8")))?;
        let header = entry.header();
        let kind = header.entry_type();
        if !kind.is_file() {
            let what = match kind {
                tar::EntryType::Symlink => format!(
                    "is a symlink (to {:?}); packages hold regular files only",
                    header.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
                ),
                tar::EntryType::Link => format!(
                    "is a hard link (to {:?}); packages hold regular files only",
                    header.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
                ),
                tar::EntryType::Char => "is a character device; packages hold regular files only".into(),
                tar::EntryType::Block => "is a block device; packages hold regular files only".into(),
                tar::EntryType::Fifo => "is a FIFO; packages hold regular files only".into(),
                tar::EntryType::Directory => {
                    "is a directory entry; packages hold regular files only (directories are implied by paths)".into()
                }
                other => format!("has entry type {:?}; packages hold regular files only", other.as_byte() as char),
            };
            return Err(refuse(Some(&path), what));
        }
        check_path(&path).map_err(|e| refuse(Some(&path), e))?;
        if !seen.insert(path.clone()) {
            return Err(refuse(Some(&path), "appears twice in the archive".into()));
        }
        let mode = header
            .mode()
            .map_err(|e| refuse(Some(&path), format!("bad mode: {e}")))?
            & 0o7777;
        let uid = header.uid().unwrap_or(1);
        let gid = header.gid().unwrap_or(1);
        let mtime = header.mtime().unwrap_or(1);
        if uid != 0 || gid != 0 || mtime != 0 {
            return Err(refuse(
                Some(&path),
                format!(
                    "owner {uid}:{gid} and time {mtime} are not zero: not a deterministic .lgx (build it with `logoscore pack`)"
                ),
            ));
        }
        let size = entry.size();

        if index == 1 {
            if path != MANIFEST {
                return Err(refuse(
                    Some(&path),
                    format!("the first entry must be {MANIFEST}"),
                ));
            }
            if size > limits.max_manifest {
                return Err(refuse(
                    Some(&path),
                    format!(
                        "{size} bytes is over the manifest cap of {}",
                        limits.max_manifest
                    ),
                ));
            }
            let mut bytes = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut bytes).map_err(|e| caps_hit(&e))?;
            let m =
                Manifest::from_bytes(&bytes).map_err(|e| refuse(Some(MANIFEST), e.to_string()))?;
            if mode != 0o644 {
                return Err(refuse(Some(MANIFEST), format!("mode {mode:o} is not 644")));
            }
            let total_listed: u64 = m.files.iter().map(|f| f.size).sum();
            if total_listed > limits.max_unpacked {
                return Err(refuse(
                    None,
                    format!(
                        "the manifest lists {total_listed} bytes of files, over the cap of {}",
                        limits.max_unpacked
                    ),
                ));
            }
            if m.files.len() > limits.max_entries {
                return Err(refuse(
                    None,
                    format!("the manifest lists more than {} files", limits.max_entries),
                ));
            }
            manifest = Some((m, bytes));
            continue;
        }
        let Some((m, mbytes)) = &manifest else {
            return Err(refuse(
                Some(&path),
                format!("the first entry must be {MANIFEST}"),
            ));
        };
        if path == SIGNATURE {
            if index != 2 {
                return Err(refuse(
                    Some(&path),
                    format!("{SIGNATURE} must be the second entry"),
                ));
            }
            if size > 256 {
                return Err(refuse(Some(&path), "is larger than a signature".into()));
            }
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|_| refuse(Some(&path), "is not text".into()))?;
            let sig = hex::decode(text.trim())
                .ok()
                .filter(|s| s.len() == 64)
                .ok_or_else(|| {
                    refuse(
                        Some(&path),
                        "is not 128 hex digits (an Ed25519 signature)".into(),
                    )
                })?;
            signature = Some(sig);
            continue;
        }
        if !checked {
            check(m, mbytes, signature.as_deref())?;
            checked = true;
        }
        let Some(listed) = m.files.iter().find(|f| f.path == path) else {
            return Err(refuse(Some(&path), format!("is not listed in {MANIFEST}")));
        };
        if size > limits.max_file {
            return Err(refuse(
                Some(&path),
                format!(
                    "{size} bytes is over the per-file cap of {}",
                    limits.max_file
                ),
            ));
        }
        if size != listed.size {
            return Err(refuse(
                Some(&path),
                format!("is {size} bytes but {MANIFEST} says {}", listed.size),
            ));
        }
        total = total.saturating_add(size);
        if total > limits.max_unpacked {
            return Err(refuse(
                Some(&path),
                format!(
                    "files add up to more than the cap of {} bytes",
                    limits.max_unpacked
                ),
            ));
        }
        let want_mode = if listed.executable { 0o755 } else { 0o644 };
        if mode != want_mode {
            return Err(refuse(
                Some(&path),
                format!("mode {mode:o} is not {want_mode:o} as {MANIFEST} says"),
            ));
        }
        let mut out = match dest {
            Some(d) => Some(create(d, &path)?),
            None => None,
        };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = entry.read(&mut buf).map_err(|e| caps_hit(&e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if let Some(f) = out.as_mut() {
                f.write_all(&buf[..n])
                    .map_err(|e| Error::io(format!("cannot write {path}"), e))?;
            }
        }
        let got = hex::encode(hasher.finalize());
        if got != listed.sha256 {
            return Err(refuse(
                Some(&path),
                format!(
                    "SHA-256 is {got} but {MANIFEST} says {}: the file was altered",
                    listed.sha256
                ),
            ));
        }
        if let Some(f) = out {
            if listed.executable {
                use std::os::unix::fs::PermissionsExt as _;
                f.set_permissions(std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| Error::io(format!("cannot set the mode of {path}"), e))?;
            }
            f.sync_all()
                .map_err(|e| Error::io(format!("cannot sync {path}"), e))?;
        }
    }
    let Some((m, mbytes)) = manifest else {
        return Err(refuse(None, format!("empty archive: no {MANIFEST}")));
    };
    if !checked {
        check(&m, &mbytes, signature.as_deref())?;
    }
    if let Some(missing) = m.files.iter().find(|f| !seen.contains(&f.path)) {
        return Err(refuse(
            Some(&missing.path),
            format!("is listed in {MANIFEST} but missing from the archive"),
        ));
    }
    // The metadata inside must say what the manifest says.
    if let Some(d) = dest {
        let meta_bytes = std::fs::read(d.join(METADATA))
            .map_err(|e| Error::io(format!("cannot read back {METADATA}"), e))?;
        let meta =
            ModuleMeta::parse(&meta_bytes).map_err(|e| refuse(Some(METADATA), e.to_string()))?;
        if meta.name != m.name || meta.version != m.version {
            return Err(refuse(
                Some(METADATA),
                format!(
                    "says {} {} but {MANIFEST} says {} {}",
                    meta.name, meta.version, m.name, m.version
                ),
            ));
        }
    }
    Ok(Unpacked {
        manifest_bytes: mbytes,
        manifest: m,
        signature,
    })
}

/// Creates `dest/rel` (and its parents) without following anything that already exists.
fn create(dest: &Path, rel: &str) -> Result<std::fs::File> {
    let path = dest.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))
}
