//! Which build of `libprobe.so` and the `probe` program the rows that run `probe` measure: one
//! built on its own, as a module author's project builds it, or one built in the same
//! `cargo build` as the benchmark; and whether the program is linked static.
//!
//! Cargo unifies the features of every package one command builds, so the second gets what the
//! benchmark asks of shared crates: tokio's multi-thread scheduler, whose `pow` pulls in libm.
//! It starts slower and maps more than any module built on its own (docs/performance.md,
//! "Running the benchmark"), and two sessions measured it without noticing. So the rows say
//! when the library or the program links libm. Never fails a row: a file it cannot read is
//! reported as such.

use object::elf;
use object::read::ReadCache;
use object::read::elf::{ElfFile64, ProgramHeader as _};
use std::path::Path;

/// Whether the ELF file (a shared library or a program) at `path` names `libm.so.6` among the
/// libraries it needs (`DT_NEEDED`). A static program needs none, so this is false for it:
/// the static build (`cargo rustc -p probe --bin probe`) builds `probe` alone, never with the
/// benchmark's features.
///
/// # Errors
/// A message naming the file and why it cannot be read as an ELF file.
pub fn links_libm(path: &Path) -> Result<bool, String> {
    with_elf(path, |file, data| {
        let table = file
            .elf_section_table()
            .dynamic_table(file.endian(), data)?;
        for entry in &table {
            if entry.tag == elf::DT_NEEDED && table.string(entry)?.starts_with(b"libm.so") {
                return Ok(true);
            }
        }
        Ok(false)
    })
}

/// An ELF file parsed lazily from its file (headers and the parts `read` asks for, not the
/// whole: the files are tens of MB with their debug information).
type Elf<'data> = ElfFile64<'data, object::Endianness, &'data ReadCache<std::fs::File>>;

/// Runs `read` on the ELF file at `path`; any error names the file.
fn with_elf<T>(
    path: &Path,
    read: impl FnOnce(&Elf<'_>, &ReadCache<std::fs::File>) -> object::read::Result<T>,
) -> Result<T, String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let data = ReadCache::new(std::fs::File::open(path).map_err(|e| fail(&e))?);
    let file = Elf::parse(&data).map_err(|e| fail(&e))?;
    read(&file, &data).map_err(|e| fail(&e))
}

/// Whether the program at `path` is linked static: it names no dynamic loader
/// (`PT_INTERP`), so the kernel runs it directly, with no shared library to load
/// (docs/module-authoring.md §10 recommends it for executable modules).
///
/// # Errors
/// A message naming the file and why it cannot be read as an ELF file.
pub fn is_static(path: &Path) -> Result<bool, String> {
    with_elf(path, |file, _| {
        let endian = file.endian();
        Ok(!file
            .elf_program_headers()
            .iter()
            .any(|segment| segment.p_type(endian) == elf::PT_INTERP))
    })
}

/// How the `start` row's note names the program's linking.
pub fn linking(path: &Path) -> &'static str {
    match is_static(path) {
        Ok(true) => "the probe program is linked static (no dynamic loader, no libgcc_s)",
        Ok(false) => {
            "the probe program is linked dynamically (the loader maps libc and libgcc_s first); \
             docs/module-authoring.md §10 builds executable modules static: cargo rustc \
             --release -p probe --bin probe -- -C target-feature=+crt-static"
        }
        Err(_) => "the probe program's linking cannot be read",
    }
}

/// What a row that ran `probe` adds to its note when the library links libm.
pub const COMBINED: &str = "libprobe.so or the probe program links libm: built in the same \
     cargo build as this benchmark, with its features (tokio's multi-thread scheduler), so \
     this figure is not a module's as authors build it; build it alone (docs/performance.md, \
     \"Running the benchmark\")";

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Compiles `source` with `cc` and `flags` into `dir/out`.
    fn compile(
        dir: &Path,
        out: &str,
        source: &str,
        flags: &[&str],
    ) -> Result<std::path::PathBuf, String> {
        let src = dir.join(format!("{out}.c"));
        std::fs::write(&src, source).map_err(|e| e.to_string())?;
        let out = dir.join(out);
        let status = Command::new("cc")
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .status()
            .map_err(|e| format!("cc cannot run (install a C compiler): {e}"))?;
        if !status.success() {
            return Err(format!("cc failed: {status}"));
        }
        Ok(out)
    }

    /// A shared library compiled by `cc`, linked with `-lm` or not.
    fn library(dir: &Path, name: &str, libm: bool) -> Result<std::path::PathBuf, String> {
        let mut flags = vec!["-shared", "-fPIC", "-Wl,--no-as-needed"];
        if libm {
            flags.push("-lm");
        }
        let source = "double f(double x) { return x + 1.0; }\n";
        compile(dir, &format!("{name}.so"), source, &flags)
    }

    #[test]
    fn a_library_linked_with_libm_is_told_from_one_without() -> TestResult {
        let dir = tempfile::tempdir()?;
        assert!(links_libm(&library(dir.path(), "with", true)?)?);
        assert!(!links_libm(&library(dir.path(), "without", false)?)?);
        Ok(())
    }

    /// A program compiled by `cc`, static-pie or dynamic.
    fn program(dir: &Path, name: &str, linked_static: bool) -> Result<std::path::PathBuf, String> {
        let flag = if linked_static { "-static-pie" } else { "-pie" };
        compile(dir, name, "int main(void) { return 0; }\n", &[flag])
    }

    #[test]
    fn a_static_program_is_told_from_a_dynamic_one() -> TestResult {
        let dir = tempfile::tempdir()?;
        let linked_static = program(dir.path(), "static", true)?;
        let dynamic = program(dir.path(), "dynamic", false)?;
        assert!(is_static(&linked_static)?);
        assert!(!is_static(&dynamic)?);
        // A static program needs no library, libm included.
        assert!(!links_libm(&linked_static)?);
        assert!(linking(&linked_static).contains("linked static"));
        assert!(linking(&dynamic).contains("crt-static"));
        let e = is_static(&dir.path().join("gone"))
            .err()
            .ok_or("a missing file was read")?;
        assert!(e.contains("gone"), "{e}");
        Ok(())
    }

    #[test]
    fn a_file_that_is_not_elf_is_named_in_the_error() -> TestResult {
        let dir = tempfile::tempdir()?;
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a library")?;
        let e = links_libm(&text)
            .err()
            .ok_or("a text file was read as ELF")?;
        assert!(e.contains("notes.txt"), "{e}");
        let missing = dir.path().join("gone.so");
        let e = links_libm(&missing)
            .err()
            .ok_or("a missing file was read")?;
        assert!(e.contains("gone.so"), "{e}");
        Ok(())
    }
}
