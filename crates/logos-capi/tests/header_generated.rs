//! The checked-in `include/logos_core.h` is exactly what cbindgen generates from `src/lib.rs`,
//! and it compiles as C and as C++.
//!
//! After changing the API, regenerate the header with
//! `LOGOS_CAPI_BLESS=1 cargo test -p logos-capi --test header_generated` and commit it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;

fn generate() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).expect("utf-8 header")
}

#[test]
fn header_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/logos_core.h");
    let generated = generate();
    if std::env::var_os("LOGOS_CAPI_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write header");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != generated {
        let first = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
        panic!(
            "{} is not what cbindgen generates from src/lib.rs (first difference at line {}:\n  checked in: {:?}\n  generated:  {:?});\nregenerate it with `LOGOS_CAPI_BLESS=1 cargo test -p logos-capi --test header_generated` and commit it",
            path.display(),
            first + 1,
            checked_in.lines().nth(first).unwrap_or("<end>"),
            generated.lines().nth(first).unwrap_or("<end>"),
        );
    }
}

#[test]
fn header_declares_the_rfc_api() {
    let header = generate();
    for decl in [
        "typedef void (*AsyncCallback)(int result, const char *message, void *user_data);",
        "int logos_core_initialize(void);",
        "int logos_core_init(int argc, char **argv);",
        "int logos_core_set_plugins_dir(const char *plugins_dir);",
        "int logos_core_add_plugins_dir(const char *plugins_dir);",
        "int logos_core_start(void);",
        "int logos_core_exec(void);",
        "void logos_core_cleanup(void);",
        "char **logos_core_get_loaded_plugins(void);",
        "char **logos_core_get_known_plugins(void);",
        "int logos_core_load_plugin(const char *plugin_name);",
        "int logos_core_unload_plugin(const char *plugin_name);",
        "char *logos_core_process_plugin(const char *plugin_path);",
        "char *logos_core_get_token(const char *key);",
        "AsyncCallback callback, void *user_data);",
        "int logos_core_process_events(void);",
        "const char *logos_core_last_error(void);",
        "void logos_core_free_string(char *s);",
        "void logos_core_free_list(char **list);",
    ] {
        assert!(
            header.contains(decl),
            "the header lacks `{decl}`:\n{header}"
        );
    }
}

/// Every declaration of the reference implementation's 2026 `logos_core.h` (logos-co/
/// logos-liblogos, `src/logos_core/logos_core.h`), with its parameter types. Where the reference
/// returns `void` from `init` and `start`, ours return `int` (see docs/c-api.md); callers that
/// declare them `void` link and run the same.
#[test]
fn header_declares_the_reference_2026_api() {
    let header = generate();
    for decl in [
        "#include <stdbool.h>",
        "int logos_core_init(int argc, char **argv);",
        "void logos_core_add_modules_dir(const char *modules_dir);",
        "int logos_core_start(void);",
        "void logos_core_cleanup(void);",
        "char **logos_core_get_loaded_modules(void);",
        "char **logos_core_get_known_modules(void);",
        "int logos_core_load_module(const char *module_name, bool with_dependencies);",
        "int logos_core_unload_module(const char *module_name, bool with_dependents);",
        "char **logos_core_get_module_dependencies(const char *module_name, bool recursive);",
        "char **logos_core_get_module_dependents(const char *module_name, bool recursive);",
        "char *logos_core_get_modules_info(void);",
        "char *logos_core_process_module(const char *module_path);",
        "char *logos_core_get_token(const char *key);",
        "char *logos_core_get_module_stats(void);",
        "void logos_core_set_persistence_base_path(const char *path);",
        "void logos_core_set_module_transports(const char *module_name, const char *transport_set_json);",
        "void logos_core_set_access_policy(const char *policy_json);",
        "void logos_core_refresh_modules(void);",
    ] {
        assert!(
            header.contains(decl),
            "the header lacks `{decl}`:\n{header}"
        );
    }
}

/// Compiles a translation unit that includes the header with `compiler` in `lang`.
fn compiles(compiler: &str, lang: &str) {
    let dir = support::scratch();
    let src = dir.path().join("t.src");
    std::fs::write(
        &src,
        "#include \"logos_core.h\"\nint main(void) { AsyncCallback cb = 0; int (*start)(void) = logos_core_start; (void)cb; (void)start; return 0; }\n",
    )
    .unwrap();
    let out = Command::new(compiler)
        .args([
            "-x",
            lang,
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
            "-I",
        ])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("include"))
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("running {compiler}: {e}"));
    assert!(
        out.status.success(),
        "{compiler} -x {lang} rejects the header:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn header_compiles_as_c() {
    compiles("cc", "c");
}

#[test]
fn header_compiles_as_cpp() {
    if !support::have("c++") {
        eprintln!("skipped: no c++ compiler on PATH");
        return;
    }
    compiles("c++", "c++");
}
