"""The interface `@module` derives from type hints, argument checks, and the standalone
context for unit tests of a module's methods without a core."""

from typing import Any

import pytest

from logos_module import Context, Fault, event, module
from logos_module.module import spec_of, wire_name
from logos_module.types import convert, type_name


def test_hints_become_logos_types():
    assert [type_name(h) for h in (int, float, bool, str, bytes, None, Any)] == [
        "int", "float", "bool", "text", "bytes", "null", "any"]
    assert type_name(list[int]) == "list<int>"
    assert type_name(dict[str, list[bytes]]) == "map<list<bytes>>"
    assert type_name(int | None) == "optional<int>"
    assert type_name(tuple[int, str]) == "list<any>"


def test_arguments_are_checked_never_coerced():
    assert convert(float, 3, "x") == 3.0 and type(convert(float, 3, "x")) is float
    assert convert(list[int], [1, 2], "x") == [1, 2]
    assert convert(int | None, None, "x") is None
    for hint, bad, message in [
        (int, True, "x: expected int, found bool"),
        (int, "1", "x: expected int, found text"),
        (str, 5, "x: expected text, found int"),
        (float, 1 << 60, "x: expected float, found int"),
        (list[int], [1, "a"], "x[1]: expected int, found text"),
        (dict[str, int], {"a": 1.5}, "x.a: expected int, found float"),
        (bytes, [1], "x: expected bytes, found list"),
    ]:
        with pytest.raises(Fault) as e:
            convert(hint, bad, "x")
        assert e.value.code == "invalid_args" and e.value.message == message


@module(name="hello", version="1.2.3")
class Hello:
    @event
    def greeted(self, name: str, times: int): ...

    def greet(self, name: str) -> str:
        self.greeted(name, 1)
        return f"hello, {name}"

    async def stream_to(self, module: str, size: int | None) -> dict[str, int]:
        return {}

    def nothing(self):
        pass

    def _private(self, x: int) -> int:
        return x


def test_the_interface_comes_from_the_class():
    iface = spec_of(Hello).interface("hello", "1.2.3")
    assert iface == {
        "name": "hello",
        "version": "1.2.3",
        "methods": [
            {"name": "greet", "params": [{"name": "name", "type": "text"}], "returns": "text"},
            {"name": "streamTo", "params": [{"name": "module", "type": "text"},
                                            {"name": "size", "type": "optional<int>"}],
             "returns": "map<int>"},
            {"name": "nothing", "params": [], "returns": "any"},
        ],
        "events": [{"name": "greeted", "params": [{"name": "name", "type": "text"},
                                                  {"name": "times", "type": "int"}]}],
    }
    assert wire_name("stream_to") == "streamTo" and wire_name("add") == "add"


def test_a_standalone_context_records_events_and_refuses_calls():
    ctx = Context.standalone("hello")
    h = Hello()
    h.ctx = ctx
    assert h.greet("ada") == "hello, ada"
    assert ctx.emitted == [("greeted", ["ada", 1])]
    import asyncio

    with pytest.raises(Fault) as e:
        asyncio.run(ctx.call("calc", "add", 1, 2))
    assert e.value.code == "unavailable"


def test_unservable_signatures_are_refused_at_import():
    with pytest.raises(TypeError, match="only positional"):
        @module
        class Bad:
            def f(self, *args: int) -> int:
                return 0
