"""Spans of calls across modules (docs/tracing.md): the trace context of the call this task
serves, a span per incoming and per outgoing call, and the reporter that sends finished spans
to the core as `core.$spans(spans, dropped)`.

Owns the context variable (asyncio copies it into the tasks a call starts, so a call made while
serving a call is its child), span ids and the bounded span queue. Never waits in a call: a
finished span is appended to a bounded deque, or dropped and counted when it is full; one task
per process sends a batch every REPORT_EVERY seconds. Reporting is on only when the core's
`welcome` says `"spans": true`; each span goes as a row (its values in FIELDS order) when the
`welcome` also says `"span_rows": true`, else as a map (an older core)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time

log = logging.getLogger("logos_module")

#: Finished spans waiting to be reported; beyond this they are dropped and counted.
QUEUE = 8192
#: Most spans in one report.
MAX_BATCH = 1024
#: How often queued spans are sent.
REPORT_EVERY = 0.1
#: The W3C `sampled` flag.
SAMPLED = 0x01
#: A span's values in the order a row holds them (docs/tracing.md, "The report format").
FIELDS = ("trace", "span", "parent", "kind", "target", "method", "start_ns", "duration_ns",
          "error")

#: (trace_id: 16 bytes, span_id: 8 bytes, flags) of the call this task serves.
CURRENT: contextvars.ContextVar[list | None] = contextvars.ContextVar("logos_trace", default=None)

_rand = random.Random()


def _id(n: int) -> bytes:
    while True:
        b = _rand.getrandbits(8 * n).to_bytes(n, "big")
        if any(b):
            return b


def child_of(parent: list | None) -> list:
    """The context of a new span: a child of `parent`, or the root of a new trace."""
    if parent is None:
        return [_id(16), _id(8), SAMPLED]
    return [parent[0], _id(8), parent[2]]


class Span:
    """A span being timed; `finish` queues it."""

    __slots__ = ("ctx", "parent", "kind", "target", "method", "start_ns", "t0")

    def __init__(self, ctx: list, parent: list | None, kind: str, target: str, method: str):
        self.ctx, self.parent, self.kind = ctx, parent[1] if parent else None, kind
        self.target, self.method = target, method
        self.start_ns = time.time_ns()
        self.t0 = time.perf_counter_ns()

    def finish(self, error: str | None = None) -> None:
        REPORTER.add({
            "trace": self.ctx[0], "span": self.ctx[1], "parent": self.parent, "kind": self.kind,
            "target": self.target, "method": self.method, "start_ns": self.start_ns,
            "duration_ns": time.perf_counter_ns() - self.t0,
            "error": error[:200] if error else None,
        }) if REPORTER.enabled else None


class Reporter:
    def __init__(self):
        self.enabled = False
        #: The core takes rows (its `welcome` said `"span_rows": true`).
        self.rows = False
        self.queue: list[dict] = []
        self.dropped = 0
        self._task: asyncio.Task | None = None

    def add(self, span: dict) -> None:
        if len(self.queue) >= QUEUE:
            self.dropped += 1
        else:
            self.queue.append(span)

    def start(self, runtime, welcome_attrs: dict) -> None:
        """Starts reporting on the runtime's control connection if the core asked for it."""
        if welcome_attrs.get("spans") is not True:
            return
        # Per connection: a remote module's link may come back to another core.
        self.rows = welcome_attrs.get("span_rows") is True
        if self._task is not None:
            return
        self.enabled = True
        self._task = asyncio.ensure_future(self._run(runtime))

    async def _run(self, runtime) -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY)
            control = runtime.control
            if control is None or control.closed.is_set():
                return
            if not self.queue and not self.dropped:
                continue
            batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
            dropped, self.dropped = self.dropped, 0
            if self.rows:
                batch = [[span[k] for k in FIELDS] for span in batch]
            # A report: its answer is not awaited (like `core.$denied`).
            control.post([2, runtime._report_id(), "core", "$spans", [batch, dropped], 5000])


REPORTER = Reporter()
