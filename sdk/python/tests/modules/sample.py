"""A module for tests/test_runtime.py: run as a real process with fd 3 and fd 4 by the test,
which plays the core."""
import asyncio
from typing import Any

from logos_module import ByteStream, Fault, event, module, on_event, run, stream


@module(name="sample", version="2.1.0")
class Sample:
    def __init__(self):
        self.heard: list[Any] = []

    @event
    def greeted(self, name: str): ...

    def greet(self, name: str) -> str:
        self.greeted(name)
        return f"hello, {name}"

    async def slow(self, ms: int) -> int:
        await asyncio.sleep(ms / 1000)
        return ms

    def half(self, x: float) -> float:
        return x / 2

    def tags(self, t: list[str], extra: dict[str, int] | None) -> int:
        return len(t) + sum((extra or {}).values())

    def refuse(self) -> None:
        raise Fault("invalid_args", "no, thanks")

    def broken(self) -> None:
        raise RuntimeError("a bug")

    async def ask(self, target: str, method: str, args: list) -> Any:
        return await self.ctx.call(target, method, *args)

    @on_event("core", "moduleDown")
    def _down(self, name: str, reason: str) -> None:
        self.heard.append([name, reason])

    def heard_events(self) -> list:
        return self.heard

    @stream("echo")
    async def _echo(self, s: ByteStream) -> None:
        while chunk := await s.read():
            await s.write(chunk)
        await s.finish()


if __name__ == "__main__":
    run(Sample)
