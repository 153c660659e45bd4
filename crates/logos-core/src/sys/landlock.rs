//! The default Landlock ruleset of a module process (issue 10, item 1; docs/security.md).
//!
//! Owns which paths a module may read, write and execute, and preparing that ruleset as a
//! kernel object *in the core*, so the child between `fork` and `exec` only has to call
//! `prctl(PR_SET_NO_NEW_PRIVS)` and `landlock_restrict_self` (see `linux.rs`). Never applies a
//! ruleset to the core itself and never decides whether modules are confined: the caller says.
//!
//! # What a module may do
//!
//! - **Read and execute** everything except the runtime dir (`client.token`, `core.sock`, the
//!   sockets dir) and the other places the operator's tokens live (a `logoscore` config dir's
//!   `daemon/` and `client/`, given with `Builder::hide_from_modules`). Landlock only grants, so "everything but one directory" is built from its
//!   ancestors: for each ancestor of the runtime dir, from `/` down, every entry *other than*
//!   the next ancestor is granted read and execute beneath it. The ancestors themselves get no
//!   rule, so a module cannot list `/`, `/tmp` or whichever directories lead to the runtime dir
//!   (it can still open anything inside their other entries), and an entry created in one of
//!   them after the module started is not readable by it. Issue 18 will narrow reads further to
//!   paths a module declares.
//! - **Write** only beneath its data dir (every right there, renames included), plus the
//!   character devices programs expect to open for writing (`/dev/null`, `/dev/zero`,
//!   `/dev/full`). Its stdout and stderr are pipes the core opened, so they need no rule.
//! - **Create or remove nothing** anywhere else: in particular no socket can be unlinked or bound
//!   in the sockets dir. A module's own listening socket is bound by the core and handed over
//!   as fd 4, so it needs no such right. Connecting to another module's socket is not a file
//!   system access Landlock governs (before ABI 9), so calls between modules keep working.
//! - **Signal** only processes of its own Landlock domain (ABI 6 scoping): its own children,
//!   not the core, not other modules.
//!
//! The rights handled are those of ABI 7 (the newest this code was tested with), requested
//! best-effort: an older kernel enforces what it knows. `PR_SET_NO_NEW_PRIVS` comes with it, so
//! a module cannot gain privileges through a set-uid program.

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetError, Scope,
};
use std::fmt;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// The Landlock ABI whose rights this ruleset handles.
const TESTED_ABI: ABI = ABI::V7;

/// Character devices a module may open for writing.
const WRITABLE_DEVICES: [&str; 3] = ["/dev/null", "/dev/zero", "/dev/full"];

/// How module processes are confined, as reported by `core.moduleInfo` and `logoscore info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Confinement {
    /// No Landlock: modules can read the operator's client token.
    None,
    /// The default ruleset, enforced with the kernel's Landlock ABI `abi`.
    Landlock {
        /// The kernel's Landlock ABI version.
        abi: u32,
    },
}

impl fmt::Display for Confinement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Confinement::None => f.write_str("none"),
            Confinement::Landlock { abi } => write!(f, "landlock v{abi}"),
        }
    }
}

/// The confinement modules get: `None` when `enabled` is false or the kernel has no Landlock.
pub fn confinement(enabled: bool) -> Confinement {
    if !enabled {
        return Confinement::None;
    }
    match kernel_abi() {
        Some(abi) => Confinement::Landlock { abi },
        None => Confinement::None,
    }
}

/// The kernel's Landlock ABI version, `None` when Landlock is not built in or not enabled.
fn kernel_abi() -> Option<u32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: landlock_create_ruleset with a null attribute, size 0 and the VERSION flag only
    // returns a number (or -1 with errno); it reads and writes no memory of ours.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(v).ok().filter(|v| *v > 0)
}

/// A Landlock ruleset ready to be enforced in a child: the fd `landlock_restrict_self` takes.
#[derive(Debug)]
pub struct PreparedRuleset(pub(crate) OwnedFd);

/// Builds the default ruleset of a module whose data dir is `data_dir`, denying every path in
/// `hidden` (the runtime dir, and wherever else the operator's tokens live).
///
/// Returns `Ok(None)` when the kernel has no Landlock (nothing to enforce).
///
/// # Errors
///
/// The `landlock` crate's error when the kernel refuses the ruleset. Paths that cannot be
/// opened (gone meanwhile, or not ours to open) or take no rule are left out (and so stay
/// unreadable), never an error.
pub fn prepare(hidden: &[&Path], data_dir: &Path) -> Result<Option<PreparedRuleset>, RulesetError> {
    let read = AccessFs::from_read(TESTED_ABI) | AccessFs::IoctlDev;
    let all = AccessFs::from_all(TESTED_ABI);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)?
        .scope(Scope::Signal)?
        .create()?;
    let mut grant = |path: &Path, access| {
        // A path the kernel takes no rule for (an entry on an internal file system, e.g. a
        // link into /proc/<pid>/ns) only stays unreadable: skip it, keep the ruleset.
        if let Ok(fd) = PathFd::new(path)
            && let Err(e) = (&mut ruleset).add_rule(PathBeneath::new(fd, access))
        {
            tracing::debug!(path = %path.display(), "no Landlock rule for this path: {e}");
        }
    };
    for root in readable_roots(hidden) {
        grant(&root, read);
    }
    for device in WRITABLE_DEVICES {
        grant(Path::new(device), AccessFs::from_file(TESTED_ABI));
    }
    grant(data_dir, all);
    let fd: Option<OwnedFd> = ruleset.into();
    Ok(fd.map(PreparedRuleset))
}

/// Every path whose hierarchy a module may read: for each directory on the way to a hidden
/// path (the canonical runtime dir, the operator's token files), every entry that is neither
/// hidden nor itself on the way to a hidden path.
fn readable_roots(hidden: &[&Path]) -> Vec<PathBuf> {
    let hidden: Vec<PathBuf> = hidden
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()))
        .collect();
    // Directories on the way to a hidden path (the hidden paths excluded): these get no rule
    // of their own, only their other entries do.
    let mut on_the_way: Vec<&Path> = hidden
        .iter()
        .flat_map(|h| h.ancestors().skip(1))
        .filter(|a| !hidden.iter().any(|h| a.starts_with(h)))
        .collect();
    on_the_way.sort();
    on_the_way.dedup();
    let mut roots = Vec::new();
    for parent in &on_the_way {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let withheld = hidden.contains(&path) || on_the_way.contains(&path.as_path());
            if !withheld {
                roots.push(path);
            }
        }
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn everything_but_the_runtime_dir_and_its_ancestors_is_readable() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let base = std::fs::canonicalize(tmp.path())?;
        for d in ["a/run/modules", "a/data/calc", "a/modules", "b"] {
            std::fs::create_dir_all(base.join(d))?;
        }
        std::fs::write(base.join("a/notes"), "")?;
        let roots = readable_roots(&[&base.join("a/run")]);
        for granted in ["a/data", "a/modules", "a/notes", "b"] {
            assert!(roots.contains(&base.join(granted)), "{granted}: {roots:?}");
        }
        for denied in ["a/run", "a", "a/run/modules"] {
            assert!(!roots.contains(&base.join(denied)), "{denied}: {roots:?}");
        }
        assert!(
            !roots.iter().any(|r| base.starts_with(r)),
            "no ancestor of the runtime dir is granted: {roots:?}"
        );
        assert!(roots.contains(&PathBuf::from("/usr")), "{roots:?}");
        Ok(())
    }

    #[test]
    fn several_hidden_paths_are_all_withheld() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let base = std::fs::canonicalize(tmp.path())?;
        for d in [
            "cfg/run",
            "cfg/daemon",
            "cfg/client",
            "cfg/data/calc",
            "other",
        ] {
            std::fs::create_dir_all(base.join(d))?;
        }
        let hidden = [
            base.join("cfg/run"),
            base.join("cfg/daemon"),
            base.join("cfg/client"),
        ];
        let refs: Vec<&Path> = hidden.iter().map(PathBuf::as_path).collect();
        let roots = readable_roots(&refs);
        assert!(roots.contains(&base.join("cfg/data")), "{roots:?}");
        assert!(roots.contains(&base.join("other")), "{roots:?}");
        for h in &hidden {
            assert!(
                !roots.iter().any(|r| h.starts_with(r)),
                "{} is readable: {roots:?}",
                h.display()
            );
        }
        Ok(())
    }

    #[test]
    fn confinement_is_reported_as_operators_read_it() {
        assert_eq!(confinement(false), Confinement::None);
        assert_eq!(Confinement::None.to_string(), "none");
        assert_eq!(Confinement::Landlock { abi: 7 }.to_string(), "landlock v7");
    }
}
