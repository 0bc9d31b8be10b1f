"""Least privilege: the Linux capabilities each enabled service needs, and errors naming them.

``roost serve`` runs as an unprivileged user (``roost`` in packaging/systemd/roost.service)
with only these capabilities, as ambient ones:

- ``CAP_NET_BIND_SERVICE``: ports below ``net.ipv4.ip_unprivileged_port_start`` (1024): DHCP
  67 and 4011, TFTP 69, and the API or boot server when put on such a port.
- ``CAP_NET_RAW``: raw sockets: discovery's ARP sweeps, passive sighting and raw wake packets
  (``AF_PACKET`` on ``discovery.interface``) and DHCP's ping before an offer (``dhcp.probe``).
- ``CAP_NET_ADMIN``: the ARP entry DHCP adds to answer a client that has no address yet by
  unicast (without it that answer is broadcast, which clients accept too).
- ``CAP_SYS_ADMIN``: only for ``discovery.netns`` (``setns``), which labs use.

A bind or raw socket refused for want of one raises :class:`MissingCapability`, whose message
names the capability, the setting that asked for it and how to grant it or do without.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

from roost.errors import RoostError
from roost.settings import Settings

log = logging.getLogger(__name__)

NET_BIND_SERVICE = "CAP_NET_BIND_SERVICE"
NET_RAW = "CAP_NET_RAW"
NET_ADMIN = "CAP_NET_ADMIN"
SYS_ADMIN = "CAP_SYS_ADMIN"
_BITS = {NET_BIND_SERVICE: 10, NET_ADMIN: 12, NET_RAW: 13, SYS_ADMIN: 21}
UNIT = "packaging/systemd/roost.service"


class MissingCapability(RoostError, PermissionError):
    """The kernel refused an operation this process lacks a capability for.

    A :class:`PermissionError` too, so code that tolerates a failed socket (discovery's passive
    listener) goes on tolerating it, now with a message that says what to do.
    """

    title = "Missing capability"

    def __init__(self, capability: str, setting: str, action: str, otherwise: str) -> None:
        short = capability.removeprefix("CAP_").lower()
        super().__init__(
            f"{setting}: {action} needs {capability}, which this process (uid {os.geteuid()}) "
            f"does not have. Grant it (AmbientCapabilities={capability} in {UNIT}, or "
            f"setpriv --inh-caps=+{short} --ambient-caps=+{short}) or {otherwise}"
        )
        self.capability = capability
        self.setting = setting


def unprivileged_port_start() -> int:
    """The lowest port any process may bind in this network namespace (Linux default 1024)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


def effective() -> set[str] | None:
    """The capabilities of :data:`_BITS` this process has in effect, or None if unknown."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            bits = int(line.split()[1], 16)
            return {cap for cap, bit in _BITS.items() if bits >> bit & 1}
    return None


def needed(settings: Settings) -> dict[str, list[str]]:
    """Capability → the settings of enabled services that need it."""
    low = unprivileged_port_start()
    need: dict[str, list[str]] = {}

    def add(cap: str, setting: str) -> None:
        need.setdefault(cap, []).append(setting)

    if 0 < settings.api.port < low:
        add(NET_BIND_SERVICE, "api.port")
    if settings.boot.enabled and 0 < settings.boot.http_port < low:
        add(NET_BIND_SERVICE, "boot.http_port")
    if settings.tftp.enabled and 0 < settings.tftp.port < low:
        add(NET_BIND_SERVICE, "tftp.port")
    if settings.dhcp.interfaces:
        if low > 67:
            add(NET_BIND_SERVICE, "dhcp.interfaces")
        add(NET_ADMIN, "dhcp.interfaces")
        if settings.dhcp.probe:
            add(NET_RAW, "dhcp.probe")
    if settings.discovery.subnets and settings.discovery.interface:
        add(NET_RAW, "discovery.interface")
    if settings.discovery.subnets and settings.discovery.netns:
        add(SYS_ADMIN, "discovery.netns")
    return need


def report(settings: Settings) -> None:
    """Log at start who Roost runs as and which needed capability it lacks (a warning)."""
    have = effective()
    need = needed(settings)
    if os.geteuid() == 0 and have is not None and set(need) <= have:
        log.warning(
            "running as root; Roost needs only %s (see 'Running with least privilege' in "
            "docs/architecture.md)",
            ", ".join(sorted(need)) or "no capability",
        )
        return
    log.info(
        "running as uid %d with %s", os.geteuid(), ", ".join(sorted(have or ())) or "no capability"
    )
    for cap, settings_ in sorted(need.items()):
        if have is not None and cap not in have:
            log.warning("%s is missing; needed by %s", cap, ", ".join(settings_))


def bind(sock: socket.socket, address: Any, setting: str) -> None:
    """``sock.bind(address)``; a refusal for a low port names ``CAP_NET_BIND_SERVICE``."""
    try:
        sock.bind(address)
    except PermissionError:
        kind = "TCP" if sock.type == socket.SOCK_STREAM else "UDP"
        raise MissingCapability(
            NET_BIND_SERVICE,
            setting,
            f"binding {kind} port {address[1]}",
            f"use a port of {unprivileged_port_start()} or above",
        ) from None


def raw_socket(family: int, proto: int, setting: str, otherwise: str) -> socket.socket:
    """A ``SOCK_RAW`` socket; a refusal names ``CAP_NET_RAW`` and ``setting``."""
    try:
        return socket.socket(family, socket.SOCK_RAW, proto)
    except PermissionError:
        what = "a packet socket" if family == socket.AF_PACKET else "a raw IP socket"
        raise MissingCapability(NET_RAW, setting, f"opening {what}", otherwise) from None
