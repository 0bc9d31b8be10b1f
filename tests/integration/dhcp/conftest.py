"""Fixtures of the DHCP namespace tests: a two-namespace link and a Roost server on it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from roost.testing.netns import Lab, unavailable_reason

from .harness import RoostServer

SUBNET = {
    "name": "lan",
    "cidr": "10.201.0.0/24",
    "pools": [{"start": "10.201.0.100", "end": "10.201.0.149"}],
    "routers": ["10.201.0.1"],
    "dns_servers": ["10.201.0.1"],
    "domain_name": "lab.test",
}


@dataclass
class Link:
    """Two or more namespaces on one link; ``oth_ns``/``oth_if`` only on the bridged one."""

    lab: Lab
    srv_ns: str
    cli_ns: str
    srv_if: str
    cli_if: str
    server: RoostServer
    tmp: Path
    oth_ns: str = ""
    oth_if: str = ""


def tag() -> str:
    return f"rdh{os.getpid() % 4096:03x}"


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = unavailable_reason("tcpdump")
    if reason:
        pytest.skip(reason)
    the_lab = Lab(tag())
    try:
        yield the_lab
    finally:
        the_lab.close()


@pytest.fixture
def link(lab: Lab, tmp_path: Path) -> Iterator[Link]:
    """rdh…-srv (10.201.0.1/24) ── veth ── rdh…-cli (no address: the DHCP client's side)."""
    t = tag()
    srv_ns, cli_ns = lab.ns("srv"), lab.ns("cli")
    srv_if, cli_if = f"{t}s0", f"{t}c0"
    lab.link(srv_ns, srv_if, "10.201.0.1/24", cli_ns, cli_if, None)
    server = RoostServer(lab, srv_ns, tmp_path / "data", [srv_if])
    try:
        yield Link(lab, srv_ns, cli_ns, srv_if, cli_if, server, tmp_path)
    finally:
        server.stop()


@pytest.fixture
def bridged(lab: Lab, tmp_path: Path) -> Iterator[Link]:
    """srv (10.201.0.1/24), cli (no address) and oth (another host) on a bridge in sw."""
    t = tag()
    sw, srv_ns, cli_ns, oth_ns = lab.ns("sw"), lab.ns("srv"), lab.ns("cli"), lab.ns("oth")
    lab.bridge(sw, "br0")
    srv_if, cli_if, oth_if = f"{t}s0", f"{t}c0", f"{t}o0"
    lab.attach(sw, "br0", srv_ns, srv_if, "10.201.0.1/24")
    lab.attach(sw, "br0", cli_ns, cli_if, None)
    lab.attach(sw, "br0", oth_ns, oth_if, None)
    server = RoostServer(lab, srv_ns, tmp_path / "data", [srv_if])
    try:
        yield Link(lab, srv_ns, cli_ns, srv_if, cli_if, server, tmp_path, oth_ns, oth_if)
    finally:
        server.stop()
