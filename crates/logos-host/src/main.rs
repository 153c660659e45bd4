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
//! `logos_host --spare` is a host the core starts before it knows the module: it waits for
//! the core's order, confines itself by it and then loads the library (`spare.rs`).
//!
//! Exit codes: the module's own code once it runs (0 after a clean stop); 2 for bad
//! arguments; 3 when the library is refused (cannot be loaded, no entry point, another ABI
//! version or protocol major, another name or version than the metadata's); 4 when a spare
//! host's order cannot be read or applied (0 when the core let it go without one).

// The entry point is `entry::main`, not std's (see there). Unit tests build with the test
// harness's `main` instead, so the host's own work is unused in that build.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

mod entry;
mod load;
mod spare;

use std::ffi::OsString;
use std::path::PathBuf;

/// Exit code when the module library is refused before it runs.
const EXIT_REFUSED: i32 = 3;
/// Exit code for unusable arguments (the usual code of command-line parsers).
const EXIT_USAGE: i32 = 2;

const HELP: &str = "\
Loads one logos module library, checks its C ABI and name, and runs it: for the core that
started it, or with --remote, as a remote module of a core on another machine.

Usage: logos_host [OPTIONS] [LIBRARY]

Arguments:
  [LIBRARY]  The module library (the same as --module)

Options:
      --module <PATH>             Path of the module's shared library (the `main` of its
                                  metadata.json)
      --name <NAME>               The module's name from its metadata.json; the library must
                                  embed the same. With --remote, defaults to the credential's
                                  module
      --module-version <VERSION>  The module's version from its metadata.json; when given, the
                                  library must embed the same (its Cargo.toml version, unless
                                  #[module(version)] says otherwise)
      --spare                     Wait for the core's order on fd 4 (the module, its
                                  environment and confinement), apply it, then load the
                                  module: the core starts such spares ahead of need
      --remote <FILE>             Serve as a remote module of the core this credential file
                                  (from `logoscore remote grant`) names: connect over TLS 1.3,
                                  reconnect after a lost link. The module's metadata.json
                                  beside the library, if there is one, is sent to the core
  -h, --help                      Print help
  -V, --version                   Print version
";

/// The command line. Parsed with `lexopt` rather than `clap`: this binary is the first thing
/// of every library module's process, so its start-up code and resident pages are paid per
/// module (issue 17: with `clap` the host's own code was about 0.6 MiB of each module's RSS).
#[derive(Debug, Default, PartialEq)]
struct Args {
    module: Option<PathBuf>,
    name: Option<String>,
    module_version: Option<String>,
    remote: Option<PathBuf>,
    library: Option<PathBuf>,
    spare: bool,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Run(Args),
    Help,
    Version,
}

impl Args {
    /// Parses the arguments after the program name; an error names the argument at fault.
    fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
        use lexopt::prelude::*;
        let mut parser = lexopt::Parser::from_args(args);
        let mut out = Args::default();
        let value = |p: &mut lexopt::Parser| p.value().map_err(|e| e.to_string());
        let text = |p: &mut lexopt::Parser, what: &str| {
            value(p)?
                .into_string()
                .map_err(|v| format!("{what} {v:?} is not valid UTF-8"))
        };
        while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
            match arg {
                Long("module") => set(&mut out.module, "--module", value(&mut parser)?.into())?,
                Long("name") => set(&mut out.name, "--name", text(&mut parser, "--name")?)?,
                Long("module-version") => set(
                    &mut out.module_version,
                    "--module-version",
                    text(&mut parser, "--module-version")?,
                )?,
                Long("remote") => set(&mut out.remote, "--remote", value(&mut parser)?.into())?,
                Long("spare") => out.spare = true,
                Value(path) => set(&mut out.library, "LIBRARY", path.into())?,
                Short('h') | Long("help") => return Ok(Command::Help),
                Short('V') | Long("version") => return Ok(Command::Version),
                _ => return Err(arg.unexpected().to_string()),
            }
        }
        if out.module.is_some() && out.library.is_some() {
            return Err("--module and LIBRARY name the same thing: give one of them".to_owned());
        }
        if out.spare
            && out
                != (Args {
                    spare: true,
                    ..Args::default()
                })
        {
            return Err("--spare takes no other option: its order names the module".to_owned());
        }
        Ok(Command::Run(out))
    }
}

/// Stores an option given once; a second time is an error rather than a silent override.
fn set<T>(slot: &mut Option<T>, what: &str, value: T) -> Result<(), String> {
    if slot.replace(value).is_some() {
        return Err(format!("{what} is given more than once"));
    }
    Ok(())
}

/// The host's work once the process is set up (`entry.rs` owns the entry point).
fn host_main() -> ! {
    let code = match Args::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(args)) => run(&args),
        Ok(Command::Help) => {
            print!("{HELP}");
            0
        }
        Ok(Command::Version) => {
            println!("logos_host {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Err(e) => {
            eprintln!("logos_host: {e}\n\nFor more information, try '--help'.");
            EXIT_USAGE
        }
    };
    std::process::exit(code);
}

fn run(args: &Args) -> i32 {
    if args.spare {
        return run_spare();
    }
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
    load_and_run(library, &name, args.module_version.as_deref())
}

/// A spare host: waits for its order, confines itself by it, then runs the module it names.
fn run_spare() -> i32 {
    spare::prepare();
    match spare::say_ready() {
        Ok(true) => {}
        // The core let this spare go before it was ready.
        Ok(false) => return 0,
        Err(e) => {
            eprintln!("logos_host: spare host: {e}");
            return spare::EXIT_ORDER;
        }
    }
    match spare::receive_and_apply() {
        Ok(Some(order)) => load_and_run(&order.module, &order.name, order.version.as_deref()),
        // The core let this spare go unused.
        Ok(None) => 0,
        Err(e) => {
            eprintln!("logos_host: spare host: {e}");
            spare::EXIT_ORDER
        }
    }
}

/// Checks the library and runs it.
fn load_and_run(library: &std::path::Path, name: &str, version: Option<&str>) -> i32 {
    match load::Module::open(library, name, version) {
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

#[cfg(test)]
mod tests {
    use super::{Args, Command};
    use std::ffi::OsString;
    use std::path::PathBuf;

    fn parse(args: &[&str]) -> Result<Command, String> {
        Args::parse(args.iter().map(OsString::from))
    }

    #[test]
    fn the_core_s_command_line_and_the_remote_one_parse() {
        let core = parse(&[
            "--module",
            "/m/lib.so",
            "--name",
            "calc",
            "--module-version=1.2.0",
        ]);
        assert_eq!(
            core,
            Ok(Command::Run(Args {
                module: Some(PathBuf::from("/m/lib.so")),
                name: Some("calc".into()),
                module_version: Some("1.2.0".into()),
                ..Args::default()
            }))
        );
        let remote = parse(&["--remote", "cred.json", "lib.so"]);
        assert_eq!(
            remote,
            Ok(Command::Run(Args {
                remote: Some(PathBuf::from("cred.json")),
                library: Some(PathBuf::from("lib.so")),
                ..Args::default()
            }))
        );
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
        assert_eq!(parse(&["-V"]), Ok(Command::Version));
    }

    #[test]
    fn bad_command_lines_name_what_is_wrong() {
        let err = |args: &[&str]| parse(args).expect_err("must be refused");
        assert!(err(&["--modul", "x"]).contains("--modul"), "unknown option");
        assert!(err(&["--name"]).contains("--name"), "missing value");
        assert!(err(&["--module", "a", "b"]).contains("--module and LIBRARY"));
        assert!(err(&["a", "b"]).contains("LIBRARY is given more than once"));
        assert!(err(&["--name", "a", "--name", "b"]).contains("--name is given more than once"));
        assert!(err(&["--spare", "--name", "a"]).contains("--spare takes no other option"));
        assert_eq!(
            parse(&["--spare"]),
            Ok(Command::Run(Args {
                spare: true,
                ..Args::default()
            }))
        );
    }
}
