//! [`TraceContext`]: the W3C `traceparent`-style context a `call` may carry (docs/protocol.md
//! §6.6, since protocol 1.2).
//!
//! Owns the shape, its validity rules (16-byte trace id and 8-byte span id, neither all zero,
//! flags one byte), its text form `00-<trace>-<span>-<flags>` for logs and the CLI, and new
//! ids ([`new_trace_id`], [`new_span_id`]) for the core and the SDK alike. Never decides what
//! a span is or where spans go: that is the SDKs' and the core's business.

use std::cell::Cell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// The W3C `sampled` flag (bit 0 of the flags byte).
pub const FLAG_SAMPLED: u8 = 0x01;

/// Where a call sits in a distributed trace: the trace it belongs to and the span of the
/// caller that made it (the callee's span is a child of `span_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace (16 bytes, not all zero).
    pub trace_id: [u8; 16],
    /// The caller's span, the parent of the callee's span (8 bytes, not all zero).
    pub span_id: [u8; 8],
    /// W3C trace flags; bit 0 (`sampled`) says the caller records this trace.
    pub flags: u8,
}

impl TraceContext {
    /// `true` when the `sampled` flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// Parses the W3C `traceparent` text form `00-<32 hex>-<16 hex>-<2 hex>`.
    ///
    /// # Errors
    /// A message naming the part that is wrong.
    pub fn parse(text: &str) -> Result<TraceContext, String> {
        let parts: Vec<&str> = text.trim().split('-').collect();
        let [version, trace, span, flags] = parts.as_slice() else {
            return Err(format!(
                "traceparent {text:?} is not version-traceid-spanid-flags"
            ));
        };
        if *version != "00" {
            return Err(format!(
                "traceparent version {version:?} is not supported (only 00)"
            ));
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        let mut flag = [0u8; 1];
        hex_into(trace, &mut trace_id).map_err(|e| format!("traceparent trace id: {e}"))?;
        hex_into(span, &mut span_id).map_err(|e| format!("traceparent span id: {e}"))?;
        hex_into(flags, &mut flag).map_err(|e| format!("traceparent flags: {e}"))?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return Err(format!("traceparent {text:?} has an all-zero id"));
        }
        Ok(TraceContext {
            trace_id,
            span_id,
            flags: flag[0],
        })
    }
}

fn hex_into(text: &str, out: &mut [u8]) -> Result<(), String> {
    if text.len() != out.len() * 2 {
        return Err(format!(
            "expected {} hex digits, found {}",
            out.len() * 2,
            text.len()
        ));
    }
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = text.get(2 * i..2 * i + 2).unwrap_or("");
        *byte = u8::from_str_radix(pair, 16).map_err(|_| format!("{pair:?} is not hex"))?;
    }
    Ok(())
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl fmt::Display for TraceContext {
    /// The W3C `traceparent` text form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            to_hex(&self.trace_id),
            to_hex(&self.span_id),
            self.flags
        )
    }
}

thread_local! {
    static SEED: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    // Unique, not secret: the time, the pid and a stack address (one per thread), mixed by
    // splitmix below.
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    t ^ (u64::from(std::process::id()) << 32) ^ (&local as *const u8 as u64)
}

/// A non-zero 64-bit number, splitmix64 over a per-thread seed.
///
/// Ids must be unique, not unpredictable (a trace id grants nothing), so they cost no system
/// call: the core used to draw each one from `getrandom`, two system calls on every call an
/// embedder made.
fn next_u64() -> u64 {
    SEED.with(|s| {
        loop {
            let mut z = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            s.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            if z != 0 {
                return z;
            }
        }
    })
}

/// A new span id (never all zero).
pub fn new_span_id() -> [u8; 8] {
    next_u64().to_be_bytes()
}

/// A new trace id (never all zero).
pub fn new_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&next_u64().to_be_bytes());
    id[8..].copy_from_slice(&next_u64().to_be_bytes());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_non_zero_and_differ_within_and_across_threads() {
        let a = new_span_id();
        let b = new_span_id();
        assert_ne!(a, [0; 8]);
        assert_ne!(a, b);
        assert_ne!(new_trace_id(), new_trace_id());
        let here: std::collections::HashSet<[u8; 8]> = (0..1000).map(|_| new_span_id()).collect();
        let there = std::thread::spawn(|| (0..1000).map(|_| new_span_id()).collect::<Vec<_>>())
            .join()
            .expect("thread");
        assert_eq!(here.len(), 1000);
        assert!(there.iter().all(|id| !here.contains(id)));
    }

    #[test]
    fn text_form_round_trips() {
        let t = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::parse(t).unwrap();
        assert!(ctx.sampled());
        assert_eq!(ctx.to_string(), t);
    }

    #[test]
    fn bad_text_names_the_part() {
        let e = TraceContext::parse("00-4bf9-00f067aa0ba902b7-01").unwrap_err();
        assert!(e.contains("trace id"), "{e}");
        let e = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00000000000000zz-01")
            .unwrap_err();
        assert!(e.contains("span id"), "{e}");
        let e = TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01")
            .unwrap_err();
        assert!(e.contains("all-zero"), "{e}");
    }
}
