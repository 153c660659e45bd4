//! The C ABI between `logos_host` and a module library: normative definition.
//!
//! Owns the one symbol a module cdylib exports, `logos_module_v1`, and the struct it returns.
//! Only C types cross this boundary, so a host and a module built by different compiler
//! versions (different Rust ABIs, different std copies) still understand each other, or the
//! host refuses the library with a message naming both versions. Never lets a panic unwind
//! across it.
//!
//! # The contract
//!
//! ```c
//! #define LOGOS_ABI_VERSION 1
//!
//! typedef struct LogosModuleV1 {
//!     uint32_t    abi_version;     /* LOGOS_ABI_VERSION, always the first field */
//!     uint32_t    protocol_major;  /* wire protocol major the module speaks */
//!     const char *name;            /* NUL-terminated UTF-8, static */
//!     const char *version;         /* NUL-terminated UTF-8, static */
//!     int       (*run)(void);      /* serve per the module process contract; exit code */
//! } LogosModuleV1;
//!
//! const LogosModuleV1 *logos_module_v1(void);
//! ```
//!
//! 1. The host resolves `logos_module_v1` and calls it; it returns a pointer to static,
//!    immutable data (never null) and has no other effect.
//! 2. The host reads `abi_version` (the first `u32` of every version of the struct) and reads
//!    further fields only if it is a version the host knows. Then it compares
//!    `protocol_major` with its own and `name` with the module name the core gave it.
//! 3. Only then it calls `run`, once, on the main thread. `run` takes the inherited
//!    descriptors (fd 3 and 4, or `LOGOS_CONTROL_FD`/`LOGOS_LISTEN_FD`, and the heartbeat
//!    page on `LOGOS_BEAT_FD` when there is one), serves until told to
//!    stop and returns the exit code; a panic escaping the module is caught and reported as
//!    exit code 101. The host then exits with that code without unloading the library.
//!
//! A later, incompatible layout gets a new struct (`LogosModuleV2`) and a new symbol; a host
//! may look up both.

use crate::module::Module;
use std::ffi::{c_char, c_int};

/// Version of [`LogosModuleV1`]'s layout and rules. A host refuses any other.
pub const LOGOS_ABI_VERSION: u32 = 1;

/// The symbol a module library exports (without the trailing NUL).
pub const ENTRY_SYMBOL: &str = "logos_module_v1";

/// What `logos_module_v1()` returns. See the module docs for the rules.
#[repr(C)]
#[derive(Debug)]
pub struct LogosModuleV1 {
    /// [`LOGOS_ABI_VERSION`]; always the first field, in every version.
    pub abi_version: u32,
    /// The wire protocol major version the module speaks ([`logos_wire::PROTOCOL_MAJOR`]).
    pub protocol_major: u32,
    /// The module's name, NUL-terminated UTF-8 with static lifetime.
    pub name: *const c_char,
    /// The module's version, NUL-terminated UTF-8 with static lifetime.
    pub version: *const c_char,
    /// Serves the module per the module process contract and returns the exit code.
    ///
    /// Unsafe to call because it takes ownership of the inherited descriptors: call it at
    /// most once per process, from the main thread, in a process started per the contract.
    pub run: unsafe extern "C" fn() -> c_int,
}

// SAFETY: every field is either plain data or points to immutable static data (the name and
// version byte arrays emitted by `export_module!`); nothing is ever written through them, so
// sharing across threads is sound.
unsafe impl Sync for LogosModuleV1 {}

/// Copies `s` into a NUL-terminated array at compile time (for `export_module!`).
///
/// # Panics
/// At compile time, when `N != s.len() + 1` or `s` contains a NUL byte.
#[doc(hidden)]
pub const fn c_bytes<const N: usize>(s: &str) -> [u8; N] {
    let bytes = s.as_bytes();
    assert!(
        N == bytes.len() + 1,
        "array length must be the string length + 1"
    );
    let mut out = [0u8; N];
    let mut i = 0;
    while i < bytes.len() {
        assert!(
            bytes[i] != 0,
            "module name and version must not contain NUL"
        );
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// The `run` entry of [`LogosModuleV1`] for module `T`: serves it and returns the exit code,
/// catching any panic so none unwinds into the host.
#[doc(hidden)]
pub extern "C" fn run_entry<T: Module>() -> c_int {
    match std::panic::catch_unwind(crate::serve::run::<T>) {
        Ok(code) => code,
        Err(_) => crate::serve::EXIT_PANIC,
    }
}

/// Exports module type `T` through the C ABI: defines the `logos_module_v1` symbol that
/// `logos_host` loads. Use it once per module library, after the `#[module]` impl.
///
/// ```
/// #[derive(Default)]
/// struct Calc;
///
/// #[logos_sdk::module(name = "calc")]
/// impl Calc {}
///
/// logos_sdk::export_module!(Calc);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_module {
    ($ty:ty) => {
        /// The logos C ABI entry point of this module library (see `logos_sdk::abi`).
        #[unsafe(no_mangle)]
        pub extern "C" fn logos_module_v1() -> *const $crate::abi::LogosModuleV1 {
            const NAME_LEN: usize = <$ty as $crate::Module>::NAME.len() + 1;
            const VERSION_LEN: usize = <$ty as $crate::Module>::VERSION.len() + 1;
            static NAME: [u8; NAME_LEN] =
                $crate::abi::c_bytes::<NAME_LEN>(<$ty as $crate::Module>::NAME);
            static VERSION: [u8; VERSION_LEN] =
                $crate::abi::c_bytes::<VERSION_LEN>(<$ty as $crate::Module>::VERSION);
            static ENTRY: $crate::abi::LogosModuleV1 = $crate::abi::LogosModuleV1 {
                abi_version: $crate::abi::LOGOS_ABI_VERSION,
                protocol_major: $crate::export::PROTOCOL_MAJOR_U32,
                name: NAME.as_ptr().cast(),
                version: VERSION.as_ptr().cast(),
                run: $crate::abi::run_entry::<$ty>,
            };
            &ENTRY
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_bytes_terminates() {
        const B: [u8; 5] = c_bytes::<5>("calc");
        assert_eq!(&B, b"calc\0");
    }

    #[test]
    fn layout_is_stable() {
        // The host mirrors this layout; these are the numbers it relies on (64-bit Linux).
        assert_eq!(std::mem::offset_of!(LogosModuleV1, abi_version), 0);
        assert_eq!(std::mem::offset_of!(LogosModuleV1, protocol_major), 4);
        assert_eq!(std::mem::offset_of!(LogosModuleV1, name), 8);
        assert_eq!(
            std::mem::offset_of!(LogosModuleV1, version),
            8 + std::mem::size_of::<*const c_char>()
        );
        assert_eq!(
            std::mem::offset_of!(LogosModuleV1, run),
            8 + 2 * std::mem::size_of::<*const c_char>()
        );
    }
}
