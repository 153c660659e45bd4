"""The wire codec of docs/protocol.md §2-§4: deterministic CBOR encoding, strict decoding,
message shapes and framing.

Owns bytes only: it never touches a socket or an event loop, so every rule of the protocol's
codec can be checked against the §13 test vectors without a peer. Standard library only (like
the §14.1 sketch it follows), because a module runs under the system `python3`, confined, with
nothing installed beside it: a CBOR package from PyPI would not be importable there, and none
enforces this protocol's strict rules (text keys only, no duplicates, depth 64, no tags).
"""

from __future__ import annotations

import struct

#: Default frame cap (§2), checked on the length prefix before the body is read.
MAX_FRAME = 16 * 1024 * 1024
#: Cap on `hello`/`welcome` before the handshake (§2).
HANDSHAKE_CAP = 64 * 1024
#: Largest `stream_data` chunk (§8).
MAX_CHUNK = 64 * 1024
#: Lists and maps nested within one value field (§3.3); the message array is level 0.
MAX_DEPTH = 64

INT_MIN = -(1 << 63)
INT_MAX = (1 << 64) - 1

#: Error codes of §10, in the order of the table.
CODES = (
    "unknown_module",
    "not_loaded",
    "unknown_method",
    "invalid_args",
    "unauthorized",
    "timeout",
    "unavailable",
    "method_failed",
    "cancelled",
    "protocol_error",
    "limit",
    "invalid_metadata",
)

# Field types of §4.
U16, UINT, TEXT, BYTES, LIST, MAP, ANY, CODE, OPT_TEXT = range(9)

#: kind -> (name, [(field, type)]), index = the kind number (§4).
LAYOUTS = [
    ("hello", [("major", U16), ("minor", U16), ("identity", TEXT), ("token", BYTES), ("attrs", MAP)]),
    ("welcome", [("major", U16), ("minor", U16), ("identity", TEXT), ("attrs", MAP)]),
    ("call", [("id", UINT), ("target", TEXT), ("method", TEXT), ("args", LIST), ("timeout_ms", UINT)]),
    ("reply", [("id", UINT), ("value", ANY)]),
    ("error", [("id", UINT), ("code", CODE), ("message", TEXT)]),
    ("cancel", [("id", UINT)]),
    ("subscribe", [("source", TEXT), ("event", TEXT)]),
    ("unsubscribe", [("source", TEXT), ("event", TEXT)]),
    ("event", [("source", TEXT), ("event", TEXT), ("data", LIST)]),
    ("lagged", [("source", TEXT), ("dropped", UINT)]),
    ("stream_open", [("stream", UINT), ("protocol", TEXT)]),
    ("stream_data", [("stream", UINT), ("data", BYTES)]),
    ("stream_credit", [("stream", UINT), ("bytes", UINT)]),
    ("stream_fin", [("stream", UINT)]),
    ("stream_reset", [("stream", UINT), ("code", CODE), ("message", TEXT)]),
    ("ping", [("nonce", UINT)]),
    ("pong", [("nonce", UINT), ("unhealthy", OPT_TEXT)]),
    ("shutdown", [("grace_ms", UINT)]),
]
KINDS = {name: kind for kind, (name, _) in enumerate(LAYOUTS)}


class Malformed(Exception):
    """The peer broke the protocol (§2): answer `error` id 0 `protocol_error` and close.

    `where` names the part that is wrong the way the Rust decoder does (`message`,
    `message.kind`, `ping`, `call.method`, ...)."""

    def __init__(self, where: str, why: str):
        super().__init__(f"malformed {where}: {why}")
        self.where = where
        self.why = why


class FrameTooLarge(Exception):
    """A length prefix above the cap (§2): answer `error` id 0 `limit` and close."""


class EmptyFrame(Exception):
    """A length prefix of 0 (§2): answer `error` id 0 `protocol_error` and close."""


class Unencodable(ValueError):
    """A value this protocol cannot carry (§3): an unknown type, an int out of range, a
    non-text map key, or nesting beyond 64 levels. Raised to the sender, never sent."""


# -- encoding (deterministic, §3.1) --------------------------------------------------------


def _head(major: int, n: int, out: bytearray) -> None:
    if n < 24:
        out.append(major << 5 | n)
    elif n < 1 << 8:
        out += bytes((major << 5 | 24, n))
    elif n < 1 << 16:
        out.append(major << 5 | 25)
        out += n.to_bytes(2, "big")
    elif n < 1 << 32:
        out.append(major << 5 | 26)
        out += n.to_bytes(4, "big")
    else:
        out.append(major << 5 | 27)
        out += n.to_bytes(8, "big")


def encode_value(v, out: bytearray | None = None, depth: int = 0) -> bytearray:
    """Appends the CBOR encoding of value `v` to `out` (a new buffer when None) and returns it.

    Python types: None, bool, int, float, str, bytes/bytearray/memoryview, list/tuple, dict
    with str keys. Map keys are sorted by their UTF-8 bytes (§3.1 rule 5).

    Raises Unencodable for anything else."""
    if out is None:
        out = bytearray()
    if v is None:
        out.append(0xF6)
    elif v is True:
        out.append(0xF5)
    elif v is False:
        out.append(0xF4)
    elif isinstance(v, int):
        if not INT_MIN <= v <= INT_MAX:
            raise Unencodable(f"integer {v} is outside the range -2^63 .. 2^64-1")
        if v >= 0:
            _head(0, v, out)
        else:
            _head(1, -1 - v, out)
    elif isinstance(v, float):
        out.append(0xFB)
        out += struct.pack(">d", v)
    elif isinstance(v, str):
        raw = v.encode("utf-8")
        _head(3, len(raw), out)
        out += raw
    elif isinstance(v, (bytes, bytearray, memoryview)):
        raw = bytes(v)
        _head(2, len(raw), out)
        out += raw
    elif isinstance(v, (list, tuple)):
        if depth >= MAX_DEPTH:
            raise Unencodable(f"a value nested more than {MAX_DEPTH} deep")
        _head(4, len(v), out)
        for x in v:
            encode_value(x, out, depth + 1)
    elif isinstance(v, dict):
        if depth >= MAX_DEPTH:
            raise Unencodable(f"a value nested more than {MAX_DEPTH} deep")
        for k in v:
            if not isinstance(k, str):
                raise Unencodable(f"map key {k!r} is not text")
        _head(5, len(v), out)
        for k in sorted(v, key=lambda k: k.encode("utf-8")):
            encode_value(k, out, depth + 1)
            encode_value(v[k], out, depth + 1)
    else:
        raise Unencodable(f"a {type(v).__name__} is not a logos value")
    return out


def encode_message(msg: list) -> bytes:
    """The body of message `msg` (`[kind, fields...]`). A value field's own list or map is
    its first level, so a field may hold 64 levels (§3.3)."""
    out = bytearray()
    _head(4, len(msg), out)
    for x in msg:
        encode_value(x, out)
    return bytes(out)


def frame(msg: list) -> bytes:
    """The whole frame (length prefix + body) of message `msg`, e.g. `frame([15, 7])`."""
    body = encode_message(msg)
    if len(msg) == 3 and msg[0] == 11 and len(msg[2]) > MAX_CHUNK:
        raise Unencodable(f"a stream_data chunk of {len(msg[2])} bytes is over {MAX_CHUNK}")
    return len(body).to_bytes(4, "big") + body


# -- decoding (strict, §3.2-§3.4) ----------------------------------------------------------


class _Bad(Exception):
    """Raised inside an item; the caller labels it with the field it was decoding."""


def _item(b: bytes, i: int, depth: int):
    """Decodes one item at `b[i]`; returns (value, next index). `depth` is that of the
    container holding the item."""
    if i >= len(b):
        raise _Bad("truncated")
    ib = b[i]
    major, info = ib >> 5, ib & 31
    i += 1
    if major == 7:
        if ib == 0xF4:
            return False, i
        if ib == 0xF5:
            return True, i
        if ib == 0xF6:
            return None, i
        width = {0xF9: 2, 0xFA: 4, 0xFB: 8}.get(ib)
        if width is None:
            raise _Bad("undefined, a simple value or a break")
        if i + width > len(b):
            raise _Bad("truncated float")
        fmt = {2: ">e", 4: ">f", 8: ">d"}[width]
        return float(struct.unpack(fmt, b[i : i + width])[0]), i + width
    if major == 6:
        raise _Bad("a tag")
    if info < 24:
        n = info
    elif info < 28:
        w = 1 << (info - 24)
        if i + w > len(b):
            raise _Bad("truncated head")
        n = int.from_bytes(b[i : i + w], "big")
        i += w
    else:
        raise _Bad("an indefinite length or reserved additional information")
    if major == 0:
        return n, i
    if major == 1:
        if n >= 1 << 63:
            raise _Bad("an integer below -2^63")
        return -1 - n, i
    if major in (2, 3):
        if n > len(b) - i:
            raise _Bad(f"{n} bytes declared, {len(b) - i} left")
        raw = bytes(b[i : i + n])
        i += n
        if major == 2:
            return raw, i
        try:
            return raw.decode("utf-8"), i
        except UnicodeDecodeError:
            raise _Bad("text that is not UTF-8") from None
    if depth >= MAX_DEPTH:
        raise _Bad(f"nested more than {MAX_DEPTH} deep")
    if major == 4:
        if n > len(b) - i:  # before reserving anything (§3.4)
            raise _Bad(f"a list of {n} items with {len(b) - i} bytes left")
        out = []
        for _ in range(n):
            v, i = _item(b, i, depth + 1)
            out.append(v)
        return out, i
    if 2 * n > len(b) - i:
        raise _Bad(f"a map of {n} entries with {len(b) - i} bytes left")
    m = {}
    for _ in range(n):
        if i >= len(b) or b[i] >> 5 != 3:
            raise _Bad("a map key that is not text")
        k, i = _item(b, i, depth + 1)
        if k in m:
            raise _Bad(f"duplicate map key {k!r}")
        m[k], i = _item(b, i, depth + 1)
    return m, i


def decode_value(b: bytes):
    """Decodes one bare value (a §13.2 vector); raises Malformed("value", ...)."""
    try:
        v, end = _item(bytes(b), 0, 0)
    except _Bad as e:
        raise Malformed("value", str(e)) from None
    if end != len(b):
        raise Malformed("value", "trailing bytes")
    return v


def _check(t: int, v) -> bool:
    if t == U16:
        return type(v) is int and 0 <= v <= 0xFFFF
    if t == UINT:
        return type(v) is int and v >= 0
    if t == TEXT:
        return type(v) is str
    if t == BYTES:
        return type(v) is bytes
    if t == LIST:
        return type(v) is list
    if t == MAP:
        return type(v) is dict
    if t == CODE:
        return type(v) is str and v in CODES
    if t == OPT_TEXT:
        return v is None or type(v) is str
    return True


def check_trace(t) -> list:
    """A call's `trace` item, `[trace_id: 16 bytes, span_id: 8 bytes, flags: 0..255]` with no
    all-zero id (§6.6); raises Malformed naming the part that is wrong."""
    if type(t) is not list or len(t) != 3:
        raise Malformed("call.trace", "expected [trace_id, span_id, flags]")
    for where, v, size in (("call.trace.trace_id", t[0], 16), ("call.trace.span_id", t[1], 8)):
        if type(v) is not bytes or len(v) != size:
            raise Malformed(where, f"expected {size} bytes, found {v!r:.40}")
        if not any(v):
            raise Malformed(where, "an all-zero id is invalid")
    if type(t[2]) is not int or not 0 <= t[2] <= 255:
        raise Malformed("call.trace.flags", f"expected 0..255, found {t[2]!r:.40}")
    return t


def decode_message(body: bytes) -> tuple[str, list]:
    """Decodes one frame body into (kind name, fields) or raises Malformed naming where."""
    b = bytes(body)
    if not b or b[0] >> 5 != 4:
        raise Malformed("message", "a message is an array")
    info = b[0] & 31
    i = 1
    if info < 24:
        n = info
    elif info < 28:
        w = 1 << (info - 24)
        if i + w > len(b):
            raise Malformed("message", "truncated")
        n = int.from_bytes(b[i : i + w], "big")
        i += w
    else:
        raise Malformed("message", "an indefinite-length array")
    if n == 0:
        raise Malformed("message", "an empty array")
    if n > len(b) - i:
        raise Malformed("message", f"{n} items declared, {len(b) - i} bytes left")
    try:
        kind, i = _item(b, i, 0)
    except _Bad as e:
        raise Malformed("message.kind", str(e)) from None
    if type(kind) is not int or not 0 <= kind < len(LAYOUTS):
        raise Malformed("message.kind", f"unknown message kind {kind!r}")
    name, layout = LAYOUTS[kind]
    traced = name == "call" and n == 2 + len(layout)  # the optional trace (§6.6, since 1.2)
    if n != 1 + len(layout) and not traced:
        raise Malformed(name, f"{n - 1} fields, expected {len(layout)}")
    fields = []
    for field, t in layout:
        try:
            v, i = _item(b, i, 0)
        except _Bad as e:
            raise Malformed(f"{name}.{field}", str(e)) from None
        if not _check(t, v):
            raise Malformed(f"{name}.{field}", f"wrong type {type(v).__name__}")
        fields.append(v)
    if traced:
        try:
            t, i = _item(b, i, 0)
        except _Bad as e:
            raise Malformed("call.trace", str(e)) from None
        fields.append(check_trace(t))
    if i != len(b):
        raise Malformed("message", "trailing bytes")
    if name == "stream_data" and len(fields[1]) > MAX_CHUNK:
        raise Malformed("stream_data.data", f"a chunk of {len(fields[1])} bytes is over 64 KiB")
    return name, fields


class FrameDecoder:
    """Splits a byte stream into messages. Feed bytes with `feed`, take messages with
    `next`, which returns None until a whole frame is there (§2: `incomplete`)."""

    def __init__(self, cap: int = MAX_FRAME):
        self.cap = cap
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> tuple[str, list] | None:
        if len(self._buf) < 4:
            return None
        n = int.from_bytes(self._buf[:4], "big")
        if n == 0:
            raise EmptyFrame("a frame of length 0")
        if n > self.cap:  # from the prefix alone, before waiting for the body
            raise FrameTooLarge(f"a frame of {n} bytes is over the {self.cap}-byte cap")
        if len(self._buf) < 4 + n:
            return None
        body = bytes(self._buf[4 : 4 + n])
        del self._buf[: 4 + n]
        return decode_message(body)
