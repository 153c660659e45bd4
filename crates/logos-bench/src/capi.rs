//! The C API row: a small C program calls `logos_core_call_plugin_method` through
//! `liblogos_core.so`, timed per call, compared with `Core::call` from Rust.
//!
//! Owns the C driver's source, compiling it with `cc` against the built library and header
//! (`crates/logos-capi`), and reading its figures. The driver runs its own core over the
//! benchmark's modules dir in its own runtime dir. When the library or a C compiler is not
//! there the row is skipped with the reason. Never links the library into this process.

use crate::report::{Figure, Row, Status, Unit};
use crate::stats::Summary;
use anyhow::{Context as _, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ID: &str = "capi";
const NAME: &str = "call through the C API (logos_core_call_plugin_method), 64 B";

/// The C driver: `driver MODULES_DIR MODULE N` prints `median_ns p99_ns` of N calls of
/// MODULE.echo with one 64-byte text argument (the C API takes JSON, so text, not bytes; the
/// Rust row sends the same text).
const DRIVER: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "logos_core.h"

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: driver MODULES_DIR MODULE N\n"); return 2; }
    const char *module = argv[2];
    int n = atoi(argv[3]);
    logos_core_initialize();
    if (!logos_core_set_plugins_dir(argv[1]) || !logos_core_start()) {
        fprintf(stderr, "start failed: %s\n", logos_core_last_error());
        return 1;
    }
    if (!logos_core_load_plugin(module)) {
        fprintf(stderr, "load %s failed: %s\n", module, logos_core_last_error());
        return 1;
    }
    /* One 64-byte text argument: ["ZZZ…Z"]. */
    char params[80] = "[\"";
    for (int i = 0; i < 64; i++) strcat(params, "Z");
    strcat(params, "\"]");
    long long *s = malloc(sizeof(long long) * (n > 0 ? n : 1));
    int warm = n / 10 < 10 ? 10 : (n / 10 > 2000 ? 2000 : n / 10);
    for (int i = 0; i < warm + n; i++) {
        long long t = now_ns();
        char *r = logos_core_call_plugin_method(module, "echo", params, 10000);
        long long d = now_ns() - t;
        if (r == NULL) { fprintf(stderr, "call %d failed: %s\n", i, logos_core_last_error()); return 1; }
        logos_core_free_string(r);
        if (i >= warm) s[i - warm] = d;
    }
    qsort(s, n, sizeof *s, cmp);
    printf("%lld %lld\n", s[n / 2], s[(n - 1) * 99 / 100]);
    logos_core_cleanup();
    return 0;
}
"#;

/// The workspace's `crates/logos-capi/include` and the dir holding `liblogos_core.so`
/// (this executable's, i.e. `target/<profile>`).
fn locate() -> Result<(PathBuf, PathBuf)> {
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../logos-capi/include");
    if !include.join("logos_core.h").is_file() {
        bail!("crates/logos-capi/include/logos_core.h not found");
    }
    let exe = std::env::current_exe().context("finding this executable")?;
    let lib_dir = exe
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent dir", exe.display()))?
        .to_path_buf();
    if !lib_dir.join("liblogos_core.so").is_file() {
        bail!(
            "liblogos_core not built: {} is missing (cargo build --release -p logos-capi)",
            lib_dir.join("liblogos_core.so").display()
        );
    }
    Ok((include, lib_dir))
}

fn compile(include: &Path, lib_dir: &Path, dir: &Path) -> Result<PathBuf> {
    let src = dir.join("driver.c");
    let bin = dir.join("driver");
    std::fs::write(&src, DRIVER)?;
    let out = Command::new("cc")
        .arg("-O2")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .arg("-I")
        .arg(include)
        .arg("-L")
        .arg(lib_dir)
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-llogos_core")
        .stdin(Stdio::null())
        .output()
        .context("running cc")?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let first: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("error"))
            .take(2)
            .collect();
        bail!("the C driver did not compile: {}", first.join(" / "));
    }
    Ok(bin)
}

fn measure(modules: &Path, calls: u64) -> Result<(f64, f64)> {
    let (include, lib_dir) = locate()?;
    let dir = tempfile::Builder::new()
        .prefix("logos-bench-capi-")
        .tempdir()?;
    let bin = compile(&include, &lib_dir, dir.path())?;
    let runtime = dir.path().join("run");
    std::fs::create_dir_all(&runtime)?;
    let out = Command::new(&bin)
        .arg(modules)
        .arg("bmb")
        .arg(calls.to_string())
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("LOGOS_RUNTIME_DIR", runtime.join("logos"))
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .stdin(Stdio::null())
        .output()
        .context("running the C driver")?;
    if !out.status.success() {
        bail!(
            "the C driver failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut nums = text.split_whitespace().map(str::parse::<f64>);
    match (nums.next(), nums.next()) {
        (Some(Ok(median)), Some(Ok(p99))) => Ok((median, p99)),
        _ => bail!("the C driver printed {text:?}"),
    }
}

/// The C API row compared with `rust` (the `Core::call` figures of this run).
pub fn row(modules: &Path, calls: u64, rust: &Summary) -> Row {
    let (median, p99) = match measure(modules, calls) {
        Ok(m) => m,
        Err(e) => return Row::skipped(ID, NAME, format!("{e:#}")),
    };
    let mut row = Row::new(ID, NAME);
    row.ours = Some(Figure {
        value: median,
        p99: Some(p99),
        unit: Unit::Nanos,
    });
    row.baseline = Some(Figure::latency(rust));
    row.baseline_name = Some("Rust API".into());
    let ratio = median / rust.median;
    row.ratio = Some(ratio);
    row.target = Some("≤ 1.5× the Rust API".into());
    row.status = Status::check(ratio <= 1.5);
    row
}
