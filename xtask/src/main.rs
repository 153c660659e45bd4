//! Developer tasks for the workspace (`cargo xtask <task>`).
//!
//! `stage` builds the workspace and lays every module under `modules/` out the way the core
//! discovers them (`<dir>/<name>/metadata.json` beside the built library), because cargo alone
//! cannot put a cdylib next to its metadata; a module whose `main` is already in its source dir
//! (one written in another language, e.g. `modules/pyecho`) is copied verbatim. `run` stages,
//! then runs `logoscore run` on that directory with the example modules loaded ([`EXAMPLES`]);
//! `--all` loads the test modules (probe, relay, hostile) too. Everything staged stays known either way,
//! so `logoscore load probe` works later. Never used by the core at run time.

use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The example modules `cargo xtask run` loads; the other staged modules (the test modules
/// probe and relay) only with `--all`.
const EXAMPLES: [&str; 5] = ["calc", "chat", "kv", "greeter", "pyecho"];

const USAGE: &str = "\
usage: cargo xtask stage [--release]          build and stage every module under modules/
       cargo xtask run [--release] [--all] [ARGS…]
                                              stage, then `logoscore run` with the examples
                                              (calc, chat, kv, greeter, pyecho) loaded; --all
                                              loads the test modules probe and relay too;
                                              ARGS go to `logoscore run`";

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<OsString> = args.collect();
    let release = rest.iter().any(|a| a == "--release");
    match task.to_str() {
        Some("stage") => {
            let dir = stage(release)?;
            println!("{}", dir.display());
            Ok(())
        }
        Some("run") => {
            let dir = stage(release)?;
            let bin = target_dir(release)?.join("logoscore");
            // Become logoscore (exec): Ctrl-C then reaches only the core, which stops its
            // modules before the shell prompt comes back.
            use std::os::unix::process::CommandExt;
            let err = Command::new(&bin).args(run_args(&dir, &rest)).exec();
            Err(err).with_context(|| format!("could not run {}", bin.display()))
        }
        _ => bail!("{USAGE}"),
    }
}

/// The arguments of `logoscore` for `cargo xtask run REST…`: `run` on the staged `dir`, the
/// examples loaded (or every module with `--all`), then the caller's own arguments.
fn run_args(dir: &Path, rest: &[OsString]) -> Vec<OsString> {
    let all = rest.iter().any(|a| a == "--all");
    let mut out: Vec<OsString> = vec!["run".into(), "--modules-dir".into(), dir.into()];
    if all {
        out.push("--load-all".into());
    } else {
        for name in EXAMPLES {
            out.push("--load".into());
            out.push(name.into());
        }
    }
    out.extend(
        rest.iter()
            .filter(|a| *a != "--release" && *a != "--all")
            .cloned(),
    );
    out
}

fn workspace_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask lives inside the workspace")
}

fn target_dir(release: bool) -> Result<PathBuf> {
    let base = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => workspace_root()?.join("target"),
    };
    Ok(base.join(if release { "release" } else { "debug" }))
}

/// Builds the workspace and stages every module under `modules/` into `<target>/modules`.
fn stage(release: bool) -> Result<PathBuf> {
    let root = workspace_root()?;
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.current_dir(&root).args(["build", "--workspace"]);
    if release {
        build.arg("--release");
    }
    let status = build.status().context("could not run cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    let target = target_dir(release)?;
    let out = target.join("modules");
    for entry in std::fs::read_dir(root.join("modules")).context("reading modules/")? {
        let src = entry?.path();
        let meta = src.join("metadata.json");
        if !meta.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&meta)?;
        let json: Meta = serde_json::from_str(&text)
            .with_context(|| format!("{}: cannot read name/main", meta.display()))?;
        let dest = out.join(&json.name);
        if src.join(&json.main).is_file() {
            // Nothing to build (e.g. pyecho, a Python script): the module dir is the module.
            copy_dir(&src, &dest)?;
            continue;
        }
        std::fs::create_dir_all(&dest)?;
        std::fs::copy(&meta, dest.join("metadata.json"))?;
        let built = target.join(&json.main);
        if !built.is_file() {
            bail!("{} was not built (expected {})", json.name, built.display());
        }
        let lib = dest.join(&json.main);
        let _ = std::fs::remove_file(&lib);
        std::fs::copy(&built, &lib)
            .with_context(|| format!("copying {} to {}", built.display(), lib.display()))?;
    }
    Ok(out)
}

/// Copies `src` into `dest` recursively; `fs::copy` keeps each file's permissions, so an
/// executable `main` stays executable.
fn copy_dir(src: &Path, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    for entry in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry?;
        let (from, to) = (entry.path(), dest.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_dir(&from, &to)?;
        } else {
            std::fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
    }
    Ok(())
}

/// The two metadata fields staging needs; the core validates the rest.
#[derive(serde::Deserialize)]
struct Meta {
    name: String,
    main: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<&str> {
        args.iter().filter_map(|a| a.to_str()).collect()
    }

    #[test]
    fn run_loads_only_the_examples_unless_all() {
        let dir = Path::new("/t/modules");
        let args = run_args(dir, &[]);
        assert_eq!(
            strings(&args),
            [
                "run",
                "--modules-dir",
                "/t/modules",
                "--load",
                "calc",
                "--load",
                "chat",
                "--load",
                "kv",
                "--load",
                "greeter",
                "--load",
                "pyecho"
            ]
        );
        let args = run_args(dir, &["--all".into(), "--release".into(), "--json".into()]);
        assert_eq!(
            strings(&args),
            ["run", "--modules-dir", "/t/modules", "--load-all", "--json"]
        );
    }

    #[test]
    fn every_example_is_a_module() {
        let modules = workspace_root().unwrap().join("modules");
        for name in EXAMPLES {
            assert!(
                modules.join(name).join("metadata.json").is_file(),
                "example {name} has no modules/{name}/metadata.json"
            );
        }
    }
}
