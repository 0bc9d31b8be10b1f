"""The one settings declaration: validation, redaction, CLI flags; and driver loading."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, ClassVar

import pytest

import roost.power
from roost.errors import Invalid
from roost.power import (
    PowerDriver,
    PowerState,
    SettingSpec,
    cli_flags,
    describe,
    load_driver,
    parse_cli_args,
    redact,
    validate_settings,
)

pytestmark = pytest.mark.unit


class Demo(PowerDriver):
    name = "demo"
    SETTINGS: ClassVar[tuple[SettingSpec, ...]] = (
        SettingSpec("host", str, required=True, help="BMC address"),
        SettingSpec("port", int, default=623),
        SettingSpec("password", str, required=True, secret=True),
        SettingSpec("timeout", float, default=10.0),
        SettingSpec("verify_tls", bool, default=True),
        SettingSpec("headers", dict, default=None),
        SettingSpec("mode", str, default="a", choices=("a", "b")),
    )

    async def _on(self) -> None: ...
    async def _off(self) -> None: ...
    async def _status(self) -> PowerState:
        return PowerState.UNKNOWN


GOOD = {"host": "10.0.0.5", "password": "s3cret"}

VALID: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (
        GOOD,
        {**GOOD, "port": 623, "timeout": 10.0, "verify_tls": True, "headers": None, "mode": "a"},
    ),
    ({**GOOD, "port": 6230, "timeout": 3}, {"port": 6230, "timeout": 3.0}),
    ({**GOOD, "headers": {"X-Key": "v"}, "mode": "b"}, {"headers": {"X-Key": "v"}, "mode": "b"}),
    ({**GOOD, "verify_tls": False, "port": None}, {"verify_tls": False, "port": 623}),
]


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_valid_settings(raw: dict[str, Any], expected: dict[str, Any]) -> None:
    out = validate_settings(Demo, raw)
    assert {k: out[k] for k in expected} == expected
    assert set(out) == {s.name for s in Demo.SETTINGS}


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"password": "x"}, "'host' is required by driver 'demo' (BMC address)"),
    ({"host": "h"}, "'password' is required"),
    ({**GOOD, "host": ""}, "'host' is required"),
    ({**GOOD, "hostname": "h"}, "unknown power setting 'hostname' for driver 'demo'; known: host"),
    ({**GOOD, "port": "623"}, "'port' of driver 'demo' must be an integer, got '623'"),
    ({**GOOD, "port": True}, "'port' of driver 'demo' must be an integer"),
    ({**GOOD, "port": 1.5}, "'port' of driver 'demo' must be an integer"),
    ({**GOOD, "timeout": "fast"}, "'timeout' of driver 'demo' must be a number"),
    ({**GOOD, "verify_tls": "yes"}, "'verify_tls' of driver 'demo' must be a boolean"),
    ({**GOOD, "verify_tls": 1}, "'verify_tls' of driver 'demo' must be a boolean"),
    ({**GOOD, "headers": {"X": 1}}, "'headers' of driver 'demo' must be an object of string"),
    ({**GOOD, "headers": "X: 1"}, "'headers' of driver 'demo' must be an object"),
    ({**GOOD, "mode": "c"}, "'mode' of driver 'demo' must be one of a, b; got 'c'"),
    ({**GOOD, "password": 1234}, "must be a string, got (secret value hidden)"),
]


@pytest.mark.parametrize(("raw", "message"), INVALID)
def test_invalid_settings_name_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid) as info:
        validate_settings(Demo, raw)
    assert message in str(info.value)


def test_invalid_secret_is_never_echoed() -> None:
    with pytest.raises(Invalid) as info:
        validate_settings(Demo, {**GOOD, "password": 987654321})
    assert "987654321" not in str(info.value)


REDACT: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"host": "h", "password": "pw"}, {"host": "h", "password": "***"}),
    ({"host": "h", "password": None}, {"host": "h", "password": None}),
    ({"host": "h", "password": ""}, {"host": "h", "password": ""}),
    ({"host": "h", "undeclared": "token"}, {"host": "h", "undeclared": "***"}),
]


@pytest.mark.parametrize(("settings", "expected"), REDACT)
def test_redact(settings: dict[str, Any], expected: dict[str, Any]) -> None:
    assert redact(Demo, settings) == expected


def test_cli_flags_follow_the_declaration() -> None:
    flags = {f.flag: f for f in cli_flags(Demo)}
    assert list(flags) == [
        "--host",
        "--port",
        "--password",
        "--timeout",
        "--verify-tls",
        "--headers",
        "--mode",
    ]
    assert flags["--password"].secret and flags["--password"].required
    assert flags["--headers"].multiple and not flags["--port"].multiple
    assert flags["--mode"].help.endswith("[one of: a, b]")
    assert flags["--verify-tls"].key == "verify_tls"


PARSE: list[tuple[list[str], dict[str, Any]]] = [
    (["--host", "h", "--port=6230"], {"host": "h", "port": 6230}),
    (["--verify-tls", "--timeout", "2.5"], {"verify_tls": True, "timeout": 2.5}),
    (["--verify-tls", "false"], {"verify_tls": False}),
    (["--headers", "A=1", "--headers", "B=x=y"], {"headers": {"A": "1", "B": "x=y"}}),
]


@pytest.mark.parametrize(("args", "expected"), PARSE)
def test_parse_cli_args(args: list[str], expected: dict[str, Any]) -> None:
    assert parse_cli_args(Demo, args) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hots", "h"], "unknown option '--hots' for power driver 'demo'"),
        (["--port", "x"], "--port of driver 'demo' must be an integer, got 'x'"),
        (["--port"], "--port of power driver 'demo' needs a value"),
        (["--verify-tls", "maybe"], "--verify-tls of driver 'demo' must be a boolean"),
        (["--headers", "novalue"], "--headers takes KEY=VALUE"),
    ],
)
def test_parse_cli_args_errors(args: list[str], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        parse_cli_args(Demo, args)


def test_cli_round_trip_validates() -> None:
    raw = parse_cli_args(Demo, ["--host", "h", "--password", "p", "--mode", "b"])
    assert validate_settings(Demo, raw)["mode"] == "b"


def test_describe_is_json_ready() -> None:
    rows = describe(Demo)
    assert rows[2] == {
        "name": "password",
        "type": "str",
        "required": True,
        "secret": True,
        "help": "",
        "default": None,
        "choices": [],
        "target": False,
    }


def test_every_shipped_driver_is_listed_and_loads() -> None:
    names = roost.power.available_drivers()
    assert {"fake", "ipmi", "redfish", "webhook", "libcloud"} <= set(names)
    for name in ("fake", "ipmi", "redfish", "webhook", "libcloud"):
        cls = load_driver(name)
        assert issubclass(cls, PowerDriver) and cls.name == name
        assert all(isinstance(s, SettingSpec) for s in cls.SETTINGS)


def test_unknown_driver_lists_the_installed_ones() -> None:
    with pytest.raises(Invalid, match=r"unknown power driver 'ipmii'; installed: .*fake.*ipmi"):
        load_driver("ipmii")


def test_only_the_requested_driver_is_imported() -> None:
    code = (
        "import sys, roost.power as p; p.load_driver('fake'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pyghmi', 'sushy', 'libcloud', 'roost')"
        " and (m.startswith('roost.power.drivers.') or '.' not in m)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['roost', 'roost.power.drivers.fake']"


def test_all_matches_the_public_names() -> None:
    public = {n for n in dir(roost.power) if not n.startswith("_")}
    modules = {
        "base",
        "errors",
        "spec",
        "drivers",
        "annotations",
        "entry_points",
        "Invalid",
        "GROUP",
    }
    assert set(roost.power.__all__) == public - modules
