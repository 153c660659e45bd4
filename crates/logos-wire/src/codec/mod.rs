//! Framing and CBOR encoding of messages and values (docs/protocol.md §Framing, §Encoding).
//!
//! Owns the byte layout: a 4-byte big-endian length, then one CBOR item. Encoding is
//! deterministic (shortest heads, definite lengths, 64-bit floats, sorted map keys) and lives in
//! `codec/encode.rs`; decoding is strict (definite lengths only, no tags, no undefined, no
//! duplicate map keys, no trailing bytes, nesting depth capped, declared lengths checked against
//! the bytes left before anything is allocated) and lives in `codec/decode.rs`. Never touches a
//! socket and never decides what a connection does about a bad frame: [`WireError::code`] says
//! which code to send, the session sends it.
//!
//! # Examples
//!
//! ```
//! use bytes::BytesMut;
//! use logos_wire::codec::{FrameDecoder, encode_frame_into};
//! use logos_wire::Message;
//!
//! let mut buf = BytesMut::new();
//! encode_frame_into(&Message::Ping { nonce: 7 }, &mut buf)?;
//! assert_eq!(&buf[..], &[0, 0, 0, 3, 0x82, 0x0f, 0x07]);
//! let msg = FrameDecoder::default().decode(&mut buf)?;
//! assert_eq!(msg, Some(Message::Ping { nonce: 7 }));
//! assert!(buf.is_empty());
//! # Ok::<(), logos_wire::WireError>(())
//! ```

mod decode;
mod encode;

use crate::error::WireError;
use crate::message::{CallRef, Message};
use crate::value::Value;
use bytes::{Buf, Bytes, BytesMut};
use decode::Reader;

/// Default cap on a frame body (16 MiB).
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
/// Size of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// Maximum nesting depth of lists and maps inside a value field (the field's own list or map,
/// e.g. `call.args`, counts as the first level).
pub const MAX_DEPTH: usize = 64;
/// Largest body a 4-byte length prefix can describe.
const MAX_PREFIXED: usize = u32::MAX as usize;
/// The length prefix's top bit marks a **shared frame** (docs/protocol.md §3.1): the body does
/// not follow on the stream; it is the whole content of a sealed memory file whose descriptor
/// travels beside the prefix (`SCM_RIGHTS` on a Unix socket), and the low 31 bits are its
/// length. Only sent to a peer that announced it can take them (`hello`/`welcome` attribute
/// [`SHARED_ATTR`]); anywhere else the prefix reads as a frame over any cap.
pub const SHARED_FLAG: u32 = 1 << 31;
/// The `hello`/`welcome` attribute by which a side says it takes shared frames (`true`).
pub const SHARED_ATTR: &str = "shm";
/// The `hello`/`welcome` attribute by which a side says it places and reads shared frames by
/// short laps (`true`, docs/protocol.md §2.1); both sides use them when both announced it.
pub const SHARED_LAPS_ATTR: &str = "shm_laps";

/// Appends one complete frame (length prefix + CBOR body) for `msg` to `out` and returns the
/// body length, so a caller with a smaller cap than the prefix allows can compare it (and
/// truncate `out` back) before sending.
///
/// # Errors
/// [`WireError::Unencodable`] when a value nests deeper than [`MAX_DEPTH`] or a `stream_data`
/// chunk exceeds [`crate::credit::MAX_CHUNK`]; [`WireError::FrameTooLarge`] when the body does
/// not fit a 4-byte length. `out` is left as it was on error.
pub fn encode_frame(msg: &Message, out: &mut Vec<u8>) -> Result<usize, WireError> {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    let body = encode::message(msg, out).and_then(|()| prefix(out, start));
    if body.is_err() {
        out.truncate(start);
    }
    body
}

/// Like [`encode_frame`] for `Message::Call`, from the call's borrowed parts: the same bytes,
/// without building a [`crate::Call`] (its two names copied) to encode.
///
/// # Errors
/// As [`encode_frame`]; `out` is left as it was on error.
pub fn encode_call_frame(call: &CallRef<'_>, out: &mut Vec<u8>) -> Result<usize, WireError> {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    let body = encode::call(call, out).and_then(|()| prefix(out, start));
    if body.is_err() {
        out.truncate(start);
    }
    body
}

/// Like [`encode_frame`], appending to a `BytesMut` (what a tokio codec writes from).
///
/// # Errors
/// As [`encode_frame`]; `out` is left as it was on error.
pub fn encode_frame_into(msg: &Message, out: &mut BytesMut) -> Result<usize, WireError> {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    let body = encode::message(msg, out).and_then(|()| prefix(out, start));
    if body.is_err() {
        out.truncate(start);
    }
    body
}

/// The frame of `stream_data [stream, data]` without its `len` payload bytes: the length
/// prefix and the CBOR up to the payload, appended to `out`; returns the whole body length
/// (payload included). `head` followed by the payload is byte for byte [`encode_frame`] of the
/// message, so a writer can send the payload from where it lies (a vectored write) instead of
/// copying it into a frame.
///
/// # Errors
/// [`WireError::Unencodable`] when `len` exceeds [`crate::credit::MAX_CHUNK`]; `out` is left
/// as it was.
pub fn encode_stream_data_head(
    stream: u64,
    len: usize,
    out: &mut Vec<u8>,
) -> Result<usize, WireError> {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    if let Err(e) = encode::stream_data_head(stream, len, out) {
        out.truncate(start);
        return Err(e);
    }
    let body = out.len() - start - LEN_PREFIX + len;
    // Within MAX_CHUNK plus a head of at most 20 bytes: always fits the prefix.
    let prefix = u32::try_from(body).map_err(|_| WireError::FrameTooLarge {
        len: body,
        max: MAX_PREFIXED,
    });
    match prefix {
        Ok(p) => {
            out[start..start + LEN_PREFIX].copy_from_slice(&p.to_be_bytes());
            Ok(body)
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Patches the length prefix at `start` once the body after it is written.
fn prefix(out: &mut [u8], start: usize) -> Result<usize, WireError> {
    let body = out.len() - start - LEN_PREFIX;
    let len = u32::try_from(body).map_err(|_| WireError::FrameTooLarge {
        len: body,
        max: MAX_PREFIXED,
    })?;
    out[start..start + LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
    Ok(body)
}

/// Appends the CBOR body of `msg` (no length prefix) to `out`.
///
/// # Errors
/// [`WireError::Unencodable`] as for [`encode_frame`]; `out` is left as it was on error.
pub fn encode_message(msg: &Message, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    let r = encode::message(msg, out);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// Decodes one CBOR message body (no length prefix). The body must hold exactly one message.
///
/// # Errors
/// [`WireError::Malformed`] naming the field (e.g. `"call.method"`) and byte offset.
pub fn decode_message(body: &[u8]) -> Result<Message, WireError> {
    Reader::new(body, None).message()
}

/// Appends the CBOR encoding of a value.
///
/// # Errors
/// [`WireError::Unencodable`] when the value nests deeper than [`MAX_DEPTH`]; `out` is left as
/// it was.
pub fn encode_value(value: &Value, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    let r = encode::value_to(value, out);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// Decodes exactly one CBOR value.
///
/// # Errors
/// [`WireError::Malformed`] with `what` = `"value"`.
pub fn decode_value(bytes: &[u8]) -> Result<Value, WireError> {
    let mut r = Reader::new(bytes, None);
    let v = r.value("value", 0)?;
    r.finish("value")?;
    Ok(v)
}

/// The 4-byte prefix announcing a shared frame of `len` body bytes (see [`SHARED_FLAG`]).
///
/// # Errors
/// [`WireError::FrameTooLarge`] when `len` does not fit the 31 bits, [`WireError::EmptyFrame`]
/// for 0.
pub fn shared_prefix(len: usize) -> Result<[u8; LEN_PREFIX], WireError> {
    if len == 0 {
        return Err(WireError::EmptyFrame);
    }
    match u32::try_from(len) {
        Ok(n) if n < SHARED_FLAG => Ok((n | SHARED_FLAG).to_be_bytes()),
        _ => Err(WireError::FrameTooLarge {
            len,
            max: (SHARED_FLAG - 1) as usize,
        }),
    }
}

/// Decodes a frame body that arrived out of band (a shared frame's memory), exactly as
/// [`FrameDecoder::decode`] decodes one read from the stream: byte fields share `body`.
///
/// # Errors
/// [`WireError::Malformed`] naming the field and byte offset.
pub fn decode_body(body: &Bytes) -> Result<Message, WireError> {
    Reader::new(body, Some(body)).message()
}

/// The most bytes of a body [`stream_data_payload`] needs to see.
pub const STREAM_DATA_HEAD_MAX: usize = 32;

/// Where a `stream_data` message's payload lies in a body of `body_len` bytes whose first
/// bytes are `head` (at least the body's first [`STREAM_DATA_HEAD_MAX`] bytes, or all of
/// it): `Some((stream, offset))`, the payload running from `offset` to the body's end, when
/// the body is a `stream_data` whose payload fits [`crate::credit::MAX_CHUNK`] and ends
/// exactly where the body does. `None` for any other body, which [`decode_body`] then decodes
/// (and refuses, if it is bad). For a receiver that reads a large body from memory it does
/// not own (a shared frame): it decodes the head from a private copy and copies the payload
/// once, to where it is read.
pub fn stream_data_payload(head: &[u8], body_len: usize) -> Option<(u64, usize)> {
    let (stream, offset, len) = decode::Reader::new(head, None).stream_data_head()?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= crate::credit::MAX_CHUNK)?;
    (offset.checked_add(len)? == body_len).then_some((stream, offset))
}

/// One frame taken off a byte stream by [`FrameDecoder::decode_frame`].
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A frame whose body came on the stream, decoded.
    Message(Message),
    /// A shared frame's prefix: a body of `len` bytes waits in the memory file sent beside
    /// it; decode it with [`decode_body`] once mapped.
    Shared { len: usize },
}

/// Incremental frame splitter for a byte stream, with a frame-size cap.
///
/// After it returns an error the stream is out of step: send `error` id 0 with
/// [`WireError::code`] and close the connection.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder { max_frame }
    }

    /// The cap this decoder enforces.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Takes one whole frame off the front of `buf` and decodes it; `Ok(None)` if `buf` does
    /// not yet hold a whole frame. The length is checked as soon as the 4 prefix bytes arrive,
    /// so an oversized frame is refused before its body is read; while a frame is pending,
    /// `buf` is reserved up to that frame's size (never more than the cap). Byte fields of the
    /// message (`token`, `data`) share the frame's memory instead of being copied.
    ///
    /// # Errors
    /// [`WireError::FrameTooLarge`], [`WireError::EmptyFrame`], [`WireError::Malformed`]. A bad
    /// frame is consumed from `buf`; an oversized or empty one is left there.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Message>, WireError> {
        match self.decode_frame(buf, false)? {
            Some(Frame::Message(msg)) => Ok(Some(msg)),
            // Unreachable with `shared` off: the flag reads as an oversized length.
            Some(Frame::Shared { len }) => Err(WireError::FrameTooLarge {
                len,
                max: self.max_frame,
            }),
            None => Ok(None),
        }
    }

    /// [`FrameDecoder::decode`], also taking shared frames when `shared` is set (this side
    /// announced [`SHARED_ATTR`]): their prefix is consumed and returned as
    /// [`Frame::Shared`], with the same cap and emptiness checks as a stream frame's length.
    /// With `shared` off a shared prefix is refused as too large, as a peer that predates
    /// shared frames refuses it.
    ///
    /// # Errors
    /// As [`FrameDecoder::decode`].
    pub fn decode_frame(
        &self,
        buf: &mut BytesMut,
        shared: bool,
    ) -> Result<Option<Frame>, WireError> {
        let Some(head) = buf.first_chunk::<LEN_PREFIX>() else {
            return Ok(None);
        };
        let prefix = u32::from_be_bytes(*head);
        if shared && prefix & SHARED_FLAG != 0 {
            let len = self.checked((prefix & !SHARED_FLAG) as usize)?;
            buf.advance(LEN_PREFIX);
            return Ok(Some(Frame::Shared { len }));
        }
        let len = self.checked(prefix as usize)?;
        let whole = LEN_PREFIX + len;
        if buf.len() < whole {
            buf.reserve(whole - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(whole);
        frame.advance(LEN_PREFIX);
        let body: Bytes = frame.freeze();
        decode_body(&body).map(|m| Some(Frame::Message(m)))
    }

    /// A frame's declared body length, refused when empty or over the cap.
    fn checked(&self, len: usize) -> Result<usize, WireError> {
        if len == 0 {
            return Err(WireError::EmptyFrame);
        }
        if len > self.max_frame {
            return Err(WireError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        Ok(len)
    }
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_FRAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::ErrorCode;
    use crate::message::{Attrs, Call, Hello, Welcome};
    use std::collections::BTreeMap;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn body(msg: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        encode_message(msg, &mut out).unwrap();
        out
    }

    fn value_bytes(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(v, &mut out).unwrap();
        out
    }

    #[test]
    fn large_bytes_are_slices_of_the_frame_and_small_ones_copies() {
        let big = vec![0xab; decode::SHARE_MIN];
        let small = vec![0xcd; decode::SHARE_MIN - 1];
        let msg = Message::Event {
            source: "a".into(),
            event: "e".into(),
            data: vec![Value::from(big.clone()), Value::from(small.clone())],
        };
        let mut frame = Vec::new();
        encode_frame(&msg, &mut frame).unwrap();
        let mut buf = BytesMut::from(&frame[..]);
        let read = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
        let Some(Message::Event { data, .. }) = FrameDecoder::default().decode(&mut buf).unwrap()
        else {
            panic!("not an event");
        };
        let [Value::Bytes(b), Value::Bytes(s)] = &data[..] else {
            panic!("{data:?}");
        };
        assert_eq!((&b[..], &s[..]), (&big[..], &small[..]));
        assert!(
            read.contains(&(b.as_ptr() as usize)),
            "a copy of the large value"
        );
        assert!(
            !read.contains(&(s.as_ptr() as usize)),
            "the small value pins the frame"
        );
    }

    #[test]
    fn a_stream_data_head_and_its_payload_are_the_encoded_frame() {
        for len in [0, 1, 23, 24, 255, 256, 65_535, crate::credit::MAX_CHUNK] {
            for stream in [0, 23, 24, 1 << 40, u64::MAX] {
                let data = Bytes::from(vec![0x5a; len]);
                let mut whole = Vec::new();
                let body = encode_frame(
                    &Message::StreamData {
                        stream,
                        data: data.clone(),
                    },
                    &mut whole,
                )
                .unwrap();
                let mut head = vec![9];
                assert_eq!(
                    encode_stream_data_head(stream, len, &mut head).unwrap(),
                    body
                );
                head.extend_from_slice(&data);
                assert_eq!(head[1..], whole[..], "stream {stream}, {len} bytes");
            }
        }
        let mut out = vec![1];
        assert!(encode_stream_data_head(1, crate::credit::MAX_CHUNK + 1, &mut out).is_err());
        assert_eq!(out, [1]);
    }

    #[test]
    fn a_stream_data_payload_is_found_from_the_head_alone_as_decode_body_finds_it() {
        for len in [0, 1, 23, 24, 255, 256, 65_535, crate::credit::MAX_CHUNK] {
            for stream in [0, 23, 24, 1 << 40, u64::MAX] {
                let data = Bytes::from(vec![0x5a; len]);
                let mut frame = Vec::new();
                encode_frame(&Message::StreamData { stream, data }, &mut frame).unwrap();
                let body = &frame[LEN_PREFIX..];
                let head = &body[..body.len().min(STREAM_DATA_HEAD_MAX)];
                let (got, offset) = stream_data_payload(head, body.len())
                    .unwrap_or_else(|| panic!("stream {stream}, {len} bytes"));
                assert_eq!((got, body.len() - offset), (stream, len));
                let decoded = decode_body(&Bytes::copy_from_slice(body)).unwrap();
                let Message::StreamData { data, .. } = decoded else {
                    panic!("{decoded:?}")
                };
                assert_eq!(&body[offset..], &data[..]);
                // A body of another length than the head says is not taken for one.
                assert_eq!(stream_data_payload(head, body.len() + 1), None);
                assert_eq!(stream_data_payload(head, body.len() - 1), None);
            }
        }
        // Other messages, a byte string longer than a chunk, a head cut before its length.
        let mut fin = Vec::new();
        encode_frame(&Message::StreamFin { stream: 3 }, &mut fin).unwrap();
        assert_eq!(stream_data_payload(&fin[LEN_PREFIX..], fin.len() - 4), None);
        let big = [0x83, 0x0b, 0x05, 0x5a, 0x00, 0x01, 0x11, 0x70];
        assert_eq!(stream_data_payload(&big, 8 + 0x0001_1170), None);
        assert_eq!(
            stream_data_payload(&[0x83, 0x0b, 0x05, 0x59, 0x01], 300),
            None
        );
        assert_eq!(stream_data_payload(&[], 300), None);
    }

    fn malformed(r: Result<impl std::fmt::Debug, WireError>) -> (String, usize, String) {
        match r {
            Err(WireError::Malformed {
                what,
                offset,
                reason,
            }) => (what, offset, reason),
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    fn every_kind() -> Vec<Message> {
        let mut attrs = Attrs::new();
        attrs.insert("interface".into(), Value::Map(BTreeMap::new()));
        attrs.insert("version".into(), Value::from("1.2.0"));
        vec![
            Message::Hello(Hello {
                major: 1,
                minor: 3,
                identity: "chat".into(),
                token: Bytes::from_static(&[7; 32]),
                attrs: attrs.clone(),
            }),
            Message::Welcome(Welcome {
                major: 1,
                minor: 0,
                identity: "core".into(),
                attrs,
            }),
            Message::Call(Call {
                id: 1,
                target: "calc".into(),
                method: "add".into(),
                args: vec![Value::Int(1), Value::Int(-2), Value::Float(0.5)],
                timeout_ms: 30_000,
                trace: None,
            }),
            Message::Call(Call {
                id: 2,
                target: "calc".into(),
                method: "add".into(),
                args: vec![],
                timeout_ms: 0,
                trace: Some(crate::TraceContext {
                    trace_id: [7; 16],
                    span_id: [9; 8],
                    flags: 1,
                }),
            }),
            Message::Reply {
                id: u64::MAX,
                value: Value::UInt(u64::MAX),
            },
            Message::Error {
                id: 0,
                code: ErrorCode::ProtocolError,
                message: "bad frame".into(),
            },
            Message::Cancel { id: 9 },
            Message::Subscribe {
                source: "chat".into(),
                event: String::new(),
            },
            Message::Unsubscribe {
                source: "chat".into(),
                event: "message".into(),
            },
            Message::Event {
                source: "chat".into(),
                event: "message".into(),
                data: vec![Value::from("hi"), Value::Bytes(vec![0, 255].into())],
            },
            Message::Lagged {
                source: "core".into(),
                dropped: 12,
            },
            Message::StreamOpen {
                stream: 1,
                protocol: "file".into(),
            },
            Message::StreamData {
                stream: 1,
                data: Bytes::from_static(b"chunk"),
            },
            Message::StreamCredit {
                stream: 2,
                bytes: 262_144,
            },
            Message::StreamFin { stream: 3 },
            Message::StreamReset {
                stream: 4,
                code: ErrorCode::Cancelled,
                message: String::new(),
            },
            Message::Ping { nonce: 77 },
            Message::Pong {
                nonce: 77,
                unhealthy: Some("disk full".into()),
            },
            Message::Pong {
                nonce: 78,
                unhealthy: None,
            },
            Message::Shutdown { grace_ms: 5000 },
        ]
    }

    /// The fast paths of the decoder (`Reader::head`) take only what the strict path takes,
    /// and give what it gives: the same message or value, or the same error, for every body
    /// of `every_kind` with each of its bytes set to values that hit CBOR's edge cases, and
    /// cut short at each length.
    #[test]
    fn fast_decoding_answers_exactly_as_the_strict_path() {
        let decode = |body: &[u8], fast: bool| {
            let mut r = decode::Reader::new(body, None);
            r.fast = fast;
            format!("{:?}", r.message())
        };
        let decode_value = |body: &[u8], fast: bool| {
            let mut r = decode::Reader::new(body, None);
            r.fast = fast;
            format!(
                "{:?}",
                r.value("value", 0)
                    .and_then(|v| r.finish("value").map(|()| v))
            )
        };
        let mut bodies: Vec<Vec<u8>> = every_kind().iter().map(body).collect();
        bodies.push(body(&Message::Reply {
            id: 300,
            value: Value::List(vec![
                Value::from("é"),
                Value::Bytes(vec![1; 300].into()),
                Value::Int(-70_000),
                Value::UInt(1 << 40),
                Value::Null,
                Value::Bool(true),
            ]),
        }));
        let edges = [
            0x00, 0x01, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1f, 0x20, 0x40, 0x57, 0x58, 0x5b,
            0x5f, 0x60, 0x61, 0x78, 0x7f, 0x80, 0x83, 0x98, 0x9f, 0xa0, 0xbf, 0xc0, 0xc3, 0xe0,
            0xf4, 0xf6, 0xf7, 0xf9, 0xfb, 0xff,
        ];
        let mut checked = 0;
        for b in &bodies {
            for len in 0..=b.len() {
                assert_eq!(
                    decode(&b[..len], true),
                    decode(&b[..len], false),
                    "{b:02x?} cut at {len}"
                );
                checked += 1;
            }
            for at in 0..b.len() {
                for &edge in &edges {
                    let mut m = b.clone();
                    m[at] = edge;
                    assert_eq!(
                        decode(&m, true),
                        decode(&m, false),
                        "{b:02x?}, byte {at} = {edge:#04x}"
                    );
                    assert_eq!(decode_value(&m, true), decode_value(&m, false));
                    checked += 1;
                }
            }
        }
        assert!(checked > 20_000, "{checked} bodies checked");
    }

    #[test]
    fn a_call_from_borrowed_parts_is_the_calls_frame() {
        let calls = every_kind().into_iter().filter_map(|m| match m {
            Message::Call(c) => Some(c),
            _ => None,
        });
        let mut checked = 0;
        for c in calls {
            let (mut by_message, mut by_parts) = (vec![1, 2], vec![1, 2]);
            let n = encode_frame(&Message::Call(c.clone()), &mut by_message).unwrap();
            assert_eq!(encode_call_frame(&c.borrowed(), &mut by_parts).unwrap(), n);
            assert_eq!(by_parts, by_message);
            checked += 1;
        }
        assert_eq!(checked, 2);
        // Refused like the message, and nothing left behind.
        let mut deep = Value::Null;
        for _ in 0..=MAX_DEPTH {
            deep = Value::List(vec![deep]);
        }
        let args = [deep];
        let call = CallRef {
            id: 1,
            target: "a",
            method: "b",
            args: &args,
            timeout_ms: 0,
            trace: None,
        };
        let mut out = vec![9];
        assert!(matches!(
            encode_call_frame(&call, &mut out),
            Err(WireError::Unencodable { .. })
        ));
        assert_eq!(out, [9]);
    }

    #[test]
    fn every_kind_round_trips_through_frames() {
        let mut frames = Vec::new();
        for msg in every_kind() {
            encode_frame(&msg, &mut frames).unwrap();
        }
        let mut buf = BytesMut::from(&frames[..]);
        let dec = FrameDecoder::default();
        for msg in every_kind() {
            assert_eq!(dec.decode(&mut buf).unwrap(), Some(msg));
        }
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn both_frame_encoders_agree_and_report_the_body_length() {
        for msg in every_kind() {
            let mut v = vec![0xaa];
            let mut b = BytesMut::from(&[0xaa][..]);
            let n1 = encode_frame(&msg, &mut v).unwrap();
            let n2 = encode_frame_into(&msg, &mut b).unwrap();
            assert_eq!(n1, n2);
            assert_eq!(&v[..], &b[..]);
            assert_eq!(v.len(), 1 + LEN_PREFIX + n1);
            assert_eq!(v[1..5], (n1 as u32).to_be_bytes());
            assert_eq!(decode_message(&v[5..]).unwrap(), msg);
        }
    }

    #[test]
    fn encoding_is_deterministic_and_shortest() {
        assert_eq!(body(&Message::Ping { nonce: 23 }), hex("82 0f 17"));
        assert_eq!(body(&Message::Ping { nonce: 24 }), hex("82 0f 18 18"));
        assert_eq!(body(&Message::Ping { nonce: 256 }), hex("82 0f 19 0100"));
        assert_eq!(
            body(&Message::Ping { nonce: 1 << 32 }),
            hex("82 0f 1b 0000000100000000")
        );
        assert_eq!(value_bytes(&Value::Int(-1)), hex("20"));
        assert_eq!(value_bytes(&Value::Int(-25)), hex("38 18"));
        assert_eq!(
            value_bytes(&Value::Int(i64::MIN)),
            hex("3b 7fffffffffffffff")
        );
        assert_eq!(
            value_bytes(&Value::UInt(u64::MAX)),
            hex("1b ffffffffffffffff")
        );
        // An unnormalised UInt encodes like the Int it equals.
        assert_eq!(value_bytes(&Value::UInt(5)), value_bytes(&Value::Int(5)));
        assert_eq!(value_bytes(&Value::Float(1.5)), hex("fb 3ff8000000000000"));
        // Keys in byte-wise order of their text, not RFC 8949's length-first order.
        let mut m = BTreeMap::new();
        m.insert("b".to_owned(), Value::Null);
        m.insert("aa".to_owned(), Value::Null);
        assert_eq!(value_bytes(&Value::Map(m)), hex("a2 62 6161 f6 61 62 f6"));
    }

    #[test]
    fn decoding_accepts_every_float_width_and_long_heads() {
        assert_eq!(decode_value(&hex("f9 3e00")).unwrap(), Value::Float(1.5));
        assert_eq!(
            decode_value(&hex("fa 3fc00000")).unwrap(),
            Value::Float(1.5)
        );
        assert_eq!(decode_value(&hex("19 0001")).unwrap(), Value::Int(1));
        assert_eq!(
            decode_value(&hex("1b 8000000000000000")).unwrap(),
            Value::UInt(1 << 63)
        );
        assert!(matches!(
            decode_value(&hex("1b 7fffffffffffffff")).unwrap(),
            Value::Int(i64::MAX)
        ));
    }

    #[test]
    fn negative_below_i64_min_is_refused_clearly() {
        let (what, offset, reason) = malformed(decode_value(&hex("3b 8000000000000000")));
        assert_eq!((what.as_str(), offset), ("value", 0));
        assert!(reason.contains("below"), "{reason}");
    }

    #[test]
    fn strictness_refusals_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            // call with an int where the method text belongs
            (
                "86 02 01 64 63616c63 05 80 00",
                "call.method",
                "expected text",
            ),
            // hello major 70000
            (
                "86 00 1a 00011170 00 60 40 a0",
                "hello.major",
                "out of range",
            ),
            // hello token as text
            ("86 00 01 00 60 60 a0", "hello.token", "expected bytes"),
            // trailing byte after ping
            ("82 0f 01 00", "message", "trailing"),
            // indefinite array in reply
            ("83 03 01 9f ff", "reply.value", "indefinite"),
            // indefinite message array
            ("9f 0f 01 ff", "message", "indefinite"),
            // tagged value
            ("83 03 01 c1 00", "reply.value", "tags"),
            // undefined
            ("83 03 01 f7", "reply.value", "undefined"),
            // simple(16)
            ("83 03 01 f0", "reply.value", "simple"),
            // duplicate key
            ("83 03 01 a2 6161 01 6161 02", "reply.value", "duplicate"),
            // non-text key
            ("83 03 01 a1 01 02", "reply.value", "keys must be text"),
            // invalid UTF-8
            ("83 03 01 62 c328", "reply.value", "UTF-8"),
            // unknown kind
            ("81 18 63", "message.kind", "unknown message kind 99"),
            // wrong arity
            ("83 0f 01 02", "ping", "2 items"),
            // unknown error code
            ("84 04 00 63 666f6f 60", "error.code", "unknown error code"),
            // pong.unhealthy int
            ("83 10 01 02", "pong.unhealthy", "null or text"),
            // not an array at all
            ("0f", "message", "expected array"),
            // truncated inside text
            ("83 03 01 65 6162", "reply.value", "truncated"),
            // reserved additional info 28
            ("83 03 01 1c", "reply.value", "reserved"),
            // lone break
            ("83 03 01 ff", "reply.value", "break"),
        ];
        for (input, want_what, want_reason) in cases {
            let (what, _, reason) = malformed(decode_message(&hex(input)));
            assert_eq!(&what, want_what, "{input}: {reason}");
            assert!(reason.contains(want_reason), "{input}: {reason}");
        }
    }

    #[test]
    fn lying_lengths_error_before_allocating() {
        // A list claiming 2^60 items, a map claiming 2^62 entries, bytes claiming 2^63.
        for input in [
            "83 03 01 9b 1000000000000000 00",
            "83 03 01 bb 4000000000000000 00",
            "83 03 01 5b 8000000000000000 00",
            "83 03 01 7b 8000000000000000 00",
            "9b ffffffffffffffff 0f",
        ] {
            let (_, _, reason) = malformed(decode_message(&hex(input)));
            assert!(
                reason.contains("remain") || reason.contains("truncated"),
                "{input}: {reason}"
            );
        }
    }

    fn nested(depth: usize) -> Value {
        (0..depth).fold(Value::Null, |v, _| Value::List(vec![v]))
    }

    #[test]
    fn depth_is_capped_both_ways() {
        let ok = Message::Reply {
            id: 1,
            value: nested(MAX_DEPTH),
        };
        assert_eq!(decode_message(&body(&ok)).unwrap(), ok);
        let deep = Message::Reply {
            id: 1,
            value: nested(MAX_DEPTH + 1),
        };
        let mut out = vec![1, 2];
        assert!(matches!(
            encode_frame(&deep, &mut out),
            Err(WireError::Unencodable { .. })
        ));
        assert_eq!(out, [1, 2], "nothing is left behind on error");
        // The field's own list counts: args may hold 63 more levels.
        let args_ok = Message::Call(Call {
            id: 1,
            target: "t".into(),
            method: "m".into(),
            args: vec![nested(MAX_DEPTH - 1)],
            timeout_ms: 0,
            trace: None,
        });
        assert_eq!(decode_message(&body(&args_ok)).unwrap(), args_ok);
        let mut raw = hex("83 03 01");
        raw.extend(std::iter::repeat_n(0x81, MAX_DEPTH + 1));
        raw.push(0xf6);
        let (what, _, reason) = malformed(decode_message(&raw));
        assert_eq!(what, "reply.value");
        assert!(reason.contains("nest deeper"), "{reason}");
    }

    #[test]
    fn oversized_chunks_are_refused_both_ways() {
        let big = Message::StreamData {
            stream: 1,
            data: Bytes::from(vec![0; crate::credit::MAX_CHUNK + 1]),
        };
        assert!(matches!(
            encode_message(&big, &mut Vec::new()),
            Err(WireError::Unencodable { .. })
        ));
        let mut raw = hex("83 0b 01 5a 00010001");
        raw.resize(raw.len() + crate::credit::MAX_CHUNK + 1, 0);
        let (what, _, _) = malformed(decode_message(&raw));
        assert_eq!(what, "stream_data.data");
    }

    #[test]
    fn frame_decoder_checks_the_length_before_the_body() {
        let dec = FrameDecoder::new(10);
        let mut buf = BytesMut::from(&[0, 0, 0][..]);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&[11]);
        assert_eq!(
            dec.decode(&mut buf),
            Err(WireError::FrameTooLarge { len: 11, max: 10 })
        );
        let mut empty = BytesMut::from(&[0, 0, 0, 0][..]);
        assert_eq!(dec.decode(&mut empty), Err(WireError::EmptyFrame));
        // A huge declared length is refused at once, not reserved.
        let mut huge = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let before = huge.capacity();
        assert!(FrameDecoder::default().decode(&mut huge).is_err());
        assert_eq!(huge.capacity(), before);
    }

    #[test]
    fn frame_decoder_waits_for_the_body_and_reserves_only_the_frame() {
        let mut frame = Vec::new();
        encode_frame(&Message::Ping { nonce: 300 }, &mut frame).unwrap();
        let dec = FrameDecoder::new(64);
        let mut buf = BytesMut::new();
        for (i, byte) in frame.iter().enumerate() {
            assert_eq!(dec.decode(&mut buf).unwrap(), None, "after {i} bytes");
            buf.extend_from_slice(&[*byte]);
        }
        assert!(buf.capacity() <= 64 + LEN_PREFIX);
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            Some(Message::Ping { nonce: 300 })
        );
        // A malformed frame is consumed, so the error is about this frame only.
        let mut bad = BytesMut::from(&[0, 0, 0, 1, 0xff, 0, 0][..]);
        assert!(dec.decode(&mut bad).is_err());
        assert_eq!(&bad[..], &[0, 0]);
    }

    #[test]
    fn frame_decoder_shares_the_frame_for_byte_fields() {
        let msg = Message::StreamData {
            stream: 1,
            data: Bytes::from(vec![9; 1000]),
        };
        let mut buf = BytesMut::new();
        encode_frame_into(&msg, &mut buf).unwrap();
        let start = buf.as_ptr() as usize;
        let end = start + buf.len();
        match FrameDecoder::default().decode(&mut buf).unwrap() {
            Some(Message::StreamData { data, .. }) => {
                let p = data.as_ptr() as usize;
                assert!(p >= start && p < end, "data was copied");
                assert_eq!(data.len(), 1000);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shared_prefixes_are_taken_only_when_announced_and_checked_like_lengths() {
        let dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&shared_prefix(700).unwrap());
        encode_frame_into(&Message::Ping { nonce: 1 }, &mut buf).unwrap();
        // Not announced: a shared prefix is an oversized frame, as to an older peer.
        let mut off = buf.clone();
        assert!(matches!(
            dec.decode_frame(&mut off, false),
            Err(WireError::FrameTooLarge { .. })
        ));
        assert!(matches!(
            dec.decode(&mut off),
            Err(WireError::FrameTooLarge { .. })
        ));
        // Announced: the prefix alone is consumed, the next frame follows on the stream.
        assert_eq!(
            dec.decode_frame(&mut buf, true).unwrap(),
            Some(Frame::Shared { len: 700 })
        );
        assert_eq!(
            dec.decode_frame(&mut buf, true).unwrap(),
            Some(Frame::Message(Message::Ping { nonce: 1 }))
        );
        assert!(buf.is_empty());
        // The cap and emptiness hold for shared lengths too.
        let mut big = BytesMut::from(&shared_prefix(1025).unwrap()[..]);
        assert!(matches!(
            dec.decode_frame(&mut big, true),
            Err(WireError::FrameTooLarge {
                len: 1025,
                max: 1024
            })
        ));
        let mut empty = BytesMut::from(&SHARED_FLAG.to_be_bytes()[..]);
        assert!(matches!(
            dec.decode_frame(&mut empty, true),
            Err(WireError::EmptyFrame)
        ));
        assert!(matches!(shared_prefix(0), Err(WireError::EmptyFrame)));
        assert!(matches!(
            shared_prefix(SHARED_FLAG as usize),
            Err(WireError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn a_body_decoded_out_of_band_shares_its_memory_like_a_stream_frame() {
        let payload = vec![9u8; 128 * 1024];
        let msg = Message::Reply {
            id: 4,
            value: Value::Bytes(payload.clone().into()),
        };
        let mut frame = Vec::new();
        encode_frame(&msg, &mut frame).unwrap();
        let body = Bytes::copy_from_slice(&frame[LEN_PREFIX..]);
        let Message::Reply {
            value: Value::Bytes(got),
            ..
        } = decode_body(&body).unwrap()
        else {
            panic!("not a reply of bytes");
        };
        assert_eq!(&got[..], &payload[..]);
        let within = body.as_ptr_range();
        assert!(within.contains(&got.as_ptr()), "copied instead of shared");
        assert!(decode_body(&Bytes::from_static(&[0x82, 0x0f])).is_err());
    }
}
