"""Passive sighting: hosts announce themselves; Roost listens instead of probing.

Two kinds of frame mark a host as seen without any probe: a gratuitous ARP (an announcement
or probe for its own address, RFC 5227 §2.3, sent when an interface comes up or an address
moves) and a DHCP client message (DISCOVER/REQUEST/INFORM, RFC 2131 §4.4; the client's MAC
is ``chaddr``, its address ``ciaddr`` or option 50). :func:`sight` is the sans-IO part: one
frame in, a :class:`Sighting` or ``None`` out. :class:`PassiveListener` is the transport: a
raw socket on the interface with a classic BPF filter, so the kernel hands Roost only ARP and
DHCP-server-bound UDP, read through the event loop's ``add_reader``.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from roost.discovery import arp
from roost.discovery.netns import run_in_thread

log = logging.getLogger(__name__)

ETH_P_ALL = 0x0003
_SO_ATTACH_FILTER = 26
_MAGIC_COOKIE = b"\x63\x82\x53\x63"
_DHCP_CLIENT_TYPES = {1, 3, 8}  # DISCOVER, REQUEST, INFORM (RFC 2132 §9.6)

# "arp or (ip and udp dst port 67 and not a fragment)", as ``tcpdump -dd`` compiles it.
_BPF = (
    (0x28, 0, 0, 12),  # ldh [12]            ethertype
    (0x15, 8, 0, 0x0806),  # jeq ARP      -> accept
    (0x15, 0, 8, 0x0800),  # jne IPv4     -> drop
    (0x30, 0, 0, 23),  # ldb [23]            IP protocol
    (0x15, 0, 6, 17),  # jne UDP              -> drop
    (0x28, 0, 0, 20),  # ldh [20]            flags + fragment offset
    (0x45, 4, 0, 0x1FFF),  # jset offset  -> drop
    (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf)   IP header length
    (0x48, 0, 0, 16),  # ldh [x+16]          UDP destination port
    (0x15, 0, 1, 67),  # jne 67               -> drop
    (0x06, 0, 0, 0x40000),  # ret accept
    (0x06, 0, 0, 0),  # ret drop
)


@dataclass(frozen=True)
class Sighting:
    mac: str
    ip: str | None
    how: str
    """``garp`` or ``dhcp``."""


def sight(frame: bytes) -> Sighting | None:
    """What ``frame`` says about a host, if it is a gratuitous ARP or a DHCP client message."""
    try:
        _, _, etype, payload = arp.decode_frame(frame)
    except arp.ARPError:
        return None
    if etype == arp.ETH_P_ARP:
        try:
            pkt = arp.decode_arp(payload)
        except arp.ARPError:
            return None
        if pkt.gratuitous:
            return Sighting(arp.mac_str(pkt.sender_mac), str(pkt.sender_ip), "garp")
        if int(pkt.sender_ip) == 0 and pkt.op == arp.REQUEST:  # RFC 5227 probe
            return Sighting(arp.mac_str(pkt.sender_mac), None, "garp")
        return None
    if etype == arp.ETH_P_IP:
        return _dhcp(payload)
    return None


def _dhcp(ip_packet: bytes) -> Sighting | None:
    if len(ip_packet) < 20 or ip_packet[9] != 17:
        return None
    ihl = (ip_packet[0] & 0x0F) * 4
    udp = ip_packet[ihl:]
    if len(udp) < 8 or struct.unpack_from("!H", udp, 2)[0] != 67:
        return None
    bootp = udp[8:]
    # RFC 2131 §2: op(1) htype hlen hops xid(4) secs(2) flags(2) ciaddr yiaddr siaddr giaddr
    # chaddr(16) sname(64) file(128), then the magic cookie and options.
    if len(bootp) < 240 or bootp[0] != 1 or bootp[1] != 1 or bootp[2] != 6:
        return None
    if bootp[236:240] != _MAGIC_COOKIE:
        return None
    ciaddr = IPv4Address(bootp[12:16])
    mac = arp.mac_str(bootp[28:34])
    options = _options(bootp[240:])
    msg_type = options.get(53)
    if not msg_type or msg_type[0] not in _DHCP_CLIENT_TYPES:
        return None
    requested = options.get(50, b"")
    if int(ciaddr):
        ip: str | None = str(ciaddr)
    elif len(requested) == 4:
        ip = str(IPv4Address(requested))
    else:
        ip = None
    return Sighting(mac, ip, "dhcp")


def _options(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(data):
            break
        length = data[i + 1]
        out.setdefault(code, data[i + 2 : i + 2 + length])
        i += 2 + length
    return out


def _attach_filter(sock: socket.socket) -> None:
    insns = b"".join(struct.pack("HBBI", *ins) for ins in _BPF)
    buf = ctypes.create_string_buffer(insns)
    prog = struct.pack("HL", len(_BPF), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, prog)


def open_listener(ifname: str) -> socket.socket:
    sock, _ = arp.open_packet_socket(ifname, ETH_P_ALL)
    try:
        _attach_filter(sock)
        # Frames queued before the filter was attached may be anything: drop them.
        sock.setblocking(False)
        while True:
            try:
                sock.recv(4096)
            except BlockingIOError:
                break
    except BaseException:
        sock.close()
        raise
    return sock


class PassiveListener:
    """Reads sightings off ``ifname`` (in ``netns``) and hands them to ``on_sighting``."""

    def __init__(
        self, ifname: str, netns: str | None, on_sighting: Callable[[Sighting], None]
    ) -> None:
        self.ifname = ifname
        self.netns = netns
        self.on_sighting = on_sighting
        self.frames = 0
        self.ignored = 0
        self._sock: socket.socket | None = None

    async def start(self) -> None:
        self._sock = await run_in_thread(self.netns, lambda: open_listener(self.ifname))
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._readable)

    def stop(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _readable(self) -> None:
        assert self._sock is not None
        for _ in range(256):  # bounded, so a flood cannot starve the loop
            try:
                frame = self._sock.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                log.exception("passive listener on %s failed", self.ifname)
                return
            self.frames += 1
            seen = sight(frame)
            if seen is None:
                self.ignored += 1
            else:
                self.on_sighting(seen)
