#!/usr/bin/env python3
"""pyecho: a logos module in Python 3, standard library only.

This is the reference for writing a module in a language other than Rust. It uses no code from
this repository: everything here follows from docs/architecture.md ("Module process contract")
and docs/protocol.md, so porting it means reading it top to bottom:

  1. codec: frames and strict CBOR (protocol.md §2-§4; the sketch of §14.1, same names);
  2. Conn: one established connection with a writer thread and a bounded event queue (§7);
  3. the module: interface, methods, argument checks, the core's `$grant`/`$revoke`;
  4. serving: calls, pings, subscriptions (§6, §7, §9), peers with tokens on fd 4 (§5),
     the handshake on fd 3, shutdown and exit.

metadata.json names this file as `main`, so the core runs it directly with the control
connection on fd 3 and the listening socket on fd 4. Methods: echo(v) -> v (and emits `echoed`
[v]), upper(text) -> text, add(a, b) -> int, fail(msg) -> always method_failed. No streams.

Threads: the main thread reads fd 3, one thread accepts peers, one reads each peer, and each
connection has a writer thread. The methods are quick, so a reader runs the calls it reads
itself; with slow methods, run them on a pool and keep reading (pings must still be answered).
"""
import collections
import hmac
import os
import signal
import socket
import struct
import sys
import threading
import time

# -- 1. codec (protocol.md §2-§4) ----------------------------------------------------------
MAX_FRAME = 16 * 1024 * 1024
MAX_DEPTH = 65  # the message array + 64 levels inside a value field (§3.3)

class Malformed(Exception):
    """The peer broke the protocol: answer `error` id 0 `protocol_error` and close (§2)."""

def head(major, n, out):
    """A CBOR head for `n` in its shortest form (§3.1)."""
    if n < 24:
        out.append(major << 5 | n)
        return
    width = 1 if n < 1 << 8 else 2 if n < 1 << 16 else 4 if n < 1 << 32 else 8
    out.append(major << 5 | {1: 24, 2: 25, 4: 26, 8: 27}[width])
    out += n.to_bytes(width, "big")

def encode(v, out):
    """Appends value `v` deterministically (§3.1): shortest heads, 64-bit floats, sorted keys."""
    if v is None: out.append(0xF6)
    elif v is True or v is False: out.append(0xF5 if v else 0xF4)
    elif isinstance(v, int):
        if not -(1 << 63) <= v < 1 << 64: raise ValueError(f"int out of range: {v}")
        if v >= 0: head(0, v, out)
        else: head(1, -1 - v, out)  # -1 - n is encoded as n
    elif isinstance(v, float): out.append(0xFB); out += struct.pack(">d", v)
    elif isinstance(v, str): raw = v.encode("utf-8"); head(3, len(raw), out); out += raw
    elif isinstance(v, (bytes, bytearray)): head(2, len(v), out); out += v
    elif isinstance(v, (list, tuple)):
        head(4, len(v), out)
        for x in v: encode(x, out)
    elif isinstance(v, dict):
        head(5, len(v), out)
        for k in sorted(v, key=lambda k: k.encode("utf-8")):  # keys are str
            encode(k, out); encode(v[k], out)
    else: raise TypeError(f"not a value: {type(v).__name__}")

def frame(msg):
    """The frame of message array `msg`, e.g. [15, 7] for ping 7 (§2)."""
    body = bytearray(); encode(msg, body)
    return len(body).to_bytes(4, "big") + body

def item(b, i, depth):
    """Decodes the item at b[i] strictly (§3.2-§3.4); returns (value, next index)."""
    if i >= len(b): raise Malformed("truncated")
    ib = b[i]; major, info = ib >> 5, ib & 31; i += 1
    if major == 7:
        if ib in (0xF4, 0xF5, 0xF6): return {0xF4: False, 0xF5: True, 0xF6: None}[ib], i
        width = {0xF9: 2, 0xFA: 4, 0xFB: 8}.get(ib)
        if width is None: raise Malformed("undefined, simple value or break")
        if i + width > len(b): raise Malformed("truncated")
        fmt = {2: ">e", 4: ">f", 8: ">d"}[width]  # 16- and 32-bit floats are widened
        return float(struct.unpack(fmt, b[i:i + width])[0]), i + width
    if major == 6: raise Malformed("tag")
    if info < 24: n = info
    elif info < 28:
        w = 1 << (info - 24)
        if i + w > len(b): raise Malformed("truncated")
        n = int.from_bytes(b[i:i + w], "big"); i += w
    else: raise Malformed("indefinite length or reserved additional information")
    if major == 0: return n, i
    if major == 1:
        if n >= 1 << 63: raise Malformed("integer below -2^63")
        return -1 - n, i
    if major in (2, 3):
        if n > len(b) - i: raise Malformed("truncated")
        raw = bytes(b[i:i + n]); i += n
        if major == 2: return raw, i
        try: return raw.decode("utf-8"), i
        except UnicodeDecodeError: raise Malformed("invalid UTF-8") from None
    if depth >= MAX_DEPTH: raise Malformed("nested too deep")
    if major == 4:
        if n > len(b) - i: raise Malformed("list longer than the body")  # before reserving
        out = []
        for _ in range(n):
            v, i = item(b, i, depth + 1); out.append(v)
        return out, i
    if 2 * n > len(b) - i: raise Malformed("map longer than the body")
    out = {}
    for _ in range(n):
        if i >= len(b) or b[i] >> 5 != 3: raise Malformed("map key is not text")
        k, i = item(b, i, depth + 1)
        if k in out: raise Malformed(f"duplicate key {k!r}")
        out[k], i = item(b, i, depth + 1)
    return out, i

U16, UINT, TEXT, BYTES, LIST, MAP, ANY, CODE, OPT_TEXT = range(9)
LAYOUTS = [  # index = message kind (§4)
    ("hello", [U16, U16, TEXT, BYTES, MAP]), ("welcome", [U16, U16, TEXT, MAP]),
    ("call", [UINT, TEXT, TEXT, LIST, UINT]), ("reply", [UINT, ANY]),
    ("error", [UINT, CODE, TEXT]), ("cancel", [UINT]),
    ("subscribe", [TEXT, TEXT]), ("unsubscribe", [TEXT, TEXT]),
    ("event", [TEXT, TEXT, LIST]), ("lagged", [TEXT, UINT]),
    ("stream_open", [UINT, TEXT]), ("stream_data", [UINT, BYTES]),
    ("stream_credit", [UINT, UINT]), ("stream_fin", [UINT]),
    ("stream_reset", [UINT, CODE, TEXT]), ("ping", [UINT]),
    ("pong", [UINT, OPT_TEXT]), ("shutdown", [UINT]),
]
CODES = {"unknown_module", "not_loaded", "unknown_method", "invalid_args", "unauthorized",
         "timeout", "unavailable", "method_failed", "cancelled", "protocol_error", "limit"}
CHECK = {
    U16: lambda v: type(v) is int and 0 <= v <= 0xFFFF, UINT: lambda v: type(v) is int and v >= 0,
    TEXT: lambda v: type(v) is str, BYTES: lambda v: type(v) is bytes,
    LIST: lambda v: type(v) is list, MAP: lambda v: type(v) is dict, ANY: lambda v: True,
    CODE: lambda v: type(v) is str and v in CODES, OPT_TEXT: lambda v: v is None or type(v) is str,
}

def decode_message(body):
    """Returns (kind name, [fields]) or raises Malformed."""
    if not body or body[0] >> 5 != 4: raise Malformed("a message is an array")
    msg, end = item(body, 0, 0)
    if end != len(body): raise Malformed("trailing bytes")
    if not msg or type(msg[0]) is not int or msg[0] >= len(LAYOUTS):
        raise Malformed("unknown message kind")
    name, layout = LAYOUTS[msg[0]]
    if len(msg) != 1 + len(layout): raise Malformed(f"{name}: wrong number of items")
    if not all(CHECK[t](v) for t, v in zip(layout, msg[1:])):
        raise Malformed(f"{name}: a field has the wrong type")
    if name == "stream_data" and len(msg[2]) > 65536: raise Malformed("chunk over 64 KiB")
    return name, msg[1:]

def read_message(sock):
    """One message. EOFError when the peer closed; OverflowError over the frame cap (§2)."""
    n = int.from_bytes(recv_exactly(sock, 4), "big")
    if n == 0: raise Malformed("empty frame")
    if n > MAX_FRAME:  # checked before reading or reserving anything for the body
        raise OverflowError(f"a frame of {n} bytes is over the {MAX_FRAME}-byte cap")
    return decode_message(recv_exactly(sock, n))

def recv_exactly(sock, n):
    buf = bytearray(n); view = memoryview(buf); got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0: raise EOFError
        got += k
    return bytes(buf)

# -- 2. one connection ---------------------------------------------------------------------
EVENT_QUEUE = 1024  # events queued per connection before newer ones are dropped (§7)
SEND_QUEUE = 256  # other frames queued before the reader waits (the peer is not reading)

class Conn:
    """An established connection. Any thread queues frames; the writer thread sends them."""
    def __init__(self, sock, peer, control):
        self.sock, self.peer, self.control = sock, peer, control
        self.access = None  # what a peer may call, from its grant; None: every method
        self.subs = set()  # (source, event) pairs the peer subscribed to; event "" = all
        self.cv = threading.Condition()
        self.out = collections.deque()  # (is_event, frame), oldest first
        self.events = 0  # how many queued frames are events (or lagged)
        self.dropped = 0  # events dropped since the last one that fitted
        self.closed = False
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.writer.start()

    def send(self, data):
        """Queues a frame; waits while too many are queued."""
        with self.cv:
            self.cv.wait_for(lambda: self.closed or len(self.out) - self.events < SEND_QUEUE)
            if not self.closed: self.out.append((False, data)); self.cv.notify_all()

    def emit(self, event, data):
        """Queues `event` if the peer subscribed to it. Never waits: when the queue is full the
        event is dropped and counted, and the count is sent as `lagged` before the next (§7)."""
        with self.cv:
            if self.closed or not {(NAME, event), (NAME, "")} & self.subs: return
            if self.events >= EVENT_QUEUE: self.dropped += 1; return
            if self.dropped:
                self.out.append((True, frame([9, NAME, self.dropped])))
                self.events, self.dropped = self.events + 1, 0
            self.out.append((True, frame([8, NAME, event, data])))
            self.events += 1; self.cv.notify_all()

    def close(self, code=None, message=""):
        """Closes once the queue is sent, after a final `error` id 0 if `code` is given (§6.5)."""
        with self.cv:
            if self.closed: return
            if code: self.out.append((False, frame([4, 0, code, message])))
            self.closed = True; self.cv.notify_all()

    def flush(self, timeout):
        """Waits (at most `timeout` s) until everything queued has been sent."""
        with self.cv: return self.cv.wait_for(lambda: not self.out, max(timeout, 0))

    def finish(self):
        """By the reader, when the connection is over: send the queue (for up to 1 s), close."""
        self.close(); self.writer.join(1.0)
        shut(self.sock)  # unblocks a writer stuck on a peer that does not read
        self.writer.join(); self.sock.close()

    def _write(self):
        while True:
            with self.cv:
                self.cv.wait_for(lambda: self.out or self.closed)
                if not self.out: break
                is_event, data = self.out[0]
            try: self.sock.sendall(data)
            except OSError:
                with self.cv:
                    self.out.clear(); self.events = 0; self.closed = True; self.cv.notify_all()
                break
            with self.cv: self.out.popleft(); self.events -= is_event; self.cv.notify_all()
        shut(self.sock)  # the reader sees end-of-file and finishes the connection

def shut(sock):
    try: sock.shutdown(socket.SHUT_RDWR)
    except OSError: pass

# -- 3. the module -------------------------------------------------------------------------
NAME = os.environ.get("LOGOS_MODULE", "pyecho")  # informational: fd 3 is the identity
VERSION = "1.0.0"  # as in metadata.json

class Fault(Exception):
    """A failed call, answered with `error` (a code of protocol.md §10 and a message)."""
    def __init__(self, code, message):
        super().__init__(message); self.code, self.message = code, message

def echo(v):
    emit("echoed", [v])
    return v

def upper(text):
    return text.upper()

def add(a, b):
    if not -(1 << 63) <= a + b < 1 << 63:
        raise Fault("method_failed", f"overflow: {a} + {b} does not fit in a 64-bit signed integer")
    return a + b

def fail(msg):
    raise Fault("method_failed", msg)

# name -> ([(parameter, type)], result type, function); types are logos type names
METHODS = {
    "echo": ([("v", "any")], "any", echo),
    "upper": ([("text", "text")], "text", upper),
    "add": ([("a", "int"), ("b", "int")], "int", add),
    "fail": ([("msg", "text")], "null", fail),
}
EVENTS = {"echoed": [("v", "any")]}
CHECKS = {"any": lambda v: True, "int": lambda v: type(v) is int, "text": lambda v: type(v) is str}

def params(ps):
    return [{"name": n, "type": t} for n, t in ps]

INTERFACE = {  # sent in hello; what core.getPluginMethods returns (architecture.md, point 5)
    "name": NAME, "version": VERSION,
    "methods": [{"name": m, "params": params(p), "returns": r} for m, (p, r, _) in METHODS.items()],
    "events": [{"name": e, "params": params(p)} for e, p in EVENTS.items()],
}

def type_name(v):
    if v is None or isinstance(v, bool): return "null" if v is None else "bool"
    names = {int: "int", float: "float", str: "text", bytes: "bytes", list: "list", dict: "map"}
    return names[type(v)]

def run_method(method, args):
    """Checks the arguments against METHODS (a mismatch is never coerced) and runs the method."""
    if method not in METHODS:
        raise Fault("unknown_method",
                    f'module "{NAME}" has no method "{method}" (it has {", ".join(METHODS)})')
    ps, _, function = METHODS[method]
    if len(args) != len(ps):
        raise Fault("invalid_args", f"{NAME}.{method} takes {len(ps)} argument(s) "
                                    f"({', '.join(n for n, _ in ps)}), got {len(args)}")
    for i, ((name, ty), v) in enumerate(zip(ps, args)):
        if not CHECKS[ty](v):
            raise Fault("invalid_args", f"{NAME}.{method}: argument {i + 1} `{name}` ({ty}): "
                                        f"expected {ty}, found {type_name(v)}")
    return function(*args)

GRANTS = {}  # caller -> [(token, pid or None, access or None)], from $grant
CONNS = set()  # established connections: the control connection and the peers
LOCK = threading.Lock()  # guards GRANTS and CONNS
STOPPING = threading.Event()  # set on `shutdown`: no new work
BUSY = threading.Condition()
RUNNING = [0]  # calls running now, under BUSY: shutdown waits for them (§9)

def emit(event, data):
    with LOCK: conns = list(CONNS)
    for c in conns: c.emit(event, data)

def reserved(method, args):
    """`$grant(caller, token, pid)` and `$revoke(module)`: from the core, on fd 3 only."""
    if method == "$grant":
        caller, token, pid, access = (args + [None, None])[:4] if len(args) in (2, 3, 4) else (None,) * 4
        if not (type(caller) is str and caller and type(token) is bytes and 0 < len(token) <= 1024
                and (pid is None or (type(pid) is int and 0 < pid < 1 << 32))
                and (access is None or valid_access(access))):
            raise Fault("invalid_args", "$grant takes (caller: text, token: bytes, pid: int|null, "
                                        "access: {allow, deny, other}|null)")
        with LOCK:
            grants = GRANTS.setdefault(caller, [])
            grants.append((token, pid, access)); del grants[:-64]  # bounded: the oldest go first
        return None
    if method == "$revoke":
        if len(args) != 1 or type(args[0]) is not str:
            raise Fault("invalid_args", "$revoke takes (module: text)")
        with LOCK:
            GRANTS.pop(args[0], None)
            doomed = [c for c in CONNS if not c.control and c.peer == args[0]]
        if doomed: log(f"revoked the tokens of {args[0]}: closing {len(doomed)} connection(s)")
        for c in doomed: c.close("unauthorized", f'the tokens of "{args[0]}" were revoked')
        return None
    raise Fault("unknown_method", f'unknown reserved method "{method}"')

def valid_access(a):
    """The fourth `$grant` argument: which methods the caller may call (issue 18)."""
    return (type(a) is dict and set(a) <= {"allow", "deny", "other"}
            and type(a.get("allow", [])) is list and all(type(m) is str for m in a.get("allow", []))
            and type(a.get("deny", {})) is dict and all(type(v) is str for v in a.get("deny", {}).values())
            and (a.get("other") is None or type(a.get("other")) is str))

def refusal(access, method):
    """None if `access` (None: every method) lets the caller call `method`, else why not."""
    if access is None or method in access.get("allow", []): return None
    if method in access.get("deny", {}): return access["deny"][method]
    other = access.get("other")
    return None if other is None else other.replace("{method}", method[:80])

def check_grant(caller, token, pid):
    """(None, access) if `token` was granted to `caller` (for `pid`, if the grant names one),
    else (why not, None). Every grant of the caller is compared, each in constant time. Hold
    LOCK."""
    found = [(p, a) for t, p, a in GRANTS.get(caller, []) if hmac.compare_digest(t, token)]
    if not found: return f'no live token granted to "{caller}" for module "{NAME}" matches', None
    if found[0][0] is not None and found[0][0] != pid:
        return f'the token of "{caller}" is bound to pid {found[0][0]}, not to pid {pid}', None
    return None, found[0][1]

# -- 4. serving ----------------------------------------------------------------------------
HANDSHAKE_TIMEOUT = 5.0

def call(conn, call_id, target, method, args):
    if call_id == 0: raise Malformed("a call with id 0")
    try:
        if target != NAME:
            raise Fault("unknown_module", f'this is "{NAME}"; it serves no calls to "{target}"')
        if method.startswith("$"):
            if not conn.control:
                raise Fault("unauthorized", f"{NAME}.{method} is reserved for the core")
            result = reserved(method, args)
        elif refusal(conn.access, method) is not None:
            why = refusal(conn.access, method)
            log(f"refused {conn.peer}'s call to {method[:80]}: {why}")
            raise Fault("unauthorized", why)
        elif STOPPING.is_set():
            raise Fault("unavailable", f"{NAME} is shutting down")
        else:
            with BUSY: RUNNING[0] += 1
            try: result = run_method(method, args)
            finally:
                with BUSY: RUNNING[0] -= 1; BUSY.notify_all()
        reply = frame([3, call_id, result])
        if len(reply) - 4 > MAX_FRAME:
            raise Fault("limit", f"the result of {NAME}.{method} is over {MAX_FRAME} bytes")
    except Fault as f:
        reply = frame([4, call_id, f.code, f.message])
    except Exception as e:  # a bug in a method fails that call; the module keeps serving
        log(f"{method} failed: {e!r}")
        reply = frame([4, call_id, "method_failed", f"{NAME}.{method} failed: {e}"])
    conn.send(reply)

def serve(conn):
    """Answers one connection until it ends. Returns grace_ms after a `shutdown`, else None."""
    peer_parity = 0 if conn.control else 1  # streams opened by the core are even, by peers odd
    while True:
        try:
            kind, f = read_message(conn.sock)
            if kind == "call": call(conn, *f[:4])
            elif kind == "ping": conn.send(frame([16, f[0], None]))  # null: healthy
            elif kind in ("subscribe", "unsubscribe"):
                with conn.cv:
                    if kind == "subscribe": conn.subs.add(tuple(f))
                    else: conn.subs.discard(tuple(f))
            elif kind == "shutdown" and conn.control: return f[0]
            elif kind in ("hello", "welcome", "shutdown"):
                raise Malformed(f"{kind} on an established connection")
            elif kind == "stream_open":
                if f[0] == 0 or f[0] % 2 != peer_parity:
                    raise Malformed(f"stream id {f[0]} has the wrong parity")
                conn.send(frame([14, f[0], "unknown_method", f'{NAME} serves no stream "{f[1]}"']))
            elif kind == "error" and f[0] == 0:  # the peer closes the connection (§6.5)
                log(f"{conn.peer} closed the connection: {f[1]}: {f[2]}")
                conn.close(); return None
            # Ignored: reply/error (we make no calls), cancel (calls are answered at once),
            # event/lagged/pong (we subscribe to and ping nothing), frames of unopened streams.
        except Malformed as e: conn.close("protocol_error", str(e)); return None
        except OverflowError as e: conn.close("limit", str(e)); return None
        except (EOFError, OSError): conn.close(); return None

def refuse(sock, code, message):
    """Refuses a peer in the handshake: `error` id 0, then close (§5.1)."""
    log(f"refused a peer connection: {message}")
    try: sock.sendall(frame([4, 0, code, message]))
    except OSError: pass
    shut(sock); sock.close()

def accept_peers(listener):
    while not STOPPING.is_set():
        try: sock, _ = listener.accept()
        except OSError:
            time.sleep(0.1)  # out of descriptors, or stopping: back off instead of spinning
            continue
        threading.Thread(target=peer, args=(sock,), daemon=True).start()

def peer(sock):
    """One connection on fd 4: a `hello` with a token granted to its caller, then service."""
    try:
        sock.settimeout(HANDSHAKE_TIMEOUT)
        kind, f = read_message(sock)
        sock.settimeout(None)
    except (EOFError, ConnectionError): return sock.close()
    except OverflowError as e: return refuse(sock, "limit", str(e))
    except Malformed as e: return refuse(sock, "protocol_error", f"invalid hello: {e}")
    except OSError: return refuse(sock, "protocol_error", "no hello within 5 s")  # the timeout
    if kind != "hello": return refuse(sock, "protocol_error", f"expected hello, got {kind}")
    major, minor, caller, token, _attrs = f
    if major != 1:
        return refuse(sock, "protocol_error",
                      f"protocol version {major}.{minor} is not supported: this side speaks 1.x")
    if STOPPING.is_set(): return refuse(sock, "unavailable", f"{NAME} is shutting down")
    cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid = struct.unpack("3i", cred)[0]  # (pid, uid, gid) of the connecting process
    with LOCK:  # check and register at once, so that no $revoke slips in between
        why, access = check_grant(caller, token, pid)
        if why is None:
            conn = Conn(sock, caller, control=False)
            conn.access = access
            conn.send(frame([1, 1, 0, NAME, {}]))  # welcome
            CONNS.add(conn)
    if why is not None: return refuse(sock, "unauthorized", why)
    try: serve(conn)
    finally:
        with LOCK: CONNS.discard(conn)
        conn.finish()

def handshake(sock):
    """`hello` on fd 3: our name, an empty token, the interface; then wait for `welcome`."""
    sock.sendall(frame([0, 1, 0, NAME, b"", {"interface": INTERFACE, "version": VERSION}]))
    sock.settimeout(HANDSHAKE_TIMEOUT)
    try: kind, f = read_message(sock)
    except (Malformed, OverflowError, EOFError, OSError) as e:
        sys.exit(f"{NAME}: no welcome from the core: {e!r}")
    sock.settimeout(None)
    if kind == "error": sys.exit(f"{NAME}: the core refused the handshake: {f[1]}: {f[2]}")
    if kind != "welcome" or f[0] != 1:
        why = (f"expected welcome, got {kind}" if kind != "welcome" else
               f"protocol version {f[0]}.{f[1]} is not supported: this side speaks 1.x")
        sock.sendall(frame([4, 0, "protocol_error", why]))
        sys.exit(f"{NAME}: {why}")
    return Conn(sock, "core", control=True)

def log(message):
    print(f"{NAME}: {message}", file=sys.stderr, flush=True)  # the core keeps stderr's tail

def main():
    # SIGTERM comes only after the shutdown grace: leave at once.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    control = socket.socket(fileno=3)  # LOGOS_CONTROL_FD: to the core; only we hold it
    listener = socket.socket(fileno=4)  # LOGOS_LISTEN_FD: bound and listening already
    # Listening again stamps the socket with our pid: callers check it (SO_PEERCRED) against
    # the pid the core gave them before they send their token.
    listener.listen(socket.SOMAXCONN)
    core = handshake(control)
    with LOCK: CONNS.add(core)
    log(f"ready (version {VERSION})")
    threading.Thread(target=accept_peers, args=(listener,), daemon=True).start()
    grace_ms = serve(core)
    if grace_ms is None:  # the core is gone, or one side closed: nothing left to serve
        log("control connection closed; exiting")
        core.flush(1.0)  # e.g. our final protocol_error
        os._exit(0)
    # shutdown: stop accepting, let running calls finish, send what is queued and exit 0,
    # all within the grace (keeping a fifth of it for the exit itself).
    deadline = time.monotonic() + min(grace_ms, 3_600_000) / 1000 * 0.8
    STOPPING.set()
    shut(listener)  # wakes accept()
    with BUSY: BUSY.wait_for(lambda: RUNNING[0] == 0, max(deadline - time.monotonic(), 0))
    with LOCK: conns = list(CONNS)
    for c in conns: c.flush(deadline - time.monotonic())
    log(f"exiting after shutdown (grace {grace_ms} ms)")
    os._exit(0)  # threads blocked in I/O need not be woken one by one

if __name__ == "__main__":
    main()
