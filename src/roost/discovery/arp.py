"""ARP over Ethernet: a sans-IO codec, the sweep state machine, and a thin AF_PACKET sweeper.

The codec turns bytes into :class:`ARPPacket` and back (RFC 826) with no sockets. The sweep
state machine (:class:`Sweep`) decides, as a function of an injected ``now``, which addresses
to ask next under a rate limit, when an unanswered request is retried and when the sweep is
over; it never touches a socket either, so its timing is unit-tested without a network. The
sweeper (:func:`sweep`) is the small blocking loop around both: one raw ``AF_PACKET`` socket
bound to the interface, frames out at the allowed rate, replies in through ``select``. It runs
on its own thread (see :mod:`roost.discovery.netns`).
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from roost import privileges

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
BROADCAST = b"\xff" * 6
_ETH = struct.Struct("!6s6sH")
# RFC 826: hardware type 1 (Ethernet), protocol 0x0800, lengths 6 and 4, then the op code.
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_MIN_FRAME = 60  # IEEE 802.3 minimum frame without FCS; the kernel does not pad for us
_SIOCGIFADDR = 0x8915

_ONE = 1.0 - 1e-9  # a whole token, allowing for float rounding in the refill

REQUEST = 1
REPLY = 2


class ARPError(ValueError):
    """The bytes are not an Ethernet/IPv4 ARP packet."""


def mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def mac_bytes(text: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff``, ``aa-bb-…`` or ``aabbccddeeff`` to 6 bytes."""
    digits = text.replace(":", "").replace("-", "").replace(".", "")
    if len(digits) != 12:
        raise ValueError(f"not a MAC address: {text!r}")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise ValueError(f"not a MAC address: {text!r}") from None


@dataclass(frozen=True)
class ARPPacket:
    op: int
    sender_mac: bytes
    sender_ip: IPv4Address
    target_mac: bytes
    target_ip: IPv4Address

    @property
    def gratuitous(self) -> bool:
        """An announcement: the sender asks for (or states) its own address (RFC 5227 §3)."""
        return self.sender_ip == self.target_ip and int(self.sender_ip) != 0


def encode_arp(pkt: ARPPacket) -> bytes:
    return _ARP.pack(
        1,
        ETH_P_IP,
        6,
        4,
        pkt.op,
        pkt.sender_mac,
        pkt.sender_ip.packed,
        pkt.target_mac,
        pkt.target_ip.packed,
    )


def decode_arp(data: bytes) -> ARPPacket:
    if len(data) < _ARP.size:
        raise ARPError(f"ARP packet too short ({len(data)} bytes)")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(data)
    if (htype, ptype, hlen, plen) != (1, ETH_P_IP, 6, 4):
        raise ARPError(f"not Ethernet/IPv4 ARP (htype {htype}, ptype {ptype:#06x})")
    if op not in (REQUEST, REPLY):
        raise ARPError(f"unknown ARP op {op}")
    return ARPPacket(op, sha, IPv4Address(spa), tha, IPv4Address(tpa))


def encode_frame(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    frame = _ETH.pack(dst, src, ethertype) + payload
    return frame.ljust(_MIN_FRAME, b"\0")


def decode_frame(data: bytes) -> tuple[bytes, bytes, int, bytes]:
    """``(dst, src, ethertype, payload)``; 802.1Q tags are stepped over."""
    if len(data) < _ETH.size:
        raise ARPError(f"frame too short ({len(data)} bytes)")
    dst, src, etype = _ETH.unpack_from(data)
    offset = _ETH.size
    while etype == 0x8100 and len(data) >= offset + 4:
        (etype,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4
    return dst, src, etype, data[offset:]


def request_frame(src_mac: bytes, src_ip: IPv4Address, target_ip: IPv4Address) -> bytes:
    """A broadcast who-has; ``src_ip`` 0.0.0.0 makes it an ARP probe (RFC 5227 §2.1.1)."""
    pkt = ARPPacket(REQUEST, src_mac, src_ip, b"\0" * 6, target_ip)
    return encode_frame(BROADCAST, src_mac, ETH_P_ARP, encode_arp(pkt))


def parse_reply(frame: bytes) -> ARPPacket | None:
    """The ARP packet in ``frame``, or ``None`` when it is something else or malformed."""
    try:
        _, _, etype, payload = decode_frame(frame)
        if etype != ETH_P_ARP:
            return None
        return decode_arp(payload)
    except ARPError:
        return None


@dataclass
class Sweep:
    """Which address to ask next, and when the sweep is over, as a function of ``now``.

    Each target gets up to ``attempts`` requests, ``timeout`` seconds apart; requests leave
    at no more than ``rate`` per second (a token bucket with a burst of one tick). A target
    that answers is never asked again.
    """

    targets: list[IPv4Address]
    rate: float
    attempts: int
    timeout: float
    found: dict[IPv4Address, bytes] = field(default_factory=dict)
    _queue: deque[IPv4Address] = field(default_factory=deque)
    _waiting: deque[tuple[float, IPv4Address]] = field(default_factory=deque)
    _tries: dict[IPv4Address, int] = field(default_factory=dict)
    ignored: int = 0
    """Frames that were not a reply to us: other ARP traffic, malformed, or unasked."""
    _tokens: float = 1.0
    _last: float | None = None

    def __post_init__(self) -> None:
        self._queue.extend(self.targets)
        self._wanted = set(self.targets)

    def due(self, now: float) -> list[IPv4Address]:
        """Addresses to send a request to now; call again at :meth:`next_deadline`."""
        self._expire(now)
        if self._last is not None:
            self._tokens = min(
                max(self.rate * 0.002, 1.0), self._tokens + (now - self._last) * self.rate
            )
        self._last = now
        out: list[IPv4Address] = []
        while self._queue and self._tokens >= _ONE:
            ip = self._queue.popleft()
            if ip in self.found:
                continue
            self._tokens -= 1.0
            self._tries[ip] = self._tries.get(ip, 0) + 1
            self._waiting.append((now + self.timeout, ip))
            out.append(ip)
        return out

    def _expire(self, now: float) -> None:
        while self._waiting and self._waiting[0][0] <= now:
            _, ip = self._waiting.popleft()
            if ip not in self.found and self._tries[ip] < self.attempts:
                self._queue.append(ip)

    def answer(self, ip: IPv4Address, mac: bytes) -> bool:
        """Record a reply; ``True`` when it is new and for an address we asked about."""
        if ip not in self._wanted or ip in self.found:
            return False
        self.found[ip] = mac
        return True

    def next_deadline(self, now: float) -> float | None:
        """When :meth:`due` has something to do next; ``None`` when the sweep is over."""
        if self._queue:
            return now if self._tokens >= _ONE else now + (1.0 - self._tokens) / self.rate
        # Deadlines are appended in time order, so the first unanswered one is the earliest.
        while self._waiting and self._waiting[0][1] in self.found:
            self._waiting.popleft()
        return self._waiting[0][0] if self._waiting else None

    @property
    def sent(self) -> int:
        return sum(self._tries.values())

    @property
    def progress(self) -> float:
        """Fraction of targets that are settled (answered or out of attempts)."""
        if not self.targets:
            return 1.0
        waiting = {ip for _, ip in self._waiting}
        open_ = sum(
            1
            for ip in self._wanted
            if ip not in self.found and (ip in waiting or ip in self._queue)
        )
        return 1.0 - open_ / len(self.targets)


def interface_ipv4(ifname: str) -> IPv4Address | None:
    """The primary IPv4 address of ``ifname`` (in the calling thread's namespace)."""
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", ifname.encode()[:15]))
        except OSError:
            return None
    return IPv4Address(res[20:24])


def open_packet_socket(ifname: str, proto: int) -> tuple[socket.socket, bytes]:
    """A raw socket bound to ``ifname`` for one EtherType, and the interface's MAC."""
    sock = privileges.raw_socket(
        socket.AF_PACKET,
        socket.htons(proto),
        "discovery.interface",
        "leave discovery.interface empty (port scans need no capability)",
    )
    try:
        sock.bind((ifname, proto))
        mac = sock.getsockname()[4]
    except OSError:
        sock.close()
        raise
    return sock, bytes(mac)


def sweep(
    ifname: str,
    targets: Iterable[IPv4Address],
    *,
    rate: float,
    attempts: int,
    timeout: float,
    stop: threading.Event,
    on_found: Callable[[IPv4Address, str], None] | None = None,
    on_progress: Callable[[float, int], None] | None = None,
    progress_every: float = 0.25,
) -> Sweep:
    """ARP-sweep ``targets`` on ``ifname``; the returned state's ``found`` maps each address
    that answered to its MAC (``sent`` and ``ignored`` count requests and stray frames).

    Blocking; run it with :func:`roost.discovery.netns.run_in_thread`. Replies from addresses
    that were not asked about (and our own) are ignored, so the result holds nothing else.
    """
    sock, my_mac = open_packet_socket(ifname, ETH_P_ARP)
    my_ip = interface_ipv4(ifname) or IPv4Address(0)
    state = Sweep([t for t in targets if t != my_ip], rate, attempts, timeout)
    last_report = 0.0
    try:
        sock.setblocking(False)
        while not stop.is_set():
            now = time.monotonic()
            for ip in state.due(now):
                try:
                    sock.send(request_frame(my_mac, my_ip, ip))
                except BlockingIOError:
                    select.select([], [sock], [], 0.01)
            deadline = state.next_deadline(time.monotonic())
            if deadline is None:
                break
            wait = max(0.0, min(deadline - time.monotonic(), 0.1))
            readable, _, _ = select.select([sock], [], [], wait)
            if readable:
                _drain(sock, my_mac, state, on_found)
            if on_progress is not None and now - last_report >= progress_every:
                last_report = now
                on_progress(state.progress, len(state.found))
        _drain(sock, my_mac, state, on_found)
    finally:
        sock.close()
    if on_progress is not None:
        on_progress(1.0, len(state.found))
    return state


def _drain(
    sock: socket.socket,
    my_mac: bytes,
    state: Sweep,
    on_found: Callable[[IPv4Address, str], None] | None,
) -> None:
    while True:
        try:
            frame = sock.recv(2048)
        except BlockingIOError:
            return
        pkt = parse_reply(frame)
        if pkt is None or pkt.op != REPLY or pkt.sender_mac == my_mac:
            state.ignored += 1
            continue
        if not state.answer(pkt.sender_ip, pkt.sender_mac):
            state.ignored += 1
        elif on_found is not None:
            on_found(pkt.sender_ip, mac_str(pkt.sender_mac))
