//! The remote module rows, against baselines that use `rustls` with the very configurations of
//! the link (TLS 1.3, `ring`, the core's own certificate and key, the pin checked), measured in
//! the same run, alternating rounds:
//!
//! - `remote_rtt`: a call round trip from the core to a remote module over loopback TLS
//!   (`Core::call`, timed in this process, which embeds the core), against a raw TLS
//!   ping-pong whose reads wait the way the sessions' do (`poll_io`: poll after traffic, then
//!   block), as `rtt` is; the blocking ping-pong is in the note. Path: the core's session
//!   over TLS → the remote process's session, and back.
//! - `remote_relay_rtt` (reported, no target): a local module's round trip to the remote one,
//!   timed inside `bma` (`pingLoop`): `bma` → the core's proxy socket for `bmb` → the core
//!   splices it onto a TLS link → the remote. Twice the process hops of the first row.
//! - `remote_stream`: a 64 MiB stream `bma` → remote `bmb` over that relay, against a raw TLS
//!   copy.
//!
//! `bmb` is the module program (`program.rs`) run as a remote module (`LOGOS_REMOTE`, a
//! separate process, as an operator would run it). The baselines run client and server as
//! two threads of this process over 127.0.0.1: the kernel, TCP and TLS, nothing of ours.
//!
//! Never asserts a figure: the status says whether the target was met.

use crate::baseline::Wait;
use crate::poll_io::Polling;
use crate::report::{Figure, Row, Status, Unit};
use crate::runtime::Plan;
use crate::stats;
use anyhow::{Context as _, Result, anyhow, bail};
use benchmod::EXE_NAME;
use logos_core::{Core, State, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAYLOAD: usize = 64;

/// A core listening on 127.0.0.1 with a local `bma`, and `bmb` connected as a remote module.
struct Setup {
    core: Core,
    remote: Child,
    cert: Vec<u8>,
    key: Vec<u8>,
    pin: logos_remote::Pin,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn create() -> Result<Setup> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let exe = crate::program::ModuleProgram::beside(&exe).path;
        let dir = tempfile::Builder::new()
            .prefix("logos-bench-remote-")
            .tempdir()
            .context("temp dir")?;
        let modules = dir.path().join("modules");
        let bma = modules.join("bma");
        std::fs::create_dir_all(&bma)?;
        let meta = serde_json::json!({
            "name": "bma", "version": "1.0.0", "main": EXE_NAME, "restart": "never",
            "permissions": ["bmb"],
        });
        std::fs::write(bma.join("metadata.json"), meta.to_string())?;
        std::os::unix::fs::symlink(&exe, bma.join(EXE_NAME))?;
        let core = Core::builder()
            .modules_dir(&modules)
            .runtime_dir(dir.path().join("run"))
            .data_dir(dir.path().join("data"))
            .listen("127.0.0.1:0")
            .call_timeout(Duration::from_secs(600))
            .module_log(std::env::var("LOGOS_BENCH_MODULE_LOG").unwrap_or_else(|_| "warn".into()))
            .build()?
            .start()
            .await
            .context("starting a core that listens for remote modules")?;
        let granted = core.grant_remote("bmb", None, Vec::new(), Vec::new())?;
        let there = dir.path().join("remote");
        std::fs::create_dir_all(&there)?;
        let credential = there.join("bmb.credential.json");
        write_private(&credential, &granted.document)?;
        let meta = serde_json::json!({ "name": "bmb", "version": "1.0.0" });
        std::fs::write(there.join("metadata.json"), meta.to_string())?;
        let link = there.join(EXE_NAME);
        std::os::unix::fs::symlink(&exe, &link)?;
        let remote = Command::new(&link)
            .current_dir(&there)
            .env_clear()
            .env("LOGOS_REMOTE", &credential)
            .env("LOGOS_MODULE", "bmb")
            .env("LOGOS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting the remote module")?;
        let identity = dir.path().join("data/.logos-core/remote");
        let cert = std::fs::read(identity.join("core.crt"))?;
        let key = std::fs::read(identity.join("core.key"))?;
        let pin = logos_remote::Pin::of_certificate(&cert);
        let setup = Setup {
            core,
            remote,
            cert,
            key,
            pin,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while setup.core.module("bmb").map(|m| m.state).ok() != Some(State::Ready) {
            if Instant::now() > deadline {
                bail!("the remote module did not connect within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        setup.core.load("bma").await?;
        Ok(setup)
    }

    async fn close(mut self) {
        self.core.shutdown().await;
        let _ = self.remote.kill();
        let _ = self.remote.wait();
    }
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// The TCP socket under a baseline TLS connection, waiting as the row asks: blocking reads,
/// or the runtime's way (`poll_io`), since a remote module's session polls its TLS link after
/// traffic as it does a Unix socket.
enum Tcp {
    Block(TcpStream),
    Poll(Polling<TcpStream>),
}

impl Tcp {
    fn new(tcp: TcpStream, wait: Wait) -> std::io::Result<Tcp> {
        tcp.set_nodelay(true)?;
        Ok(match wait {
            Wait::Block => Tcp::Block(tcp),
            Wait::Poll => Tcp::Poll(Polling::new(tcp)?),
        })
    }
}

impl Read for Tcp {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Tcp::Block(s) => s.read(buf),
            Tcp::Poll(s) => s.read(buf),
        }
    }
}

impl Write for Tcp {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Tcp::Block(s) => s.write(buf),
            Tcp::Poll(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Tcp::Block(s) => s.flush(),
            Tcp::Poll(s) => s.flush(),
        }
    }
}

/// The client end of a baseline TLS connection.
type TlsClient = rustls::StreamOwned<rustls::ClientConnection, Tcp>;
/// The server end of a baseline TLS connection.
type TlsServer = rustls::StreamOwned<rustls::ServerConnection, Tcp>;

/// A TLS connection over loopback with the link's configurations, both ends waiting as `wait`
/// says: (client, server thread).
fn tls_pair<F>(
    setup: &Setup,
    wait: Wait,
    serve: F,
) -> Result<(TlsClient, std::thread::JoinHandle<Result<()>>)>
where
    F: FnOnce(TlsServer) -> Result<()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server_config = logos_remote::tls::server_config(setup.cert.clone(), setup.key.clone())?;
    let server = std::thread::spawn(move || -> Result<()> {
        let (tcp, _) = listener.accept()?;
        let conn = rustls::ServerConnection::new(server_config)?;
        serve(rustls::StreamOwned::new(conn, Tcp::new(tcp, wait)?))
    });
    let tcp = Tcp::new(TcpStream::connect(addr)?, wait)?;
    let config: Arc<rustls::ClientConfig> = logos_remote::tls::client_config(setup.pin)?;
    let conn = rustls::ClientConnection::new(config, logos_remote::tls::server_name())?;
    Ok((rustls::StreamOwned::new(conn, tcp), server))
}

/// `n` round trips of `PAYLOAD` bytes over one TLS connection, both ends waiting as `wait`
/// says; nanoseconds each.
fn tls_round_trips(setup: &Setup, n: usize, wait: Wait) -> Result<Vec<f64>> {
    let (mut client, server) = tls_pair(setup, wait, |mut s| {
        let mut buf = [0u8; PAYLOAD];
        loop {
            match s.read_exact(&mut buf) {
                Ok(()) => {
                    s.write_all(&buf)?;
                    s.flush()?;
                }
                Err(_) => return Ok(()),
            }
        }
    })?;
    let mut buf = [0x5au8; PAYLOAD];
    for _ in 0..(n / 10).clamp(10, 2_000) {
        client.write_all(&buf)?;
        client.flush()?;
        client.read_exact(&mut buf)?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        client.write_all(&buf)?;
        client.flush()?;
        client.read_exact(&mut buf)?;
        samples.push(start.elapsed().as_nanos() as f64);
    }
    drop(client);
    server
        .join()
        .map_err(|_| anyhow!("TLS pong thread panicked"))??;
    Ok(samples)
}

/// `bytes` written over one TLS connection in 64 KiB writes, until the reader has them all;
/// bytes per second.
fn tls_copy(setup: &Setup, bytes: u64) -> Result<f64> {
    let (mut client, server) = tls_pair(setup, Wait::Block, move |mut s| {
        let mut buf = vec![0u8; 256 * 1024];
        let mut got: u64 = 0;
        while got < bytes {
            let n = s.read(&mut buf)?;
            if n == 0 {
                bail!("TLS copy: the writer stopped at {got} of {bytes} bytes");
            }
            got += n as u64;
        }
        s.write_all(&got.to_le_bytes())?;
        s.flush()?;
        Ok(())
    })?;
    let chunk = vec![0xa5u8; 64 * 1024];
    let start = Instant::now();
    let mut sent: u64 = 0;
    while sent < bytes {
        let n = usize::try_from(bytes - sent).map_or(chunk.len(), |r| r.min(chunk.len()));
        client.write_all(&chunk[..n])?;
        sent += n as u64;
    }
    client.flush()?;
    let mut count = [0u8; 8];
    client.read_exact(&mut count)?;
    let elapsed = start.elapsed();
    server
        .join()
        .map_err(|_| anyhow!("TLS sink thread panicked"))??;
    if u64::from_le_bytes(count) != bytes {
        bail!("TLS copy: {} of {bytes} bytes", u64::from_le_bytes(count));
    }
    Ok(bytes as f64 / elapsed.as_secs_f64())
}

/// Runs blocking baseline work off the runtime's thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow!("baseline task failed: {e}"))?
}

/// The baseline of the two round-trip rows.
const RAW_TLS_POLLING: &str = "raw TLS 1.3 ping-pong (rustls), polling like the runtime";

/// The remote rows.
pub async fn rows(plan: &Plan) -> Result<Vec<Row>> {
    let setup = Arc::new(Setup::create().await?);
    let result = measure(&setup, plan).await;
    if let Ok(setup) = Arc::try_unwrap(setup) {
        setup.close().await;
    }
    result
}

async fn measure(setup: &Arc<Setup>, plan: &Plan) -> Result<Vec<Row>> {
    let n = plan.rtt_calls;
    let bytes = plan.stream_bytes;
    let (mut ours, mut raw, mut raw_block, mut direct) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ours_bps, mut raw_bps) = (Vec::new(), Vec::new());
    let payload = Value::Bytes(vec![0x5a; PAYLOAD].into());
    for _ in 0..(n / 10).clamp(10, 2_000) {
        setup
            .core
            .call("bmb", "echo", vec![payload.clone()])
            .await?;
    }
    for _ in 0..plan.rounds {
        let s = Arc::clone(setup);
        raw.extend(blocking(move || tls_round_trips(&s, n as usize, Wait::Poll)).await?);
        let s = Arc::clone(setup);
        raw_block.extend(blocking(move || tls_round_trips(&s, n as usize, Wait::Block)).await?);
        for _ in 0..n {
            let start = Instant::now();
            setup
                .core
                .call("bmb", "echo", vec![payload.clone()])
                .await
                .context("bmb.echo")?;
            direct.push(start.elapsed().as_nanos() as f64);
        }
        let v = setup
            .core
            .call(
                "bma",
                "pingLoop",
                vec!["bmb".into(), n.into(), (PAYLOAD as u64).into()],
            )
            .await
            .context("bma.pingLoop(bmb)")?;
        let list = v
            .as_list()
            .ok_or_else(|| anyhow!("pingLoop returned {v}"))?;
        ours.extend(list.iter().filter_map(Value::as_u64).map(|x| x as f64));

        let s = Arc::clone(setup);
        raw_bps.push(blocking(move || tls_copy(&s, bytes)).await?);
        let ns = setup
            .core
            .call("bma", "streamTo", vec!["bmb".into(), bytes.into()])
            .await
            .context("bma.streamTo(bmb)")?
            .as_u64()
            .ok_or_else(|| anyhow!("streamTo returned no count"))?;
        ours_bps.push(bytes as f64 / (ns as f64 / 1e9));
    }
    let ours = stats::summarize(&mut ours);
    let raw = stats::summarize(&mut raw);
    let raw_block = stats::summarize(&mut raw_block);
    let direct = stats::summarize(&mut direct);
    let ratio = direct.median / raw.median;
    let mut rtt = Row::new(
        "remote_rtt",
        "call round trip core → remote module over loopback TLS, 64 B",
    );
    rtt.ours = Some(Figure::latency(&direct));
    rtt.baseline = Some(Figure::latency(&raw));
    rtt.baseline_name = Some(RAW_TLS_POLLING.into());
    rtt.ratio = Some(ratio);
    rtt.target = Some("≤ 1.5× the raw TLS ping-pong that waits the same way".into());
    rtt.status = Status::check(ratio <= 1.5);
    // The blocking ping-pong is bimodal: about 5 µs with its two threads on one CPU, about
    // 50 µs on two idle ones (each read a sleep and a wake-up); a ratio against it says
    // where the scheduler put the threads, not what the runtime costs.
    rtt.note = Some(format!(
        "against a raw TLS ping-pong with blocking reads, {} (p99 {}): {:.2}×; both polling ones poll for {} after traffic",
        crate::report::format_value(raw_block.median, Unit::Nanos),
        crate::report::format_value(raw_block.p99, Unit::Nanos),
        direct.median / raw_block.median,
        crate::report::format_value(crate::poll_io::window().as_nanos() as f64, Unit::Nanos),
    ));
    rtt.extra("samples", direct.n as u64)
        .extra("ours_min_ns", direct.min)
        .extra("raw_min_ns", raw.min)
        .extra("raw_blocking_median_ns", raw_block.median)
        .extra("ratio_vs_blocking", direct.median / raw_block.median);
    let relay_ratio = ours.median / raw.median;
    let mut relay = Row::new(
        "remote_relay_rtt",
        "call round trip local module → remote module (relayed by the core), 64 B",
    );
    relay.ours = Some(Figure::latency(&ours));
    relay.baseline = Some(Figure::latency(&raw));
    relay.baseline_name = Some(RAW_TLS_POLLING.into());
    relay.ratio = Some(relay_ratio);
    relay.status = Status::Info;
    relay.extra("samples", ours.n as u64);

    let (o, r) = (stats::median(&ours_bps), stats::median(&raw_bps));
    let ratio = o / r;
    let mut stream = Row::new(
        "remote_stream",
        format!(
            "stream local module → remote module over loopback TLS, {} MiB",
            bytes >> 20
        ),
    );
    stream.ours = Some(Figure::of(o, Unit::BytesPerSec));
    stream.baseline = Some(Figure::of(r, Unit::BytesPerSec));
    stream.baseline_name = Some("raw TLS 1.3 copy (rustls)".into());
    stream.ratio = Some(ratio);
    stream.target = Some("≥ 0.7×".into());
    stream.status = Status::check(ratio >= 0.7);
    Ok(vec![rtt, relay, stream])
}
