//! The message kinds of the protocol and their fields (docs/protocol.md §Messages).
//!
//! Owns only the shapes. Encoding lives in `codec/`; what a peer does on receipt lives in
//! `logos-session`. Every message is a CBOR array whose first item is the kind number:
//!
//! | kind | name          | array layout |
//! |-----:|---------------|--------------|
//! |  0   | hello         | `[0, major, minor, identity:text, token:bytes, attrs:map]` |
//! |  1   | welcome       | `[1, major, minor, identity:text, attrs:map]` |
//! |  2   | call          | `[2, id:uint, target:text, method:text, args:array, timeout_ms:uint, (trace)]` |
//! |  3   | reply         | `[3, id:uint, value]` |
//! |  4   | error         | `[4, id:uint, code:text, message:text]` (id 0 = the connection itself) |
//! |  5   | cancel        | `[5, id:uint]` |
//! |  6   | subscribe     | `[6, source:text, event:text]` (event `""` = every event of source) |
//! |  7   | unsubscribe   | `[7, source:text, event:text]` |
//! |  8   | event         | `[8, source:text, event:text, data:array]` |
//! |  9   | lagged        | `[9, source:text, dropped:uint]` |
//! | 10   | stream_open   | `[10, stream:uint, protocol:text]` |
//! | 11   | stream_data   | `[11, stream:uint, data:bytes]` (≤ 64 KiB) |
//! | 12   | stream_credit | `[12, stream:uint, bytes:uint]` |
//! | 13   | stream_fin    | `[13, stream:uint]` |
//! | 14   | stream_reset  | `[14, stream:uint, code:text, message:text]` |
//! | 15   | ping          | `[15, nonce:uint]` |
//! | 16   | pong          | `[16, nonce:uint, unhealthy:(null / text)]` |
//! | 17   | shutdown      | `[17, grace_ms:uint]` |
//!
//! `trace` (since 1.2, optional) is `[trace_id:bytes(16), span_id:bytes(8), flags:uint(≤255)]`.

use crate::code::ErrorCode;
use crate::trace::TraceContext;
use crate::value::Value;
use bytes::Bytes;
use std::collections::BTreeMap;

/// Attribute map carried by `hello` and `welcome` (e.g. a module's interface description).
pub type Attrs = BTreeMap<String, Value>;

/// First message on every connection, sent by the side that connected (or, on an inherited
/// control connection, by the module).
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    /// Protocol major version the sender speaks.
    pub major: u16,
    /// Protocol minor version the sender speaks.
    pub minor: u16,
    /// Who the sender says it is. Never trusted alone: the receiver checks it against the token
    /// or the connection it arrived on.
    pub identity: String,
    /// Capability token (32 bytes) or empty on an inherited control connection.
    pub token: Bytes,
    /// Free-form attributes, e.g. `"interface"` on a module's control connection.
    pub attrs: Attrs,
}

/// The accepting side's answer to a valid `hello`.
#[derive(Debug, Clone, PartialEq)]
pub struct Welcome {
    /// Protocol major version the acceptor speaks.
    pub major: u16,
    /// Protocol minor version the acceptor speaks.
    pub minor: u16,
    /// The acceptor's identity (module name or `core`).
    pub identity: String,
    /// Free-form attributes, e.g. `"module"` (the name the core assigned) on a control connection.
    pub attrs: Attrs,
}

/// A request for `target.method(args)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Unique among the sender's calls in flight on this connection; never 0.
    pub id: u64,
    /// The module (or built-in) that should run the method.
    pub target: String,
    /// Method name.
    pub method: String,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Relative deadline in milliseconds; 0 means the receiver's default.
    pub timeout_ms: u64,
    /// The caller's trace context (protocol 1.2): absent on the wire when `None`, and never
    /// sent to a peer that announced a minor below 2.
    pub trace: Option<TraceContext>,
}

/// The kind number of `call`.
pub(crate) const CALL_KIND: u8 = 2;

/// A call from borrowed parts, for a sender that has the names and arguments at hand and
/// would otherwise copy them into a [`Call`] only to encode it
/// ([`crate::codec::encode_call_frame`]). Encodes byte for byte as `Message::Call`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallRef<'a> {
    /// As [`Call::id`].
    pub id: u64,
    /// As [`Call::target`].
    pub target: &'a str,
    /// As [`Call::method`].
    pub method: &'a str,
    /// As [`Call::args`].
    pub args: &'a [Value],
    /// As [`Call::timeout_ms`].
    pub timeout_ms: u64,
    /// As [`Call::trace`].
    pub trace: Option<TraceContext>,
}

impl Call {
    /// This call's parts, borrowed.
    pub fn borrowed(&self) -> CallRef<'_> {
        CallRef {
            id: self.id,
            target: &self.target,
            method: &self.method,
            args: &self.args,
            timeout_ms: self.timeout_ms,
            trace: self.trace,
        }
    }
}

/// Every message of the protocol.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Message {
    /// `hello` (kind 0).
    Hello(Hello),
    /// `welcome` (kind 1).
    Welcome(Welcome),
    /// `call` (kind 2).
    Call(Call),
    /// `reply` (kind 3): the successful result of call `id` (null is a result, not an error).
    Reply { id: u64, value: Value },
    /// `error` (kind 4): call `id` failed; id 0 means the connection failed and will close.
    Error {
        id: u64,
        code: ErrorCode,
        message: String,
    },
    /// `cancel` (kind 5): the sender no longer wants the result of its call `id`.
    Cancel { id: u64 },
    /// `subscribe` (kind 6): send me `event` of `source` (`""` = all of its events).
    Subscribe { source: String, event: String },
    /// `unsubscribe` (kind 7).
    Unsubscribe { source: String, event: String },
    /// `event` (kind 8).
    Event {
        source: String,
        event: String,
        data: Vec<Value>,
    },
    /// `lagged` (kind 9): `dropped` events of `source` were not delivered because the receiver
    /// did not read fast enough.
    Lagged { source: String, dropped: u64 },
    /// `stream_open` (kind 10). Odd ids are opened by the connecting side, even ids by the
    /// accepting side.
    StreamOpen { stream: u64, protocol: String },
    /// `stream_data` (kind 11), at most 64 KiB of data, within the receiver's credit.
    StreamData { stream: u64, data: Bytes },
    /// `stream_credit` (kind 12): the sender may send `bytes` more on `stream`.
    StreamCredit { stream: u64, bytes: u64 },
    /// `stream_fin` (kind 13): the sender will send no more data on `stream` (half-close).
    StreamFin { stream: u64 },
    /// `stream_reset` (kind 14): abort `stream` in both directions.
    StreamReset {
        stream: u64,
        code: ErrorCode,
        message: String,
    },
    /// `ping` (kind 15).
    Ping { nonce: u64 },
    /// `pong` (kind 16): answer to ping `nonce`; `unhealthy` carries the reason a module
    /// reported itself unhealthy, if it did.
    Pong {
        nonce: u64,
        unhealthy: Option<String>,
    },
    /// `shutdown` (kind 17): finish in-flight work and exit within `grace_ms`.
    Shutdown { grace_ms: u64 },
}

impl Message {
    /// The kind number of this message (the first array item on the wire).
    pub fn kind(&self) -> u8 {
        match self {
            Message::Hello(_) => 0,
            Message::Welcome(_) => 1,
            Message::Call(_) => CALL_KIND,
            Message::Reply { .. } => 3,
            Message::Error { .. } => 4,
            Message::Cancel { .. } => 5,
            Message::Subscribe { .. } => 6,
            Message::Unsubscribe { .. } => 7,
            Message::Event { .. } => 8,
            Message::Lagged { .. } => 9,
            Message::StreamOpen { .. } => 10,
            Message::StreamData { .. } => 11,
            Message::StreamCredit { .. } => 12,
            Message::StreamFin { .. } => 13,
            Message::StreamReset { .. } => 14,
            Message::Ping { .. } => 15,
            Message::Pong { .. } => 16,
            Message::Shutdown { .. } => 17,
        }
    }

    /// The protocol name of this message's kind, e.g. `"stream_credit"`.
    pub fn kind_name(&self) -> &'static str {
        KIND_NAMES[self.kind() as usize]
    }
}

/// Protocol names of the kinds, indexed by kind number.
pub const KIND_NAMES: [&str; 18] = [
    "hello",
    "welcome",
    "call",
    "reply",
    "error",
    "cancel",
    "subscribe",
    "unsubscribe",
    "event",
    "lagged",
    "stream_open",
    "stream_data",
    "stream_credit",
    "stream_fin",
    "stream_reset",
    "ping",
    "pong",
    "shutdown",
];
