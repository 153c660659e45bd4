//! The seccomp filter of a module process (issue 18; docs/security.md, "System calls and
//! network").
//!
//! Owns which system calls a module may never make, compiled into a BPF program *in the core*
//! (`seccompiler`), so the child between `fork` and `exec` only installs it with one
//! `seccomp(2)` call (see `linux.rs`). Never decides whether a module gets the network: the
//! caller says.
//!
//! # What is refused (`EPERM`)
//!
//! - **Always** ([`BASELINE`]): reading or writing other processes (`ptrace`,
//!   `process_vm_readv`, `process_vm_writev`), mounting (`mount`, `umount2`, `pivot_root`
//!   and the new mount API), the kernel keyring (`keyctl`, `add_key`, `request_key`), kernel
//!   modules, `bpf`, `kexec_*`, `reboot`, swap, `open_by_handle_at`, `perf_event_open`,
//!   `userfaultfd`, and `io_uring_*` (its operations bypass this filter, sockets included).
//! - **Without network**: `socket(2)` of any family but `AF_UNIX` (so TCP, UDP, raw and
//!   packet sockets, netlink). Unix sockets stay: the module talks to the core and to other
//!   modules over them. Where Landlock has network rules (ABI 4) they refuse TCP `bind` and
//!   `connect` too (`landlock.rs`); this filter also covers UDP and kernels without them.
//!
//! The filter is installed with `SECCOMP_FILTER_FLAG_LOG`, so where the kernel's audit is on,
//! each refusal is logged there with the module's pid. Any other system call is allowed: this
//! is a deny list for a module's means of escaping its confinement, not a profile of what
//! programs need.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use std::collections::BTreeMap;

/// System calls no module may make.
pub const BASELINE: [(&str, libc::c_long); 32] = [
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("bpf", libc::SYS_bpf),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    (
        "socket (any family but AF_UNIX, without network)",
        libc::SYS_socket,
    ),
];

/// A compiled filter ready to be installed in a child.
#[derive(Debug)]
pub struct Program(pub(crate) BpfProgram);

/// Whether this kernel can install seccomp filters (`PR_GET_SECCOMP` answers).
pub fn available() -> bool {
    // SAFETY: PR_GET_SECCOMP takes no pointer and only returns the calling thread's mode.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP) >= 0 }
}

/// Compiles the filter of a module: [`BASELINE`], and without `network` the socket rule.
///
/// # Errors
///
/// `seccompiler`'s error, e.g. on an architecture it does not know.
pub fn compile(network: bool) -> Result<Program, seccompiler::BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, nr) in BASELINE.iter().filter(|(_, nr)| *nr != libc::SYS_socket) {
        // No condition: refused whatever the arguments.
        rules.insert(*nr, Vec::new());
    }
    if !network {
        let not_unix = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Ne,
            libc::AF_UNIX as u64,
        )?;
        rules.insert(libc::SYS_socket, vec![SeccompRule::new(vec![not_unix])?]);
    }
    let arch: seccompiler::TargetArch = std::env::consts::ARCH.try_into()?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;
    Ok(Program(filter.try_into()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_with_and_without_network() {
        assert!(available());
        let with = compile(true).map(|p| p.0.len());
        let without = compile(false).map(|p| p.0.len());
        assert!(matches!((with, without), (Ok(a), Ok(b)) if b > a && a > BASELINE.len()));
    }
}
