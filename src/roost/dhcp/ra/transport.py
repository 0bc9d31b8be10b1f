"""The raw ICMPv6 socket that answers router solicitations and advertises on one interface.

One socket per interface, pinned with SO_BINDTODEVICE, joined to all-routers (ff02::2, where
solicitations go) and filtered by the kernel to router solicitations only. The kernel computes
and checks the ICMPv6 checksum; we send with hop limit 255 and drop what arrives with another
(RFC 4861 §6.1.1: only an on-link sender can produce 255). Advertisements go to all-nodes
(ff02::1) from the interface's link-local address, which the kernel picks; a solicitation
from an address is answered to that address within 0.5 s, one from ``::`` by the next multicast
advertisement (rate-limited to one per 3 s, see :mod:`roost.dhcp.ra.schedule`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from ipaddress import IPv6Address
from typing import Any

from roost.dhcp import metrics
from roost.dhcp.errors import MalformedPacket
from roost.dhcp.ra.codec import RouterAdvertisement, RouterSolicitation, decode, encode
from roost.dhcp.ra.schedule import MAX_RA_DELAY_TIME, Schedule

log = logging.getLogger(__name__)

ALL_NODES = "ff02::1"
ALL_ROUTERS = socket.inet_pton(socket.AF_INET6, "ff02::2")
ICMP6_FILTER = 1  # <netinet/icmp6.h>; not in the socket module
SIOCGIFHWADDR = 0x8927
BATCH = 64
# solicitors answered one by one per delay window; more at once share one multicast answer
MAX_UNICAST = 64


def hardware_address(ifname: str) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        res = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("256s", ifname.encode()[:15]))
    return res[18:24]


def _solicitations_only() -> bytes:
    """struct icmp6_filter passing type 133 alone (Linux: a set bit blocks that type)."""
    words = [0xFFFFFFFF] * 8
    words[133 >> 5] &= ~(1 << (133 & 31))
    return struct.pack("8I", *words)


def open_socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        index = socket.if_nametoindex(ifname)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _solicitations_only())
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        mreq = ALL_ROUTERS + struct.pack("@I", index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def own_addresses(ifname: str) -> set[str]:
    """This host's IPv6 addresses on ``ifname`` (/proc/net/if_inet6), in compressed form."""
    found = set()
    with contextlib.suppress(OSError), open("/proc/net/if_inet6") as f:
        for line in f:
            fields = line.split()
            if len(fields) == 6 and fields[5] == ifname:
                found.add(str(IPv6Address(bytes.fromhex(fields[0]))))
    return found


def _hop_limit(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT and len(data) >= 4:
            return int(struct.unpack("@i", data[:4])[0])
    return None


@dataclass(frozen=True, slots=True)
class Config:
    advertisement: RouterAdvertisement
    min_interval: float
    max_interval: float


class Advertiser:
    """Router advertisements on one interface, driven by the event loop's reader and timer."""

    def __init__(self, ifname: str, config: Config, emit: Callable[..., Any]) -> None:
        self.ifname, self.config, self.emit = ifname, config, emit
        self.sock: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._rng = random.Random()
        self._pending = False  # a solicitation is waiting for the next multicast advertisement
        self._unicast: set[str] = set()  # solicitors waiting for their own answer
        self._answer: asyncio.TimerHandle | None = None
        self._retry = 1.0  # seconds before a failed multicast advertisement is tried again

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if not any(IPv6Address(a).is_link_local for a in own_addresses(self.ifname)):
            # IPv6 off there (disable_ipv6): an advertisement needs a link-local source
            raise OSError(f"{self.ifname} has no IPv6 link-local address")
        mac = hardware_address(self.ifname)
        self.ra = encode(replace(self.config.advertisement, source_link_address=mac))
        self.sock = open_socket(self.ifname)
        self.schedule = Schedule(
            self.config.min_interval, self.config.max_interval, loop.time(), self._rng
        )
        loop.add_reader(self.sock.fileno(), self._drain)
        self._arm()
        adv = self.config.advertisement
        self.emit(
            "dhcp.ra.started",
            self.ifname,
            {
                "interface": self.ifname,
                "router_lifetime": adv.router_lifetime,
                "prefixes": [str(p.network) for p in adv.prefixes],
                "max_interval": self.config.max_interval,
            },
        )

    def stop(self) -> None:
        if self.sock is None:
            return
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        for timer in (self._timer, self._answer):
            if timer is not None:
                timer.cancel()
        if self.config.advertisement.router_lifetime:
            # RFC 4861 §6.2.5: a router that stops says so, with a router lifetime of 0
            final = replace(self.config.advertisement, router_lifetime=0, prefixes=())
            with contextlib.suppress(OSError):
                self.sock.sendto(
                    encode(final), (ALL_NODES, 0, 0, socket.if_nametoindex(self.ifname))
                )
        self.sock.close()
        self.sock = None

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(self.schedule.next_at, self._advertise)

    def _advertise(self) -> None:
        assert self.sock is not None
        loop = asyncio.get_running_loop()
        reason = "solicited" if self._pending else "unsolicited"
        self._pending = False
        try:
            self.sock.sendto(self.ra, (ALL_NODES, 0, 0, socket.if_nametoindex(self.ifname)))
        except OSError as exc:
            # e.g. the link-local address is still tentative (DAD): try again shortly
            # (IPv6 turned off on the interface: back off, up to the longest interval)
            log.debug("router advertisement on %s failed: %s", self.ifname, exc)
            metrics.RA_DROPPED.labels("send_error").inc()
            self.schedule.next_at = loop.time() + self._retry
            self._retry = min(self._retry * 2, self.config.max_interval)
        else:
            metrics.RA_SENT.labels(reason).inc()
            self.schedule.sent(loop.time())
            self._retry = 1.0
        self._arm()

    def _drain(self) -> None:
        assert self.sock is not None
        now = asyncio.get_running_loop().time()
        solicited = False
        own = own_addresses(self.ifname)
        for _ in range(BATCH):
            try:
                data, ancillary, _, src = self.sock.recvmsg(1500, socket.CMSG_SPACE(4))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                log.exception("ICMPv6 receive on %s failed", self.ifname)
                break
            if _hop_limit(ancillary) != 255:
                metrics.RA_DROPPED.labels("hop_limit").inc()
                continue
            try:
                msg = decode(data, IPv6Address(src[0].split("%")[0]))
            except (MalformedPacket, ValueError):
                metrics.RA_DROPPED.labels("malformed").inc()
                continue
            if not isinstance(msg, RouterSolicitation):
                continue
            source = str(IPv6Address(src[0].split("%")[0]))
            if source in own:  # this host's own kernel soliciting: not a client
                continue
            metrics.RA_SOLICITATIONS.inc()
            if IPv6Address(source).is_unspecified or len(self._unicast) >= MAX_UNICAST:
                solicited = True
            else:
                self._unicast.add(source)
        if self._unicast and self._answer is None:
            delay = self._rng.uniform(0, MAX_RA_DELAY_TIME)
            self._answer = asyncio.get_running_loop().call_later(delay, self._answer_unicast)
        if solicited:
            self._pending = True
            self.schedule.solicited(now)
            self._arm()

    def _answer_unicast(self) -> None:
        """Answer each waiting solicitor directly (RFC 4861 §6.2.6 allows it): not bound by the
        3 s limit of multicast advertisements, so each boot stage hears back within 0.5 s."""
        assert self.sock is not None
        self._answer = None
        index = socket.if_nametoindex(self.ifname)
        for dest in self._unicast:
            try:
                self.sock.sendto(self.ra, (dest, 0, 0, index))
            except OSError as exc:
                log.debug("router advertisement to %s failed: %s", dest, exc)
                metrics.RA_DROPPED.labels("send_error").inc()
            else:
                metrics.RA_SENT.labels("solicited").inc()
        self._unicast.clear()
