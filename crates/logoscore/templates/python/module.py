#!/usr/bin/env python3
"""{{name}}: a logos module in Python (docs/python-sdk.md). Its public, type-hinted methods
are its interface; `@event` stubs declare its events."""
from logos_module import Fault, event, module, run


@module(version="0.1.0")  # as in metadata.json
class {{Type}}:
    @event
    def greeted(self, name: str): ...

    def greet(self, name: str) -> str:
        """Greets `name` and tells the subscribers of `greeted`."""
        if not name:
            raise Fault("invalid_args", "name must not be empty")
        self.greeted(name)
        return f"hello, {name}"


if __name__ == "__main__":
    run({{Type}})
