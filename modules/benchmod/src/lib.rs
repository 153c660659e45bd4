//! `benchmod`: the module every runtime row of `logos-bench` measures with.
//!
//! Served two ways, the same code either way:
//! - by the `benchmod` program (`src/main.rs`, `cargo build --release -p benchmod`), a module
//!   built as its author would build one. When it is built beside `logos-bench`, every module
//!   dir the benchmark generates runs it, so the rows measure a module of a few MB of text;
//! - by `logos-bench` itself, when that program is not built: the core starts a module dir's
//!   `main`, a symlink named [`EXE_NAME`] to the benchmark's binary, and its `main` calls
//!   [`invoked_as_module`] and [`serve`]. So `cargo run -p logos-bench` alone still runs every
//!   row, with modules that carry the core and every benchmark linked in.
//!
//! [`serve`] runs [`Bench`] under the name the core gave in `LOGOS_MODULE`
//! (`logos_sdk::run_named`; the core checks it against the metadata in the handshake), so a
//! hundred generated module dirs share one program.
//!
//! Every measurement of module → module traffic is taken here, inside the calling module, so
//! the core is not on the measured path. Never touches the benchmark's report.

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use logos_sdk::{ByteStream, Context, ErrorCode, Events, Fault, Value, module};
use serde::Serialize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// File name of a generated module dir's `main`: a symlink to the `benchmod` program, or to
/// `logos-bench` when that program is not built. Also the name the program is built as.
pub const EXE_NAME: &str = "benchmod";
/// Stream protocol served by [`Bench`]: read as fast as possible, then report the count.
pub const FAST_SINK: &str = "fastsink";
/// Largest payload `pingLoop`/`pipeline` accept, and most samples `pingLoop` keeps.
const MAX_PAYLOAD: u64 = 16 * 1024 * 1024;
const MAX_SAMPLES: u64 = 10_000_000;
/// Size of each `write` on a benchmark stream, and of the sink's reads.
const STREAM_CHUNK: usize = 64 * 1024;
const SINK_READ: usize = 256 * 1024;
/// Deadline of each call made while measuring.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `true` when this process runs as a module (through the [`EXE_NAME`] link): started by the
/// core, or run as a remote module (`LOGOS_REMOTE`, docs/remote-modules.md).
pub fn invoked_as_module() -> bool {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let named = std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n == EXE_NAME);
    named
        && (std::env::var_os("LOGOS_CONTROL_FD").is_some()
            || std::env::var_os(logos_sdk::LOGOS_REMOTE).is_some())
}

/// Serves [`Bench`] per the module process contract; returns the exit code.
pub fn serve() -> i32 {
    let name = std::env::var("LOGOS_MODULE").unwrap_or_else(|_| EXE_NAME.to_owned());
    logos_sdk::run_named::<Bench>(&name)
}

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process, so times taken in a
/// publisher and its subscribers compare.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and
    // CLOCK_MONOTONIC is always supported on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn bad_args(msg: impl Into<String>) -> Fault {
    Fault::new(ErrorCode::InvalidArgs, msg)
}

fn failed(msg: impl Into<String>) -> Fault {
    Fault::new(ErrorCode::MethodFailed, msg)
}

/// The module's events.
#[derive(Debug, Events)]
pub enum BenchEvent {
    /// One event of a `fanout`: data `[seq]`; `seq` -1 is a probe that listeners ignore.
    Tick(i64),
}

/// What a listening module has received of `tick` events since `resetHeard`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Heard {
    /// Ticks received.
    pub received: u64,
    /// Ticks whose sequence number was not the one after the previous tick.
    pub out_of_order: u64,
    /// `CLOCK_MONOTONIC` ns when the last tick arrived.
    pub last_ns: u64,
    /// The sequence number expected next.
    #[serde(skip)]
    pub(crate) next: i64,
}

impl Heard {
    /// Reads `heard`'s answer as the core returns it; `None` when a field is missing.
    pub fn from_value(v: &Value) -> Option<Heard> {
        let field = |k: &str| v.get(k).and_then(Value::as_u64);
        Some(Heard {
            received: field("received")?,
            out_of_order: field("outOfOrder")?,
            last_ns: field("lastNs")?,
            next: 0,
        })
    }
}

/// The benchmark module.
#[derive(Debug)]
pub struct Bench {
    heard: Arc<Mutex<Heard>>,
}

/// Reads a stream to its end as fast as possible, then writes the byte count (u64 LE) back.
async fn fast_sink(mut stream: ByteStream) {
    let mut buf = vec![0u8; SINK_READ];
    let mut received: u64 = 0;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => received += n as u64,
            Err(_) => return,
        }
    }
    let _ = stream.write_all(&received.to_le_bytes()).await;
    let _ = stream.shutdown().await;
}

#[module(name = "benchmod", version = "1.0.0", events = BenchEvent)]
impl Bench {
    #[init]
    fn new(ctx: &Context) -> Self {
        ctx.on_stream(FAST_SINK, fast_sink);
        Bench {
            heard: Arc::new(Mutex::new(Heard::default())),
        }
    }

    /// Returns its argument unchanged.
    pub fn echo(&self, v: Value) -> Value {
        v
    }

    /// Calls `target.echo(bytes)` with a `size`-byte argument `n` times, one at a time, after
    /// a warm-up; returns each round trip in nanoseconds, measured here.
    pub async fn ping_loop(
        &self,
        ctx: &Context,
        target: String,
        n: u64,
        size: u64,
    ) -> Result<Vec<u64>, Fault> {
        if size > MAX_PAYLOAD || n > MAX_SAMPLES {
            return Err(bad_args(format!(
                "pingLoop takes at most {MAX_SAMPLES} calls of at most {MAX_PAYLOAD} bytes"
            )));
        }
        let client = ctx.client(&target).with_timeout(CALL_TIMEOUT);
        let payload = Value::Bytes(vec![0x5a; size as usize].into());
        for _ in 0..(n / 10).clamp(10, 2_000) {
            client.call_raw("echo", vec![payload.clone()]).await?;
        }
        let mut samples = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let start = Instant::now();
            let reply = client.call_raw("echo", vec![payload.clone()]).await?;
            samples.push(nanos(start.elapsed()));
            if reply != payload {
                return Err(failed(format!("{target}.echo returned {reply}")));
            }
        }
        Ok(samples)
    }

    /// Calls `target.echo(bytes)` `n` times on one connection keeping `window` calls in
    /// flight; returns the nanoseconds from the first call to the last reply.
    pub async fn pipeline(
        &self,
        ctx: &Context,
        target: String,
        n: u64,
        size: u64,
        window: u64,
    ) -> Result<u64, Fault> {
        if size > MAX_PAYLOAD || window == 0 {
            return Err(bad_args(
                "pipeline takes a window of 1 or more and a payload of at most 16 MiB",
            ));
        }
        let client = ctx.client(&target).with_timeout(CALL_TIMEOUT);
        let payload = Value::Bytes(vec![0x5a; size as usize].into());
        for _ in 0..100 {
            client.call_raw("echo", vec![payload.clone()]).await?;
        }
        let start = Instant::now();
        let mut in_flight = FuturesUnordered::new();
        let mut issued = 0;
        while issued < n && (in_flight.len() as u64) < window {
            in_flight.push(client.call_raw("echo", vec![payload.clone()]));
            issued += 1;
        }
        while let Some(reply) = in_flight.next().await {
            reply?;
            if issued < n {
                in_flight.push(client.call_raw("echo", vec![payload.clone()]));
                issued += 1;
            }
        }
        Ok(nanos(start.elapsed()))
    }

    /// Streams `bytes` bytes to `target`'s fast sink in 64 KiB writes, half-closes, and waits
    /// for the sink's count; returns the nanoseconds from opening the stream to the count.
    pub async fn stream_to(&self, ctx: &Context, target: String, bytes: u64) -> Result<u64, Fault> {
        let client = ctx.client(&target).with_timeout(CALL_TIMEOUT);
        // Connect first, so only the stream is measured.
        client.call_raw("echo", vec![Value::Null]).await?;
        let io = |e: std::io::Error| failed(format!("stream to {target}: {e}"));
        let chunk = vec![0xa5u8; STREAM_CHUNK];
        let start = Instant::now();
        let mut stream = client.open_stream(FAST_SINK).await?;
        let mut sent: u64 = 0;
        while sent < bytes {
            let n = usize::try_from(bytes - sent).map_or(STREAM_CHUNK, |r| r.min(STREAM_CHUNK));
            stream.write_all(&chunk[..n]).await.map_err(io)?;
            sent += n as u64;
        }
        stream.shutdown().await.map_err(io)?;
        let mut count = Vec::with_capacity(8);
        stream.read_to_end(&mut count).await.map_err(io)?;
        let elapsed = nanos(start.elapsed());
        let received = <[u8; 8]>::try_from(count.as_slice()).map(u64::from_le_bytes);
        match received {
            Ok(r) if r == bytes => Ok(elapsed),
            _ => Err(failed(format!(
                "{target} received {count:?}, expected {bytes} bytes"
            ))),
        }
    }

    /// Emits `tick` events 0..n in bursts of `burst`, waiting after each burst until every
    /// subscriber's connection has taken it (so none is dropped); returns the
    /// `CLOCK_MONOTONIC` ns at the first emit.
    pub async fn fanout(&self, ctx: &Context, n: u64, burst: u64) -> Result<u64, Fault> {
        if burst == 0 || burst > 1000 {
            return Err(bad_args(
                "fanout takes a burst of 1 to 1000 events (the event queue holds 1024)",
            ));
        }
        let start = monotonic_ns();
        let mut seq: u64 = 0;
        while seq < n {
            let end = (seq + burst).min(n);
            for i in seq..end {
                let i = i64::try_from(i).map_err(|_| bad_args("n is too large"))?;
                ctx.emit(BenchEvent::Tick(i))
                    .map_err(|e| failed(e.to_string()))?;
            }
            ctx.events_flushed().await;
            seq = end;
        }
        Ok(start)
    }

    /// Emits a probe `tick(-1)` and returns how many subscribers it was queued for.
    pub fn subscribers(&self, ctx: &Context) -> Result<u64, Fault> {
        let n = ctx
            .emit(BenchEvent::Tick(-1))
            .map_err(|e| failed(e.to_string()))?;
        Ok(n as u64)
    }

    /// Subscribes to `source`'s `tick` events, counted for `heard`.
    pub fn listen(&self, ctx: &Context, source: String) {
        let heard = Arc::clone(&self.heard);
        ctx.on_event(&source, "tick", move |data| {
            let Some(seq) = data.first().and_then(Value::as_i64) else {
                return;
            };
            if seq < 0 {
                return;
            }
            let mut h = heard.lock().unwrap_or_else(PoisonError::into_inner);
            if seq != h.next {
                h.out_of_order += 1;
            }
            h.next = seq.saturating_add(1);
            h.received += 1;
            h.last_ns = monotonic_ns();
        });
    }

    /// What arrived since the last `resetHeard`.
    pub fn heard(&self) -> Heard {
        *self.heard.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets what arrived so far.
    pub fn reset_heard(&self) {
        *self.heard.lock().unwrap_or_else(PoisonError::into_inner) = Heard::default();
    }

    /// This process's id.
    pub fn pid(&self) -> u32 {
        std::process::id()
    }
}
