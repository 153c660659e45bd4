"""`Connection`: one established protocol connection (docs/protocol.md §6-§9) over an asyncio
stream: calls both ways matched by id, deadlines and cancel, subscriptions and a bounded event
queue with `lagged`, byte streams, ping/pong.

Owns the connection's bookkeeping and its writer task; what a call, an event, a stream or a
shutdown means is the `Handler`'s business (the runtime's). Never decides who may connect:
the handshake happens before a Connection exists."""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, Awaitable, Callable, Protocol

from . import codec, trace
from .fault import Fault
from .stream import ByteStream

log = logging.getLogger("logos_module")

#: Events queued per connection before newer ones are dropped and counted (§7).
EVENT_QUEUE = 1024
#: Other frames queued before senders (and so the reader) wait: the peer is not reading.
SEND_QUEUE = 256
#: Calls from the peer running at once; more are refused with `limit` (§6.2).
MAX_IN_FLIGHT = 1024
#: Receiver's default deadline for `timeout_ms` 0 (§6.3).
DEFAULT_TIMEOUT_MS = 30_000
#: Slack on our own timer for the calls we make, over the deadline we send.
CALLER_SLACK = 1.0
#: Streams open at once per connection; more are refused with `limit`.
MAX_STREAMS = 256


class Handler(Protocol):
    """What a connection asks of the runtime."""

    async def on_call(self, conn: Connection, target: str, method: str, args: list) -> Any: ...
    def on_event(self, conn: Connection, source: str, event: str, data: list) -> None: ...
    def on_stream(self, conn: Connection, stream: ByteStream) -> Awaitable[None] | None: ...
    def on_shutdown(self, conn: Connection, grace_ms: int) -> None: ...


class Connection:
    """An established connection; `connecting` is True on the side that sent `hello`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, peer: str,
                 control: bool, connecting: bool, handler: Handler, source: str):
        self.reader, self.writer = reader, writer
        self.peer, self.control, self.connecting = peer, control, connecting
        self.handler, self.source = handler, source
        self.access: dict | None = None  # what the peer may call (its grant); None: everything
        self.peer_minor = 0  # the minor the peer announced: `trace` goes only to 1.2+ (§5.2)
        self.subs: set[tuple[str, str]] = set()
        self._next_call = 1
        self._pending: dict[int, asyncio.Future] = {}
        self._running: dict[int, asyncio.Task] = {}
        self._streams: dict[int, ByteStream] = {}
        self._next_stream = 1 if connecting else 2
        self._highest_peer_stream = 0
        self._out: collections.deque[tuple[bool, bytes]] = collections.deque()
        self._events = 0
        self._dropped = 0
        self._changed = asyncio.Event()
        self._closing = False
        self.retiring = False  # the peer said it is going: no new calls here (see `retire`)
        self.closed = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._writer_task = asyncio.ensure_future(self._write())
        self._reader_task = asyncio.ensure_future(self._read())

    # -- sending ---------------------------------------------------------------------------

    def post(self, msg: list) -> None:
        """Queues a frame without waiting (small control frames: pong, reset, cancel)."""
        if not self._closing:
            self._out.append((False, codec.frame(msg)))
            self._changed.set()

    async def send(self, msg: list) -> None:
        """Queues a frame, waiting while too many are queued."""
        data = codec.frame(msg)
        while not self._closing and len(self._out) - self._events >= SEND_QUEUE:
            self._changed.clear()
            await self._changed.wait()
        if self._closing:
            raise Fault("unavailable", f"the connection to {self.peer} is closed")
        self._out.append((False, data))
        self._changed.set()

    def emit(self, event: str, data: list) -> None:
        """Queues `event` if the peer subscribed to it; never waits (§7)."""
        if self._closing or not ({(self.source, event), (self.source, "")} & self.subs):
            return
        if self._events >= EVENT_QUEUE:
            self._dropped += 1
            return
        if self._dropped:
            self._out.append((True, codec.frame([9, self.source, self._dropped])))
            self._events += 1
            self._dropped = 0
        self._out.append((True, codec.frame([8, self.source, event, data])))
        self._events += 1
        self._changed.set()

    async def _write(self) -> None:
        try:
            while True:
                while not self._out:
                    if self._closing:
                        return
                    self._changed.clear()
                    await self._changed.wait()
                is_event, data = self._out.popleft()
                self._events -= is_event
                self._changed.set()
                self.writer.write(data)
                await self.writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._closing = True
            try:
                self.writer.close()
            except Exception:  # the transport may be gone already
                pass
            self._reader_task.cancel()
            self._finish()

    def retire(self) -> None:
        """Takes no new calls; closes once every call sent on it has its answer."""
        if self.retiring:
            return
        self.retiring = True

        async def close_when_answered() -> None:
            while self._pending and not self.closed.is_set():
                await asyncio.wait(list(self._pending.values()))
            self.close()

        task = asyncio.ensure_future(close_when_answered())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self, code: str | None = None, message: str = "") -> None:
        """Closes once the queue is sent, after a final `error` id 0 if `code` is given (§6.5)."""
        if self._closing:
            return
        if code:
            self._out.append((False, codec.frame([4, 0, code, message])))
        self._closing = True
        self._changed.set()

    async def flush(self, timeout: float) -> None:
        """Waits (at most `timeout` s) until everything queued is written."""
        loop = asyncio.get_running_loop()
        end = loop.time() + max(timeout, 0)
        while self._out and loop.time() < end:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), end - loop.time())
            except asyncio.TimeoutError:
                break

    def _finish(self) -> None:
        """Everything that depends on the connection fails with `unavailable`."""
        gone = Fault("unavailable", f"the connection to {self.peer} closed")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(gone)
        self._pending.clear()
        for task in self._running.values():
            task.cancel()
        for s in list(self._streams.values()):
            s._fail(gone)
        self.closed.set()

    # -- calling the peer ------------------------------------------------------------------

    async def call(self, target: str, method: str, args: list, timeout: float = 30.0,
                   ctx: list | None = None) -> Any:
        """Calls `target.method(*args)` on the peer; the result, or Fault. `ctx` is the
        trace context to send (§6.6), left out for a peer older than 1.2."""
        if self._closing:
            raise Fault("unavailable", f"the connection to {self.peer} is closed")
        cid = self._next_call
        self._next_call += 1
        fut = asyncio.get_running_loop().create_future()
        self._pending[cid] = fut
        ms = max(1, int(timeout * 1000))
        msg = [2, cid, target, method, list(args), ms]
        if ctx is not None and self.peer_minor >= 2:
            msg.append(ctx)
        try:
            await self.send(msg)
            return await asyncio.wait_for(asyncio.shield(fut), timeout + CALLER_SLACK)
        except asyncio.TimeoutError:
            self.post([5, cid])
            raise Fault("timeout", f"{target}.{method} did not answer within {timeout:g} s") from None
        except asyncio.CancelledError:
            self.post([5, cid])
            raise
        finally:
            self._pending.pop(cid, None)

    def subscribe(self, source: str, event: str) -> None:
        self.post([6, source, event])

    def unsubscribe(self, source: str, event: str) -> None:
        self.post([7, source, event])

    async def open_stream(self, protocol: str) -> ByteStream:
        """Opens a stream speaking `protocol`; data may be written at once."""
        sid = self._next_stream
        self._next_stream += 2
        s = ByteStream(self, sid, protocol)
        self._streams[sid] = s
        await self.send([10, sid, protocol])
        return s

    # -- reading ---------------------------------------------------------------------------

    async def _read(self) -> None:
        dec = codec.FrameDecoder()
        try:
            while True:
                msg = dec.next()
                if msg is None:
                    data = await self.reader.read(65536)
                    if not data:
                        break
                    dec.feed(data)
                    continue
                if not await self._dispatch(*msg):
                    break
        except codec.FrameTooLarge as e:
            self.close("limit", str(e))
        except (codec.Malformed, codec.EmptyFrame) as e:
            self.close("protocol_error", str(e))
        except _Violation as e:
            self.close("protocol_error", str(e))
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.close()

    async def _dispatch(self, kind: str, f: list) -> bool:
        """Handles one message; False when the connection is over."""
        if kind == "call":
            cid, target, method, args, timeout_ms = f[:5]
            parent = f[5] if len(f) > 5 else None
            if cid == 0:
                raise _Violation("a call with id 0")
            if cid in self._running:
                raise _Violation(f"call id {cid} is already in flight")
            if len(self._running) >= MAX_IN_FLIGHT:
                await self.send([4, cid, "limit", f"more than {MAX_IN_FLIGHT} calls in flight"])
                return True
            task = asyncio.ensure_future(self._serve(cid, target, method, args, timeout_ms or DEFAULT_TIMEOUT_MS,
                                                     parent))
            self._running[cid] = task
        elif kind in ("reply", "error"):
            cid = f[0]
            if kind == "error" and cid == 0:
                log.info("%s closed the connection: %s: %s", self.peer, f[1], f[2])
                return False
            fut = self._pending.get(cid)
            if fut is not None and not fut.done():
                if kind == "reply":
                    fut.set_result(f[1])
                else:
                    fut.set_exception(Fault(f[1], f[2]))
        elif kind == "cancel":
            task = self._running.pop(f[0], None)
            if task is not None:
                task.cancel()
        elif kind == "subscribe":
            self.subs.add((f[0], f[1]))
        elif kind == "unsubscribe":
            self.subs.discard((f[0], f[1]))
        elif kind == "event":
            self.handler.on_event(self, f[0], f[1], f[2])
        elif kind == "lagged":
            log.warning("%s dropped %d events of %s: this module reads too slowly", self.peer, f[1], f[0])
        elif kind == "ping":
            await self.send([16, f[0], None])
        elif kind == "pong":
            pass
        elif kind == "shutdown":
            if not self.control and not self.connecting:
                raise _Violation("shutdown on a peer connection")
            if self.control:
                self.handler.on_shutdown(self, f[0])
            else:
                # The module we call is going (stopping, or being hot-swapped, §9): new calls
                # take a new connection, and this one closes once its calls are answered.
                self.retire()
        elif kind.startswith("stream_"):
            await self._stream_frame(kind, f)
        else:  # hello, welcome
            raise _Violation(f"{kind} on an established connection")
        return True

    async def _stream_frame(self, kind: str, f: list) -> None:
        sid = f[0]
        if kind == "stream_open":
            peer_parity = 0 if self.connecting else 1
            if sid == 0 or sid % 2 != peer_parity or sid <= self._highest_peer_stream:
                raise _Violation(f"stream_open with id {sid}: wrong parity, 0 or reused")
            self._highest_peer_stream = sid
            if len(self._streams) >= MAX_STREAMS:
                self.post([14, sid, "limit", f"more than {MAX_STREAMS} streams open"])
                return
            s = ByteStream(self, sid, f[1])
            self._streams[sid] = s
            run = self.handler.on_stream(self, s)
            if run is None:
                s._fail(Fault("unknown_method", f"no stream protocol {f[1]!r}"))
                self.post([14, sid, "unknown_method", f"{self.source} serves no stream protocol {f[1]!r}"])
            else:
                self._spawn(run)
            return
        s = self._streams.get(sid)
        if s is None:
            return  # e.g. data in flight when it was reset (§8)
        if kind == "stream_data":
            why = s._on_data(f[1])
        elif kind == "stream_credit":
            why = s._on_credit(f[1])
        elif kind == "stream_fin":
            why = s._on_fin()
        else:
            why = None
            s._fail(Fault(f[1], f[2] or f"stream {sid} was reset by {self.peer}"))
        if why:
            raise _Violation(why)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, cid: int, target: str, method: str, args: list, timeout_ms: int,
                     parent: list | None = None) -> None:
        # This call's span, current while the method runs (this task's own context copy), so
        # the calls it makes are its children. Reserved `$` methods are plumbing: no span.
        span = None
        if not method.startswith("$"):
            ctx = trace.child_of(parent)
            trace.CURRENT.set(ctx)
            span = trace.Span(ctx, parent, "server", target, method)
        try:
            value = await asyncio.wait_for(self.handler.on_call(self, target, method, args), timeout_ms / 1000)
            reply = [3, cid, value]
            try:
                data = codec.encode_message(reply)
            except codec.Unencodable as e:
                raise Fault("method_failed", f"{self.source}.{method} returned what logos cannot carry: {e}") from None
            if len(data) > codec.MAX_FRAME:
                raise Fault("limit", f"the result of {self.source}.{method} is over {codec.MAX_FRAME} bytes")
        except asyncio.TimeoutError:
            reply = [4, cid, "timeout", f"{self.source}.{method} did not finish within {timeout_ms} ms"]
        except asyncio.CancelledError:
            return  # cancelled by the caller: nothing is sent (§6.4)
        except Fault as fault:
            reply = [4, cid, fault.code, fault.message]
        except Exception as e:  # a bug in a method fails that call; the module keeps serving
            log.exception("%s.%s failed", self.source, method)
            reply = [4, cid, "method_failed", f"{self.source}.{method} failed: {e}"]
        finally:
            self._running.pop(cid, None)
        if span is not None:
            span.finish(f"{reply[2]}: {reply[3]}" if reply[0] == 4 else None)
        try:
            await self.send(reply)
        except Fault:
            pass  # the connection is gone; the caller sees unavailable


class _Violation(Exception):
    """The peer broke a rule of §5-§9: `error` id 0 `protocol_error`, then close."""


async def read_one(reader: asyncio.StreamReader, cap: int, timeout: float) -> tuple[str, list]:
    """One message before the handshake is done (`hello`/`welcome`), within `timeout`."""

    async def go():
        prefix = await reader.readexactly(4)
        n = int.from_bytes(prefix, "big")
        if n == 0:
            raise codec.EmptyFrame("a frame of length 0")
        if n > cap:
            raise codec.FrameTooLarge(f"a frame of {n} bytes is over the {cap}-byte handshake cap")
        return codec.decode_message(await reader.readexactly(n))

    return await asyncio.wait_for(go(), timeout)


Callback = Callable[..., Any]
