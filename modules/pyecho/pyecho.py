#!/usr/bin/env python3
"""pyecho: a logos module in Python, written with the Python SDK (`sdk/python`, package
`logos-module`; docs/python-sdk.md).

metadata.json names this file as `main`, so the core runs it directly with the control
connection on fd 3 and the listening socket on fd 4; the SDK does the protocol. Staging copies
the SDK package beside this file (`logos_module` here is a link to `sdk/python/logos_module`),
so the confined process imports it from its own module dir with the system `python3`.

Methods: echo(v) -> v (and emits `echoed` [v]), upper(text) -> text, add(a, b) -> int,
fail(msg) -> always method_failed. It leaves `$stats` unanswered (`unknown_method`), so the
core shows no call figures for it.
"""
from typing import Any

from logos_module import Fault, event, module, run

VERSION = "1.0.0"  # as in metadata.json


@module(version=VERSION)
class PyEcho:
    @event
    def echoed(self, v: Any): ...

    def echo(self, v: Any) -> Any:
        self.echoed(v)
        return v

    def upper(self, text: str) -> str:
        return text.upper()

    def add(self, a: int, b: int) -> int:
        if not -(1 << 63) <= a + b < 1 << 63:
            raise Fault("method_failed", f"overflow: {a} + {b} does not fit in a 64-bit signed integer")
        return a + b

    def fail(self, msg: str) -> None:
        raise Fault("method_failed", msg)


if __name__ == "__main__":
    run(PyEcho)
