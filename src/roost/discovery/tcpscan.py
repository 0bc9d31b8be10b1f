"""TCP connect scan: many non-blocking ``connect()`` calls under one ``epoll``, adaptive.

A connect scan needs no privileges and is what the kernel's own stack reports, so it agrees
with ``nmap -sT``. Each probe is a non-blocking ``connect()``; ``epoll`` reports it writable
when it is *open*, or with an error: ``ECONNREFUSED`` (a RST) is *closed*,
``EHOSTUNREACH``/``ENETUNREACH`` (ICMP or no ARP answer) is *unreachable*; no answer within
the timeout is *filtered* after the retries. Open sockets close with ``SO_LINGER`` 0, so the
port sees a RST and neither side keeps a TIME_WAIT entry. A refused socket is reused for the
next probe: on Linux the next ``connect()`` hands over the pending error (which classifies
the previous probe) and resets the socket, and the one after sends the SYN, so a 65 535-port
scan makes a few thousand sockets and reads no ``SO_ERROR`` on its hot path.

Concurrency adapts like TCP's congestion window (AIMD): it grows by one per answered probe
up to ``max_concurrency`` and halves when probes time out, so a host that drops SYNs is not
flooded while a host that answers at once is scanned as fast as the rate limit allows.

On loopback a connect to a port in the ephemeral range can pick that very port as its source
and connect to itself (TCP simultaneous open); such a socket is recognised by its local and
peer addresses being equal and counts as closed.
"""

from __future__ import annotations

import errno
import resource
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

OPEN, CLOSED, FILTERED, UNREACHABLE = "open", "closed", "filtered", "unreachable"
_LINGER_RST = struct.pack("ii", 1, 0)
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN}
_OUT_OF_SOCKETS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EADDRNOTAVAIL}


@dataclass
class TCPStats:
    probes: int = 0
    open: int = 0
    closed: int = 0
    filtered: int = 0
    unreachable: int = 0
    max_window: int = 0


@dataclass
class Window:
    """AIMD concurrency window (no I/O; unit-tested on its own)."""

    limit: int
    size: int = 64
    floor: int = 8

    def __post_init__(self) -> None:
        self.size = min(self.size, self.limit)
        self.floor = min(self.floor, self.limit)

    def answered(self) -> None:
        self.size = min(self.limit, self.size + 1)

    def timed_out(self) -> None:
        self.size = max(self.floor, self.size // 2)


def raise_fd_limit(wanted: int) -> int:
    """Lift the soft open-files limit towards ``wanted``; return what a scan may use."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return max(16, soft - 64)  # keep room for the database, the API and logs


def scan_tcp(
    targets: Iterable[tuple[str, int]],
    *,
    total: int,
    max_concurrency: int = 2048,
    timeout: float = 1.0,
    retries: int = 1,
    rate: float = 100_000.0,
    stop: threading.Event,
    on_result: Callable[[str, int, str], None],
    on_progress: Callable[[int, int], None] | None = None,
    progress_every: float = 0.25,
) -> TCPStats:
    """Probe every ``(ip, port)``; report open ports (and each unreachable host) via ``on_result``.

    Closed and filtered ports are only counted; blocking, run it on its own thread. The loop
    is written for speed (a 65 535-port scan is 65 535 sockets): one deque of deadlines in
    start order instead of a heap (all probes share one timeout), no ``epoll.unregister``
    (closing a socket removes it), and ``SO_ERROR`` read only when ``epoll`` flags an error.
    """
    window = Window(min(max_concurrency, raise_fd_limit(max_concurrency + 64)))
    stats = TCPStats()
    todo = iter(targets)
    again: deque[tuple[str, int, int]] = deque()
    live: dict[int, _Probe] = {}
    deadlines: deque[tuple[float, int, _Probe]] = deque()
    # Refused sockets wait here for their next probe, with the probe whose error they still
    # hold: the next connect() returns that error (ECONNREFUSED, EHOSTUNREACH…) and resets
    # the socket, which saves reading SO_ERROR separately on the hot path.
    spare: list[tuple[socket.socket, _Probe | None]] = []
    dead_hosts: set[str] = set()
    loopback: dict[str, bool] = {}
    ep = select.epoll()
    counts = {OPEN: 0, CLOSED: 0, FILTERED: 0, UNREACHABLE: 0}
    settled = 0
    last_report = 0.0
    started = time.monotonic()
    exhausted = False
    # Edge-triggered: a refused socket waits in ``spare`` in CLOSE state, which is always
    # "writable"; with EPOLLET it is reported again only after its next connect settles.
    pollout, pollerr = select.EPOLLOUT | select.EPOLLET, select.EPOLLERR | select.EPOLLHUP

    def classify(probe: _Probe, err: int) -> None:
        # EPOLLERR was seen, so an error other than a refusal or unreachability is odd;
        # ECONNABORTED means the error was already taken: both count as closed.
        state = UNREACHABLE if err in _UNREACHABLE else CLOSED
        counts[state] += 1
        if state == UNREACHABLE and probe.ip not in dead_hosts:
            dead_hosts.add(probe.ip)
            on_result(probe.ip, probe.port, state)

    def finish(fd: int, probe: _Probe, state: str) -> None:
        nonlocal settled
        del live[fd]
        settled += 1
        if state == OPEN:
            probe.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        probe.sock.close()
        counts[state] += 1
        if state != FILTERED:
            window.answered()
        if state == OPEN:
            on_result(probe.ip, probe.port, state)
        elif state == UNREACHABLE and probe.ip not in dead_hosts:
            # Reported once per host: the rest of its probes are skipped or say the same.
            dead_hosts.add(probe.ip)
            on_result(probe.ip, probe.port, state)

    try:
        while not stop.is_set():
            now = time.monotonic()
            allowed = int((now - started) * rate) + 1 - stats.probes
            deadline = now + timeout
            while len(live) < window.size and allowed > 0:
                if again:
                    ip, port, tries = again.popleft()
                elif not exhausted:
                    nxt = next(todo, None)
                    if nxt is None:
                        exhausted = True
                        continue
                    ip, port, tries = nxt[0], nxt[1], 0
                else:
                    break
                if ip in dead_hosts:
                    counts[UNREACHABLE] += 1
                    settled += 1
                    continue
                if spare:
                    sock, held = spare.pop()
                    rc = sock.connect_ex((ip, port))
                    if held is not None:
                        classify(held, rc)
                    if rc != errno.EINPROGRESS:
                        # The first connect after a failure only hands over the pending error
                        # and resets the socket (Linux inet_stream_connect); this one sends.
                        rc = sock.connect_ex((ip, port))
                else:
                    try:
                        sock = socket.socket(
                            socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                        )
                    except OSError as exc:
                        if exc.errno not in _OUT_OF_SOCKETS:
                            raise
                        window.timed_out()  # out of sockets: shrink, retry this probe later
                        again.appendleft((ip, port, tries))
                        break
                    ep.register(sock.fileno(), pollout)
                    rc = sock.connect_ex((ip, port))
                if rc in _OUT_OF_SOCKETS:  # no free source port: shrink, retry this later
                    spare.append((sock, None))
                    window.timed_out()
                    again.appendleft((ip, port, tries))
                    break
                fd = sock.fileno()
                probe = _Probe(sock, ip, port, tries)
                live[fd] = probe
                if rc not in (errno.EINPROGRESS, 0):
                    # Settled inside connect() (loopback): close rather than recycle, so an
                    # edge epoll already queued for this fd cannot be read as the next probe's.
                    finish(fd, probe, _state_of(rc))
                    continue
                deadlines.append((deadline, fd, probe))
                stats.probes += 1
                allowed -= 1
            stats.max_window = max(stats.max_window, len(live))
            if not live and not again and exhausted:
                break
            full = len(live) >= window.size or allowed <= 0
            wait = min(0.05, max(0.0, deadlines[0][0] - now)) if deadlines else 0.05
            for fd, ev in ep.poll(wait if full else 0, 4096):
                got = live.get(fd)
                if got is None:
                    continue
                if ev & pollerr:
                    del live[fd]  # refused or unreachable: classified when the socket is reused
                    settled += 1
                    window.answered()
                    spare.append((got.sock, got))
                elif _is_loopback(got.ip, loopback) and _self_connected(got.sock):
                    finish(fd, got, CLOSED)
                else:
                    finish(fd, got, OPEN)
            now = time.monotonic()
            while deadlines and deadlines[0][0] <= now:
                _, fd, probe = deadlines.popleft()
                if live.get(fd) is not probe:
                    continue  # settled already (and the fd number maybe reused)
                window.timed_out()
                if probe.tries < retries:
                    del live[fd]
                    probe.sock.close()
                    again.append((probe.ip, probe.port, probe.tries + 1))
                else:
                    finish(fd, probe, FILTERED)
            if on_progress is not None and now - last_report >= progress_every:
                last_report = now
                on_progress(settled, total)
    finally:
        for probe in live.values():
            probe.sock.close()
        for sock, held in spare:
            if held is not None:
                classify(held, sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
            sock.close()
        ep.close()
    stats.open, stats.closed = counts[OPEN], counts[CLOSED]
    stats.filtered, stats.unreachable = counts[FILTERED], counts[UNREACHABLE]
    if on_progress is not None:
        on_progress(sum(counts.values()), total)
    return stats


@dataclass(slots=True)
class _Probe:
    sock: socket.socket
    ip: str
    port: int
    tries: int


def _state_of(err: int) -> str:
    if err in _UNREACHABLE:
        return UNREACHABLE
    return CLOSED if err == errno.ECONNREFUSED else FILTERED


def _self_connected(sock: socket.socket) -> bool:
    try:
        return bool(sock.getsockname() == sock.getpeername())
    except OSError:
        return True


def _is_loopback(ip: str, cache: dict[str, bool]) -> bool:
    found = cache.get(ip)
    if found is None:
        found = cache[ip] = IPv4Address(ip).is_loopback
    return found
