//! CBOR encoding of messages and values, in the deterministic form of docs/protocol.md §Encoding.
//!
//! Owns the byte choices: shortest integer and length heads, definite lengths only, every float
//! as 64 bits (`0xfb`), map keys in `BTreeMap` (byte-wise UTF-8) order. Refuses what a strict
//! peer would refuse (nesting deeper than [`MAX_DEPTH`], chunks over [`MAX_CHUNK`]) instead of
//! producing it. Never frames, never allocates beyond what it appends to the writer.

use super::MAX_DEPTH;
use crate::credit::MAX_CHUNK;
use crate::error::WireError;
use crate::message::{Attrs, Message};
use crate::value::Value;
use minicbor::Encoder;
use minicbor::encode::Write;
use std::convert::Infallible;

type Enc<W> = Encoder<W>;

/// Writing into a growable buffer cannot fail, and the primitive `Encoder` methods only report
/// writer errors; this turns the (impossible) failure into an error rather than a panic.
fn put<T, E: std::fmt::Display>(r: Result<T, minicbor::encode::Error<E>>) -> Result<(), WireError> {
    r.map(|_| ()).map_err(|e| WireError::Unencodable {
        what: "frame".into(),
        reason: e.to_string(),
    })
}

/// Encodes the CBOR body of `msg` into `w`.
pub(super) fn message<W: Write<Error = Infallible>>(msg: &Message, w: W) -> Result<(), WireError> {
    let mut e = Encoder::new(w);
    let e = &mut e;
    let kind = u64::from(msg.kind());
    match msg {
        Message::Hello(h) => {
            head(e, 6, kind)?;
            put(e.u16(h.major))?;
            put(e.u16(h.minor))?;
            put(e.str(&h.identity))?;
            put(e.bytes(&h.token))?;
            attrs(e, &h.attrs, "hello.attrs")?;
        }
        Message::Welcome(w) => {
            head(e, 5, kind)?;
            put(e.u16(w.major))?;
            put(e.u16(w.minor))?;
            put(e.str(&w.identity))?;
            attrs(e, &w.attrs, "welcome.attrs")?;
        }
        Message::Call(c) => {
            head(e, if c.trace.is_some() { 7 } else { 6 }, kind)?;
            put(e.u64(c.id))?;
            put(e.str(&c.target))?;
            put(e.str(&c.method))?;
            list(e, &c.args, "call.args", 0)?;
            put(e.u64(c.timeout_ms))?;
            if let Some(t) = &c.trace {
                put(e.array(3))?;
                put(e.bytes(&t.trace_id))?;
                put(e.bytes(&t.span_id))?;
                put(e.u8(t.flags))?;
            }
        }
        Message::Reply { id, value: v } => {
            head(e, 3, kind)?;
            put(e.u64(*id))?;
            value(e, v, "reply.value", 0)?;
        }
        Message::Error { id, code, message } => {
            head(e, 4, kind)?;
            put(e.u64(*id))?;
            put(e.str(code.as_str()))?;
            put(e.str(message))?;
        }
        Message::Cancel { id } => {
            head(e, 2, kind)?;
            put(e.u64(*id))?;
        }
        Message::Subscribe { source, event } | Message::Unsubscribe { source, event } => {
            head(e, 3, kind)?;
            put(e.str(source))?;
            put(e.str(event))?;
        }
        Message::Event {
            source,
            event,
            data,
        } => {
            head(e, 4, kind)?;
            put(e.str(source))?;
            put(e.str(event))?;
            list(e, data, "event.data", 0)?;
        }
        Message::Lagged { source, dropped } => {
            head(e, 3, kind)?;
            put(e.str(source))?;
            put(e.u64(*dropped))?;
        }
        Message::StreamOpen { stream, protocol } => {
            head(e, 3, kind)?;
            put(e.u64(*stream))?;
            put(e.str(protocol))?;
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
            head(e, 3, kind)?;
            put(e.u64(*stream))?;
            put(e.bytes(data))?;
        }
        Message::StreamCredit { stream, bytes } => {
            head(e, 3, kind)?;
            put(e.u64(*stream))?;
            put(e.u64(*bytes))?;
        }
        Message::StreamFin { stream } => {
            head(e, 2, kind)?;
            put(e.u64(*stream))?;
        }
        Message::StreamReset {
            stream,
            code,
            message,
        } => {
            head(e, 4, kind)?;
            put(e.u64(*stream))?;
            put(e.str(code.as_str()))?;
            put(e.str(message))?;
        }
        Message::Ping { nonce } => {
            head(e, 2, kind)?;
            put(e.u64(*nonce))?;
        }
        Message::Pong { nonce, unhealthy } => {
            head(e, 3, kind)?;
            put(e.u64(*nonce))?;
            match unhealthy {
                Some(reason) => put(e.str(reason))?,
                None => put(e.null())?,
            }
        }
        Message::Shutdown { grace_ms } => {
            head(e, 2, kind)?;
            put(e.u64(*grace_ms))?;
        }
    }
    Ok(())
}

/// Encodes one value into `w`.
pub(super) fn value_to<W: Write<Error = Infallible>>(v: &Value, w: W) -> Result<(), WireError> {
    value(&mut Encoder::new(w), v, "value", 0)
}

/// The message array head and its kind number.
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
    let mut e = Encoder::new(&mut *out);
    head(&mut e, 3, kind)?;
    put(e.u64(stream))?;
    // A byte string's head (major type 2) with the shortest length form, as `Encoder::bytes`
    // writes it (`len` is at most MAX_CHUNK, so the 8-byte form never comes).
    let n = len as u64;
    if n < 24 {
        out.push(0x40 | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[0x58, n as u8]);
    } else if n <= 0xffff {
        out.push(0x59);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x5a);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    Ok(())
}

fn head<W: Write<Error = Infallible>>(
    e: &mut Enc<W>,
    len: u64,
    kind: u64,
) -> Result<(), WireError> {
    put(e.array(len))?;
    put(e.u64(kind))
}

/// `level` is the number of lists and maps around `v` within its field.
fn value<W: Write<Error = Infallible>>(
    e: &mut Enc<W>,
    v: &Value,
    what: &str,
    level: usize,
) -> Result<(), WireError> {
    match v {
        Value::Null => put(e.null()),
        Value::Bool(b) => put(e.bool(*b)),
        Value::Int(i) => put(e.i64(*i)),
        Value::UInt(u) => put(e.u64(*u)),
        Value::Float(x) => put(e.f64(*x)),
        Value::Text(s) => put(e.str(s)),
        Value::Bytes(b) => put(e.bytes(b)),
        Value::List(items) => list(e, items, what, level),
        Value::Map(m) => map(e, m, what, level),
    }
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

fn list<W: Write<Error = Infallible>>(
    e: &mut Enc<W>,
    items: &[Value],
    what: &str,
    level: usize,
) -> Result<(), WireError> {
    let inner = deeper(what, level)?;
    put(e.array(items.len() as u64))?;
    items.iter().try_for_each(|v| value(e, v, what, inner))
}

fn map<W: Write<Error = Infallible>>(
    e: &mut Enc<W>,
    m: &Attrs,
    what: &str,
    level: usize,
) -> Result<(), WireError> {
    let inner = deeper(what, level)?;
    put(e.map(m.len() as u64))?;
    // BTreeMap<String, _> iterates in byte-wise order of the UTF-8 keys: the documented order.
    m.iter().try_for_each(|(k, v)| {
        put(e.str(k))?;
        value(e, v, what, inner)
    })
}

fn attrs<W: Write<Error = Infallible>>(
    e: &mut Enc<W>,
    m: &Attrs,
    what: &str,
) -> Result<(), WireError> {
    map(e, m, what, 0)
}
