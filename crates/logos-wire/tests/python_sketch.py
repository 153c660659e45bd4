#!/usr/bin/env python3
"""Checks the Python sketch of docs/protocol.md §14.1 against every vector of §13.

Owns nothing but this check; run it by hand after editing the sketch or the vectors
(`python3 crates/logos-wire/tests/python_sketch.py`). It never edits the doc. The Rust test
`tests/vectors.rs` is the one CI runs; this one shows the doc is enough for another language.
"""
import pathlib
import re
import sys

DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "protocol.md"


def fields(block):
    out, last = {}, None
    for line in block.split("\n"):
        if not line.strip():
            continue
        if line[0].isspace():
            out[last] += " " + line.strip()
            continue
        key, value = line.split(":", 1)
        last = key.strip()
        out[last] = value.strip()
    return out


def main():
    doc = DOC.read_text(encoding="utf-8")
    ns = {}
    exec(re.search(r"```python\n(.*?)```", doc, re.S).group(1), ns)
    malformed = ns["Malformed"]
    kinds = [name for name, _ in ns["LAYOUTS"]]
    failures = 0
    blocks = re.findall(r"```vector\n(.*?)```", doc, re.S)
    for block in blocks:
        f = fields(block)
        raw = bytes.fromhex("".join(f["hex"].split()))
        encodes = f.get("only") != "decode"
        try:
            if "error" in f:
                n = int.from_bytes(raw[:4], "big")
                if n == 0:
                    got = "empty_frame"
                elif n > ns["MAX_FRAME"]:
                    got = "frame_too_large"
                elif len(raw) < 4 + n:
                    got = "incomplete"
                else:
                    try:
                        ns["decode_message"](raw[4 : 4 + n])
                        got = "accepted"
                    except malformed:
                        got = "malformed"
                assert got == f["error"].split()[0], f"got {got}"
            elif "message" in f:
                name, items = ns["decode_message"](raw[4:])
                assert f["message"].startswith(name + " "), f"decoded as {name}"
                if encodes:
                    assert ns["frame"]([kinds.index(name)] + items) == raw, "encodes differently"
            else:
                value, end = ns["item"](raw, 0, 0)
                assert end == len(raw), "trailing bytes"
                if encodes:
                    out = bytearray()
                    ns["encode"](value, out)
                    assert bytes(out) == raw, f"encodes as {out.hex()}"
        except Exception as e:  # report every failing vector, not just the first
            failures += 1
            print(f"FAIL {f['name']}: {e!r}")
    print(f"{len(blocks) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
