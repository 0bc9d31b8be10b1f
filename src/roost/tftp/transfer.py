"""One transfer's transport: its own socket and timer around a :class:`TFTPSession`.

The socket is bound to the address the request was sent to and connected to the client, which
gives the transfer its own TID (RFC 1350 §4) and lets the kernel drop datagrams from anyone
else. It is read with ``add_reader`` and plain non-blocking ``recv``/``send``: no transport
objects, no per-packet allocation beyond the packet itself, no per-packet logging. The timer is
re-armed lazily: deadlines only move later, so when it fires early it is simply set again to
the session's current deadline instead of being cancelled and recreated on every ACK. A window
of DATA packets goes out with UDP GSO, one ``send`` for up to 44 packets of 1472 bytes. The same
class runs in the server process and in worker processes (:mod:`roost.tftp.worker`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from roost.tftp.session import TFTPSession

__all__ = ["Transfer", "TransferResult"]

log = logging.getLogger(__name__)

_UDP_SEGMENT = 103  # linux/udp.h; Python does not export it
_GSO_MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS on kernels before 6.x; newer allow more
_GSO_MAX_BYTES = 65000  # one send is one IP datagram before segmentation


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


class Transfer:
    """Runs ``session`` over ``sock`` (bound, connected) until it ends, then calls ``on_done``."""

    def __init__(
        self,
        sock: socket.socket,
        session: TFTPSession,
        name: str,
        on_done: Callable[[Transfer, TransferResult], None],
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.sock = sock
        self.session = session
        self.name = name
        self.on_done = on_done
        self.malformed = 0
        self.timer: asyncio.TimerHandle | None = None
        self.gso = 0  # packets per UDP GSO send; 0 sends one packet per syscall

    def begin(self) -> None:
        if self.session.windowsize > 1:
            self.gso = _enable_gso(self.sock, 4 + self.session.blksize)
        self.loop.add_reader(self.sock.fileno(), self._readable)
        self._flush()

    def _readable(self) -> None:
        # One datagram per wake-up: a lockstep client has at most one ACK waiting, and a second
        # recv would only fail with EAGAIN; the loop calls again while more are queued.
        session = self.session
        try:
            data = self.sock.recv(2048)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # e.g. ICMP port unreachable: the client is gone
            session.abort("unreachable")
            self._flush()
            return
        now = self.loop.time()
        try:
            if not session.receive(data, now):
                self.malformed += 1
        except Exception:
            log.exception("TFTP transfer of %r failed", self.name)
            session.abort("error")
        self._flush(now)

    def _on_timer(self) -> None:
        self.timer = None
        try:
            self.session.handle_timer(self.loop.time())
        except Exception:
            log.exception("TFTP transfer of %r failed", self.name)
            self.session.abort("error")
        self._flush()

    def _flush(self, now: float | None = None) -> None:
        session = self.session
        out = session.datagrams_to_send(self.loop.time() if now is None else now)
        try:
            if len(out) == 1:
                self.sock.send(out[0])
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
        """A window: with UDP GSO one send per run of full-size packets, else one per packet."""
        send = self.sock.send
        if self.gso:
            step = self.gso
            for i in range(0, len(out), step):
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

    def finish(self, outcome: str | None = None) -> None:
        """End now (``outcome`` if the session has none yet); idempotent."""
        if self.sock.fileno() < 0:
            return
        if outcome is not None:
            self.session.abort(outcome)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.session.file.close()
        s = self.session
        result = TransferResult(
            s.outcome or "error", s.bytes_acked, s.blksize, s.windowsize, self.malformed
        )
        self.on_done(self, result)
