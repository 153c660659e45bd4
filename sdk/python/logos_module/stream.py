"""`ByteStream`: one flow-controlled byte stream inside a connection (docs/protocol.md §8):
a 256 KiB credit window per direction, chunks of at most 64 KiB, fin as half-close, reset as
abort.

Owns one stream's buffers and credit; its `Connection` routes frames to it and sends what it
asks. It never buffers more than one window of received data, and a writer without credit
waits, so a slow reader slows the writer."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .codec import MAX_CHUNK
from .fault import Fault

if TYPE_CHECKING:
    from .connection import Connection

#: Initial credit of each direction of a stream (§8).
WINDOW = 256 * 1024


class ByteStream:
    """A byte stream to or from another module.

    `await read()` returns the next bytes (b"" at the end), `await write(data)` sends (waiting
    for credit), `await finish()` half-closes, `reset()` aborts both directions."""

    def __init__(self, conn: Connection, sid: int, protocol: str):
        self.conn, self.id, self.protocol = conn, sid, protocol
        self._buf = bytearray()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._credit = WINDOW  # what we may still send
        self._granted = WINDOW  # credit granted to us in total
        self._sent = 0  # bytes we sent in total
        self._received = 0  # bytes the peer sent in total
        self._given = WINDOW  # credit we granted the peer in total
        self._unreturned = 0  # bytes read by the application, not yet given back as credit
        self.fin_received = False
        self.fin_sent = False
        self.error: Fault | None = None

    # -- the application's side ----------------------------------------------------------------

    async def read(self, n: int = -1) -> bytes:
        """The next bytes (at most `n` when n > 0); b"" once the peer has finished.

        Raises Fault when the stream was reset (by either side) or the connection dropped."""
        while not self._buf:
            if self.error:
                raise self.error
            if self.fin_received:
                return b""
            self._readable.clear()
            await self._readable.wait()
        k = len(self._buf) if n is None or n < 0 else min(n, len(self._buf))
        data = bytes(self._buf[:k])
        del self._buf[:k]
        self._unreturned += k
        if self._unreturned >= WINDOW // 2 and not self.fin_received:
            await self.conn.send([12, self.id, self._unreturned])
            self._given += self._unreturned
            self._unreturned = 0
        return data

    async def read_all(self) -> bytes:
        """Everything until the peer finishes."""
        out = bytearray()
        while chunk := await self.read():
            out += chunk
        return bytes(out)

    async def write(self, data: bytes) -> None:
        """Sends `data`, in chunks of at most 64 KiB, each as credit allows.

        Raises Fault after a reset, after `finish`, or when the connection dropped."""
        view = memoryview(bytes(data))
        while view:
            if self.error:
                raise self.error
            if self.fin_sent:
                raise Fault("protocol_error", f"stream {self.id} was finished; nothing more can be written")
            if self._credit == 0:
                self._writable.clear()
                await self._writable.wait()
                continue
            k = min(len(view), MAX_CHUNK, self._credit)
            self._credit -= k
            self._sent += k
            await self.conn.send([11, self.id, bytes(view[:k])])
            view = view[k:]

    async def finish(self) -> None:
        """Half-closes: the peer reads to the end; reading from it goes on."""
        if self.fin_sent or self.error:
            return
        self.fin_sent = True
        await self.conn.send([13, self.id])
        self._maybe_done()

    def reset(self, code: str = "cancelled", message: str = "") -> None:
        """Aborts both directions; pending reads and writes fail with `code`."""
        if self.error:
            return
        self._fail(Fault(code, message or f"stream {self.id} was reset by this side"))
        self.conn.post([14, self.id, code, message])

    # -- the connection's side ---------------------------------------------------------------

    def _on_data(self, data: bytes) -> str | None:
        """Takes a chunk; returns a protocol violation, if any."""
        if self.fin_received:
            return f"data on stream {self.id} after its fin"
        if self._received + len(data) > self._given:
            return f"data beyond the credit granted on stream {self.id}"
        self._received += len(data)
        if not self.error:
            self._buf += data
            self._readable.set()
        return None

    def _on_credit(self, n: int) -> str | None:
        if self._granted + n > self._sent + WINDOW:
            return f"credit beyond the data sent on stream {self.id}"
        self._granted += n
        self._credit += n
        self._writable.set()
        return None

    def _on_fin(self) -> str | None:
        if self.fin_received:
            return f"a second fin on stream {self.id}"
        self.fin_received = True
        self._readable.set()
        self._maybe_done()
        return None

    def _fail(self, fault: Fault) -> None:
        self.error = fault
        self._buf.clear()
        self._readable.set()
        self._writable.set()
        self.conn._streams.pop(self.id, None)

    def _maybe_done(self) -> None:
        if self.fin_sent and self.fin_received:
            self.conn._streams.pop(self.id, None)
