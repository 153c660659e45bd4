//! Packages end to end with the real binaries: build → sign → publish (with a real quality
//! check) → search → install → load → call; the registry refusing an overwrite and an
//! unsigned package; `install --locked` reproducing the same root hashes in a second package
//! dir; a PubGrub conflict naming its chain; an install killed with SIGKILL at each stage
//! leaving the old version active and the store consistent; and the automatic rollback of a
//! bad upgrade (fails at start; crashes within the probation window). Every registry listens
//! on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{COMMAND, Daemon, Outcome, Proc, World, finish, wait_for};

/// A world with its own package dir and package config dir.
struct Pkg {
    w: World,
    pkg: PathBuf,
    cfg: PathBuf,
}

impl Pkg {
    fn new() -> Pkg {
        let w = World::new();
        let pkg = w.dir.path().join("pkg");
        let cfg = w.dir.path().join("pkgcfg");
        Pkg { w, pkg, cfg }
    }

    fn cmd(&self, pkg_dir: &Path) -> Command {
        let mut c = self.w.command();
        c.env("LOGOS_PKG_DIR", pkg_dir)
            .env("LOGOS_PKG_CONFIG", &self.cfg)
            .env_remove(logos_pkg::store::PAUSE_ENV);
        c
    }

    fn run_in(&self, pkg_dir: &Path, args: &[&str]) -> Outcome {
        let mut c = self.cmd(pkg_dir);
        c.args(args);
        finish(c, COMMAND)
    }

    fn run(&self, args: &[&str]) -> Outcome {
        self.run_in(&self.pkg, args)
    }

    #[track_caller]
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let o = self.run(&all);
        o.ok();
        o.json()
    }

    /// A module dir whose main is a shell script (cheap packages for resolution tests).
    fn script(&self, name: &str, version: &str, deps: &str, body: &str) -> PathBuf {
        let d = self
            .w
            .dir
            .path()
            .join("src")
            .join(format!("{name}-{version}"));
        std::fs::create_dir_all(&d).expect("src dir");
        std::fs::write(
            d.join("metadata.json"),
            format!(r#"{{"name":"{name}","version":"{version}","description":"test module","main":"run.sh","dependencies":{deps}}}"#),
        )
        .expect("metadata");
        std::fs::write(d.join("run.sh"), format!("#!/bin/sh\n{body}\n")).expect("script");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(d.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        d
    }

    /// A module dir holding `pyecho` (a real protocol speaker, `echo` among its methods) as
    /// module `name` at `version`: its hello must say the metadata's version, so this cannot be
    /// the built library of a Rust example, whose version is its Cargo.toml's.
    fn python(&self, name: &str, version: &str) -> PathBuf {
        let d = self
            .w
            .dir
            .path()
            .join("src")
            .join(format!("{name}-{version}"));
        std::fs::create_dir_all(&d).expect("src dir");
        std::fs::write(
            d.join("metadata.json"),
            format!(r#"{{"name":"{name}","version":"{version}","description":"test module","main":"pyecho.py"}}"#),
        )
        .expect("metadata");
        let source = logos_testkit::workspace().join("modules/pyecho/pyecho.py");
        let code = std::fs::read_to_string(&source).expect("pyecho.py");
        let code = code.replacen(
            "VERSION = \"1.0.0\"",
            &format!("VERSION = \"{version}\""),
            1,
        );
        std::fs::write(d.join("pyecho.py"), code).expect("pyecho.py");
        // pyecho imports the Python SDK from its own dir, as staging lays it out.
        logos_testkit::copy_tree(
            &logos_testkit::workspace().join("sdk/python/logos_module"),
            &d.join("logos_module"),
        );
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(d.join("pyecho.py"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        d
    }

    /// A module dir holding the built library of example module `example` under metadata
    /// that says `version` (a real module for a core to run). `logos_host` refuses a version
    /// other than the library's own (its Cargo.toml's, 1.0.0 for the examples) at load.
    fn real(&self, example: &str, version: &str) -> PathBuf {
        let staged = self.w.dir.path().join("staged").join(version);
        logos_testkit::stage_module(&staged, example);
        let d = staged.join(example);
        let meta = std::fs::read_to_string(d.join("metadata.json")).expect("metadata");
        let meta = meta.replacen(
            "\"version\": \"1.0.0\"",
            &format!("\"version\": \"{version}\""),
            1,
        );
        std::fs::write(d.join("metadata.json"), meta).expect("metadata");
        d
    }

    #[track_caller]
    fn pack(&self, dir: &Path, out: &str) -> PathBuf {
        let out = self.w.dir.path().join(out);
        self.run(&[
            "pack",
            &dir.display().to_string(),
            "-o",
            &out.display().to_string(),
        ])
        .ok();
        out
    }

    /// `run -m <pkg>/modules [-m extra] --load NAME`.
    fn daemon(&self, extra: Option<&Path>, load: &str) -> Daemon {
        let mut c = self.cmd(&self.pkg);
        c.args(["--json", "run", "-m"])
            .arg(self.pkg.join("modules"));
        if let Some(e) = extra {
            c.arg("-m").arg(e);
        }
        c.arg("--data-dir").arg(&self.w.data).args(["--load", load]);
        let mut d = Daemon::spawn(c);
        d.ready = d.wait_ready();
        d
    }

    fn active_root(&self, pkg_dir: &Path, name: &str) -> Option<String> {
        let mut c = self.cmd(pkg_dir);
        c.args(["--json", "packages"]);
        let doc = finish(c, COMMAND).json();
        doc["packages"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)?["active"]["root"]
            .as_str()
            .map(str::to_owned)
    }
}

/// `logoscore registry serve` on 127.0.0.1, stopped on drop.
struct Registry {
    proc: Proc,
    url: String,
}

impl Registry {
    fn start(p: &Pkg) -> Registry {
        Registry::start_named(p, "registry")
    }

    fn start_named(p: &Pkg, dir: &str) -> Registry {
        let mut c = p.cmd(&p.pkg);
        c.args([
            "--json",
            "registry",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--dir",
        ])
        .arg(p.w.dir.path().join(dir));
        let proc = Proc::spawn(&mut c);
        let line = proc
            .next_line(COMMAND)
            .unwrap_or_else(|| panic!("registry did not start:\n{}", proc.stderr_text()));
        let doc: serde_json::Value = serde_json::from_str(&line).expect("readiness line");
        let url = doc["url"].as_str().expect("url").to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        Registry { proc, url }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.proc.signal(rustix::process::Signal::TERM);
        if self.proc.wait(support::EXIT).is_none() {
            self.proc.kill();
        }
    }
}

#[test]
fn round_trip_publish_install_load_call_lock_and_conflict() {
    let p = Pkg::new();
    p.run(&["key", "new", "alice"]).ok();
    let reg = Registry::start(&p);
    let r = reg.url.as_str();

    // Build and sign the real calc module, publish it: the check runs it in a private core.
    let calc = p.pack(&p.real("calc", "1.0.0"), "calc.lgx");
    let out = p.json(&["publish", &calc.display().to_string(), "--registry", r]);
    assert_eq!(out["quality"]["status"], "pass", "{out}");
    assert!(
        out["quality"]["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|x| x["id"] == "start_time"))
    );
    // Never twice.
    let again = p.run(&[
        "publish",
        &calc.display().to_string(),
        "--registry",
        r,
        "--no-check",
    ]);
    again.expect_code(1);
    assert!(
        again.stderr.contains("409") && again.stderr.contains("never overwritten"),
        "{}",
        again.stderr
    );
    // Unsigned packages are refused.
    let unsigned = p.w.dir.path().join("unsigned.lgx");
    p.run(&[
        "pack",
        &p.script("calc", "9.0.0", "{}", "exit 0")
            .display()
            .to_string(),
        "--unsigned",
        "-o",
        &unsigned.display().to_string(),
    ])
    .ok();
    // Publish unpacks the package into a temp dir to read it: gone on a refusal too.
    let tmp = p.w.dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut c = p.cmd(&p.pkg);
    c.env("TMPDIR", &tmp).args([
        "publish",
        &unsigned.display().to_string(),
        "--registry",
        r,
        "--no-check",
    ]);
    let o = finish(c, COMMAND);
    o.expect_code(1);
    assert!(o.stderr.contains("not signed"), "{}", o.stderr);
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "publish left {left:?} behind");
    let o = p.run(&["install", &unsigned.display().to_string()]);
    o.expect_code(1);
    assert!(
        o.stderr.contains("is not signed") && o.stderr.contains("policy require"),
        "{}",
        o.stderr
    );

    let found = p.json(&["search", "arith", "--registry", r]);
    assert_eq!(found["results"][0]["name"], "calc", "{found}");
    assert_eq!(found["results"][0]["quality"], "pass");

    // Adoption pings are opt-in: this operator opts in.
    std::fs::create_dir_all(&p.cfg).expect("pkg config dir");
    std::fs::write(p.cfg.join("packages.toml"), "ping = true\n").expect("packages.toml");
    let inst = p.json(&["install", "calc", "--registry", r]);
    assert_eq!(inst["changes"][0]["name"], "calc", "{inst}");
    assert_eq!(
        inst["changes"][0]["quality"]["status"], "pass",
        "the report is shown at install"
    );
    let listed = p.json(&["packages", "--verify"]);
    assert_eq!(listed["consistent"], true, "{listed}");

    // The installed module runs in a real core.
    let _d = p.daemon(None, "calc");
    assert_eq!(
        p.w.cli(&["call", "calc", "add", "2", "3"])
            .ok()
            .stdout
            .trim(),
        "5"
    );

    // Reviews are signed; show verifies them.
    p.run(&[
        "review",
        "calc",
        "1.0.0",
        "--stars",
        "5",
        "--text",
        "does what it says",
        "--registry",
        r,
    ])
    .ok();
    let shown = p.json(&["show", "calc", "--registry", r]);
    let reg0 = &shown["registries"][0];
    assert_eq!(reg0["reviews"][0]["verified"], true, "{shown}");
    assert_eq!(reg0["downloads"], 1, "{shown}");
    assert_eq!(reg0["active_installs"], 1, "{shown}");

    // Federated: a second registry serves a module that needs calc; both are asked.
    let reg2 = Registry::start_named(&p, "registry2");
    let extra = p.pack(
        &p.script("extra", "1.0.0", r#"{"calc":"^1"}"#, "exit 0"),
        "extra.lgx",
    );
    p.run(&[
        "publish",
        &extra.display().to_string(),
        "--registry",
        &reg2.url,
        "--no-check",
    ])
    .ok();
    let inst = p.json(&["install", "extra", "--registry", r, "--registry", &reg2.url]);
    let names: Vec<&str> = inst["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["extra"], "calc is installed already: {inst}");

    // logos.lock reproduces the same roots in a second package dir.
    let second = p.w.dir.path().join("pkg2");
    let lock = p.pkg.join("logos.lock");
    p.run_in(
        &second,
        &[
            "install",
            "--locked",
            "--lockfile",
            &lock.display().to_string(),
            "--registry",
            r,
        ],
    )
    .ok();
    assert_eq!(
        p.active_root(&second, "calc"),
        p.active_root(&p.pkg, "calc")
    );
    assert!(p.active_root(&second, "calc").is_some());

    // A conflict names the chain: app-a needs lib ^1, app-b needs lib ^2.
    for (name, version, deps) in [
        ("lib", "1.0.0", "{}"),
        ("lib", "2.0.0", "{}"),
        ("app-a", "1.0.0", r#"{"lib":"^1"}"#),
        ("app-b", "1.0.0", r#"{"lib":"^2"}"#),
    ] {
        let f = p.pack(
            &p.script(name, version, deps, "exit 0"),
            &format!("{name}-{version}.lgx"),
        );
        p.run(&[
            "publish",
            &f.display().to_string(),
            "--registry",
            r,
            "--no-check",
        ])
        .ok();
    }
    let o = p.run(&["install", "app-a", "app-b", "--registry", r]);
    o.expect_code(1);
    for part in ["app-a", "app-b", "lib", "depends on"] {
        assert!(o.stderr.contains(part), "{part} missing:\n{}", o.stderr);
    }
    // Dependencies come along.
    let inst = p.json(&["install", "app-b", "--registry", r]);
    let names: Vec<&str> = inst["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["lib", "app-b"], "{inst}");
}

#[test]
fn an_install_killed_at_any_stage_leaves_the_store_consistent() {
    let p = Pkg::new();
    p.run(&["key", "new", "alice"]).ok();
    let v1 = p.pack(&p.script("svc", "1.0.0", "{}", "exit 0"), "v1.lgx");
    let v2 = p.pack(&p.script("svc", "2.0.0", "{}", "exit 0"), "v2.lgx");
    p.run(&["install", &v1.display().to_string()]).ok();
    let root1 = p.active_root(&p.pkg, "svc").expect("v1 active");
    for (phase, expect_new) in [("unpacked", false), ("stored", false), ("switched", true)] {
        let mut c = p.cmd(&p.pkg);
        c.env(logos_pkg::store::PAUSE_ENV, phase)
            .args(["install", &v2.display().to_string()]);
        let mut proc = Proc::spawn(&mut c);
        proc.wait_stderr(&format!("paused at {phase}"), COMMAND);
        proc.kill(); // SIGKILL
        let listed = p.json(&["packages", "--verify"]);
        assert_eq!(listed["consistent"], true, "{phase}: {listed}");
        let active = p.active_root(&p.pkg, "svc").expect("a version is active");
        assert_eq!(active != root1, expect_new, "{phase}: active {active}");
        // Back to v1 for the next round, offline.
        if expect_new {
            p.run(&["rollback", "svc"]).ok();
            assert_eq!(
                p.active_root(&p.pkg, "svc"),
                Some(root1.clone()),
                "rollback returns to v1"
            );
        }
    }
}

#[test]
fn a_bad_upgrade_is_rolled_back_automatically() {
    let p = Pkg::new();
    p.run(&["key", "new", "alice"]).ok();
    // probe names relay and chat in its permissions: they must be known to the core.
    p.w.stage_all(&["relay", "chat"]);
    let v1 = p.pack(&p.real("probe", "1.0.0"), "probe1.lgx");
    p.run(&["install", &v1.display().to_string()]).ok();
    let root1 = p.active_root(&p.pkg, "probe").expect("v1");
    let _d = p.daemon(Some(&p.w.modules), "probe");
    let pid1 =
        p.w.pids()
            .into_iter()
            .find(|(n, _)| n == "probe")
            .map(|(_, pid)| pid);

    // 1. The new version exits at start: the upgrade is undone and v1 runs again.
    let bad = p.pack(
        &p.script(
            "probe",
            "2.0.0",
            "{}",
            "echo 'probe 2: cannot open its database' >&2; exit 3",
        ),
        "probe2.lgx",
    );
    let o = p.run(&["install", &bad.display().to_string()]);
    o.expect_code(1);
    assert!(
        o.stderr.contains("rolled back to 1.0.0") && o.stderr.contains("cannot open its database"),
        "{}",
        o.stderr
    );
    assert_eq!(p.active_root(&p.pkg, "probe"), Some(root1.clone()));
    assert_eq!(
        p.w.cli(&["call", "probe", "echo", "7"]).ok().stdout.trim(),
        "7"
    );
    assert_ne!(
        p.w.pids()
            .into_iter()
            .find(|(n, _)| n == "probe")
            .map(|(_, pid)| pid),
        pid1,
        "restarted on v1"
    );

    // 2. The new version starts, then crashes within the probation window: rolled back too.
    let v3 = p.pack(&p.python("probe", "3.0.0"), "probe3.lgx");
    let up = p.json(&["install", &v3.display().to_string()]);
    assert_eq!(up["changes"][0]["outcome"], "probation", "{up}");
    assert_ne!(p.active_root(&p.pkg, "probe"), Some(root1.clone()));
    assert_eq!(
        p.w.cli(&["call", "probe", "echo", "3"]).ok().stdout.trim(),
        "3"
    );
    let pid3 =
        p.w.pids()
            .into_iter()
            .find(|(n, _)| n == "probe")
            .map(|(_, pid)| pid)
            .expect("probe 3.0.0 runs");
    // A crash is any exit nobody asked for: SIGKILL from outside is one.
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid3 as i32).expect("a pid"),
        rustix::process::Signal::KILL,
    );
    wait_for("the guard to roll back", Duration::from_secs(60), || {
        let doc = p.json(&["packages"]);
        doc["packages"][0]["last_switch"]["status"] == "rolled_back"
    });
    let doc = p.json(&["packages"]);
    let reason = doc["packages"][0]["last_switch"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("crashed"), "{reason}");
    assert_eq!(p.active_root(&p.pkg, "probe"), Some(root1));
    wait_for("probe ready on v1", Duration::from_secs(60), || {
        p.w.cli(&["call", "probe", "echo", "1"]).code == Some(0)
    });
}

#[test]
fn check_measures_a_real_module_and_fails_a_broken_one() {
    let p = Pkg::new();
    p.w.stage_all(&["relay", "chat"]);
    let probe = p.real("probe", "1.0.0");
    // Only `pid` is safe to call in a loop: declare it as the probe method.
    let meta_path = probe.join("metadata.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).expect("metadata"))
            .expect("json");
    meta["probes"] = serde_json::json!(["pid"]);
    std::fs::write(&meta_path, meta.to_string()).expect("metadata");
    let modules = p.w.modules.display().to_string();
    let doc = p.json(&["check", &probe.display().to_string(), "-m", &modules]);
    let report = &doc["report"];
    let item = |id: &str| {
        report["items"]
            .as_array()
            .and_then(|i| i.iter().find(|x| x["id"] == id).cloned())
            .unwrap_or_else(|| panic!("no {id} in {report}"))
    };
    assert_eq!(item("abi")["status"], "pass", "{report}");
    assert_eq!(item("crash_free")["status"], "pass", "{report}");
    assert!(
        item("latency:pid")["value"]
            .as_str()
            .is_some_and(|v| v.starts_with("p99 ") && v.contains("over 200 calls")),
        "{report}"
    );
    assert!(
        item("idle_rss")["value"]
            .as_str()
            .is_some_and(|v| v.ends_with("MiB")),
        "{report}"
    );
    assert_eq!(item("permissions")["value"], "chat, relay", "{report}");

    // A module that cannot start fails the check (exit 1) and says why, in one JSON document.
    let bad = p.script(
        "broken",
        "1.0.0",
        "{}",
        "echo 'broken: no config' >&2; exit 3",
    );
    let o = p.run(&["--json", "check", &bad.display().to_string()]);
    o.expect_code(1);
    let doc = o.json();
    assert_eq!(doc["report"]["status"], "fail", "{doc}");
    assert!(
        doc["message"]
            .as_str()
            .is_some_and(|m| m.contains("quality check of broken failed")),
        "{doc}"
    );
    let abi = doc["report"]["items"]
        .as_array()
        .and_then(|i| i.iter().find(|x| x["id"] == "abi").cloned())
        .unwrap_or_default();
    assert!(
        abi["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no config")),
        "{abi}"
    );

    // A package file gets a signature item too.
    p.run(&["key", "new", "carol"]).ok();
    let f = p.pack(&probe, "probe.lgx");
    let doc = p.json(&["check", &f.display().to_string(), "-m", &modules]);
    assert_eq!(doc["report"]["items"][0]["id"], "signature", "{doc}");
    assert_eq!(doc["report"]["items"][0]["status"], "pass", "{doc}");
}

#[test]
fn the_trust_store_decides_and_warn_must_be_chosen() {
    let p = Pkg::new();
    // Bob signs in his own config dir; this operator does not trust him yet.
    let bob_cfg = p.w.dir.path().join("bobcfg");
    let mut c = p.cmd(&p.pkg);
    c.env("LOGOS_PKG_CONFIG", &bob_cfg)
        .args(["--json", "key", "new", "bob"]);
    let bob = finish(c, COMMAND).json();
    let bob_key = bob["key"].as_str().expect("key").to_owned();
    let src = p.script("svc", "1.0.0", "{}", "exit 0");
    let f = p.w.dir.path().join("svc.lgx");
    let mut c = p.cmd(&p.pkg);
    c.env("LOGOS_PKG_CONFIG", &bob_cfg).args([
        "pack",
        &src.display().to_string(),
        "-o",
        &f.display().to_string(),
    ]);
    finish(c, COMMAND).ok();
    let file = f.display().to_string();

    let o = p.run(&["install", &file]);
    o.expect_code(1);
    assert!(
        o.stderr.contains("not in the trust store")
            && o.stderr
                .contains(&format!("logoscore key trust bob {bob_key}")),
        "{}",
        o.stderr
    );
    let o = p.run(&["--json", "install", &file]);
    assert_eq!(o.json()["error"]["kind"], "untrusted", "{}", o.stdout);

    // Trusting the name with another key is not enough.
    p.run(&["key", "trust", "bob", &"ab".repeat(32)])
        .expect_code(1);
    let other = {
        let mut c = p.cmd(&p.pkg);
        c.env("LOGOS_PKG_CONFIG", p.w.dir.path().join("evecfg"))
            .args(["--json", "key", "new", "bob"]);
        finish(c, COMMAND).json()["key"]
            .as_str()
            .expect("key")
            .to_owned()
    };
    p.run(&["key", "trust", "bob", &other]).ok();
    let o = p.run(&["install", &file]);
    o.expect_code(1);
    assert!(
        o.stderr.contains("the trust store has \"bob\" with key"),
        "{}",
        o.stderr
    );

    p.run(&["key", "trust", "bob", &bob_key]).ok();
    p.run(&["install", &file]).ok();
    p.run(&["key", "untrust", "bob"]).ok();
    p.run(&["uninstall", "svc"]).ok();
    p.run(&["install", &file]).expect_code(1);

    // `warn` installs it, with a warning, only when chosen in packages.toml.
    std::fs::create_dir_all(&p.cfg).expect("cfg");
    std::fs::write(p.cfg.join("packages.toml"), "policy = \"warn\"\n").expect("packages.toml");
    let o = p.run(&["install", &file]);
    o.ok();
    assert!(
        o.stderr.contains("warning:") && o.stderr.contains("policy is warn"),
        "{}",
        o.stderr
    );
    std::fs::write(p.cfg.join("packages.toml"), "policy = \"lax\"\n").expect("packages.toml");
    let o = p.run(&["packages"]);
    o.expect_code(1);
    assert!(
        o.stderr.contains("packages.toml:1") && o.stderr.contains("require"),
        "{}",
        o.stderr
    );
}
