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

use crate::confine::FsPlan;
use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetError, Scope,
};
use std::fmt;
use std::os::fd::OwnedFd;
use std::path::Path;

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

/// Builds the ruleset of `plan`; without `network`, TCP `bind` and `connect` are refused
/// too where the kernel has Landlock network rules (ABI 4).
///
/// Returns `Ok(None)` when the kernel has no Landlock (nothing to enforce).
///
/// # Errors
///
/// The `landlock` crate's error when the kernel refuses the ruleset. Paths that cannot be
/// opened (gone meanwhile, or not ours to open) or take no rule are left out (and so stay
/// unreachable), never an error.
pub fn prepare(plan: &FsPlan, network: bool) -> Result<Option<PreparedRuleset>, RulesetError> {
    let read = AccessFs::from_read(TESTED_ABI) | AccessFs::IoctlDev;
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
    let mut grant = |path: &Path, access| {
        // A path the kernel takes no rule for only stays unreachable: skip it, keep the
        // ruleset. (For a file the crate narrows directory rights to file rights.)
        if let Ok(fd) = PathFd::new(path)
            && let Err(e) = (&mut ruleset).add_rule(PathBeneath::new(fd, access))
        {
            tracing::debug!(path = %path.display(), "no Landlock rule for this path: {e}");
        }
    };
    for p in &plan.read {
        grant(p, read);
    }
    for device in &plan.devices {
        grant(device, AccessFs::from_file(TESTED_ABI));
    }
    for p in &plan.write {
        grant(p, all);
    }
    let fd: Option<OwnedFd> = ruleset.into();
    Ok(fd.map(PreparedRuleset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confinement_is_reported_as_operators_read_it() {
        assert_eq!(confinement(false), Confinement::None);
        assert_eq!(Confinement::None.to_string(), "none");
        assert_eq!(Confinement::Landlock { abi: 7 }.to_string(), "landlock v7");
    }
}
