//! A module process's Landlock ruleset (issue 10, item 1; issue 18; docs/security.md).
//!
//! Owns preparing the ruleset of a [`FsPlan`] (which `confine.rs` decided) as a kernel object
//! *in the core*, so the child between `fork` and `exec` only has to call
//! `prctl(PR_SET_NO_NEW_PRIVS)` and `landlock_restrict_self` (see `linux.rs`). Never applies a
//! ruleset to the core itself, and never decides which paths a module gets or whether modules
//! are confined: the caller says.
//!
//! # What the ruleset enforces
//!
//! - **Read and execute** beneath each `read` path of the plan, and nothing else: no listing
//!   or reading of any other directory or file (the runtime dir, other modules' data dirs,
//!   `/etc/shadow`, the operator's home).
//! - **Write, create, remove, rename** beneath each `write` path (the data dir first), and
//!   opening the plan's devices (`/dev/null`, …) for writing. Its stdout and stderr are pipes
//!   the core opened, so they need no rule. No socket can be created or removed in the sockets
//!   dir; a module's own listening socket is bound by the core and handed over as fd 4.
//!   Connecting to another module's socket is not a file system access Landlock governs
//!   (before ABI 9), so calls between modules keep working.
//! - **No TCP** `bind` or `connect` for a module without network (ABI 4 network rules).
//! - **Signal** only processes of its own Landlock domain (ABI 6 scoping): its own children,
//!   not the core, not other modules. Landlock also keeps every domain from `ptrace`-ing a
//!   process outside it, whatever the module's capabilities.
//!
//! The rights handled are those of ABI 7 (the newest this code was tested with), requested
//! best-effort: an older kernel enforces what it knows. `PR_SET_NO_NEW_PRIVS` comes with it, so
//! a module cannot gain privileges through a set-uid program. Path walks are not restricted
//! (Landlock has no "search" right), so a module may `stat` what it cannot open.
//!
//! # Reuse
//!
//! Building a ruleset costs four system calls per path (about 0.1 ms for a module's 31 paths,
//! a sixth of the core's part of a start). A [`RulesetCache`] keeps the rulesets of recent
//! plans with the identity (device, inode) each path had when its rule was made, or that it
//! was missing. The next start with an equal plan `stat`s each path and reuses the ruleset
//! only if every path still names the same file (or is still missing); otherwise it builds a
//! new one. So a file replaced by `rename` (`/etc/resolv.conf`, a module reinstalled) is
//! granted as it is now, never as it was. A ruleset never changes once built: rules are only
//! added before it is first enforced.

use crate::confine::FsPlan;
use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetError, Scope,
};
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// The Landlock ABI whose rights this ruleset handles.
const TESTED_ABI: ABI = ABI::V7;

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

/// Identity of what a path names: device and inode, or `None` when it names nothing.
type Identity = Option<(u64, u64)>;

/// The identity of what `path` names now (following symbolic links, as opening it does).
fn identity_of(path: &Path) -> Identity {
    rustix::fs::stat(path).ok().map(|st| identity(&st))
}

/// Device and inode of `st`.
// Both are `u64` on 64-bit Linux and narrower on some 32-bit targets.
#[allow(clippy::unnecessary_cast)]
fn identity(st: &rustix::fs::Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

/// Every path of `plan` with its rights, in one order (the order of [`Cached::ids`]).
fn grants(plan: &FsPlan) -> impl Iterator<Item = (&PathBuf, BitFlags<AccessFs>)> {
    let read = AccessFs::from_read(TESTED_ABI) | AccessFs::IoctlDev;
    let all = AccessFs::from_all(TESTED_ABI);
    let file = AccessFs::from_file(TESTED_ABI);
    (plan.read.iter().map(move |p| (p, read)))
        .chain(plan.devices.iter().map(move |p| (p, file)))
        .chain(plan.write.iter().map(move |p| (p, all)))
}

/// Builds the ruleset of `plan`, and the identity of each of its paths as its rule saw it;
/// without `network`, TCP `bind` and `connect` are refused too where the kernel has Landlock
/// network rules (ABI 4). `Ok(None)` when the kernel has no Landlock (nothing to enforce).
///
/// Paths that cannot be opened (gone meanwhile, or not ours to open) or take no rule are
/// left out (and so stay unreachable), never an error.
fn build(plan: &FsPlan, network: bool) -> Result<Option<(OwnedFd, Vec<Identity>)>, RulesetError> {
    let all = AccessFs::from_all(TESTED_ABI);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)?;
    if !network {
        // Handled with no rule: no TCP bind or connect at all (ABI 4; older kernels skip it,
        // and the seccomp filter refuses the sockets anyway).
        ruleset = ruleset.handle_access(AccessNet::from_all(TESTED_ABI))?;
    }
    let mut ruleset = ruleset.scope(Scope::Signal)?.create()?;
    let mut ids = Vec::new();
    for (path, access) in grants(plan) {
        // A path the kernel takes no rule for only stays unreachable: skip it, keep the
        // ruleset. (For a file the crate narrows directory rights to file rights.)
        let Ok(fd) = PathFd::new(path) else {
            ids.push(None);
            continue;
        };
        ids.push(rustix::fs::fstat(fd.as_fd()).ok().map(|st| identity(&st)));
        if let Err(e) = (&mut ruleset).add_rule(PathBeneath::new(fd, access)) {
            tracing::debug!(path = %path.display(), "no Landlock rule for this path: {e}");
        }
    }
    let fd: Option<OwnedFd> = ruleset.into();
    Ok(fd.map(|fd| (fd, ids)))
}

/// How many plans' rulesets a [`RulesetCache`] keeps (one descriptor each).
const CACHED_PLANS: usize = 64;

/// Rulesets of recent plans, reused while their paths still name the same files (see the
/// module docs, "Reuse").
#[derive(Debug, Default)]
pub struct RulesetCache {
    entries: Mutex<Vec<Cached>>,
    /// Rulesets built (tests).
    #[cfg(test)]
    built: std::sync::atomic::AtomicUsize,
}

#[derive(Debug)]
struct Cached {
    plan: FsPlan,
    network: bool,
    /// The identity of each path of `plan` when its rule was made, in [`grants`] order.
    ids: Vec<Identity>,
    ruleset: OwnedFd,
}

impl RulesetCache {
    /// The ruleset of `plan` ([`build`]): an earlier one when every path of the plan still
    /// names what it named then, a new one otherwise; `Ok(None)` when the kernel has no
    /// Landlock.
    ///
    /// # Errors
    ///
    /// The `landlock` crate's error when the kernel refuses a new ruleset.
    pub fn prepare(
        &self,
        plan: &FsPlan,
        network: bool,
    ) -> Result<Option<PreparedRuleset>, RulesetError> {
        let kept = {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            entries
                .iter()
                .find(|c| c.network == network && c.plan == *plan)
                .map(|c| (c.ids.clone(), c.ruleset.try_clone()))
        };
        if let Some((ids, Ok(ruleset))) = kept
            && grants(plan).map(|(p, _)| identity_of(p)).eq(ids)
        {
            return Ok(Some(PreparedRuleset(ruleset)));
        }
        let Some((ruleset, ids)) = build(plan, network)? else {
            return Ok(None);
        };
        #[cfg(test)]
        self.built
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let handed = ruleset.try_clone();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|c| !(c.network == network && c.plan == *plan));
        if entries.len() >= CACHED_PLANS {
            entries.remove(0);
        }
        match handed {
            Ok(handed) => {
                entries.push(Cached {
                    plan: plan.clone(),
                    network,
                    ids,
                    ruleset,
                });
                Ok(Some(PreparedRuleset(handed)))
            }
            // Nothing kept: the one built goes to this start.
            Err(_) => Ok(Some(PreparedRuleset(ruleset))),
        }
    }

    /// How many rulesets are kept (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::fd::AsRawFd;
    use std::sync::atomic::Ordering;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn landlock_present() {
        assert_ne!(
            confinement(true),
            Confinement::None,
            "this kernel has no Landlock; these tests need Linux 5.13+ with landlock in lsm="
        );
    }

    /// Reads `path` from a thread confined by `ruleset` alone (Landlock restricts the calling
    /// thread; the rest of the test process stays as it was).
    fn confined_read(ruleset: &PreparedRuleset, path: &Path) -> std::io::Result<String> {
        let fd = ruleset.0.as_raw_fd();
        let path = path.to_path_buf();
        std::thread::scope(|s| {
            s.spawn(move || {
                crate::sys::linux::restrict_self(fd)?;
                std::fs::read_to_string(path)
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the confined thread panicked")))
        })
    }

    fn built(cache: &RulesetCache) -> usize {
        cache.built.load(Ordering::Relaxed)
    }

    fn prepared(
        cache: &RulesetCache,
        plan: &FsPlan,
        network: bool,
    ) -> Result<PreparedRuleset, Box<dyn std::error::Error>> {
        Ok(cache.prepare(plan, network)?.ok_or("no ruleset built")?)
    }

    #[test]
    fn a_kept_ruleset_is_reused_while_its_paths_name_the_same_files() -> TestResult {
        landlock_present();
        let tmp = tempfile::tempdir()?;
        let (granted, other) = (tmp.path().join("granted"), tmp.path().join("other"));
        std::fs::write(&granted, "yes")?;
        std::fs::write(&other, "no")?;
        let plan = FsPlan {
            read: vec![granted.clone(), tmp.path().join("missing")],
            ..FsPlan::default()
        };
        let cache = RulesetCache::default();
        let first = prepared(&cache, &plan, false)?;
        let second = prepared(&cache, &plan, false)?;
        assert_eq!(built(&cache), 1, "the second start built its ruleset again");
        for ruleset in [&first, &second] {
            assert_eq!(confined_read(ruleset, &granted)?, "yes");
            assert!(
                confined_read(ruleset, &other).is_err(),
                "an ungranted file was read"
            );
        }
        Ok(())
    }

    #[test]
    fn a_replaced_file_gets_a_new_ruleset_that_grants_it() -> TestResult {
        landlock_present();
        let tmp = tempfile::tempdir()?;
        let conf = tmp.path().join("resolv.conf");
        std::fs::write(&conf, "old")?;
        let plan = FsPlan {
            read: vec![conf.clone()],
            ..FsPlan::default()
        };
        let cache = RulesetCache::default();
        let old = prepared(&cache, &plan, false)?;
        // Replaced as resolvers and package managers do: a new file renamed over the path.
        let fresh = tmp.path().join("resolv.conf.new");
        std::fs::write(&fresh, "new")?;
        std::fs::rename(&fresh, &conf)?;
        let new = prepared(&cache, &plan, false)?;
        assert_eq!(
            built(&cache),
            2,
            "a ruleset of the replaced file was reused"
        );
        assert_eq!(confined_read(&new, &conf)?, "new");
        // What reuse would have given: the old rule names the old file.
        assert!(
            confined_read(&old, &conf).is_err(),
            "the old ruleset grants the new file"
        );
        // And the new one is kept in its place.
        prepared(&cache, &plan, false)?;
        assert_eq!((built(&cache), cache.len()), (2, 1));
        Ok(())
    }

    #[test]
    fn a_path_that_appears_gets_a_new_ruleset_that_grants_it() -> TestResult {
        landlock_present();
        let tmp = tempfile::tempdir()?;
        let later = tmp.path().join("later");
        let plan = FsPlan {
            read: vec![later.clone()],
            ..FsPlan::default()
        };
        let cache = RulesetCache::default();
        prepared(&cache, &plan, false)?;
        std::fs::write(&later, "here")?;
        let now = prepared(&cache, &plan, false)?;
        assert_eq!(built(&cache), 2);
        assert_eq!(confined_read(&now, &later)?, "here");
        Ok(())
    }

    #[test]
    fn plans_and_network_are_kept_apart_and_the_cache_is_bounded() -> TestResult {
        landlock_present();
        let tmp = tempfile::tempdir()?;
        let cache = RulesetCache::default();
        let plan = |i: usize| FsPlan {
            read: vec![tmp.path().join(i.to_string())],
            ..FsPlan::default()
        };
        prepared(&cache, &plan(0), false)?;
        prepared(&cache, &plan(0), true)?;
        prepared(&cache, &plan(1), false)?;
        assert_eq!((built(&cache), cache.len()), (3, 3));
        for i in 2..CACHED_PLANS + 10 {
            prepared(&cache, &plan(i), false)?;
        }
        assert_eq!(cache.len(), CACHED_PLANS);
        Ok(())
    }

    #[test]
    fn confinement_is_reported_as_operators_read_it() {
        assert_eq!(confinement(false), Confinement::None);
        assert_eq!(Confinement::None.to_string(), "none");
        assert_eq!(Confinement::Landlock { abi: 7 }.to_string(), "landlock v7");
    }
}
