"""The module-side runtime: the process contract of docs/architecture.md ("Module process
contract") for a `@module` class. It takes fd 3 (the control connection) and fd 4 (the
listening socket), counts in the heartbeat page at fd 5, says `hello` with the interface, serves the core and token-holding peers
(`$grant`/`$revoke`, method grants, `core.$denied`), connects to other modules with tokens
(pid checked before the token is sent), re-subscribes after their restarts, and exits 0 within
the grace of a `shutdown`.

Owns processes' descriptors and the connections' lifecycle; what a method does is the module's
business, how bytes look is `codec.py`'s."""

from __future__ import annotations

import asyncio
import fcntl
import hmac
import inspect
import logging
import mmap
import os
import signal
import socket
import struct
import sys
import time
from typing import Any

from . import codec, trace
from .connection import Connection, read_one
from .context import Context
from .fault import Fault
from .module import Spec, metadata_version, spec_of
from .types import convert

log = logging.getLogger("logos_module")

#: The protocol version this SDK speaks (docs/protocol.md §5.2).
PROTOCOL_MAJOR, PROTOCOL_MINOR = 1, 2
#: A hello or welcome must arrive within this (docs/protocol.md §5.1).
HANDSHAKE_TIMEOUT = 5.0
#: Modules served by the core itself, reached over the control connection.
BUILTINS = ("core", "capability_module")
#: The size of the heartbeat page (docs/architecture.md, "Module process contract" §2).
BEAT_PAGE = 4096
#: Grants kept per caller; the oldest go first.
MAX_GRANTS = 64


class Runtime:
    """One module process: its instance, its connections and its grants."""

    def __init__(self, cls: type, name: str, version: str):
        self.spec: Spec = spec_of(cls)
        self.name, self.version = name, version
        self.ctx = Context(name, self)
        self.grants: dict[str, list[tuple[bytes, int | None, dict | None]]] = {}
        self.served: set[Connection] = set()  # the control connection and accepted peers
        self.peers: dict[str, Connection] = {}  # connections we opened, by target
        self._locks: dict[str, asyncio.Lock] = {}
        self.wanted: set[tuple[str, str]] = set()  # (source, event) subscriptions to keep
        self.control: Connection | None = None
        self.stopping = False
        #: The task counting in the heartbeat page, when the core gave one.
        self.beat: asyncio.Future[None] | None = None
        self.running = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.instance = cls.__new__(cls)
        self.instance.ctx = self.ctx
        init = cls.__init__
        if init is object.__init__:
            pass
        elif len(inspect.signature(init).parameters) > 1:
            init(self.instance, self.ctx)
        else:
            init(self.instance)
        for source, event, attr in self.spec.subscriptions:
            self.ctx.on_event(source, event, getattr(self.instance, attr))
        for protocol, attr in self.spec.streams.items():
            self.ctx.on_stream(protocol, getattr(self.instance, attr))

    # -- what the module's code reaches through its Context ----------------------------------

    def emit(self, event: str, data: list) -> None:
        codec.encode_value(data)  # refuse what cannot be sent here, to the emitter
        for conn in [*self.served, *self.peers.values()]:
            conn.emit(event, data)

    def subscribe(self, source: str, event: str) -> None:
        first = (source, event) not in self.wanted
        self.wanted.add((source, event))
        if self.control is None or not first:
            return  # applied after the handshake
        self._apply(source, event)

    def _apply(self, source: str, event: str) -> None:
        if source in BUILTINS:
            self.control.subscribe(source, event)
            return
        # `core.moduleUp` tells when `source` restarted and needs subscribing again.
        if ("core", "moduleUp") not in self.wanted:
            self.wanted.add(("core", "moduleUp"))
            self.control.subscribe("core", "moduleUp")
        asyncio.ensure_future(self._subscribe_at(source, event))

    async def _subscribe_at(self, source: str, event: str) -> None:
        try:
            conn = await self.connection_to(source)
            conn.subscribe(source, event)
        except Fault as f:
            log.warning("cannot subscribe to %s.%s yet (%s); retrying when it is up", source, event, f)

    async def connection_to(self, target: str) -> Connection:
        """The connection calls to `target` go over: the control connection for the core's
        built-in modules, else a peer connection opened with a token (cached)."""
        if self.control is None:
            raise Fault("unavailable", f"{self.name} is not connected to its core yet")
        if target in BUILTINS:
            return self.control
        conn = self.peers.get(target)
        if conn is not None and not conn.closed.is_set() and not conn._closing and not conn.retiring:
            return conn
        lock = self._locks.setdefault(target, asyncio.Lock())
        async with lock:
            conn = self.peers.get(target)
            if conn is not None and not conn.closed.is_set() and not conn._closing and not conn.retiring:
                return conn
            conn = await self._connect(target)
            self.peers[target] = conn
            for s, e in self.wanted:
                if s == target:
                    conn.subscribe(s, e)
            return conn

    async def _connect(self, target: str) -> Connection:
        grant = await self.control.call("capability_module", "requestModule", [target], HANDSHAKE_TIMEOUT * 2)
        token = grant.get("token") if isinstance(grant, dict) else None
        endpoint = grant.get("endpoint") if isinstance(grant, dict) else None
        pid = grant.get("pid") if isinstance(grant, dict) else None
        if not (type(token) is bytes and token and type(endpoint) is str and endpoint and type(pid) is int and pid > 0):
            raise Fault("protocol_error", f'capability_module.requestModule("{target}") returned {grant!r}; '
                                          'expected {"module", "token": bytes, "endpoint": text, "pid": int}')
        if endpoint.startswith("link:"):
            raise Fault("unavailable", f'"{target}" is a remote module; the Python SDK reaches local modules only')
        path = endpoint.removeprefix("unix:")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, path)
            found = peer_pid(sock)
            if found != pid:
                # Whoever else answers there never sees the token (docs/security.md).
                raise Fault("unauthorized", f'module "{target}" at {path} is served by pid {found}, '
                                            f"not by its process {pid}; the token was not sent")
            reader, writer = await asyncio.open_unix_connection(sock=sock)
        except OSError as e:
            sock.close()
            raise Fault("unavailable", f'cannot connect to module "{target}" at {path}: {e}') from None
        except Fault:
            sock.close()
            raise
        writer.write(codec.frame([0, PROTOCOL_MAJOR, PROTOCOL_MINOR, self.name, token, {}]))
        try:
            kind, f = await read_one(reader, codec.HANDSHAKE_CAP, HANDSHAKE_TIMEOUT)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, OSError, codec.Malformed,
                codec.FrameTooLarge, codec.EmptyFrame) as e:
            writer.close()
            raise Fault("unavailable", f'no welcome from module "{target}": {e!r}') from None
        if kind == "error":
            writer.close()
            raise Fault(f[1], f[2])
        if kind != "welcome" or f[0] != PROTOCOL_MAJOR:
            why = f"expected welcome {PROTOCOL_MAJOR}.x from {target}, got {kind} {f[:2]}"
            writer.write(codec.frame([4, 0, "protocol_error", why]))
            writer.close()
            raise Fault("protocol_error", why)
        conn = Connection(reader, writer, peer=target, control=False, connecting=True,
                          handler=_Caller(self), source=self.name)
        conn.peer_minor = f[1]
        return conn

    # -- serving ------------------------------------------------------------------------------

    async def dispatch(self, conn: Connection, target: str, method: str, args: list) -> Any:
        if target != self.name:
            raise Fault("unknown_module", f'this is "{self.name}"; it serves no calls to "{target}"')
        if method.startswith("$"):
            if not conn.control:
                raise Fault("unauthorized", f"{self.name}.{method} is reserved for the core")
            return self._reserved(method, args)
        why = refusal(conn.access, method)
        if why is not None:
            log.warning("refused %s's call to %s: %s", conn.peer, method[:80], why)
            if self.control is not None:
                self.control.post([2, self._report_id(), "core", "$denied", [conn.peer, method[:200]], 5000])
            raise Fault("unauthorized", why)
        if self.stopping:
            raise Fault("unavailable", f"{self.name} is shutting down")
        m = self.spec.methods.get(method)
        if m is None:
            raise Fault("unknown_method", f'module "{self.name}" has no method "{method}" '
                                          f"(it has {', '.join(self.spec.methods) or 'none'})")
        if len(args) != len(m.params):
            raise Fault("invalid_args", f"{self.name}.{method} takes {len(m.params)} argument(s) "
                                        f"({', '.join(p.name for p in m.params)}), got {len(args)}")
        values = [convert(p.hint, a, f"{self.name}.{method}: args[{i}] `{p.name}`")
                  for i, (p, a) in enumerate(zip(m.params, args))]
        self.running += 1
        self.idle.clear()
        try:
            result = getattr(self.instance, m.attr)(*values)
            if inspect.isawaitable(result):
                result = await result
            return result
        finally:
            self.running -= 1
            if self.running == 0:
                self.idle.set()

    def _report_id(self) -> int:
        # `core.$denied` is a report: its answer is not awaited, so it takes an id of the
        # control connection's own sequence that nothing waits on.
        cid = self.control._next_call
        self.control._next_call += 1
        return cid

    def _reserved(self, method: str, args: list) -> None:
        if method == "$grant":
            ok = len(args) in (2, 3, 4)
            caller, token, pid, access = (list(args) + [None, None])[:4] if ok else (None,) * 4
            if not (ok and type(caller) is str and caller and type(token) is bytes and 0 < len(token) <= 1024
                    and (pid is None or (type(pid) is int and 0 < pid < 1 << 32))
                    and (access is None or valid_access(access))):
                raise Fault("invalid_args", "$grant takes (caller: text, token: bytes, pid: int|null, "
                                            "access: {allow, deny, other}|null)")
            grants = self.grants.setdefault(caller, [])
            grants.append((token, pid, access))
            del grants[:-MAX_GRANTS]
            return None
        if method == "$revoke":
            if len(args) != 1 or type(args[0]) is not str:
                raise Fault("invalid_args", "$revoke takes (module: text)")
            self.grants.pop(args[0], None)
            for c in [c for c in self.served if not c.control and c.peer == args[0]]:
                c.close("unauthorized", f'the tokens of "{args[0]}" were revoked')
            return None
        raise Fault("unknown_method", f'{self.name} has no reserved method "{method}"')

    def deliver(self, source: str, event: str, data: list) -> None:
        for coro in self.ctx._deliver(source, event, data):
            asyncio.ensure_future(_logged(coro, f"the handler of {source}.{event}"))
        if source == "core" and event == "moduleUp" and data and isinstance(data[0], str):
            up = data[0]
            for s, e in list(self.wanted):
                if s == up:
                    self.peers.pop(up, None)
                    asyncio.ensure_future(self._subscribe_at(s, e))

    def stream_handler(self, protocol: str):
        return self.ctx._streams.get(protocol)

    async def accept_peer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection on fd 4: a `hello` with a token granted to its caller, then service."""

        def refuse(code: str, message: str) -> None:
            log.warning("refused a peer connection: %s", message)
            writer.write(codec.frame([4, 0, code, message]))
            writer.close()

        try:
            kind, f = await read_one(reader, codec.HANDSHAKE_CAP, HANDSHAKE_TIMEOUT)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        except asyncio.TimeoutError:
            return refuse("protocol_error", f"no hello within {HANDSHAKE_TIMEOUT:g} s")
        except codec.FrameTooLarge as e:
            return refuse("limit", str(e))
        except (codec.Malformed, codec.EmptyFrame) as e:
            return refuse("protocol_error", f"invalid hello: {e}")
        if kind != "hello":
            return refuse("protocol_error", f"expected hello, got {kind}")
        major, minor, caller, token, _attrs = f
        if major != PROTOCOL_MAJOR:
            return refuse("protocol_error", f"protocol version {major}.{minor} is not supported: this side speaks 1.x")
        if self.stopping:
            return refuse("unavailable", f"{self.name} is shutting down")
        sock = writer.get_extra_info("socket")
        why, access = check_grant(self.grants, self.name, caller, token, peer_pid(sock) if sock else None)
        if why is not None:
            return refuse("unauthorized", why)
        conn = Connection(reader, writer, peer=caller, control=False, connecting=False,
                          handler=_Server(self), source=self.name)
        conn.access = access
        conn.peer_minor = minor
        conn.post([1, PROTOCOL_MAJOR, PROTOCOL_MINOR, self.name, {}])  # welcome, the first frame
        self.served.add(conn)
        await conn.closed.wait()
        self.served.discard(conn)

    async def shutdown(self, grace_ms: int) -> None:
        """Stop taking work, let running calls finish, send what is queued, all within the
        grace (keeping a fifth of it for the exit itself)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + min(grace_ms, 3_600_000) / 1000 * 0.8
        self.stopping = True
        try:
            await asyncio.wait_for(self.idle.wait(), max(end - loop.time(), 0))
        except asyncio.TimeoutError:
            log.warning("%d call(s) still running at the end of the grace", self.running)
        for c in list(self.served):
            await c.flush(end - loop.time())
        log.info("exiting after shutdown (grace %d ms)", grace_ms)
        if not self.done.done():
            self.done.set_result(0)


class _Server:
    """Handler of the connections this module serves (the core's and accepted peers')."""

    def __init__(self, rt: Runtime):
        self.rt = rt

    async def on_call(self, conn, target, method, args):
        return await self.rt.dispatch(conn, target, method, args)

    def on_event(self, conn, source, event, data):
        self.rt.deliver(source, event, data)

    def on_stream(self, conn, stream):
        if self.rt.stopping:
            return None
        handler = self.rt.stream_handler(stream.protocol)
        return None if handler is None else _run_stream(handler, stream)

    def on_shutdown(self, conn, grace_ms):
        asyncio.ensure_future(self.rt.shutdown(grace_ms))


class _Caller(_Server):
    """Handler of the connections this module opened to call others: the target has no token
    of ours, so it may not call back over them; events and streams it sends are taken."""

    async def on_call(self, conn, target, method, args):
        raise Fault("unauthorized", f"{conn.peer} may not call {self.rt.name} over {self.rt.name}'s own connection; "
                                    "ask the core for a token")

    def on_shutdown(self, conn, grace_ms):
        pass


async def _logged(coro, what: str) -> None:
    """Runs an event handler's coroutine; its failure is logged, never lost or fatal."""
    try:
        await coro
    except Exception:
        log.exception("%s failed", what)


async def _run_stream(handler, stream) -> None:
    try:
        await handler(stream)
    except Exception as e:
        log.exception("the handler of stream protocol %r failed", stream.protocol)
        stream.reset("method_failed", f"{stream.protocol}: {e}"[:200])


def peer_pid(sock: socket.socket) -> int | None:
    try:
        cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", cred)[0]
    except OSError:
        return None


def valid_access(a) -> bool:
    """The fourth `$grant` argument: which methods the caller may call (issue 18)."""
    return (type(a) is dict and set(a) <= {"allow", "deny", "other"}
            and type(a.get("allow", [])) is list and all(type(m) is str for m in a.get("allow", []))
            and type(a.get("deny", {})) is dict and all(type(v) is str for v in a.get("deny", {}).values())
            and (a.get("other") is None or type(a.get("other")) is str))


def refusal(access: dict | None, method: str) -> str | None:
    """None if `access` (None: every method) lets the caller call `method`, else why not."""
    if access is None or method in access.get("allow", []):
        return None
    if method in access.get("deny", {}):
        return access["deny"][method]
    other = access.get("other")
    return None if other is None else other.replace("{method}", method[:80])


def check_grant(grants: dict, name: str, caller: str, token: bytes, pid: int | None):
    """(None, access) if `token` was granted to `caller` (for `pid`, when the grant names one),
    else (why not, None). Every grant of the caller is compared, each in constant time."""
    found = [(p, a) for t, p, a in grants.get(caller, []) if hmac.compare_digest(t, token)]
    if not found:
        return f'no live token granted to "{caller}" for module "{name}" matches', None
    p, access = found[0]
    if p is not None and p != pid:
        return f'the token of "{caller}" is bound to pid {p}, not to pid {pid}', None
    return None, access


def _setup_logging(name: str) -> None:
    level = os.environ.get("LOGOS_LOG", "info").split(",")[0].split("=")[-1].upper()
    logging.basicConfig(stream=sys.stderr, format=f"{name}: %(levelname)s %(message)s",
                        level=getattr(logging, level, logging.INFO))


async def serve(cls: type, *, control_fd: int = 3, listen_fd: int = 4) -> int:
    """Runs module class `cls` on the descriptors the core handed over; returns the exit
    status (0 after a `shutdown` or when the core closed the connection)."""
    spec = spec_of(cls)
    name = spec.name or os.environ.get("LOGOS_MODULE") or cls.__name__.lower()
    version = spec.version or metadata_version() or "0.0.0"
    rt = Runtime(cls, name, version)
    listener = socket.socket(fileno=listen_fd)
    # Listening again stamps the socket with our pid: callers check it (SO_PEERCRED) against
    # the pid the core gave them before they send their token.
    listener.listen(socket.SOMAXCONN)
    control = socket.socket(fileno=control_fd)
    reader, writer = await asyncio.open_unix_connection(sock=control)
    interface = spec.interface(name, version)
    writer.write(codec.frame([0, PROTOCOL_MAJOR, PROTOCOL_MINOR, name, b"", {"interface": interface, "version": version}]))
    try:
        kind, f = await read_one(reader, codec.HANDSHAKE_CAP, HANDSHAKE_TIMEOUT)
    except Exception as e:
        log.error("no welcome from the core: %r", e)
        return 1
    if kind == "error":
        log.error("the core refused the handshake: %s: %s", f[1], f[2])
        return 1
    if kind != "welcome" or f[0] != PROTOCOL_MAJOR:
        why = (f"expected welcome, got {kind}" if kind != "welcome"
               else f"protocol version {f[0]}.{f[1]} is not supported: this side speaks 1.x")
        writer.write(codec.frame([4, 0, "protocol_error", why]))
        await writer.drain()
        log.error("%s", why)
        return 1
    rt.control = Connection(reader, writer, peer="core", control=True, connecting=True,
                            handler=_Server(rt), source=name)
    rt.control.peer_minor = f[1]
    rt.served.add(rt.control)
    trace.REPORTER.start(rt, f[3] if isinstance(f[3], dict) else {})
    for source, event in list(rt.wanted):
        rt._apply(source, event)
    server = await asyncio.start_unix_server(rt.accept_peer, sock=listener)
    page = heartbeat_page()
    if page is not None:
        rt.beat = asyncio.ensure_future(count_beats(*page))
    log.info("ready (version %s)", version)
    closed = asyncio.ensure_future(rt.control.closed.wait())
    await asyncio.wait([closed, rt.done], return_when=asyncio.FIRST_COMPLETED)
    server.close()
    if not rt.done.done():
        log.info("control connection closed; exiting")
    await rt.control.flush(1.0)
    return 0


def heartbeat_page() -> tuple[mmap.mmap, float] | None:
    """The heartbeat page the core hands over at `LOGOS_BEAT_FD`, mapped, with the interval
    `LOGOS_HEARTBEAT_MS` in seconds; `None` (the module answers pings only) when either is
    missing or the descriptor is not a sealed memfd of one page (docs/architecture.md,
    "Module process contract" §2 and §9)."""
    fd, ms = os.environ.get("LOGOS_BEAT_FD"), os.environ.get("LOGOS_HEARTBEAT_MS")
    if fd is None or ms is None:
        return None
    try:
        fd_n, every = int(fd), int(ms) / 1000
        if fd_n <= 4 or every <= 0:
            raise ValueError("not a descriptor above 4 and a positive interval")
        if not fcntl.fcntl(fd_n, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK:
            raise ValueError("the page is not sealed against shrinking")
        if os.fstat(fd_n).st_size != BEAT_PAGE:
            raise ValueError(f"the page is not {BEAT_PAGE} bytes")
        page = mmap.mmap(fd_n, BEAT_PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        os.close(fd_n)
        return page, every
    except (OSError, ValueError) as e:
        log.warning("LOGOS_BEAT_FD=%s, LOGOS_HEARTBEAT_MS=%s: %s; answering pings instead", fd, ms, e)
        return None


async def count_beats(page: mmap.mmap, every: float) -> None:
    """Adds one to the count at the page's start every `every` seconds, at the multiples of
    `every` on the monotonic clock (the instants every module of the machine counts at, so
    their wake-ups come together), for as long as the event loop runs it: a loop that blocks
    stops the count, as it would stop the answer to a ping."""
    while True:
        now = time.monotonic()
        await asyncio.sleep((now // every + 1) * every - now)
        count = struct.unpack_from("=Q", page, 0)[0]
        struct.pack_into("=Q", page, 0, (count + 1) % 2**64)


def run(cls: type) -> None:
    """The main of a module process: `if __name__ == "__main__": run(MyModule)`. Never
    returns: exits 0 after a `shutdown`, non-zero when the handshake fails."""
    name = spec_of(cls).name or os.environ.get("LOGOS_MODULE") or cls.__name__.lower()
    _setup_logging(name)
    # SIGTERM comes only after the shutdown grace: leave at once.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    if os.environ.get("LOGOS_PROTECTED") == "1":
        _not_dumpable()
    status = asyncio.run(serve(cls))
    sys.stderr.flush()
    os._exit(status)  # tasks blocked on peers need not be woken one by one


def _not_dumpable() -> None:
    """`prctl(PR_SET_DUMPABLE, 0)`: a protected module's memory stays its own (exec reset it)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_DUMPABLE, 0) failed: errno %d", ctypes.get_errno())
