"""A module process written with the SDK, driven over real sockets by this test playing the
core: fd 3 is one end of a socketpair, fd 4 a listening socket in a temp dir. Covers the
handshake and interface, calls (concurrent, typed, failing, timed out, cancelled), pings,
events, `$grant`/`$revoke` and token checks on peer connections (with the pid the module
stamps on its socket), calls out through `capability_module.requestModule`, streams with
credit, bad frames, and `shutdown` ending in exit 0."""

from __future__ import annotations

import os
import pathlib
import socket
import struct
import subprocess
import sys
import time

import pytest

from logos_module import codec

HERE = pathlib.Path(__file__).resolve().parent
SAMPLE = HERE / "modules" / "sample.py"
DEADLINE = 20.0


class Peer:
    """One end of a protocol connection, blocking, for tests."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sock.settimeout(DEADLINE)
        self.dec = codec.FrameDecoder()
        self.next_id = 1

    def send(self, msg: list) -> None:
        self.sock.sendall(codec.frame(msg))

    def recv(self) -> tuple[str, list]:
        while (m := self.dec.next()) is None:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("closed")
            self.dec.feed(data)
        return m

    def recv_until(self, kinds: tuple[str, ...]) -> tuple[str, list]:
        """The next message of one of `kinds`, answering pings and skipping the rest."""
        while True:
            kind, f = self.recv()
            if kind in kinds:
                return kind, f
            if kind == "ping":
                self.send([16, f[0], None])

    def call(self, target: str, method: str, *args, timeout_ms: int = 0):
        cid = self.next_id
        self.next_id += 1
        self.send([2, cid, target, method, list(args), timeout_ms])
        kind, f = self.recv_until(("reply", "error"))
        assert f[0] == cid, (kind, f)
        return ("ok", f[1]) if kind == "reply" else (f[1], f[2])


class Module:
    """The sample module as a child process; the test holds the core's side."""

    def __init__(self, tmp: pathlib.Path):
        core_end, module_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.path = str(tmp / "sample.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(16)
        # fd 3 and fd 4 exactly, as the core hands them over.
        launch = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
                  "os.execv(sys.executable, [sys.executable, sys.argv[3]])")
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "LOGOS_DATA_DIR": str(tmp)}
        env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", launch, str(module_end.fileno()), str(listener.fileno()), str(SAMPLE)],
            pass_fds=(module_end.fileno(), listener.fileno()), env=env, stderr=subprocess.PIPE)
        module_end.close()
        listener.close()
        self.core = Peer(core_end)

    def handshake(self, minor: int = 1, welcome: dict | None = None) -> dict:
        kind, f = self.core.recv()
        assert kind == "hello", (kind, f)
        major, _minor, identity, token, attrs = f
        assert (major, identity, token) == (1, "sample", b"")
        self.core.send([1, 1, minor, "core", {"module": "sample", **(welcome or {})}])
        return attrs

    def wait(self) -> int:
        try:
            return self.proc.wait(DEADLINE)
        finally:
            self.proc.stderr.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.proc.stderr.closed:
            self.proc.stderr.close()
        self.core.sock.close()


@pytest.fixture
def mod(tmp_path):
    m = Module(tmp_path)
    yield m
    m.stop()


def connect(m: Module) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(m.path)
    return s


def test_handshake_calls_events_and_shutdown(mod):
    attrs = mod.handshake()
    assert attrs["version"] == "2.1.0"
    iface = attrs["interface"]
    assert [m["name"] for m in iface["methods"]] == [
        "greet", "slow", "half", "tags", "refuse", "broken", "ask", "heardEvents"]
    assert iface["events"] == [{"name": "greeted", "params": [{"name": "name", "type": "text"}]}]
    core = mod.core
    assert core.call("sample", "greet", "ada") == ("ok", "hello, ada")
    assert core.call("sample", "half", 3) == ("ok", 1.5)
    assert core.call("sample", "tags", ["a", "b"], {"x": 2}) == ("ok", 4)
    assert core.call("sample", "tags", ["a"], None) == ("ok", 1)
    code, msg = core.call("sample", "tags", ["a", 1], None)
    assert code == "invalid_args" and "args[0] `t`[1]: expected text, found int" in msg
    assert core.call("sample", "greet")[0] == "invalid_args"
    assert core.call("sample", "refuse") == ("invalid_args", "no, thanks")
    code, msg = core.call("sample", "broken")
    assert code == "method_failed" and "a bug" in msg
    code, msg = core.call("sample", "mul", 1)
    assert code == "unknown_method" and "greet" in msg
    assert core.call("other", "greet", "x")[0] == "unknown_module"
    assert core.call("sample", "$stats")[0] == "unknown_method"
    # deadlines: the receiver answers timeout
    assert core.call("sample", "slow", 2000, timeout_ms=100)[0] == "timeout"
    # ping
    core.send([15, 99])
    assert core.recv_until(("pong",)) == ("pong", [99, None])
    # events go to subscribers only
    core.call("sample", "greet", "nobody hears")
    core.send([6, "sample", "greeted"])
    core.send([2, 50, "sample", "greet", ["bob"], 0])
    # the event is emitted by the method, so it comes before the reply
    assert core.recv_until(("event", "reply")) == ("event", ["sample", "greeted", ["bob"]])
    assert core.recv_until(("event", "reply")) == ("reply", [50, "hello, bob"])
    # replies in any order: a slow call overtaken by a quick one; a cancelled one says nothing
    core.send([2, 100, "sample", "slow", [300], 0])
    core.send([2, 101, "sample", "slow", [5000], 0])
    core.send([2, 102, "sample", "greet", ["c"], 0])
    core.send([5, 101])
    got = [core.recv_until(("reply", "error"))[1][0] for _ in range(2)]
    assert got == [102, 100]
    # events from the core reach the @on_event handler
    core.send([8, "core", "moduleDown", ["calc", "unloaded"]])
    deadline = time.monotonic() + DEADLINE
    while core.call("sample", "heardEvents") != ("ok", [["calc", "unloaded"]]):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    core.send([17, 5000])
    assert mod.wait() == 0


def test_peers_need_a_granted_token_from_the_granted_pid(mod):
    mod.handshake()
    core = mod.core
    token = os.urandom(32)
    # the module re-listened on fd 4: the socket now reports its pid
    s = connect(mod)
    pid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
    assert pid == mod.proc.pid
    p = Peer(s)
    p.send([0, 1, 1, "chat", token, {}])
    kind, f = p.recv()
    assert (kind, f[0], f[1]) == ("error", 0, "unauthorized"), (kind, f)
    assert core.call("sample", "$grant", "chat", token, os.getpid(),
                     {"allow": ["greet"], "deny": {"half": "half is the operator's"}, "other": None}) == ("ok", None)
    assert core.call("sample", "$grant", "chat", "not bytes")[0] == "invalid_args"
    for identity, tok in (("wallet", token), ("chat", os.urandom(32))):
        p = Peer(connect(mod))
        p.send([0, 1, 1, identity, tok, {}])
        assert p.recv()[1][1] == "unauthorized"
    p = Peer(connect(mod))
    p.send([0, 1, 1, "chat", token, {}])
    assert p.recv() == ("welcome", [1, 2, "sample", {}])
    assert p.call("sample", "greet", "peer") == ("ok", "hello, peer")
    assert p.call("sample", "half", 2) == ("unauthorized", "half is the operator's")
    # the refusal is reported to the core
    kind, f = core.recv_until(("call",))
    assert f[1:4] == ["core", "$denied", ["chat", "half"]]
    assert p.call("sample", "$grant", "x", token)[0] == "unauthorized"
    # a peer may subscribe too
    p.send([6, "sample", ""])
    assert p.call("sample", "greet", "sync") == ("ok", "hello, sync")  # the subscribe is in
    assert core.call("sample", "greet", "all") == ("ok", "hello, all")
    assert p.recv_until(("event",)) == ("event", ["sample", "greeted", ["all"]])
    # a pid-bound token from another pid is refused
    core.call("sample", "$grant", "kv", token, 1)
    q = Peer(connect(mod))
    q.send([0, 1, 1, "kv", token, {}])
    assert "bound to pid 1" in q.recv()[1][2]
    # $revoke closes the caller's connections
    assert core.call("sample", "$revoke", "chat") == ("ok", None)
    assert p.recv_until(("error",)) == ("error", [0, "unauthorized", 'the tokens of "chat" were revoked'])
    # garbage on a peer connection is answered protocol_error and closes only that one
    g = Peer(connect(mod))
    g.sock.sendall(b"\x00\x00\x00\x02\x9f\xff")
    kind, f = g.recv()
    assert (kind, f[1]) == ("error", "protocol_error")
    assert core.call("sample", "greet", "still") == ("ok", "hello, still")


def calc_listener(tmp_path) -> tuple[str, socket.socket]:
    """A listening Unix socket for a "calc" served by this test process: its path and the
    socket (accepts time out after DEADLINE)."""
    path = str(tmp_path / "calc.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    server.settimeout(DEADLINE)
    return path, server


def test_calls_out_use_a_token_and_check_the_pid(mod, tmp_path):
    mod.handshake()
    core = mod.core
    # A "calc" served by this test process.
    path, server = calc_listener(tmp_path)
    token = os.urandom(32)
    core.send([2, 1, "sample", "ask", ["calc", "add", [2, 3]], 0])
    kind, f = core.recv_until(("call",))
    cid, target, method, args, _ = f
    assert (target, method, args) == ("capability_module", "requestModule", ["calc"])
    core.send([3, cid, {"module": "calc", "token": token, "endpoint": path, "pid": os.getpid()}])
    calc = Peer(server.accept()[0])
    kind, f = calc.recv()
    assert (kind, f[2], f[3]) == ("hello", "sample", token)
    calc.send([1, 1, 1, "calc", {}])
    kind, f = calc.recv_until(("call",))
    assert f[1:4] == ["calc", "add", [2, 3]]
    calc.send([3, f[0], 5])
    assert core.recv_until(("reply", "error")) == ("reply", [1, 5])
    # the session is kept: the next call needs no new token
    core.send([2, 2, "sample", "ask", ["calc", "add", [1, 1]], 0])
    kind, f = calc.recv_until(("call",))
    calc.send([4, f[0], "method_failed", "overflow"])
    assert core.recv_until(("reply", "error")) == ("error", [2, "method_failed", "overflow"])
    # a wrong pid: the token is never sent
    calc.sock.close()
    core.send([2, 3, "sample", "ask", ["kv", "get", ["k"]], 0])
    kind, f = core.recv_until(("call",))
    core.send([3, f[0], {"module": "kv", "token": token, "endpoint": path, "pid": 1}])
    impostor = server.accept()[0]
    impostor.settimeout(DEADLINE)
    kind, f = core.recv_until(("reply", "error"))
    assert (kind, f[1]) == ("error", "unauthorized") and "not by its process 1" in f[2]
    assert impostor.recv(100) == b""  # closed without a byte
    server.close()


def test_streams_respect_credit(mod):
    mod.handshake()
    core = mod.core
    data = os.urandom(700 * 1024)
    core.send([10, 2, "echo"])  # the accepting side (the core here) opens even ids
    # Send one window only: more would be a protocol error until credit comes back.
    window = 256 * 1024
    sent, back, credit = 0, bytearray(), window
    while len(back) < len(data):
        while sent < len(data) and credit > 0:
            k = min(64 * 1024, credit, len(data) - sent)
            core.send([11, 2, data[sent:sent + k]])
            sent, credit = sent + k, credit - k
            if sent == len(data):
                core.send([13, 2])
        kind, f = core.recv_until(("stream_data", "stream_credit", "stream_reset"))
        assert kind != "stream_reset", f
        if kind == "stream_credit":
            credit += f[1]
        else:
            back += f[1]
            core.send([12, 2, len(f[1])])  # give back what we read
    assert bytes(back) == data
    assert core.recv_until(("stream_fin",)) == ("stream_fin", [2])
    # an unknown protocol is reset; a wrong parity is a protocol error
    core.send([10, 4, "nope"])
    assert core.recv_until(("stream_reset",))[1][:2] == [4, "unknown_method"]
    core.send([10, 5, "echo"])
    assert core.recv_until(("error",))[1][:2] == [0, "protocol_error"]
    assert mod.wait() == 0  # the core's connection is gone: the module exits


def test_a_callee_that_says_shutdown_gets_its_answers_in_and_a_new_connection_next(mod, tmp_path):
    """A module being stopped or hot-swapped sends `shutdown` to the peers that called it
    (protocol §9): calls in flight keep their answers, the old connection closes once they
    are in, and the next call takes a new connection with a new token."""
    mod.handshake()
    core = mod.core
    path, server = calc_listener(tmp_path)

    def grant_and_accept(call_id: int, args: list) -> tuple[Peer, int]:
        core.send([2, call_id, "sample", "ask", ["calc", "add", args], 0])
        kind, f = core.recv_until(("call",))
        assert f[1:4] == ["capability_module", "requestModule", ["calc"]]
        core.send([3, f[0], {"module": "calc", "token": os.urandom(32), "endpoint": path, "pid": os.getpid()}])
        calc = Peer(server.accept()[0])
        assert calc.recv()[0] == "hello"
        calc.send([1, 1, 1, "calc", {}])
        kind, f = calc.recv_until(("call",))
        assert f[1:4] == ["calc", "add", args]
        return calc, f[0]

    old, cid = grant_and_accept(1, [2, 3])
    old.send([17, 250])  # going away, with this call still to answer
    old.send([3, cid, 5])
    assert core.recv_until(("reply", "error")) == ("reply", [1, 5])
    old.sock.settimeout(DEADLINE)
    assert old.sock.recv(100) == b"", "the retired connection closes once its calls are answered"
    new, cid = grant_and_accept(2, [1, 1])
    new.send([3, cid, 2])
    assert core.recv_until(("reply", "error")) == ("reply", [2, 2])
    server.close()


@pytest.mark.parametrize("rows", [False, True])
def test_trace_context_propagates_and_spans_are_reported(mod, tmp_path, rows):
    """A traced call to `ask` makes a child call to calc carrying the same trace; calc at 1.1
    gets none (old peer); both spans reach the core in a `$spans` report: as rows (values in
    the order of docs/tracing.md's table) to a core that says `span_rows`, else as maps."""
    welcome = {"spans": True, "span_rows": True} if rows else {"spans": True}
    mod.handshake(minor=2, welcome=welcome)
    core = mod.core
    path, server = calc_listener(tmp_path)
    token = os.urandom(32)
    tid, sid = bytes(range(1, 17)), bytes(range(1, 9))
    core.send([2, 1, "sample", "ask", ["calc", "add", [2, 3]], 0, [tid, sid, 1]])
    kind, f = core.recv_until(("call",))
    assert len(f) == 5, "calls to the built-ins carry no trace"
    core.send([3, f[0], {"module": "calc", "token": token, "endpoint": path, "pid": os.getpid()}])
    calc = Peer(server.accept()[0])
    kind, f = calc.recv()
    assert kind == "hello" and f[1] == 2, "the SDK announces 1.2"
    calc.send([1, 1, 2, "calc", {}])
    kind, f = calc.recv_until(("call",))
    assert len(f) == 6, f
    trace = f[5]
    assert trace[0] == tid and trace[1] != sid and trace[2] == 1
    calc.send([4, f[0], "method_failed", "no"])
    assert core.recv_until(("reply", "error"))[0] == "error"
    kind, f = core.recv_until(("call",))
    assert f[1:3] == ["core", "$spans"], f
    spans, dropped = f[3]
    assert dropped == 0
    order = ["trace", "span", "parent", "kind", "target", "method", "start_ns", "duration_ns",
             "error"]
    if rows:
        assert all(isinstance(s, list) and len(s) == 9 for s in spans), spans
        spans = [dict(zip(order, s)) for s in spans]
    else:
        assert all(isinstance(s, dict) and sorted(s) == sorted(order) for s in spans), spans
    by_kind = {s["kind"]: s for s in spans}
    server_span, client_span = by_kind["server"], by_kind["client"]
    assert server_span["trace"] == tid and server_span["parent"] == sid
    assert (server_span["target"], server_span["method"]) == ("sample", "ask")
    assert client_span["parent"] == server_span["span"] and client_span["span"] == trace[1]
    assert client_span["error"] == "method_failed: no"
    assert client_span["duration_ns"] > 0
    calc.sock.close()
    server.close()


def test_no_trace_to_an_old_peer(mod, tmp_path):
    mod.handshake(minor=2)
    core = mod.core
    path, server = calc_listener(tmp_path)
    token = os.urandom(32)
    core.send([2, 1, "sample", "ask", ["calc", "add", [2, 3]], 0, [bytes(range(1, 17)), bytes(range(1, 9)), 1]])
    kind, f = core.recv_until(("call",))
    core.send([3, f[0], {"module": "calc", "token": token, "endpoint": path, "pid": os.getpid()}])
    calc = Peer(server.accept()[0])
    calc.recv()
    calc.send([1, 1, 1, "calc", {}])  # a 1.1 peer
    kind, f = calc.recv_until(("call",))
    assert len(f) == 5, "no trace item for a 1.1 peer"
    calc.send([3, f[0], 5])
    assert core.recv_until(("reply", "error")) == ("reply", [1, 5])
    calc.sock.close()
    server.close()
