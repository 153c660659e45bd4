//! Spare hosts (docs/architecture.md, "Spare hosts"; issue 17): after a library module's
//! start the core keeps one `logos_host --spare` ready, and the next library module's start
//! runs in it. Checked with real cores and processes: a module started in the spare serves
//! calls and carries what a cold start gives it (no_new_privs, the seccomp filter, its
//! limits, its capabilities, its own cgroup, its own process group); a spare that died while
//! waiting, or whose `logos_host` was replaced, is not used and the start goes the cold way;
//! `spare_host(false)` starts none; shutdown leaves no spare and no cgroup behind.
//!
//! Each test runs its own copy of `logos_host`, so the spares of tests running in parallel in
//! this process (all children of it) are told apart by their program's path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_core::{Core, ModuleSettings};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{World, target_dir, text, wait_for};

const WITHIN: Duration = Duration::from_secs(20);

/// A copy of the built `logos_host` in this test's dir.
fn own_host(w: &World) -> PathBuf {
    let host = w.dir.path().join("bin/logos_host");
    std::fs::create_dir_all(host.parent().unwrap()).unwrap();
    std::fs::copy(target_dir().join("logos_host"), &host).unwrap();
    host
}

/// The command line of `pid`, arguments joined by spaces.
fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Live (not zombie) spares of `host` among this process's children.
fn spares(host: &Path) -> Vec<u32> {
    let me = std::process::id().to_string();
    let wanted = format!("{} --spare ", host.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid …": comm may hold spaces, so split after its ')'.
            let rest: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().collect())
                .unwrap_or_default();
            rest.first() != Some(&"Z") && rest.get(1) == Some(&me.as_str())
        })
        .filter(|pid| cmdline(*pid) == wanted)
        .collect()
}

/// Waits until exactly one spare of `host` waits and returns its pid. A module that runs in
/// a spare keeps the spare's command line: the core's modules are left out.
async fn one_spare(host: &Path, core: &Core) -> u32 {
    let waiting = || -> Vec<u32> {
        let modules: Vec<u32> = core.modules().iter().filter_map(|m| m.pid).collect();
        spares(host)
            .into_iter()
            .filter(|p| !modules.contains(p))
            .collect()
    };
    wait_for("a spare host", WITHIN, || waiting().len() == 1).await;
    waiting()[0]
}

fn pid_of(core: &Core, name: &str) -> u32 {
    core.modules()
        .into_iter()
        .find(|m| m.name == name)
        .and_then(|m| m.pid)
        .unwrap_or_else(|| panic!("{name} runs"))
}

/// The lines of `/proc/PID/status` a start must set the same whichever way it went.
fn confinement(pid: u32) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    status
        .lines()
        .filter(|l| {
            [
                "NoNewPrivs",
                "Seccomp",
                "CapInh",
                "CapPrm",
                "CapEff",
                "CapBnd",
                "CapAmb",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .chain(limits.lines().filter(|l| l.starts_with("Max open files")))
        .map(str::to_owned)
        .collect()
}

/// The cgroup path of `pid` (cgroup v2: the `0::` line).
fn cgroup_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        .unwrap_or_default()
}

/// Where the cgroup v2 path `rel` (as `/proc/PID/cgroup` gives it) is mounted here.
fn cgroup_dir(rel: &str) -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let (root, point) = mounts
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            right.starts_with("cgroup2 ").then(|| {
                let f: Vec<&str> = left.split_whitespace().collect();
                (f[3].to_owned(), f[4].to_owned())
            })
        })
        .expect("a cgroup2 mount");
    let inner = rel.strip_prefix(root.as_str()).unwrap_or(rel);
    Path::new(&point).join(inner.trim_start_matches('/'))
}

fn limited() -> ModuleSettings {
    let mut s = ModuleSettings::default();
    s.limits.open_files = Some(200);
    s
}

#[tokio::test]
async fn a_restarted_library_module_runs_in_the_spare_confined_as_a_cold_start() {
    let mut w = World::new();
    w.stage("probe");
    let host = own_host(&w);
    let core = w
        .start_with(
            w.builder()
                .host_binary(&host)
                .module("probe", limited())
                .heartbeat(std::time::Duration::from_millis(50)),
        )
        .await;
    core.load("probe").await.expect("load");
    let cold = pid_of(&core, "probe");
    assert!(
        cmdline(cold).contains(" --module "),
        "the first start is cold: {}",
        cmdline(cold)
    );
    let cold_confinement = confinement(cold);
    let cold_cgroup = cgroup_of(cold);

    let spare = one_spare(&host, &core).await;
    // What the spare holds while it waits: no module, its own cgroup.
    assert_ne!(spare, cold);
    let before = core.starts();
    assert_eq!((before.spare, before.cold), (0, 1));
    core.reload("probe").await.expect("reload");
    let after = core.starts();
    assert_eq!(
        (after.spare, after.cold),
        (1, 1),
        "counted as a start in a spare"
    );
    let warm = pid_of(&core, "probe");
    assert_eq!(warm, spare, "the restart ran in the spare");
    assert_eq!(
        core.call("probe", "echo", vec![text("through the spare")])
            .await
            .expect("call"),
        text("through the spare")
    );
    assert_eq!(
        confinement(warm),
        cold_confinement,
        "a module in a spare is confined as one started cold"
    );
    assert!(
        cold_confinement.iter().any(|l| l.contains("Max open files")
            && l.split_whitespace().filter(|w| *w == "200").count() == 2),
        "{cold_confinement:?}"
    );
    assert!(
        cold_confinement.contains(&"NoNewPrivs:\t1".to_owned()),
        "{cold_confinement:?}"
    );
    if !cold_cgroup.is_empty() && cold_cgroup != cgroup_of(std::process::id()) {
        // A cgroup of its own: the one the spare was created in (cgroup v2 renames none).
        let warm_cgroup = cgroup_of(warm);
        assert!(warm_cgroup.contains("spare-"), "{warm_cgroup}");
        let procs = cgroup_dir(&warm_cgroup).join("cgroup.procs");
        assert_eq!(
            std::fs::read_to_string(&procs).unwrap().trim(),
            warm.to_string(),
            "the module alone in it"
        );
    }
    // Nothing of the order is left open in the module: not the ruleset, not the order
    // socket (fd 4 is the listening socket now).
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{warm}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|t| t.display().to_string())
        .collect();
    assert!(
        !fds.iter().any(|t| t.contains("landlock")),
        "the ruleset leaked into the module: {fds:?}"
    );
    let inode = |fd: u32| {
        std::fs::metadata(format!("/proc/{warm}/fd/{fd}"))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
    };
    let listening = std::fs::read_to_string("/proc/net/unix").unwrap();
    let sock = w.runtime.join("modules/probe.sock").display().to_string();
    let listener_inode = listening
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        // Flags 00010000: accepting connections (accepted ones carry the path too).
        .find(|f| f.get(3) == Some(&"00010000") && f.last() == Some(&sock.as_str()))
        .and_then(|f| f.get(6).map(|i| (*i).to_owned()));
    assert_eq!(
        inode(4).ok().map(|i| i.to_string()),
        listener_inode,
        "fd 4 is the module's listening socket"
    );
    // It mapped its heartbeat page (made with the spare, its fd 5 until then), and counts
    // there.
    let maps = std::fs::read_to_string(format!("/proc/{warm}/maps")).unwrap();
    assert!(maps.contains("/memfd:logos-beat"), "{maps}");
    let beats = core.heartbeats().page;
    wait_for(
        "beats on the page of the module in the spare",
        WITHIN,
        || core.heartbeats().page >= beats + 3,
    )
    .await;
    // Its own process group, as a cold start has.
    let stat = std::fs::read_to_string(format!("/proc/{warm}/stat")).unwrap();
    let pgrp = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(2);
    assert_eq!(pgrp, Some(warm.to_string().as_str()), "{stat}");

    // A new spare is made ready for the next start; shutdown lets it go with its cgroup.
    let next = one_spare(&host, &core).await;
    assert_ne!(next, warm);
    let next_cgroup = cgroup_of(next);
    core.shutdown().await;
    wait_for("the spare gone", WITHIN, || spares(&host).is_empty()).await;
    if next_cgroup.contains("spare-") {
        let dir = cgroup_dir(&next_cgroup);
        wait_for("the spare's cgroup removed", WITHIN, || !dir.exists()).await;
    }
}

#[tokio::test]
async fn a_dead_spare_or_one_of_a_replaced_host_is_not_used() {
    let mut w = World::new();
    w.stage("probe");
    let host = own_host(&w);
    let core = w.start_with(w.builder().host_binary(&host)).await;
    core.load("probe").await.expect("load");

    // Killed while it waits: the next start goes the cold way and works.
    let dead = one_spare(&host, &core).await;
    support::signal(dead, libc::SIGKILL);
    wait_for("the spare dead", WITHIN, || !spares(&host).contains(&dead)).await;
    core.reload("probe")
        .await
        .expect("reload after the spare died");
    let pid = pid_of(&core, "probe");
    assert!(cmdline(pid).contains(" --module "), "{}", cmdline(pid));
    assert_eq!(
        core.call("probe", "echo", vec![text("cold")])
            .await
            .unwrap(),
        text("cold")
    );

    // logos_host replaced (as an upgrade does: a new file renamed over the old): the spare
    // runs the old program, so it is let go and the start goes the cold way.
    let stale = one_spare(&host, &core).await;
    let fresh = host.with_file_name("logos_host.new");
    std::fs::copy(target_dir().join("logos_host"), &fresh).unwrap();
    std::fs::rename(&fresh, &host).unwrap();
    core.reload("probe")
        .await
        .expect("reload after the upgrade");
    let pid = pid_of(&core, "probe");
    assert_ne!(pid, stale);
    assert!(cmdline(pid).contains(" --module "), "{}", cmdline(pid));
    wait_for("the stale spare gone", WITHIN, || {
        !spares(&host).contains(&stale)
    })
    .await;
    assert_eq!(
        core.call("probe", "echo", vec![text("upgraded")])
            .await
            .unwrap(),
        text("upgraded")
    );
    core.shutdown().await;
}

#[tokio::test]
async fn with_spare_host_off_every_start_is_cold() {
    let mut w = World::new();
    w.stage("probe");
    let host = own_host(&w);
    let core = w
        .start_with(w.builder().host_binary(&host).spare_host(false))
        .await;
    core.load("probe").await.expect("load");
    core.reload("probe").await.expect("reload");
    let pid = pid_of(&core, "probe");
    assert!(cmdline(pid).contains(" --module "), "{}", cmdline(pid));
    assert!(spares(&host).is_empty());
    assert_eq!(core.starts().spare, 0);
    assert_eq!(core.starts().cold, 2);
    core.shutdown().await;
}

#[tokio::test]
async fn a_logos_host_without_spare_is_found_out_once_and_starts_go_cold() {
    use std::os::unix::fs::PermissionsExt;
    let mut w = World::new();
    w.stage("probe");
    // An older logos_host beside this core: `--spare` is a usage error to it (exit 2), and
    // it runs modules as ever. The real host sits in the module's dir, which a confined
    // module may execute from.
    let real = w.modules.join("probe/logos_host_real");
    std::fs::copy(target_dir().join("logos_host"), &real).unwrap();
    let attempts = w.dir.path().join("spare-attempts");
    let host = w.dir.path().join("bin/logos_host");
    std::fs::create_dir_all(host.parent().unwrap()).unwrap();
    std::fs::write(
        &host,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --spare ]; then echo x >> '{}'; echo \"error: unexpected argument '--spare'\" >&2; exit 2; fi\nexec '{}' \"$@\"\n",
            attempts.display(),
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755)).unwrap();
    let core = w.start_with(w.builder().host_binary(&host)).await;

    core.load("probe").await.expect("load");
    // The spare made after it exits at once; the next start finds it gone, goes cold, and
    // no spare of this logos_host is made again: a start after that waits for no spare and
    // the host was asked for one only once.
    for round in 0..3 {
        core.reload("probe").await.expect("reload");
        let pid = pid_of(&core, "probe");
        assert!(
            cmdline(pid).contains(" --module "),
            "round {round}: {}",
            cmdline(pid)
        );
        assert_eq!(
            core.call("probe", "echo", vec![text("cold")])
                .await
                .unwrap(),
            text("cold")
        );
    }
    let asked = std::fs::read_to_string(&attempts).unwrap_or_default();
    assert_eq!(
        asked.lines().count(),
        1,
        "spares asked of an older logos_host"
    );
    core.shutdown().await;
}
