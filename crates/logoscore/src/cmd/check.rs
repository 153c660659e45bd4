//! `logoscore check PATH|FILE`: an automated review of a module, run in a real core in a
//! private temporary runtime dir, and a report in which every item passes, warns or fails
//! against the thresholds of `packages.toml`'s `[check]`:
//!
//! | item | how |
//! |---|---|
//! | `signature` | (FILE) signed by a trusted key? |
//! | `metadata` | lint: description, author, semver, restart policy, `main` present |
//! | `abi` | the module starts: `logos_host` checked its ABI version, protocol major and name, or the executable's `hello` was accepted |
//! | `start_time` | time until `load` returned ready |
//! | `idle_rss` | resident memory after it settled |
//! | `latency:<method>` | p99 of `calls` calls (`concurrency` at a time) of each zero-argument method and each method named in metadata's `probes` |
//! | `crash_free` | same pid, no restart, still ready after the load |
//! | `limits` | ran under `[check.limits]` (address space, open files) without dying |
//! | `permissions` | calls the core denied it (caught from the core's own log) vs what metadata declares; `core` permission is a warning |
//!
//! Dependencies are found in `-m DIR`s and in the installed packages. Never installs, never
//! touches a running core: the core here is its own, and is shut down before returning.

use crate::error::Error;
use crate::packages::{CheckConfig, Pkg, PkgArgs};
use crate::{Ctx, output};
use logos_core::{Core, ModuleSettings, RestartPolicy, Value};
use logos_pkg::archive::{self, Limits};
use logos_pkg::quality::{Item, Report, Status};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What `check` needs.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// A module dir (with metadata.json) or a `.lgx` package.
    #[arg(value_name = "PATH|FILE")]
    pub target: PathBuf,
    /// Modules dirs holding its dependencies (the installed packages are used too).
    #[arg(short = 'm', long = "modules-dir", value_name = "DIR")]
    pub modules_dirs: Vec<PathBuf>,
}

pub(crate) fn run(ctx: &Ctx, pkg: &PkgArgs, args: CheckArgs) -> Result<(), Error> {
    let p = Pkg::load(pkg)?;
    let mut pre = Vec::new();
    let tmp = crate::cmd::publish::tempdir()?;
    let result = (|| {
        let (dir, name) = if args.target.is_file() {
            let bytes = std::fs::read(&args.target)
                .map_err(|e| Error::io(format!("cannot read {}", args.target.display()), e))?;
            let dest = tmp.path().join("pkg");
            std::fs::create_dir_all(&dest)
                .map_err(|e| Error::io("cannot create a temporary dir", e))?;
            let mut verdict = None;
            let mut check =
                |m: &logos_pkg::Manifest, b: &[u8], s: Option<&[u8]>| -> logos_pkg::Result<()> {
                    verdict = Some(
                        match p.keyring.check_package(m, b, s, logos_pkg::Policy::Warn)? {
                            None => Item {
                                id: "signature".into(),
                                status: Status::Pass,
                                value: m
                                    .signer
                                    .as_ref()
                                    .map(|s| s.name.clone())
                                    .unwrap_or_default(),
                                detail: "signed by a trusted key".into(),
                            },
                            Some(w) => Item {
                                id: "signature".into(),
                                status: Status::Warn,
                                value: String::new(),
                                detail: w,
                            },
                        },
                    );
                    Ok(())
                };
            let un = archive::read(
                &bytes[..],
                &args.target.display().to_string(),
                &Limits::default(),
                &mut check,
                Some(&dest),
            )?;
            pre.extend(verdict);
            (dest, un.manifest.name)
        } else {
            let meta = std::fs::read(args.target.join("metadata.json")).map_err(|e| {
                Error::Usage(format!(
                    "{} is neither a .lgx file nor a module dir with metadata.json: {e}",
                    args.target.display()
                ))
            })?;
            let m = logos_pkg::manifest::ModuleMeta::parse(&meta)?;
            (
                std::path::absolute(&args.target).unwrap_or(args.target.clone()),
                m.name,
            )
        };
        let mut report = check_dir(&p, &dir, &name, &args.modules_dirs, !ctx.json)?;
        report.items.splice(0..0, pre.drain(..));
        Ok::<_, Error>(Report::new(
            &report.module,
            &report.version,
            &report.target,
            &report.checker,
            report.items,
        ))
    })();
    drop(tmp);
    let report = result?;
    if report.status == Status::Fail {
        let mut done = serde_json::Map::new();
        done.insert(
            "report".into(),
            serde_json::to_value(&report).unwrap_or_default(),
        );
        if !ctx.json {
            output::line(report.render().trim_end())?;
        }
        return Err(Error::Partial {
            error: Box::new(Error::Usage(format!(
                "quality check of {} failed: {}",
                report.module,
                report.summary()
            ))),
            done,
        });
    }
    if ctx.json {
        output::json(
            &serde_json::json!({"status": "ok", "report": report}),
            false,
        )?;
    } else {
        output::line(report.render().trim_end())?;
    }
    Ok(())
}

/// Accesses the core denied, as (caller, target), caught from its log.
#[derive(Default, Clone)]
struct Denials(Arc<Mutex<Vec<(String, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Denials {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct V {
            message: String,
            caller: String,
            target: String,
        }
        impl tracing::field::Visit for V {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                let s = format!("{v:?}");
                match f.name() {
                    "message" => self.message = s,
                    "caller" => self.caller = s.trim_matches('"').to_owned(),
                    "target" => self.target = s.trim_matches('"').to_owned(),
                    _ => {}
                }
            }
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                match f.name() {
                    "caller" => self.caller = v.to_owned(),
                    "target" => self.target = v.to_owned(),
                    "message" => self.message = v.to_owned(),
                    _ => {}
                }
            }
        }
        let mut v = V::default();
        event.record(&mut v);
        if v.message.contains("denied") && !v.caller.is_empty() {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((v.caller, v.target));
        }
    }
}

fn grade(id: &str, value: f64, [warn, fail]: [f64; 2], shown: String, unit: &str) -> Item {
    let status = if value > fail {
        Status::Fail
    } else if value > warn {
        Status::Warn
    } else {
        Status::Pass
    };
    Item {
        id: id.to_owned(),
        status,
        value: shown,
        detail: format!("warn above {warn}{unit}, fail above {fail}{unit}"),
    }
}

/// Checks the module in `dir` (named `name`) in a private core; `progress` prints stages.
pub(crate) fn check_dir(
    p: &Pkg,
    dir: &Path,
    name: &str,
    extra: &[PathBuf],
    progress: bool,
) -> Result<Report, Error> {
    let cfg = p.config.check.clone();
    let installed = p.store_dir.join("modules");
    let tmp = crate::cmd::publish::tempdir()?;
    let modules = tmp.path().join("m");
    std::fs::create_dir_all(&modules).map_err(|e| Error::io("cannot create a temporary dir", e))?;
    std::os::unix::fs::symlink(dir, modules.join(name))
        .map_err(|e| Error::io("cannot stage the module", e))?;
    let denials = Denials::default();
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        let sub = tracing_subscriber::registry().with(denials.clone());
        let _ = tracing::subscriber::set_global_default(sub);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    let mut dirs = vec![modules.clone()];
    dirs.extend(
        extra
            .iter()
            .map(|d| std::path::absolute(d).unwrap_or(d.clone())),
    );
    if installed.is_dir() {
        dirs.push(installed);
    }
    let r = rt.block_on(run_checks(
        tmp.path(),
        &dirs,
        name,
        &cfg,
        &denials,
        progress,
    ));
    drop(tmp);
    r
}

async fn run_checks(
    tmp: &Path,
    dirs: &[PathBuf],
    name: &str,
    cfg: &CheckConfig,
    denials: &Denials,
    progress: bool,
) -> Result<Report, Error> {
    let say = |s: &str| {
        if progress {
            eprintln!("check: {s}");
        }
    };
    let mut settings = ModuleSettings::default();
    settings.restart = Some(RestartPolicy::Never);
    settings.limits.address_space = Some(cfg.limits.address_space.0);
    settings.limits.open_files = Some(cfg.limits.open_files);
    let mut b = Core::builder()
        .runtime_dir(tmp.join("run"))
        .data_dir(tmp.join("data"))
        .module(name, settings);
    for d in dirs {
        b = b.modules_dir(d);
    }
    let core = b
        .build()
        .map_err(Error::Start)?
        .start()
        .await
        .map_err(Error::Start)?;
    let out = checks(&core, name, cfg, denials, &say).await;
    core.shutdown().await;
    out
}

async fn checks(
    core: &Core,
    name: &str,
    cfg: &CheckConfig,
    denials: &Denials,
    say: &dyn Fn(&str),
) -> Result<Report, Error> {
    let mut items = Vec::new();
    let manifest = match core.manifest(name) {
        Ok(m) => m,
        Err(e) => {
            items.push(Item {
                id: "metadata".into(),
                status: Status::Fail,
                value: String::new(),
                detail: e.to_string(),
            });
            return Ok(Report::new(
                name,
                "?",
                &logos_pkg::manifest::host_target(),
                checker(),
                items,
            ));
        }
    };
    // Metadata lint.
    let mut lint = Vec::new();
    if manifest.description.as_deref().is_none_or(str::is_empty) {
        lint.push("no description");
    }
    if manifest.author.as_deref().is_none_or(str::is_empty) {
        lint.push("no author");
    }
    if manifest.raw.get("restart").is_none() {
        lint.push("no restart policy (on-failure is assumed)");
    }
    items.push(Item {
        id: "metadata".into(),
        status: if lint.is_empty() {
            Status::Pass
        } else {
            Status::Warn
        },
        value: format!("{} {}", manifest.name.as_str(), manifest.version),
        detail: if lint.is_empty() {
            "complete".into()
        } else {
            lint.join("; ")
        },
    });
    say("starting it");
    let started = Instant::now();
    let load = core.load(name).await;
    let start_time = started.elapsed();
    if let Err(e) = load {
        items.push(Item {
            id: "abi".into(),
            status: Status::Fail,
            value: String::new(),
            detail: format!("it does not start: {e}"),
        });
        return Ok(Report::new(
            name,
            &manifest.version.to_string(),
            &logos_pkg::manifest::host_target(),
            checker(),
            items,
        ));
    }
    let is_lib = manifest.main.extension().is_some_and(|e| e == "so");
    items.push(Item {
        id: "abi".into(),
        status: Status::Pass,
        value: if is_lib {
            "logos_module_v1".into()
        } else {
            "executable".into()
        },
        detail: if is_lib {
            "logos_host accepted its ABI version, protocol major and name".into()
        } else {
            "its hello (protocol major, name) was accepted".into()
        },
    });
    items.push(grade(
        "start_time",
        start_time.as_secs_f64() * 1000.0,
        [
            cfg.start_time[0].0.as_secs_f64() * 1000.0,
            cfg.start_time[1].0.as_secs_f64() * 1000.0,
        ],
        format!("{}ms", start_time.as_millis()),
        "ms",
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid0 = core.module(name).ok().and_then(|m| m.pid);
    let rss = core
        .stats()
        .await
        .into_iter()
        .find(|s| s.name == name)
        .and_then(|s| s.rss_bytes);
    if let Some(rss) = rss {
        let mib = |b: u64| b as f64 / 1048576.0;
        items.push(grade(
            "idle_rss",
            mib(rss),
            [mib(cfg.idle_rss[0].0), mib(cfg.idle_rss[1].0)],
            format!("{:.1} MiB", mib(rss)),
            " MiB",
        ));
    }
    // Probe methods: zero-argument ones and those metadata names in `probes`.
    let iface = core.interface(name).unwrap_or(Value::Null);
    let declared: Vec<String> = manifest
        .raw
        .get("probes")
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut probes: Vec<String> = iface
        .get("methods")
        .and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .filter(|m| {
            m.get("params")
                .and_then(Value::as_list)
                .is_some_and(<[Value]>::is_empty)
        })
        .filter_map(|m| m.get("name").and_then(Value::as_str).map(str::to_owned))
        .filter(|n| declared.is_empty() || declared.contains(n))
        .collect();
    for d in &declared {
        if !probes.contains(d) {
            probes.push(d.clone());
        }
    }
    for method in &probes {
        say(&format!("{} calls of {method}", cfg.calls));
        let lat = Arc::new(Mutex::new(Vec::with_capacity(cfg.calls as usize)));
        let errors = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let per = cfg.calls.div_ceil(cfg.concurrency.max(1));
        let mut tasks = Vec::new();
        for _ in 0..cfg.concurrency.max(1) {
            let (core, method, lat, errors) = (
                core.clone(),
                method.clone(),
                Arc::clone(&lat),
                Arc::clone(&errors),
            );
            let target = name.to_owned();
            tasks.push(tokio::spawn(async move {
                for _ in 0..per {
                    let t = Instant::now();
                    let r = core.call(&target, &method, vec![]).await;
                    let d = t.elapsed();
                    lat.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(d);
                    if r.is_err() {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let mut l = lat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        l.sort();
        let p99 = l
            .get((l.len() * 99 / 100).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default();
        let mut item = grade(
            &format!("latency:{method}"),
            p99.as_secs_f64() * 1000.0,
            [
                cfg.p99[0].0.as_secs_f64() * 1000.0,
                cfg.p99[1].0.as_secs_f64() * 1000.0,
            ],
            format!(
                "p99 {:.2}ms over {} calls",
                p99.as_secs_f64() * 1000.0,
                l.len()
            ),
            "ms",
        );
        let errs = errors.load(std::sync::atomic::Ordering::Relaxed);
        if errs > 0 {
            item.status = item.status.max(Status::Warn);
            item.detail = format!("{errs} of {} calls failed; {}", l.len(), item.detail);
        }
        items.push(item);
    }
    let after = core.module(name).ok();
    let crashed = after
        .as_ref()
        .is_none_or(|m| !m.state.is_loaded() || m.pid != pid0 || m.restarts > 0);
    items.push(Item {
        id: "crash_free".into(),
        status: if crashed { Status::Fail } else { Status::Pass },
        value: after
            .as_ref()
            .map(|m| m.state.as_str().to_owned())
            .unwrap_or_default(),
        detail: if crashed {
            format!(
                "it went down under load{}",
                after
                    .and_then(|m| m.last_exit)
                    .map(|x| format!(": {}", x.stderr_tail.join(" | ")))
                    .unwrap_or_default()
            )
        } else {
            format!(
                "same process after {} probe methods under load",
                probes.len()
            )
        },
    });
    items.push(Item {
        id: "limits".into(),
        status: if crashed { Status::Fail } else { Status::Pass },
        value: format!(
            "address space {} MiB, {} open files",
            cfg.limits.address_space.0 >> 20,
            cfg.limits.open_files
        ),
        detail: if crashed {
            "it did not stay up inside these limits".into()
        } else {
            "ran inside these limits".into()
        },
    });
    let denied: Vec<String> = denials
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|(c, _)| c == name)
        .map(|(_, t)| t.clone())
        .collect();
    let declared_perms: Vec<String> = manifest
        .permissions
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    items.push(if !denied.is_empty() {
        Item {
            id: "permissions".into(),
            status: Status::Fail,
            value: String::new(),
            detail: format!(
                "it called {} without declaring it (add to dependencies or permissions)",
                denied.join(", ")
            ),
        }
    } else if declared_perms.iter().any(|p| p == "core") {
        Item {
            id: "permissions".into(),
            status: Status::Warn,
            value: declared_perms.join(", "),
            detail: "declares `core`: it may load and unload modules".into(),
        }
    } else {
        Item {
            id: "permissions".into(),
            status: Status::Pass,
            value: if declared_perms.is_empty() {
                "none".into()
            } else {
                declared_perms.join(", ")
            },
            detail: "no call outside what it declares".into(),
        }
    });
    Ok(Report::new(
        name,
        &manifest.version.to_string(),
        &logos_pkg::manifest::host_target(),
        checker(),
        items,
    ))
}

fn checker() -> &'static str {
    concat!("logoscore ", env!("CARGO_PKG_VERSION"))
}
