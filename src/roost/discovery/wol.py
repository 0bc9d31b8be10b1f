"""Wake-on-LAN: magic packets out, and a watcher that confirms the machine came up.

A magic packet (AMD "Magic Packet" white paper, 1995) is six 0xFF bytes and the target MAC
sixteen times, optionally followed by a 4- or 6-byte SecureOn password. The NIC looks for that
pattern in *any* frame, so Roost sends it both as a UDP broadcast (port 9, to the limited or a
directed broadcast address) and as a raw Ethernet frame with EtherType 0x0842, which needs
no IP configuration at all on either side.

The wake is *confirmed* when the machine answers: an ARP reply (or announcement) from its
MAC, or an ICMP echo reply from its address. The watcher asks for both every half second
until ``confirm_timeout``. :func:`wake` is the one entry point; the inventory's ``wol`` power
driver calls it (its signature is documented in docs/discovery.md).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from roost.discovery import arp
from roost.discovery.netns import run_in_thread

ETH_P_WOL = 0x0842
_SYNC = b"\xff" * 6
_SO_BINDTODEVICE = 25


class WakeError(ValueError):
    """The MAC or password cannot form a magic packet."""


def magic_packet(mac: str, password: str | None = None) -> bytes:
    """The magic packet for ``mac``; ``password`` is a SecureOn password (MAC-like or IPv4)."""
    try:
        target = arp.mac_bytes(mac)
    except ValueError as exc:
        raise WakeError(str(exc)) from None
    return _SYNC + target * 16 + secureon(password)


def secureon(password: str | None) -> bytes:
    """SecureOn password bytes: 6 (``aa:bb:…``) or 4 (dotted quad), empty for none."""
    if not password:
        return b""
    if "." in password:
        try:
            return IPv4Address(password).packed
        except ValueError:
            raise WakeError(f"SecureOn password {password!r}: not a.b.c.d") from None
    try:
        return arp.mac_bytes(password)
    except ValueError:
        raise WakeError(f"SecureOn password {password!r}: not aa:bb:cc:dd:ee:ff") from None


def find_magic(data: bytes) -> tuple[str, bytes] | None:
    """The target MAC and trailing password of the first magic packet inside ``data``."""
    start = data.find(_SYNC)
    while start != -1:
        body = data[start + 6 : start + 6 + 96]
        if len(body) == 96 and body[:6] != _SYNC and body == body[:6] * 16:
            tail = data[start + 102 : start + 108]
            return arp.mac_str(body[:6]), tail if len(tail) in (4, 6) else b""
        start = data.find(_SYNC, start + 1)
    return None


def icmp_echo(ident: int, seq: int, payload: bytes = b"roost-wake") -> bytes:
    """An ICMP echo request (RFC 792) with its checksum (RFC 1071)."""
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


@dataclass(frozen=True)
class WakeResult:
    mac: str
    ip: str | None
    confirmed: bool
    sent: tuple[str, ...]
    """How the packet left: ``udp:<broadcast>:<port>`` and/or ``ethernet:<interface>``."""
    via: str | None = None
    """What confirmed the wake: ``arp`` or ``icmp``."""
    elapsed: float = 0.0
    """Seconds from the first packet to the confirmation (or the timeout)."""


def send_magic(
    mac: str,
    *,
    broadcast: str = "255.255.255.255",
    port: int = 9,
    interface: str | None = None,
    password: str | None = None,
    methods: Sequence[str] = ("udp", "ethernet"),
    repeat: int = 3,
) -> tuple[str, ...]:
    """Send the magic packet ``repeat`` times by each method; return what was sent. Blocking."""
    packet = magic_packet(mac, password)
    sent: list[str] = []
    if "udp" in methods:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            if interface:
                s.setsockopt(socket.SOL_SOCKET, _SO_BINDTODEVICE, interface.encode())
            for _ in range(repeat):
                s.sendto(packet, (broadcast, port))
        sent.append(f"udp:{broadcast}:{port}")
    if "ethernet" in methods and interface:
        sock, my_mac = arp.open_packet_socket(interface, ETH_P_WOL)
        with sock:
            frame = arp.encode_frame(arp.BROADCAST, my_mac, ETH_P_WOL, packet)
            for _ in range(repeat):
                sock.send(frame)
        sent.append(f"ethernet:{interface}")
    return tuple(sent)


def watch(
    mac: str,
    ip: str | None,
    *,
    interface: str | None,
    timeout: float,
    stop: threading.Event,
    interval: float = 0.5,
) -> str | None:
    """Wait until ``mac`` answers ARP or ``ip`` answers ping; return ``"arp"``/``"icmp"``."""
    want = arp.mac_bytes(mac)
    target = IPv4Address(ip) if ip else None
    socks: list[socket.socket] = []
    arp_sock = icmp_sock = None
    my_mac, my_ip = b"", IPv4Address(0)
    if interface:
        arp_sock, my_mac = arp.open_packet_socket(interface, arp.ETH_P_ARP)
        my_ip = arp.interface_ipv4(interface) or my_ip
        socks.append(arp_sock)
    if target is not None:
        icmp_sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        if interface:
            icmp_sock.setsockopt(socket.SOL_SOCKET, _SO_BINDTODEVICE, interface.encode())
        socks.append(icmp_sock)
    ident, seq = os.getpid() & 0xFFFF, 0
    deadline = time.monotonic() + timeout
    next_ask = 0.0
    try:
        while not stop.is_set() and (now := time.monotonic()) < deadline:
            if now >= next_ask and target is not None:
                next_ask = now + interval
                seq = (seq + 1) & 0xFFFF
                if arp_sock is not None:
                    arp_sock.send(arp.request_frame(my_mac, my_ip, target))
                if icmp_sock is not None:
                    icmp_sock.sendto(icmp_echo(ident, seq), (str(target), 0))
            wait = min(deadline, next_ask if target is not None else deadline) - time.monotonic()
            readable, _, _ = select.select(socks, [], [], max(0.0, min(wait, 0.5)))
            for sock in readable:
                data = sock.recv(2048)
                if sock is arp_sock:
                    pkt = arp.parse_reply(data)
                    if pkt is not None and pkt.sender_mac == want:
                        return "arp"
                elif _is_echo_reply(data, target, ident):
                    return "icmp"
    finally:
        for sock in socks:
            sock.close()
    return None


def _is_echo_reply(data: bytes, target: IPv4Address | None, ident: int) -> bool:
    if target is None or len(data) < 28:
        return False
    ihl = (data[0] & 0x0F) * 4
    if data[12:16] != target.packed or len(data) < ihl + 8:
        return False
    icmp_type, _, _, rid = struct.unpack_from("!BBHH", data, ihl)
    return bool(icmp_type == 0 and rid == ident)


async def wake(
    mac: str,
    *,
    ip: str | None = None,
    broadcast: str | None = None,
    port: int = 9,
    interface: str | None = None,
    netns: str | None = None,
    password: str | None = None,
    methods: Sequence[str] = ("udp", "ethernet"),
    confirm: bool = True,
    confirm_timeout: float = 120.0,
    stop: threading.Event | None = None,
    on_sent: Callable[[tuple[str, ...]], Awaitable[None]] | None = None,
) -> WakeResult:
    """Wake ``mac`` and, with ``confirm``, wait until it answers or ``confirm_timeout`` passes.

    ``broadcast`` defaults to 255.255.255.255 (bound to ``interface`` when given); pass the
    subnet's directed broadcast to cross a router that forwards it. ``on_sent`` is awaited once
    the packets are out, before the watch (the service publishes ``power.wake.sent`` there).
    """
    mac = arp.mac_str(arp.mac_bytes(mac)) if _valid(mac) else mac
    magic_packet(mac, password)  # validate before any I/O
    stop = stop or threading.Event()
    start = time.monotonic()
    sent = await run_in_thread(
        netns,
        lambda: send_magic(
            mac,
            broadcast=broadcast or "255.255.255.255",
            port=port,
            interface=interface,
            password=password,
            methods=methods,
        ),
    )
    if on_sent is not None:
        await on_sent(sent)
    if not confirm:
        return WakeResult(mac, ip, False, sent)
    via = await run_in_thread(
        netns, lambda: watch(mac, ip, interface=interface, timeout=confirm_timeout, stop=stop)
    )
    return WakeResult(mac, ip, via is not None, sent, via, time.monotonic() - start)


def _valid(mac: str) -> bool:
    try:
        arp.mac_bytes(mac)
    except ValueError:
        return False
    return True
