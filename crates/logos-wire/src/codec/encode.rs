//! CBOR encoding of messages and values, in the deterministic form of docs/protocol.md §Encoding.
//!
//! Owns the byte choices: shortest integer and length heads, definite lengths only, every float
//! as 64 bits (`0xfb`), map keys in `BTreeMap` (byte-wise UTF-8) order. Refuses what a strict
//! peer would refuse (nesting deeper than [`MAX_DEPTH`], chunks over [`MAX_CHUNK`]) instead of
//! producing it. Never frames, never allocates beyond what it appends to the writer.
//!
//! Writes CBOR heads itself instead of through minicbor's `Encoder` (decoding keeps minicbor):
//! the encoding is a dozen lines of RFC 8949 §3, and the generic encoder paid a call and a
//! `memmove` per item into a `Vec`: 102 ns for a 118-byte call against 26 ns written here
//! (docs/performance.md, "Twenty-sixth step"). The doc's test vectors (`tests/vectors.rs`) and
//! the tests in `codec/mod.rs` pin the bytes.

use super::MAX_DEPTH;
use crate::credit::MAX_CHUNK;
use crate::error::WireError;
use crate::message::{Attrs, CALL_KIND, CallRef, Message};
use crate::value::Value;
use bytes::BytesMut;

/// Where encoded bytes go: a growable buffer, which cannot fail.
pub(super) trait Sink {
    fn byte(&mut self, b: u8);
    fn slice(&mut self, s: &[u8]);
}

impl Sink for Vec<u8> {
    #[inline]
    fn byte(&mut self, b: u8) {
        self.push(b);
    }
    #[inline]
    fn slice(&mut self, s: &[u8]) {
        self.extend_from_slice(s);
    }
}

impl Sink for BytesMut {
    #[inline]
    fn byte(&mut self, b: u8) {
        self.extend_from_slice(&[b]);
    }
    #[inline]
    fn slice(&mut self, s: &[u8]) {
        self.extend_from_slice(s);
    }
}

/// CBOR major types (RFC 8949 §3.1).
const UINT: u8 = 0;
const NEGATIVE: u8 = 1;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const FALSE: u8 = 0xf4;
const TRUE: u8 = 0xf5;
const NULL: u8 = 0xf6;
const FLOAT64: u8 = 0xfb;

/// An item's head with the shortest form of its argument (the deterministic encoding).
#[inline]
fn item<S: Sink>(out: &mut S, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.byte(m | n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.slice(&[m | 24, n]);
    } else if let Ok(n) = u16::try_from(n) {
        let [a, b] = n.to_be_bytes();
        out.slice(&[m | 25, a, b]);
    } else if let Ok(n) = u32::try_from(n) {
        let [a, b, c, d] = n.to_be_bytes();
        out.slice(&[m | 26, a, b, c, d]);
    } else {
        let [a, b, c, d, e, f, g, h] = n.to_be_bytes();
        out.slice(&[m | 27, a, b, c, d, e, f, g, h]);
    }
}

fn uint<S: Sink>(out: &mut S, n: u64) {
    item(out, UINT, n);
}

fn text<S: Sink>(out: &mut S, s: &str) {
    item(out, TEXT, s.len() as u64);
    out.slice(s.as_bytes());
}

fn bytes<S: Sink>(out: &mut S, b: &[u8]) {
    item(out, BYTES, b.len() as u64);
    out.slice(b);
}

/// Encodes the CBOR body of `msg` into `w`.
pub(super) fn message<S: Sink>(msg: &Message, e: &mut S) -> Result<(), WireError> {
    let kind = u64::from(msg.kind());
    match msg {
        Message::Hello(h) => {
            head(e, 6, kind);
            uint(e, u64::from(h.major));
            uint(e, u64::from(h.minor));
            text(e, &h.identity);
            bytes(e, &h.token);
            attrs(e, &h.attrs, "hello.attrs")?;
        }
        Message::Welcome(w) => {
            head(e, 5, kind);
            uint(e, u64::from(w.major));
            uint(e, u64::from(w.minor));
            text(e, &w.identity);
            attrs(e, &w.attrs, "welcome.attrs")?;
        }
        Message::Call(c) => call(&c.borrowed(), e)?,
        Message::Reply { id, value: v } => {
            head(e, 3, kind);
            uint(e, *id);
            value(e, v, "reply.value", 0)?;
        }
        Message::Error { id, code, message } => {
            head(e, 4, kind);
            uint(e, *id);
            text(e, code.as_str());
            text(e, message);
        }
        Message::Cancel { id } => {
            head(e, 2, kind);
            uint(e, *id);
        }
        Message::Subscribe { source, event } | Message::Unsubscribe { source, event } => {
            head(e, 3, kind);
            text(e, source);
            text(e, event);
        }
        Message::Event {
            source,
            event,
            data,
        } => {
            head(e, 4, kind);
            text(e, source);
            text(e, event);
            list(e, data, "event.data", 0)?;
        }
        Message::Lagged { source, dropped } => {
            head(e, 3, kind);
            text(e, source);
            uint(e, *dropped);
        }
        Message::StreamOpen { stream, protocol } => {
            head(e, 3, kind);
            uint(e, *stream);
            text(e, protocol);
        }
        Message::StreamData { stream, data } => {
            if data.len() > MAX_CHUNK {
                return Err(WireError::Unencodable {
                    what: "stream_data.data".into(),
                    reason: format!(
                        "{} bytes exceed the chunk limit of {MAX_CHUNK} bytes; split the data",
                        data.len()
                    ),
                });
            }
            head(e, 3, kind);
            uint(e, *stream);
            bytes(e, data);
        }
        Message::StreamCredit { stream, bytes } => {
            head(e, 3, kind);
            uint(e, *stream);
            uint(e, *bytes);
        }
        Message::StreamFin { stream } => {
            head(e, 2, kind);
            uint(e, *stream);
        }
        Message::StreamReset {
            stream,
            code,
            message,
        } => {
            head(e, 4, kind);
            uint(e, *stream);
            text(e, code.as_str());
            text(e, message);
        }
        Message::Ping { nonce } => {
            head(e, 2, kind);
            uint(e, *nonce);
        }
        Message::Pong { nonce, unhealthy } => {
            head(e, 3, kind);
            uint(e, *nonce);
            match unhealthy {
                Some(reason) => text(e, reason),
                None => e.byte(NULL),
            }
        }
        Message::Shutdown { grace_ms } => {
            head(e, 2, kind);
            uint(e, *grace_ms);
        }
    }
    Ok(())
}

/// Encodes the body of a call given by its parts.
pub(super) fn call<S: Sink>(c: &CallRef<'_>, e: &mut S) -> Result<(), WireError> {
    let kind = u64::from(CALL_KIND);
    head(e, if c.trace.is_some() { 7 } else { 6 }, kind);
    uint(e, c.id);
    text(e, c.target);
    text(e, c.method);
    list(e, c.args, "call.args", 0)?;
    uint(e, c.timeout_ms);
    if let Some(t) = &c.trace {
        item(e, ARRAY, 3);
        bytes(e, &t.trace_id);
        bytes(e, &t.span_id);
        uint(e, u64::from(t.flags));
    }
    Ok(())
}

/// Encodes one value into `out`.
pub(super) fn value_to<S: Sink>(v: &Value, out: &mut S) -> Result<(), WireError> {
    value(out, v, "value", 0)
}

/// The CBOR body of `stream_data [stream, data]` up to, not including, the `len` payload
/// bytes: with them appended, byte for byte what [`message`] writes for it.
pub(super) fn stream_data_head(
    stream: u64,
    len: usize,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    if len > MAX_CHUNK {
        return Err(WireError::Unencodable {
            what: "stream_data.data".into(),
            reason: format!(
                "{len} bytes exceed the chunk limit of {MAX_CHUNK} bytes; split the data"
            ),
        });
    }
    let kind = u64::from(
        Message::StreamData {
            stream,
            data: bytes::Bytes::new(),
        }
        .kind(),
    );
    head(out, 3, kind);
    uint(out, stream);
    item(out, BYTES, len as u64);
    Ok(())
}

/// The message array head and its kind number.
fn head<S: Sink>(e: &mut S, len: u64, kind: u64) {
    item(e, ARRAY, len);
    uint(e, kind);
}

/// `level` is the number of lists and maps around `v` within its field.
fn value<S: Sink>(e: &mut S, v: &Value, what: &str, level: usize) -> Result<(), WireError> {
    match v {
        Value::Null => e.byte(NULL),
        Value::Bool(b) => e.byte(if *b { TRUE } else { FALSE }),
        // A negative integer's argument is -1 - i, which is !i in two's complement.
        Value::Int(i) => match u64::try_from(*i) {
            Ok(n) => uint(e, n),
            Err(_) => item(e, NEGATIVE, !(*i as u64)),
        },
        Value::UInt(u) => uint(e, *u),
        Value::Float(x) => {
            e.byte(FLOAT64);
            e.slice(&x.to_bits().to_be_bytes());
        }
        Value::Text(s) => text(e, s),
        Value::Bytes(b) => bytes(e, b),
        Value::List(items) => return list(e, items, what, level),
        Value::Map(m) => return map(e, m, what, level),
    }
    Ok(())
}

fn deeper(what: &str, level: usize) -> Result<usize, WireError> {
    let depth = level + 1;
    if depth > MAX_DEPTH {
        return Err(WireError::Unencodable {
            what: what.to_owned(),
            reason: format!("lists and maps nest deeper than the limit of {MAX_DEPTH}"),
        });
    }
    Ok(depth)
}

fn list<S: Sink>(e: &mut S, items: &[Value], what: &str, level: usize) -> Result<(), WireError> {
    let inner = deeper(what, level)?;
    item(e, ARRAY, items.len() as u64);
    items.iter().try_for_each(|v| value(e, v, what, inner))
}

fn map<S: Sink>(e: &mut S, m: &Attrs, what: &str, level: usize) -> Result<(), WireError> {
    let inner = deeper(what, level)?;
    item(e, MAP, m.len() as u64);
    // BTreeMap<String, _> iterates in byte-wise order of the UTF-8 keys: the documented order.
    m.iter().try_for_each(|(k, v)| {
        text(e, k);
        value(e, v, what, inner)
    })
}

fn attrs<S: Sink>(e: &mut S, m: &Attrs, what: &str) -> Result<(), WireError> {
    map(e, m, what, 0)
}
