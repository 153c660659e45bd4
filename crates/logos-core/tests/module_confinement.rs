//! Modules are not the operator (issue 10, item 1; docs/security.md): what a module process
//! inherits (environment, descriptors), what it can read with and without Landlock, and that a
//! client checks who serves an endpoint before it sends its token. Real cores, real module
//! processes (shell scripts and `logos_host`), real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_core::{ErrorCode, ModuleSettings, Value};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::Duration;
use support::{World, int, text};

/// Runs script module `name` (it exits at once, so its load fails) and returns the file
/// `report` it wrote into its data dir.
async fn report_of(w: &World, core: &logos_core::Core, name: &str) -> String {
    let _ = core.load(name).await;
    let path = w.data.join(name).join("report");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{name} wrote no report at {}: {e}", path.display()))
}

#[tokio::test]
async fn a_module_gets_only_allowlisted_variables_and_no_stray_descriptors() {
    let mut w = World::new();
    w.script_module(
        "nosy",
        "{}",
        r#"{ env; echo "--- fds"; ls -l /proc/$$/fd/; } > "$LOGOS_DATA_DIR/report"
exit 0"#,
    );
    // A descriptor this process (the core's) opened without O_CLOEXEC.
    let marker = w.dir.path().join("leak-marker");
    std::fs::write(&marker, "secret").unwrap();
    let leaked = std::fs::File::open(&marker).unwrap();
    // SAFETY: F_SETFD on an fd we own; clearing close-on-exec is the point of the test.
    assert_eq!(
        unsafe { libc::fcntl(leaked.as_raw_fd(), libc::F_SETFD, 0) },
        0
    );
    let settings = {
        let mut s = ModuleSettings::default();
        s.env = vec![("NOSY_GREETING".to_owned(), "hi".to_owned())];
        s
    };
    let core = w.start_with(w.builder().module("nosy", settings)).await;
    let report = report_of(&w, &core, "nosy").await;
    let (env, fds) = report.split_once("--- fds").expect("both parts");

    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    // What the shell itself adds to its environment.
    let shell = ["PWD", "OLDPWD", "SHLVL", "_"];
    let allowed = [
        "PATH",
        "LANG",
        "LOGOS_SHM",
        "LOGOS_MODULE",
        "LOGOS_CONTROL_FD",
        "LOGOS_LISTEN_FD",
        "LOGOS_BEAT_FD",
        "LOGOS_HEARTBEAT_MS",
        "LOGOS_DATA_DIR",
        "LOGOS_LOG",
        "LOGOS_PROTECTED",
        "NOSY_GREETING",
    ];
    for n in &names {
        assert!(
            allowed.contains(n) || shell.contains(n),
            "{n} reached the module:\n{env}"
        );
    }
    assert!(env.contains("NOSY_GREETING=hi"), "{env}");
    assert!(env.contains("LOGOS_MODULE=nosy"), "{env}");
    assert!(!env.contains("LOGOS_RUNTIME_DIR"), "{env}");
    assert!(
        !env.contains(&w.runtime.display().to_string()),
        "the runtime dir reached the module:\n{env}"
    );

    assert!(
        !fds.contains("leak-marker"),
        "a descriptor of the core leaked into the module:\n{fds}"
    );
    for (fd, what) in [(3, "socket:"), (4, "socket:"), (5, "/memfd:logos-beat")] {
        assert!(
            fds.lines().any(|l| l.contains(&format!(" {fd} -> {what}"))),
            "fd {fd} is not a socket:\n{fds}"
        );
    }
    drop(leaked);
    core.shutdown().await;
}

/// The script of a module that tries to read the operator's token, list the runtime dir and
/// signal calc, and reports each outcome.
fn snoop_script(runtime: &std::path::Path) -> String {
    format!(
        r#"rt='{rt}'
out="$LOGOS_DATA_DIR/report"
try() {{ what=$1; shift; if "$@" >/dev/null 2>&1; then echo "$what=allowed"; else echo "$what=denied"; fi; }}
{{
try token cat "$rt/client.token"
try list ls "$rt"
try sockets ls "$rt/modules"
try write_tmp sh -c "echo x > '{tmp}/written-by-module'"
try write_data sh -c "echo x > '$LOGOS_DATA_DIR/mine'"
try read_elsewhere cat /etc/passwd
}} > "$out"
exit 0"#,
        rt = runtime.display(),
        tmp = runtime.parent().expect("parent").display(),
    )
}

#[tokio::test]
async fn under_landlock_a_module_cannot_read_the_runtime_dir_or_write_outside_its_data_dir() {
    let confinement = logos_core::confinement(true);
    assert_ne!(
        confinement,
        logos_core::Confinement::None,
        "this kernel has no Landlock; these tests need Linux 5.13+ with landlock in lsm="
    );
    let mut w = World::new();
    w.script_module("snoop", "{}", &snoop_script(&w.runtime));
    let core = w.start().await;
    let report = report_of(&w, &core, "snoop").await;
    for line in [
        "token=denied",
        "list=denied",
        "sockets=denied",
        "write_tmp=denied",
        "write_data=allowed",
        "read_elsewhere=allowed",
    ] {
        assert!(report.lines().any(|l| l == line), "{line}:\n{report}");
    }
    let info = core.call("core", "moduleInfo", vec![text("snoop")]).await;
    assert_eq!(
        info.expect("moduleInfo").get("confinement"),
        Some(&Value::from(confinement.to_string()))
    );
    assert!(confinement.to_string().starts_with("landlock v"));
    core.shutdown().await;
}

/// Writes script module `name` with `extra` (JSON members, e.g. a `filesystem` declaration)
/// added to its metadata.
fn declared_script_module(w: &World, name: &str, extra: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let dir = w.write_metadata(
        name,
        &format!(
            r#"{{"name":"{name}","version":"1.0.0","main":"run.sh","restart":"never"{extra}}}"#
        ),
    );
    let path = dir.join("run.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Issue 18: by default a module reads system files, its own dirs and nothing else; what it
/// declares in `filesystem` it gets only once the operator grants it.
#[tokio::test]
async fn issue_18_a_module_reaches_only_its_own_dirs_and_what_was_declared_and_granted() {
    let mut w = World::new();
    let base = w.dir.path().canonicalize().unwrap();
    // An /etc/shadow-like file, a neighbour's data, a shared dir and an outbox.
    std::fs::create_dir_all(base.join("secret")).unwrap();
    std::fs::write(base.join("secret/shadow"), "root:$6$hash").unwrap();
    std::fs::create_dir_all(w.data.join("neighbour")).unwrap();
    std::fs::write(w.data.join("neighbour/planted"), "neighbour's state").unwrap();
    std::fs::create_dir_all(base.join("shared")).unwrap();
    std::fs::write(base.join("shared/notes"), "shared notes").unwrap();
    std::fs::create_dir_all(base.join("outbox")).unwrap();
    let script = format!(
        r#"b='{b}'
try() {{ what=$1; shift; if "$@" >/dev/null 2>&1; then echo "$what=allowed"; else echo "$what=denied"; fi; }}
{{
try shadow cat "$b/secret/shadow"
try etc_shadow cat /etc/shadow
try neighbour cat "{data}/neighbour/planted"
try list_data ls "{data}"
try list_tmp ls "$b"
try read_shared cat "$b/shared/notes"
try write_shared sh -c "echo x > '$b/shared/mine'"
try write_outbox sh -c "echo x > '$b/outbox/mine'"
try write_tmp sh -c "echo x > '$b/mine'"
try own_dir cat "$(dirname "$0")/metadata.json"
try passwd cat /etc/passwd
try write_data sh -c "echo x > '$LOGOS_DATA_DIR/mine'"
}} > "$LOGOS_DATA_DIR/report"
exit 0"#,
        b = base.display(),
        data = w.data.display(),
    );
    let declared = format!(
        r#","filesystem":{{"read":["{b}/shared"],"write":["{b}/outbox"]}}"#,
        b = base.display()
    );
    declared_script_module(&w, "reader", &declared, &script);

    // Not granted: refused before anything runs, naming the path and the fix.
    let core = w.start().await;
    let e = core.load("reader").await.expect_err("ungranted paths");
    let msg = e.to_string();
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{msg}");
    assert!(msg.contains(&format!("{}/shared", base.display())), "{msg}");
    assert!(
        msg.contains("[modules.reader] filesystem = { read = ["),
        "{msg}"
    );
    assert!(!w.data.join("reader/report").exists());
    core.shutdown().await;

    // Granted: each declared path is reachable as declared, and nothing else is.
    let mut settings = ModuleSettings::default();
    settings.filesystem.read = vec![base.join("shared")];
    settings.filesystem.write = vec![base.join("outbox")];
    let core = w.start_with(w.builder().module("reader", settings)).await;
    let report = report_of(&w, &core, "reader").await;
    for line in [
        "shadow=denied",
        "etc_shadow=denied",
        "neighbour=denied",
        "list_data=denied",
        "list_tmp=denied",
        "read_shared=allowed",
        "write_shared=denied",
        "write_outbox=allowed",
        "write_tmp=denied",
        "own_dir=allowed",
        "passwd=allowed",
        "write_data=allowed",
    ] {
        assert!(report.lines().any(|l| l == line), "{line}:\n{report}");
    }
    let info = core
        .call("core", "moduleInfo", vec![text("reader")])
        .await
        .expect("moduleInfo");
    let fs = info.get("filesystem").expect("filesystem");
    assert_eq!(
        fs.get("read"),
        Some(&Value::List(vec![text(&format!(
            "{}/shared",
            base.display()
        ))]))
    );
    core.shutdown().await;
}

/// Issue 18: `strict_confinement` refuses to start a module that would run unconfined.
#[tokio::test]
async fn issue_18_strict_confinement_refuses_to_run_a_module_unconfined() {
    let mut w = World::new();
    w.script_module("snoop", "{}", &snoop_script(&w.runtime));
    let core = w
        .start_with(w.builder().landlock(false).strict_confinement(true))
        .await;
    let e = core.load("snoop").await.expect_err("strict mode");
    let msg = e.to_string();
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{msg}");
    assert!(msg.contains("strict_confinement is on"), "{msg}");
    assert!(msg.contains("run unconfined"), "{msg}");
    assert!(
        !w.data.join("snoop/report").exists(),
        "the module ran: {msg}"
    );
    let info = core
        .call("core", "moduleInfo", vec![text("snoop")])
        .await
        .expect("moduleInfo");
    assert_eq!(info.get("confinement"), Some(&text("none")));
    core.shutdown().await;
}

/// A Python program that makes each baseline system call with arguments that do not fail
/// with `EPERM` on their own, opens IP and Unix sockets, and prints `name=errno` lines
/// (`0` for success) and its seccomp mode.
fn syscall_probe(tcp_port: u16) -> String {
    let calls: [(&str, libc::c_long, &str); 8] = [
        ("ptrace", libc::SYS_ptrace, "2, os.getpid(), 0, 0"),
        (
            "process_vm_readv",
            libc::SYS_process_vm_readv,
            "os.getpid(), 0, 0, 0, 0, 0",
        ),
        (
            "process_vm_writev",
            libc::SYS_process_vm_writev,
            "os.getpid(), 0, 0, 0, 0, 0",
        ),
        ("io_uring_setup", libc::SYS_io_uring_setup, "0, 0"),
        ("keyctl", libc::SYS_keyctl, "0, -2, 0"),
        ("mount", libc::SYS_mount, "0, 0, 0, 0, 0"),
        ("bpf", libc::SYS_bpf, "-1, 0, 0"),
        (
            "perf_event_open",
            libc::SYS_perf_event_open,
            "0, 0, -1, -1, 0",
        ),
    ];
    let mut py = String::from(
        "import ctypes, os, socket\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\n\
         def call(name, nr, *args):\n    ctypes.set_errno(0)\n    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])\n    print(f'{name}={ctypes.get_errno() if r == -1 else 0}')\n\
         def sock(name, fam, kind, addr=None):\n    try:\n        s = socket.socket(fam, kind)\n        if addr: s.settimeout(5); s.connect(addr)\n        print(f'{name}=0'); s.close()\n    except OSError as e:\n        print(f'{name}={e.errno}')\n",
    );
    for (name, nr, args) in calls {
        py.push_str(&format!("call('{name}', {nr}, {args})\n"));
    }
    py.push_str(&format!(
        "sock('tcp', socket.AF_INET, socket.SOCK_STREAM, ('127.0.0.1', {tcp_port}))\n\
         sock('udp', socket.AF_INET, socket.SOCK_DGRAM)\n\
         sock('tcp6', socket.AF_INET6, socket.SOCK_STREAM)\n\
         sock('netlink', socket.AF_NETLINK, socket.SOCK_RAW)\n\
         sock('unix', socket.AF_UNIX, socket.SOCK_STREAM)\n\
         print('seccomp=' + [l.split()[1] for l in open('/proc/self/status') if l.startswith('Seccomp:')][0])\n"
    ));
    py
}

/// `name=value` lines as a map.
fn lines_map(report: &str) -> std::collections::BTreeMap<String, String> {
    report
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Issue 18: every module runs under the seccomp baseline, and without a declared and granted
/// network it cannot open an IP socket (Landlock TCP rules and seccomp); with both it can.
#[tokio::test]
async fn issue_18_the_seccomp_baseline_holds_and_the_network_is_off_unless_declared_and_granted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let py = syscall_probe(port);
    let script = format!("python3 - > \"$LOGOS_DATA_DIR/report\" 2>&1 <<'PY'\n{py}PY\nexit 0");
    // The same calls unconfined, from the test itself: none fails with EPERM on its own.
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&py)
        .output()
        .unwrap();
    let unconfined = lines_map(&String::from_utf8_lossy(&out.stdout));
    let eperm = libc::EPERM.to_string();
    for call in [
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "io_uring_setup",
    ] {
        assert_ne!(unconfined.get(call), Some(&eperm), "{call}: {unconfined:?}");
        assert!(unconfined.contains_key(call), "{out:?}");
    }
    assert_eq!(unconfined.get("tcp").map(String::as_str), Some("0"));

    let mut w = World::new();
    declared_script_module(&w, "offline", "", &script);
    declared_script_module(&w, "online", r#","network":true"#, &script);
    let mut grant = ModuleSettings::default();
    grant.network = true;
    let core = w.start_with(w.builder().module("online", grant)).await;
    let offline = lines_map(&report_of(&w, &core, "offline").await);
    for call in [
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "io_uring_setup",
        "keyctl",
        "mount",
        "bpf",
        "perf_event_open",
        "tcp",
        "udp",
        "tcp6",
        "netlink",
    ] {
        assert_eq!(offline.get(call), Some(&eperm), "{call}: {offline:?}");
    }
    assert_eq!(
        offline.get("unix").map(String::as_str),
        Some("0"),
        "{offline:?}"
    );
    assert_eq!(
        offline.get("seccomp").map(String::as_str),
        Some("2"),
        "{offline:?}"
    );

    let online = lines_map(&report_of(&w, &core, "online").await);
    for call in ["tcp", "udp", "tcp6", "unix"] {
        assert_eq!(
            online.get(call).map(String::as_str),
            Some("0"),
            "{call}: {online:?}"
        );
    }
    for call in ["ptrace", "process_vm_readv", "mount", "io_uring_setup"] {
        assert_eq!(online.get(call), Some(&eperm), "{call}: {online:?}");
    }
    for (module, network) in [("offline", false), ("online", true)] {
        let info = core
            .call("core", "moduleInfo", vec![text(module)])
            .await
            .expect("moduleInfo");
        assert_eq!(info.get("network"), Some(&Value::Bool(network)), "{module}");
        assert_eq!(info.get("seccomp"), Some(&text("baseline")));
    }
    core.shutdown().await;

    // Declared but not granted: refused before anything runs.
    let core = w.start().await;
    let e = core.load("online").await.expect_err("network not granted");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    assert!(
        e.to_string().contains("[modules.online] network = true"),
        "{e}"
    );
    core.shutdown().await;
}

#[tokio::test]
async fn without_landlock_modules_can_read_the_token_and_the_core_says_so() {
    let mut w = World::new();
    w.script_module("snoop", "{}", &snoop_script(&w.runtime));
    let core = w.start_with(w.builder().landlock(false)).await;
    let report = report_of(&w, &core, "snoop").await;
    // The warning's claim, shown: nothing stands between a module and the token.
    assert!(report.lines().any(|l| l == "token=allowed"), "{report}");
    let info = core
        .call("core", "moduleInfo", vec![text("snoop")])
        .await
        .expect("moduleInfo");
    assert_eq!(info.get("confinement"), Some(&text("none")));
    core.shutdown().await;
}

#[tokio::test]
async fn a_client_checks_who_serves_the_endpoint_before_it_sends_its_token() {
    let mut w = World::new();
    w.stage_all(&["calc", "chat", "greeter"]);
    let core = w.start().await;
    core.load("greeter").await.expect("load greeter");

    // Someone other than calc takes calc's socket path over (what a module could do without
    // Landlock): greeter's first call to calc reaches this listener instead.
    let sock = core.runtime_dir().join("modules/calc.sock");
    std::fs::remove_file(&sock).unwrap();
    let impostor = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let caller = {
        let core = core.clone();
        tokio::spawn(async move { core.call("greeter", "sum", vec![int(2), int(3)]).await })
    };
    let received = tokio::task::spawn_blocking(move || {
        let (mut conn, _) = impostor.accept().expect("greeter connects");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = Vec::new();
        let _ = conn.read_to_end(&mut got);
        got
    })
    .await
    .unwrap();
    assert!(
        received.is_empty(),
        "the impostor received {} bytes (the hello with the token)",
        received.len()
    );
    let f = caller
        .await
        .unwrap()
        .expect_err("greeter must refuse the impostor");
    let msg = f.to_string();
    assert_eq!(f.code(), ErrorCode::Unauthorized, "{msg}");
    assert!(msg.contains("not by calc"), "{msg}");
    assert!(msg.contains("the token was not sent"), "{msg}");

    // calc itself is untouched and still serves the core.
    assert_eq!(
        core.call("calc", "add", vec![int(2), int(3)])
            .await
            .unwrap(),
        int(5)
    );
    core.shutdown().await;
}
