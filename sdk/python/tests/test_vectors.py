"""Replays every test vector of docs/protocol.md §13 against the SDK's codec: the same vectors
`crates/logos-wire/tests/vectors.rs` checks against the Rust codec, read from the same file, so
the two implementations cannot drift apart without one of them failing."""

from __future__ import annotations

import json
import math
import pathlib
import re

import pytest

from logos_module import codec

PROTOCOL_MD = pathlib.Path(__file__).resolve().parents[3] / "docs" / "protocol.md"


def parse_vectors(text: str) -> list[dict]:
    """The ```vector blocks: `key: value` lines, indented lines continuing the previous one."""
    vectors = []
    for block in re.findall(r"^```vector\n(.*?)^```$", text, re.M | re.S):
        v, key = {}, None
        for line in block.splitlines():
            if line[:1].isspace() and key:
                v[key] += " " + line.strip()
            elif line.strip():
                key, _, rest = line.partition(":")
                v[key.strip()] = rest.strip()
        vectors.append(v)
    return vectors


class Diag:
    """CBOR diagnostic notation as §13 uses it; bare words before `:` in a message's braces
    are field names."""

    def __init__(self, s: str):
        self.s, self.i = s, 0

    def ws(self):
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def peek(self, token: str) -> bool:
        self.ws()
        return self.s.startswith(token, self.i)

    def eat(self, token: str):
        assert self.peek(token), f"expected {token!r} at {self.i} in {self.s!r}"
        self.i += len(token)

    def value(self):
        self.ws()
        s, i = self.s, self.i
        for word, v in (("null", None), ("true", True), ("false", False), ("NaN", math.nan),
                        ("Infinity", math.inf), ("-Infinity", -math.inf)):
            if s.startswith(word, i):
                self.i += len(word)
                return v
        if s.startswith("h'", i):
            end = s.index("'", i + 2)
            self.i = end + 1
            return bytes.fromhex(s[i + 2 : end])
        if s[i] == '"':
            v, end = json.JSONDecoder().raw_decode(s, i)
            self.i = end
            return v
        if s[i] == "[":
            self.eat("[")
            out = []
            while not self.peek("]"):
                out.append(self.value())
                if self.peek(","):
                    self.eat(",")
            self.eat("]")
            return out
        if s[i] == "{":
            self.eat("{")
            out = {}
            while not self.peek("}"):
                self.ws()
                if self.s[self.i] == '"':
                    k = self.value()
                else:
                    m = re.compile(r"[a-z_]+").match(self.s, self.i)
                    k, self.i = m.group(0), m.end()
                self.eat(":")
                out[k] = self.value()
                if self.peek(","):
                    self.eat(",")
            self.eat("}")
            return out
        m = re.compile(r"-?[0-9][0-9.eE+-]*").match(s, i)
        self.i = m.end()
        t = m.group(0)
        return float(t) if any(c in t for c in ".eE") else int(t)


def parse_message(text: str) -> tuple[str, list]:
    """`<kind> {field: value, ...}` as (kind, fields in §4 order)."""
    kind, _, rest = text.partition(" ")
    fields = Diag(rest).value()
    layout = [f for f, _ in codec.LAYOUTS[codec.KINDS[kind]][1]]
    if kind == "call" and "trace" in fields:  # optional since 1.2 (§6.6)
        layout.append("trace")
    assert layout == list(fields), f"{kind}: fields {list(fields)}"
    return kind, list(fields.values())


def same(a, b) -> bool:
    """Equality that tells 1 from 1.0 and True from 1, and NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


VECTORS = parse_vectors(PROTOCOL_MD.read_text(encoding="utf-8"))


def test_the_document_has_all_its_vectors():
    assert len(VECTORS) >= 90, f"only {len(VECTORS)} vectors parsed from {PROTOCOL_MD}"
    names = [v["name"] for v in VECTORS]
    assert len(names) == len(set(names)), "vector names are unique"


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(v):
    raw = bytes.fromhex(v["hex"].replace(" ", ""))
    decode_only = v.get("only") == "decode"
    if "message" in v:
        kind, fields = parse_message(v["message"])
        dec = codec.FrameDecoder()
        dec.feed(raw)
        got_kind, got = dec.next()
        assert got_kind == kind and same(got, fields), (got_kind, got)
        assert dec.next() is None
        if not decode_only:
            assert codec.frame([codec.KINDS[kind], *fields]) == raw
        if "cbor" in v:
            body = Diag(v["cbor"]).value()
            assert codec.encode_message(body) == raw[4:]
    elif "value" in v:
        value = Diag(v["value"]).value()
        assert same(codec.decode_value(raw), value)
        if not decode_only:
            assert bytes(codec.encode_value(value)) == raw
    else:
        expected = v["error"]
        dec = codec.FrameDecoder()
        dec.feed(raw)
        if expected == "incomplete":
            assert dec.next() is None
        elif expected == "frame_too_large":
            with pytest.raises(codec.FrameTooLarge):
                dec.next()
        elif expected == "empty_frame":
            with pytest.raises(codec.EmptyFrame):
                dec.next()
        else:
            with pytest.raises(codec.Malformed) as e:
                dec.next()
            assert f"malformed {e.value.where}" == expected, str(e.value)


def test_the_encoder_refuses_what_the_protocol_cannot_carry():
    for bad in (1 << 64, -(1 << 63) - 1, {1: 2}, object(), {1.5}):
        with pytest.raises(codec.Unencodable):
            codec.encode_value(bad)
    deep = None
    for _ in range(64):
        deep = [deep]
    codec.frame([3, 1, deep])  # 64 levels in a value field: allowed
    with pytest.raises(codec.Unencodable):
        codec.frame([3, 1, [deep]])
    with pytest.raises(codec.Unencodable):
        codec.frame([11, 1, bytes(codec.MAX_CHUNK + 1)])


def test_a_frame_arrives_in_pieces():
    raw = codec.frame([15, 7]) + codec.frame([16, 7, None])
    dec = codec.FrameDecoder()
    got = []
    for b in raw:
        dec.feed(bytes([b]))
        while (m := dec.next()) is not None:
            got.append(m)
    assert got == [("ping", [7]), ("pong", [7, None])]
