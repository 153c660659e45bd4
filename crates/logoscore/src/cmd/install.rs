//! `logoscore install|uninstall|upgrade|rollback|pin|unpin|packages`: the modules installed
//! on this machine, from package files or registries.
//!
//! Every package goes through the store (`logos_pkg::Store`): verified (format, hashes,
//! signature under the policy, target) before a byte is written, added content-addressed,
//! then made active by an atomic switch. Registry installs resolve dependencies with PubGrub
//! over every configured registry's index (federated: the signature decides trust, not the
//! registry), preferring what is installed and honouring pins. When a core runs on this
//! package dir, switches go through its guard (`probation.rs`): a loaded module restarts on
//! the new version and is rolled back if it fails. `logos.lock` is rewritten after every
//! change; `install --locked` reproduces it byte for byte (root hashes). Never edits a
//! module's files; never decides trust itself (`Keyring::check_package` does).

use crate::error::Error;
use crate::packages::{Pkg, PkgArgs};
use crate::probation::{self, Action, Status};
use crate::{Ctx, output};
use logos_pkg::archive::Limits;
use logos_pkg::client::Client;
use logos_pkg::index::{Ping, Release};
use logos_pkg::lockfile::{Locked, Lockfile};
use logos_pkg::resolve::{Candidate, resolve};
use logos_pkg::store::{Entry, StoreLock};
use logos_pkg::{Manifest, Store};
use semver::{Version, VersionReq};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Package subcommands that change or list this machine's modules.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum InstallCommand {
    /// Install packages: a `.lgx` FILE, or NAME[@RANGE] from the registries (dependencies
    /// resolved with PubGrub). `@1.2.0` means ^1.2.0 as in Cargo; `@=1.2.0` exactly.
    Install {
        /// FILE.lgx or NAME[@RANGE]; none with --locked.
        #[arg(value_name = "FILE|NAME[@RANGE]")]
        targets: Vec<String>,
        /// Install exactly what `logos.lock` records (root hashes checked).
        #[arg(long)]
        locked: bool,
        /// The lockfile to read with --locked. [default: <pkg dir>/logos.lock]
        #[arg(long, value_name = "FILE")]
        lockfile: Option<PathBuf>,
        /// Wait until the probation of a loaded module ends.
        #[arg(long)]
        wait: bool,
    },
    /// Remove a module and all its versions (refused while a core has it loaded).
    Uninstall {
        /// The module.
        name: String,
    },
    /// Upgrade NAME (or every installed module) to the newest version its pins and
    /// dependents allow. A loaded module restarts on it and is rolled back if it fails to
    /// become ready or crashes within the probation window.
    Upgrade {
        /// One module. [default: all]
        name: Option<String>,
        /// Probation window. [default: packages.toml's `probation`, 30s]
        #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
        probation: Option<Duration>,
        /// Wait until the probation ends.
        #[arg(long)]
        wait: bool,
    },
    /// Switch NAME back to the version active before (no network needed).
    Rollback {
        /// The module.
        name: String,
    },
    /// Keep NAME at VERSION through upgrades (switching to it if installed).
    Pin {
        /// NAME@VERSION.
        #[arg(value_name = "NAME@VERSION")]
        spec: String,
    },
    /// Let upgrades move NAME again.
    Unpin {
        /// The module.
        name: String,
    },
    /// List installed modules: active version, pin, versions in the store, last switch.
    Packages {
        /// Re-hash every stored file and check every pointer.
        #[arg(long)]
        verify: bool,
    },
}

/// State of one command.
struct Op<'a> {
    ctx: &'a Ctx,
    p: Pkg,
    store: Store,
    warnings: Vec<String>,
    done: Vec<Json>,
    /// Registry each root came from in this command (for the lockfile).
    sources: BTreeMap<String, String>,
    progress: bool,
    wait: bool,
    window: Duration,
}

pub(crate) fn run(ctx: &Ctx, pkg: &PkgArgs, cmd: InstallCommand) -> Result<(), Error> {
    let p = Pkg::load(pkg)?;
    let store = p.store()?;
    let window = p.config.probation.0;
    let mut op = Op {
        ctx,
        store,
        warnings: Vec::new(),
        done: Vec::new(),
        sources: BTreeMap::new(),
        progress: !ctx.json && std::io::stderr().is_terminal(),
        wait: false,
        window,
        p,
    };
    crate::cmd::block_on(async move {
        let r = match cmd {
            InstallCommand::Install {
                targets,
                locked,
                lockfile,
                wait,
            } => {
                op.wait = wait;
                if locked {
                    if !targets.is_empty() {
                        return Err(Error::Usage("install --locked takes no packages: it installs what the lockfile records".into()));
                    }
                    install_locked(&mut op, lockfile).await
                } else if targets.is_empty() {
                    Err(Error::Usage(
                        "install needs FILE.lgx or NAME[@RANGE] (or --locked)".into(),
                    ))
                } else {
                    install(&mut op, &targets).await
                }
            }
            InstallCommand::Uninstall { name } => uninstall(&mut op, &name).await,
            InstallCommand::Upgrade {
                name,
                probation,
                wait,
            } => {
                op.wait = wait;
                if let Some(w) = probation {
                    op.window = w;
                }
                upgrade(&mut op, name).await
            }
            InstallCommand::Rollback { name } => rollback(&mut op, &name).await,
            InstallCommand::Pin { spec } => pin(&mut op, &spec).await,
            InstallCommand::Unpin { name } => {
                let lock = op.store.lock()?;
                op.store.set_pin(&lock, &name, None)?;
                op.done.push(json!({"name": name, "pinned": null}));
                Ok(())
            }
            InstallCommand::Packages { verify } => return packages(&op, verify),
        };
        finish(&mut op, r).await
    })
}

/// Prints what was done (or the failure with what was done first), rewrites the lockfile,
/// sends the adoption ping.
async fn finish(op: &mut Op<'_>, r: Result<(), Error>) -> Result<(), Error> {
    if !op.done.is_empty() {
        write_lockfile(op);
        ping(op).await;
    }
    for w in &op.warnings {
        eprintln!("warning: {w}");
    }
    match r {
        Ok(()) => {
            if op.ctx.json {
                output::json(
                    &json!({"status": "ok", "changes": op.done, "warnings": op.warnings}),
                    false,
                )?;
            }
            Ok(())
        }
        Err(e) => {
            let mut done = serde_json::Map::new();
            done.insert("changes".into(), Json::Array(op.done.clone()));
            Err(Error::Partial {
                error: Box::new(e),
                done,
            })
        }
    }
}

fn say(op: &Op<'_>, text: &str) {
    if !op.ctx.json {
        let _ = output::line(text);
    }
}

fn short(root: &str) -> &str {
    &root[..root.len().min(12)]
}

/// Verifies and stores a package; the signature and target are checked before any file is
/// written.
fn add(op: &mut Op<'_>, lock: &StoreLock, bytes: &[u8], label: &str) -> Result<Entry, Error> {
    let host = logos_pkg::manifest::host_target();
    let policy = op.p.config.policy;
    let ring = op.p.keyring.clone();
    let mut warning = None;
    let mut check = |m: &Manifest, b: &[u8], s: Option<&[u8]>| -> logos_pkg::Result<()> {
        if !m.runs_on(&host) {
            return Err(logos_pkg::Error::Refused {
                package: m.id(),
                entry: None,
                reason: format!(
                    "is built for {} and this machine is {host}",
                    m.targets.join(", ")
                ),
            });
        }
        warning = ring.check_package(m, b, s, policy)?;
        Ok(())
    };
    let bar = if op.progress {
        let b = indicatif::ProgressBar::new(bytes.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b.set_message(format!("verifying {label}"));
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let added = op.store.add(
        lock,
        bar.wrap_read(bytes),
        label,
        &Limits::default(),
        &mut check,
    );
    bar.finish_and_clear();
    let added = added?;
    if let Some(w) = warning {
        op.warnings.push(w);
    }
    Ok(added.entry)
}

fn quality_line(m: &Manifest) -> String {
    match &m.quality {
        Some(q) => {
            let mut s = format!("  quality: {}", q.summary());
            for i in q
                .items
                .iter()
                .filter(|i| i.status != logos_pkg::quality::Status::Pass)
            {
                s.push_str(&format!(
                    "\n    {}: {} {} {}",
                    i.status, i.id, i.value, i.detail
                ));
            }
            s
        }
        None => "  quality: not checked (no report in the package)".to_owned(),
    }
}

/// Makes `entry` active: through the running core's guard when there is one (restarting a
/// loaded module, with probation), else directly.
async fn switch(op: &mut Op<'_>, entry: &Entry, window: Duration) -> Result<(), Error> {
    let name = entry.manifest.name.clone();
    let before = op.store.active(&name);
    let before_version = before
        .as_ref()
        .and_then(|r| op.store.entry(r))
        .map(|e| e.manifest.version.to_string());
    if before.as_deref() == Some(entry.root.as_str()) {
        op.done.push(json!({"name": name, "version": entry.manifest.version.to_string(), "root": entry.root, "outcome": "unchanged"}));
        return Ok(());
    }
    let mut doc = json!({
        "name": name, "version": entry.manifest.version.to_string(), "root": entry.root,
        "signer": entry.manifest.signer.as_ref().map(|s| &s.name),
        "previous": before_version, "quality": entry.manifest.quality,
    });
    let outcome = if probation::guarded(op.store.dir()) {
        let rec = probation::new_record(
            &name,
            Action::Switch,
            before.clone().zip(before_version.clone()),
            Some((entry.root.clone(), entry.manifest.version.to_string())),
            window,
        );
        let deadline = op.ctx.timeout.unwrap_or(Duration::from_secs(300)) + window;
        let r = probation::request(op.store.dir(), rec, deadline, op.wait).await?;
        match r.status {
            Status::RolledBack | Status::Failed => {
                doc["outcome"] = json!(r.status);
                doc["reason"] = json!(r.reason);
                op.done.push(doc);
                return Err(Error::Usage(format!(
                    "{name} {} was {}: {}",
                    entry.manifest.version,
                    if r.status == Status::RolledBack {
                        format!(
                            "rolled back to {}",
                            before_version.as_deref().unwrap_or("the previous version")
                        )
                    } else {
                        "not started, and neither was the previous version".to_owned()
                    },
                    r.reason.unwrap_or_default()
                )));
            }
            s => s,
        }
    } else {
        let lock = op.store.lock()?;
        op.store.activate(&lock, &entry.root)?;
        Status::Switched
    };
    let text = match outcome {
        Status::Probation => format!(
            "restarted on it; on probation for {}s (rolled back automatically if it crashes)",
            window.as_secs()
        ),
        Status::Passed => "restarted on it; probation passed".to_owned(),
        _ => "active".to_owned(),
    };
    say(
        op,
        &format!(
            "{name} {}{} ({}, root {}, signed by {}): {text}\n{}",
            entry.manifest.version,
            before_version
                .as_ref()
                .map(|v| format!(" (was {v})"))
                .unwrap_or_default(),
            if entry.manifest.signer.is_some() {
                "verified"
            } else {
                "unsigned"
            },
            short(&entry.root),
            entry
                .manifest
                .signer
                .as_ref()
                .map_or("nobody", |s| s.name.as_str()),
            quality_line(&entry.manifest)
        ),
    );
    doc["outcome"] = json!(outcome);
    op.done.push(doc);
    Ok(())
}

async fn install(op: &mut Op<'_>, targets: &[String]) -> Result<(), Error> {
    let mut requests = Vec::new();
    let mut files = Vec::new();
    for t in targets {
        let path = Path::new(t);
        if t.ends_with(".lgx") || path.is_file() {
            files.push(path.to_path_buf());
        } else {
            requests.push(parse_request(t)?);
        }
    }
    let mut stored = Vec::new();
    for f in &files {
        let meta = std::fs::metadata(f)
            .map_err(|e| Error::io(format!("cannot read {}", f.display()), e))?;
        if meta.len() > Limits::default().max_compressed {
            return Err(Error::Usage(format!(
                "{} is larger than the package cap of {} bytes",
                f.display(),
                Limits::default().max_compressed
            )));
        }
        let bytes =
            std::fs::read(f).map_err(|e| Error::io(format!("cannot read {}", f.display()), e))?;
        let lock = op.store.lock()?;
        let e = add(op, &lock, &bytes, &f.display().to_string())?;
        drop(lock);
        op.sources.insert(e.root.clone(), "file".into());
        // Dependencies the file needs and this machine lacks come from the registries.
        for (dep, range) in &e.manifest.dependencies {
            let ok = op
                .store
                .active(dep)
                .and_then(|r| op.store.entry(&r))
                .is_some_and(|d| range.matches(&d.manifest.version));
            if !ok && !requests.iter().any(|(n, _)| n == dep) {
                if op.p.registries.is_empty() {
                    return Err(Error::Usage(format!(
                        "{} needs {dep} {range}, which is not installed; install it first or configure a registry",
                        e.manifest.id()
                    )));
                }
                requests.push((dep.clone(), range.clone()));
            }
        }
        stored.push(e);
    }
    if !requests.is_empty() {
        let exclude: BTreeSet<String> = stored.iter().map(|e| e.manifest.name.clone()).collect();
        install_from_registries(op, &requests, &exclude, false).await?;
    }
    for e in stored {
        let w = op.window;
        switch(op, &e, w).await?;
    }
    Ok(())
}

fn parse_request(t: &str) -> Result<(String, VersionReq), Error> {
    let (name, range) = match t.split_once('@') {
        Some((n, r)) => (n, r),
        None => (t, "*"),
    };
    logos_pkg::manifest::check_module_name(name)
        .map_err(|e| Error::Usage(format!("{t:?}: {e}; give FILE.lgx or NAME[@RANGE]")))?;
    let req = VersionReq::parse(range).map_err(|e| {
        Error::Usage(format!(
            "{t:?}: {range:?} is not a version range ({e}); e.g. calc@^1.2 or calc@=1.2.0"
        ))
    })?;
    Ok((name.to_owned(), req))
}

/// Every version of `names` and of their dependencies, transitively, from every registry.
async fn gather(
    clients: &[Client],
    names: &[String],
) -> Result<
    (
        Vec<Candidate>,
        BTreeMap<(String, Version), (usize, Release)>,
    ),
    Error,
> {
    let mut cands = Vec::new();
    let mut where_ = BTreeMap::new();
    let mut queue: Vec<String> = names.to_vec();
    let mut seen = BTreeSet::new();
    while let Some(name) = queue.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        for (i, c) in clients.iter().enumerate() {
            let Some(idx) = c.index(&name).await? else {
                continue;
            };
            for r in idx.versions {
                if where_.contains_key(&(name.clone(), r.version.clone())) {
                    continue; // the first registry listed wins for the same version
                }
                queue.extend(r.dependencies.keys().cloned());
                cands.push(Candidate {
                    name: name.clone(),
                    version: r.version.clone(),
                    dependencies: r.dependencies.clone(),
                });
                where_.insert((name.clone(), r.version.clone()), (i, r));
            }
        }
    }
    Ok((cands, where_))
}

/// Resolves and installs `requests` (plus dependencies) from the registries. Modules in
/// `exclude` are being installed from files. With `upgrade`, installed versions are not
/// preferred.
async fn install_from_registries(
    op: &mut Op<'_>,
    requests: &[(String, VersionReq)],
    exclude: &BTreeSet<String>,
    upgrade: bool,
) -> Result<(), Error> {
    let clients = op.p.clients()?;
    let names: Vec<String> = requests.iter().map(|(n, _)| n.clone()).collect();
    let (mut cands, where_) = gather(&clients, &names).await?;
    // What is installed is a candidate too (installs work offline when it suffices).
    for e in op.store.entries() {
        if !cands
            .iter()
            .any(|c| c.name == e.manifest.name && c.version == e.manifest.version)
        {
            cands.push(Candidate {
                name: e.manifest.name.clone(),
                version: e.manifest.version.clone(),
                dependencies: e.manifest.dependencies.clone(),
            });
        }
    }
    let mut pins: BTreeMap<String, Version> = BTreeMap::new();
    for i in op.store.installed() {
        if let Some(v) = i.pinned {
            pins.insert(i.name.clone(), v);
        }
    }
    let requested: BTreeSet<&String> = names.iter().collect();
    let mut prefer = pins.clone();
    if !upgrade {
        for i in op.store.installed() {
            if let Some(a) = &i.active
                && !requested.contains(&i.name)
            {
                prefer.entry(i.name.clone()).or_insert(a.version.clone());
            }
        }
    }
    let solution = match resolve(requests, &cands, &prefer) {
        Ok(s) => s,
        Err(_) if prefer != pins => resolve(requests, &cands, &pins)?,
        Err(e) => return Err(e.into()),
    };
    // Dependencies first, then what was asked for.
    let mut order: Vec<(&String, &Version)> = solution
        .iter()
        .filter(|(n, _)| !requested.contains(n))
        .collect();
    order.extend(solution.iter().filter(|(n, _)| requested.contains(n)));
    for (name, version) in order {
        if exclude.contains(name) {
            continue;
        }
        let active = op.store.active(name).and_then(|r| op.store.entry(&r));
        if active
            .as_ref()
            .is_some_and(|a| &a.manifest.version == version)
        {
            if requested.contains(name) {
                say(op, &format!("{name} {version} is installed and active"));
                op.done.push(
                    json!({"name": name, "version": version.to_string(), "outcome": "unchanged"}),
                );
            }
            continue;
        }
        let entry = match where_.get(&(name.clone(), version.clone())) {
            Some((i, rel)) => {
                let stored = op.store.entry(&rel.root);
                match stored {
                    Some(e) => e,
                    None => {
                        let bytes = clients[*i].download(name, rel, op.progress).await?;
                        let lock = op.store.lock()?;
                        let e = add(
                            op,
                            &lock,
                            &bytes,
                            &format!("{}/modules/{name}/{}", clients[*i].url(), rel.file),
                        )?;
                        if e.root != rel.root {
                            return Err(Error::Usage(format!(
                                "{} serves {name} {version} with root {} but its index says {}; refusing it",
                                clients[*i].url(),
                                e.root,
                                rel.root
                            )));
                        }
                        op.sources
                            .insert(e.root.clone(), clients[*i].url().to_owned());
                        e
                    }
                }
            }
            None => op
                .store
                .entries()
                .into_iter()
                .find(|e| &e.manifest.name == name && &e.manifest.version == version)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "{name} {version} was chosen but no registry or store has it"
                    ))
                })?,
        };
        let w = op.window;
        switch(op, &entry, w).await?;
    }
    Ok(())
}

async fn install_locked(op: &mut Op<'_>, lockfile: Option<PathBuf>) -> Result<(), Error> {
    let path = lockfile.unwrap_or_else(|| op.store.lockfile());
    let lock = Lockfile::load(&path)?;
    // The configured registries first, then the one each package was locked from: the
    // signature and the locked root hash decide what is accepted, not where it comes from.
    let mut urls = op.p.registries.clone();
    for l in &lock.packages {
        if op.store.entry(&l.root).is_none()
            && l.source.starts_with("http")
            && !urls.contains(&l.source)
        {
            urls.push(l.source.clone());
        }
    }
    let clients = urls
        .iter()
        .map(|u| Client::new(u))
        .collect::<Result<Vec<_>, _>>()?;
    for l in &lock.packages {
        let entry = match op.store.entry(&l.root) {
            Some(e) => e,
            None => {
                let mut found = None;
                for c in &clients {
                    if let Some(idx) = c.index(&l.name).await?
                        && let Some(rel) = idx.versions.into_iter().find(|r| r.version == l.version)
                    {
                        if rel.root != l.root {
                            return Err(Error::Usage(format!(
                                "{} serves {} {} with root {}, but {} records {}; refusing to install something else than what was locked",
                                c.url(),
                                l.name,
                                l.version,
                                rel.root,
                                path.display(),
                                l.root
                            )));
                        }
                        found = Some((c.clone(), rel));
                        break;
                    }
                }
                let (c, rel) = found.ok_or_else(|| {
                    Error::Usage(format!(
                        "{} {} (locked) is in none of the registries tried ({}); add the one it came from with --registry",
                        l.name,
                        l.version,
                        if urls.is_empty() { "none configured".to_owned() } else { urls.join(", ") }
                    ))
                })?;
                let bytes = c.download(&l.name, &rel, op.progress).await?;
                let slock = op.store.lock()?;
                let e = add(
                    op,
                    &slock,
                    &bytes,
                    &format!("{}/modules/{}/{}", c.url(), l.name, rel.file),
                )?;
                if e.root != l.root {
                    return Err(Error::Usage(format!(
                        "{} {}: downloaded root {} differs from the locked {}",
                        l.name, l.version, e.root, l.root
                    )));
                }
                op.sources.insert(e.root.clone(), c.url().to_owned());
                e
            }
        };
        let w = op.window;
        switch(op, &entry, w).await?;
    }
    Ok(())
}

async fn upgrade(op: &mut Op<'_>, name: Option<String>) -> Result<(), Error> {
    let installed = op.store.installed();
    let names: Vec<String> = match name {
        Some(n) => {
            if !installed.iter().any(|i| i.name == n && i.active.is_some()) {
                return Err(Error::Usage(format!(
                    "{n} is not installed; `logoscore install {n}`"
                )));
            }
            vec![n]
        }
        None => installed
            .iter()
            .filter(|i| i.active.is_some())
            .map(|i| i.name.clone())
            .collect(),
    };
    let requests: Vec<(String, VersionReq)> = names
        .iter()
        .map(|n| {
            let pinned = installed
                .iter()
                .find(|i| &i.name == n)
                .and_then(|i| i.pinned.clone());
            let req = match pinned {
                Some(v) => VersionReq::parse(&format!("={v}")).unwrap_or(VersionReq::STAR),
                None => VersionReq::STAR,
            };
            (n.clone(), req)
        })
        .collect();
    if requests.is_empty() {
        say(op, "nothing installed to upgrade");
        return Ok(());
    }
    install_from_registries(op, &requests, &BTreeSet::new(), true).await
}

async fn rollback(op: &mut Op<'_>, name: &str) -> Result<(), Error> {
    let prev = op.store.previous(name).ok_or_else(|| {
        Error::Usage(format!(
            "{name} has no previous version in the store to roll back to (see `logoscore packages`)"
        ))
    })?;
    let entry = op
        .store
        .entry(&prev)
        .ok_or_else(|| Error::Usage(format!("{name}: version {prev} vanished from the store")))?;
    // A rollback is not probed: it goes back to what ran before.
    switch(op, &entry, Duration::ZERO).await
}

async fn pin(op: &mut Op<'_>, spec: &str) -> Result<(), Error> {
    let (name, version) = spec
        .split_once('@')
        .and_then(|(n, v)| Some((n.to_owned(), Version::parse(v).ok()?)))
        .ok_or_else(|| {
            Error::Usage(format!("{spec:?}: pin takes NAME@VERSION, e.g. calc@1.2.0"))
        })?;
    {
        let lock = op.store.lock()?;
        op.store.set_pin(&lock, &name, Some(version.clone()))?;
    }
    say(op, &format!("{name} pinned at {version}"));
    op.done
        .push(json!({"name": name, "pinned": version.to_string()}));
    let active = op.store.active(&name).and_then(|r| op.store.entry(&r));
    if active.is_some_and(|a| a.manifest.version == version) {
        return Ok(());
    }
    match op
        .store
        .entries()
        .into_iter()
        .find(|e| e.manifest.name == name && e.manifest.version == version)
    {
        Some(e) => switch(op, &e, op.window).await,
        None => {
            let req = VersionReq::parse(&format!("={version}")).unwrap_or(VersionReq::STAR);
            install_from_registries(op, &[(name, req)], &BTreeSet::new(), false).await
        }
    }
}

async fn uninstall(op: &mut Op<'_>, name: &str) -> Result<(), Error> {
    if probation::guarded(op.store.dir()) {
        let rec = probation::new_record(name, Action::Uninstall, None, None, Duration::ZERO);
        let r = probation::request(op.store.dir(), rec, Duration::from_secs(60), false).await?;
        if r.status != Status::Removed {
            return Err(Error::Usage(format!(
                "{name} was not uninstalled: {}",
                r.reason.unwrap_or_default()
            )));
        }
    } else {
        let lock = op.store.lock()?;
        op.store.uninstall(&lock, name)?;
    }
    say(
        op,
        &format!("{name} uninstalled (every version removed from the store)"),
    );
    op.done.push(json!({"name": name, "outcome": "removed"}));
    Ok(())
}

fn write_lockfile(op: &Op<'_>) {
    let path = op.store.lockfile();
    let old = Lockfile::load(&path).unwrap_or_default();
    let packages = op
        .store
        .installed()
        .into_iter()
        .filter_map(|i| {
            let a = i.active?;
            let entry = op.store.entry(&a.root)?;
            let source = op
                .sources
                .get(&a.root)
                .cloned()
                .or_else(|| {
                    old.packages
                        .iter()
                        .find(|l| l.root == a.root)
                        .map(|l| l.source.clone())
                })
                .unwrap_or_else(|| "file".into());
            Some(Locked {
                name: i.name,
                version: a.version,
                root: a.root,
                source,
                signer: entry.manifest.signer.map(|s| s.name).unwrap_or_default(),
            })
        })
        .collect();
    if let Err(e) = (Lockfile {
        version: 1,
        packages,
    })
    .save(&path)
    {
        eprintln!("warning: cannot write {}: {e}", path.display());
    }
}

async fn ping(op: &Op<'_>) {
    let Some(id) = op.p.install_id() else { return };
    let modules: Vec<String> = op
        .store
        .installed()
        .into_iter()
        .filter_map(|i| i.active.map(|a| format!("{}@{}", i.name, a.version)))
        .collect();
    for url in &op.p.registries {
        if let Ok(c) = Client::new(url)
            && let Err(e) = c
                .ping(&Ping {
                    install_id: id.clone(),
                    modules: modules.clone(),
                })
                .await
        {
            tracing::debug!("adoption ping to {url} failed: {e}");
        }
    }
}

fn packages(op: &Op<'_>, verify: bool) -> Result<(), Error> {
    let list = op.store.installed();
    // Under the lock: what an interrupted install left is cleared first, as any change would.
    let problems = if verify {
        let _lock = op.store.lock()?;
        op.store.verify()
    } else {
        Vec::new()
    };
    if op.ctx.json {
        let items: Vec<Json> = list
            .iter()
            .map(|i| {
                let last = probation::read(op.store.dir(), &i.name);
                json!({"name": i.name, "active": i.active, "pinned": i.pinned.as_ref().map(ToString::to_string),
                       "versions": i.versions, "previous": i.previous,
                       "last_switch": last.map(|r| json!({"status": r.status, "reason": r.reason, "from": r.from_version, "to": r.to_version}))})
            })
            .collect();
        let mut doc = json!({"status": "ok", "packages": items, "dir": op.store.dir()});
        if verify {
            doc["consistent"] = json!(problems.is_empty());
            doc["problems"] = json!(problems);
        }
        output::json(&doc, false)?;
    } else {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|i| {
                let last = probation::read(op.store.dir(), &i.name)
                    .map(|r| {
                        let status = serde_json::to_value(r.status)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default();
                        format!(
                            "{status}{}",
                            r.reason
                                .map(|x| format!(": {}", x.lines().next().unwrap_or_default()))
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or_else(|| "-".into());
                vec![
                    i.name.clone(),
                    i.active.as_ref().map_or("-".into(), |a| {
                        format!("{} ({})", a.version, short(&a.root))
                    }),
                    i.pinned.as_ref().map_or("-".into(), ToString::to_string),
                    i.versions
                        .iter()
                        .map(|v| v.version.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    last,
                ]
            })
            .collect();
        if rows.is_empty() {
            output::line(&format!(
                "no packages installed in {}",
                op.store.dir().display()
            ))?;
        } else {
            output::line(&output::table(
                &["NAME", "ACTIVE", "PINNED", "IN STORE", "LAST SWITCH"],
                &rows,
            ))?;
        }
        if verify {
            if problems.is_empty() {
                output::line(
                    "store verified: every file matches its hash, every pointer names a stored package",
                )?;
            } else {
                for p in &problems {
                    output::line(&format!("problem: {p}"))?;
                }
            }
        }
    }
    if verify && !problems.is_empty() {
        return Err(Error::Usage(format!(
            "the store has {} problem(s)",
            problems.len()
        )));
    }
    Ok(())
}
