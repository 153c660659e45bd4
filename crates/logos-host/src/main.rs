//! `logos_host`: runs one module library as a module process.
//!
//! The core starts `logos_host --module <path> --name <name> --module-version <version>` for a
//! module whose `main` is a shared library (docs/architecture.md, "Module process contract"
//! §1). `logos_host --remote CREDENTIAL path/to/libmodule.so` runs the same library as a
//! remote module of the core the credential names (docs/remote-modules.md): the host only
//! checks the library is the credential's module and tells the library's runtime where the
//! credential and the module's `metadata.json` are (`LOGOS_REMOTE`, `LOGOS_METADATA`). This
//! file owns the command line and the exit code; `load.rs` owns the library checks. The host
//! never speaks the protocol itself: the library's `run` does, on the descriptors the core
//! passed or over the link it opens.
//!
//! Exit codes: the module's own code once it runs (0 after a clean stop); 2 for bad
//! arguments; 3 when the library is refused (cannot be loaded, no entry point, another ABI
//! version or protocol major, another name or version than the metadata's).

mod load;

use clap::Parser;
use std::path::PathBuf;

/// Exit code when the module library is refused before it runs.
const EXIT_REFUSED: i32 = 3;
/// Exit code for unusable arguments (clap uses the same).
const EXIT_USAGE: i32 = 2;

/// Loads one logos module library, checks its C ABI and name, and runs it: for the core that
/// started it, or with `--remote`, as a remote module of a core on another machine.
#[derive(Debug, Parser)]
#[command(name = "logos_host", version)]
struct Args {
    /// Path of the module's shared library (the `main` of its metadata.json).
    #[arg(long, value_name = "PATH")]
    module: Option<PathBuf>,
    /// The module's name from its metadata.json; the library must embed the same. With
    /// `--remote`, defaults to the credential's module.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The module's version from its metadata.json; when given, the library must embed the
    /// same (its Cargo.toml version, unless `#[module(version)]` says otherwise).
    #[arg(long, value_name = "VERSION")]
    module_version: Option<String>,
    /// Serve as a remote module of the core this credential file (from `logoscore remote
    /// grant`) names: connect over TLS 1.3, reconnect after a lost link. The module's
    /// metadata.json beside the library, if there is one, is sent to the core.
    #[arg(long, value_name = "FILE")]
    remote: Option<PathBuf>,
    /// The module library (the same as --module).
    #[arg(value_name = "LIBRARY", conflicts_with = "module")]
    library: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    std::process::exit(run(&args));
}

fn run(args: &Args) -> i32 {
    let Some(library) = args.module.as_ref().or(args.library.as_ref()) else {
        eprintln!("logos_host: name the module library: --module PATH, or LIBRARY");
        return EXIT_USAGE;
    };
    let name = match (&args.name, &args.remote) {
        (Some(n), _) => n.clone(),
        (None, Some(credential)) => match credential_module(credential) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("logos_host: {e}");
                return EXIT_USAGE;
            }
        },
        (None, None) => {
            eprintln!("logos_host: --name is required (the module's name from its metadata.json)");
            return EXIT_USAGE;
        }
    };
    if name.is_empty() {
        eprintln!("logos_host: --name must not be empty");
        return EXIT_USAGE;
    }
    if let Some(credential) = &args.remote {
        let credential = std::path::absolute(credential).unwrap_or_else(|_| credential.clone());
        let metadata = library.parent().map(|d| d.join("metadata.json"));
        // SAFETY: nothing else runs yet: this is the host's only thread, before the library
        // is loaded, so no one reads the environment concurrently.
        unsafe {
            std::env::set_var("LOGOS_REMOTE", &credential);
            if let Some(m) = metadata.filter(|m| m.is_file())
                && std::env::var_os("LOGOS_METADATA").is_none()
            {
                std::env::set_var("LOGOS_METADATA", m);
            }
        }
    }
    match load::Module::open(library, &name, args.module_version.as_deref()) {
        Ok(module) => module.run(),
        Err(e) => {
            eprintln!("logos_host: {e}");
            EXIT_REFUSED
        }
    }
}

/// The `module` field of a credential file (the module library must be that module).
fn credential_module(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the credential file {}: {e}", path.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not a credential file ({e}); use the file `logoscore remote grant` wrote",
            path.display()
        )
    })?;
    doc.get("module")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("{} names no module", path.display()))
}
