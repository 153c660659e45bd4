//! `logoscore`: run a logos core in the foreground (`run`) and steer a running one from a shell
//! (`load`, `unload`, `reload`, `list`, `info`, `call`, `watch`, `stats`, `stop`), under our
//! names and under the reference `logoscore`'s (`-D`/`daemon`, `status`, `load-module`,
//! `unload-module`, `reload-module`, `list-modules`, `module-info`, `module M method F`,
//! `issue-token`, `list-tokens`, `revoke-token`; see docs/cli.md).
//!
//! This file owns the command line (clap derive definitions, with the help text people read;
//! the reference's `-D` and trailing `--json` on `call`), the dispatch to one `cmd/<verb>.rs`
//! per subcommand, and the single place where a failure becomes an exit code ([`exit_code`]).
//! It never talks to the core itself (`client.rs`), never formats results (`output.rs`) and
//! never reads the config file (`config.rs`).
//!
//! Exit codes: 0 ok, 1 usage or local error (bad arguments, bad config file, I/O; `status`
//! when no core runs), 2 cannot reach the core (none there, it refused our token, it went away
//! mid-command), 3 module error (and every failed load/unload/reload/info), 4 method error.
//! clap's own usage exit (2) is remapped to 1 so a script can tell "you typed it wrong" from
//! "no core is running".

mod client;
mod cmd;
mod config;
mod config_dir;
mod error;
mod notify;
mod output;
mod packages;
mod probation;
mod reference;

use crate::config_dir::ConfigDir;
use crate::error::{Error, Verb};
use clap::{Args, Parser, Subcommand};
use logos_wire::ErrorCode;
use std::ffi::OsString;
use std::io::IsTerminal as _;
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
Exit codes: 0 ok, 1 usage or local error (and `status` when no core runs), 2 cannot reach \
the core (none running, token refused, connection lost), 3 module error (unknown, invalid metadata, not loaded, \
unavailable, unauthorized; any failed load/unload/reload/info), 4 method error (the method \
failed, invalid arguments, unknown method, timeout).

The reference logoscore's names work too (docs/cli.md): -D/daemon, status, load-module, \
unload-module, reload-module, list-modules, module-info, module M method F, issue-token, \
list-tokens, revoke-token; with those, output is JSON when stdout is not a terminal.

Start a core with `logoscore run -m DIR`; in another terminal try `logoscore list`.";

/// Run, inspect and steer logos modules.
///
/// `logoscore run` starts a core in the foreground; every other command talks to a running
/// core through its control endpoint (`<runtime dir>/core.sock`), authenticated with the
/// client token the core writes next to it, or to the core a config dir names.
#[derive(Debug, Parser)]
#[command(name = "logoscore", version, after_help = AFTER_HELP, max_term_width = 100)]
struct Cli {
    /// Print JSON: one document per command (NDJSON, one event per line, for `watch`).
    #[arg(short = 'j', long, global = true)]
    json: bool,

    /// Print for people even when stdout is not a terminal (reference names print JSON then).
    #[arg(long, visible_alias = "no-json", global = true)]
    human: bool,

    /// Say more: debug logs for `run`, where the core and token were found for clients.
    #[arg(short = 'v', long, global = true)]
    verbose: bool,

    /// The reference's config dir: a core started with it writes `daemon/state.json` and
    /// `client/auto.json` there, and a client given it talks to that core only.
    /// [default: $LOGOSCORE_CONFIG_DIR, else none (the runtime dir is used)]
    #[arg(long, global = true, value_name = "DIR")]
    config_dir: Option<PathBuf>,

    /// Runtime dir of the core (sockets and client token).
    /// [default: $LOGOS_RUNTIME_DIR, else $XDG_RUNTIME_DIR/logos, else /tmp/logos-<uid>;
    /// <config dir>/run with a config dir]
    #[arg(long, global = true, value_name = "DIR")]
    runtime_dir: Option<PathBuf>,

    /// How long to wait for the core's answer, e.g. `30s`, `500ms`, `2m`.
    /// [default: 60s for calls, 5m for load/unload/reload/stop]
    #[arg(long, global = true, value_name = "DURATION", value_parser = config::parse_duration)]
    timeout: Option<Duration>,

    #[command(flatten)]
    pkg: packages::PkgArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a core in the foreground and load modules; Ctrl-C (or `logoscore stop`) stops it.
    /// `daemon` and `-D` are the reference's names for it.
    #[command(visible_alias = "daemon")]
    Run(Box<RunArgs>),
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
        /// Start the new process and make it ready before the old one stops: calls keep
        /// being answered throughout, and a new version that fails to start leaves the old
        /// one serving.
        #[arg(long)]
        hot: bool,
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
    /// Each ARG is a JSON value: `2`, `"text"`, `[1,2]`, `{"k":"v"}`, `true`, `null`; a word
    /// that cannot be mistaken for JSON (`Ada`, `hello world`, `-x`) is text. Prefixes:
    /// `json:VALUE` and `json:@FILE` (JSON), `str:TEXT` (text verbatim), `@FILE` (the file's
    /// contents as text; `@-` standard input). Anything that looks like a number, list, map or
    /// quoted string must be valid JSON (`0x10` is refused: write 16 or 'str:0x10'), and an
    /// unknown prefix (`jsn:[1]`) is refused, never sent as text. Bytes are
    /// `{"_bytes":"<base64url>"}` or `{"$bytes":"<hex>"}`. `--json`/`-j` after the arguments
    /// is the flag; after `--` everything is an argument.
    Call {
        /// Target module (or `core` for the core's own methods).
        module: String,
        /// Method name.
        method: String,
        /// Arguments, in order.
        #[arg(
            value_name = "ARG",
            allow_hyphen_values = true,
            trailing_var_arg = true
        )]
        args: Vec<String>,
    },
    /// Print events as they happen until Ctrl-C (all modules and the core's lifecycle events
    /// when no MODULE is given).
    Watch {
        /// Only events of this module (`core` for lifecycle events).
        module: Option<String>,
        /// Only this event.
        event: Option<String>,
        /// Only this event (the reference's spelling of EVENT).
        #[arg(long = "event", value_name = "NAME")]
        event_flag: Option<String>,
    },
    /// Cost and service of the core and each module: RSS, CPU time, restarts, calls served,
    /// errors and call latency (p50, p99), next to their state.
    Stats,
    /// Recent call trees across modules (caller → callee → nested calls, with durations and
    /// errors), from the spans modules report to the core; or export them to an
    /// OpenTelemetry collector with --otlp. See docs/tracing.md.
    Trace {
        /// Only trees in which this module made or served a call.
        #[arg(long, value_name = "MODULE")]
        module: Option<String>,
        /// Only trees whose root call took at least this long (e.g. 10ms, 250us, 1s).
        #[arg(long, value_name = "DURATION", value_parser = cmd::trace::parse_threshold)]
        slow: Option<std::time::Duration>,
        /// At most this many trees, the most recent.
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
        /// Send the spans (of the trees that match) to this OTLP/HTTP collector instead,
        /// e.g. http://127.0.0.1:4318 (`/v1/traces` is added to a URL without a path).
        #[arg(long, value_name = "URL")]
        otlp: Option<String>,
    },
    /// Stop the core: every module in reverse dependency order, then the core itself.
    Stop,
    /// Is a core running? Its pid, uptime, version and a summary of its modules (exit 1 when
    /// none runs). Reference name.
    Status,
    /// Load one module and its dependencies (reference name of `load`).
    LoadModule {
        /// The module.
        name: String,
    },
    /// Unload a module and, first, the loaded modules that depend on it (reference name;
    /// `unload` refuses instead unless given --cascade).
    UnloadModule {
        /// The module.
        name: String,
        /// Only this module: refused while loaded modules depend on it (the reference would
        /// leave them running against a missing provider).
        #[arg(long)]
        no_dependents: bool,
    },
    /// Stop and start a module again, or load it when it is not loaded (reference name).
    ReloadModule {
        /// The module.
        name: String,
    },
    /// List modules with the reference's statuses (reference name of `list`).
    ListModules {
        /// Only loaded modules.
        #[arg(long)]
        loaded: bool,
    },
    /// Everything about one module (reference name of `info`).
    ModuleInfo {
        /// The module.
        name: String,
    },
    /// `module M method F ARG…`: the reference's long form of `call M F ARG…`.
    Module {
        /// Target module.
        module: String,
        /// The word `method`.
        #[arg(value_parser = ["method"], hide_possible_values = true)]
        keyword: String,
        /// Method name.
        method: String,
        /// Arguments, as for `call`.
        #[arg(
            value_name = "ARG",
            allow_hyphen_values = true,
            trailing_var_arg = true
        )]
        args: Vec<String>,
    },
    /// Issue a named operator token: its hash goes to the token store, the secret to a 0600
    /// file and stdout. Works without a running core; a running core accepts it at once.
    IssueToken {
        /// Name of the token (letters, digits, `_`, `-`, `.`; at most 64).
        #[arg(long, value_name = "NAME")]
        name: String,
        /// When it stops working: `30d`, `12h`, `90m`, `45s`, `2026-12-31` or
        /// `2026-12-31T23:59:59Z`. [default: never]
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
        /// Valid over local (Unix socket) connections only, the only kind this core serves
        /// today; remote transports will refuse it.
        #[arg(long)]
        local_only: bool,
        /// Replace a token of that name (the old one stops working at once).
        #[arg(long)]
        replace: bool,
    },
    /// List the named operator tokens (never their secrets).
    ListTokens,
    /// Revoke a named operator token: the next request with it is refused and connections
    /// using it are closed.
    RevokeToken {
        /// The token's name.
        name: String,
    },
    /// Peer contexts through the `contexts` module: keygen, create, list, info,
    /// install-script, policy, submit, audit (docs/contexts.md).
    Contexts(cmd::contexts::Args),
    /// The libp2p node (the `p2p` module): id, addrs, peers, dial ADDR, protocols
    /// (docs/p2p.md).
    P2p(cmd::p2p::Args),
    /// Remote modules: issue, list and revoke the credentials modules on other machines
    /// join this core with (it must run with --listen).
    Remote {
        #[command(subcommand)]
        cmd: cmd::remote::RemoteCommand,
    },
    /// Signing keys and the trust store packages are checked against.
    Key {
        #[command(subcommand)]
        cmd: cmd::key::KeyCommand,
    },
    /// Create a module project: a Rust crate or a Python module with a hello method, an
    /// event, metadata.json and a test.
    New(cmd::new::NewArgs),
    /// Build, serve and watch a module project: every saved edit is rebuilt and hot-swapped
    /// in (a failed build leaves the old version serving). Ctrl-C stops.
    Dev(cmd::dev::DevArgs),
    /// Generate a typed client (Rust, Python or TypeScript) of a module from its interface.
    Bindings(cmd::bindings::BindingsArgs),
    /// Build a signed package (.lgx) from a module dir.
    Pack(cmd::pack::PackArgs),
    #[command(flatten)]
    Packages(cmd::install::InstallCommand),
    /// Review a module (dir or .lgx) in a private core: metadata, ABI, start time, idle RSS,
    /// p99 latency under load, crash-freedom, limits, permissions; pass/warn/fail each.
    Check(cmd::check::CheckArgs),
    /// Check, embed the report, sign and upload a package to the registries.
    Publish(cmd::publish::PublishArgs),
    /// Find modules in the registries (name or description).
    Search {
        /// Text to look for.
        text: String,
    },
    /// A module in the registries: versions, signers, quality report, counts, reviews.
    Show {
        /// The module.
        name: String,
    },
    /// Review a published version (signed with your key).
    Review(cmd::review::ReviewArgs),
    /// Run a package registry.
    Registry {
        #[command(subcommand)]
        cmd: cmd::registry::RegistryCommand,
    },
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

impl Command {
    fn verb(&self) -> Verb {
        match self {
            Command::Run(_) => Verb::Run,
            Command::Status => Verb::Status,
            Command::Load { .. } | Command::LoadModule { .. } => Verb::Load,
            Command::Unload { .. } | Command::UnloadModule { .. } => Verb::Unload,
            Command::Reload { .. } | Command::ReloadModule { .. } => Verb::Reload,
            Command::List { .. } | Command::ListModules { .. } => Verb::List,
            Command::Info { .. } | Command::ModuleInfo { .. } | Command::Bindings(_) => Verb::Info,
            Command::Call { .. }
            | Command::Module { .. }
            | Command::Contexts(_)
            | Command::P2p(_) => Verb::Call,
            Command::Watch { .. } => Verb::Watch,
            Command::Stats | Command::Trace { .. } => Verb::Stats,
            Command::Stop => Verb::Stop,
            Command::IssueToken { .. } | Command::ListTokens | Command::RevokeToken { .. } => {
                Verb::Tokens
            }
            Command::Completions { .. } | Command::Man { .. } | Command::New(_) => Verb::Local,
            Command::Dev(_) => Verb::Load,
            Command::Remote { .. } => Verb::Tokens,
            Command::Key { .. }
            | Command::Pack(_)
            | Command::Packages(_)
            | Command::Check(_)
            | Command::Publish(_)
            | Command::Search { .. }
            | Command::Show { .. }
            | Command::Review(_)
            | Command::Registry { .. } => Verb::Package,
        }
    }

    /// Spelled only the reference's way: JSON by default when stdout is not a terminal.
    fn reference_name(&self) -> bool {
        matches!(
            self,
            Command::Status
                | Command::LoadModule { .. }
                | Command::UnloadModule { .. }
                | Command::ReloadModule { .. }
                | Command::ListModules { .. }
                | Command::ModuleInfo { .. }
                | Command::Module { .. }
                | Command::IssueToken { .. }
                | Command::ListTokens
                | Command::RevokeToken { .. }
        )
    }

    /// The global flags the reference accepts after `call`'s arguments (`call m f 1 --json`),
    /// taken out of them; arguments after a literal `--` are left alone.
    fn take_trailing_flags(&mut self, raw: &[OsString]) -> TrailingFlags {
        let mut flags = TrailingFlags::default();
        let (Command::Call { args, .. } | Command::Module { args, .. }) = self else {
            return flags;
        };
        // A `--` right before the arguments is consumed by clap (then all are verbatim); one
        // after the first argument stays in ARGs (then what follows it is verbatim).
        let consumed = raw.len() > args.len()
            && raw[raw.len() - args.len() - 1] == "--"
            && raw[raw.len() - args.len()..]
                .iter()
                .zip(args.iter())
                .all(|(r, a)| r.to_str() == Some(a.as_str()));
        let split = if consumed {
            0
        } else {
            match args.iter().position(|a| a == "--") {
                Some(i) => {
                    args.remove(i);
                    i
                }
                None => args.len(),
            }
        };
        let mut kept = Vec::with_capacity(args.len());
        for (i, a) in args.drain(..).enumerate() {
            if i < split {
                match a.as_str() {
                    "--json" | "-j" => {
                        flags.json = true;
                        continue;
                    }
                    "--human" | "--no-json" => {
                        flags.human = true;
                        continue;
                    }
                    "--verbose" | "-v" => {
                        flags.verbose = true;
                        continue;
                    }
                    _ => {}
                }
            }
            kept.push(a);
        }
        *args = kept;
        flags
    }
}

#[derive(Debug, Default)]
struct TrailingFlags {
    json: bool,
    human: bool,
    verbose: bool,
}

/// Options of `logoscore run`. Flags override the config file; the config file overrides
/// environment variables; those override the built-in defaults.
#[derive(Debug, Clone, Args)]
pub(crate) struct RunArgs {
    /// Config file (TOML). See README's `logoscore` section for its keys.
    #[arg(short = 'c', long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Directory holding `<name>/metadata.json` module dirs (repeatable; replaces the config
    /// file's `modules_dirs`). [default: the config file's, else $XDG_DATA_HOME/logos/modules
    /// (~/.local/share/logos/modules), else /usr/local/lib/logos/modules]
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

    /// Parent of each module's data dir (`--persistence-path` is the reference's name).
    /// [default: <config dir>/data with a config dir, else $XDG_DATA_HOME/logos, else
    /// ~/.local/share/logos]
    #[arg(long, visible_alias = "persistence-path", value_name = "DIR")]
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

    /// Share the core with an OS group (the docker.sock model): its members can use the
    /// control socket and read the client token, and so become operators.
    #[arg(long, value_name = "GROUP")]
    access_group: Option<String>,

    /// The reference's inter-module access policy: `enforce` is accepted (this core always
    /// enforces: a module may call what its metadata's dependencies and permissions name;
    /// more goes in the config file's [[grant]] and [[deny]]).
    #[arg(long, value_name = "POLICY")]
    access_policy: Option<String>,

    /// Serve Prometheus metrics (/metrics) and the live dashboard (/) over HTTP at ADDR,
    /// e.g. 127.0.0.1:9464 (port 0 picks a free one; the --json readiness document says
    /// which). Loopback only unless --http-insecure. [default: config `http`, else off]
    #[arg(long, value_name = "ADDR", value_parser = config::parse_http_addr)]
    http: Option<std::net::SocketAddr>,

    /// Allow --http on a non-loopback address: plain HTTP, so operator tokens and session
    /// cookies cross the network in clear (prefer a TLS proxy in front of 127.0.0.1).
    #[arg(long)]
    http_insecure: bool,

    /// Serve --http over TLS 1.3 with this PEM certificate chain (with --http-tls-key);
    /// required for a non-loopback --http unless --http-insecure. [default: config
    /// `http_tls_cert`]
    #[arg(long, value_name = "PEM", requires = "http_tls_key")]
    http_tls_cert: Option<PathBuf>,

    /// The PEM private key of --http-tls-cert. [default: config `http_tls_key`]
    #[arg(long, value_name = "PEM", requires = "http_tls_cert")]
    http_tls_key: Option<PathBuf>,

    /// Accept remote modules on HOST:PORT over TCP with TLS 1.3 (port 0 picks one; the
    /// readiness document and `logoscore remote grant` say which). Replaces the config
    /// file's `listen`. [default: off]
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,

    /// Reference flags this core does not offer; given, they are refused with the reason.
    #[arg(long, hide = true, value_name = "SPEC")]
    module_transport: Vec<String>,
    #[arg(long, hide = true)]
    insecure_tcp: bool,
    #[arg(long, hide = true)]
    persist_config: bool,
}

/// What every command gets from the global flags.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// JSON output: `--json`, or a reference name with stdout not a terminal (unless `--human`).
    pub json: bool,
    /// `--verbose`.
    pub verbose: bool,
    /// `--runtime-dir`, as given.
    pub runtime_dir: Option<PathBuf>,
    /// `--config-dir`, else `$LOGOSCORE_CONFIG_DIR`.
    pub config_dir: Option<ConfigDir>,
    /// `--timeout`, as given.
    pub timeout: Option<Duration>,
}

fn main() -> ExitCode {
    let raw = daemon_flag_to_subcommand(std::env::args_os().collect());
    let mut cli = match Cli::try_parse_from(&raw) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    let trailing = cli.command.take_trailing_flags(&raw);
    let verb = cli.command.verb();
    let human = cli.human || trailing.human;
    let json = cli.json
        || trailing.json
        || (cli.command.reference_name() && !human && !std::io::stdout().is_terminal());
    let ctx = Ctx {
        json,
        verbose: cli.verbose || trailing.verbose,
        runtime_dir: cli.runtime_dir.clone(),
        config_dir: ConfigDir::resolve(cli.config_dir.as_deref()),
        timeout: cli.timeout,
    };
    let result = if (cli.json || trailing.json) && human {
        Err(Error::Usage(
            "--json and --human contradict each other; give one".into(),
        ))
    } else {
        dispatch(&ctx, &cli.pkg, cli.command)
    };
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            let code = exit_code(&e, verb);
            output::report_error(e, json, code, verb);
            ExitCode::from(code)
        }
    }
}

/// The reference starts its daemon with a flag, `logoscore [--config-dir D] -D -m DIR`: when
/// `-D` comes before any subcommand, it becomes the subcommand `run` (options move after it;
/// every global option is accepted there too).
fn daemon_flag_to_subcommand(args: Vec<OsString>) -> Vec<OsString> {
    const WITH_VALUE: [&str; 14] = [
        "--config-dir",
        "--runtime-dir",
        "--timeout",
        "-m",
        "--modules-dir",
        "-c",
        "--config",
        "-l",
        "--load",
        "--data-dir",
        "--persistence-path",
        "--log-level",
        "--log-format",
        "--access-group",
    ];
    let mut found = None;
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == "-D" {
            found = Some(i);
            break;
        }
        if !a.starts_with('-') || a == "--" {
            break;
        }
        if WITH_VALUE.contains(&a.as_ref()) || a == "--host" || a == "--shutdown-timeout" {
            i += 1;
        }
        i += 1;
    }
    let Some(at) = found else { return args };
    let mut out = Vec::with_capacity(args.len());
    let mut rest = args.into_iter();
    out.extend(rest.next());
    out.push(OsString::from("run"));
    out.extend(
        rest.enumerate()
            .filter(|(i, _)| i + 1 != at)
            .map(|(_, a)| a),
    );
    out
}

/// Runs the chosen subcommand.
fn dispatch(ctx: &Ctx, pkg: &packages::PkgArgs, command: Command) -> Result<(), Error> {
    use cmd::block_on;
    match command {
        Command::Run(args) => cmd::run::run(ctx, *args),
        Command::Load { names } => block_on(cmd::load::run(ctx, names)),
        Command::LoadModule { name } => block_on(cmd::load::run(ctx, vec![name])),
        Command::Unload { name, cascade } => block_on(cmd::unload::run(ctx, name, cascade)),
        Command::UnloadModule {
            name,
            no_dependents,
        } => block_on(cmd::unload::run(ctx, name, !no_dependents)),
        Command::Reload { name, hot } => block_on(cmd::reload::run(ctx, name, hot)),
        Command::ReloadModule { name } => block_on(cmd::reload::run(ctx, name, false)),
        Command::List { loaded } | Command::ListModules { loaded } => {
            block_on(cmd::list::run(ctx, loaded))
        }
        Command::Info { name } | Command::ModuleInfo { name } => {
            block_on(cmd::info::run(ctx, name))
        }
        Command::Call {
            module,
            method,
            args,
        }
        | Command::Module {
            module,
            method,
            args,
            ..
        } => block_on(cmd::call::run(ctx, module, method, args)),
        Command::Watch {
            module,
            event,
            event_flag,
        } => {
            let event = match (event, event_flag) {
                (Some(a), Some(b)) if a != b => {
                    return Err(Error::Usage(format!(
                        "watch got two events, {a:?} and --event {b:?}; give one"
                    )));
                }
                (a, b) => a.or(b),
            };
            if event.is_some() && module.is_none() {
                return Err(Error::Usage(
                    "watch --event needs a MODULE: `logoscore watch MODULE --event NAME`".into(),
                ));
            }
            block_on(cmd::watch::run(ctx, module, event))
        }
        Command::Stats => block_on(cmd::stats::run(ctx)),
        Command::Trace {
            module,
            slow,
            limit,
            otlp,
        } => block_on(cmd::trace::run(
            ctx,
            cmd::trace::Args {
                module,
                slow,
                limit,
                otlp,
            },
        )),
        Command::Stop => block_on(cmd::stop::run(ctx)),
        Command::Status => block_on(cmd::status::run(ctx)),
        Command::IssueToken {
            name,
            expires,
            local_only,
            replace,
        } => cmd::tokens::issue(ctx, &name, expires.as_deref(), local_only, replace),
        Command::ListTokens => cmd::tokens::list(ctx),
        Command::RevokeToken { name } => cmd::tokens::revoke(ctx, &name),
        Command::Contexts(args) => block_on(cmd::contexts::run(ctx, args)),
        Command::P2p(args) => block_on(cmd::p2p::run(ctx, args)),
        Command::Completions { shell } => cmd::completions::run(shell),
        Command::Man { out_dir } => cmd::man::run(out_dir),
        Command::Remote { cmd } => block_on(cmd::remote::run(ctx, cmd)),
        Command::Key { cmd } => cmd::key::run(ctx, pkg, cmd),
        Command::New(args) => cmd::new::run(ctx, args),
        Command::Dev(args) => cmd::dev::run(ctx, args),
        Command::Bindings(args) => block_on(cmd::bindings::run(ctx, args)),
        Command::Pack(args) => cmd::pack::run(ctx, pkg, args),
        Command::Packages(c) => cmd::install::run(ctx, pkg, c),
        Command::Check(args) => cmd::check::run(ctx, pkg, args),
        Command::Publish(args) => cmd::publish::run(ctx, pkg, args),
        Command::Search { text } => cmd::search::search(ctx, pkg, &text),
        Command::Show { name } => cmd::search::show(ctx, pkg, &name),
        Command::Review(args) => cmd::review::run(ctx, pkg, args),
        Command::Registry { cmd } => cmd::registry::run(ctx, cmd),
    }
}

/// The one mapping from a failure of `verb` to the process exit code.
fn exit_code(e: &Error, verb: Verb) -> u8 {
    match e {
        Error::Partial { error, .. } => exit_code(error, verb),
        Error::Usage(_) | Error::Config(_) | Error::Io { .. } | Error::Start(_) => EXIT_USAGE,
        Error::ShutdownTimeout { .. } | Error::NotRunning { .. } => EXIT_USAGE,
        Error::Package(_) => EXIT_USAGE,
        Error::NoCore { .. } | Error::Unreachable { .. } | Error::Lost { .. } => EXIT_UNREACHABLE,
        Error::Refused { .. } => EXIT_UNREACHABLE,
        Error::Token { .. } => EXIT_MODULE,
        Error::Remote { code, .. } => match *code {
            // The core broke the protocol: as far as this client knows, it cannot be reached.
            ErrorCode::ProtocolError => EXIT_UNREACHABLE,
            // As the reference: any failed load/unload/reload/info is a module error.
            _ if verb.manages_modules() => EXIT_MODULE,
            // A code added after this build that names a module fault.
            c if c.as_str() == "invalid_metadata" => EXIT_MODULE,
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

    fn parse(args: &[&str]) -> (Cli, TrailingFlags) {
        let raw = daemon_flag_to_subcommand(args.iter().map(OsString::from).collect());
        let mut cli = Cli::try_parse_from(&raw).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let t = cli.command.take_trailing_flags(&raw);
        (cli, t)
    }

    #[test]
    fn cli_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn usage_errors_do_not_collide_with_unreachable() {
        assert_ne!(EXIT_USAGE, EXIT_UNREACHABLE);
        assert_eq!(exit_code(&Error::Usage("x".into()), Verb::Call), EXIT_USAGE);
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
            assert_eq!(
                exit_code(&remote(code), Verb::Call),
                EXIT_MODULE,
                "{code:?}"
            );
        }
        for code in [
            ErrorCode::MethodFailed,
            ErrorCode::InvalidArgs,
            ErrorCode::UnknownMethod,
            ErrorCode::Timeout,
            ErrorCode::Cancelled,
        ] {
            assert_eq!(
                exit_code(&remote(code), Verb::Call),
                EXIT_METHOD,
                "{code:?}"
            );
            // Any failed module-management command is a module error.
            for verb in [Verb::Load, Verb::Unload, Verb::Reload, Verb::Info] {
                assert_eq!(
                    exit_code(&remote(code), verb),
                    EXIT_MODULE,
                    "{code:?} {verb:?}"
                );
            }
        }
        let refused = Error::Refused {
            place: String::new(),
            reason: String::new(),
        };
        assert_eq!(exit_code(&refused, Verb::Call), EXIT_UNREACHABLE);
        let lost = Error::Lost {
            reason: String::new(),
        };
        assert_eq!(exit_code(&lost, Verb::Load), EXIT_UNREACHABLE);
        let partial = Error::Partial {
            error: Box::new(remote(ErrorCode::MethodFailed)),
            done: serde_json::Map::new(),
        };
        assert_eq!(exit_code(&partial, Verb::Load), EXIT_MODULE);
    }

    #[test]
    fn negative_numbers_are_call_arguments() {
        let (cli, _) = parse(&["logoscore", "call", "calc", "add", "-5", "3", "--json"]);
        match cli.command {
            Command::Call { args, .. } => assert_eq!(args, ["-5", "3"]),
            other => panic!("unexpected parse: {other:?}"),
        }
    }

    #[test]
    fn call_takes_hyphen_values_and_trailing_flags() {
        let (cli, t) = parse(&[
            "logoscore",
            "call",
            "m",
            "f",
            "-x",
            "--json",
            "-j",
            "--flag",
        ]);
        assert!(t.json);
        match cli.command {
            Command::Call { args, .. } => assert_eq!(args, ["-x", "--flag"]),
            other => panic!("unexpected parse: {other:?}"),
        }
        for (args, want) in [
            (&["1", "--", "--json", "-v"][..], &["1", "--json", "-v"][..]),
            (&["--", "--json"], &["--json"]),
            (&["--", "--"], &["--"]),
            (&["--", "--", "x"], &["--", "x"]),
            (&["a", "-j", "--", "-j"], &["a", "-j"]),
        ] {
            let mut argv = vec!["logoscore", "call", "m", "f"];
            argv.extend_from_slice(args);
            let (cli, t) = parse(&argv);
            assert_eq!(t.json, args == ["a", "-j", "--", "-j"], "{args:?}");
            match cli.command {
                Command::Call { args: got, .. } => assert_eq!(got, want, "{args:?}"),
                other => panic!("unexpected parse: {other:?}"),
            }
        }
        let (cli, t) = parse(&["logoscore", "module", "m", "method", "f", "a", "-j"]);
        assert!(t.json);
        match cli.command {
            Command::Module {
                module,
                method,
                args,
                ..
            } => {
                assert_eq!((module.as_str(), method.as_str()), ("m", "f"));
                assert_eq!(args, ["a"]);
            }
            other => panic!("unexpected parse: {other:?}"),
        }
        assert!(
            Cli::try_parse_from(["logoscore", "module", "m", "function", "f"]).is_err(),
            "the keyword is `method`"
        );
    }

    #[test]
    fn dash_d_starts_the_daemon() {
        for args in [
            &["logoscore", "-D", "-m", "./modules"][..],
            &[
                "logoscore",
                "--config-dir",
                "/tmp/ls-a",
                "-D",
                "-m",
                "./modules",
            ],
            &["logoscore", "daemon", "--modules-dir", "./modules"],
            &[
                "logoscore",
                "-D",
                "-m",
                "./a",
                "-m",
                "./b",
                "--persistence-path",
                "/tmp/d",
            ],
        ] {
            let (cli, _) = parse(args);
            match cli.command {
                Command::Run(r) => assert!(!r.modules_dirs.is_empty(), "{args:?}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
        // After a subcommand, -D is an argument.
        let (cli, _) = parse(&["logoscore", "call", "m", "f", "-D"]);
        assert!(matches!(cli.command, Command::Call { ref args, .. } if args == &["-D"]));
    }

    #[test]
    fn reference_names_and_flags_parse() {
        for args in [
            &["logoscore", "status", "--json"][..],
            &["logoscore", "load-module", "chat", "-j"],
            &["logoscore", "unload-module", "waku", "--no-dependents"],
            &["logoscore", "reload-module", "chat"],
            &["logoscore", "list-modules", "--loaded"],
            &["logoscore", "module-info", "chat"],
            &["logoscore", "info", "chat"],
            &[
                "logoscore",
                "watch",
                "chat",
                "--event",
                "chat-message",
                "--json",
            ],
            &[
                "logoscore",
                "issue-token",
                "--name",
                "ci",
                "--expires",
                "30d",
                "--local-only",
            ],
            &["logoscore", "issue-token", "--name", "alice", "--replace"],
            &["logoscore", "list-tokens"],
            &["logoscore", "revoke-token", "alice"],
            &["logoscore", "-v", "stats"],
            &["logoscore", "stop", "--no-json"],
        ] {
            parse(args);
        }
    }
}
