//! Issue 10, items 6 and 8: what a peer can make the core or a module hold. Before a peer is
//! authenticated it gets little, on the core's control endpoint (`core.sock`) and on a module's
//! socket alike: a 16 MiB `hello` is refused from its length prefix; idle connections beyond
//! the handshake cap are pushed out, oldest first, and never lock a real client out; a process
//! out of file descriptors backs off instead of spinning on `accept` (measured as the CPU time
//! the process uses, not wall time). After it, a watching client that stops reading loses
//! events, bounded in bytes, and is told so with `lagged`.
//!
//! Real cores, real modules, real sockets. The core-side descriptor test runs the core in a
//! child process (this test binary, re-run with `LOGOS_TEST_EMFILE_CHILD` set), so its CPU
//! time is the core's alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::{Bytes, BytesMut};
use logos_core::{Core, ErrorCode, Limits, ModuleSettings, Value};
use logos_session::{Config, Refuse, Session};
use logos_wire::{FrameDecoder, Hello, Message};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{World, int, text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Generous bound for anything that should happen soon.
const SOON: Duration = Duration::from_secs(20);
/// `DEFAULT_MAX_HANDSHAKES` plus this many idle connections: the first this many are pushed out.
const EXTRA: usize = 36;

fn hello(identity: &str, token: &[u8]) -> Hello {
    Hello {
        major: logos_wire::PROTOCOL_MAJOR,
        minor: logos_wire::PROTOCOL_MINOR,
        identity: identity.to_owned(),
        token: Bytes::copy_from_slice(token),
        attrs: Default::default(),
    }
}

/// Reads until the peer closes (within [`SOON`]) and returns its `error` id 0, if it sent one.
async fn closing_error(s: &mut UnixStream) -> Option<(ErrorCode, String)> {
    let mut buf = BytesMut::new();
    tokio::time::timeout(SOON, async {
        loop {
            buf.reserve(64 * 1024);
            match s.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the peer closes the connection");
    let dec = FrameDecoder::default();
    let mut found = None;
    while let Ok(Some(m)) = dec.decode(&mut buf) {
        if let Message::Error {
            id: 0,
            code,
            message,
        } = m
        {
            found = Some((code, message));
        }
    }
    found
}

/// An operator client on the control endpoint, authenticated with the client token.
async fn operator(core_socket: &Path, token_path: &Path) -> Session {
    let token = logos_core::read_client_token(token_path).expect("client token");
    let stream = UnixStream::connect(core_socket).await.expect("connect");
    let (session, _) = tokio::time::timeout(
        SOON,
        logos_session::connect(
            stream,
            hello("test", token.as_bytes()),
            Arc::new(Refuse),
            Config::default(),
        ),
    )
    .await
    .expect("handshake in time")
    .expect("operator handshake");
    session
}

/// Opens `DEFAULT_MAX_HANDSHAKES + EXTRA` connections that never send a hello, and checks
/// that the `EXTRA` oldest are told `limit` and closed. Returns the rest, still waiting.
async fn flood_with_idle_connections(socket: &Path) -> Vec<UnixStream> {
    let mut idle = Vec::new();
    for _ in 0..logos_session::DEFAULT_MAX_HANDSHAKES + EXTRA {
        idle.push(UnixStream::connect(socket).await.expect("connect"));
    }
    for (i, s) in idle.iter_mut().take(EXTRA).enumerate() {
        let (code, message) = closing_error(s)
            .await
            .unwrap_or_else(|| panic!("idle connection {i} closed without an error frame"));
        assert_eq!(code, ErrorCode::Limit, "idle connection {i}: {message}");
        assert!(message.contains("make room"), "{message}");
    }
    idle.split_off(EXTRA)
}

#[tokio::test]
async fn issue_10_idle_connections_on_core_sock_do_not_lock_out_an_operator() {
    let mut w = World::new();
    let core = w.start().await;
    let _still_idle = flood_with_idle_connections(&core.control_socket()).await;
    // A real client connects at once and is served, with every handshake place taken.
    let client = operator(&core.control_socket(), &core.client_token_path()).await;
    let known = client
        .call("core", "getKnownPlugins", vec![], SOON)
        .await
        .expect("served");
    assert!(matches!(known, Value::List(_)), "{known:?}");
    core.shutdown().await;
}

#[tokio::test]
async fn issue_10_idle_connections_on_a_module_socket_do_not_lock_out_its_callers() {
    let mut w = World::new();
    w.stage_all(&["probe", "relay"]);
    let core = w.start().await;
    core.load_many(&["probe", "relay"]).await.expect("load");
    let socket = core.runtime_dir().join("modules/relay.sock");
    let _still_idle = flood_with_idle_connections(&socket).await;
    // probe connects to relay with a token (its first connection) and is served at once.
    let answer = core
        .call("probe", "bounce", vec![int(3)])
        .await
        .expect("bounce through relay");
    assert_eq!(answer, int(3));
    core.shutdown().await;
}

#[tokio::test]
async fn issue_10_a_16_mib_hello_is_refused_before_its_body_on_core_and_module_sockets() {
    let mut w = World::new();
    w.stage("calc");
    let core = w.start().await;
    core.load("calc").await.expect("load");
    let sockets = [
        core.control_socket(),
        core.runtime_dir().join("modules/calc.sock"),
    ];
    for socket in &sockets {
        let mut s = UnixStream::connect(socket).await.expect("connect");
        // Within the 16 MiB frame cap; the body never comes.
        s.write_all(&(16u32 << 20).to_be_bytes())
            .await
            .expect("write");
        let (code, message) = closing_error(&mut s)
            .await
            .unwrap_or_else(|| panic!("{}: closed without an error", socket.display()));
        assert_eq!(code, ErrorCode::Limit, "{}: {message}", socket.display());
        assert!(
            message.contains("hello of 16777216 bytes exceeds the limit of 65536 bytes"),
            "{message}"
        );
    }
    assert_eq!(
        core.call("calc", "add", vec![int(2), int(3)])
            .await
            .expect("calc serves"),
        int(5)
    );
    core.shutdown().await;
}

/// User plus system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start at field 3, "state".
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100);
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count()
}

/// The soft open-files limit of process `pid`.
fn nofile(pid: u32) -> usize {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("Max open files")
}

/// How long a process out of descriptors is watched, and the most CPU it may use meanwhile.
/// A loop retrying `accept` at once uses a whole CPU (minus what others take from it); one
/// that backs off uses next to nothing.
const WINDOW: Duration = Duration::from_secs(3);
const MAX_SHARE: f64 = 0.1;

/// Watches `pid` for [`WINDOW`] and fails if it used more than [`MAX_SHARE`] of a CPU.
async fn assert_not_spinning(pid: u32, what: &str) {
    let (cpu0, wall0) = (cpu_time(pid), Instant::now());
    // The measurement itself: CPU time over a stretch of wall time (nothing to wait for).
    tokio::time::sleep(WINDOW).await;
    let (cpu, wall) = (cpu_time(pid) - cpu0, wall0.elapsed());
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    assert!(
        share < MAX_SHARE,
        "{what} used {cpu:?} of CPU in {wall:?} ({:.0} %) while out of descriptors: it spins on accept",
        share * 100.0
    );
}

#[tokio::test]
async fn issue_10_a_module_out_of_descriptors_does_not_spin_on_accept() {
    let mut w = World::new();
    w.stage("probe");
    let mut settings = ModuleSettings::default();
    settings.limits = Limits {
        open_files: Some(64),
        ..Limits::default()
    };
    let b = w.builder().module("probe", settings);
    let core = w.start_with(b).await;
    core.load("probe").await.expect("load");
    let pid = core.module("probe").expect("probe").pid.expect("pid");
    // probe takes every descriptor it may have…
    let e = core
        .call("probe", "openFiles", vec![int(1000)])
        .await
        .expect_err("runs out");
    assert!(e.to_string().contains("Too many open files"), "{e}");
    let full = open_fds(pid);
    // …so the connection waiting in its listen backlog makes every accept fail (EMFILE).
    let socket = core.runtime_dir().join("modules/probe.sock");
    let mut waiting = UnixStream::connect(&socket).await.expect("connect");
    assert_not_spinning(pid, "probe").await;
    assert_eq!(open_fds(pid), full, "probe accepted after all");

    // Descriptors back: the waiting connection is accepted and its hello answered.
    core.call("probe", "closeFiles", vec![])
        .await
        .expect("close files");
    let mut frame = Vec::new();
    logos_wire::encode_frame(&Message::Hello(hello("intruder", &[1; 32])), &mut frame).unwrap();
    waiting.write_all(&frame).await.expect("hello");
    let (code, message) = closing_error(&mut waiting)
        .await
        .expect("the hello is answered");
    assert_eq!(code, ErrorCode::Unauthorized, "{message}");
    assert_eq!(
        core.call("probe", "echo", vec![text("still here")])
            .await
            .expect("echo"),
        text("still here")
    );
    core.shutdown().await;
}

/// Set (to the test's directory) when this binary runs as the child core of the test below.
const CHILD_ENV: &str = "LOGOS_TEST_EMFILE_CHILD";
const CORE_TEST: &str = "issue_10_a_core_out_of_descriptors_does_not_spin_on_accept";
/// What the child prints once it serves.
const READY: &str = "LOGOS_TEST_CHILD_READY";

#[test]
fn issue_10_a_core_out_of_descriptors_does_not_spin_on_accept() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    match std::env::var_os(CHILD_ENV) {
        Some(dir) => rt.block_on(child_core(PathBuf::from(dir))),
        None => rt.block_on(watch_child_core()),
    }
}

/// The child: a core with no modules whose open-files limit is a few above what it uses;
/// prints [`READY`] and serves until its stdin closes.
async fn child_core(dir: PathBuf) {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .try_init();
    let core = Core::builder()
        .modules_dir(dir.join("modules"))
        .runtime_dir(dir.join("run"))
        .data_dir(dir.join("data"))
        .build()
        .expect("build")
        .start()
        .await
        .expect("start");
    let limit = u64::try_from(open_fds(std::process::id()) + 8).expect("small");
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: `rlimit` is a valid, initialised struct that outlives the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
    // On a line of its own: the test harness has printed the test's name without a newline.
    println!("\n{READY}");
    // Until the parent closes our stdin (or dies).
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await;
    core.shutdown().await;
}

/// Kills and reaps the child core however the test ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn watch_child_core() {
    let dir = tempfile::Builder::new()
        .prefix("logos-test-emfile-")
        .tempdir()
        .expect("temp dir");
    std::fs::create_dir_all(dir.path().join("modules")).expect("modules dir");
    let mut child = ChildGuard(
        Command::new(std::env::current_exe().expect("test binary"))
            .args([CORE_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the child core"),
    );
    let pid = child.0.id();
    let stderr = child.0.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    let stdout = child.0.stdout.take().expect("stdout");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) if l == READY => {
                    let _ = ready_tx.send(());
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    assert!(
        ready_rx.recv_timeout(Duration::from_secs(60)).is_ok(),
        "the child core did not start"
    );
    let control = dir.path().join("run/core.sock");
    let token = dir.path().join("run/client.token");

    // Authenticated clients take the core's last descriptors; they stay open.
    let limit = nofile(pid);
    let mut clients = Vec::new();
    while open_fds(pid) < limit {
        assert!(clients.len() < 64, "the core's descriptors do not run out");
        clients.push(operator(&control, &token).await);
    }
    // One more connection waits in the backlog: every accept now fails with EMFILE.
    let mut waiting = UnixStream::connect(&control).await.expect("connect");
    assert_not_spinning(pid, "the core").await;

    // It keeps serving its clients, and accepts again once a descriptor is free.
    let known = clients[0]
        .call("core", "getKnownPlugins", vec![], SOON)
        .await
        .expect("served while out of descriptors");
    assert!(matches!(known, Value::List(_)), "{known:?}");
    let last = clients.pop().expect("a client");
    last.close(logos_session::Fault::new(ErrorCode::Cancelled, "make room"));
    drop(last);
    let mut frame = Vec::new();
    logos_wire::encode_frame(&Message::Hello(hello("intruder", &[1; 32])), &mut frame).unwrap();
    waiting.write_all(&frame).await.expect("hello");
    let (code, message) = closing_error(&mut waiting)
        .await
        .expect("the hello is answered");
    assert_eq!(code, ErrorCode::Unauthorized, "{message}");

    drop(clients);
    drop(child.0.stdin.take());
    let deadline = Instant::now() + SOON;
    while child.0.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the child core did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = log.join().unwrap_or_default();
    assert!(
        log.contains("accepting a connection failed"),
        "the core did not report the failed accepts:\n{log}"
    );
}

/// A client on `core.sock` that speaks frames by hand, so that it can stop reading.
struct RawClient {
    sock: UnixStream,
    buf: BytesMut,
}

impl RawClient {
    /// Connects and authenticates with the client token.
    async fn operator(core: &Core) -> RawClient {
        let token = logos_core::read_client_token(&core.client_token_path()).expect("client token");
        let mut c = RawClient {
            sock: UnixStream::connect(core.control_socket())
                .await
                .expect("connect"),
            buf: BytesMut::new(),
        };
        c.send(&Message::Hello(hello("watcher", token.as_bytes())))
            .await;
        match c.recv().await {
            Some(Message::Welcome(_)) => c,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    async fn send(&mut self, msg: &Message) {
        let mut frame = Vec::new();
        logos_wire::encode_frame(msg, &mut frame).expect("encode");
        self.sock.write_all(&frame).await.expect("write");
    }

    /// The next frame; `None` at EOF.
    async fn recv(&mut self) -> Option<Message> {
        self.recv_within(SOON).await.expect("a frame in time")
    }

    /// The next frame, `Some(None)` at EOF, or `None` if none came within `within`.
    async fn recv_within(&mut self, within: Duration) -> Option<Option<Message>> {
        let dec = FrameDecoder::default();
        tokio::time::timeout(within, async {
            loop {
                if let Some(m) = dec.decode(&mut self.buf).expect("valid frames") {
                    return Some(m);
                }
                self.buf.reserve(256 * 1024);
                match self.sock.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .ok()
    }
}

#[tokio::test]
async fn issue_10_a_watch_client_that_does_not_read_loses_events_in_bytes_and_is_told_lagged() {
    // 600 events of 64 KiB: far fewer than the 1024 events a connection's queue counts, far
    // more than its 16 MiB byte budget.
    const BIG: usize = 600;
    let mut w = World::new();
    w.stage("chat");
    let core = w.start().await;
    core.load("chat").await.expect("load");
    let mut watcher = RawClient::operator(&core).await;
    watcher
        .send(&Message::Subscribe {
            source: "chat".into(),
            event: String::new(),
        })
        .await;
    // The subscription is live once a message comes through.
    let send = |message: String| {
        let core = core.clone();
        async move {
            core.call("chat", "send", vec![text("n"), Value::Text(message)])
                .await
                .expect("chat.send")
        }
    };
    let deadline = Instant::now() + SOON;
    loop {
        assert!(
            Instant::now() < deadline,
            "the subscription never took effect"
        );
        send("hello?".into()).await;
        let answer = watcher.recv_within(Duration::from_millis(100)).await;
        if let Some(Some(Message::Event { .. })) = answer {
            break;
        }
    }
    // The watcher stops reading. Each call returns after chat emitted its event and the core
    // offered it to the watcher's queue (the event precedes the reply on chat's connection).
    let big = "x".repeat(64 * 1024);
    for _ in 0..BIG {
        send(big.clone()).await;
    }
    // It reads again; small messages follow until one fits, which `lagged` precedes.
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(m) = watcher.recv().await {
            if tx.send(m).is_err() {
                return;
            }
        }
    });
    let mut received_big = 0usize;
    let deadline = Instant::now() + SOON;
    let dropped = 'watch: loop {
        assert!(
            Instant::now() < deadline,
            "no lagged after {received_big} events"
        );
        send("small".into()).await;
        let tick = tokio::time::sleep(Duration::from_millis(50));
        tokio::pin!(tick);
        loop {
            tokio::select! {
                m = seen.recv() => match m.expect("the watcher's connection stays up") {
                    Message::Event { data, .. } => {
                        if data.get(2).and_then(Value::as_str).is_some_and(|m| m.len() > 1000) {
                            received_big += 1;
                        }
                    }
                    Message::Lagged { source, dropped } => {
                        assert_eq!(source, "chat");
                        break 'watch dropped;
                    }
                    other => panic!("unexpected {other:?}"),
                },
                () = &mut tick => break,
            }
        }
    };
    let budget = logos_session::Config::default().event_queue_bytes / (64 * 1024);
    assert!(
        received_big < BIG && received_big <= budget + 64,
        "{received_big} of {BIG} events of 64 KiB queued for a client that did not read"
    );
    assert!(
        dropped >= (BIG - received_big) as u64,
        "{dropped} dropped, {received_big} of {BIG} received"
    );
    reader.abort();
    core.shutdown().await;
}
