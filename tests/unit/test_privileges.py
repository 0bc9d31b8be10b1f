"""Which capability each enabled service needs, and the error that names a missing one."""

from __future__ import annotations

import socket

import pytest

from roost import privileges
from roost.privileges import NET_ADMIN, NET_BIND_SERVICE, NET_RAW, MissingCapability
from roost.settings import Settings

pytestmark = pytest.mark.unit


def test_defaults_need_no_capability() -> None:
    assert privileges.needed(Settings()) == {}


def test_each_service_asks_for_its_own() -> None:
    settings = Settings.model_validate(
        {
            "tftp": {"enabled": True},
            "boot": {"enabled": True, "http_port": 80},
            "dhcp": {"interfaces": ["eth1"], "probe": True},
            "discovery": {"subnets": ["10.0.0.0/24"], "interface": "eth1"},
        }
    )
    assert privileges.needed(settings) == {
        NET_BIND_SERVICE: ["boot.http_port", "tftp.port", "dhcp.interfaces"],
        NET_ADMIN: ["dhcp.interfaces"],
        NET_RAW: ["dhcp.probe", "discovery.interface"],
    }


def test_tftp_on_a_high_port_needs_nothing() -> None:
    settings = Settings.model_validate({"tftp": {"enabled": True, "port": 6969}})
    assert privileges.needed(settings) == {}


def test_missing_capability_names_capability_setting_and_way_out() -> None:
    exc = MissingCapability(NET_RAW, "dhcp.probe", "opening a raw IP socket", "turn it off")
    assert isinstance(exc, PermissionError)  # callers that tolerate a failed socket still do
    assert str(exc).startswith("dhcp.probe: opening a raw IP socket needs CAP_NET_RAW")
    assert "AmbientCapabilities=CAP_NET_RAW" in str(exc) and "--ambient-caps=+net_raw" in str(exc)
    assert str(exc).endswith("or turn it off")


def test_bind_refused_becomes_missing_capability() -> None:
    class Refusing(socket.socket):
        def bind(self, address: object) -> None:
            raise PermissionError(13, "Permission denied")

    with (
        Refusing(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        pytest.raises(
            MissingCapability, match=r"tftp.port: binding UDP port 69 needs CAP_NET_BIND_SERVICE"
        ),
    ):
        privileges.bind(sock, ("0.0.0.0", 69), "tftp.port")
