"""Tests of {{name}}'s methods with no core: a standalone context records emitted events."""
import pytest

from logos_module import Context, Fault
from module import {{Type}}


def test_greets_by_name_and_tells_subscribers():
    m = {{Type}}()
    m.ctx = Context.standalone("{{name}}")
    assert m.greet("ada") == "hello, ada"
    assert m.ctx.emitted == [("greeted", ["ada"])]


def test_refuses_no_name():
    m = {{Type}}()
    m.ctx = Context.standalone("{{name}}")
    with pytest.raises(Fault):
        m.greet("")
