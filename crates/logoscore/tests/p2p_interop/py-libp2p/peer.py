"""A py-libp2p 0.8 peer for logos-core's p2p interop tests (crates/logoscore/tests/p2p_interop.rs).

Listens on 127.0.0.1 only (TCP + Noise + Yamux, an Ed25519 identity) and handles PROTOCOL
(argv[1]): every length-prefixed message (unsigned varint length) read is written back until
the remote finishes; then it finishes too. Prints one JSON line {peer, addrs} when ready,
then answers one JSON line per command read from stdin, the same commands as the js peer:
  {"op": "exchange", "addr", "send": [text...]}  dial, send each as a message, half-close,
                                                read messages to the end: {ok, got: [text...]}
  {"op": "handled"}                             what the handler saw: {ok, handled: [...]}
Errors answer {ok: false, error: <exception class name>, message}. Never decides a test's
outcome: it reports what py-libp2p did.
"""

import json
import sys

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.peerinfo import info_from_p2p_addr

PROTOCOL = TProtocol(sys.argv[1] if len(sys.argv) > 1 else "/logos/interop/1.0.0")
MAX = 4 * 1024 * 1024


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class Reader:
    """Buffered reads of one stream: whole messages, or None at a clean end between them."""

    def __init__(self, stream):
        self.stream = stream
        self.buf = bytearray()
        self.eof = False

    async def fill(self):
        if self.eof:
            return False
        try:
            chunk = await self.stream.read(65536)
        except StreamEOF:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    async def message(self):
        length, shift, used = 0, 0, 0
        while True:
            while used >= len(self.buf):
                if not await self.fill():
                    if used == 0 and not self.buf:
                        return None
                    raise EOFError("the stream ended inside a length prefix")
            b = self.buf[used]
            used += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
            if used >= 10:
                raise ValueError("invalid varint")
        if length > MAX:
            raise ValueError(f"message of {length} bytes is too long")
        while len(self.buf) < used + length:
            if not await self.fill():
                raise EOFError(f"the stream ended inside a message of {length} bytes")
        data = bytes(self.buf[used : used + length])
        del self.buf[: used + length]
        return data.decode()


async def write_message(stream, text):
    data = text.encode()
    await stream.write(varint(len(data)) + data)


handled = []


async def handler(stream):
    reader = Reader(stream)
    messages = 0
    try:
        while (m := await reader.message()) is not None:
            await write_message(stream, m)
            messages += 1
        await stream.close_write()
        handled.append({"ok": True, "messages": messages})
    except Exception as err:  # reported to the test, which decides
        handled.append({"error": type(err).__name__, "message": str(err)})


async def run(host, cmd):
    if cmd["op"] == "exchange":
        info = info_from_p2p_addr(multiaddr.Multiaddr(cmd["addr"]))
        await host.connect(info)
        stream = await host.new_stream(info.peer_id, [PROTOCOL])
        for m in cmd["send"]:
            await write_message(stream, m)
        await stream.close_write()
        reader = Reader(stream)
        got = []
        while (m := await reader.message()) is not None:
            got.append(m)
        return {"ok": True, "got": got}
    if cmd["op"] == "handled":
        return {"ok": True, "handled": handled}
    return {"ok": False, "error": "UnknownCommand", "message": str(cmd["op"])}


async def main():
    host = new_host(key_pair=create_new_key_pair())
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        host.set_stream_handler(PROTOCOL, handler)
        peer = host.get_id().to_string()
        addrs = [str(a) for a in host.get_addrs()]
        print(json.dumps({"peer": peer, "addrs": addrs}), flush=True)
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                break
            try:
                answer = await run(host, json.loads(line))
            except Exception as err:  # reported to the test, which decides
                answer = {"ok": False, "error": type(err).__name__, "message": str(err)}
            print(json.dumps(answer), flush=True)


trio.run(main)
