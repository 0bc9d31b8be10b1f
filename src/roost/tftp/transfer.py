"""Transfers' transport: each its own socket and timer around a :class:`TFTPSession`, all of
one process carried by one :class:`Carrier`.

A transfer's socket is bound to the address the request was sent to and connected to the
client, which gives the transfer its own TID (RFC 1350 §4) and lets the kernel drop datagrams
from anyone else. The carrier keeps every transfer socket of the process in one ``epoll`` set,
which is a single reader in the event loop: a wake-up serves every transfer with an ACK waiting,
one plain non-blocking ``recv`` and ``send`` each, with no per-socket callback machinery, one
clock read per wake-up and no per-packet allocation beyond the packet itself. A lockstep ACK
takes the session's one-call hot path (:meth:`TFTPSession.receive_ack`). Small files on disk are
served from one shared in-memory snapshot (:class:`Snapshots`), so many transfers of the same
boot file cut their blocks from one copy that stays in the CPU cache. Timers are re-armed
lazily: deadlines only move later, so when one fires early it is simply set again to the
session's current deadline instead of being cancelled and recreated on every ACK. A window of
DATA packets goes out with UDP GSO: its first packet alone, then one ``send`` for up to 44
packets of 1472 bytes. With ``busy_poll`` the carrier polls for the next ACK a little before it
sleeps (:class:`BusyPoll`). The same classes run in the server process and in worker processes
(:mod:`roost.tftp.worker`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import select
import socket
from collections.abc import Callable
from dataclasses import dataclass

from roost.tftp.codec import Request
from roost.tftp.files import Snapshots, TFTPFile
from roost.tftp.session import Limits, TFTPSession

__all__ = [
    "BusyPoll",
    "Carrier",
    "Transfer",
    "TransferResult",
    "enable_gso",
    "open_session",
    "send_window",
]

log = logging.getLogger(__name__)

_UDP_SEGMENT = 103  # linux/udp.h; Python does not export it
_GSO_MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS on kernels before 6.x; newer allow more
_GSO_MAX_BYTES = 65000  # one send is one IP datagram before segmentation
_BATCH = 512  # ready transfers looked at per wake-up before the loop runs anything else
_HOLD = 0.001  # longest a busy-polling carrier keeps the event loop from its other work
_MAX_BACKOFF = 6  # after misses in a row, skip busy polling for up to 2**6 - 1 wake-ups


@dataclass(frozen=True)
class TransferResult:
    outcome: str
    bytes: int
    blksize: int
    windowsize: int
    malformed: int
    """Datagrams on the transfer's port that were not TFTP, dropped."""


def enable_gso(sock: socket.socket, segment: int) -> int:
    """Let the kernel cut one send into ``segment``-sized datagrams (UDP GSO, Linux 4.18+).

    Only DATA windows are batched, and in a window every packet but the file's last one has
    the same size, which is exactly what UDP GSO needs. Returns packets per send, 0 if off.
    """
    per_send = min(_GSO_MAX_SEGMENTS, _GSO_MAX_BYTES // segment)
    if per_send < 2:
        return 0
    try:
        sock.setsockopt(socket.IPPROTO_UDP, _UDP_SEGMENT, segment)
    except OSError:
        return 0
    return per_send


def open_session(
    snapshots: Snapshots,
    sock: socket.socket,
    request: Request,
    file: TFTPFile,
    limits: Limits,
    now: float,
    blocking: bool = False,
) -> TFTPSession:
    """The session of a transfer that starts now, its file shared through ``snapshots`` and
    ``sock`` set ``blocking`` or not. A carrier owns ``sock`` and ``file`` from the call on:
    when this raises, both are closed."""
    try:
        file = snapshots.share(file)
        session = TFTPSession(request, file, limits, now)
        sock.setblocking(blocking)
    except BaseException:
        sock.close()
        file.close()
        raise
    return session


def send_window(send: Callable[[bytes], int], out: list[bytes], gso: int) -> int:
    """Send a window: with UDP GSO (``gso`` packets per send) one send per run of full-size
    packets, else one per packet. Returns ``gso``, or 0 once the route refuses GSO."""
    if not gso:
        for datagram in out:
            send(datagram)
        return 0
    # The first packet alone, then the rest in one send: the client wakes and starts on it
    # while the kernel segments and delivers the others (5 % more at windowsize 16 here than
    # one send for all).
    send(out[0])
    for i in range(1, len(out), gso):
        try:
            send(b"".join(out[i : i + gso]))
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            # The route cannot checksum-offload segments (udp_send_skb): stop batching.
            for datagram in out[i:]:
                send(datagram)
            return 0
    return gso


class BusyPoll:
    """When a carrier polls before it sleeps: a window of ``window`` seconds, tried again only
    after exponentially more wake-ups while windows keep ending with nothing caught, so slow
    clients (firmware on a real LAN, answering in milliseconds) cost almost no spinning."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.misses = 0
        self.skip = 0

    def should_spin(self) -> bool:
        if self.skip:
            self.skip -= 1
            return False
        return True

    def ended(self, caught: bool) -> None:
        """A spin ended; ``caught`` says whether any datagram arrived during it."""
        if caught:
            self.misses = 0
        else:
            self.misses = min(self.misses + 1, _MAX_BACKOFF)
            self.skip = (1 << self.misses) - 1


class Carrier:
    """Carries the transfers of one process; see the module docstring."""

    def __init__(self, busy_poll: float = 0.0, hold: float = _HOLD) -> None:
        self.loop = asyncio.get_running_loop()
        self.spin = BusyPoll(busy_poll)
        self.hold = hold
        self.wakeups = 0
        """Times the event loop has called the carrier (each one a wake-up when it slept)."""
        self.snapshots = Snapshots()
        self._epoll = select.epoll()
        self._transfers: dict[int, Transfer] = {}
        self.loop.add_reader(self._epoll.fileno(), self._ready)

    def __len__(self) -> int:
        return len(self._transfers)

    def start(
        self,
        sock: socket.socket,
        request: Request,
        file: TFTPFile,
        limits: Limits,
        on_done: Callable[[Transfer, TransferResult], None],
    ) -> Transfer:
        """Serve ``file`` for ``request`` over ``sock`` (bound, connected) until it ends; owns
        the socket and the file from here on, also when this raises."""
        session = open_session(self.snapshots, sock, request, file, limits, self.loop.time())
        transfer = Transfer(self, sock, session, request.filename, on_done)
        self._transfers[sock.fileno()] = transfer
        self._epoll.register(sock.fileno(), select.EPOLLIN)
        transfer.begin()
        return transfer

    def close(self) -> None:
        """End every transfer (``stopped``) and stop watching."""
        for transfer in list(self._transfers.values()):
            transfer.finish("stopped")
        self.loop.remove_reader(self._epoll.fileno())
        self._epoll.close()

    def _ready(self) -> None:
        self.wakeups += 1
        clock, poll, yield_cpu = self.loop.time, self._epoll.poll, os.sched_yield
        now = clock()
        self._serve(poll(0, _BATCH), now)
        spin = self.spin
        if not spin.window or not self._transfers or not spin.should_spin():
            return
        # Keep polling for the next ACK instead of sleeping: a fast client's answer is caught
        # without the wake-up of a sleeping thread (and, in a VM, of an idle vCPU), which is
        # most of a lockstep round trip. Bounded: a window without an ACK ends it, any other
        # runnable task gets the CPU between polls, and after ``hold`` seconds the event loop
        # gets its turn (timers, new requests, DHCP in the same process).
        hold_until = now + self.hold
        caught = False
        while True:
            spin_until = now + spin.window
            while not (ready := poll(0, _BATCH)):
                now = clock()
                if now >= spin_until:
                    spin.ended(caught)
                    return
                yield_cpu()
            caught = True
            now = clock()
            self._serve(ready, now)
            if now >= hold_until or not self._transfers:
                spin.ended(caught)
                return

    def _serve(self, ready: list[tuple[int, int]], now: float) -> None:
        transfers = self._transfers
        for fd, _events in ready:
            transfer = transfers.get(fd)
            if transfer is not None:
                transfer.readable(now)

    def _forget(self, fd: int) -> None:
        del self._transfers[fd]
        self._epoll.unregister(fd)


class Transfer:
    """Runs ``session`` over ``sock`` until it ends, then calls ``on_done``; made by
    :meth:`Carrier.start`."""

    def __init__(
        self,
        carrier: Carrier,
        sock: socket.socket,
        session: TFTPSession,
        name: str,
        on_done: Callable[[Transfer, TransferResult], None],
    ) -> None:
        self.carrier = carrier
        self.loop = carrier.loop
        self.sock = sock
        self.fd = sock.fileno()
        self._recv = sock.recv
        self._send = sock.send
        self.session = session
        self.name = name
        self.on_done = on_done
        self.malformed = 0
        self.timer: asyncio.TimerHandle | None = None
        self.gso = 0  # packets per UDP GSO send; 0 sends one packet per syscall

    def begin(self) -> None:
        if self.session.windowsize > 1:
            self.gso = enable_gso(self.sock, 4 + self.session.blksize)
        self._flush()

    def readable(self, now: float) -> None:
        # One datagram per wake-up: a lockstep client has at most one ACK waiting, and a second
        # recv would only fail with EAGAIN; epoll reports the socket again while more wait.
        session = self.session
        try:
            data = self._recv(2048)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # e.g. ICMP port unreachable: the client is gone
            session.abort("unreachable")
            self._flush(now)
            return
        try:
            packet = session.receive_ack(data, now)
            if packet is None and not session.receive(data, now):
                self.malformed += 1
        except Exception:
            log.exception("TFTP transfer of %r failed", self.name)
            session.abort("error")
            packet = None
        if packet is not None:
            try:
                self._send(packet)
            except (BlockingIOError, InterruptedError):
                pass  # socket buffer full: the retransmission timer resends
            except OSError:
                session.abort("unreachable")
                self._flush(now)
            return
        self._flush(now)

    def _on_timer(self) -> None:
        self.timer = None
        now = self.loop.time()
        deadline = self.session.next_timer()
        if deadline is not None and now >= deadline:
            # A carrier a whole timeout behind (overloaded) may not have read an ACK that is
            # waiting: it answers the timer's question. Retransmitting instead repeats what
            # the client already acknowledged, and atftp aborts on a second OACK.
            self.readable(now)
            if self.sock.fileno() < 0:
                return
        try:
            self.session.handle_timer(now)
        except Exception:
            log.exception("TFTP transfer of %r failed", self.name)
            self.session.abort("error")
        self._flush()

    def _flush(self, now: float | None = None) -> None:
        session = self.session
        out = session.datagrams_to_send(self.loop.time() if now is None else now)
        try:
            if len(out) == 1:
                self._send(out[0])
            elif out:
                self._send_many(out)
        except (BlockingIOError, InterruptedError):
            pass  # socket buffer full: the retransmission timer resends
        except OSError:
            session.abort("unreachable")
        if session.outcome is not None:
            self.finish()
        elif self.timer is None:
            deadline = session.next_timer()
            if deadline is not None:
                self.timer = self.loop.call_at(deadline, self._on_timer)

    def _send_many(self, out: list[bytes]) -> None:
        self.gso = send_window(self._send, out, self.gso)

    def finish(self, outcome: str | None = None) -> None:
        """End now (``outcome`` if the session has none yet); idempotent."""
        if self.sock.fileno() < 0:
            return
        if outcome is not None:
            self.session.abort(outcome)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.carrier._forget(self.fd)
        self.sock.close()
        self.session.file.close()
        s = self.session
        result = TransferResult(
            s.outcome or "error", s.bytes_acked, s.blksize, s.windowsize, self.malformed
        )
        self.on_done(self, result)
