"""The asyncio transport around :class:`TFTPSession`: one listening socket, one socket per transfer.

Requests arrive on the listening port (69). Each accepted read request gets its own socket,
bound to the address the request was sent to (learned with ``IP_PKTINFO`` when listening on
the wildcard) and connected to the client, which gives the transfer its own TID (RFC 1350 §4)
and lets the kernel drop datagrams from anyone else. Sockets are read with ``add_reader`` and
plain non-blocking ``recv``/``send``: no transport objects, no per-packet allocation beyond the
packet itself, no per-packet logging. Each transfer has at most one timer, re-armed lazily:
when it fires early it is set again to the session's current deadline rather than being
cancelled and recreated on every ACK. Errors for refused requests are sent from a fresh
ephemeral socket too, as RFC 1350 expects every answer to come from a new TID.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from roost.tftp import codec
from roost.tftp.codec import ErrorCode
from roost.tftp.files import TFTPFile, to_netascii
from roost.tftp.metrics import ACTIVE, BYTES, MALFORMED, TRANSFERS
from roost.tftp.resolver import Resolver, TFTPDenied
from roost.tftp.session import Limits, TFTPSession

__all__ = ["TFTPServer", "TransferRecord", "arp_mac"]

log = logging.getLogger(__name__)

_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; Python 3.11 does not export it
_PKTINFO = struct.Struct("i4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr
_READ_BURST = 64  # requests drained per wake-up before yielding to the transfers
_UDP_SEGMENT = 103  # linux/udp.h; Python does not export it
_GSO_MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS on kernels before 6.x; newer allow more
_GSO_MAX_BYTES = 65000  # one send is one IP datagram before segmentation


@dataclass(frozen=True)
class TransferRecord:
    """How one request ended; becomes a ``boot.tftp.transfer`` event."""

    mac: str | None
    ip: str
    port: int
    file: str
    bytes: int
    seconds: float
    outcome: str
    blksize: int = 512
    windowsize: int = 1


def arp_mac(ip: str) -> str | None:
    """The MAC of an on-link IPv4 neighbour from the kernel's ARP table, if it has one."""
    try:
        with open("/proc/net/arp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if len(fields) >= 4 and fields[0] == ip and fields[3] != "00:00:00:00:00:00":
                    return fields[3].lower()
    except OSError:
        pass
    return None


class TFTPServer:
    """Serves read requests from ``resolver``; ``on_transfer`` hears about every request's end."""

    def __init__(
        self,
        resolver: Resolver,
        host: str = "0.0.0.0",
        port: int = 69,
        limits: Limits | None = None,
        max_transfers: int = 1000,
        on_transfer: Callable[[TransferRecord], None] | None = None,
        mac_lookup: Callable[[str], str | None] = arp_mac,
    ) -> None:
        self.resolver = resolver
        self.host, self.port = host, port
        self.limits = limits or Limits()
        self.max_transfers = max_transfers
        self.on_transfer = on_transfer
        self.mac_lookup = mac_lookup
        self._family = (
            socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        )
        self._sock: socket.socket | None = None
        self._pktinfo = False
        self._transfers: dict[tuple[str, int], _Transfer | None] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> int:
        return len(self._transfers)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if self._family == socket.AF_INET and self.host == "0.0.0.0":
                sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
                self._pktinfo = True
            sock.bind((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        loop.add_reader(sock.fileno(), self._on_request)

    async def stop(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for transfer in list(self._transfers.values()):
            if transfer is not None:
                transfer.session.abort("stopped")
                transfer.finish()
        self._transfers.clear()

    # -- the listening socket ----------------------------------------------------------------

    def _on_request(self) -> None:
        assert self._sock is not None
        for _ in range(_READ_BURST):
            try:
                data, ancdata, _flags, addr = self._sock.recvmsg(2048, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                log.debug("receive on the TFTP port failed", exc_info=True)
                return
            local = self.host
            for level, kind, payload in ancdata:
                if level == socket.IPPROTO_IP and kind == _IP_PKTINFO:
                    local = socket.inet_ntoa(_PKTINFO.unpack_from(payload)[1])
            self._handle_request(data, (addr[0], addr[1]), local)

    def _handle_request(self, data: bytes, client: tuple[str, int], local: str) -> None:
        try:
            request = codec.decode(data)
        except codec.DecodeError:
            MALFORMED.labels("request").inc()
            return
        if not isinstance(request, codec.Request):
            # RFC 1350 §4: only requests open a transfer; stray DATA/ACK here is malformed.
            MALFORMED.labels("request").inc()
            return
        if request.opcode == codec.WRQ:
            self._refuse(client, local, request, ErrorCode.ACCESS_VIOLATION, "server is read-only")
            self._record(client, request.filename, "write_refused")
            return
        if client in self._transfers:
            return  # the client repeated its request; the transfer's own timer answers it
        if len(self._transfers) >= self.max_transfers:
            self._refuse(
                client, local, request, ErrorCode.NOT_DEFINED,
                f"server busy: {self.max_transfers} transfers in progress, try again later",
            )  # fmt: skip
            self._record(client, request.filename, "busy")
            return
        self._transfers[client] = None  # reserved while the resolver works
        task = asyncio.create_task(self._open(request, client, local))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open(self, request: codec.Request, client: tuple[str, int], local: str) -> None:
        started = time.monotonic()
        outcome = "error"
        try:
            if request.mode not in ("octet", "netascii"):
                code, message, outcome = (
                    ErrorCode.ILLEGAL_OPERATION,
                    f"mode {request.mode!r} is not served; use octet",
                    "bad_mode",
                )
            else:
                file = await self.resolver.resolve(request.filename, client)
                if file is not None:
                    if request.mode == "netascii":
                        file = to_netascii(file)
                    transfer = _Transfer(self, request, file, client, local, started)
                    self._transfers[client] = transfer
                    transfer.begin()
                    return
                code, message, outcome = ErrorCode.FILE_NOT_FOUND, "file not found", "not_found"
        except TFTPDenied as exc:
            code, message, outcome = exc.code, exc.message, "denied"
        except asyncio.CancelledError:
            self._transfers.pop(client, None)
            raise
        except Exception:
            log.exception("TFTP request for %r from %s failed", request.filename, client[0])
            code, message = ErrorCode.NOT_DEFINED, "internal error"
        self._transfers.pop(client, None)
        self._refuse(client, local, request, code, message)
        self._record(client, request.filename, outcome, time.monotonic() - started)

    def _refuse(
        self, client: tuple[str, int], local: str, request: codec.Request, code: int, message: str
    ) -> None:
        try:
            with socket.socket(self._family, socket.SOCK_DGRAM) as sock:
                sock.bind((local, 0))
                sock.sendto(codec.error(code, message), client)
        except OSError:
            log.debug("cannot send TFTP error to %s", client, exc_info=True)

    def _record(
        self,
        client: tuple[str, int],
        file: str,
        outcome: str,
        seconds: float = 0.0,
        sent: int = 0,
        session: TFTPSession | None = None,
        mac: str | None = None,
    ) -> None:
        TRANSFERS.labels(outcome).inc()
        if sent:
            BYTES.inc(sent)
        if self.on_transfer is None:
            return
        record = TransferRecord(
            mac=mac if session is not None else self.mac_lookup(client[0]),
            ip=client[0],
            port=client[1],
            file=file,
            bytes=sent,
            seconds=round(seconds, 6),
            outcome=outcome,
            blksize=session.blksize if session else 512,
            windowsize=session.windowsize if session else 1,
        )
        try:
            self.on_transfer(record)
        except Exception:
            log.exception("TFTP transfer listener failed")

    def _ended(self, transfer: _Transfer) -> None:
        self._transfers.pop(transfer.client, None)


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


class _Transfer:
    """One transfer's socket, timer and session."""

    def __init__(
        self,
        server: TFTPServer,
        request: codec.Request,
        file: TFTPFile,
        client: tuple[str, int],
        local: str,
        started: float,
    ) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.request = request
        self.client = client
        self.started = started
        self.mac = server.mac_lookup(client[0])
        self.timer: asyncio.TimerHandle | None = None
        self.gso = 0  # packets per UDP GSO send; 0 sends one packet per syscall
        self.sock = socket.socket(server._family, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.bind((local, 0))
            self.sock.connect(client)
            self.session = TFTPSession(request, file, server.limits, self.loop.time())
        except BaseException:
            self.sock.close()
            file.close()
            raise

    def begin(self) -> None:
        ACTIVE.inc()
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
        else:
            try:
                if not session.receive(data, self.loop.time()):
                    MALFORMED.labels("transfer").inc()
            except Exception:
                log.exception(
                    "TFTP transfer of %r to %s failed", self.request.filename, self.client
                )
                session.abort("error")
        self._flush()

    def _on_timer(self) -> None:
        self.timer = None
        try:
            self.session.handle_timer(self.loop.time())
        except Exception:
            log.exception("TFTP transfer of %r to %s failed", self.request.filename, self.client)
            self.session.abort("error")
        self._flush()

    def _flush(self) -> None:
        session = self.session
        out = session.datagrams_to_send(self.loop.time())
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
            # Deadlines only move later, so one timer suffices: when it fires early it finds
            # nothing to do and is set again to the session's current deadline.
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

    def finish(self) -> None:
        if self.sock.fileno() < 0:
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.session.file.close()
        ACTIVE.dec()
        session = self.session
        self.server._ended(self)
        self.server._record(
            self.client,
            self.request.filename,
            session.outcome or "error",
            time.monotonic() - self.started,
            session.bytes_acked,
            session,
            self.mac,
        )
