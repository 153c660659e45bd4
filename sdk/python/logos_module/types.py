"""Python type hints as logos interface types (docs/architecture.md §5) and the checks that
turn a call's arguments into what a method's hints promise (docs/protocol.md §12: a mismatch
is `invalid_args`, nothing is coerced except an int into a float parameter up to 2^53).

Pure functions of hints and values: never sends anything, never calls a method."""

from __future__ import annotations

import types
import typing
from typing import Any

from .fault import Fault

_SCALARS = {int: "int", float: "float", bool: "bool", str: "text", bytes: "bytes", type(None): "null"}


def type_name(hint) -> str:
    """The interface type of a hint: `int`, `float`, `bool`, `text`, `bytes`, `null`, `any`,
    `list<T>`, `map<T>` (text keys), `optional<T>`; a class of another kind keeps its own name
    (and is passed as any value)."""
    if hint is None or hint is type(None):
        return "null"
    if hint is Any or hint is typing.Any or hint is object:
        return "any"
    if hint in _SCALARS:
        return _SCALARS[hint]
    if hint in (bytearray, memoryview):
        return "bytes"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return "list<any>"
        return f"list<{type_name(args[0]) if args else 'any'}>"
    if origin is dict or hint is dict:
        return f"map<{type_name(args[1]) if len(args) == 2 else 'any'}>"
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(rest) < len(args):
            return f"optional<{type_name(rest[0])}>"
        return "any"
    if isinstance(hint, type):
        return hint.__name__
    return "any"


def kind(v) -> str:
    """The logos type of a decoded value, for messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    for t, name in ((int, "int"), (float, "float"), (str, "text"), (bytes, "bytes"), (list, "list"), (dict, "map")):
        if isinstance(v, t):
            return name
    return type(v).__name__


def convert(hint, v, where: str):
    """`v` (a decoded value) as `hint` asks, or Fault `invalid_args` saying where, what was
    expected and what was found."""

    def bad(expected: str):
        return Fault("invalid_args", f"{where}: expected {expected}, found {kind(v)}")

    if hint is None or hint is type(None):
        if v is not None:
            raise bad("null")
        return v
    if hint is Any or hint is object or hint is typing.Any:
        return v
    if hint is bool:
        if type(v) is not bool:
            raise bad("bool")
        return v
    if hint is int:
        if type(v) is not int:
            raise bad("int")
        return v
    if hint is float:
        if type(v) is float:
            return v
        if type(v) is int and abs(v) <= 1 << 53:
            return float(v)
        raise bad("float")
    if hint is str:
        if type(v) is not str:
            raise bad("text")
        return v
    if hint in (bytes, bytearray, memoryview):
        if type(v) is not bytes:
            raise bad("bytes")
        return v
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if v is None and len(rest) < len(args):
            return None
        if len(rest) == 1:
            return convert(rest[0], v, where)
        return v
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple):
        if type(v) is not list:
            raise bad(type_name(hint))
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(v) != len(args):
                raise Fault("invalid_args", f"{where}: expected a list of {len(args)}, found {len(v)} items")
            return tuple(convert(a, x, f"{where}[{i}]") for i, (a, x) in enumerate(zip(args, v)))
        inner = args[0] if args else Any
        out = [convert(inner, x, f"{where}[{i}]") for i, x in enumerate(v)]
        return (origin or list)(out) if origin in (tuple, set, frozenset) else out
    if origin is dict or hint is dict:
        if type(v) is not dict:
            raise bad(type_name(hint))
        inner = args[1] if len(args) == 2 else Any
        return {k: convert(inner, x, f"{where}.{k}") for k, x in v.items()}
    return v  # another class: passed as the value it is (the interface names the class)
