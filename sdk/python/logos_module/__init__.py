"""logos-module: write logos modules in Python.

A module is a class: its type-hinted public methods are its interface, `@event` stubs declare
its events, `self.ctx` reaches the platform (calls with tokens, events, byte streams).

    from logos_module import event, module, run

    @module
    class Hello:
        @event
        def greeted(self, name: str): ...

        def greet(self, name: str) -> str:
            self.greeted(name)
            return f"hello, {name}"

    if __name__ == "__main__":
        run(Hello)

See docs/python-sdk.md. The wire protocol (docs/protocol.md) is in `codec.py` and
`connection.py`; the process contract in `runtime.py`.
"""

from .context import Client, Context
from .fault import Fault
from .module import event, module, on_event, stream
from .runtime import run, serve
from .stream import ByteStream

__all__ = ["ByteStream", "Client", "Context", "Fault", "event", "module", "on_event", "run", "serve", "stream"]
__version__ = "0.1.0"
