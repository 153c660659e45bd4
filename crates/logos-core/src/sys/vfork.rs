//! `clone3` the way `posix_spawn` creates a process: the child shares this process's memory
//! (`CLONE_VM`) and runs on a stack of its own until its `exec`, while the calling thread
//! waits (`CLONE_VFORK`).
//!
//! Owns the system call, the child's stack and the signal mask around them; `process.rs`
//! owns what the child does (its [`Child`] runs on that stack and never returns). Never used
//! for anything but a child that execs or exits at once.
//!
//! # Why
//!
//! Without `CLONE_VM`, `clone3` copies the core's page tables, as `fork` does, and the child's
//! `exec` then tears the copy down again. Both grow with the core's address space: in the
//! benchmark's process the copy alone took 0.26–0.34 ms, and a module start became 0.3–0.4 ms
//! faster without both (docs/performance.md, fifteenth step); an application embedding the
//! core through the C API can be far larger. Sharing the memory costs neither.
//!
//! # What sharing the memory asks of the child
//!
//! Everything `process.rs` already keeps to (no allocation, no lock, only async-signal-safe
//! calls on data built before the clone), and three things more:
//! - **Its own stack.** It cannot run on the calling thread's stack, which the calling
//!   thread's frames still need when it resumes. The child starts on a fresh mapping with a
//!   guard page below it; the system call's return into the child, and the call of its entry
//!   point from there, are a few lines of assembly ([`clone3_on_stack`]), since no Rust code
//!   may run before the stack is switched.
//! - **No signal handler of this process runs in it.** A handler would act on this process's
//!   memory from another process (tokio's would report a signal the core never got). Every
//!   signal is blocked in the calling thread across the clone ([`SignalsBlocked`]), so the
//!   child starts with all of them blocked, and the child sets every caught signal back to its
//!   default action before it unblocks any (`process.rs`).
//! - **Writes to memory stay on its stack.** `errno` is the exception: the child's calls set
//!   the calling thread's `errno`, which that thread, waiting in `clone3`, never reads.
//!
//! Other architectures keep the `fork`-like `clone3` (see [`clone3`]).

use super::process::CloneArgs;
#[cfg(target_arch = "x86_64")]
use std::ffi::c_void;
use std::io;

/// What runs in the child: set up, then `exec` (or report and exit). Never returns.
pub(super) trait Child {
    fn run(&self) -> !;
}

/// `CLONE_VM`: the child shares this process's memory.
#[cfg(target_arch = "x86_64")]
const CLONE_VM: u64 = 0x100;
/// `CLONE_VFORK`: the calling thread resumes once the child has exec'd or exited.
#[cfg(target_arch = "x86_64")]
const CLONE_VFORK: u64 = 0x4000;

/// Size of the child's stack: what the setup between clone and `exec` needs, many times over
/// (it runs in unoptimised test builds too). Pages are only touched as used.
#[cfg(target_arch = "x86_64")]
pub(super) const STACK_SIZE: usize = 256 * 1024;

/// Creates the process `args` describes, running `child` in it; the child's pid.
///
/// On x86-64 the child shares this process's memory until its `exec` (module docs), and this
/// returns once it has exec'd or exited.
///
/// # Errors
/// The kernel's refusal of `clone3`, or a failure to map the child's stack.
#[cfg(target_arch = "x86_64")]
pub(super) fn clone3<C: Child>(args: &mut CloneArgs, child: &C) -> io::Result<u32> {
    let stack = Stack::new()?;
    args.flags |= CLONE_VM | CLONE_VFORK;
    args.stack = stack.low as u64;
    args.stack_size = STACK_SIZE as u64;
    let ret = {
        let _blocked = SignalsBlocked::new()?;
        // SAFETY: `args` is a valid `clone_args` (alive for the call) whose stack is `stack`'s
        // mapping, which outlives the child's use of it: with CLONE_VFORK this returns only
        // after the child has exec'd or exited. `entry::<C>` never returns and is given a
        // pointer to `child`, which lives on this frame across the call.
        unsafe {
            clone3_on_stack(
                args,
                entry::<C>,
                std::ptr::from_ref(child).cast_mut().cast(),
            )
        }
    };
    drop(stack);
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(
            i32::try_from(-ret).unwrap_or(libc::EINVAL),
        ));
    }
    u32::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Creates the process `args` describes, running `child` in it; the child's pid. Here the
/// child gets a copy of this process's memory, as after `fork`.
///
/// # Errors
/// The kernel's refusal of `clone3`.
#[cfg(not(target_arch = "x86_64"))]
pub(super) fn clone3<C: Child>(args: &mut CloneArgs, child: &C) -> io::Result<u32> {
    let _blocked = SignalsBlocked::new()?;
    // SAFETY: clone3 reads `args` (alive on this frame). Without CLONE_VM the child runs on a
    // copy of this address space with only this thread, like after `fork`: it continues in
    // `child.run()`, which never returns.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::from_ref(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if r == 0 {
        child.run();
    }
    u32::try_from(r).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The child's first Rust code, on its own stack.
#[cfg(target_arch = "x86_64")]
extern "C" fn entry<C: Child>(child: *mut c_void) -> ! {
    // SAFETY: `clone3` passed a pointer to a `C` that lives on the waiting parent's frame.
    let child = unsafe { &*child.cast::<C>().cast_const() };
    child.run()
}

/// The `clone3` system call; in the child (on the stack `args` names) it calls
/// `entry(arg)`, which must not return. Returns the child's pid, or `-errno`.
///
/// # Safety
/// `args` must point to a valid `clone_args` with a stack the child may use until it execs
/// or exits; with `CLONE_VM` the caller must keep that stack mapped until then (CLONE_VFORK
/// does). `entry` must not return and must be sound to run on that stack with `arg`.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_on_stack(
    args: *const CloneArgs,
    entry: extern "C" fn(*mut c_void) -> !,
    arg: *mut c_void,
) -> i64 {
    let ret: i64;
    // SAFETY: the caller's contract. `syscall` clobbers only rax (the result), rcx and r11 in
    // both processes. The parent jumps over the child's part. The child returns from the
    // system call with its stack pointer at the top of its new stack (16-byte aligned, as a
    // page is), so the `call` leaves `entry` a correctly aligned frame; r12 and r13 carry
    // `arg` and `entry` across the call, as the kernel copies every register into the child.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") arg,
            in("r13") entry,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// The child's stack: `STACK_SIZE` bytes above one inaccessible guard page, unmapped on drop.
#[cfg(target_arch = "x86_64")]
struct Stack {
    /// The start of the mapping (the guard page).
    base: *mut c_void,
    /// The lowest address of the usable stack.
    low: *mut c_void,
    len: usize,
}

#[cfg(target_arch = "x86_64")]
impl Stack {
    fn new() -> io::Result<Stack> {
        let guard = rustix::param::page_size();
        let len = guard + STACK_SIZE;
        // SAFETY: an anonymous private mapping at an address the kernel picks; no memory of
        // ours is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack {
            base,
            low: base.wrapping_byte_add(guard),
            len,
        };
        // SAFETY: the first page of the mapping made above, which nothing uses yet.
        if unsafe { libc::mprotect(base, guard, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }
}

#[cfg(target_arch = "x86_64")]
impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the whole mapping made in `new`; the child that used it has exec'd or
        // exited (CLONE_VFORK), so nothing refers to it.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// Every signal blocked in the calling thread while alive; the previous mask back on drop.
struct SignalsBlocked(libc::sigset_t);

impl SignalsBlocked {
    fn new() -> io::Result<SignalsBlocked> {
        // SAFETY: sigfillset and pthread_sigmask write only the two sets on this frame.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&raw mut all);
            let r = libc::pthread_sigmask(libc::SIG_SETMASK, &raw const all, &raw mut old);
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
            Ok(SignalsBlocked(old))
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask read in `new`; reads only that set.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &raw const self.0, std::ptr::null_mut())
        };
    }
}

/// Sets every signal with a handler back to its default action. For the child, before it
/// unblocks signals: until its `exec` it would run this process's handlers (module docs).
/// Async-signal-safe: `sigaction` on values on this stack. The two signals the C library
/// keeps for itself (cancellation and `setxid`) refuse `sigaction`; it sends them only to
/// this process's own threads, by thread id, never to the child.
pub(super) fn reset_handlers() {
    let last = libc::SIGRTMAX();
    for sig in 1..=last {
        // SAFETY: sigaction reads and writes only the two structs on this frame; a signal
        // number the C library reserves or that cannot be caught is refused with EINVAL.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &raw mut old) != 0 {
                continue;
            }
            if old.sa_sigaction == libc::SIG_DFL || old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &raw const default, std::ptr::null_mut());
        }
    }
}
