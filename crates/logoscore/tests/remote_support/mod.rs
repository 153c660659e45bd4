//! Shared by the remote module tests: a core listening on 127.0.0.1 (port 0, read back from
//! its readiness document), credentials issued with the real `logoscore remote grant`, and
//! remote modules run by the real `logos_host --remote` in a temp dir of their own that shares
//! no file with the core's (the credential file is copied over, as an operator would). Every
//! process is killed and reaped on drop. Nothing here sends traffic anywhere but 127.0.0.1.

#![allow(dead_code)]

use crate::support::{Daemon, Proc, World, target_dir, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Deadline of a remote module connecting (or reconnecting).
pub const CONNECT: Duration = Duration::from_secs(60);

/// The heartbeat the test cores run with: short, so a silent peer is found fast.
pub const HEARTBEAT: &str = "200ms";

/// Starts `logoscore run --listen 127.0.0.1:0` in `world` with a config file holding the
/// heartbeat and `extra` TOML, loading `load`.
pub fn core(world: &World, extra: &str, load: &[&str]) -> Daemon {
    let config = world.write(
        "logoscore.toml",
        &format!("heartbeat = \"{HEARTBEAT}\"\nlisten = \"127.0.0.1:0\"\n{extra}\n"),
    );
    let mut args: Vec<String> = vec!["-c".into(), config.display().to_string()];
    for l in load {
        args.push("-l".into());
        args.push((*l).into());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let d = world.daemon(&refs);
    assert!(
        listen(&d).starts_with("127.0.0.1:"),
        "readiness document without the listen address: {}",
        d.ready
    );
    d
}

/// The address the core listens on, from its readiness document.
pub fn listen(d: &Daemon) -> String {
    d.ready["listen"].as_str().unwrap_or_default().to_owned()
}

/// `logoscore remote grant MODULE --out <tmp> ARGS…`; the credential file's path.
#[track_caller]
pub fn grant(world: &World, module: &str, args: &[&str]) -> PathBuf {
    let out = world
        .dir
        .path()
        .join(format!("{module}-{}.credential.json", unique()));
    let mut all = vec!["remote", "grant", module, "--out"];
    let out_s = out.display().to_string();
    all.push(&out_s);
    all.extend_from_slice(args);
    world.cli(&all).ok();
    out
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A remote module process (`logos_host --remote`) with its own temp dir.
pub struct Remote {
    pub proc: Proc,
    pub dir: tempfile::TempDir,
    pub credential: PathBuf,
}

impl Remote {
    /// Waits until it has (re)connected `n` times in all.
    #[track_caller]
    pub fn wait_connected(&self, n: usize) {
        let p = &self.proc;
        let deadline = std::time::Instant::now() + CONNECT;
        while p.stderr_text().matches("ready (remote)").count() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "the remote module did not connect {n} time(s) within {CONNECT:?}; its stderr:\n{}",
                p.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stop(&self) {
        self.proc.signal(rustix::process::Signal::STOP);
    }

    pub fn resume(&self) {
        self.proc.signal(rustix::process::Signal::CONT);
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // A stopped process cannot die of SIGKILL until it is continued... it can: SIGKILL
        // works on stopped processes. Continue anyway, so nothing lingers half-stopped.
        self.resume();
        self.proc.kill();
    }
}

/// Copies `credential` into a new temp dir (0600) and runs `logos_host --remote` there with
/// `module`'s library and metadata; does not wait for it to connect.
pub fn spawn_remote(module: &str, credential: &Path) -> Remote {
    let dir = tempfile::Builder::new()
        .prefix("logos-remote-test-")
        .tempdir()
        .expect("temp dir");
    let mods = dir.path().join("modules");
    std::fs::create_dir_all(&mods).expect("modules dir");
    logos_testkit::stage_module(&mods, module);
    let copy = dir.path().join("credential.json");
    std::fs::copy(credential, &copy).expect("copy the credential");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    // The library its metadata names (`p2p-echo`'s is `libp2p_echo.so`).
    let meta = std::fs::read_to_string(mods.join(module).join("metadata.json")).expect("metadata");
    let meta: serde_json::Value = serde_json::from_str(&meta).expect("metadata is JSON");
    let main = meta["main"]
        .as_str()
        .expect("metadata names its main")
        .to_owned();
    let mut cmd = Command::new(target_dir().join("logos_host"));
    cmd.arg("--remote")
        .arg(&copy)
        .arg(mods.join(module).join(main))
        .current_dir(&data)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LOGOS_LOG", "info")
        .stdin(Stdio::null());
    let proc = Proc::spawn(&mut cmd);
    Remote {
        proc,
        dir,
        credential: copy,
    }
}

/// Grants `module` (with `args`), runs it remote and waits until it is ready in the core.
pub fn remote(world: &World, module: &str, args: &[&str]) -> Remote {
    let credential = grant(world, module, args);
    let r = spawn_remote(module, &credential);
    r.wait_connected(1);
    wait_state(world, module, "ready");
    r
}

/// `list --json`'s record of `module`.
pub fn record(world: &World, module: &str) -> serde_json::Value {
    world
        .cli_json(&["list"])
        .as_array()
        .and_then(|l| l.iter().find(|m| m["name"] == module).cloned())
        .unwrap_or(serde_json::Value::Null)
}

/// Waits until `module`'s state is `state`.
#[track_caller]
pub fn wait_state(world: &World, module: &str, state: &str) {
    wait_for(&format!("{module} {state}"), CONNECT, || {
        record(world, module)["state"] == state
    });
}

/// The core's log so far.
pub fn log(d: &Daemon) -> String {
    d.proc.stderr_text()
}
