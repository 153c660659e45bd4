//! Strict CBOR decoding of messages and values (docs/protocol.md §Encoding, §Messages).
//!
//! Owns the refusals: one item and no trailing bytes, definite lengths only, no tags, no simple
//! values but false/true/null, text map keys without duplicates, valid UTF-8, range-checked
//! integer fields, nesting capped at [`MAX_DEPTH`], negative integers not below `i64::MIN`.
//! A declared length is checked against the bytes left before anything is reserved for it, and
//! reservations are capped, so a lying header cannot make it allocate. Never panics on any input,
//! never recurses deeper than [`MAX_DEPTH`].
//!
//! The items every call and reply is made of (unsigned integers, text, bytes, arrays with
//! plain heads) take a fast path that reads the head once (`Reader::head`); anything else, and
//! every refusal, takes the strict path through minicbor's `datatype` and its reader. A
//! 118-byte call decodes in 155 ns instead of 238 ns (docs/performance.md, "Twenty-sixth
//! step"); a test holds the fast path to the strict path's answer, error for error.

use super::MAX_DEPTH;
use crate::code::ErrorCode;
use crate::credit::MAX_CHUNK;
use crate::error::WireError;
use crate::message::{Attrs, Call, Hello, KIND_NAMES, Message, Welcome};
use crate::trace::TraceContext;
use crate::value::Value;
use bytes::Bytes;
use minicbor::Decoder;
use minicbor::data::Type;

/// Byte strings in values from this size on are slices of the frame (no copy); smaller ones
/// are copied (see `Reader::shared_bytes`). A slice keeps its frame's buffer alive, and a
/// session reads into buffers of at least 64 KiB: from 64 KiB on, a value kept by the
/// application holds at most about twice its size, where a 4 KiB one could hold 16 times.
pub(crate) const SHARE_MIN: usize = 64 * 1024;
use std::collections::BTreeMap;

/// CBOR major types the fast paths take (RFC 8949 §3.1).
const MAJOR_UINT: u8 = 0;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;

/// Most list slots reserved up front; longer lists grow as their items actually decode.
const MAX_PREALLOC: usize = 1024;

/// Item counts of each message array, indexed by kind (kind number included).
const ARITY: [u64; 18] = [6, 5, 6, 3, 4, 2, 3, 3, 4, 3, 3, 3, 3, 2, 4, 2, 3, 2];

/// A cursor over one frame body that turns every failure into [`WireError::Malformed`].
pub(super) struct Reader<'b> {
    d: Decoder<'b>,
    /// The body as shared bytes, when it has one: byte fields then slice it instead of copying.
    owner: Option<&'b Bytes>,
    /// `false` in the test that holds the fast paths to the strict path's answers.
    #[cfg(test)]
    pub(super) fast: bool,
}

impl<'b> Reader<'b> {
    pub(super) fn new(body: &'b [u8], owner: Option<&'b Bytes>) -> Self {
        Reader {
            d: Decoder::new(body),
            owner,
            #[cfg(test)]
            fast: true,
        }
    }

    fn pos(&self) -> usize {
        self.d.position()
    }

    fn remaining(&self) -> usize {
        self.d.input().len().saturating_sub(self.d.position())
    }

    /// The next item's head when it is a plain one: its major type, its argument (a count, a
    /// length or an unsigned value) and the index just past the head. `None` for anything the
    /// strict path below must judge (indefinite lengths, a head cut short, the end of the
    /// body): the fast paths take the common items in one step, and everything else, every
    /// refusal included, goes the way it always went, through `peek` and minicbor.
    fn head(&self) -> Option<(u8, u64, usize)> {
        #[cfg(test)]
        if !self.fast {
            return None;
        }
        plain_head(self.d.input(), self.d.position())
    }

    /// The `len` bytes after a head that ends at `start`, when the body holds them all.
    fn after_head(&self, start: usize, len: u64) -> Option<&'b [u8]> {
        let len = usize::try_from(len).ok()?;
        self.d.input().get(start..start.checked_add(len)?)
    }

    fn fail(what: &str, offset: usize, reason: impl Into<String>) -> WireError {
        WireError::Malformed {
            what: what.to_owned(),
            offset,
            reason: reason.into(),
        }
    }

    /// Converts a minicbor error raised at `offset` (after our own type checks, only truncation
    /// and UTF-8 errors remain).
    fn cbor(what: &str, offset: usize, e: &minicbor::decode::Error) -> WireError {
        if e.is_end_of_input() {
            Self::fail(what, offset, "truncated: the body ends inside this item")
        } else {
            Self::fail(what, offset, e.to_string())
        }
    }

    /// The type of the next item, refusing the kinds of item this protocol never carries.
    fn peek(&self, what: &str) -> Result<Type, WireError> {
        let at = self.pos();
        let ty = self.d.datatype().map_err(|e| Self::cbor(what, at, &e))?;
        let refusal = match ty {
            Type::BytesIndef | Type::StringIndef | Type::ArrayIndef | Type::MapIndef => {
                "indefinite-length items are not allowed; use a definite length"
            }
            Type::Tag => "tags are not allowed",
            Type::Undefined => "undefined is not allowed; use null",
            Type::Simple => "simple values other than false, true and null are not allowed",
            Type::Break => "unexpected break byte (0xff) outside an indefinite-length item",
            Type::Unknown(_) => "reserved initial byte",
            _ => return Ok(ty),
        };
        Err(Self::fail(
            what,
            at,
            format!("{refusal} (found {})", describe(ty)),
        ))
    }

    fn mismatch(&self, what: &str, expected: &str, found: Type) -> WireError {
        Self::fail(
            what,
            self.pos(),
            format!("expected {expected}, found {}", describe(found)),
        )
    }

    /// An unsigned integer field.
    pub(super) fn uint(&mut self, what: &str) -> Result<u64, WireError> {
        if let Some((MAJOR_UINT, n, end)) = self.head() {
            self.d.set_position(end);
            return Ok(n);
        }
        let at = self.pos();
        match self.peek(what)? {
            Type::U8 | Type::U16 | Type::U32 | Type::U64 => {
                self.d.u64().map_err(|e| Self::cbor(what, at, &e))
            }
            ty => Err(self.mismatch(what, "unsigned integer", ty)),
        }
    }

    fn u16(&mut self, what: &str) -> Result<u16, WireError> {
        let at = self.pos();
        let n = self.uint(what)?;
        u16::try_from(n)
            .map_err(|_| Self::fail(what, at, format!("{n} is out of range (0..=65535)")))
    }

    fn text(&mut self, what: &str) -> Result<&'b str, WireError> {
        if let Some((MAJOR_TEXT, len, start)) = self.head()
            && let Some(raw) = self.after_head(start, len)
            && let Ok(text) = std::str::from_utf8(raw)
        {
            self.d.set_position(start + raw.len());
            return Ok(text);
        }
        let at = self.pos();
        match self.peek(what)? {
            Type::String => self.d.str().map_err(|e| {
                if e.is_end_of_input() {
                    Self::cbor(what, at, &e)
                } else {
                    Self::fail(what, at, "text is not valid UTF-8")
                }
            }),
            ty => Err(self.mismatch(what, "text", ty)),
        }
    }

    fn bytes(&mut self, what: &str) -> Result<&'b [u8], WireError> {
        if let Some((MAJOR_BYTES, len, start)) = self.head()
            && let Some(raw) = self.after_head(start, len)
        {
            self.d.set_position(start + raw.len());
            return Ok(raw);
        }
        let at = self.pos();
        match self.peek(what)? {
            Type::Bytes => self.d.bytes().map_err(|e| Self::cbor(what, at, &e)),
            ty => Err(self.mismatch(what, "bytes", ty)),
        }
    }

    /// A byte string as shared `Bytes`: a slice of the frame when there is one and the string
    /// has at least `min` bytes, else a copy. Values pass [`SHARE_MIN`], so a small value kept
    /// by the application does not pin a whole read buffer; stream data and tokens pass 0.
    fn shared_bytes(&mut self, what: &str, min: usize) -> Result<Bytes, WireError> {
        let b = self.bytes(what)?;
        Ok(match self.owner {
            Some(owner) if b.len() >= min => owner.slice_ref(b),
            _ => Bytes::copy_from_slice(b),
        })
    }

    fn error_code(&mut self, what: &str) -> Result<ErrorCode, WireError> {
        let at = self.pos();
        let s = self.text(what)?;
        ErrorCode::parse(s).ok_or_else(|| {
            Self::fail(
                what,
                at,
                format!("unknown error code {s:?}; docs/protocol.md §Errors lists the codes"),
            )
        })
    }

    /// An array head; the count is checked against the bytes left (each item takes at least one).
    fn array(&mut self, what: &str) -> Result<u64, WireError> {
        if let Some((MAJOR_ARRAY, n, end)) = self.head()
            && n <= self.d.input().len().saturating_sub(end) as u64
        {
            self.d.set_position(end);
            return Ok(n);
        }
        let at = self.pos();
        match self.peek(what)? {
            Type::Array => {}
            ty => return Err(self.mismatch(what, "array", ty)),
        }
        let n = self
            .d
            .array()
            .map_err(|e| Self::cbor(what, at, &e))?
            .unwrap_or(0);
        let left = self.remaining();
        if n > left as u64 {
            return Err(Self::fail(
                what,
                at,
                format!("array declares {n} items but only {left} bytes remain"),
            ));
        }
        Ok(n)
    }

    /// A map head; the count is checked against the bytes left (each entry takes at least two).
    fn map(&mut self, what: &str) -> Result<u64, WireError> {
        let at = self.pos();
        match self.peek(what)? {
            Type::Map => {}
            ty => return Err(self.mismatch(what, "map", ty)),
        }
        let n = self
            .d
            .map()
            .map_err(|e| Self::cbor(what, at, &e))?
            .unwrap_or(0);
        let left = self.remaining();
        if n.saturating_mul(2) > left as u64 {
            return Err(Self::fail(
                what,
                at,
                format!("map declares {n} entries but only {left} bytes remain"),
            ));
        }
        Ok(n)
    }

    fn null(&mut self, what: &str) -> Result<(), WireError> {
        let at = self.pos();
        self.d.null().map_err(|e| Self::cbor(what, at, &e))
    }

    /// Depth of a list or map whose item sits inside `level` others, refused past the cap.
    fn deeper(&self, what: &str, level: usize) -> Result<usize, WireError> {
        let depth = level + 1;
        if depth > MAX_DEPTH {
            return Err(Self::fail(
                what,
                self.pos(),
                format!("lists and maps nest deeper than the limit of {MAX_DEPTH}"),
            ));
        }
        Ok(depth)
    }

    /// One value; `level` is the number of lists and maps around it within its field.
    pub(super) fn value(&mut self, what: &str, level: usize) -> Result<Value, WireError> {
        // The common items first, without asking minicbor for the type and then for the item.
        match self.head() {
            Some((MAJOR_UINT, n, end)) => {
                self.d.set_position(end);
                return Ok(Value::from(n));
            }
            Some((MAJOR_BYTES, _, _)) => {
                return Ok(Value::Bytes(self.shared_bytes(what, SHARE_MIN)?));
            }
            Some((MAJOR_TEXT, _, _)) => return Ok(Value::Text(self.text(what)?.to_owned())),
            Some((MAJOR_ARRAY, _, _)) => return Ok(Value::List(self.list(what, level)?)),
            _ => {}
        }
        let at = self.pos();
        let ty = self.peek(what)?;
        let cbor = |e: minicbor::decode::Error| Self::cbor(what, at, &e);
        Ok(match ty {
            Type::Null => {
                self.null(what)?;
                Value::Null
            }
            Type::Bool => Value::Bool(self.d.bool().map_err(cbor)?),
            Type::U8 | Type::U16 | Type::U32 | Type::U64 => {
                Value::from(self.d.u64().map_err(cbor)?)
            }
            Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => {
                let n = i128::from(self.d.int().map_err(cbor)?);
                let i = i64::try_from(n).map_err(|_| {
                    Self::fail(
                        what,
                        at,
                        format!("negative integer {n} is below the supported minimum i64::MIN"),
                    )
                })?;
                Value::Int(i)
            }
            Type::F16 => Value::Float(self.f16(what)?),
            Type::F32 | Type::F64 => Value::Float(self.d.f64().map_err(cbor)?),
            Type::String => Value::Text(self.text(what)?.to_owned()),
            Type::Bytes => Value::Bytes(self.shared_bytes(what, SHARE_MIN)?),
            Type::Array => Value::List(self.list(what, level)?),
            Type::Map => Value::Map(self.map_value(what, level)?),
            other => return Err(self.mismatch(what, "a value", other)),
        })
    }

    /// A list of values (also the `args` and `data` fields, which count as the first level).
    fn list(&mut self, what: &str, level: usize) -> Result<Vec<Value>, WireError> {
        let inner = self.deeper(what, level)?;
        let n = self.array(what)?;
        let mut items = Vec::with_capacity(prealloc(n));
        for _ in 0..n {
            items.push(self.value(what, inner)?);
        }
        Ok(items)
    }

    /// A map with unique text keys (also the `attrs` fields, which count as the first level).
    fn map_value(&mut self, what: &str, level: usize) -> Result<Attrs, WireError> {
        let inner = self.deeper(what, level)?;
        let n = self.map(what)?;
        let mut map = BTreeMap::new();
        for _ in 0..n {
            let at = self.pos();
            let key = match self.peek(what)? {
                Type::String => self.text(what)?,
                ty => {
                    return Err(Self::fail(
                        what,
                        at,
                        format!("map keys must be text, found {}", describe(ty)),
                    ));
                }
            };
            let v = self.value(what, inner)?;
            if map.insert(key.to_owned(), v).is_some() {
                return Err(Self::fail(what, at, format!("duplicate map key {key:?}")));
            }
        }
        Ok(map)
    }

    /// A half-precision float, widened (minicbor reads these only with its `half` feature).
    fn f16(&mut self, what: &str) -> Result<f64, WireError> {
        let at = self.pos();
        let raw = self
            .d
            .input()
            .get(at + 1..at + 3)
            .ok_or_else(|| Self::fail(what, at, "truncated: the body ends inside this item"))?;
        let bits = u16::from_be_bytes([raw[0], raw[1]]);
        self.d.set_position(at + 3);
        Ok(f16_to_f64(bits))
    }

    /// Refuses anything after the one item.
    pub(super) fn finish(&self, what: &str) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(Self::fail(
                what,
                self.pos(),
                format!("{n} trailing bytes after the {what}; a body holds exactly one item"),
            )),
        }
    }

    /// A call's `trace` item: `[trace_id:bytes(16), span_id:bytes(8), flags:uint(≤255)]`.
    fn trace(&mut self) -> Result<TraceContext, WireError> {
        let at = self.pos();
        let n = self.array("call.trace")?;
        if n != 3 {
            return Err(Self::fail(
                "call.trace",
                at,
                format!("call.trace is [trace_id, span_id, flags], found {n} items"),
            ));
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        self.fixed_id("call.trace.trace_id", &mut trace_id)?;
        self.fixed_id("call.trace.span_id", &mut span_id)?;
        let at = self.pos();
        let flags = self.uint("call.trace.flags")?;
        let flags = u8::try_from(flags).map_err(|_| {
            Self::fail(
                "call.trace.flags",
                at,
                format!("{flags} is out of range (flags are one byte, 0..=255)"),
            )
        })?;
        Ok(TraceContext {
            trace_id,
            span_id,
            flags,
        })
    }

    /// A byte string of exactly `out.len()` bytes, not all zero (W3C: an all-zero id is
    /// invalid).
    fn fixed_id(&mut self, what: &str, out: &mut [u8]) -> Result<(), WireError> {
        let at = self.pos();
        let raw = self.bytes(what)?;
        if raw.len() != out.len() {
            return Err(Self::fail(
                what,
                at,
                format!("expected {} bytes, found {}", out.len(), raw.len()),
            ));
        }
        if raw.iter().all(|&b| b == 0) {
            return Err(Self::fail(what, at, "an all-zero id is invalid"));
        }
        out.copy_from_slice(raw);
        Ok(())
    }

    /// The head of a `stream_data` body (see [`super::stream_data_payload`]): its stream and
    /// where the payload's byte string starts and how long it says it is. `None` for anything
    /// else, or a head cut short.
    pub(super) fn stream_data_head(&mut self) -> Option<(u64, usize, u64)> {
        if self.array("message").ok()? != 3 || self.uint("message.kind").ok()? != 11 {
            return None;
        }
        let stream = self.uint("stream_data.stream").ok()?;
        match plain_head(self.d.input(), self.pos())? {
            (MAJOR_BYTES, len, start) => Some((stream, start, len)),
            _ => None,
        }
    }

    /// One whole message body.
    pub(super) fn message(&mut self) -> Result<Message, WireError> {
        let n = self.array("message")?;
        let at = self.pos();
        if n == 0 {
            return Err(Self::fail(
                "message",
                at,
                "empty array; a message is [kind, fields...]",
            ));
        }
        let kind = self.uint("message.kind")?;
        let idx = usize::try_from(kind).ok().filter(|&k| k < ARITY.len());
        let Some(k) = idx else {
            return Err(Self::fail(
                "message.kind",
                at,
                format!("unknown message kind {kind} (known: 0..=17)"),
            ));
        };
        let (name, want) = (KIND_NAMES[k], ARITY[k]);
        // A call may carry one optional trailing item, `trace` (protocol 1.2).
        let traced = k == 2 && n == want + 1;
        if n != want && !traced {
            return Err(Self::fail(
                name,
                at,
                format!("{name} is an array of {want} items (kind included), found {n}"),
            ));
        }
        let msg = match k {
            0 => Message::Hello(Hello {
                major: self.u16("hello.major")?,
                minor: self.u16("hello.minor")?,
                identity: self.text("hello.identity")?.to_owned(),
                token: self.shared_bytes("hello.token", 0)?,
                attrs: self.map_value("hello.attrs", 0)?,
            }),
            1 => Message::Welcome(Welcome {
                major: self.u16("welcome.major")?,
                minor: self.u16("welcome.minor")?,
                identity: self.text("welcome.identity")?.to_owned(),
                attrs: self.map_value("welcome.attrs", 0)?,
            }),
            2 => Message::Call(Call {
                id: self.uint("call.id")?,
                target: self.text("call.target")?.to_owned(),
                method: self.text("call.method")?.to_owned(),
                args: self.list("call.args", 0)?,
                timeout_ms: self.uint("call.timeout_ms")?,
                trace: if traced { Some(self.trace()?) } else { None },
            }),
            3 => Message::Reply {
                id: self.uint("reply.id")?,
                value: self.value("reply.value", 0)?,
            },
            4 => Message::Error {
                id: self.uint("error.id")?,
                code: self.error_code("error.code")?,
                message: self.text("error.message")?.to_owned(),
            },
            5 => Message::Cancel {
                id: self.uint("cancel.id")?,
            },
            6 => Message::Subscribe {
                source: self.text("subscribe.source")?.to_owned(),
                event: self.text("subscribe.event")?.to_owned(),
            },
            7 => Message::Unsubscribe {
                source: self.text("unsubscribe.source")?.to_owned(),
                event: self.text("unsubscribe.event")?.to_owned(),
            },
            8 => Message::Event {
                source: self.text("event.source")?.to_owned(),
                event: self.text("event.event")?.to_owned(),
                data: self.list("event.data", 0)?,
            },
            9 => Message::Lagged {
                source: self.text("lagged.source")?.to_owned(),
                dropped: self.uint("lagged.dropped")?,
            },
            10 => Message::StreamOpen {
                stream: self.uint("stream_open.stream")?,
                protocol: self.text("stream_open.protocol")?.to_owned(),
            },
            11 => {
                let stream = self.uint("stream_data.stream")?;
                let at = self.pos();
                let data = self.shared_bytes("stream_data.data", 0)?;
                if data.len() > MAX_CHUNK {
                    return Err(Self::fail(
                        "stream_data.data",
                        at,
                        format!(
                            "{} bytes exceed the chunk limit of {MAX_CHUNK} bytes",
                            data.len()
                        ),
                    ));
                }
                Message::StreamData { stream, data }
            }
            12 => Message::StreamCredit {
                stream: self.uint("stream_credit.stream")?,
                bytes: self.uint("stream_credit.bytes")?,
            },
            13 => Message::StreamFin {
                stream: self.uint("stream_fin.stream")?,
            },
            14 => Message::StreamReset {
                stream: self.uint("stream_reset.stream")?,
                code: self.error_code("stream_reset.code")?,
                message: self.text("stream_reset.message")?.to_owned(),
            },
            15 => Message::Ping {
                nonce: self.uint("ping.nonce")?,
            },
            16 => {
                let nonce = self.uint("pong.nonce")?;
                let unhealthy = match self.peek("pong.unhealthy")? {
                    Type::Null => {
                        self.null("pong.unhealthy")?;
                        None
                    }
                    Type::String => Some(self.text("pong.unhealthy")?.to_owned()),
                    ty => return Err(self.mismatch("pong.unhealthy", "null or text", ty)),
                };
                Message::Pong { nonce, unhealthy }
            }
            _ => Message::Shutdown {
                grace_ms: self.uint("shutdown.grace_ms")?,
            },
        };
        self.finish("message")?;
        Ok(msg)
    }
}

/// The head of the item at `at` in `input` when it is a plain one (a definite argument in
/// the first byte or the 1, 2, 4 or 8 after it): its major type, its argument and the index
/// just past it. `None` for an indefinite length, a reserved form, or a head cut short.
fn plain_head(input: &[u8], at: usize) -> Option<(u8, u64, usize)> {
    let first = *input.get(at)?;
    let (arg, end) = match first & 0x1f {
        n @ 0..=23 => (u64::from(n), at + 1),
        24 => (u64::from(*input.get(at + 1)?), at + 2),
        25 => {
            let raw = input.get(at + 1..at + 3)?;
            (u64::from(u16::from_be_bytes([raw[0], raw[1]])), at + 3)
        }
        26 => {
            let raw = input.get(at + 1..at + 5)?;
            (
                u64::from(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]])),
                at + 5,
            )
        }
        27 => {
            let raw: [u8; 8] = input.get(at + 1..at + 9)?.try_into().ok()?;
            (u64::from_be_bytes(raw), at + 9)
        }
        _ => return None,
    };
    Some((first >> 5, arg, end))
}

fn prealloc(n: u64) -> usize {
    usize::try_from(n).map_or(MAX_PREALLOC, |n| n.min(MAX_PREALLOC))
}

/// The protocol's name for a CBOR item type, for error messages.
fn describe(ty: Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::Null => "null".into(),
        Type::Undefined => "undefined".into(),
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => "unsigned integer".into(),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => "negative integer".into(),
        Type::F16 | Type::F32 | Type::F64 => "float".into(),
        Type::Simple => "simple value".into(),
        Type::Bytes => "bytes".into(),
        Type::BytesIndef => "indefinite-length bytes".into(),
        Type::String => "text".into(),
        Type::StringIndef => "indefinite-length text".into(),
        Type::Array => "array".into(),
        Type::ArrayIndef => "indefinite-length array".into(),
        Type::Map => "map".into(),
        Type::MapIndef => "indefinite-length map".into(),
        Type::Tag => "tag".into(),
        Type::Break => "break".into(),
        Type::Unknown(b) => format!("initial byte {b:#04x}"),
    }
}

/// IEEE 754 binary16 → binary64 (exact: every half value is a double).
fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 == 0 { 1.0 } else { -1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let mant = f64::from(bits & 0x03ff);
    let magnitude = match exp {
        0 => mant * 2f64.powi(-24),
        31 if mant == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + mant / 1024.0) * 2f64.powi(e - 15),
    };
    sign * magnitude
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_widen_exactly() {
        assert_eq!(f16_to_f64(0x0000), 0.0);
        assert!(f16_to_f64(0x8000).is_sign_negative());
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0x3e00), 1.5);
        assert_eq!(f16_to_f64(0xc400), -4.0);
        assert_eq!(f16_to_f64(0x7bff), 65504.0);
        assert_eq!(f16_to_f64(0x0001), 5.960_464_477_539_063e-8);
        assert_eq!(f16_to_f64(0x7c00), f64::INFINITY);
        assert_eq!(f16_to_f64(0xfc00), f64::NEG_INFINITY);
        assert!(f16_to_f64(0x7e00).is_nan());
    }

    #[test]
    fn arity_covers_every_kind() {
        assert_eq!(ARITY.len(), KIND_NAMES.len());
    }
}
