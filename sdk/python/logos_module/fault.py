"""`Fault`: a failed call, as the protocol carries it (an error code of docs/protocol.md §10
and a message). Raised by calls that fail and raised by methods to fail a call with a code
other than `method_failed`. Holds no I/O."""

from __future__ import annotations

from .codec import CODES


class Fault(Exception):
    """A call failed with `code` (one of docs/protocol.md §10) and a human-readable message.

    A method raises it to answer with a code of its choice, e.g.
    `raise Fault("invalid_args", "amount must be positive")`; any other exception a method
    raises answers `method_failed` with the exception's text. Calls to other modules raise it
    when they fail."""

    def __init__(self, code: str, message: str):
        if code not in CODES:
            raise ValueError(f"{code!r} is not an error code of docs/protocol.md §10")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
