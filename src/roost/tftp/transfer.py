"""Transfers' transport: each its own socket and thread around a :class:`TFTPSession`, all of
one process started and stopped by one :class:`Carrier`.

A transfer's socket is bound to the address the request was sent to and connected to the
client, which gives the transfer its own TID (RFC 1350 §4) and lets the kernel drop datagrams
from anyone else. Each transfer runs in a thread of its own that blocks in ``recv`` on that
socket, as atftpd's do: the thread answers an ACK and goes back to sleep on its socket, so the
kernel schedules each client with the thread that serves it. One loop carrying every transfer
(an ``epoll`` set in the event loop, Roost before 0.9) answered hundreds of waiting ACKs in one
pass and woke the clients one after another; on a machine whose CPUs the clients share, each
client then ran after hundreds of others on a cold cache, and a storm of 500 was 20 % slower
than atftpd (docs/tftp.md). The threads hold the GIL only to cut the next block: a lockstep
ACK takes the session's one-call hot path (:meth:`TFTPSession.receive_ack`). Small files on
disk are served from one shared in-memory snapshot (:class:`Snapshots`), so many transfers of
the same boot file cut their blocks from one copy that stays in the CPU cache. The
retransmission timer is the socket's receive timeout, so a timer that fires always finds the
socket empty. A window of DATA packets goes out with UDP GSO: its first packet alone, then one
``send`` for up to 44 packets of 1472 bytes. While a process carries few transfers, each polls
for its next ACK a little before it sleeps (``busy_poll``, :class:`BusyPoll`). The same
classes run in the server process and in worker processes (:mod:`roost.tftp.worker`).
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from roost.tftp.codec import Request
from roost.tftp.files import Snapshots, TFTPFile
from roost.tftp.session import Limits, TFTPSession

__all__ = ["BusyPoll", "Carrier", "Transfer", "TransferResult"]

log = logging.getLogger(__name__)

_UDP_SEGMENT = 103  # linux/udp.h; Python does not export it
_GSO_MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS on kernels before 6.x; newer allow more
_GSO_MAX_BYTES = 65000  # one send is one IP datagram before segmentation
_MAX_BACKOFF = 6  # after misses in a row, skip busy polling for up to 2**6 - 1 ACKs
_SPIN_MAX = 2
"""Transfers a process may carry for them to busy-poll: with more, a CPU has other work while
one waits, and hundreds of polling threads only take it from the clients."""
_SLACK = 0.01  # a receive timeout this far off the retransmission deadline is set again
_STOP_JOIN = 5.0
_TIMEVAL = struct.Struct("@ll")


@dataclass(frozen=True)
class TransferResult:
    outcome: str
    bytes: int
    blksize: int
    windowsize: int
    malformed: int
    """Datagrams on the transfer's port that were not TFTP, dropped."""


def _enable_gso(sock: socket.socket, segment: int) -> int:
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


class BusyPoll:
    """When a transfer polls before it sleeps: a window of ``window`` seconds, tried again only
    after exponentially more ACKs while windows keep ending with nothing caught, so slow
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
        """A spin ended; ``caught`` says whether a datagram arrived during it."""
        if caught:
            self.misses = 0
        else:
            self.misses = min(self.misses + 1, _MAX_BACKOFF)
            self.skip = (1 << self.misses) - 1


class Carrier:
    """Starts the transfers of one process, each in its own thread, and reports their results
    on the event loop; see the module docstring."""

    def __init__(self, busy_poll: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.loop = asyncio.get_running_loop()
        self.busy_poll = busy_poll
        self.clock = clock
        self.snapshots = Snapshots()
        self.sleeps = 0
        """Times a transfer blocked in ``recv`` (each one a wake-up when a datagram came)."""
        self.spins = 0
        """Busy-poll windows run, and of them ``caught``: those that got a datagram."""
        self.caught = 0
        self._transfers: set[Transfer] = set()

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
        the socket and the file from here on, also when this raises. ``on_done`` is called on
        the event loop."""
        try:
            file = self.snapshots.share(file)
            session = TFTPSession(request, file, limits, self.clock())
            sock.setblocking(True)
        except BaseException:
            sock.close()
            file.close()
            raise
        transfer = Transfer(self, sock, session, request.filename, on_done)
        self._transfers.add(transfer)
        try:
            transfer.begin()
        except BaseException:
            self._transfers.discard(transfer)
            sock.close()
            session.file.close()
            raise
        return transfer

    def close(self) -> None:
        """End every transfer (``stopped``) and wait for their threads."""
        transfers = list(self._transfers)
        for transfer in transfers:
            transfer.stop()
        for transfer in transfers:
            transfer.join(_STOP_JOIN)
            self._done(transfer)  # a thread that did not end keeps its transfer

    def _finished(self, transfer: Transfer) -> None:
        """Called by a transfer's thread as it ends."""
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is left to tell
            self.loop.call_soon_threadsafe(self._done, transfer)

    def _done(self, transfer: Transfer) -> None:
        if not transfer.ended or transfer not in self._transfers:
            return
        self._transfers.discard(transfer)
        session = transfer.session
        session.file.close()  # here, not in the thread: snapshots are the loop's
        result = TransferResult(
            session.outcome or "stopped",
            session.bytes_acked,
            session.blksize,
            session.windowsize,
            transfer.malformed,
        )
        transfer.on_done(transfer, result)


class Transfer:
    """Runs ``session`` over ``sock`` in its own thread until it ends; made by
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
        self.sock = sock
        self.session = session
        self.name = name
        self.on_done = on_done
        self.malformed = 0
        self.stopping = False
        self.ended = False
        """Set by the thread as its last act on the session and socket."""
        self.spin = BusyPoll(carrier.busy_poll)
        self.gso = 0  # packets per UDP GSO send; 0 sends one packet per syscall
        self._armed = 0.0  # the socket's receive timeout, seconds
        self._running = _thread.allocate_lock()

    def begin(self) -> None:
        """Start the transfer's thread. A bare thread, not a :class:`threading.Thread`, which
        waits until its thread has run: in a storm that thread waits for the GIL, and the
        hand-off of every other request with it."""
        self._running.acquire()
        try:
            _thread.start_new_thread(self._run, ())
        except BaseException:
            self._running.release()
            raise

    def join(self, timeout: float) -> bool:
        """Wait until the thread has ended; False if it still runs after ``timeout`` s."""
        if not self._running.acquire(timeout=timeout):
            return False
        self._running.release()
        return True

    def stop(self) -> None:
        """Make the thread end (``stopped``) soon; safe from any thread."""
        self.stopping = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv with b""

    def _run(self) -> None:
        session = self.session
        try:
            if session.windowsize > 1:
                self.gso = _enable_gso(self.sock, 4 + session.blksize)
            self._flush(self.carrier.clock())
            self._serve()
        except Exception:
            log.exception("TFTP transfer of %r failed", self.name)
            session.abort("error")
        finally:
            self.sock.close()
            self.ended = True
            self._running.release()
            self.carrier._finished(self)

    def _serve(self) -> None:
        session, carrier, sock, spin = self.session, self.carrier, self.sock, self.spin
        clock, recv, send, transfers = carrier.clock, sock.recv, sock.send, carrier._transfers
        receive_ack = session.receive_ack
        sleeps = 0
        data: bytes | None = None
        now = clock()
        held = False  # ``data`` (a datagram, or None for a timeout) is still to be handled
        try:
            while session.outcome is None:
                polling = spin.window and len(transfers) <= _SPIN_MAX
                if not held:
                    data = self._spin() if polling and spin.should_spin() else None
                    if data is None:
                        deadline = session.next_timer()
                        if deadline is not None and abs(self._armed - deadline + now) > _SLACK:
                            self._arm(deadline - now)
                        sleeps += 1
                        data = self._recv()
                    now = clock()
                held = False
                if self.stopping:
                    session.abort("stopped")
                    return
                if data is None:  # the receive timed out (or the client is gone)
                    session.handle_timer(now)
                    self._flush(now)
                    continue
                packet = receive_ack(data, now)
                if packet is None:
                    if not session.receive(data, now):
                        self.malformed += 1
                    self._flush(now)
                    continue
                try:
                    if polling:
                        send(packet)
                        continue
                    # The lockstep hot path, as long as ACKs keep coming: answer, sleep, repeat.
                    # The socket's timeout stays as armed: each DATA moves the deadline to a
                    # full timeout from now.
                    while packet is not None:
                        send(packet)
                        sleeps += 1
                        data = recv(2048)
                        now = clock()
                        packet = receive_ack(data, now)
                except (BlockingIOError, InterruptedError):  # timed out
                    data, now = None, clock()
                except OSError:  # e.g. ICMP port unreachable: the client is gone
                    session.abort("unreachable")
                    return
                held = True
        finally:
            carrier.sleeps += sleeps

    def _recv(self) -> bytes | None:
        """The next datagram; None when the receive timed out or the client is gone (then the
        session is aborted)."""
        try:
            return self.sock.recv(2048)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:  # e.g. ICMP port unreachable
            self.session.abort("unreachable")
            return None

    def _spin(self) -> bytes | None:
        """Poll for the next ACK before sleeping: a fast client's answer is caught without the
        wake-up of a sleeping thread (and, in a VM, of an idle vCPU), which is most of a
        lockstep round trip. Other runnable threads go first between polls."""
        carrier, spin, recv = self.carrier, self.spin, self.sock.recv
        clock, yield_cpu = carrier.clock, os.sched_yield
        carrier.spins += 1
        until = clock() + spin.window
        while True:
            try:
                data = recv(2048, socket.MSG_DONTWAIT)
            except BlockingIOError:
                if clock() >= until:
                    spin.ended(False)
                    return None
                yield_cpu()
            except OSError:
                return None  # the blocking receive meets the same error and says what it is
            else:
                spin.ended(True)
                carrier.caught += 1
                return data

    def _arm(self, remaining: float) -> None:
        """Make the socket's receive time out after ``remaining`` seconds: the retransmission
        timer. Only called when the timeout set last is off by more than the slack."""
        remaining = max(remaining, 0.001)
        seconds = int(remaining)
        timeval = _TIMEVAL.pack(seconds, int((remaining - seconds) * 1e6))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        self._armed = remaining

    def _flush(self, now: float) -> None:
        session = self.session
        out = session.datagrams_to_send(now)
        try:
            if len(out) == 1:
                self.sock.send(out[0])
            elif out:
                self._send_many(out)
        except OSError:
            session.abort("unreachable")

    def _send_many(self, out: list[bytes]) -> None:
        """A window: with UDP GSO one send per run of full-size packets, else one per packet."""
        send = self.sock.send
        if self.gso:
            step = self.gso
            # The first packet alone, then the rest in one send: the client wakes and starts on
            # it while the kernel segments and delivers the others (5 % more at windowsize 16
            # here than one send for all).
            send(out[0])
            for i in range(1, len(out), step):
                try:
                    send(b"".join(out[i : i + step]))
                except OSError as exc:
                    if exc.errno != errno.EIO:
                        raise
                    # The route cannot checksum-offload segments (udp_send_skb): stop batching.
                    self.gso = 0
                    for datagram in out[i:]:
                        send(datagram)
                    return
        else:
            for datagram in out:
                send(datagram)
