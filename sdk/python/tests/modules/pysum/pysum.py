#!/usr/bin/env python3
"""pysum: the Python SDK's test module in a real core (crates/logos-core/tests/python_sdk.rs).

Calls calc with a token, follows probe's `tick` events, serves `sink` streams (what probe's
`streamTo` writes) and sends a stream to relay's slow `sink`, hashing bytes with FNV-1a 64 as
probe and relay do, so the Rust side can compare."""
from logos_module import ByteStream, Context, event, module, on_event, run, stream

FNV_OFFSET = 0xCBF29CE484222325


def fnv1a(h: int, data: bytes) -> int:
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def noise(n: int, seed: int = 0x9E3779B97F4A7C15) -> bytes:
    """n bytes of xorshift* noise."""
    out = bytearray()
    s = seed
    while len(out) < n:
        s ^= s >> 12
        s ^= (s << 25) & 0xFFFFFFFFFFFFFFFF
        s ^= s >> 27
        out += ((s * 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
    return bytes(out[:n])


@module
class PySum:
    def __init__(self, ctx: Context):
        self.calc = ctx.client("calc")
        self.ticks: list[int] = []
        self.sunk: dict | None = None

    @event
    def summed(self, a: int, b: int, total: int): ...

    async def sum(self, a: int, b: int) -> int:
        total = await self.calc.call("add", a, b)
        self.summed(a, b, total)
        return total

    @on_event("probe", "tick")
    def _tick(self, i: int) -> None:
        self.ticks.append(i)

    def ticks_seen(self) -> list[int]:
        return self.ticks

    @stream("sink")
    async def _sink(self, s: ByteStream) -> None:
        h, n = FNV_OFFSET, 0
        while chunk := await s.read():
            h, n = fnv1a(h, chunk), n + len(chunk)
        self.sunk = {"received": n, "hash": h}
        await s.finish()

    def sink_result(self) -> dict | None:
        return self.sunk

    async def send_to_relay(self, size: int) -> dict:
        """Streams `size` bytes to relay's slow sink, half-closes, waits for relay to close."""
        data = noise(size)
        s = await self.ctx.open_stream("relay", "sink")
        await s.write(data)
        await s.finish()
        await s.read_all()
        return {"sent": size, "hash": fnv1a(FNV_OFFSET, data)}


if __name__ == "__main__":
    run(PySum)
