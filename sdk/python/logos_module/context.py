"""`Context`: what a module's code uses to reach the platform: `emit`, calls to other modules
(`call`, `client`), event handlers (`on_event`), byte streams (`open_stream`, `on_stream`),
its data dir. A standalone context (`Context.standalone`) records emitted events and refuses
calls, for unit tests of a module's methods without a core.

Never reads a socket itself: the runtime (`runtime.py`) does the I/O and hands frames here."""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any, Callable

from . import trace
from .fault import Fault
from .stream import ByteStream

log = logging.getLogger("logos_module")

#: Deadline of a call unless given (docs/protocol.md §6.3).
DEFAULT_TIMEOUT = 30.0


class Client:
    """Calls to one module: `await ctx.client("calc").call("add", 2, 3)`."""

    def __init__(self, ctx: Context, target: str, timeout: float = DEFAULT_TIMEOUT):
        self.ctx, self.target, self.timeout = ctx, target, timeout

    async def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        return await self.ctx.call(self.target, method, *args, timeout=timeout or self.timeout)

    async def open_stream(self, protocol: str) -> ByteStream:
        return await self.ctx.open_stream(self.target, protocol)

    def on_event(self, event: str, handler: Callable) -> None:
        self.ctx.on_event(self.target, event, handler)


class Context:
    """The module's handle on the platform (one per module process)."""

    def __init__(self, name: str, runtime=None, data_dir: str | None = None):
        self.name = name
        self.data_dir = data_dir or os.environ.get("LOGOS_DATA_DIR") or os.getcwd()
        self._runtime = runtime
        #: (event, data) of every emit, in a standalone context (for tests).
        self.emitted: list[tuple[str, list]] = []
        self._routes: list[tuple[str, str, Callable]] = []
        self._streams: dict[str, Callable] = {}

    @classmethod
    def standalone(cls, name: str, data_dir: str | None = None) -> Context:
        """A context with no core behind it: `emit` records into `emitted`, calls fail with
        `unavailable`. For unit tests of a module's methods."""
        return cls(name, None, data_dir)

    def emit(self, event: str, *data: Any) -> None:
        """Sends `event` with `data` to every subscriber; never waits (a subscriber that does
        not read loses events and is told so with `lagged`)."""
        if self._runtime is None:
            self.emitted.append((event, list(data)))
            return
        self._runtime.emit(event, list(data))

    async def call(self, target: str, method: str, *args: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Calls `target.method(*args)`: asks the core for a token, connects to the target
        (checking its pid before sending the token) and calls; the session is kept for the
        next call. Raises Fault on failure (`unavailable` when the target is down)."""
        if self._runtime is None:
            raise Fault("unavailable", f"{self.name} runs standalone: no core to reach {target!r} through")
        conn = await self._runtime.connection_to(target)
        if target in ("core", "capability_module"):
            return await conn.call(target, method, list(args), timeout)
        parent = trace.CURRENT.get()
        ctx = trace.child_of(parent)
        span = trace.Span(ctx, parent, "client", target, method)
        try:
            result = await conn.call(target, method, list(args), timeout, ctx)
        except Fault as f:
            span.finish(f"{f.code}: {f.message}")
            raise
        span.finish()
        return result

    def client(self, target: str, timeout: float = DEFAULT_TIMEOUT) -> Client:
        return Client(self, target, timeout)

    def on_event(self, source: str, event: str, handler: Callable) -> None:
        """Runs `handler(*data)` (sync or async) for each `event` of `source` (`""`: every
        event; the handler then gets the event name first). Subscribes again by itself after
        `source` restarts."""
        self._routes.append((source, event, handler))
        if self._runtime is not None:
            self._runtime.subscribe(source, event)

    def on_stream(self, protocol: str, handler: Callable) -> None:
        """Serves streams other modules open with `protocol`: `await handler(stream)`."""
        self._streams[protocol] = handler

    async def open_stream(self, target: str, protocol: str) -> ByteStream:
        """Opens a byte stream to `target` speaking `protocol`."""
        if self._runtime is None:
            raise Fault("unavailable", f"{self.name} runs standalone: no core to reach {target!r} through")
        conn = await self._runtime.connection_to(target)
        return await conn.open_stream(protocol)

    def _deliver(self, source: str, event: str, data: list):
        """Runs the handlers routed for this event; returns the coroutines to schedule."""
        out = []
        for s, e, handler in self._routes:
            if s != source or e not in ("", event):
                continue
            args = [event, *data] if e == "" else data
            try:
                r = handler(*args)
                if inspect.isawaitable(r):
                    out.append(r)
            except Exception:
                log.exception("the handler of %s.%s failed", source, event)
        return out
