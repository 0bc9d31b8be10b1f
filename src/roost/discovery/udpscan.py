"""UDP scan: a protocol payload per well-known port, and ICMP-based classification.

UDP has no handshake, so a probe is a datagram that a service is likely to answer (a DNS
query on 53, an NTP request on 123, an SNMP get on 161, …; an empty datagram elsewhere,
as nmap does). Each probe uses its own *connected* UDP socket, because Linux then reports an
ICMP error for that flow on the socket itself (``ECONNREFUSED`` for port unreachable, RFC 1122
§4.1.3.3), without raw sockets or privileges. Outcomes:

* **open** — any reply;
* **closed** — ICMP port unreachable;
* **filtered** — another ICMP unreachable (host or administratively prohibited);
* **open|filtered** — silence after every retry (a service that ignored the payload, or a
  firewall that drops; UDP cannot tell them apart).

Hosts rate-limit ICMP errors (Linux: ``net.ipv4.icmp_ratelimit``, one per second after a
burst), so the default rate is modest and silence is retried before it is believed.
"""

from __future__ import annotations

import errno
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

OPEN, CLOSED, FILTERED, OPEN_FILTERED = "open", "closed", "filtered", "open|filtered"

_SNMP_GET_SYSDESCR = bytes.fromhex(
    "302602010004067075626c6963a019020101020100020100300e300c06082b060102010101000500"
)
PAYLOADS: dict[int, bytes] = {
    7: b"roost\n",  # echo
    # DNS: a standard query for the root's NS records (RFC 1035 §4.1); any answer means open.
    53: bytes.fromhex("13370100000100000000000000000200 01".replace(" ", "")),
    # TFTP read request (RFC 1350 §5); a server answers with data or an error packet.
    69: b"\x00\x01roost-probe\x00octet\x00",
    # NTP version 3 client request (RFC 5905 §7.3), 48 bytes.
    123: b"\x1b" + b"\x00" * 47,
    # NetBIOS node status request for "*" (RFC 1002 §4.2.17).
    # The name "*" in first-level encoding is "CK" and 30 "A"s (RFC 1001 §14.1).
    137: bytes.fromhex("80f0 0000 0001 0000 0000 0000 20") + b"CK" + b"A" * 30 + b"\0\0\x21\0\x01",
    161: _SNMP_GET_SYSDESCR,  # SNMPv1 get sysDescr.0, community "public" (RFC 1157)
    # SSDP discovery (UPnP Device Architecture 1.1 §1.3.2).
    1900: (
        b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n"
        b'MAN: "ssdp:discover"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n'
    ),
    # mDNS query for the DNS-SD service list (RFC 6763 §9), unicast response requested.
    5353: bytes.fromhex(
        "000000000001000000000000095f7365727669636573075f646e732d7364045f756470056c6f63616c00000c8001"
    ),
}


def payload_for(port: int) -> bytes:
    return PAYLOADS.get(port, b"")


@dataclass
class UDPStats:
    probes: int = 0
    open: int = 0
    closed: int = 0
    filtered: int = 0
    open_filtered: int = 0


@dataclass(slots=True)
class _Probe:
    sock: socket.socket
    ip: str
    port: int
    tries: int
    deadline: float


def scan_udp(
    targets: Iterable[tuple[str, int]],
    *,
    total: int,
    concurrency: int = 256,
    timeout: float = 1.0,
    retries: int = 1,
    rate: float = 1000.0,
    stop: threading.Event,
    on_result: Callable[[str, int, str], None],
    on_progress: Callable[[int, int], None] | None = None,
    progress_every: float = 0.25,
) -> UDPStats:
    """Probe every ``(ip, port)`` and report each outcome through ``on_result``. Blocking."""
    stats = UDPStats()
    todo = iter(targets)
    live: dict[int, _Probe] = {}
    order: deque[_Probe] = deque()
    ep = select.epoll()
    settled = 0
    sent = 0
    started = time.monotonic()
    last_report = 0.0
    exhausted = False

    def finish(probe: _Probe, state: str) -> None:
        nonlocal settled
        live.pop(probe.sock.fileno(), None)
        probe.sock.close()
        settled += 1
        key = state.replace("|", "_")
        setattr(stats, key, getattr(stats, key) + 1)
        on_result(probe.ip, probe.port, state)

    def send(probe: _Probe, now: float) -> None:
        nonlocal sent
        sent += 1
        stats.probes += 1
        probe.deadline = now + timeout
        order.append(probe)
        try:
            probe.sock.send(payload_for(probe.port))
        except OSError as exc:  # an ICMP error from an earlier try can surface here
            finish(probe, _state_of(exc.errno))

    try:
        while not stop.is_set():
            now = time.monotonic()
            allowed = int((now - started) * rate) + 1 - sent
            while len(live) < concurrency and allowed > 0 and not exhausted:
                nxt = next(todo, None)
                if nxt is None:
                    exhausted = True
                    break
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
                try:
                    sock.connect(nxt)
                except OSError as exc:
                    sock.close()
                    settled += 1
                    stats.filtered += 1
                    on_result(nxt[0], nxt[1], _state_of(exc.errno))
                    continue
                probe = _Probe(sock, nxt[0], nxt[1], 0, 0.0)
                live[sock.fileno()] = probe
                ep.register(sock.fileno(), select.EPOLLIN)
                send(probe, now)
                allowed -= 1
            if not live and exhausted:
                break
            for fd, _ in ep.poll(0.02):
                got = live.get(fd)
                if got is None:
                    continue
                try:
                    got.sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    finish(got, _state_of(exc.errno))
                else:
                    finish(got, OPEN)
            now = time.monotonic()
            while order and (
                order[0].deadline <= now or live.get(order[0].sock.fileno()) is not order[0]
            ):
                probe = order.popleft()
                if live.get(probe.sock.fileno()) is not probe or probe.deadline > now:
                    continue
                if probe.tries < retries and int((now - started) * rate) + 1 > sent:
                    probe.tries += 1
                    send(probe, now)
                elif probe.tries >= retries:
                    finish(probe, OPEN_FILTERED)
                else:
                    order.appendleft(probe)  # rate limit reached: retry on a later turn
                    break
            if on_progress is not None and now - last_report >= progress_every:
                last_report = now
                on_progress(settled, total)
    finally:
        for probe in live.values():
            probe.sock.close()
        ep.close()
    if on_progress is not None:
        on_progress(settled, total)
    return stats


def _state_of(err: int | None) -> str:
    if err == errno.ECONNREFUSED:
        return CLOSED
    return FILTERED
