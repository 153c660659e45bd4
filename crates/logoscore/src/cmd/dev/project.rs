//! The module project `logoscore dev` works on: a dir with `metadata.json`, and either a
//! `Cargo.toml` (built with cargo into a cdylib) or nothing to build (a Python script or any
//! other executable the metadata's `main` names).
//!
//! Owns telling "this is not a module project" and "this metadata is bad" apart, with the
//! file and field, and asking cargo (`cargo metadata`) where the project builds to. Never
//! builds, never writes a file.

use crate::error::Error;
use logos_core::{Location, Manifest, ModuleName};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// How the project becomes something the core can run.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A Cargo package with a cdylib library.
    Cargo(CargoPackage),
    /// Nothing to build: the project's files are the module (Python and other scripts).
    Files,
}

/// What cargo says about the project.
#[derive(Debug, Clone)]
pub(crate) struct CargoPackage {
    /// The cargo to run (`$CARGO`, else `cargo` on `PATH`).
    pub cargo: PathBuf,
    /// `Cargo.toml`, absolute.
    pub manifest: PathBuf,
    /// Where it builds to (honours `CARGO_TARGET_DIR` and `.cargo/config.toml`).
    pub target_dir: PathBuf,
}

/// A module project.
#[derive(Debug, Clone)]
pub(crate) struct Project {
    /// The project dir, absolute.
    pub dir: PathBuf,
    /// The module's name, from its metadata.
    pub name: String,
    /// The metadata's `main`: the file the core runs, relative to the module dir.
    pub main: PathBuf,
    pub kind: Kind,
}

impl Project {
    /// Reads the project in `dir`: its metadata's name and main, and for a Cargo project
    /// where cargo builds it.
    ///
    /// # Errors
    /// [`Error::Usage`] when `dir` is not a module project or its metadata cannot name the
    /// module; [`Error::Usage`] when cargo cannot be run or refuses the `Cargo.toml`.
    pub async fn open(dir: &Path) -> Result<Project, Error> {
        let dir = std::path::absolute(dir)
            .map_err(|e| Error::io(format!("cannot resolve {}", dir.display()), e))?;
        if !dir.is_dir() {
            return Err(Error::Usage(format!(
                "{} is not a directory; give the dir of a module project (one made by `logoscore new NAME`)",
                dir.display()
            )));
        }
        let metadata = dir.join("metadata.json");
        if !metadata.is_file() {
            return Err(Error::Usage(format!(
                "{} is not a module project: it has no metadata.json (create a project with `logoscore new NAME`, or give its dir)",
                dir.display()
            )));
        }
        let text = read_metadata(&dir)?;
        let (name, main) = name_and_main(&metadata, &text)?;
        let kind = if dir.join("Cargo.toml").is_file() {
            Kind::Cargo(cargo_package(&dir).await?)
        } else {
            Kind::Files
        };
        Ok(Project {
            dir,
            name,
            main,
            kind,
        })
    }

    /// The project's `metadata.json`.
    pub fn metadata_path(&self) -> PathBuf {
        self.dir.join("metadata.json")
    }
}

/// The text of `<dir>/metadata.json`.
pub(crate) fn read_metadata(dir: &Path) -> Result<String, Error> {
    let path = dir.join("metadata.json");
    std::fs::read_to_string(&path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
}

/// The module's name (checked like the core checks it) and `main` (a relative path inside
/// the module dir; `lib<name>.so` when left out, as the core does).
fn name_and_main(path: &Path, text: &str) -> Result<(String, PathBuf), Error> {
    let bad = |what: String| Error::Usage(format!("{}: {what}", path.display()));
    let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        bad(format!(
            "invalid JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })?;
    let Some(name) = doc.get("name").and_then(serde_json::Value::as_str) else {
        return Err(bad(
            "field \"name\": missing or not text; the module's name is required".into(),
        ));
    };
    let checked = ModuleName::new(name).map_err(|e| bad(format!("field \"name\": {e}")))?;
    if checked.is_reserved() {
        return Err(bad(format!(
            "field \"name\": {name:?} is reserved for a built-in module; choose another name"
        )));
    }
    let main = match doc.get("main") {
        None => PathBuf::from(format!("lib{name}.so")),
        Some(serde_json::Value::String(m)) => {
            let p = PathBuf::from(m);
            let inside = p
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if m.is_empty() || !inside {
                return Err(bad(format!(
                    "field \"main\": {m:?} must be a path inside the module dir (like \"lib{name}.so\" or \"module.py\")"
                )));
            }
            p
        }
        Some(_) => return Err(bad("field \"main\": must be text".into())),
    };
    Ok((name.to_owned(), main))
}

/// Checks the staged metadata as the core will, naming the project's file in each fault.
pub(crate) fn check_staged(project: &Project, staged: &Path, text: &str) -> Result<(), String> {
    Manifest::from_json(staged, text).map(|_| ()).map_err(|e| {
        let shown = project.metadata_path();
        let lines: Vec<String> = e
            .faults()
            .iter()
            .map(|f| match f.location() {
                Location::Field(p) => format!(
                    "{}: field {:?}: {}",
                    shown.display(),
                    p.strip_prefix('/').unwrap_or(p),
                    f.message()
                ),
                Location::Syntax { line, column } => {
                    format!("{}:{line}:{column}: {}", shown.display(), f.message())
                }
                _ => format!("{}: {}", shown.display(), f.message()),
            })
            .collect();
        lines.join("\n")
    })
}

/// `$CARGO`, else `cargo`.
fn cargo_program() -> PathBuf {
    std::env::var_os("CARGO")
        .filter(|c| !c.is_empty())
        .map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// The error for a cargo that cannot be started.
pub(crate) fn no_cargo(cargo: &Path, e: &std::io::Error) -> Error {
    Error::Usage(format!(
        "cannot run {} ({e}): this is a Rust project (it has a Cargo.toml) and building it needs cargo; install Rust (https://rustup.rs) or set $CARGO to cargo's path",
        cargo.display()
    ))
}

/// Asks `cargo metadata` for the package in `dir`: where it builds to, and whether it has a
/// cdylib library (what `logos_host` loads).
async fn cargo_package(dir: &Path) -> Result<CargoPackage, Error> {
    let cargo = cargo_program();
    let manifest = dir.join("Cargo.toml");
    let out = tokio::process::Command::new(&cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(&manifest)
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| no_cargo(&cargo, &e))?;
    if !out.status.success() {
        return Err(Error::Usage(format!(
            "cargo cannot read {}:\n{}",
            manifest.display(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        )));
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        Error::Usage(format!(
            "`cargo metadata` printed something that is not its JSON document ({e})"
        ))
    })?;
    let target_dir = doc
        .get("target_directory")
        .and_then(serde_json::Value::as_str)
        .map(PathBuf::from)
        .ok_or_else(|| Error::Usage("`cargo metadata` names no target_directory".into()))?;
    let canonical = std::fs::canonicalize(&manifest).unwrap_or_else(|_| manifest.clone());
    let package = doc
        .get("packages")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| {
            p.get("manifest_path")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|m| {
                    std::fs::canonicalize(m).unwrap_or_else(|_| PathBuf::from(m)) == canonical
                })
        })
        .ok_or_else(|| {
            Error::Usage(format!(
                "{} is a workspace without a package of its own; run `logoscore dev` in the module's package dir",
                manifest.display()
            ))
        })?;
    let has_cdylib = package
        .get("targets")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .any(|t| {
            t.get("crate_types")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        });
    if !has_cdylib {
        return Err(Error::Usage(format!(
            "{} builds no cdylib, which is what logos_host loads; add `[lib] crate-type = [\"cdylib\", \"rlib\"]`",
            manifest.display()
        )));
    }
    Ok(CargoPackage {
        cargo,
        manifest,
        target_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_mains_are_checked() {
        let p = Path::new("m/metadata.json");
        let (n, m) = name_and_main(p, r#"{"name":"hello","main":"libhello.so"}"#).unwrap();
        assert_eq!(
            (n.as_str(), m.as_path()),
            ("hello", Path::new("libhello.so"))
        );
        let (_, m) = name_and_main(p, r#"{"name":"hello"}"#).unwrap();
        assert_eq!(m, Path::new("libhello.so"));
        for (bad, why) in [
            ("{", "invalid JSON"),
            (r#"{"version":"1.0.0"}"#, "\"name\""),
            (r#"{"name":"../x"}"#, "\"name\""),
            (r#"{"name":"core"}"#, "reserved"),
            (
                r#"{"name":"x","main":"../../etc/passwd"}"#,
                "inside the module dir",
            ),
            (r#"{"name":"x","main":"/bin/sh"}"#, "inside the module dir"),
            (r#"{"name":"x","main":3}"#, "must be text"),
        ] {
            let e = name_and_main(p, bad).unwrap_err().to_string();
            assert!(
                e.contains(why) && e.contains("m/metadata.json"),
                "{bad}: {e}"
            );
        }
    }
}
