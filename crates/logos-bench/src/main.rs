//! `logos-bench`: measures the logos runtime against baselines taken in the same run and
//! prints one table of medians, p99s and ratios (`--json` for machines).
//!
//! ```text
//! cargo run --release -p logos-bench            # the full run, a few minutes
//! cargo run --release -p logos-bench -- --json  # the same as one JSON document
//! cargo run -p logos-bench -- --quick           # smoke sizes, seconds; what CI runs
//! ```
//!
//! The binary plays three parts, so one `cargo run` builds everything it needs:
//! the benchmark driver (this file, `runtime.rs`, `qt.rs`, `capi.rs`); the far end of the raw
//! socket baselines (`--child KIND SOCKET`, `child.rs`, driven by `baseline.rs`); and the
//! module every runtime row measures with (the `benchmod` crate, `modules/benchmod`), which
//! the core starts through a symlink named `benchmod` in each generated module dir, to the
//! `benchmod` program when it is built beside this binary, else to this binary
//! (`program.rs`). Every process is real: modules,
//! baseline children, the Qt server and client, the C driver.
//!
//! No figure is asserted anywhere: the exit code is non-zero only when a row could not be
//! measured at all. Rows that need what a machine may lack (Qt, the C library) are skipped
//! with the reason.

mod alone;
mod baseline;
mod capi;
mod child;
mod compare;
mod contexts;
mod cpu;
mod p2p;
mod poll_io;
mod probe_build;
mod program;
mod qt;
mod remote;
mod report;
mod runtime;
mod stats;

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use report::{Machine, Report, Row, Status};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// The benchmark's rows, as `--only` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Group {
    /// Round trip module → module against raw ping-pong.
    Rtt,
    /// The same call over Qt Remote Objects (also runs `rtt`).
    Qt,
    /// Round trips with 1 KiB to 1 MiB arguments against raw ping-pong of the same size.
    Payload,
    /// Pipelined calls against raw pipelined messages.
    Pipelined,
    /// Event fan-out to 1 / 8 / 32 subscribers.
    Fanout,
    /// 64 MiB stream against a raw socket copy.
    Stream,
    /// Module start against spawning /bin/true.
    Start,
    /// Loading up to 100 modules, and idle RSS per module.
    Load,
    /// Crash → restarted and ready.
    Restart,
    /// Hot swap (`Core::reload_hot`) against a cold reload of the same module.
    Swap,
    /// The Rust API call and the C API call.
    Api,
    /// A delegated contexts script end to end against a bare Rhai evaluation.
    Contexts,
    /// A local module → remote module (loopback TLS) call and stream against raw TLS.
    Remote,
    /// 64 MiB from a libp2p peer to an external module, and accept-to-first-byte, against an
    /// in-process rust-libp2p handler.
    P2p,
}

/// Measures the logos runtime against baselines taken in the same run.
#[derive(Debug, Parser)]
#[command(name = "logos-bench", version, about)]
struct Args {
    /// Smoke sizes: proves every row still runs, in seconds; the figures mean nothing.
    #[arg(long)]
    quick: bool,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    json: bool,
    /// Run only these rows (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Group>,
    /// Sources of the Qt Remote Objects reference (default `../shared/bench/qtro` beside the
    /// workspace).
    #[arg(long, env = "LOGOS_BENCH_QTRO", value_name = "DIR")]
    qtro: Option<PathBuf>,
    /// Alternating rounds of baseline and runtime in the comparative rows (default 5, or 1
    /// with --quick).
    #[arg(long, value_name = "N")]
    rounds: Option<usize>,
    /// Print each row's change against an earlier `--json` report (also in `--json` output,
    /// as "compare").
    #[arg(long, value_name = "FILE.json")]
    compare: Option<PathBuf>,
    /// Internal: serve one side of a raw baseline.
    #[arg(long, value_enum, hide = true, requires = "socket")]
    child: Option<child::Kind>,
    /// Internal: the socket a `--child` connects to.
    #[arg(hide = true)]
    socket: Option<PathBuf>,
    /// Internal: message size of a `--child pong`.
    #[arg(long, hide = true, default_value_t = 64)]
    size: usize,
}

fn main() -> ExitCode {
    if benchmod::invoked_as_module() {
        std::process::exit(benchmod::serve());
    }
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("logos-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    if let Some(kind) = args.child {
        let Some(socket) = &args.socket else {
            bail!("--child {} needs the socket to connect to", kind.arg());
        };
        child::run(kind, socket, args.size)?;
        return Ok(ExitCode::SUCCESS);
    }
    // One thread drives the core and the measurements: no cross-thread wake-ups in the Rust
    // API row, and blocking baselines run on the blocking pool.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("creating the async runtime")?;
    // Read first: a wrong path should fail now, not after minutes of measuring.
    let earlier = args
        .compare
        .as_deref()
        .map(compare::Earlier::load)
        .transpose()?;
    let mut report = rt.block_on(bench(&args))?;
    report.compare = earlier.map(|e| e.against(&report));
    if args.json {
        println!("{}", report.json()?);
    } else {
        print!("{}", report.table());
    }
    let failed = report.rows.iter().any(|r| r.status == Status::Error);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Progress on stderr, so `--json` stays one clean document on stdout.
fn progress(what: &str) {
    eprintln!("logos-bench: {what}…");
}

async fn bench(args: &Args) -> Result<Report> {
    let started = Instant::now();
    let mut plan = runtime::Plan::new(args.quick);
    if let Some(rounds) = args.rounds {
        plan.rounds = rounds.max(1);
    }
    let wants = |g: Group| args.only.is_empty() || args.only.contains(&g);
    progress("starting the core and generating modules");
    let world = runtime::World::create(&plan).await?;
    let mut rows = Vec::new();

    if wants(Group::Rtt) || wants(Group::Qt) {
        let qt = if wants(Group::Qt) {
            progress("building the Qt Remote Objects reference");
            match qt_build(args).await {
                Ok(build) => Some(build),
                Err(why) => {
                    rows.push(Row::skipped(runtime::QT_ID, runtime::QT_NAME, why));
                    None
                }
            }
        } else {
            None
        };
        progress("call round trip");
        match runtime::rtt(&world, &plan, qt.as_deref()).await {
            Ok((rtt_rows, qt_row)) => {
                rows.extend(rtt_rows);
                rows.extend(qt_row);
            }
            Err(e) => rows.push(Row::failed("rtt", "call round trip", &e)),
        }
    }
    if wants(Group::Payload) {
        progress("round trips with bigger payloads");
        match runtime::payload(&world, &plan).await {
            Ok(r) => rows.extend(r),
            Err(e) => rows.push(Row::failed("payload", "payload sweep", &e)),
        }
    }
    if wants(Group::Pipelined) {
        progress("pipelined calls");
        rows.push(
            runtime::pipelined(&world, &plan)
                .await
                .unwrap_or_else(|e| Row::failed("pipelined", "pipelined calls", &e)),
        );
    }
    if wants(Group::Fanout) {
        progress("event fan-out");
        match runtime::fanout(&world, &plan).await {
            Ok(r) => rows.extend(r),
            Err(e) => rows.push(Row::failed("fanout", "event fan-out", &e)),
        }
    }
    if wants(Group::Stream) {
        progress("stream");
        rows.push(
            runtime::stream(&world, &plan)
                .await
                .unwrap_or_else(|e| Row::failed("stream", "stream", &e)),
        );
    }
    if wants(Group::Start) {
        progress("module start");
        match runtime::start(&world, &plan).await {
            Ok(r) => rows.extend(r),
            Err(e) => rows.push(Row::failed("start", "module start", &e)),
        }
    }
    if wants(Group::Load) {
        progress("loading many modules");
        match runtime::load(&world, &plan).await {
            Ok(r) => rows.extend(r),
            Err(e) => rows.push(Row::failed("load", "load many modules", &e)),
        }
    }
    if wants(Group::Restart) {
        progress("crash and restart");
        rows.push(
            runtime::restart(&world, &plan)
                .await
                .unwrap_or_else(|e| Row::failed("restart", "crash → ready", &e)),
        );
    }
    if wants(Group::Swap) {
        progress("hot swap");
        rows.push(
            runtime::swap(&world, &plan)
                .await
                .unwrap_or_else(|e| Row::failed("hot_swap", "hot swap", &e)),
        );
    }
    if wants(Group::Api) {
        progress("Rust API and C API calls");
        match runtime::rust_api(&world, &plan).await {
            Ok((row, rust)) => {
                rows.push(row);
                let modules = world.modules_dir();
                let calls = plan.api_calls;
                let c = tokio::task::spawn_blocking(move || capi::row(&modules, calls, &rust))
                    .await
                    .unwrap_or_else(|e| {
                        Row::failed("capi", "C API", &anyhow::anyhow!("C API task: {e}"))
                    });
                rows.push(c);
            }
            Err(e) => rows.push(Row::failed("rust_api", "Rust API call", &e)),
        }
    }
    if wants(Group::Contexts) {
        progress("contexts: delegated script vs bare eval, in process");
        let n = if args.quick { 100 } else { 3000 };
        rows.push(
            tokio::task::spawn_blocking(move || contexts::row(n))
                .await
                .map_err(|e| anyhow::anyhow!("contexts task: {e}"))
                .and_then(|r| r)
                .unwrap_or_else(|e| {
                    Row::failed("contexts", "delegated script end to end, in process", &e)
                }),
        );
        progress("contexts: delegated script vs bare eval, module call");
        rows.push(
            contexts::module_row(&world, n)
                .await
                .unwrap_or_else(|e| Row::failed(contexts::MODULE_ID, contexts::MODULE_NAME, &e)),
        );
    }
    if wants(Group::Remote) {
        progress("remote module over loopback TLS");
        match remote::rows(&plan).await {
            Ok(r) => rows.extend(r),
            Err(e) => rows.push(Row::failed("remote", "remote module", &e)),
        }
    }
    if wants(Group::P2p) {
        progress("libp2p stream to an external module vs an in-process handler");
        rows.extend(p2p::rows(&plan).await);
    }
    progress("stopping");
    world.close().await;
    Ok(Report {
        machine: Machine::detect(),
        quick: args.quick,
        elapsed_s: started.elapsed().as_secs_f64(),
        rows,
        compare: None,
    })
}

/// Builds (or finds built) the Qt Remote Objects reference; the reason it is not available
/// otherwise.
async fn qt_build(args: &Args) -> std::result::Result<PathBuf, String> {
    let Some(src) = qt::source(args.qtro.clone()) else {
        return Err("Qt Remote Objects sources not found (--qtro DIR)".into());
    };
    match tokio::task::spawn_blocking(move || qt::build(&src)).await {
        Ok(Ok(build)) => Ok(build),
        Ok(Err(e)) => Err(format!("Qt not available: {e:#}")),
        Err(e) => Err(format!("Qt build task failed: {e}")),
    }
}
