//! `relay`: a test module that forwards calls and sinks streams slowly.
//!
//! `forward(module, method, args)` calls another module and returns its result or its fault
//! unchanged (so `probe.bounce` goes probe → relay → probe). Streams of protocol `sink` are
//! read in small pieces with short pauses — a deliberately slow reader, so a writer meets the
//! credit window — while counting and hashing (FNV-1a 64, as `probe` does) what arrives;
//! `sinkResult` reports the last finished stream. Its metadata grants it `probe`. Keeps only
//! the last result; never buffers a stream.

use logos_sdk::{ByteStream, Context, Fault, Value, module};
use serde::Serialize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes read per `read` call.
const READ_SIZE: usize = 4 * 1024;
/// Pause after every this many bytes.
const PAUSE_EVERY: u64 = 32 * 1024;
const PAUSE: Duration = Duration::from_millis(2);

/// What the sink saw of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SinkResult {
    /// Bytes received before the writer's `fin`.
    pub received: u64,
    /// FNV-1a 64 of those bytes.
    pub hash: u64,
}

/// FNV-1a 64-bit, continued from `hash` (the same function as `probe::fnv1a`).
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The relay module.
#[derive(Debug)]
pub struct Relay {
    last: Arc<Mutex<Option<SinkResult>>>,
}

/// Reads `stream` to its end, slowly; then closes our side so the writer knows we are done.
async fn sink(mut stream: ByteStream, last: Arc<Mutex<Option<SinkResult>>>) {
    let mut buf = vec![0u8; READ_SIZE];
    let mut result = SinkResult {
        received: 0,
        hash: FNV_OFFSET,
    };
    let mut next_pause = PAUSE_EVERY;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                result.hash = fnv1a(result.hash, &buf[..n]);
                result.received += n as u64;
                if result.received >= next_pause {
                    next_pause += PAUSE_EVERY;
                    tokio::time::sleep(PAUSE).await;
                }
            }
            Err(e) => {
                tracing::warn!("sink stream failed after {} bytes: {e}", result.received);
                return;
            }
        }
    }
    *last.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
    if let Err(e) = stream.shutdown().await {
        tracing::debug!("closing the sink stream: {e}");
    }
}

#[module]
impl Relay {
    #[init]
    fn new(ctx: &Context) -> Self {
        let last = Arc::new(Mutex::new(None));
        let for_handler = Arc::clone(&last);
        ctx.on_stream("sink", move |stream| sink(stream, Arc::clone(&for_handler)));
        Relay { last }
    }

    /// Calls `module.method(args…)` and returns its result (or its fault, unchanged).
    pub async fn forward(
        &self,
        ctx: &Context,
        module: String,
        method: String,
        args: Vec<Value>,
    ) -> Result<Value, Fault> {
        ctx.client(&module).call_raw(&method, args).await
    }

    /// `{"received", "hash"}` of the last stream read to its end, or null.
    pub fn sink_result(&self) -> Option<SinkResult> {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

logos_sdk::export_module!(Relay);
