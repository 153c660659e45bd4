//! The libp2p rows (issue 12): a stream from a remote libp2p peer to a protocol owned by an
//! external module, against the same stream to a protocol handled in-process by rust-libp2p,
//! measured in the same run, alternating rounds:
//!
//! - `p2p_stream`: the remote peer opens a stream, writes 64 MiB in 64 KiB writes, half-closes
//!   and waits for the handler's byte count (u64 LE). Timed from the first write to the count.
//!   Ours: `modules/p2p` accepts it and its pump copies it onto a runtime byte stream to
//!   `p2p-probe`'s `sink` (another process), which reads 256 KiB at a time. Baseline: a
//!   second rust-libp2p swarm in this process whose `libp2p-stream` handler reads the same
//!   way. CPU per MiB of the receiving side: the `p2p` and `p2p-probe` processes, against
//!   the baseline swarm's runtime thread.
//! - `p2p_first_byte` (reported, no target): accept-to-first-byte latency. On a connection
//!   already open and warm, the remote peer opens a stream for `/logos/echo/1.0.0` (Yamux
//!   `SYN` and multistream-select negotiation, as every libp2p stream), writes one byte and
//!   waits for it to come back: the time from the call that opens the stream until the first
//!   byte of the reply is read. Ours: `p2p-echo` (an external module, accepting with
//!   `accept`), baseline: an in-process echo handler on the second swarm.
//!
//! The remote peer is a third swarm in this process. All three swarms use the transport of
//! `modules/p2p` (libp2p 0.57: TCP with `nodelay`, Noise, Yamux with its defaults) and run
//! each on its own one-thread tokio runtime, so the in-process handler has a thread of its
//! own as `p2p` has a process. Loopback only. The core is a real one (as the other rows
//! start it) with `p2p` granted the network, loading the release builds of `p2p`, `p2p-echo`
//! and `p2p-probe` run by `logos_host`; without them both rows are skipped with the reason.
//!
//! Never asserts a figure: the status says whether the issue's target was met.

use crate::report::{Figure, Row, Status, Unit};
use crate::runtime::Plan;
use crate::stats;
use anyhow::{Context as _, Result, anyhow, bail};
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol, Swarm, noise, tcp, yamux};
use logos_core::{Core, ModuleSettings, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Row ids and names.
pub const STREAM_ID: &str = "p2p_stream";
const STREAM_NAME: &str = "libp2p stream remote peer → external module";
pub const FIRST_BYTE_ID: &str = "p2p_first_byte";
const FIRST_BYTE_NAME: &str = "libp2p accept-to-first-byte, external module (echo)";

/// The echo protocol `p2p-echo` owns (and the in-process handler serves).
const ECHO: StreamProtocol = StreamProtocol::new("/logos/echo/1.0.0");
/// The sink protocol `p2p-probe` is asked to own (and the in-process handler serves).
const SINK: StreamProtocol = StreamProtocol::new("/logos-bench/sink/1.0.0");
/// Size of each write of the sender, and of each read of the in-process sink (as
/// `p2p-probe`'s).
const WRITE_CHUNK: usize = 64 * 1024;
const SINK_READ: usize = 256 * 1024;
/// Deadline of one transfer, one latency sample, and the set-up steps.
const DEADLINE: Duration = Duration::from_secs(120);
/// The repo's metadata of the three modules, so the bench stages them as they ship.
const P2P_META: &str = include_str!("../../../modules/p2p/metadata.json");
const ECHO_META: &str = include_str!("../../../modules/p2p-echo/metadata.json");
const PROBE_META: &str = include_str!("../../../modules/p2p-probe/metadata.json");

/// What the swarm task of a [`Node`] is asked to do.
enum Cmd {
    Dial(Multiaddr, oneshot::Sender<Result<PeerId, String>>),
}

/// One rust-libp2p swarm on its own one-thread runtime.
struct Node {
    rt: Option<tokio::runtime::Runtime>,
    control: libp2p_stream::Control,
    peer: PeerId,
    /// Where it listens, if it was asked to.
    addr: Option<Multiaddr>,
    cmds: mpsc::Sender<Cmd>,
    /// Thread ids of the runtime's threads, for their CPU time.
    tids: Arc<Mutex<Vec<i32>>>,
}

impl Node {
    /// Starts a swarm; with `listen`, on 127.0.0.1 and a port the kernel picks.
    async fn start(listen: bool) -> Result<Node> {
        let tids = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&tids);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .on_thread_start(move || {
                // SAFETY: gettid has no preconditions and cannot fail.
                let tid = unsafe { libc::gettid() };
                seen.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(tid);
            })
            .build()
            .context("creating a libp2p node's runtime")?;
        let (ready_tx, ready_rx) = oneshot::channel();
        let (cmds, rx) = mpsc::channel(8);
        rt.spawn(drive(listen, rx, ready_tx));
        let (control, peer, addr) = tokio::time::timeout(DEADLINE, ready_rx)
            .await
            .map_err(|_| anyhow!("a libp2p node did not start within {DEADLINE:?}"))?
            .map_err(|_| anyhow!("a libp2p node's task ended while starting"))?
            .map_err(|e| anyhow!("starting a libp2p node: {e}"))?;
        Ok(Node {
            rt: Some(rt),
            control,
            peer,
            addr,
            cmds,
            tids,
        })
    }

    /// Dials `addr`; the peer id the connection authenticated.
    async fn dial(&self, addr: Multiaddr) -> Result<PeerId> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Dial(addr.clone(), tx))
            .await
            .map_err(|_| anyhow!("the libp2p node stopped"))?;
        tokio::time::timeout(DEADLINE, rx)
            .await
            .map_err(|_| anyhow!("dialling {addr} took over {DEADLINE:?}"))?
            .map_err(|_| anyhow!("the libp2p node stopped"))?
            .map_err(|e| anyhow!("dialling {addr}: {e}"))
    }

    /// Runs `f` on this node's runtime (the sender's work happens on its thread).
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| anyhow!("the libp2p node stopped"))?;
        tokio::time::timeout(DEADLINE, rt.spawn(f))
            .await
            .map_err(|_| anyhow!("a libp2p exchange took over {DEADLINE:?}"))?
            .map_err(|e| anyhow!("a libp2p task failed: {e}"))?
    }

    /// CPU time of the runtime's threads, in ns.
    fn cpu_ns(&self) -> Option<u64> {
        let tids = self
            .tids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        tids.iter().try_fold(0u64, |sum, tid| {
            // Per thread: /proc/PID/task/TID/schedstat, first field (ns on a CPU).
            let path = format!("/proc/self/task/{tid}/schedstat");
            let text = std::fs::read_to_string(path).ok()?;
            let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
            Some(sum.saturating_add(ns))
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The swarm of a [`Node`], built as `modules/p2p` builds its own (`node.rs`).
fn swarm() -> Result<Swarm<libp2p_stream::Behaviour>> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| libp2p_stream::Behaviour::new())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build())
}

type Ready = Result<(libp2p_stream::Control, PeerId, Option<Multiaddr>), String>;

/// Builds and polls a swarm until its command channel closes.
async fn drive(listen: bool, mut cmds: mpsc::Receiver<Cmd>, ready: oneshot::Sender<Ready>) {
    let mut swarm = match swarm() {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(format!("{e:#}")));
            return;
        }
    };
    let control = swarm.behaviour().new_control();
    let peer = *swarm.local_peer_id();
    let mut addr = None;
    if listen {
        let on: Multiaddr = match "/ip4/127.0.0.1/tcp/0".parse() {
            Ok(a) => a,
            Err(e) => {
                let _ = ready.send(Err(format!("{e}")));
                return;
            }
        };
        if let Err(e) = swarm.listen_on(on) {
            let _ = ready.send(Err(format!("listening on 127.0.0.1: {e}")));
            return;
        }
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => {
                    addr = Some(address);
                    break;
                }
                SwarmEvent::ListenerError { error, .. } => {
                    let _ = ready.send(Err(format!("listening on 127.0.0.1: {error}")));
                    return;
                }
                _ => {}
            }
        }
    }
    if ready.send(Ok((control, peer, addr))).is_err() {
        return;
    }
    let mut dials: HashMap<ConnectionId, oneshot::Sender<Result<PeerId, String>>> = HashMap::new();
    loop {
        tokio::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, connection_id, .. } => {
                    if let Some(tx) = dials.remove(&connection_id) {
                        let _ = tx.send(Ok(peer_id));
                    }
                }
                SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                    if let Some(tx) = dials.remove(&connection_id) {
                        let _ = tx.send(Err(error.to_string()));
                    }
                }
                _ => {}
            },
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(Cmd::Dial(addr, tx)) => {
                    let opts = DialOpts::unknown_peer_id().address(addr).build();
                    let id = opts.connection_id();
                    match swarm.dial(opts) {
                        Ok(()) => drop(dials.insert(id, tx)),
                        Err(e) => drop(tx.send(Err(e.to_string()))),
                    }
                }
            },
        }
    }
}

/// The in-process handlers of the baseline node: sink and echo, as `p2p-probe`'s `sink` and
/// `p2p-echo` behave.
fn serve_baseline(node: &mut Node) -> Result<()> {
    let sinks = node
        .control
        .accept(SINK)
        .map_err(|e| anyhow!("registering {SINK} in process: {e}"))?;
    let echoes = node
        .control
        .accept(ECHO)
        .map_err(|e| anyhow!("registering {ECHO} in process: {e}"))?;
    let rt = node
        .rt
        .as_ref()
        .ok_or_else(|| anyhow!("the baseline node stopped"))?;
    rt.spawn(sinks.for_each(|(_, s)| async move {
        tokio::spawn(sink(s));
    }));
    rt.spawn(echoes.for_each(|(_, s)| async move {
        tokio::spawn(echo(s));
    }));
    Ok(())
}

async fn sink(mut s: Stream) {
    let mut buf = vec![0u8; SINK_READ];
    let mut received: u64 = 0;
    loop {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => received += n as u64,
            Err(_) => return,
        }
    }
    if s.write_all(&received.to_le_bytes()).await.is_ok() {
        let _ = s.close().await;
    }
}

async fn echo(mut s: Stream) {
    let mut buf = vec![0u8; WRITE_CHUNK];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) if s.write_all(&buf[..n]).await.is_ok() => {}
            _ => return,
        }
    }
    let _ = s.close().await;
}

/// Opens a stream for `protocol`, waiting while the remote does not support it yet (an
/// external module registers after it is loaded).
async fn open(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    protocol: StreamProtocol,
) -> Result<Stream> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match control.open_stream(peer, protocol.clone()).await {
            Ok(s) => return Ok(s),
            Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => bail!("opening {protocol} to {peer}: {e}"),
        }
    }
}

/// `bytes` to the sink of `peer` in 64 KiB writes; the time from the first write until the
/// sink's count arrived.
async fn send(mut control: libp2p_stream::Control, peer: PeerId, bytes: u64) -> Result<Duration> {
    let mut s = open(&mut control, peer, SINK).await?;
    let chunk = vec![0xa5u8; WRITE_CHUNK];
    let start = Instant::now();
    let mut sent: u64 = 0;
    while sent < bytes {
        let n = usize::try_from(bytes - sent).map_or(chunk.len(), |r| r.min(chunk.len()));
        s.write_all(&chunk[..n])
            .await
            .with_context(|| format!("writing at {sent} of {bytes} bytes"))?;
        sent += n as u64;
    }
    s.close().await.context("half-closing the sink stream")?;
    let mut count = [0u8; 8];
    s.read_exact(&mut count)
        .await
        .context("reading the sink's count")?;
    let took = start.elapsed();
    let got = u64::from_le_bytes(count);
    if got != bytes {
        bail!("the sink counted {got} of {bytes} bytes");
    }
    Ok(took)
}

/// One accept-to-first-byte sample against the echo of `peer`; then the stream is finished
/// cleanly (untimed).
async fn first_byte(mut control: libp2p_stream::Control, peer: PeerId) -> Result<Duration> {
    let start = Instant::now();
    let mut s = open(&mut control, peer, ECHO).await?;
    s.write_all(&[0x5a])
        .await
        .context("writing the first byte")?;
    let mut one = [0u8; 1];
    s.read_exact(&mut one)
        .await
        .context("reading the echoed byte")?;
    let took = start.elapsed();
    s.close().await.context("half-closing the echo stream")?;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .await
        .context("reading the echo to its end")?;
    if one != [0x5a] || !rest.is_empty() {
        bail!("the echo sent back {one:?} then {} more bytes", rest.len());
    }
    Ok(took)
}

/// The core with `p2p` (granted the network, listening on loopback), `p2p-echo` and
/// `p2p-probe`, all release builds run by `logos_host`.
struct Setup {
    core: Core,
    /// `p2p`'s peer id and loopback address.
    peer: PeerId,
    addr: Multiaddr,
    _dir: tempfile::TempDir,
}

/// The libraries the rows need beside this executable; the reason when one is missing.
fn built() -> std::result::Result<(PathBuf, PathBuf), String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this executable: {e}"))?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    for f in [
        "logos_host",
        "libp2p.so",
        "libp2p_echo.so",
        "libp2p_probe.so",
    ] {
        if !dir.join(f).is_file() {
            return Err(format!(
                "{f} is not built beside this binary \
                 (cargo build --release -p logos-host -p p2p -p p2p-echo -p p2p-probe)"
            ));
        }
    }
    Ok((dir.join("logos_host"), dir))
}

fn stage(modules: &Path, built: &Path, name: &str, meta: &str) -> Result<()> {
    let doc: serde_json::Value =
        serde_json::from_str(meta).with_context(|| format!("{name}'s metadata.json"))?;
    let main = doc["main"]
        .as_str()
        .ok_or_else(|| anyhow!("{name}'s metadata.json has no main"))?;
    let dir = modules.join(name);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("metadata.json"), meta)?;
    std::os::unix::fs::symlink(built.join(main), dir.join(main))
        .with_context(|| format!("linking {main} into {}", dir.display()))?;
    Ok(())
}

impl Setup {
    async fn create(host: &Path, built: &Path) -> Result<Setup> {
        let dir = tempfile::Builder::new()
            .prefix("logos-bench-p2p-")
            .tempdir()
            .context("temp dir")?;
        let modules = dir.path().join("modules");
        stage(&modules, built, "p2p", P2P_META)?;
        stage(&modules, built, "p2p-echo", ECHO_META)?;
        stage(&modules, built, "p2p-probe", PROBE_META)?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("p2p"))?;
        // Loopback only; connections kept between rounds.
        std::fs::write(
            data.join("p2p/p2p.json"),
            r#"{"listen": ["/ip4/127.0.0.1/tcp/0"], "idleTimeoutMs": 600000}"#,
        )?;
        let mut network = ModuleSettings::default();
        network.network = true;
        let core = Core::builder()
            .modules_dir(&modules)
            .runtime_dir(dir.path().join("run"))
            .data_dir(&data)
            .host_binary(host)
            .module("p2p", network)
            .call_timeout(Duration::from_secs(600))
            .module_log(std::env::var("LOGOS_BENCH_MODULE_LOG").unwrap_or_else(|_| "warn".into()))
            .build()?
            .start()
            .await
            .context("starting a core with p2p")?;
        let setup = Setup::connect(&core).await;
        match setup {
            Ok((peer, addr)) => Ok(Setup {
                core,
                peer,
                addr,
                _dir: dir,
            }),
            Err(e) => {
                core.shutdown().await;
                Err(e)
            }
        }
    }

    async fn connect(core: &Core) -> Result<(PeerId, Multiaddr)> {
        core.load_many(&["p2p", "p2p-echo", "p2p-probe"])
            .await
            .context("loading p2p, p2p-echo and p2p-probe")?;
        let id = core.call("p2p", "peerId", Vec::new()).await?;
        let peer: PeerId = id
            .as_str()
            .ok_or_else(|| anyhow!("p2p.peerId returned {id}"))?
            .parse()
            .context("p2p's peer id")?;
        let addrs = core.call("p2p", "listenAddrs", Vec::new()).await?;
        let addr: Multiaddr = addrs
            .as_list()
            .and_then(|l| l.iter().find_map(Value::as_str))
            .ok_or_else(|| anyhow!("p2p.listenAddrs returned {addrs}"))?
            .parse()
            .context("p2p's listen address")?;
        core.call("p2p-probe", "sink", vec![SINK.as_ref().into()])
            .await
            .context("p2p-probe.sink")?;
        Ok((peer, addr))
    }

    /// CPU time of the `p2p` and `p2p-probe` processes, thread by thread.
    fn cpu(&self) -> Option<crate::cpu::Snapshot> {
        let pid = |n: &str| self.core.module(n).ok().and_then(|m| m.pid);
        crate::cpu::Snapshot::of(&[pid("p2p")?, pid("p2p-probe")?])
    }
}

/// The two libp2p rows; skipped with the reason when the modules are not built.
pub async fn rows(plan: &Plan) -> Vec<Row> {
    let (host, dir) = match built() {
        Ok(b) => b,
        Err(why) => {
            return vec![
                Row::skipped(STREAM_ID, STREAM_NAME, why.clone()),
                Row::skipped(FIRST_BYTE_ID, FIRST_BYTE_NAME, why),
            ];
        }
    };
    let setup = match Setup::create(&host, &dir).await {
        Ok(s) => s,
        Err(e) => {
            return vec![
                Row::failed(STREAM_ID, STREAM_NAME, &e),
                Row::failed(FIRST_BYTE_ID, FIRST_BYTE_NAME, &e),
            ];
        }
    };
    let result = measure(&setup, plan).await;
    setup.core.shutdown().await;
    result.unwrap_or_else(|e| {
        vec![
            Row::failed(STREAM_ID, STREAM_NAME, &e),
            Row::failed(FIRST_BYTE_ID, FIRST_BYTE_NAME, &e),
        ]
    })
}

/// Per round: CPU ns of the receiving side and the transfer's duration.
struct Transfer {
    bps: Vec<f64>,
    cpu_per_mib: Vec<f64>,
}

impl Transfer {
    fn new() -> Transfer {
        Transfer {
            bps: Vec::new(),
            cpu_per_mib: Vec::new(),
        }
    }

    fn add(&mut self, bytes: u64, took: Duration, cpu: Option<u64>) {
        self.bps.push(bytes as f64 / took.as_secs_f64());
        if let Some(ns) = cpu {
            self.cpu_per_mib
                .push(ns as f64 / (bytes as f64 / (1024.0 * 1024.0)));
        }
    }
}

fn diff(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    Some(after?.saturating_sub(before?))
}

async fn measure(setup: &Setup, plan: &Plan) -> Result<Vec<Row>> {
    let bytes = plan.stream_bytes;
    let samples = if plan.quick { 20 } else { 200 };
    let client = Node::start(false).await?;
    let mut inproc = Node::start(true).await?;
    serve_baseline(&mut inproc)?;
    let inproc_addr = inproc
        .addr
        .clone()
        .ok_or_else(|| anyhow!("the in-process node has no address"))?;
    let theirs = client.dial(inproc_addr).await?;
    if theirs != inproc.peer {
        bail!(
            "dialled {theirs}, expected the in-process node {}",
            inproc.peer
        );
    }
    let ours = client.dial(setup.addr.clone()).await?;
    if ours != setup.peer {
        bail!("dialled {ours}, expected p2p's {}", setup.peer);
    }
    // Warm both paths (and wait for both external registrations).
    for peer in [inproc.peer, setup.peer] {
        let c = client.control.clone();
        client.run(send(c.clone(), peer, 1 << 20)).await?;
        for _ in 0..(samples / 4).max(3) {
            client.run(first_byte(c.clone(), peer)).await?;
        }
    }
    let (mut ext, mut base) = (Transfer::new(), Transfer::new());
    let (mut ext_lat, mut base_lat) = (Vec::new(), Vec::new());
    for _ in 0..plan.rounds {
        let before = inproc.cpu_ns();
        let took = client
            .run(send(client.control.clone(), inproc.peer, bytes))
            .await
            .context("in-process sink")?;
        base.add(bytes, took, diff(before, inproc.cpu_ns()));

        let before = setup.cpu();
        let took = client
            .run(send(client.control.clone(), setup.peer, bytes))
            .await
            .context("external sink (p2p → p2p-probe)")?;
        let spent = setup.cpu().zip(before).map(|(after, b)| after.since(&b));
        ext.add(bytes, took, spent);

        for _ in 0..samples {
            let t = client
                .run(first_byte(client.control.clone(), inproc.peer))
                .await
                .context("in-process echo")?;
            base_lat.push(t.as_nanos() as f64);
            let t = client
                .run(first_byte(client.control.clone(), setup.peer))
                .await
                .context("external echo (p2p → p2p-echo)")?;
            ext_lat.push(t.as_nanos() as f64);
        }
    }
    drop(client);
    drop(inproc);

    let (o, r) = (stats::median(&ext.bps), stats::median(&base.bps));
    let ratio = o / r;
    let mut stream = Row::new(
        STREAM_ID,
        format!("{STREAM_NAME} (p2p → p2p-probe sink), {} MiB", bytes >> 20),
    );
    stream.ours = Some(Figure::of(o, Unit::BytesPerSec));
    stream.baseline = Some(Figure::of(r, Unit::BytesPerSec));
    stream.baseline_name = Some("in-process rust-libp2p handler (libp2p-stream)".into());
    stream.ratio = Some(ratio);
    stream.target = Some("≥ 0.7×".into());
    stream.status = Status::check(ratio >= 0.7);
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let mib = 1024.0 * 1024.0;
    stream
        .extra("ours_min_mib_s", min(&ext.bps) / mib)
        .extra("ours_max_mib_s", max(&ext.bps) / mib)
        .extra("inproc_min_mib_s", min(&base.bps) / mib)
        .extra("inproc_max_mib_s", max(&base.bps) / mib);
    if !ext.cpu_per_mib.is_empty() && !base.cpu_per_mib.is_empty() {
        stream
            .extra("ours_cpu_per_mib_ns", stats::median(&ext.cpu_per_mib))
            .extra("inproc_cpu_per_mib_ns", stats::median(&base.cpu_per_mib));
    }

    let ours = stats::summarize(&mut ext_lat);
    let raw = stats::summarize(&mut base_lat);
    let mut first = Row::new(FIRST_BYTE_ID, FIRST_BYTE_NAME);
    first.ours = Some(Figure::latency(&ours));
    first.baseline = Some(Figure::latency(&raw));
    first.baseline_name = Some("in-process rust-libp2p echo handler".into());
    first.ratio = Some(ours.median / raw.median);
    first.status = Status::Info;
    first
        .extra("samples", ours.n as u64)
        .extra("ours_min_ns", ours.min)
        .extra("inproc_min_ns", raw.min);
    Ok(vec![stream, first])
}
