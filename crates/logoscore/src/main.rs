//! `logoscore`: run a logos core in the foreground (`run`) and steer a running one from a shell
//! (`load`, `unload`, `reload`, `list`, `info`, `call`, `watch`, `stats`, `stop`).
//!
//! This file owns the command line (clap derive definitions, with the help text people read),
//! the dispatch to one `cmd/<verb>.rs` per subcommand, and the single place where a failure
//! becomes an exit code ([`exit_code`]). It never talks to the core itself (`client.rs`),
//! never formats results (`output.rs`) and never reads the config file (`config.rs`).
//!
//! Exit codes: 0 ok, 1 usage or local error (bad arguments, bad config file, I/O), 2 cannot
//! reach the core, 3 module error, 4 method error. clap's own usage exit (2) is remapped to 1 so
//! a script can tell "you typed it wrong" from "no core is running".

mod client;
mod cmd;
mod config;
mod error;
mod output;

use crate::error::Error;
use clap::{Args, Parser, Subcommand};
use logos_wire::ErrorCode;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Exit code: success.
const EXIT_OK: u8 = 0;
/// Exit code: bad usage, bad config file, local I/O failure.
const EXIT_USAGE: u8 = 1;
/// Exit code: no core answers at the control endpoint.
const EXIT_UNREACHABLE: u8 = 2;
/// Exit code: the module cannot serve (unknown, invalid metadata, not loaded, down, not
/// allowed).
const EXIT_MODULE: u8 = 3;
/// Exit code: the method failed (its own error, bad arguments, no such method, deadline).
const EXIT_METHOD: u8 = 4;

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 usage or local error, 2 cannot reach the core, 3 module error \
(unknown, invalid metadata, not loaded, unavailable, unauthorized), 4 method error (the \
method failed, invalid arguments, unknown method, timeout).

Start a core with `logoscore run -m DIR`; in another terminal try `logoscore list`.";

/// Run, inspect and steer logos modules.
///
/// `logoscore run` starts a core in the foreground; every other command talks to a running
/// core through its control endpoint (`<runtime dir>/core.sock`), authenticated with the
/// client token the core writes next to it.
#[derive(Debug, Parser)]
#[command(name = "logoscore", version, after_help = AFTER_HELP, max_term_width = 100)]
struct Cli {
    /// Print JSON: one document per command (NDJSON, one event per line, for `watch`).
    #[arg(long, global = true)]
    json: bool,

    /// Runtime dir of the core (sockets and client token).
    /// [default: $LOGOS_RUNTIME_DIR, else $XDG_RUNTIME_DIR/logos, else /tmp/logos-<uid>]
    #[arg(long, global = true, value_name = "DIR")]
    runtime_dir: Option<PathBuf>,

    /// How long to wait for the core's answer, e.g. `30s`, `500ms`, `2m`.
    /// [default: 60s for calls, 5m for load/unload/reload/stop]
    #[arg(long, global = true, value_name = "DURATION", value_parser = config::parse_duration)]
    timeout: Option<Duration>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a core in the foreground and load modules; Ctrl-C (or `logoscore stop`) stops it.
    Run(RunArgs),
    /// Load modules (their dependencies first); returns when all are ready.
    Load {
        /// Modules to load.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Unload a module.
    Unload {
        /// Module to unload.
        name: String,
        /// Unload the loaded modules that depend on it first (leaves first).
        #[arg(long)]
        cascade: bool,
    },
    /// Stop and start a module again, re-reading its metadata (clears a `failed` state).
    Reload {
        /// Module to reload.
        name: String,
    },
    /// List modules: name, version, state, pid, uptime, restarts.
    List {
        /// Only loaded modules.
        #[arg(long)]
        loaded: bool,
    },
    /// Everything about one module: metadata, dependencies, dependents, methods, events.
    Info {
        /// The module.
        name: String,
    },
    /// Call a method and print its result.
    ///
    /// Each ARG is a JSON value: `2`, `"text"`, `[1,2]`, `{"k":"v"}`, `true`, `null`. A word
    /// that is not JSON and cannot be mistaken for JSON (`Ada`, `hello world`) is passed as
    /// text; anything that looks like a number, bool, null, list, map or quoted string must be
    /// valid JSON (quote it to send text: '"0x10"'). `@FILE` reads one JSON value from FILE
    /// (`@-` from stdin); to send text starting with `@`, quote it: '"@ada"'. Bytes are
    /// `{"$bytes":"<hex>"}`.
    #[command(allow_negative_numbers = true)]
    Call {
        /// Target module (or `core` for the core's own methods).
        module: String,
        /// Method name.
        method: String,
        /// Arguments, in order.
        #[arg(value_name = "ARG")]
        args: Vec<String>,
    },
    /// Print events as they happen until Ctrl-C (all modules and the core's lifecycle events
    /// when no MODULE is given).
    Watch {
        /// Only events of this module (`core` for lifecycle events).
        module: Option<String>,
        /// Only this event.
        event: Option<String>,
    },
    /// Cost and service of the core and each module: RSS, CPU time, restarts, calls served,
    /// errors and call latency (p50, p99), next to their state.
    Stats,
    /// Stop the core: every module in reverse dependency order, then the core itself.
    Stop,
    /// Print a shell completion script, e.g. `logoscore completions bash > /etc/bash_completion.d/logoscore`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) generated from this command line, or write one page per
    /// command into a directory.
    Man {
        /// Write logoscore.1 and logoscore-<command>.1 here instead of printing logoscore.1.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// Options of `logoscore run`. Flags override the config file; the config file overrides
/// environment variables; those override the built-in defaults.
#[derive(Debug, Clone, Args)]
pub(crate) struct RunArgs {
    /// Config file (TOML). See README's `logoscore` section for its keys.
    #[arg(short = 'c', long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Directory holding `<name>/metadata.json` module dirs (repeatable; replaces the config
    /// file's `modules_dirs`).
    #[arg(short = 'm', long = "modules-dir", value_name = "DIR")]
    modules_dirs: Vec<PathBuf>,

    /// Load this module at start (repeatable; dependencies are loaded first). Replaces the
    /// config file's `load`.
    #[arg(short = 'l', long = "load", value_name = "NAME")]
    load: Vec<String>,

    /// Load every known module at start. A module that fails to load is reported and the
    /// others keep running.
    #[arg(long)]
    load_all: bool,

    /// Parent of each module's data dir.
    /// [default: $XDG_DATA_HOME/logos, else ~/.local/share/logos]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Log filter of the core, e.g. `info`, `debug`, `logos_core=debug,info`.
    /// [default: config `log_level`, else $RUST_LOG, else info]
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,

    /// Log format on stderr.
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<config::LogFormat>,

    /// The `logos_host` binary that runs library modules.
    /// [default: $LOGOS_HOST, else beside this executable, else on PATH]
    #[arg(long, value_name = "PATH")]
    host: Option<PathBuf>,

    /// Longest time Ctrl-C / SIGTERM / `stop` may take to stop every module [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    shutdown_timeout: Option<Duration>,
}

/// What every command gets from the global flags.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// `--json`.
    pub json: bool,
    /// `--runtime-dir`, as given.
    pub runtime_dir: Option<PathBuf>,
    /// `--timeout`, as given.
    pub timeout: Option<Duration>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    let json = cli.json;
    match dispatch(cli) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            let code = exit_code(&e);
            output::report_error(e, json, code);
            ExitCode::from(code)
        }
    }
}

/// Runs the chosen subcommand.
fn dispatch(cli: Cli) -> Result<(), Error> {
    let ctx = Ctx {
        json: cli.json,
        runtime_dir: cli.runtime_dir,
        timeout: cli.timeout,
    };
    match cli.command {
        Command::Run(args) => cmd::run::run(&ctx, args),
        Command::Load { names } => cmd::block_on(cmd::load::run(&ctx, names)),
        Command::Unload { name, cascade } => cmd::block_on(cmd::unload::run(&ctx, name, cascade)),
        Command::Reload { name } => cmd::block_on(cmd::reload::run(&ctx, name)),
        Command::List { loaded } => cmd::block_on(cmd::list::run(&ctx, loaded)),
        Command::Info { name } => cmd::block_on(cmd::info::run(&ctx, name)),
        Command::Call {
            module,
            method,
            args,
        } => cmd::block_on(cmd::call::run(&ctx, module, method, args)),
        Command::Watch { module, event } => cmd::block_on(cmd::watch::run(&ctx, module, event)),
        Command::Stats => cmd::block_on(cmd::stats::run(&ctx)),
        Command::Stop => cmd::block_on(cmd::stop::run(&ctx)),
        Command::Completions { shell } => cmd::completions::run(shell),
        Command::Man { out_dir } => cmd::man::run(out_dir),
    }
}

/// The one mapping from a failure to the process exit code.
fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Usage(_) | Error::Config(_) | Error::Io { .. } | Error::Start(_) => EXIT_USAGE,
        Error::ShutdownTimeout { .. } => EXIT_USAGE,
        Error::NoCore { .. } | Error::Unreachable { .. } | Error::Lost { .. } => EXIT_UNREACHABLE,
        Error::Remote { code, .. } => match *code {
            ErrorCode::UnknownModule
            | ErrorCode::InvalidMetadata
            | ErrorCode::NotLoaded
            | ErrorCode::Unavailable
            | ErrorCode::Unauthorized => EXIT_MODULE,
            ErrorCode::MethodFailed
            | ErrorCode::InvalidArgs
            | ErrorCode::UnknownMethod
            | ErrorCode::Timeout
            | ErrorCode::Cancelled
            | ErrorCode::Limit => EXIT_METHOD,
            // The core broke the protocol: as far as this client knows, it cannot be reached.
            ErrorCode::ProtocolError => EXIT_UNREACHABLE,
            // A code added after this build: the call failed, so say "method error".
            _ => EXIT_METHOD,
        },
    }
}

/// clap's view of the command line, for completions and man pages.
pub(crate) fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn usage_errors_do_not_collide_with_unreachable() {
        assert_ne!(EXIT_USAGE, EXIT_UNREACHABLE);
        assert_eq!(exit_code(&Error::Usage("x".into())), EXIT_USAGE);
    }

    #[test]
    fn wire_codes_map_to_the_documented_exit_codes() {
        let remote = |code| Error::Remote {
            code,
            message: String::new(),
        };
        for code in [
            ErrorCode::UnknownModule,
            ErrorCode::InvalidMetadata,
            ErrorCode::NotLoaded,
            ErrorCode::Unavailable,
            ErrorCode::Unauthorized,
        ] {
            assert_eq!(exit_code(&remote(code)), EXIT_MODULE, "{code:?}");
        }
        for code in [
            ErrorCode::MethodFailed,
            ErrorCode::InvalidArgs,
            ErrorCode::UnknownMethod,
            ErrorCode::Timeout,
            ErrorCode::Cancelled,
        ] {
            assert_eq!(exit_code(&remote(code)), EXIT_METHOD, "{code:?}");
        }
    }

    #[test]
    fn negative_numbers_are_call_arguments() {
        let cli = Cli::try_parse_from(["logoscore", "call", "calc", "add", "-5", "3", "--json"]);
        match cli.map(|c| (c.json, c.command)) {
            Ok((true, Command::Call { args, .. })) => assert_eq!(args, ["-5", "3"]),
            other => panic!("unexpected parse: {other:?}"),
        }
    }
}
