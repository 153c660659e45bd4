//! Replays every test vector of docs/protocol.md against the codec, both ways.
//!
//! Owns the parser for the doc's ```` ```vector ```` blocks and the checks: a positive vector's
//! structure encodes to exactly its bytes and its bytes decode to exactly its structure; its
//! `cbor:` diagnostic line, encoded by the small independent encoder below, gives the same bytes;
//! a negative vector fails with the documented error. It never edits the doc: to fill in the hex
//! of a new vector, write `hex: ?` and run
//! `LOGOS_WIRE_PRINT_VECTORS=1 cargo test -p logos-wire --test vectors -- --nocapture`,
//! which prints what the codec produces (then check it by hand before pasting it in).
//!
//! Block format (one `key: value` per line; an indented line continues the previous value):
//!
//! ```text
//! name:    unique name
//! hex:     hex bytes, spaces ignored (a full frame for message and negative vectors,
//!          a bare CBOR item for value vectors)
//! message: <kind> {field: value, ...}       positive message vector
//! value:   <value>                          positive value vector
//! error:   malformed <what> | frame_too_large | empty_frame | incomplete
//! cbor:    <value>                          the body in diagnostic notation (optional)
//! only:    decode                           accepted on input, but not what an encoder emits
//! note:    free text
//! ```
//!
//! Values use CBOR diagnostic notation (RFC 8949 §8): `null`, `true`, integers, floats with a
//! `.` or exponent (`NaN`, `Infinity`, `-Infinity`), `"text"` with JSON escapes, `h'hex'`,
//! `[a, b]`, `{"key": value}`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use logos_wire::codec::{DEFAULT_MAX_FRAME, decode_value, encode_frame, encode_value};
use logos_wire::message::KIND_NAMES;
use logos_wire::{Attrs, Call, ErrorCode, FrameDecoder, Hello, Message, Value, Welcome, WireError};
use std::collections::{BTreeMap, BTreeSet};

// ---------------------------------------------------------------------------------------------
// Diagnostic notation

#[derive(Debug, Clone, PartialEq)]
enum Diag {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    List(Vec<Diag>),
    Map(Vec<(Diag, Diag)>),
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    ctx: &'a str,
}

impl<'a> Parser<'a> {
    fn new(s: &'a str, ctx: &'a str) -> Self {
        Parser {
            s: s.as_bytes(),
            i: 0,
            ctx,
        }
    }

    fn fail(&self, why: &str) -> ! {
        let rest = String::from_utf8_lossy(&self.s[self.i.min(self.s.len())..]);
        panic!(
            "{}: {why} at {:?}",
            self.ctx,
            rest.chars().take(30).collect::<String>()
        )
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) {
        if self.peek() != Some(c) {
            self.fail(&format!("expected {:?}", c as char));
        }
        self.i += 1;
    }

    fn try_eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> String {
        self.ws();
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
        {
            self.i += 1;
        }
        if start == self.i {
            self.fail("expected a name");
        }
        String::from_utf8(self.s[start..self.i].to_vec()).unwrap()
    }

    fn end(&mut self) {
        if self.peek().is_some() {
            self.fail("unexpected trailing input");
        }
    }

    fn value(&mut self) -> Diag {
        match self.peek() {
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                if !self.try_eat(b']') {
                    loop {
                        items.push(self.value());
                        if self.try_eat(b']') {
                            break;
                        }
                        self.eat(b',');
                    }
                }
                Diag::List(items)
            }
            Some(b'{') => {
                self.i += 1;
                let mut entries = Vec::new();
                if !self.try_eat(b'}') {
                    loop {
                        let k = self.value();
                        self.eat(b':');
                        entries.push((k, self.value()));
                        if self.try_eat(b'}') {
                            break;
                        }
                        self.eat(b',');
                    }
                }
                Diag::Map(entries)
            }
            Some(b'"') => Diag::Text(self.string()),
            Some(b'h') if self.s.get(self.i + 1) == Some(&b'\'') => {
                self.i += 2;
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i] != b'\'' {
                    self.i += 1;
                }
                let hex = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                self.eat(b'\'');
                Diag::Bytes(parse_hex(hex, self.ctx))
            }
            Some(_) => self.atom(),
            None => self.fail("expected a value"),
        }
    }

    fn string(&mut self) -> String {
        // JSON string syntax: find the closing quote, let serde_json do the escapes.
        let start = self.i;
        self.i += 1;
        while self.i < self.s.len() && self.s[self.i] != b'"' {
            if self.s[self.i] == b'\\' {
                self.i += 1;
            }
            self.i += 1;
        }
        self.eat(b'"');
        let lit = std::str::from_utf8(&self.s[start..self.i]).unwrap();
        serde_json::from_str(lit).unwrap_or_else(|e| self.fail(&format!("bad string: {e}")))
    }

    fn atom(&mut self) -> Diag {
        self.ws();
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || b"+-._".contains(&self.s[self.i]))
        {
            self.i += 1;
        }
        let tok = std::str::from_utf8(&self.s[start..self.i]).unwrap();
        match tok {
            "null" => Diag::Null,
            "true" => Diag::Bool(true),
            "false" => Diag::Bool(false),
            "NaN" => Diag::Float(f64::NAN),
            "Infinity" => Diag::Float(f64::INFINITY),
            "-Infinity" => Diag::Float(f64::NEG_INFINITY),
            t if t.contains(['.', 'e', 'E']) => Diag::Float(
                t.parse()
                    .unwrap_or_else(|_| self.fail(&format!("bad float {t:?}"))),
            ),
            t => Diag::Int(
                t.parse()
                    .unwrap_or_else(|_| self.fail(&format!("bad token {t:?}"))),
            ),
        }
    }
}

fn parse_hex(s: &str, ctx: &str) -> Vec<u8> {
    let digits: String = s.split_whitespace().collect();
    assert!(
        digits.len().is_multiple_of(2) && digits.bytes().all(|b| b.is_ascii_hexdigit()),
        "{ctx}: bad hex {s:?}"
    );
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A CBOR encoder independent of the codec under test: shortest heads, 64-bit floats, map
/// entries in the order written (so the doc must write them in the canonical order).
fn cbor(d: &Diag, out: &mut Vec<u8>) {
    fn head(major: u8, n: u64, out: &mut Vec<u8>) {
        let m = major << 5;
        match n {
            0..=23 => out.push(m | n as u8),
            24..=0xff => out.extend([m | 24, n as u8]),
            0x100..=0xffff => {
                out.push(m | 25);
                out.extend((n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(m | 26);
                out.extend((n as u32).to_be_bytes());
            }
            _ => {
                out.push(m | 27);
                out.extend(n.to_be_bytes());
            }
        }
    }
    match d {
        Diag::Null => out.push(0xf6),
        Diag::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Diag::Int(n) if *n >= 0 => head(0, u64::try_from(*n).unwrap(), out),
        Diag::Int(n) => head(1, u64::try_from(-1 - *n).unwrap(), out),
        Diag::Float(x) => {
            out.push(0xfb);
            out.extend(x.to_bits().to_be_bytes());
        }
        Diag::Text(s) => {
            head(3, s.len() as u64, out);
            out.extend(s.as_bytes());
        }
        Diag::Bytes(b) => {
            head(2, b.len() as u64, out);
            out.extend(b);
        }
        Diag::List(items) => {
            head(4, items.len() as u64, out);
            items.iter().for_each(|i| cbor(i, out));
        }
        Diag::Map(entries) => {
            head(5, entries.len() as u64, out);
            for (k, v) in entries {
                cbor(k, out);
                cbor(v, out);
            }
        }
    }
}

fn to_value(d: &Diag, ctx: &str) -> Value {
    match d {
        Diag::Null => Value::Null,
        Diag::Bool(b) => Value::Bool(*b),
        Diag::Int(n) => match i64::try_from(*n) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::UInt(
                u64::try_from(*n)
                    .unwrap_or_else(|_| panic!("{ctx}: integer {n} is outside the value range")),
            ),
        },
        Diag::Float(x) => Value::Float(*x),
        Diag::Text(s) => Value::Text(s.clone()),
        Diag::Bytes(b) => Value::Bytes(b.clone().into()),
        Diag::List(items) => Value::List(items.iter().map(|i| to_value(i, ctx)).collect()),
        Diag::Map(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| match k {
                    Diag::Text(k) => (k.clone(), to_value(v, ctx)),
                    other => panic!("{ctx}: map key {other:?} is not text"),
                })
                .collect(),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Message notation: `kind {field: value, ...}`

struct Fields {
    ctx: String,
    map: BTreeMap<String, Diag>,
}

impl Fields {
    fn take(&mut self, name: &str) -> Diag {
        self.map
            .remove(name)
            .unwrap_or_else(|| panic!("{}: missing field {name}", self.ctx))
    }
    fn uint(&mut self, name: &str) -> u64 {
        match self.take(name) {
            Diag::Int(n) => u64::try_from(n).unwrap(),
            other => panic!("{}: {name} must be an integer, found {other:?}", self.ctx),
        }
    }
    fn u16(&mut self, name: &str) -> u16 {
        u16::try_from(self.uint(name)).unwrap()
    }
    fn text(&mut self, name: &str) -> String {
        match self.take(name) {
            Diag::Text(s) => s,
            other => panic!("{}: {name} must be text, found {other:?}", self.ctx),
        }
    }
    fn bytes(&mut self, name: &str) -> Bytes {
        match self.take(name) {
            Diag::Bytes(b) => Bytes::from(b),
            other => panic!("{}: {name} must be bytes, found {other:?}", self.ctx),
        }
    }
    fn code(&mut self, name: &str) -> ErrorCode {
        let s = self.text(name);
        ErrorCode::parse(&s).unwrap_or_else(|| panic!("{}: unknown code {s:?}", self.ctx))
    }
    fn value(&mut self, name: &str) -> Value {
        let d = self.take(name);
        to_value(&d, &self.ctx)
    }
    fn list(&mut self, name: &str) -> Vec<Value> {
        match self.value(name) {
            Value::List(l) => l,
            other => panic!("{}: {name} must be a list, found {other}", self.ctx),
        }
    }
    fn attrs(&mut self, name: &str) -> Attrs {
        match self.value(name) {
            Value::Map(m) => m,
            other => panic!("{}: {name} must be a map, found {other}", self.ctx),
        }
    }
    /// An optional call `trace`: `[h'<16 bytes>', h'<8 bytes>', flags]`.
    fn trace(&mut self, name: &str) -> Option<logos_wire::TraceContext> {
        let d = self.map.remove(name)?;
        let Diag::List(items) = d else {
            panic!("{}: {name} must be a list", self.ctx)
        };
        match items.as_slice() {
            [Diag::Bytes(t), Diag::Bytes(s), Diag::Int(f)] => Some(logos_wire::TraceContext {
                trace_id: t.as_slice().try_into().unwrap(),
                span_id: s.as_slice().try_into().unwrap(),
                flags: u8::try_from(*f).unwrap(),
            }),
            other => panic!(
                "{}: {name} must be [bytes16, bytes8, flags], found {other:?}",
                self.ctx
            ),
        }
    }
    fn done(self) {
        assert!(
            self.map.is_empty(),
            "{}: unknown fields {:?}",
            self.ctx,
            self.map.keys()
        );
    }
}

fn parse_message(s: &str, ctx: &str) -> Message {
    let mut p = Parser::new(s, ctx);
    let kind = p.ident();
    p.eat(b'{');
    let mut map = BTreeMap::new();
    if !p.try_eat(b'}') {
        loop {
            let field = p.ident();
            p.eat(b':');
            let v = p.value();
            assert!(
                map.insert(field.clone(), v).is_none(),
                "{ctx}: {field} twice"
            );
            if p.try_eat(b'}') {
                break;
            }
            p.eat(b',');
        }
    }
    p.end();
    let mut f = Fields {
        ctx: ctx.to_owned(),
        map,
    };
    let msg = match kind.as_str() {
        "hello" => Message::Hello(Hello {
            major: f.u16("major"),
            minor: f.u16("minor"),
            identity: f.text("identity"),
            token: f.bytes("token"),
            attrs: f.attrs("attrs"),
        }),
        "welcome" => Message::Welcome(Welcome {
            major: f.u16("major"),
            minor: f.u16("minor"),
            identity: f.text("identity"),
            attrs: f.attrs("attrs"),
        }),
        "call" => Message::Call(Call {
            id: f.uint("id"),
            target: f.text("target"),
            method: f.text("method"),
            args: f.list("args"),
            timeout_ms: f.uint("timeout_ms"),
            trace: f.trace("trace"),
        }),
        "reply" => Message::Reply {
            id: f.uint("id"),
            value: f.value("value"),
        },
        "error" => Message::Error {
            id: f.uint("id"),
            code: f.code("code"),
            message: f.text("message"),
        },
        "cancel" => Message::Cancel { id: f.uint("id") },
        "subscribe" => Message::Subscribe {
            source: f.text("source"),
            event: f.text("event"),
        },
        "unsubscribe" => Message::Unsubscribe {
            source: f.text("source"),
            event: f.text("event"),
        },
        "event" => Message::Event {
            source: f.text("source"),
            event: f.text("event"),
            data: f.list("data"),
        },
        "lagged" => Message::Lagged {
            source: f.text("source"),
            dropped: f.uint("dropped"),
        },
        "stream_open" => Message::StreamOpen {
            stream: f.uint("stream"),
            protocol: f.text("protocol"),
        },
        "stream_data" => Message::StreamData {
            stream: f.uint("stream"),
            data: f.bytes("data"),
        },
        "stream_credit" => Message::StreamCredit {
            stream: f.uint("stream"),
            bytes: f.uint("bytes"),
        },
        "stream_fin" => Message::StreamFin {
            stream: f.uint("stream"),
        },
        "stream_reset" => Message::StreamReset {
            stream: f.uint("stream"),
            code: f.code("code"),
            message: f.text("message"),
        },
        "ping" => Message::Ping {
            nonce: f.uint("nonce"),
        },
        "pong" => Message::Pong {
            nonce: f.uint("nonce"),
            unhealthy: match f.take("unhealthy") {
                Diag::Null => None,
                Diag::Text(s) => Some(s),
                other => panic!("{ctx}: unhealthy must be null or text, found {other:?}"),
            },
        },
        "shutdown" => Message::Shutdown {
            grace_ms: f.uint("grace_ms"),
        },
        other => panic!("{ctx}: unknown message kind {other:?}"),
    };
    f.done();
    msg
}

// ---------------------------------------------------------------------------------------------
// The doc's blocks

#[derive(Debug)]
struct Vector {
    name: String,
    fields: BTreeMap<String, String>,
    line: usize,
}

impl Vector {
    fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
    fn ctx(&self) -> String {
        format!(
            "vector {:?} (docs/protocol.md line {})",
            self.name, self.line
        )
    }
}

const KEYS: [&str; 8] = [
    "name", "hex", "message", "value", "error", "cbor", "only", "note",
];

fn load() -> Vec<Vector> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let mut vectors = Vec::new();
    let mut block: Option<(usize, Vec<(String, String)>)> = None;
    for (n, line) in doc.lines().enumerate() {
        let n = n + 1;
        match &mut block {
            None if line.trim_end() == "```vector" => block = Some((n, Vec::new())),
            None => {}
            Some((start, fields)) if line.trim_end() == "```" => {
                let start = *start;
                let mut map = BTreeMap::new();
                for (k, v) in fields.drain(..) {
                    assert!(
                        KEYS.contains(&k.as_str()),
                        "line {start}: unknown key {k:?}"
                    );
                    assert!(
                        map.insert(k.clone(), v).is_none(),
                        "line {start}: {k} twice"
                    );
                }
                let name = map
                    .get("name")
                    .cloned()
                    .unwrap_or_else(|| panic!("vector at line {start} has no name"));
                vectors.push(Vector {
                    name,
                    fields: map,
                    line: start,
                });
                block = None;
            }
            Some((start, fields)) => {
                if line.trim().is_empty() {
                    continue;
                }
                if line.starts_with(char::is_whitespace) {
                    let (_, last) = fields
                        .last_mut()
                        .unwrap_or_else(|| panic!("line {n}: continuation with nothing before"));
                    last.push(' ');
                    last.push_str(line.trim());
                } else {
                    let (k, v) = line
                        .split_once(':')
                        .unwrap_or_else(|| panic!("line {n} (block at {start}): no `key:`"));
                    fields.push((k.trim().to_owned(), v.trim().to_owned()));
                }
            }
        }
    }
    assert!(
        block.is_none(),
        "docs/protocol.md ends inside a vector block"
    );
    vectors
}

fn printing() -> bool {
    std::env::var_os("LOGOS_WIRE_PRINT_VECTORS").is_some()
}

/// Compares, or in print mode reports, what the codec produced.
fn check_bytes(v: &Vector, what: &str, want: &[u8], got: &[u8]) {
    if printing() {
        if want != got {
            println!("{}: {what} is\n    {}", v.name, to_hex(got));
        }
        return;
    }
    assert_eq!(
        to_hex(got),
        to_hex(want),
        "{}: {what} differs (left: produced, right: documented)",
        v.ctx()
    );
}

fn hex_of(v: &Vector) -> Vec<u8> {
    let h = v
        .get("hex")
        .unwrap_or_else(|| panic!("{}: no hex", v.ctx()));
    if h == "?" {
        assert!(printing(), "{}: hex not filled in", v.ctx());
        return Vec::new();
    }
    parse_hex(h, &v.ctx())
}

fn decode_only(v: &Vector) -> bool {
    match v.get("only") {
        None => false,
        Some("decode") => true,
        Some(other) => panic!("{}: only: {other:?} (the one choice is `decode`)", v.ctx()),
    }
}

fn check_cbor_line(v: &Vector, body: &[u8]) {
    let Some(diag) = v.get("cbor") else { return };
    assert!(
        !decode_only(v),
        "{}: decode-only vectors have no cbor line",
        v.ctx()
    );
    let ctx = v.ctx();
    let mut p = Parser::new(diag, &ctx);
    let d = p.value();
    p.end();
    let mut out = Vec::new();
    cbor(&d, &mut out);
    check_bytes(v, "the cbor line (independent encoder)", body, &out);
}

fn check_message(v: &Vector, text: &str) -> Message {
    let ctx = v.ctx();
    let msg = parse_message(text, &ctx);
    let frame = hex_of(v);
    let mut encoded = Vec::new();
    encode_frame(&msg, &mut encoded).unwrap_or_else(|e| panic!("{ctx}: encoding failed: {e}"));
    if !decode_only(v) {
        check_bytes(v, "encoded frame", &frame, &encoded);
        check_cbor_line(v, frame.get(4..).unwrap_or_default());
    }
    if printing() && frame.is_empty() {
        return msg;
    }
    let mut buf = BytesMut::from(&frame[..]);
    let decoded = FrameDecoder::default()
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("{ctx}: decoding failed: {e}"));
    assert_eq!(
        decoded.as_ref(),
        Some(&msg),
        "{ctx}: decoded message differs"
    );
    assert!(buf.is_empty(), "{ctx}: the hex holds more than one frame");
    msg
}

fn check_value(v: &Vector, text: &str) {
    let ctx = v.ctx();
    let mut p = Parser::new(text, &ctx);
    let d = p.value();
    p.end();
    let value = to_value(&d, &ctx);
    let bytes = hex_of(v);
    if !decode_only(v) {
        let mut encoded = Vec::new();
        encode_value(&value, &mut encoded).unwrap();
        check_bytes(v, "encoded value", &bytes, &encoded);
        let mut independent = Vec::new();
        cbor(&d, &mut independent);
        check_bytes(v, "the value (independent encoder)", &bytes, &independent);
        check_cbor_line(v, &bytes);
    }
    if printing() && bytes.is_empty() {
        return;
    }
    let decoded = decode_value(&bytes).unwrap_or_else(|e| panic!("{ctx}: decoding failed: {e}"));
    assert_eq!(decoded, value, "{ctx}: decoded value differs");
    // Int and UInt compare equal across variants; the doc also promises which one decodes.
    assert_eq!(
        matches!(decoded, Value::UInt(_)),
        matches!(value, Value::UInt(_)),
        "{ctx}: integer decoded into the wrong variant: {decoded:?}"
    );
}

fn check_error(v: &Vector, want: &str) {
    let ctx = v.ctx();
    let frame = hex_of(v);
    let mut buf = BytesMut::from(&frame[..]);
    let got = FrameDecoder::new(DEFAULT_MAX_FRAME).decode(&mut buf);
    let ok = match (want.split_once(' '), &got) {
        (None, Ok(None)) => want == "incomplete",
        (None, Err(WireError::EmptyFrame)) => want == "empty_frame",
        (None, Err(WireError::FrameTooLarge { .. })) => want == "frame_too_large",
        (Some(("malformed", field)), Err(WireError::Malformed { what, .. })) => what == field,
        _ => false,
    };
    assert!(ok, "{ctx}: expected `{want}`, got {got:?}");
    // Whatever the frame decoder said, the bare body decoder must agree on refusing it.
    if want.starts_with("malformed") {
        assert!(
            logos_wire::decode_message(&frame[4..]).is_err(),
            "{ctx}: decode_message accepted the body"
        );
    }
}

#[test]
fn every_vector_in_the_doc_holds() {
    let vectors = load();
    let mut names = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    let (mut values, mut errors) = (0, 0);
    for v in &vectors {
        assert!(names.insert(v.name.clone()), "{}: duplicate name", v.ctx());
        let forms = [v.get("message"), v.get("value"), v.get("error")];
        match forms {
            [Some(m), None, None] => {
                kinds.insert(check_message(v, m).kind_name());
            }
            [None, Some(val), None] => {
                check_value(v, val);
                values += 1;
            }
            [None, None, Some(e)] => {
                assert!(v.get("cbor").is_none() && !decode_only(v), "{}", v.ctx());
                check_error(v, e);
                errors += 1;
            }
            _ => panic!("{}: needs exactly one of message, value, error", v.ctx()),
        }
    }
    for kind in KIND_NAMES {
        assert!(kinds.contains(kind), "no vector for message kind {kind}");
    }
    assert!(values >= 20, "only {values} value vectors");
    assert!(errors >= 10, "only {errors} negative vectors");
    assert!(
        !printing(),
        "print mode never passes; unset LOGOS_WIRE_PRINT_VECTORS"
    );
}

#[test]
fn the_checker_catches_a_wrong_vector() {
    // Guards the guard: a one-bit change to a real vector must be caught.
    let vectors = load();
    let v = vectors
        .iter()
        .find(|v| v.get("message").is_some() && !decode_only(v))
        .expect("a message vector");
    let mut frame = hex_of(v);
    let Some(last) = frame.last_mut() else {
        return; // print mode, hex not filled in yet
    };
    *last ^= 1;
    let mut bad = Vector {
        name: v.name.clone(),
        fields: v.fields.clone(),
        line: v.line,
    };
    bad.fields.insert("hex".into(), to_hex(&frame));
    bad.fields.remove("cbor");
    let msg = v.get("message").unwrap().to_owned();
    let caught = std::panic::catch_unwind(|| check_message(&bad, &msg)).is_err();
    assert!(caught || printing(), "a corrupted vector passed");
}
