//! `logos_host`: runs one module library as a module process.
//!
//! The core starts `logos_host --module <path> --name <name> --module-version <version>` for a
//! module whose `main` is a shared library (docs/architecture.md, "Module process contract"
//! §1). This file owns the command line and the exit code; `load.rs` owns the library checks.
//! The host never speaks the protocol itself: the library's `run` does, on the descriptors
//! the core passed.
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

/// Loads one logos module library, checks its C ABI and name, and runs it.
#[derive(Debug, Parser)]
#[command(name = "logos_host", version)]
struct Args {
    /// Path of the module's shared library (the `main` of its metadata.json).
    #[arg(long, value_name = "PATH")]
    module: PathBuf,
    /// The module's name from its metadata.json; the library must embed the same.
    #[arg(long, value_name = "NAME")]
    name: String,
    /// The module's version from its metadata.json; when given, the library must embed the
    /// same (its Cargo.toml version, unless `#[module(version)]` says otherwise).
    #[arg(long, value_name = "VERSION")]
    module_version: Option<String>,
}

fn main() {
    let args = Args::parse();
    std::process::exit(run(&args));
}

fn run(args: &Args) -> i32 {
    if args.name.is_empty() {
        eprintln!("logos_host: --name must not be empty");
        return EXIT_USAGE;
    }
    match load::Module::open(&args.module, &args.name, args.module_version.as_deref()) {
        Ok(module) => module.run(),
        Err(e) => {
            eprintln!("logos_host: {e}");
            EXIT_REFUSED
        }
    }
}
