"""The lab's network: a switch namespace with a bridge and one tap per guest, and a server
namespace where Roost serves on the lab segment.

    <prefix>-srv: lab0 10.99.0.1/24 ──veth── lab0-br ─┐
                                 <prefix>-sw: br0 ─┼─ tap1 (guest 1, QEMU runs in <prefix>-sw)
                                                   └─ tap2 …

Neither namespace has an uplink or a default route, so nothing sent in the lab can leave it,
and every interface is created inside a lab namespace, never in the machine's own: only the
namespace names carry the prefix (interface names inside a namespace cannot collide with the
machine's). Built with ``ip`` from iproute2, which every lab machine has anyway.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from dataclasses import dataclass

from roost.errors import Conflict, Invalid

PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
"""Namespace prefix: short, lower case, so ``<prefix>-srv`` stays a readable name."""

BRIDGE = "br0"
SERVER_IF = "lab0"
"""The server's interface on the lab segment, inside the server namespace: DHCP binds here."""


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message carries its stderr."""


@dataclass(frozen=True)
class Topology:
    """Names and addresses of one lab; pure data, so every part of the lab agrees on them."""

    prefix: str = "roost-lab"
    server_cidr: str = "10.99.0.1/24"

    def __post_init__(self) -> None:
        if not PREFIX_RE.match(self.prefix):
            raise Invalid(
                f"lab prefix {self.prefix!r}: use 1-20 lower-case letters, digits or '-', "
                "starting with a letter"
            )
        try:
            iface = ipaddress.IPv4Interface(self.server_cidr)
        except ValueError:
            raise Invalid(
                f"lab server address {self.server_cidr!r}: give it as 10.99.0.1/24"
            ) from None
        if iface.network.prefixlen > 29 or iface.ip == iface.network.network_address:
            raise Invalid(
                f"lab server address {self.server_cidr!r}: needs a host in a /29 or wider"
            )

    @property
    def switch_ns(self) -> str:
        return f"{self.prefix}-sw"

    @property
    def server_ns(self) -> str:
        return f"{self.prefix}-srv"

    @property
    def server_ip(self) -> str:
        return str(ipaddress.IPv4Interface(self.server_cidr).ip)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Interface(self.server_cidr).network

    def pool(self) -> tuple[str, str]:
        """First and last address of a dynamic pool: the upper half of the segment."""
        hosts = list(self.network.hosts())
        half = hosts[len(hosts) // 2 :]
        return str(half[0]), str(half[-1])

    @staticmethod
    def tap(index: int) -> str:
        return f"tap{index}"


def ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {res.stderr.strip()}")
    return res.stdout


def namespaces() -> set[str]:
    return {line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()}


def exists(topo: Topology) -> bool:
    return bool({topo.switch_ns, topo.server_ns} & namespaces())


def create(topo: Topology) -> None:
    """Build the switch and server namespaces; refuse if either already exists."""
    if exists(topo):
        raise Conflict(
            f"lab {topo.prefix!r} is already up (namespace {topo.switch_ns} or {topo.server_ns} "
            "exists): run `roost lab down` first"
        )
    try:
        for ns in (topo.switch_ns, topo.server_ns):
            ip("netns", "add", ns)
            ip("link", "set", "lo", "up", ns=ns)
        sw, srv = topo.switch_ns, topo.server_ns
        # No STP and no forward delay: PXE ROMs send DHCP the moment the link is up.
        ip("link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0", ns=sw)
        ip("link", "set", BRIDGE, "up", ns=sw)
        # Both ends are created directly inside the lab namespaces, never in the machine's own.
        ip("link", "add", SERVER_IF, "netns", srv, "type", "veth", "peer", "name",
           f"{SERVER_IF}-br", "netns", sw)  # fmt: skip
        ip("link", "set", f"{SERVER_IF}-br", "master", BRIDGE, "up", ns=sw)
        ip("addr", "add", topo.server_cidr, "dev", SERVER_IF, ns=srv)
        ip("link", "set", SERVER_IF, "up", ns=srv)
    except NetnsError:
        destroy(topo)
        raise


def add_tap(topo: Topology, index: int) -> str:
    """A persistent tap on the bridge for guest ``index``; QEMU opens it inside the switch ns."""
    name = topo.tap(index)
    ip("tuntap", "add", "dev", name, "mode", "tap", ns=topo.switch_ns)
    ip("link", "set", name, "master", BRIDGE, "up", ns=topo.switch_ns)
    return name


def pids(ns: str) -> list[int]:
    """Processes whose network namespace is ``ns`` (started inside the lab)."""
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split() if p.isdigit()]


def destroy(topo: Topology) -> list[str]:
    """Delete the lab's namespaces (and so its bridge, veths and taps); returns what went."""
    gone = []
    present = namespaces()
    for ns in (topo.server_ns, topo.switch_ns):
        if ns in present:
            ip("netns", "del", ns, check=False)
            gone.append(ns)
    return gone


def exec_argv(ns: str, argv: list[str]) -> list[str]:
    """``argv`` run inside namespace ``ns`` (``ip netns exec`` execs it: same PID)."""
    return ["ip", "netns", "exec", ns, *argv]
