//! Declared confinement (issue 18): which file system paths one module process may reach,
//! from its metadata's `filesystem` declarations, the operator's grants and the paths the
//! core must keep from every module.
//!
//! Owns the decision and its error messages; `sys/landlock.rs` turns a [`FsPlan`] into a
//! ruleset and never decides. Reads the file system only to resolve paths (canonical forms,
//! the links a module dir holds); never starts a process and never applies anything.
//!
//! # What a module may reach
//!
//! - **Read and execute**: the system paths of [`SYSTEM_READ`] (libraries, executables, the
//!   few files of `/etc` programs expect), its own module dir and whatever the operator's
//!   links in it point to (staged libraries), the `logos_host` binary, its data dir, and each
//!   declared `filesystem.read` path.
//! - **Write, create, remove**: its data dir, each declared `filesystem.write` path, and the
//!   devices `/dev/null`, `/dev/zero`, `/dev/full`.
//!
//! The network is the other declared resource: a module gets IP sockets only when its
//! metadata says `"network": true` and the operator grants it ([`network`]).
//!
//! A declared path inside the module's own dirs needs no grant; one outside needs an operator
//! grant of the same kind (or `write` for `read`) at or above it. No declared path may
//! contain or lie inside the runtime dir or another withheld path (the operator's tokens), or
//! another module's data dir when that module is protected: Landlock can only grant, so such
//! a path would expose them whatever else is said. Each refusal is an [`Error::Unconfined`]
//! naming the path and the fix.

use crate::builder::FsGrant;
use crate::dir_listing::ListingCache;
use crate::error::Error;
use crate::manifest::Manifest;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Paths every module may read and execute beneath (those that exist). `/etc` is not among
/// them as a whole (`/etc/shadow`, ssh host keys, sudoers): only the files the dynamic loader,
/// libc's name services, TLS and time zones read. `/proc` and `/sys` are the kernel's views;
/// what they show of other processes is guarded by Landlock's ptrace rule.
pub const SYSTEM_READ: [&str; 31] = [
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/bin",
    "/sbin",
    "/proc",
    "/sys",
    "/dev/urandom",
    "/dev/random",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/crypto-policies",
    "/etc/mime.types",
    "/etc/os-release",
];

/// Prefixes of `/etc` entries interpreters read at start (Debian's `/etc/python3.11`).
const SYSTEM_READ_ETC_PREFIXES: [&str; 1] = ["python3"];

/// Character devices a module may open for writing.
pub const WRITABLE_DEVICES: [&str; 3] = ["/dev/null", "/dev/zero", "/dev/full"];

/// Most links of a module dir whose targets are granted (a staged module holds a few).
const MAX_DIR_LINKS: usize = 256;

/// The paths of one module's Landlock ruleset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FsPlan {
    /// Read and execute beneath each.
    pub read: Vec<PathBuf>,
    /// Every file system right beneath each.
    pub write: Vec<PathBuf>,
    /// Read and write on each (files only).
    pub devices: Vec<PathBuf>,
}

/// What [`plan`] needs to know about a module and the core.
pub(crate) struct Request<'a> {
    pub manifest: &'a Manifest,
    pub data_dir: &'a Path,
    /// The `logos_host` binary, for library modules (and scripts that exec it).
    pub host: &'a Path,
    /// The runtime dir and every other path no module may reach.
    pub withheld: &'a [&'a Path],
    /// Data dirs of the protected modules other than this one.
    pub protected_data: &'a [PathBuf],
    /// The operator's grant for this module.
    pub grant: &'a FsGrant,
}

/// Decides the paths of `req.manifest`'s ruleset.
///
/// # Errors
///
/// [`Error::Unconfined`] for the first declared path that does not exist, is not granted, or
/// would expose withheld paths or protected modules' data dirs (each one named).
pub(crate) fn plan(req: &Request<'_>) -> Result<FsPlan, Error> {
    let m = req.manifest;
    let refuse = |reason: String| Error::Unconfined {
        module: m.name.to_string(),
        reason,
    };
    let own = [canonical(&m.dir), canonical(req.data_dir)];
    let withheld: Vec<PathBuf> = req.withheld.iter().map(|p| canonical(p)).collect();
    let protected: Vec<PathBuf> = req.protected_data.iter().map(|p| canonical(p)).collect();
    let grant_read: Vec<PathBuf> = req
        .grant
        .read
        .iter()
        .chain(&req.grant.write)
        .map(|p| canonical(p))
        .collect();
    let grant_write: Vec<PathBuf> = req.grant.write.iter().map(|p| canonical(p)).collect();

    let declared = |paths: &[PathBuf], kind: &str, granted: &[PathBuf]| {
        let mut out = Vec::new();
        for p in paths {
            let c = std::fs::canonicalize(p).map_err(|e| {
                refuse(format!(
                    "it declares {kind} access to {}, which cannot be resolved ({e}); create it, or remove it from \"filesystem\".\"{kind}\" in {}",
                    p.display(),
                    m.path.display()
                ))
            })?;
            // Every path the declaration would expose is named, so one fix is enough.
            let exposed: Vec<String> = withheld
                .iter()
                .filter(|w| overlaps(&c, w))
                .map(|w| {
                    format!(
                        "{} (the core's runtime dir or the operator's tokens, never granted to modules)",
                        w.display()
                    )
                })
                .chain(
                    protected
                        .iter()
                        .filter(|d| overlaps(&c, d))
                        .map(|d| format!("{}, the data dir of a protected module", d.display())),
                )
                .collect();
            if !exposed.is_empty() {
                return Err(refuse(format!(
                    "it declares {kind} access to {}, which would expose {}; declare a narrower path",
                    c.display(),
                    exposed.join(" and ")
                )));
            }
            let inside_own = own.iter().any(|o| c.starts_with(o));
            if !inside_own && !granted.iter().any(|g| c.starts_with(g)) {
                return Err(refuse(format!(
                    "it declares {kind} access to {}, outside its own dirs, and the operator has not granted it; grant it with [modules.{name}] filesystem = {{ {kind} = [{path:?}] }} in the config (ModuleSettings::filesystem), or remove it from {}",
                    c.display(),
                    m.path.display(),
                    name = m.name,
                    path = c.display().to_string(),
                )));
            }
            out.push(c);
        }
        Ok(out)
    };
    let read_declared = declared(&m.filesystem.read, "read", &grant_read)?;
    let write_declared = declared(&m.filesystem.write, "write", &grant_write)?;

    let mut read: Vec<PathBuf> = system_read();
    read.push(m.dir.clone());
    read.extend(link_targets(&m.dir));
    read.push(req.host.to_path_buf());
    read.extend(read_declared);
    let mut write = vec![req.data_dir.to_path_buf()];
    write.extend(write_declared);
    Ok(FsPlan {
        read,
        write,
        devices: WRITABLE_DEVICES.iter().map(PathBuf::from).collect(),
    })
}

/// Whether the module gets the network: declared in its metadata (`"network": true`) and
/// granted by the operator.
///
/// # Errors
///
/// [`Error::Unconfined`] when it is declared and not granted, naming the config line.
pub(crate) fn network(manifest: &Manifest, granted: bool) -> Result<bool, Error> {
    match (manifest.network, granted) {
        (true, true) => Ok(true),
        (true, false) => Err(Error::Unconfined {
            module: manifest.name.to_string(),
            reason: format!(
                "it declares \"network\": true and the operator has not granted it; grant it with [modules.{name}] network = true in the config (ModuleSettings::network), or remove it from {}",
                manifest.path.display(),
                name = manifest.name,
            ),
        }),
        (false, granted) => {
            if granted {
                tracing::debug!(module = %manifest.name, "network granted but not declared in its metadata: it stays off");
            }
            Ok(false)
        }
    }
}

/// [`SYSTEM_READ`] and the `/etc` entries of [`SYSTEM_READ_ETC_PREFIXES`].
///
/// Paths that do not exist stay in the list: the ruleset leaves out what it cannot open
/// (`sys/landlock.rs`), for one failed `open` each, where checking each path first cost a
/// `stat` of all 31 on every start. `/etc` is listed again only when it changed
/// ([`ListingCache`]): checking the paths and listing `/etc` took 0.11–0.13 ms of every
/// module start (docs/performance.md, fifteenth step).
fn system_read() -> Vec<PathBuf> {
    static ETC: ListingCache = ListingCache::new();
    let mut out: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
    out.extend(ETC.get(Path::new("/etc"), SystemTime::now(), |etc| {
        let Ok(entries) = std::fs::read_dir(etc) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                SYSTEM_READ_ETC_PREFIXES.iter().any(|p| name.starts_with(p))
            })
            .map(|e| e.path())
            .collect()
    }));
    out
}

/// The targets of the symlinks directly in `dir` (how modules are staged: the operator links
/// built libraries in). Discovery already checked that the links of `main` are the
/// operator's; any other link is the module dir's owner's doing too.
fn link_targets(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .take(MAX_DIR_LINKS)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink()))
        .filter_map(|e| std::fs::canonicalize(e.path()).ok())
        .collect()
}

/// `p` resolved, or as given when it cannot be (it then matches only itself).
fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Whether granting `a` would reach into `b` or beyond it (either contains the other).
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::FsPaths;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    struct Fixture {
        _tmp: tempfile::TempDir,
        base: PathBuf,
        manifest: Manifest,
    }

    fn fixture(read: &[&str], write: &[&str]) -> Result<Fixture, Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let base = std::fs::canonicalize(tmp.path())?;
        for d in [
            "modules/m",
            "data/m",
            "data/wallet",
            "run/modules",
            "shared/a",
            "other",
        ] {
            std::fs::create_dir_all(base.join(d))?;
        }
        let mut manifest = Manifest::for_test("m", "1.0.0", &[]);
        manifest.dir = base.join("modules/m");
        manifest.filesystem = FsPaths {
            read: read.iter().map(|p| base.join(p)).collect(),
            write: write.iter().map(|p| base.join(p)).collect(),
        };
        Ok(Fixture {
            _tmp: tmp,
            base,
            manifest,
        })
    }

    fn run(f: &Fixture, grant: &FsGrant) -> Result<FsPlan, Error> {
        let run_dir = f.base.join("run");
        let withheld = [run_dir.as_path()];
        let protected = [f.base.join("data/wallet")];
        plan(&Request {
            manifest: &f.manifest,
            data_dir: &f.base.join("data/m"),
            host: Path::new("/usr/bin/true"),
            withheld: &withheld,
            protected_data: &protected,
            grant,
        })
    }

    fn refusal(r: Result<FsPlan, Error>) -> String {
        match r {
            Err(Error::Unconfined { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn by_default_only_system_paths_and_own_dirs() -> TestResult {
        let f = fixture(&[], &[])?;
        let p = run(&f, &FsGrant::default())?;
        assert!(p.read.contains(&PathBuf::from("/usr")));
        assert!(p.read.contains(&f.base.join("modules/m")));
        assert!(!p.read.iter().any(|r| r == Path::new("/etc")));
        assert!(!p.read.iter().any(|r| r == Path::new("/")));
        assert!(!p.read.iter().any(|r| r.starts_with(f.base.join("shared"))));
        assert_eq!(p.write, vec![f.base.join("data/m")]);
        Ok(())
    }

    #[test]
    fn declared_paths_outside_own_dirs_need_a_grant() -> TestResult {
        let f = fixture(&["shared/a"], &["other"])?;
        let reason = refusal(run(&f, &FsGrant::default()));
        assert!(reason.contains("shared/a"), "{reason}");
        assert!(
            reason.contains("[modules.m] filesystem = { read = ["),
            "{reason}"
        );
        let grant = FsGrant {
            read: vec![f.base.join("shared")],
            write: vec![],
        };
        let reason = refusal(run(&f, &grant));
        assert!(reason.contains("write access to"), "{reason}");
        // A write grant covers reading; a read grant does not cover writing.
        let grant = FsGrant {
            read: vec![],
            write: vec![f.base.join("shared"), f.base.join("other")],
        };
        let p = run(&f, &grant)?;
        assert!(p.read.contains(&f.base.join("shared/a")));
        assert!(p.write.contains(&f.base.join("other")));
        Ok(())
    }

    #[test]
    fn paths_inside_own_dirs_need_no_grant() -> TestResult {
        let f = fixture(&["modules/m"], &["data/m"])?;
        assert!(run(&f, &FsGrant::default()).is_ok());
        Ok(())
    }

    #[test]
    fn withheld_and_protected_paths_are_never_granted() -> TestResult {
        let everything = FsGrant {
            read: vec![PathBuf::from("/")],
            write: vec![PathBuf::from("/")],
        };
        for (declared, exposes) in [
            ("run/modules", "run"),
            ("", "run"),
            ("data/wallet", "data/wallet"),
            ("data", "data/wallet"),
        ] {
            let f = fixture(&[declared], &[])?;
            let reason = refusal(run(&f, &everything));
            assert!(
                reason.contains(&format!("would expose {}", f.base.join(exposes).display())),
                "{declared}: {reason}"
            );
        }
        let f = fixture(&["nonexistent"], &[])?;
        let reason = refusal(run(&f, &everything));
        assert!(reason.contains("cannot be resolved"), "{reason}");
        Ok(())
    }
}
