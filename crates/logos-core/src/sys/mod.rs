//! The operating-system seam: every call that depends on the platform goes through here.
//!
//! Owns the choice of implementation by `cfg(target_os)`; this module and the file it picks are
//! the only places in `logos-core` with `cfg(target_os)` and with `unsafe`. Each implementation
//! exports the same items. Never holds runtime policy: callers decide what to limit, which fds
//! to pass and when to signal; this layer only does it.
//!
//! Only Linux is implemented: `linux.rs` (parent-death signals, process groups, resource limits
//! and fd inheritance for module processes, process-group signals, process usage from `/proc`,
//! private files and directories), `landlock.rs` (the Landlock ruleset of a module process), `cgroup.rs` (a cgroup v2 per module process), `process.rs` (creating a module process, in its
//! cgroup by `clone3` where it can, and waiting for it), `vfork.rs` (that `clone3` with the
//! memory shared until the `exec`, as `posix_spawn` does) and `seccomp.rs` (the system calls a
//! module may not make).

#[cfg(target_os = "linux")]
mod cgroup;
#[cfg(target_os = "linux")]
mod landlock;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod process;
#[cfg(target_os = "linux")]
mod seccomp;
#[cfg(target_os = "linux")]
mod vfork;

#[cfg(target_os = "linux")]
pub use cgroup::{Cgroup, available as cgroups_available, guardian_pattern as cgroup_pattern};
#[cfg(target_os = "linux")]
pub use landlock::{Confinement, PreparedRuleset, RulesetCache, confinement};
#[cfg(target_os = "linux")]
pub use linux::{
    BEAT_FD, CONTROL_FD, ChildSetup, LISTEN_FD, Limits, ProcessUsage, Signal, create_private_dir,
    create_private_file, detach_session, file_mode, kill_group, process_usage, pss_bytes, uid,
};
#[cfg(target_os = "linux")]
pub use process::{Launch, ModuleChild, SpawnMode, spawn_module};
#[cfg(target_os = "linux")]
pub use seccomp::{
    Program as SeccompProgram, available as seccomp_available, compile as seccomp_program,
};

#[cfg(not(target_os = "linux"))]
compile_error!(
    "logos-core runs on Linux only; porting it means adding sys/<os>.rs exporting the items of sys/linux.rs"
);
