//! The process entry point of `logos_host`, in place of std's.
//!
//! std's `main` wrapper cost each module start about 0.1 ms here (docs/performance.md,
//! sixteenth step), most of it glibc reading `/proc/self/maps` so that std knows the main
//! thread's stack bounds and can name a stack overflow. The host keeps what a module relies
//! on from that wrapper and does it without the read:
//!
//! - `SIGPIPE` is ignored, as std ignores it: a write to a closed pipe or socket is an
//!   `EPIPE` error for the module, not its death;
//! - a stack overflow of the main thread, where the SDK runs the module's tasks, still says
//!   so on stderr before the process dies of `SIGSEGV`. The handler tells an overflow from
//!   other faults by the faulting address lying within 64 KiB of the stack pointer, which
//!   needs no stack bounds. Other architectures than x86-64 get no handler: a fault there
//!   ends the process without the line.
//!
//! The rest is std as usual: glibc hands std the arguments before `main`, and
//! `std::process::exit` flushes stdout. The handler only calls `write` and `signal`, both
//! async-signal-safe; nothing here runs module code.

use std::ffi::{c_char, c_int, c_void};

/// How near the stack pointer a fault must be to count as running off the stack: the
/// largest frame a stack probe walks down in one step is a page, a push or call touches
/// just below the pointer; 64 KiB leaves room for the frame being set up.
const NEAR_STACK_POINTER: usize = 64 * 1024;
/// The stack the fault handler runs on, since the thread's own is used up. Mapped, not
/// touched: it costs no memory until a fault.
const ALT_STACK: usize = 64 * 1024;

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    prepare();
    crate::host_main()
}

/// What std's wrapper did that a module relies on.
pub(crate) fn prepare() {
    // SAFETY: `signal` with `SIG_IGN` changes only this process's disposition of SIGPIPE;
    // no other thread exists yet.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    report_stack_overflow();
}

#[cfg(target_arch = "x86_64")]
fn report_stack_overflow() {
    // SAFETY: an anonymous private mapping of our own; checked for failure below.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            ALT_STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return;
    }
    let alt = libc::stack_t {
        ss_sp: stack,
        ss_flags: 0,
        ss_size: ALT_STACK,
    };
    // SAFETY: `alt` describes the mapping above, which stays mapped for the process's life.
    if unsafe { libc::sigaltstack(&alt, std::ptr::null_mut()) } != 0 {
        // SAFETY: the mapping made above, refused as a signal stack and so used by nothing.
        unsafe { libc::munmap(stack, ALT_STACK) };
        return;
    }
    // SAFETY: a zeroed `sigaction` is a valid value of the C struct; the fields that matter
    // are set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction =
        on_fault as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as libc::sighandler_t;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: `action` is initialised and outlives the call; the handler has the
    // SA_SIGINFO signature.
    unsafe {
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut());
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn report_stack_overflow() {}

/// Says so when the fault is a stack overflow, then lets the fault end the process: with
/// the default action restored, returning re-runs the faulting instruction.
#[cfg(target_arch = "x86_64")]
extern "C" fn on_fault(signal: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: for an SA_SIGINFO handler the kernel passes a valid `siginfo_t` and
    // `ucontext_t` of the interrupted thread.
    let (address, stack_pointer) = unsafe {
        let context = &*context.cast::<libc::ucontext_t>();
        (
            (*info).si_addr() as usize,
            context.uc_mcontext.gregs[libc::REG_RSP as usize] as usize,
        )
    };
    if address.abs_diff(stack_pointer) <= NEAR_STACK_POINTER {
        const LINE: &[u8] =
            b"logos_host: the module overflowed its stack (a recursion too deep?); ending with SIGSEGV\n";
        // SAFETY: `write` is async-signal-safe; LINE is a static buffer.
        unsafe { libc::write(libc::STDERR_FILENO, LINE.as_ptr().cast(), LINE.len()) };
    }
    // SAFETY: `signal` is async-signal-safe and only resets this signal's disposition.
    unsafe { libc::signal(signal, libc::SIG_DFL) };
}
