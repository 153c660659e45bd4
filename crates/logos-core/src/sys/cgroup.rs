//! A cgroup v2 per module process, so everything a module starts dies with it, including
//! children that left its process group with `setsid` (issue 10, item 16).
//!
//! Owns finding where this core may create cgroups (a child of its own cgroup in the cgroup v2
//! hierarchy, which works as root, under systemd with `Delegate=yes`, or in any writable v2
//! subtree), creating one per module start, killing everything in it (`cgroup.kill`) and
//! removing it. The child is created in its cgroup by `clone3` with `CLONE_INTO_CGROUP` and the
//! directory fd opened here, or, where that is refused, joins it between `fork` and `exec` by
//! writing `0` to a `cgroup.procs` fd opened here (see `process.rs`, `linux.rs`), so nothing
//! of the module ever runs outside.
//! Never decides when to kill: the supervisor does.
//!
//! Where no writable cgroup v2 exists (no v2 mount, no delegation, a kernel before 5.14 without
//! `cgroup.kill`), [`Cgroup::create`] returns `None` and the core falls back to process-group
//! kills, which a `setsid` child escapes (docs/security.md says so).
//!
//! Names are `logos-<pid>-<hash of the runtime dir>-<module>-<n>`: unique per core (several
//! cores may run in one process), and the guardian removes what is left of exactly this core's
//! cgroups ([`guardian_pattern`]) after a crash of the core.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long removal waits for the killed processes to be gone.
const EMPTY_WAIT: Duration = Duration::from_secs(5);

/// One module process's cgroup. Dropping it kills every process left in it and removes it:
/// keep it as long as the module runs.
#[derive(Debug)]
pub struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    /// Creates a fresh cgroup for one start of `module`; `None` when this core cannot use
    /// cgroups here (logged once at info level).
    pub fn create(runtime_dir: &Path, module: &str) -> Option<Cgroup> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let base = base()?;
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("{}{module}-{n}", prefix(runtime_dir)));
        match std::fs::create_dir(&dir) {
            Ok(()) if dir.join("cgroup.kill").exists() => Some(Cgroup { dir }),
            Ok(()) => {
                let _ = std::fs::remove_dir(&dir);
                unusable("this kernel's cgroup v2 has no cgroup.kill (Linux 5.14+ needed)");
                None
            }
            Err(e) => {
                unusable(&format!("cannot create {}: {e}", dir.display()));
                None
            }
        }
    }

    /// `cgroup.procs` opened for writing, for the child to join with (writing `0`).
    ///
    /// # Errors
    /// The OS error of `open`.
    pub fn procs(&self) -> io::Result<OwnedFd> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))?;
        Ok(f.into())
    }

    /// The cgroup's directory.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The cgroup's directory opened, for `clone3` with `CLONE_INTO_CGROUP`.
    ///
    /// # Errors
    /// The OS error of `open`.
    pub fn dir_fd(&self) -> io::Result<OwnedFd> {
        use rustix::fs::{Mode, OFlags};
        Ok(rustix::fs::open(
            &self.dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    /// SIGKILLs every process in the cgroup. Returns whether the kernel took the request.
    pub fn kill(&self) -> bool {
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.kill"))
            .and_then(|mut f| f.write_all(b"1"))
            .is_ok()
    }
}

impl Drop for Cgroup {
    /// Kills whatever is left in the cgroup and removes it once empty: from a task when a tokio
    /// runtime is there (the kill takes effect asynchronously), else right away if it can.
    fn drop(&mut self) {
        self.kill();
        let dir = std::mem::take(&mut self.dir);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(remove_when_empty(dir));
            }
            Err(_) => {
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

/// Waits (up to 5 s) until the cgroup at `dir` holds no process, then removes it.
async fn remove_when_empty(dir: PathBuf) {
    let deadline = Instant::now() + EMPTY_WAIT;
    while populated(&dir) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Err(e) = std::fs::remove_dir(&dir) {
        tracing::warn!(cgroup = %dir.display(), "cannot remove a module's cgroup: {e}");
    }
}

/// Whether any process is left in the cgroup (`populated 1` in `cgroup.events`).
fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|events| events.lines().any(|l| l.trim() == "populated 1"))
        .unwrap_or(false)
}

/// `(dir, prefix)`: the module cgroups of the core using `runtime_dir` are `<dir>/<prefix>*`,
/// for the guardian. `None` when cgroups are not usable.
pub fn guardian_pattern(runtime_dir: &Path) -> Option<(PathBuf, String)> {
    base().map(|b| (b, prefix(runtime_dir)))
}

/// `logos-<pid>-<hash of the runtime dir>-`: one prefix per core, even with several cores in
/// one process (tests, embedding apps), since no two running cores share a runtime dir.
fn prefix(runtime_dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    runtime_dir.hash(&mut h);
    format!("logos-{}-{:016x}-", std::process::id(), h.finish())
}

/// Whether module processes get their own cgroup on this machine.
pub fn available() -> bool {
    base().is_some()
}

/// This process's own cgroup directory in the cgroup v2 hierarchy, if it is writable.
fn base() -> Option<PathBuf> {
    static BASE: OnceLock<Option<PathBuf>> = OnceLock::new();
    BASE.get_or_init(|| {
        let found = find_base();
        if let Err(why) = &found {
            unusable(why);
        }
        found.ok()
    })
    .clone()
}

fn find_base() -> Result<PathBuf, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let dir = own_v2_dir(&own, &mounts).ok_or("no cgroup v2 hierarchy is mounted")?;
    let probe = dir.join(format!("logos-probe-{}", std::process::id()));
    std::fs::create_dir(&probe)
        .and_then(|()| std::fs::remove_dir(&probe))
        .map_err(|e| format!("{} is not writable: {e}", dir.display()))?;
    Ok(dir)
}

/// The directory of this process's cgroup v2, from `/proc/self/cgroup` (`0::<path>`) and
/// `/proc/self/mountinfo` (the `cgroup2` mount and its root).
fn own_v2_dir(cgroup: &str, mountinfo: &str) -> Option<PathBuf> {
    let own = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let (root, mount_point) = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut f = left.split_whitespace();
        Some((f.nth(3)?, f.next()?))
    })?;
    let rel = Path::new(own)
        .strip_prefix(root)
        .unwrap_or(Path::new(own.trim_start_matches('/')));
    Some(Path::new(mount_point).join(rel))
}

fn unusable(why: &str) {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        tracing::info!(
            "modules get no cgroup of their own ({why}); a module's children that call setsid escape the kill when it stops"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_cgroup_is_found_from_proc_files() {
        let mountinfo = "31 1 0:26 / / rw - ext4 /dev/vda rw\n\
                         41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            own_v2_dir("1:cpu:/\n0::/user.slice/app.service\n", mountinfo),
            Some(PathBuf::from(
                "/sys/fs/cgroup/unified/user.slice/app.service"
            ))
        );
        assert_eq!(
            own_v2_dir("0::/\n", mountinfo),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        // A namespaced mount whose root is the process's own cgroup.
        let ns = "50 1 0:40 /box /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            own_v2_dir("0::/box/inner\n", ns),
            Some(PathBuf::from("/sys/fs/cgroup/inner"))
        );
        assert_eq!(own_v2_dir("1:cpu:/\n", mountinfo), None);
        assert_eq!(
            own_v2_dir("0::/\n", "31 1 0:26 / / rw - ext4 /dev/vda rw\n"),
            None
        );
    }
}
