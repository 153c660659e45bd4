//! `p2p-probe`: a test module that drives one side of libp2p streams through `p2p`, one knob
//! per method, so the failure tests of issue 12 can act on a stream at the moment they choose.
//!
//! Registers protocols and accepts, or opens, streams with `logos_sdk::p2p` and holds them
//! by stream id; reads (with a timeout, returning what it got), writes, half-closes, resets
//! and `closeWithEof`s them on request; and logs every `p2p` event it receives, in order. It
//! is not a dependent of `p2p` (its metadata grants it `p2p.*`), so unloading `p2p` leaves
//! it running to report what it saw. Data crosses as UTF-8 text, which is all the tests
//! need. One bulk mode, `sink`, reads streams through the runtime byte stream at full speed
//! (what `logos-bench`'s `p2p_stream` row measures). Never an example to copy: it holds
//! streams until told otherwise.

use logos_sdk::p2p::{Options, P2p, P2pError, P2pStream, Registration};
use logos_sdk::{Context, Value, module};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Size of each read of a `sink` stream (the runtime's stream window).
const SINK_READ: usize = 256 * 1024;

/// The `p2p` events this probe logs.
pub const EVENTS: [&str; 6] = [
    "streamInbound",
    "streamRemoteClosed",
    "streamReset",
    "nodeStopping",
    "nodeStopped",
    "registrationRevoked",
];

/// A held stream; `None` once a consuming call (`reset`, `closeWithEof`) took it.
type Held = Arc<tokio::sync::Mutex<Option<P2pStream>>>;

/// The probe.
#[derive(Default)]
pub struct P2pProbe {
    registrations: Mutex<HashMap<u64, Arc<Registration>>>,
    streams: Mutex<HashMap<u64, Held>>,
    /// Each event received: `[name, data…]`, and `["lateCall", error]` for the call the
    /// probe makes to `p2p` as soon as it hears `nodeStopping`.
    events: Arc<Mutex<Vec<Value>>>,
    /// Reads waiting for data right now.
    reading: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn not_held(id: u64) -> P2pError {
    P2pError {
        kind: "not_found".into(),
        by: None,
        message: format!("p2p-probe holds no stream or registration {id}"),
    }
}

fn opened(s: &P2pStream) -> Value {
    Value::Map(
        [
            ("streamId".to_owned(), Value::from(s.id())),
            ("protocol".to_owned(), Value::from(s.protocol())),
            ("peer".to_owned(), Value::from(s.peer())),
        ]
        .into_iter()
        .collect(),
    )
}

fn ms(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n))
}

#[module(name = "p2p-probe")]
impl P2pProbe {
    #[init]
    fn new(ctx: &Context) -> Self {
        let probe = P2pProbe::default();
        for name in EVENTS {
            let log = Arc::clone(&probe.events);
            ctx.on_event("p2p", name, move |data| {
                let mut entry = vec![Value::from(name)];
                entry.extend(data);
                lock(&log).push(Value::List(entry));
            });
        }
        // A call while the node stops: what later calls get.
        let log = Arc::clone(&probe.events);
        let p2p = P2p::new(ctx);
        ctx.on_event_async("p2p", "nodeStopping", move |_| {
            let (log, p2p) = (Arc::clone(&log), p2p.clone());
            async move {
                let outcome = match p2p.register(&["/late/1.0.0"], Options::default()).await {
                    Ok(id) => Value::from(format!("registered {}", id.id())),
                    Err(e) => Value::from(e.kind),
                };
                lock(&log).push(Value::List(vec![Value::from("lateCall"), outcome]));
            }
        });
        probe
    }

    /// Registers `protocols` with `options` (as `registerProtocol`); returns its id.
    pub async fn register(
        &self,
        ctx: &Context,
        protocols: Vec<String>,
        options: Option<Value>,
    ) -> Result<u64, P2pError> {
        let mut opts = Options::default();
        if let Some(Value::Map(m)) = &options {
            let get = |k: &str| m.get(k).and_then(Value::as_u64);
            if let Some(n) = get("maxPendingInbound") {
                opts.max_pending_inbound = u32::try_from(n).unwrap_or(u32::MAX);
            }
            if let Some(n) = get("maxOpenInbound") {
                opts.max_open_inbound = u32::try_from(n).unwrap_or(u32::MAX);
            }
            if let Some(n) = get("acceptTimeoutMs") {
                opts.accept_timeout = Duration::from_millis(n);
            }
        }
        let list: Vec<&str> = protocols.iter().map(String::as_str).collect();
        let reg = P2p::new(ctx).register(&list, opts).await?;
        let id = reg.id();
        lock(&self.registrations).insert(id, Arc::new(reg));
        Ok(id)
    }

    /// Accepts the next stream of `registration` within `timeoutMs` and holds it:
    /// `{streamId, protocol, peer}`.
    pub async fn accept(&self, registration: u64, timeout_ms: u64) -> Result<Value, P2pError> {
        let reg = lock(&self.registrations)
            .get(&registration)
            .cloned()
            .ok_or_else(|| not_held(registration))?;
        let s = reg.accept(Duration::from_millis(timeout_ms)).await?;
        Ok(self.hold(s))
    }

    /// Opens a stream to `peer` for `protocol` (dialling `addrs`) and holds it.
    pub async fn open(
        &self,
        ctx: &Context,
        peer: String,
        protocol: String,
        addrs: Vec<String>,
    ) -> Result<Value, P2pError> {
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let s = P2p::new(ctx)
            .open_stream(&peer, &[protocol.as_str()], &addrs, Duration::from_secs(10))
            .await?;
        Ok(self.hold(s))
    }

    /// Writes `text` on stream `id`.
    pub async fn write(&self, id: u64, text: String) -> Result<(), P2pError> {
        let held = self.held(id)?;
        let mut guard = held.lock().await;
        let s = guard.as_mut().ok_or_else(|| not_held(id))?;
        s.write(text.as_bytes()).await
    }

    /// At most `max` bytes (at least one) of stream `id` within `timeoutMs`, as text.
    pub async fn read(&self, id: u64, max: u64, timeout_ms: u64) -> Result<String, P2pError> {
        let held = self.held(id)?;
        let mut guard = held.lock().await;
        let s = guard.as_mut().ok_or_else(|| not_held(id))?;
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        self.reading.fetch_add(1, Ordering::SeqCst);
        let got = s.read(max, ms(timeout_ms)).await;
        self.reading.fetch_sub(1, Ordering::SeqCst);
        let got = got?;
        Ok(String::from_utf8_lossy(&got).into_owned())
    }

    /// Exactly `n` bytes of stream `id` within `timeoutMs`, as text.
    pub async fn read_exactly(&self, id: u64, n: u64, timeout_ms: u64) -> Result<String, P2pError> {
        let held = self.held(id)?;
        let mut guard = held.lock().await;
        let s = guard.as_mut().ok_or_else(|| not_held(id))?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let got = s.read_exactly(n, ms(timeout_ms)).await?;
        Ok(String::from_utf8_lossy(&got).into_owned())
    }

    /// Writes `text` on stream `id` as one length-prefixed message (unsigned varint length).
    pub async fn write_lp(&self, id: u64, text: String) -> Result<(), P2pError> {
        let held = self.held(id)?;
        let mut guard = held.lock().await;
        let s = guard.as_mut().ok_or_else(|| not_held(id))?;
        s.write_lp(text.as_bytes()).await
    }

    /// One length-prefixed message of at most `maxSize` bytes from stream `id` within
    /// `timeoutMs`, as text.
    pub async fn read_lp(
        &self,
        id: u64,
        max_size: u64,
        timeout_ms: u64,
    ) -> Result<String, P2pError> {
        let held = self.held(id)?;
        let mut guard = held.lock().await;
        let s = guard.as_mut().ok_or_else(|| not_held(id))?;
        let max = usize::try_from(max_size).unwrap_or(usize::MAX);
        let got = s.read_lp(max, ms(timeout_ms)).await?;
        Ok(String::from_utf8_lossy(&got).into_owned())
    }

    /// Half-closes stream `id` (reads go on).
    pub async fn close(&self, id: u64) -> Result<(), P2pError> {
        let held = self.held(id)?;
        let mut guard = held.lock().await;
        let s = guard.as_mut().ok_or_else(|| not_held(id))?;
        s.close().await
    }

    /// `closeWithEof` of stream `id` with `timeoutMs`; the stream is no longer held.
    pub async fn close_with_eof(&self, id: u64, timeout_ms: u64) -> Result<(), P2pError> {
        let held = self.held(id)?;
        let s = held.lock().await.take().ok_or_else(|| not_held(id))?;
        lock(&self.streams).remove(&id);
        s.close_with_eof(Duration::from_millis(timeout_ms)).await
    }

    /// Resets stream `id`; it is no longer held. Waits for a running read or write of it.
    pub async fn reset(&self, id: u64) -> Result<(), P2pError> {
        let held = self.held(id)?;
        let s = held.lock().await.take().ok_or_else(|| not_held(id))?;
        lock(&self.streams).remove(&id);
        s.reset();
        Ok(())
    }

    /// Registers `protocol` as a sink and returns the registration id: every inbound stream is
    /// read to its end straight from the runtime byte stream, then the byte count goes back
    /// (u64 little-endian) and our half is closed.
    pub async fn sink(&self, ctx: &Context, protocol: String) -> Result<u64, P2pError> {
        let reg = P2p::new(ctx)
            .register(&[protocol.as_str()], Options::default())
            .await?;
        let id = reg.id();
        tokio::spawn(async move {
            loop {
                match reg.accept(Duration::from_secs(3600)).await {
                    Ok(s) => drop(tokio::spawn(sink(s))),
                    Err(e) if e.is("timeout") => {}
                    Err(e) => return tracing::info!("sink registration ended: {e}"),
                }
            }
        });
        Ok(id)
    }

    /// How many reads wait for data right now.
    pub fn reading(&self) -> u64 {
        self.reading.load(Ordering::SeqCst)
    }

    /// Every `p2p` event received so far, in order: `[name, data…]`.
    pub fn events(&self) -> Vec<Value> {
        lock(&self.events).clone()
    }
}

impl P2pProbe {
    fn hold(&self, s: P2pStream) -> Value {
        let answer = opened(&s);
        lock(&self.streams).insert(s.id(), Arc::new(tokio::sync::Mutex::new(Some(s))));
        answer
    }

    fn held(&self, id: u64) -> Result<Held, P2pError> {
        lock(&self.streams)
            .get(&id)
            .cloned()
            .ok_or_else(|| not_held(id))
    }
}

/// Reads `s` to its end, then writes the count back and closes.
async fn sink(s: P2pStream) {
    let id = s.id();
    let (mut io, buffered) = s.into_inner();
    let mut received = buffered.len() as u64;
    let mut buf = vec![0u8; SINK_READ];
    loop {
        match io.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => received += n as u64,
            Err(e) => return tracing::debug!(stream = id, "sink stream ended: {e}"),
        }
    }
    if io.write_all(&received.to_le_bytes()).await.is_ok() {
        let _ = io.shutdown().await;
    }
}

logos_sdk::export_module!(P2pProbe);
