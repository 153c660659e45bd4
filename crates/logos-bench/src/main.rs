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
//! module every runtime row measures with (`module.rs`), which the core starts through a
//! symlink named `benchmod` in each generated module dir. Every process is real: modules,
//! baseline children, the Qt server and client, the C driver.
//!
//! No figure is asserted anywhere: the exit code is non-zero only when a row could not be
//! measured at all. Rows that need what a machine may lack (Qt, the C library) are skipped
//! with the reason.

mod baseline;
mod capi;
mod child;
mod module;
mod qt;
mod report;
mod runtime;
mod stats;

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use report::{Figure, Machine, Report, Row, Status};
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
    /// The Rust API call and the C API call.
    Api,
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
    if module::invoked_as_module() {
        std::process::exit(module::serve());
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
    let report = rt.block_on(bench(&args))?;
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
    let plan = runtime::Plan::new(args.quick);
    let wants = |g: Group| args.only.is_empty() || args.only.contains(&g);
    progress("starting the core and generating modules");
    let world = runtime::World::create(&plan).await?;
    let mut rows = Vec::new();

    if wants(Group::Rtt) || wants(Group::Qt) {
        progress("call round trip");
        match runtime::rtt(&world, &plan).await {
            Ok((row, ours)) => {
                rows.push(row);
                if wants(Group::Qt) {
                    progress("Qt Remote Objects");
                    rows.push(qt_row(args, &plan, ours.median).await);
                }
            }
            Err(e) => rows.push(Row::failed("rtt", "call round trip", &e)),
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
        rows.push(
            runtime::start(&world, &plan)
                .await
                .unwrap_or_else(|e| Row::failed("start", "module start", &e)),
        );
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
    progress("stopping");
    world.close().await;
    Ok(Report {
        machine: Machine::detect(),
        quick: args.quick,
        elapsed_s: started.elapsed().as_secs_f64(),
        rows,
    })
}

/// The Qt Remote Objects row: our round-trip median over Qt's, or why it was skipped.
async fn qt_row(args: &Args, plan: &runtime::Plan, ours_median: f64) -> Row {
    const ID: &str = "qt";
    const NAME: &str = "same call, Qt Remote Objects (sync) as baseline";
    let Some(src) = qt::source(args.qtro.clone()) else {
        return Row::skipped(ID, NAME, "Qt Remote Objects sources not found (--qtro DIR)");
    };
    let n = if plan.quick { 500 } else { 20_000 };
    let measured = tokio::task::spawn_blocking(move || {
        let build = qt::build(&src)?;
        qt::measure(&build, n)
    })
    .await;
    let figures = match measured {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return Row::skipped(ID, NAME, format!("Qt not available: {e:#}")),
        Err(e) => return Row::skipped(ID, NAME, format!("Qt task failed: {e}")),
    };
    let ratio = ours_median / figures.sync_median_ns;
    let mut row = Row::new(ID, NAME);
    row.ours = Some(Figure::of(ours_median, report::Unit::Nanos));
    row.baseline = Some(Figure {
        value: figures.sync_median_ns,
        p99: Some(figures.sync_p99_ns),
        unit: report::Unit::Nanos,
    });
    row.baseline_name = Some("Qt Remote Objects".into());
    row.ratio = Some(ratio);
    row.target = Some("≤ 0.4× Qt".into());
    row.status = Status::check(ratio <= 0.4);
    if let Some(rate) = figures.pipelined_per_sec {
        row.extra("qt_pipelined_per_sec", rate);
        row.note = Some(format!(
            "Qt with all {n} calls in flight: {}",
            report::format_value(rate, report::Unit::PerSec)
        ));
    }
    row
}
