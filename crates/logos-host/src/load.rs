//! Loading a module library and checking it before any of its code runs.
//!
//! Owns the host's side of the C ABI (the normative definition is `logos_sdk::abi`, mirrored
//! here because the host links nothing of ours; a test checks the mirror): `dlopen` the
//! library, resolve `logos_module_v1`, check the ABI version first, then the protocol major,
//! the embedded name and (when the core says what to expect) the embedded version, and only
//! then hand out the `run` entry. Never interprets anything
//! a module says beyond these fields, and never unloads a library it ran.

use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW, Symbol};
use std::ffi::{CStr, c_char, c_int};
use std::path::{Path, PathBuf};

/// The C ABI version this host speaks (`LOGOS_ABI_VERSION`).
pub const ABI_VERSION: u32 = 1;
/// The wire protocol major this host's core speaks.
pub const PROTOCOL_MAJOR: u32 = 1;
/// The entry point symbol, NUL-terminated for `dlsym`.
const ENTRY_SYMBOL: &[u8] = b"logos_module_v1\0";

/// Mirror of `logos_sdk::abi::LogosModuleV1`.
#[repr(C)]
pub struct LogosModuleV1 {
    pub abi_version: u32,
    pub protocol_major: u32,
    pub name: *const c_char,
    pub version: *const c_char,
    pub run: unsafe extern "C" fn() -> c_int,
}

/// Why a module library is refused. Every message names the library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// `dlopen` failed (missing file, not a shared library, unresolved symbols).
    #[error("cannot load module library {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: libloading::Error,
    },
    /// The library exports no `logos_module_v1`.
    #[error(
        "module library {} has no entry point `logos_module_v1`; build it with `logos_sdk::export_module!(YourModule)` ({source})",
        path.display()
    )]
    NoEntry {
        path: PathBuf,
        #[source]
        source: libloading::Error,
    },
    /// `logos_module_v1()` returned null.
    #[error("module library {}: logos_module_v1() returned a null pointer", path.display())]
    NullEntry { path: PathBuf },
    /// Another C ABI version.
    #[error(
        "module library {} uses logos module ABI version {found}, but this logos_host speaks version {expected}; rebuild the module against a logos-sdk with ABI version {expected}",
        path.display()
    )]
    AbiMismatch {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// Another wire protocol major.
    #[error(
        "module library {} speaks protocol {found}.x, but this logos_host and its core speak {expected}.x; rebuild the module against a logos-sdk for protocol {expected}",
        path.display()
    )]
    ProtocolMismatch {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// The embedded name is missing or not UTF-8.
    #[error("module library {} embeds an invalid name: {reason}", path.display())]
    BadName { path: PathBuf, reason: String },
    /// The embedded name differs from the one the core expects.
    #[error(
        "module library {} says its name is \"{embedded}\" but metadata says \"{expected}\"; fix `name` in metadata.json or rebuild the module",
        path.display()
    )]
    NameMismatch {
        path: PathBuf,
        embedded: String,
        expected: String,
    },
    /// The embedded version is missing or not UTF-8.
    #[error("module library {} embeds an invalid version: {reason}", path.display())]
    BadVersion { path: PathBuf, reason: String },
    /// The embedded version (its `Cargo.toml`'s) differs from the metadata's.
    #[error(
        "module library {} was built as version {embedded} (the `version` in its Cargo.toml, or #[module(version = ...)]) but its metadata.json says {expected}; make the two agree: set \"version\" in metadata.json, or the version in Cargo.toml and rebuild",
        path.display()
    )]
    VersionMismatch {
        path: PathBuf,
        embedded: String,
        expected: String,
    },
}

/// A module library that passed every check, ready to run.
pub struct Module {
    library: Library,
    run: unsafe extern "C" fn() -> c_int,
}

impl Module {
    /// Loads the library at `path` and checks it is module `expected_name` (of version
    /// `expected_version`, when given) with a compatible ABI and protocol. No module code runs
    /// except the library's initialisers and the side-effect-free `logos_module_v1()`
    /// accessor.
    ///
    /// # Errors
    /// A [`LoadError`] naming the library and what does not match.
    pub fn open(
        path: &Path,
        expected_name: &str,
        expected_version: Option<&str>,
    ) -> Result<Module, LoadError> {
        // A bare file name would make dlopen search the library path instead of the file given.
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        // SAFETY: loading runs the library's initialisers. The core only names libraries from
        // a module directory it was configured with; RTLD_NOW resolves every symbol up front so
        // a broken library fails here rather than mid-run, RTLD_LOCAL keeps its symbols private.
        let library =
            unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_LOCAL) }.map_err(|source| {
                LoadError::Open {
                    path: path.clone(),
                    source,
                }
            })?;
        // SAFETY: the symbol's type is fixed by the ABI (`logos_sdk::abi`): a C function taking
        // nothing and returning a pointer. A library exporting the name with another type is
        // not a logos module and breaks the ABI contract.
        let entry: Symbol<unsafe extern "C" fn() -> *const LogosModuleV1> =
            unsafe { library.get(ENTRY_SYMBOL) }.map_err(|source| LoadError::NoEntry {
                path: path.clone(),
                source,
            })?;
        // SAFETY: per the ABI the accessor has no side effects and returns a pointer to static
        // data (checked for null below).
        let module = unsafe { entry() };
        if module.is_null() {
            return Err(LoadError::NullEntry { path });
        }
        // SAFETY: every ABI version starts with a u32 version field, so reading the first four
        // bytes is valid whatever version the library speaks; the rest is read only once the
        // version is known to be ours.
        let abi_version = unsafe { module.cast::<u32>().read() };
        if abi_version != ABI_VERSION {
            return Err(LoadError::AbiMismatch {
                path,
                found: abi_version,
                expected: ABI_VERSION,
            });
        }
        // SAFETY: the version says the pointee is a `LogosModuleV1` with static lifetime.
        let module: &LogosModuleV1 = unsafe { &*module };
        if module.protocol_major != PROTOCOL_MAJOR {
            return Err(LoadError::ProtocolMismatch {
                path,
                found: module.protocol_major,
                expected: PROTOCOL_MAJOR,
            });
        }
        if module.name.is_null() {
            return Err(LoadError::BadName {
                path,
                reason: "null pointer".to_owned(),
            });
        }
        // SAFETY: non-null, and per the ABI a NUL-terminated string in static data.
        let name = unsafe { CStr::from_ptr(module.name) };
        let name = match name.to_str() {
            Ok(n) => n.to_owned(),
            Err(e) => {
                return Err(LoadError::BadName {
                    path,
                    reason: format!("not UTF-8 ({e})"),
                });
            }
        };
        if name != expected_name {
            return Err(LoadError::NameMismatch {
                path,
                embedded: name,
                expected: expected_name.to_owned(),
            });
        }
        if let Some(expected) = expected_version {
            if module.version.is_null() {
                return Err(LoadError::BadVersion {
                    path,
                    reason: "null pointer".to_owned(),
                });
            }
            // SAFETY: non-null, and per the ABI a NUL-terminated string in static data.
            let version = unsafe { CStr::from_ptr(module.version) };
            let version = match version.to_str() {
                Ok(v) => v,
                Err(e) => {
                    return Err(LoadError::BadVersion {
                        path,
                        reason: format!("not UTF-8 ({e})"),
                    });
                }
            };
            if version != expected {
                return Err(LoadError::VersionMismatch {
                    path,
                    embedded: version.to_owned(),
                    expected: expected.to_owned(),
                });
            }
        }
        let run = module.run;
        Ok(Module { library, run })
    }

    /// Runs the module and returns its exit code. The library stays loaded for the rest of
    /// the process: threads it started may still run while the process exits.
    pub fn run(self) -> i32 {
        let run = self.run;
        std::mem::forget(self.library);
        // SAFETY: called once, from the main thread, in a process started per the module
        // process contract (the caller of logos_host provides the descriptors); the library
        // is never unloaded, so the function pointer stays valid.
        unsafe { run() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn mirror_matches_the_sdk_definition() {
        use logos_sdk::abi;
        assert_eq!(ABI_VERSION, abi::LOGOS_ABI_VERSION);
        assert_eq!(PROTOCOL_MAJOR, u32::from(logos_wire::PROTOCOL_MAJOR));
        assert_eq!(ENTRY_SYMBOL, format!("{}\0", abi::ENTRY_SYMBOL).as_bytes());
        assert_eq!(size_of::<LogosModuleV1>(), size_of::<abi::LogosModuleV1>());
        assert_eq!(
            offset_of!(LogosModuleV1, abi_version),
            offset_of!(abi::LogosModuleV1, abi_version)
        );
        assert_eq!(
            offset_of!(LogosModuleV1, protocol_major),
            offset_of!(abi::LogosModuleV1, protocol_major)
        );
        assert_eq!(
            offset_of!(LogosModuleV1, name),
            offset_of!(abi::LogosModuleV1, name)
        );
        assert_eq!(
            offset_of!(LogosModuleV1, version),
            offset_of!(abi::LogosModuleV1, version)
        );
        assert_eq!(
            offset_of!(LogosModuleV1, run),
            offset_of!(abi::LogosModuleV1, run)
        );
    }

    #[test]
    fn missing_library_is_refused_with_its_path() {
        let e = Module::open(Path::new("/nonexistent/libnope.so"), "nope", None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("cannot load module library /nonexistent/libnope.so"),
            "{e}"
        );
    }
}
