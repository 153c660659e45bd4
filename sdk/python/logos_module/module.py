"""The `@module` class decorator and its helpers (`@event`, `@on_event`, `@stream`): they read
a class's type-hinted methods into the interface the core serves (docs/architecture.md §5) and
the table the runtime dispatches calls with.

Runs at import time only: reads signatures and hints, never opens a socket."""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from .types import type_name

_EVENT, _ON_EVENT, _STREAM = "__logos_event__", "__logos_on_event__", "__logos_stream__"


def wire_name(name: str) -> str:
    """`snake_case` → `camelCase`, as the Rust SDK names methods (`stream_to` → `streamTo`)."""
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


@dataclass
class Param:
    name: str
    hint: Any
    type: str


@dataclass
class Method:
    name: str  # on the wire
    attr: str  # in the class
    params: list[Param]
    returns: str


@dataclass
class Spec:
    """What `@module` read from a class."""

    name: str | None
    version: str | None
    methods: dict[str, Method] = field(default_factory=dict)
    events: dict[str, list[Param]] = field(default_factory=dict)
    subscriptions: list[tuple[str, str, str]] = field(default_factory=list)  # source, event, attr
    streams: dict[str, str] = field(default_factory=dict)  # protocol -> attr

    def interface(self, name: str, version: str) -> dict:
        """The interface map sent in `hello` (architecture.md §5)."""
        return {
            "name": name,
            "version": version,
            "methods": [
                {"name": m.name, "params": [{"name": p.name, "type": p.type} for p in m.params], "returns": m.returns}
                for m in self.methods.values()
            ],
            "events": [
                {"name": e, "params": [{"name": p.name, "type": p.type} for p in ps]} for e, ps in self.events.items()
            ],
        }


def _params(fn: Callable) -> tuple[list[Param], Any]:
    hints = typing.get_type_hints(fn)
    params = []
    for p in list(inspect.signature(fn).parameters.values())[1:]:  # past self
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.KEYWORD_ONLY):
            raise TypeError(f"{fn.__qualname__}: parameter {p.name!r}: only positional parameters can be served")
        hint = hints.get(p.name, Any)
        params.append(Param(p.name.lstrip("_") or p.name, hint, type_name(hint)))
    return params, hints.get("return", Any)


def module(cls: type | None = None, *, name: str | None = None, version: str | None = None):
    """Makes a class a logos module. Its public methods (not starting with `_`) are the
    interface: parameters and result are typed by their hints (`int`, `float`, `bool`, `str`,
    `bytes`, `list[T]`, `dict[str, T]`, `T | None`, `Any`), and calls whose arguments do not
    fit are answered `invalid_args` before the method runs. Methods may be `async`.

    `name` defaults to `$LOGOS_MODULE` (the core sets it), `version` to the `version` of the
    `metadata.json` beside the main script; both must match the metadata or the core refuses
    the module.

        @module
        class Hello:
            @event
            def greeted(self, name: str): ...

            async def greet(self, name: str) -> str:
                self.greeted(name)
                return f"hello, {name}"
    """

    def wrap(cls: type) -> type:
        spec = Spec(name=name, version=version)
        for klass in reversed(cls.__mro__[:-1]):
            for attr, fn in vars(klass).items():
                if not callable(fn) or isinstance(fn, type):
                    continue
                if hasattr(fn, _EVENT):
                    ev = getattr(fn, _EVENT)
                    spec.events[ev] = _params(fn.fn)[0]
                elif hasattr(fn, _ON_EVENT):
                    for source, event in getattr(fn, _ON_EVENT):
                        spec.subscriptions.append((source, event, attr))
                elif hasattr(fn, _STREAM):
                    spec.streams[getattr(fn, _STREAM)] = attr
                elif not attr.startswith("_") and inspect.isfunction(fn):
                    params, ret = _params(fn)
                    wire = wire_name(attr)
                    spec.methods[wire] = Method(wire, attr, params, type_name(ret))
        cls.__logos_spec__ = spec
        return cls

    return wrap(cls) if cls is not None else wrap


class _EventStub:
    """A declared event: calling it on an instance emits it with those arguments."""

    def __init__(self, fn: Callable, name: str):
        self.fn, self.name = fn, name
        setattr(self, _EVENT, name)
        self.__wrapped__ = fn

    def __call__(self, *a, **k):  # unbound use is a mistake worth naming
        raise TypeError(f"event {self.name!r} is emitted through an instance: self.{self.fn.__name__}(...)")

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        ctx = obj.ctx
        return lambda *data: ctx.emit(self.name, *data)


def event(fn: Callable | None = None, *, name: str | None = None):
    """Declares an event: a method stub whose hinted parameters are the event's data.
    `self.greeted("ada")` then emits it (the same as `self.ctx.emit("greeted", "ada")`)."""

    def wrap(fn: Callable):
        stub = _EventStub(fn, name or wire_name(fn.__name__))
        typing.get_type_hints(fn)  # fail at import on a bad hint
        return stub

    # _params reads the stub's function
    return wrap(fn) if fn is not None else wrap


def on_event(source: str, event: str = ""):
    """Marks a method (sync or async) as the handler of `source`'s `event` (`""`: every event;
    the handler then gets the event name first). Its parameters take the event's data."""

    def wrap(fn: Callable):
        pairs = getattr(fn, _ON_EVENT, [])
        setattr(fn, _ON_EVENT, [*pairs, (source, event)])
        return fn

    return wrap


def stream(protocol: str):
    """Marks an async method `(self, s: ByteStream)` as the server of streams opened with
    `protocol`."""

    def wrap(fn: Callable):
        setattr(fn, _STREAM, protocol)
        return fn

    return wrap


def spec_of(cls: type) -> Spec:
    spec = getattr(cls, "__logos_spec__", None)
    if spec is None:
        raise TypeError(f"{cls.__name__} is not a module: decorate it with @logos_module.module")
    return spec


def metadata_version() -> str | None:
    """`version` of the metadata.json beside the main script, if there is one."""
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    if not main:
        return None
    path = os.path.join(os.path.dirname(os.path.abspath(main)), "metadata.json")
    try:
        with open(path, encoding="utf-8") as f:
            v = json.load(f).get("version")
        return v if isinstance(v, str) else None
    except (OSError, ValueError, AttributeError):
        return None


