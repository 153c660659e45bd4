//! `logos_host` against hand-made module libraries: the ABI version, protocol major, name and
//! version are checked before any module code runs, refusals exit 3 with a message naming both sides,
//! and an accepted library's `run` exit code becomes the host's. The process the module runs
//! in ignores `SIGPIPE` and names a stack overflow, as std's own entry point would have.
//!
//! The fake libraries are tiny C-ABI cdylibs compiled with `rustc` into a temp dir, so each
//! can claim whatever version or name a case needs. Their `run` creates a marker file, which
//! shows whether the host called it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Fake<'a> {
    abi: u32,
    major: u32,
    name: &'a str,
    /// The body of `run`: an exit code, or code that ends in one.
    code: &'a str,
}

fn build(dir: &Path, file: &str, fake: &Fake<'_>) -> PathBuf {
    let marker = dir.join(format!("{file}.ran"));
    let src = format!(
        r#"
use std::ffi::{{c_char, c_int}};
#[repr(C)]
pub struct Module {{ abi: u32, major: u32, name: *const c_char, version: *const c_char, run: unsafe extern "C" fn() -> c_int }}
unsafe impl Sync for Module {{}}
unsafe extern "C" fn run() -> c_int {{
    let _ = std::fs::write({marker:?}, b"ran");
    {code}
}}
static MODULE: Module = Module {{ abi: {abi}, major: {major}, name: c"{name}".as_ptr(), version: c"1.0.0".as_ptr(), run }};
#[unsafe(no_mangle)]
pub extern "C" fn logos_module_v1() -> *const Module {{ &MODULE }}
"#,
        code = fake.code,
        abi = fake.abi,
        major = fake.major,
        name = fake.name,
    );
    support::cdylib(dir, file, &src)
}

fn host(lib: &Path, name: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_logos_host"))
        .arg("--module")
        .arg(lib)
        .arg("--name")
        .arg(name)
        .output()
        .unwrap()
}

/// As the core runs it: with the metadata's version to check.
fn host_expecting(lib: &Path, name: &str, version: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_logos_host"))
        .arg("--module")
        .arg(lib)
        .args(["--name", name, "--module-version", version])
        .output()
        .unwrap()
}

fn ran(dir: &Path, file: &str) -> bool {
    dir.join(format!("{file}.ran")).exists()
}

#[test]
fn checks_come_before_run_and_refusals_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let lib = build(
        d,
        "abi2",
        &Fake {
            abi: 2,
            major: 1,
            name: "calc",
            code: "0",
        },
    );
    let out = host(&lib, "calc");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("uses logos module ABI version 2, but this logos_host speaks version 1"),
        "{err}"
    );
    assert!(!ran(d, "abi2"));

    let lib = build(
        d,
        "proto2",
        &Fake {
            abi: 1,
            major: 2,
            name: "calc",
            code: "0",
        },
    );
    let out = host(&lib, "calc");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("speaks protocol 2.x") && err.contains("speak 1.x"),
        "{err}"
    );
    assert!(!ran(d, "proto2"));

    let lib = build(
        d,
        "named",
        &Fake {
            abi: 1,
            major: 1,
            name: "calc",
            code: "0",
        },
    );
    let out = host(&lib, "calq");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "module library {} says its name is \"calc\" but metadata says \"calq\"",
            lib.display()
        )),
        "{err}"
    );
    assert!(!ran(d, "named"));
}

#[test]
fn a_version_other_than_the_metadata_is_refused_before_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fake = Fake {
        abi: 1,
        major: 1,
        name: "calc",
        code: "0",
    };
    // The fake embeds version 1.0.0.
    let lib = build(d, "versioned", &fake);
    let out = host_expecting(&lib, "calc", "1.2.0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "module library {} was built as version 1.0.0 (the `version` in its Cargo.toml",
            lib.display()
        )) && err.contains("but its metadata.json says 1.2.0"),
        "{err}"
    );
    assert!(!ran(d, "versioned"));
    let out = host_expecting(&lib, "calc", "1.0.0");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ran(d, "versioned"));
}

#[test]
fn an_accepted_library_runs_and_its_code_is_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let lib = build(
        dir.path(),
        "good",
        &Fake {
            abi: 1,
            major: 1,
            name: "good",
            code: "42",
        },
    );
    let out = host(&lib, "good");
    assert_eq!(
        out.status.code(),
        Some(42),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ran(dir.path(), "good"));
}

#[test]
fn libraries_without_the_entry_point_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lib = support::cdylib(
        dir.path(),
        "plain",
        "#[unsafe(no_mangle)] pub extern \"C\" fn other() {}\n",
    );
    let out = host(&lib, "plain");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("has no entry point `logos_module_v1`"),
        "{err}"
    );

    let out = host(&dir.path().join("missing.so"), "missing");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot load module library"));
}

#[test]
fn bad_arguments_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_logos_host"))
        .arg("--module")
        .arg("/x.so")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_logos_host"))
        .args(["--module", "/x.so", "--name", ""])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The host has its own entry point (`entry.rs`); a module still gets `EPIPE` from a write to
/// a pipe nobody reads, not death by `SIGPIPE`.
#[test]
fn a_write_to_a_closed_pipe_is_an_error_not_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"
    use std::io::Write;
    let (reader, mut writer) = std::io::pipe().unwrap();
    drop(reader);
    match writer.write(b"x") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 7,
        _ => 1,
    }"#;
    let lib = build(
        dir.path(),
        "pipe",
        &Fake {
            abi: 1,
            major: 1,
            name: "pipe",
            code: body,
        },
    );
    let out = host(&lib, "pipe");
    assert_eq!(
        out.status.code(),
        Some(7),
        "{:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A module that recurses without end dies of the fault, and its stderr says why.
#[test]
#[cfg(target_arch = "x86_64")]
fn a_stack_overflow_is_named_on_stderr() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let body = r#"
    fn deep(n: u64) -> u64 {
        let frame = std::hint::black_box([n; 64]);
        if n == 0 { 0 } else { deep(n - 1).wrapping_add(frame[3]) }
    }
    deep(std::hint::black_box(u64::MAX)) as i32"#;
    let lib = build(
        dir.path(),
        "deep",
        &Fake {
            abi: 1,
            major: 1,
            name: "deep",
            code: body,
        },
    );
    let out = host(&lib, "deep");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSEGV),
        "{:?} {stderr}",
        out.status
    );
    assert!(stderr.contains("overflowed its stack"), "{stderr}");
}
