"""Reading a power state out of a webhook's status response (pure functions)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.errors import Invalid
from roost.power import PowerState
from roost.power.drivers.webhook import PointerError, WebhookDriver, parse_status, resolve_pointer

pytestmark = pytest.mark.unit

DOC = {"a/b": {"m~n": [10, {"x": True}]}, "": "empty key", "POWER": "ON"}


@pytest.mark.parametrize(
    ("pointer", "expected"),
    [
        ("", DOC),
        ("/POWER", "ON"),
        ("/a~1b/m~0n/0", 10),
        ("/a~1b/m~0n/1/x", True),
        ("/", "empty key"),
    ],
)
def test_rfc6901_pointers(pointer: str, expected: Any) -> None:
    assert resolve_pointer(DOC, pointer) == expected


@pytest.mark.parametrize("pointer", ["POWER", "/nope", "/a~1b/m~0n/2", "/a~1b/m~0n/-"])
def test_bad_pointers(pointer: str) -> None:
    with pytest.raises(PointerError):
        resolve_pointer(DOC, pointer)


keys = st.text(max_size=8)


@given(st.lists(keys, max_size=5), st.integers() | st.booleans() | st.text())
def test_pointer_built_from_a_path_resolves_to_its_value(path: list[str], value: Any) -> None:
    doc: Any = value
    for key in reversed(path):
        doc = {key: doc}
    pointer = "".join("/" + k.replace("~", "~0").replace("/", "~1") for k in path)
    assert resolve_pointer(doc, pointer) == value


CASES: list[tuple[str, dict[str, Any], PowerState]] = [
    (json.dumps({"POWER": "ON"}), {"pointer": "/POWER"}, PowerState.ON),
    (json.dumps({"output": False}), {"pointer": "/output"}, PowerState.OFF),
    (json.dumps({"relay": 1}), {"pointer": "/relay"}, PowerState.ON),
    (json.dumps({"relay": "busy"}), {"pointer": "/relay"}, PowerState.UNKNOWN),
    (json.dumps({"x": 1}), {"pointer": "/relay"}, PowerState.UNKNOWN),
    ("not json", {"pointer": "/relay"}, PowerState.UNKNOWN),
    ("state=Off;", {"regex": r"state=(\w+)"}, PowerState.OFF),
    ("LED ON", {"regex": r"\bON\b"}, PowerState.ON),
    ("nothing", {"regex": r"state=(\w+)"}, PowerState.UNKNOWN),
    (" on \n", {}, PowerState.ON),
    ("open", {"regex": "(open|closed)", "on": "closed", "off": "open"}, PowerState.OFF),
]


@pytest.mark.parametrize(("body", "how", "expected"), CASES)
def test_parse_status(body: str, how: dict[str, Any], expected: PowerState) -> None:
    args = {"pointer": None, "regex": None, "on": "on,true,1", "off": "off,false,0", **how}
    assert parse_status(body, **args) == expected


def test_bad_regex_is_refused_at_construction() -> None:
    with pytest.raises(Invalid, match="status_regex"):
        WebhookDriver({"on_url": "http://x/on", "off_url": "http://x/off", "status_regex": "("})
