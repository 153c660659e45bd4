//! The seccomp filter of a module process (issue 18; docs/security.md, "System calls and
//! network").
//!
//! Owns which system calls a module may never make, compiled into a BPF program *in the core*,
//! so the child between `fork` and `exec` only installs it with one `seccomp(2)` call (see
//! `linux.rs`). Never decides whether a module gets the network: the caller says.
//!
//! # What is refused (`EPERM`)
//!
//! - **Always** ([`BASELINE`]): reading or writing other processes (`ptrace`,
//!   `process_vm_readv`, `process_vm_writev`), mounting (`mount`, `umount2`, `pivot_root`
//!   and the new mount API), the kernel keyring (`keyctl`, `add_key`, `request_key`), kernel
//!   modules, `bpf`, `kexec_*`, `reboot`, swap, `open_by_handle_at`, `perf_event_open`,
//!   `userfaultfd`, and `io_uring_*` (its operations bypass this filter, sockets included).
//! - **On x86-64, every x32 system call** (numbers with bit 30 set). The x32 ABI runs under
//!   the x86-64 audit architecture with its own numbers, so a deny list by number alone could
//!   be walked around through it where the kernel enables it.
//! - **Without network**: `socket(2)` of any family but `AF_UNIX` (so TCP, UDP, raw and
//!   packet sockets, netlink). Unix sockets stay: the module talks to the core and to other
//!   modules over them. Where Landlock has network rules (ABI 4) they refuse TCP `bind` and
//!   `connect` too (`landlock.rs`); this filter also covers UDP and kernels without them.
//!
//! Another architecture's system calls (i386's `int 0x80` on x86-64) kill the process. The
//! filter is installed with `SECCOMP_FILTER_FLAG_LOG`, so where the kernel's audit is on,
//! each refusal is logged there with the module's pid. Any other system call is allowed: this
//! is a deny list for a module's means of escaping its confinement, not a profile of what
//! programs need.
//!
//! # Why the program is written here
//!
//! The program is a binary search over ranges of system call numbers, about 70 instructions
//! that decide any call within 12 steps, the check of the architecture included (10 but for
//! `socket`, whose rule reads an argument). `seccompiler`, used before, emits one comparison
//! per listed call in a row (167 instructions), and has no x32 rule. The difference is paid
//! at each module start: on install the kernel runs the program once for every system call
//! number of each architecture, to learn which ones it may allow without running it again
//! (its action cache). That took 108 µs per start with the row and 30 µs with the search, on
//! a filter-free floor of 15 µs (docs/performance.md, sixteenth step). The kernel checks the
//! program when it is installed; the tests here run it for every number against the policy.

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
pub struct Program(pub(crate) Vec<libc::sock_filter>);

impl Program {
    /// The instructions as numbers, `code << 48 | jt << 40 | jf << 32 | k`: how a spare host
    /// receives its filter (`logos-host/src/spare.rs`).
    pub fn words(&self) -> Vec<u64> {
        self.0
            .iter()
            .map(|i| {
                u64::from(i.code) << 48
                    | u64::from(i.jt) << 40
                    | u64::from(i.jf) << 32
                    | u64::from(i.k)
            })
            .collect()
    }
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Program({} instructions)", self.0.len())
    }
}

/// Why a filter could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// This architecture has no audit value or system call numbers known here.
    #[error("no seccomp filter is written for the {0} architecture")]
    Architecture(&'static str),
    /// A branch of the search would jump further than a classic BPF jump can (255).
    #[error("a jump of {0} instructions does not fit classic BPF's 255")]
    JumpTooFar(usize),
}

/// Whether this kernel can install seccomp filters (`PR_GET_SECCOMP` answers).
pub fn available() -> bool {
    // SAFETY: PR_GET_SECCOMP takes no pointer and only returns the calling thread's mode.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP) >= 0 }
}

/// The audit value of this architecture (`AUDIT_ARCH_*` of `linux/audit.h`: its ELF machine,
/// 64-bit, little-endian) and the first number no native system call has, from where every
/// number is refused (x32's on x86-64).
#[cfg(target_arch = "x86_64")]
const TARGET: Option<(u32, Option<u32>)> = Some((62 | AUDIT_64BIT | AUDIT_LE, Some(0x4000_0000)));
#[cfg(target_arch = "aarch64")]
const TARGET: Option<(u32, Option<u32>)> = Some((183 | AUDIT_64BIT | AUDIT_LE, None));
#[cfg(target_arch = "riscv64")]
const TARGET: Option<(u32, Option<u32>)> = Some((243 | AUDIT_64BIT | AUDIT_LE, None));
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
const TARGET: Option<(u32, Option<u32>)> = None;

const AUDIT_64BIT: u32 = 0x8000_0000;
const AUDIT_LE: u32 = 0x4000_0000;

/// Offsets in `struct seccomp_data`: `nr`, `arch`, and the low 32 bits of `args[0]` (the
/// targets above are little-endian).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;

const LOAD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JUMP_IF_EQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JUMP_IF_GE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RETURN: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const REFUSE: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

/// What the filter answers for a range of system call numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    Refuse,
    /// `socket(2)` without network: allowed for `AF_UNIX` only.
    UnixSocketsOnly,
}

/// Compiles the filter of a module: [`BASELINE`], and without `network` the socket rule.
///
/// # Errors
///
/// On an architecture the filter is not written for, or (never with this policy) a search
/// too large for classic BPF's jumps.
pub fn compile(network: bool) -> Result<Program, CompileError> {
    let (arch, refuse_from) = TARGET.ok_or(CompileError::Architecture(std::env::consts::ARCH))?;
    let mut listed: Vec<(u32, Verdict)> = BASELINE
        .iter()
        .filter(|(_, nr)| *nr != libc::SYS_socket)
        .filter_map(|(_, nr)| u32::try_from(*nr).ok())
        .map(|nr| (nr, Verdict::Refuse))
        .collect();
    if !network && let Ok(nr) = u32::try_from(libc::SYS_socket) {
        listed.push((nr, Verdict::UnixSocketsOnly));
    }
    let ranges = ranges(listed, refuse_from);
    let mut program = vec![
        statement(LOAD, ARCH),
        jump(JUMP_IF_EQ, arch, 1, 0),
        statement(RETURN, libc::SECCOMP_RET_KILL_PROCESS),
        statement(LOAD, NR),
    ];
    search(&mut program, &ranges)?;
    Ok(Program(program))
}

/// The verdict of every system call number as sorted ranges, each given by its first number
/// and lasting until the next one's: `listed` numbers get their verdict, numbers from
/// `refuse_from` on are refused, all others allowed. Neighbours with one verdict are merged,
/// so a run of refused numbers (the new mount API) is one range.
fn ranges(mut listed: Vec<(u32, Verdict)>, refuse_from: Option<u32>) -> Vec<(u32, Verdict)> {
    listed.sort_by_key(|(nr, _)| *nr);
    let mut points = vec![(0, Verdict::Allow)];
    for (nr, verdict) in listed {
        if refuse_from.is_some_and(|from| nr >= from) {
            continue;
        }
        points.push((nr, verdict));
        if let Some(next) = nr.checked_add(1) {
            points.push((next, Verdict::Allow));
        }
    }
    if let Some(from) = refuse_from {
        points.push((from, Verdict::Refuse));
    }
    let mut ranges: Vec<(u32, Verdict)> = Vec::with_capacity(points.len());
    for (start, verdict) in points {
        match ranges.last_mut() {
            // A later point at the same number wins: `nr + 1`'s allow gives way to a listed
            // `nr + 1`.
            Some(last) if last.0 == start => last.1 = verdict,
            _ => ranges.push((start, verdict)),
        }
    }
    ranges.dedup_by(|later, earlier| later.1 == earlier.1);
    ranges
}

/// Emits a binary search over `ranges` (the number is in the accumulator): compare with the
/// middle range's first number, the lower half falls through, the upper half is jumped to.
fn search(out: &mut Vec<libc::sock_filter>, ranges: &[(u32, Verdict)]) -> Result<(), CompileError> {
    match ranges {
        [] => {}
        [(_, Verdict::Allow)] => out.push(statement(RETURN, ALLOW)),
        [(_, Verdict::Refuse)] => out.push(statement(RETURN, REFUSE)),
        [(_, Verdict::UnixSocketsOnly)] => out.extend([
            statement(LOAD, ARG0_LOW),
            jump(JUMP_IF_EQ, libc::AF_UNIX as u32, 0, 1),
            statement(RETURN, ALLOW),
            statement(RETURN, REFUSE),
        ]),
        _ => {
            let (lower, upper) = ranges.split_at(ranges.len() / 2);
            let at = out.len();
            out.push(jump(JUMP_IF_GE, upper[0].0, 0, 0));
            search(out, lower)?;
            let distance = out.len() - at - 1;
            out[at].jt = u8::try_from(distance).map_err(|_| CompileError::JumpTooFar(distance))?;
            search(out, upper)?;
        }
    }
    Ok(())
}

fn statement(code: u16, k: u32) -> libc::sock_filter {
    jump(code, k, 0, 0)
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
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

    /// Runs `program` on one call as the kernel's classic BPF does, for the instructions this
    /// file emits; returns the action and how many instructions ran.
    fn run(program: &[libc::sock_filter], arch: u32, nr: u32, arg0: u32) -> (u32, usize) {
        let (mut acc, mut pc, mut steps) = (0u32, 0usize, 0usize);
        loop {
            let i = program[pc];
            steps += 1;
            pc += 1;
            match i.code {
                LOAD => {
                    acc = match i.k {
                        NR => nr,
                        ARCH => arch,
                        ARG0_LOW => arg0,
                        k => panic!("load of offset {k}"),
                    }
                }
                JUMP_IF_EQ => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                JUMP_IF_GE => pc += usize::from(if acc >= i.k { i.jt } else { i.jf }),
                RETURN => return (i.k, steps),
                code => panic!("instruction {code:#x}"),
            }
        }
    }

    /// The policy the program must implement, written plainly.
    fn expected(network: bool, nr: u32, arg0: u32) -> u32 {
        let listed = |n: u32| BASELINE.iter().any(|(_, b)| i64::from(n) == *b);
        if cfg!(target_arch = "x86_64") && nr >= 0x4000_0000 {
            REFUSE
        } else if i64::from(nr) == libc::SYS_socket {
            if network || arg0 == libc::AF_UNIX as u32 {
                ALLOW
            } else {
                REFUSE
            }
        } else if listed(nr) {
            REFUSE
        } else {
            ALLOW
        }
    }

    #[test]
    fn every_number_gets_the_policys_answer_in_few_steps() {
        let (arch, _) = TARGET.expect("an architecture with a filter");
        let numbers = (0..4096)
            .chain([0x3fff_ffff, 0x4000_0000, 0x4000_0000 | 101, 0x4000_0209])
            .chain([0x7fff_ffff, 0x8000_0000, u32::MAX]);
        for network in [false, true] {
            let program = compile(network).expect("compiles").0;
            for nr in numbers.clone() {
                for arg0 in [
                    libc::AF_UNIX as u32,
                    libc::AF_INET as u32,
                    libc::AF_NETLINK as u32,
                ] {
                    let (action, steps) = run(&program, arch, nr, arg0);
                    assert_eq!(
                        action,
                        expected(network, nr, arg0),
                        "nr {nr:#x}, arg0 {arg0}, network {network}"
                    );
                    // The point of the search: the kernel runs the program for each number
                    // when the filter is installed (its action cache).
                    assert!(steps <= 12, "nr {nr:#x} took {steps} steps");
                }
            }
            // Another architecture's call is killed before its number is read.
            assert_eq!(
                run(&program, arch ^ 1, 0, 0).0,
                libc::SECCOMP_RET_KILL_PROCESS
            );
        }
    }

    #[test]
    fn neighbouring_numbers_merge_into_one_range() {
        let listed = [165, 166, 167, 41, 10]
            .map(|nr| (nr, Verdict::Refuse))
            .to_vec();
        let mut with_socket = listed.clone();
        with_socket.push((42, Verdict::UnixSocketsOnly));
        assert_eq!(
            ranges(with_socket, Some(1000)),
            vec![
                (0, Verdict::Allow),
                (10, Verdict::Refuse),
                (11, Verdict::Allow),
                (41, Verdict::Refuse),
                (42, Verdict::UnixSocketsOnly),
                (43, Verdict::Allow),
                (165, Verdict::Refuse),
                (168, Verdict::Allow),
                (1000, Verdict::Refuse),
            ]
        );
        // A listed number at or past the refused tail is already refused; zero is listable.
        assert_eq!(
            ranges(
                vec![(0, Verdict::Refuse), (2000, Verdict::Refuse)],
                Some(1000)
            ),
            vec![
                (0, Verdict::Refuse),
                (1, Verdict::Allow),
                (1000, Verdict::Refuse)
            ]
        );
        assert_eq!(
            ranges(vec![(u32::MAX, Verdict::Refuse)], None),
            vec![(0, Verdict::Allow), (u32::MAX, Verdict::Refuse)]
        );
    }

    /// The kernel accepts the program and enforces it: a forked child installs it and makes
    /// real calls. The child only makes system calls (no allocation, no lock) before `_exit`,
    /// and reports the first check that failed as its exit code.
    #[test]
    fn the_kernel_enforces_the_filter() {
        for network in [false, true] {
            let program = compile(network).expect("compiles").0;
            let prog = libc::sock_fprog {
                len: u16::try_from(program.len()).expect("fits"),
                filter: program.as_ptr().cast_mut(),
            };
            // SAFETY: the child makes only async-signal-safe system calls on memory the parent
            // prepared (`prog`, `program`) and ends with `_exit`; the parent waits for it.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
            if pid == 0 {
                let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                let code = unsafe {
                    // SAFETY (whole block): raw system calls with plain integer arguments or
                    // pointers to `prog`, alive for the child's life.
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                        || libc::syscall(
                            libc::SYS_seccomp,
                            libc::SECCOMP_SET_MODE_FILTER,
                            0,
                            std::ptr::from_ref(&prog),
                        ) != 0
                    {
                        10
                    } else if libc::syscall(libc::SYS_ptrace, libc::PTRACE_PEEKDATA, 1, 0, 0) != -1
                        || errno() != libc::EPERM
                    {
                        11
                    } else if libc::syscall(libc::SYS_keyctl, 0, -2, 0) != -1
                        || errno() != libc::EPERM
                    {
                        12
                    } else if cfg!(target_arch = "x86_64")
                        && (libc::syscall(0x4000_0000 | libc::SYS_getpid) != -1
                            || errno() != libc::EPERM)
                    {
                        // x32's getpid: refused, where without the filter it is ENOSYS or a pid.
                        13
                    } else if libc::syscall(libc::SYS_getpid) != i64::from(libc::getpid()) {
                        14
                    } else {
                        let unix = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                        let inet = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
                        let inet_errno = errno();
                        if unix < 0 {
                            15
                        } else if network != (inet >= 0) || (!network && inet_errno != libc::EPERM)
                        {
                            16
                        } else {
                            0
                        }
                    }
                };
                // SAFETY: ends the forked child without running the parent's destructors.
                unsafe { libc::_exit(code) };
            }
            let mut status = 0;
            // SAFETY: waits for the child forked above; `status` is a valid out pointer.
            let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
            assert_eq!(waited, pid);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "network {network}: the child failed check {} (status {status:#x})",
                libc::WEXITSTATUS(status)
            );
        }
    }
}
