//! `probe`: a test module that does on request what the core's tests need a module to do.
//!
//! Echo, panic inside a call, sleep (async), bounce a call through `relay` and back
//! (A→B→A), flood subscribers with events, stream pseudo-random bytes to another module while
//! measuring the flow-control window, report itself unhealthy, exit (crash tests), tell its
//! pid, write to stderr, allocate memory and open files (resource-limit tests), start a helper
//! process, fetch a raw token (token-reuse tests), and watch another module's events
//! (re-subscribe tests), call anything as itself (`invoke`: policy tests), ask for a token
//! when the test says so (`tokenWhen`) and present a token to a module's endpoint by itself
//! (`connectWith`). Its metadata grants it `relay`. Not an example to copy: some methods are
//! deliberately destructive.

use logos_sdk::{ByteBuf, Context, ErrorCode, Events, Fault, Value, module};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The file `block` writes in the probe's data dir (its working directory) before it blocks.
pub const BLOCKING_MARKER: &str = "blocking";

/// Events kept by `watch` for `seen`; older ones are dropped first.
pub const SEEN_LIMIT: usize = 1000;

/// The probe's events.
#[derive(Debug, Events)]
pub enum ProbeEvent {
    /// One event of a `flood`: data `[i]`.
    Tick(u64),
}

/// What `streamTo` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamReport {
    /// Bytes written.
    pub sent: u64,
    /// The largest `ByteStream::unacknowledged()` seen while writing: never above the window.
    pub max_unacked: u64,
    /// FNV-1a 64 of the bytes written.
    pub hash: u64,
}

/// FNV-1a 64-bit, continued from `hash` (start with [`FNV_OFFSET`]). `relay` computes the
/// same over what it receives.
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// FNV-1a 64-bit offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Deterministic pseudo-random bytes (xorshift64*), so runs are reproducible.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// One event received through `watch`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Seen {
    /// `source.event` as subscribed.
    pub event: String,
    /// The event's data.
    pub data: Vec<Value>,
}

/// The probe module.
#[derive(Debug, Default)]
pub struct Probe {
    seen: Arc<Mutex<VecDeque<Seen>>>,
    /// Memory held by `allocate`.
    kept: Mutex<Vec<Vec<u8>>>,
    /// Files held by `openFiles`.
    files: Mutex<Vec<std::fs::File>>,
}

#[module(events = ProbeEvent)]
impl Probe {
    /// Returns its argument unchanged.
    pub fn echo(&self, v: Value) -> Value {
        v
    }

    /// Panics with `msg` inside the call (the SDK turns it into `method_failed`).
    pub fn panic(&self, msg: String) {
        panic!("{msg}")
    }

    /// Sleeps `ms` milliseconds without blocking the module, then returns `ms`.
    pub async fn sleep(&self, ms: u64) -> u64 {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        ms
    }

    /// Blocks the module's event loop for `ms` milliseconds (a hung module: it answers no
    /// ping, no shutdown and handles no SIGTERM meanwhile). First writes the file
    /// [`BLOCKING_MARKER`] in its data dir, so a test knows the call has started.
    pub fn block(&self, ms: u64) -> u64 {
        let _ = std::fs::write(BLOCKING_MARKER, ms.to_string());
        std::thread::sleep(std::time::Duration::from_millis(ms));
        ms
    }

    /// Calls `relay.forward("probe", "echo", [n])`: a call that comes back to this module.
    pub async fn bounce(&self, ctx: &Context, n: i64) -> Result<Value, Fault> {
        ctx.client("relay")
            .call_raw(
                "forward",
                vec![
                    Value::from("probe"),
                    Value::from("echo"),
                    Value::List(vec![Value::from(n)]),
                ],
            )
            .await
    }

    /// Emits `n` `tick` events `[0]`, `[1]`, …; returns `n`.
    pub fn flood(&self, ctx: &Context, n: u64) -> Result<u64, String> {
        for i in 0..n {
            ctx.emit(ProbeEvent::Tick(i)).map_err(|e| e.to_string())?;
        }
        Ok(n)
    }

    /// Opens a `protocol` stream to `module`, writes `bytes` pseudo-random bytes, half-closes,
    /// and waits for the other side to close too.
    pub async fn stream_to(
        &self,
        ctx: &Context,
        module: String,
        protocol: String,
        bytes: u64,
    ) -> Result<StreamReport, Fault> {
        let failed = |e: std::io::Error| {
            Fault::new(
                ErrorCode::MethodFailed,
                format!("stream to {module}/{protocol}: {e}"),
            )
        };
        let mut stream = ctx.client(&module).open_stream(&protocol).await?;
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        let mut buf = vec![0u8; 16 * 1024];
        let mut report = StreamReport {
            sent: 0,
            max_unacked: 0,
            hash: FNV_OFFSET,
        };
        while report.sent < bytes {
            let n = usize::try_from(bytes - report.sent).map_or(buf.len(), |r| r.min(buf.len()));
            let chunk = &mut buf[..n];
            noise.fill(chunk);
            stream.write_all(chunk).await.map_err(failed)?;
            report.hash = fnv1a(report.hash, chunk);
            report.sent += n as u64;
            report.max_unacked = report.max_unacked.max(stream.unacknowledged());
        }
        stream.shutdown().await.map_err(failed)?;
        // The sink closes its side once it has read everything: wait for that.
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.map_err(failed)?;
        Ok(report)
    }

    /// Reports the module unhealthy with `reason`, or healthy with null.
    pub fn set_unhealthy(&self, ctx: &Context, reason: Option<String>) {
        ctx.set_unhealthy(reason);
    }

    /// Exits the process with `code` at once (for crash tests); never replies.
    pub fn exit(&self, code: i32) {
        std::process::exit(code)
    }

    /// This process's id.
    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    /// Writes `line` to stderr (what the core keeps for crash reports).
    pub fn say(&self, line: String) {
        eprintln!("{line}");
    }

    /// Allocates `bytes` bytes, touches every page and keeps them until the process ends
    /// (resource-limit tests: past an address-space limit the allocation aborts the process).
    pub fn allocate(&self, bytes: u64) -> Result<u64, String> {
        let n =
            usize::try_from(bytes).map_err(|_| format!("{bytes} bytes do not fit in memory"))?;
        let mut block = vec![0u8; n];
        for page in block.chunks_mut(4096) {
            page[0] = 1;
        }
        let total = {
            let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
            kept.push(block);
            kept.iter().map(Vec::len).sum::<usize>()
        };
        Ok(total as u64)
    }

    /// Opens `/dev/null` `n` times and keeps the files open; returns how many are held. Fails
    /// with the OS error (e.g. "Too many open files") at the first that cannot be opened,
    /// keeping those already open.
    pub fn open_files(&self, n: u64) -> Result<u64, String> {
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..n {
            let f = std::fs::File::open("/dev/null")
                .map_err(|e| format!("after {} open files: {e}", files.len()))?;
            files.push(f);
        }
        Ok(files.len() as u64)
    }

    /// Closes the files `openFiles` holds.
    pub fn close_files(&self) {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Starts `sleep 600` as a child of this process and returns its pid (a helper process
    /// that must die with the module).
    pub fn spawn_sleeper(&self) -> Result<u32, String> {
        let child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .map_err(|e| format!("cannot start sleep: {e}"))?;
        let pid = child.id();
        // Never waited for: it lives until the module's process group is killed.
        std::mem::forget(child);
        Ok(pid)
    }

    /// Subscribes to `event` of `source` (`""` = all its events); what arrives is kept for
    /// `seen`. The SDK re-subscribes by itself when `source` restarts.
    pub fn watch(&self, ctx: &Context, source: String, event: String) {
        let seen = Arc::clone(&self.seen);
        let label = format!("{source}.{event}");
        ctx.on_event(&source, &event, move |data| {
            let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            if seen.len() == SEEN_LIMIT {
                seen.pop_front();
            }
            seen.push_back(Seen {
                event: label.clone(),
                data,
            });
        });
    }

    /// Every event received through `watch`, oldest first (at most [`SEEN_LIMIT`]).
    pub fn seen(&self) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.iter().cloned().collect()
    }

    /// Asks the core for a token to `target` and returns it raw (for token-reuse tests).
    pub async fn request_token(&self, ctx: &Context, target: String) -> Result<ByteBuf, Fault> {
        token(ctx, vec![Value::from(target.as_str())]).await
    }

    /// Asks for a token to `target` in the RFC's two-argument form, claiming to be `claimed`
    /// (for impersonation tests: the core takes the caller from the connection).
    pub async fn request_token_as(
        &self,
        ctx: &Context,
        target: String,
        claimed: String,
    ) -> Result<ByteBuf, Fault> {
        token(
            ctx,
            vec![Value::from(target.as_str()), Value::from(claimed)],
        )
        .await
    }

    /// Calls `target.method(args)` as this module (a built-in over the control connection,
    /// another module with a token) and returns what it returns.
    pub async fn invoke(
        &self,
        ctx: &Context,
        target: String,
        method: String,
        args: Vec<Value>,
    ) -> Result<Value, Fault> {
        ctx.client(&target).call_raw(&method, args).await
    }

    /// Waits until the file `gate` exists in its data dir (at most [`GATE_WAIT`]), then asks
    /// the core for a token to `target`: a token request that arrives when the test chooses.
    pub async fn token_when(
        &self,
        ctx: &Context,
        target: String,
        gate: String,
    ) -> Result<ByteBuf, Fault> {
        let gate = ctx.data_dir().join(gate);
        let deadline = tokio::time::Instant::now() + GATE_WAIT;
        while !gate.exists() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Fault::new(
                    ErrorCode::Timeout,
                    format!("{} did not appear within {GATE_WAIT:?}", gate.display()),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        token(ctx, vec![Value::from(target.as_str())]).await
    }

    /// Connects to the module endpoint `endpoint` as this module, presenting `token`, and
    /// hangs up again: `Ok` if the module there admitted it, its refusal otherwise.
    pub async fn connect_with(
        &self,
        ctx: &Context,
        endpoint: String,
        token: ByteBuf,
    ) -> Result<(), Fault> {
        let stream = tokio::net::UnixStream::connect(&endpoint)
            .await
            .map_err(|e| Fault::new(ErrorCode::Unavailable, format!("{endpoint}: {e}")))?;
        let hello = logos_wire::Hello {
            major: logos_wire::PROTOCOL_MAJOR,
            minor: logos_wire::PROTOCOL_MINOR,
            identity: ctx.name().to_owned(),
            token: bytes::Bytes::from(token.into_vec()),
            attrs: logos_wire::Attrs::new(),
        };
        let handler = std::sync::Arc::new(logos_session::Refuse);
        match logos_session::connect(stream, hello, handler, logos_session::Config::default()).await
        {
            Ok((session, _)) => {
                session.close(Fault::new(
                    ErrorCode::Cancelled,
                    "probe: connection test done",
                ));
                Ok(())
            }
            Err(logos_session::SessionError::Refused(f)) => Err(f),
            Err(e) => Err(Fault::new(ErrorCode::Unavailable, e.to_string())),
        }
    }
}

/// How long `tokenWhen` waits for its gate file.
pub const GATE_WAIT: std::time::Duration = std::time::Duration::from_secs(25);

async fn token(ctx: &Context, args: Vec<Value>) -> Result<ByteBuf, Fault> {
    let grant = ctx
        .client("capability_module")
        .call_raw("requestModule", args)
        .await?;
    match grant.get("token") {
        Some(Value::Bytes(t)) => Ok(ByteBuf::from(t.clone())),
        _ => Err(Fault::new(
            ErrorCode::MethodFailed,
            format!("requestModule returned no token: {grant}"),
        )),
    }
}

logos_sdk::export_module!(Probe);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
        // Incremental equals one-shot.
        assert_eq!(
            fnv1a(fnv1a(FNV_OFFSET, b"foo"), b"bar"),
            fnv1a(FNV_OFFSET, b"foobar")
        );
    }

    #[test]
    fn noise_is_deterministic() {
        let (mut a, mut b) = (Noise(1), Noise(1));
        let (mut x, mut y) = ([0u8; 13], [0u8; 13]);
        a.fill(&mut x);
        b.fill(&mut y);
        assert_eq!(x, y);
        assert_ne!(x, [0u8; 13]);
    }
}
