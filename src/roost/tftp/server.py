"""The TFTP server: one listening socket for requests, one socket per transfer.

Requests arrive on the listening port (69). Malformed ones are counted and dropped; write
requests, unknown modes, missing or refused files and requests beyond the transfer cap get an
ERROR packet, sent from a fresh ephemeral socket because RFC 1350 §4 expects every answer to
come from a new TID. An accepted read request gets its own socket, bound to the address the
request was sent to (learned with ``IP_PKTINFO`` when listening on the wildcard), and is carried
by a :class:`Transfer` in this process or, with ``workers``, in a worker process. Every
request's end, served or refused, is reported once through ``on_transfer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from roost import privileges
from roost.tftp import codec
from roost.tftp.codec import ErrorCode
from roost.tftp.files import TFTPFile, to_netascii
from roost.tftp.metrics import ACTIVE, BYTES, MALFORMED, TRANSFERS
from roost.tftp.resolver import Resolver, TFTPDenied
from roost.tftp.session import Limits
from roost.tftp.transfer import Carrier, Transfer, TransferResult
from roost.tftp.worker import WorkerPool

__all__ = ["TFTPServer", "TransferRecord", "arp_mac"]

log = logging.getLogger(__name__)

_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; Python 3.11 does not export it
_PKTINFO = struct.Struct("i4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr
_READ_BURST = 64  # requests drained per wake-up before yielding to the transfers
SockAddr = tuple[Any, ...]  # (ip, port) or, for IPv6, (ip, port, flowinfo, scope_id)
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_REQUEST_BUFFER = 4 << 20  # a boot storm's requests arrive at once; keep them all


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


@dataclass(eq=False)
class _Active:
    """A request between acceptance and its end: being resolved, or being transferred."""

    key: int
    client: tuple[str, int]
    peer: SockAddr
    file: str
    started: float
    mac: str | None = None
    transfer: Transfer | None = None  # when carried in this process


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
        workers: int = 0,
        busy_poll: float = 0.0,
        pin_workers: bool = False,
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
        self._active: dict[tuple[str, int], _Active] = {}
        self._by_key: dict[int, _Active] = {}
        self._next_key = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.busy_poll = busy_poll
        self._pool = (
            WorkerPool(workers, self.limits, self._worker_result, busy_poll, pin_workers)
            if workers
            else None
        )
        self._carrier: Carrier | None = None

    @property
    def carrier(self) -> Carrier | None:
        """What carries the transfers of this process, between start and stop."""
        return self._carrier

    @property
    def active(self) -> int:
        """Requests accepted and not yet ended (what ``max_transfers`` caps)."""
        return len(self._active)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            try:  # beyond net.core.rmem_max needs CAP_NET_ADMIN; otherwise as much as allowed
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _REQUEST_BUFFER)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _REQUEST_BUFFER)
            if self._family == socket.AF_INET and self.host == "0.0.0.0":
                sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
            privileges.bind(sock, (self.host, self.port), "tftp.port")
        except BaseException:
            sock.close()
            raise
        if self._pool is not None:
            try:
                await self._pool.start()
            except BaseException:
                sock.close()
                raise
        self._sock = sock
        self._carrier = Carrier(self.busy_poll)
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
        if self._carrier is not None:
            self._carrier.close()
            self._carrier = None
        if self._pool is not None:
            await self._pool.stop()
        for active in list(self._active.values()):  # in workers that did not answer
            self._end(active, TransferResult("stopped", 0, 512, 1, 0))

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
            self._handle_request(data, addr, local)

    def _handle_request(self, data: bytes, peer: SockAddr, local: str) -> None:
        client = (peer[0], peer[1])  # IPv6 adds flow info and scope, kept in ``peer``
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
            self._refuse(peer, local, ErrorCode.ACCESS_VIOLATION, "server is read-only")
            self._record(client, request.filename, "write_refused")
            return
        if client in self._active:
            return  # the client repeated its request; the transfer's own timer answers it
        if len(self._active) >= self.max_transfers:
            busy = f"server busy: {self.max_transfers} transfers in progress, try again later"
            self._refuse(peer, local, ErrorCode.NOT_DEFINED, busy)
            self._record(client, request.filename, "busy")
            return
        self._next_key += 1
        active = _Active(self._next_key, client, peer, request.filename, time.monotonic())
        self._active[client] = active
        self._by_key[active.key] = active
        ACTIVE.inc()
        task = asyncio.create_task(self._open(active, request, local))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open(self, active: _Active, request: codec.Request, local: str) -> None:
        client = active.client
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
                    self._begin(active, request, file, local)
                    return
                code, message, outcome = ErrorCode.FILE_NOT_FOUND, "file not found", "not_found"
        except TFTPDenied as exc:
            code, message, outcome = exc.code, exc.message, "denied"
        except asyncio.CancelledError:
            self._end(active, TransferResult("stopped", 0, 512, 1, 0))
            raise
        except Exception:
            log.exception("TFTP request for %r from %s failed", request.filename, client[0])
            code, message = ErrorCode.NOT_DEFINED, "internal error"
        self._refuse(active.peer, local, code, message)
        self._end(active, TransferResult(outcome, 0, 512, 1, 0))

    def _begin(self, active: _Active, request: codec.Request, file: TFTPFile, local: str) -> None:
        active.mac = self.mac_lookup(active.client[0])
        try:
            if request.mode == "netascii":
                file = to_netascii(file)
            sock = socket.socket(self._family, socket.SOCK_DGRAM)
        except BaseException:
            file.close()
            raise
        try:
            sock.setblocking(False)
            sock.bind((local, 0))
            sock.connect(active.peer)
            if self._pool is not None and self._pool.hand_off(active.key, sock, file, request):
                return
            assert self._carrier is not None  # requests are only read between start and stop
        except BaseException:
            sock.close()
            file.close()
            raise
        active.transfer = self._carrier.start(
            sock, request, file, self.limits, lambda _t, result: self._end(active, result)
        )

    def _worker_result(self, key: int, result: TransferResult) -> None:
        active = self._by_key.get(key)
        if active is not None:
            self._end(active, result)

    def _end(self, active: _Active, result: TransferResult) -> None:
        if self._by_key.pop(active.key, None) is None:
            return
        del self._active[active.client]
        ACTIVE.dec()
        if result.malformed:
            MALFORMED.labels("transfer").inc(result.malformed)
        self._record(
            active.client, active.file, result.outcome, time.monotonic() - active.started,
            result, active.mac if active.mac is not None else self.mac_lookup(active.client[0]),
        )  # fmt: skip

    def _refuse(self, peer: SockAddr, local: str, code: int, message: str) -> None:
        try:
            with socket.socket(self._family, socket.SOCK_DGRAM) as sock:
                sock.bind((local, 0))
                sock.sendto(codec.error(code, message), peer)
        except OSError:
            log.debug("cannot send TFTP error to %s", peer, exc_info=True)

    def _record(
        self,
        client: tuple[str, int],
        file: str,
        outcome: str,
        seconds: float = 0.0,
        result: TransferResult | None = None,
        mac: str | None = None,
    ) -> None:
        TRANSFERS.labels(outcome).inc()
        if result is not None and result.bytes:
            BYTES.inc(result.bytes)
        if self.on_transfer is None:
            return
        record = TransferRecord(
            mac=mac if result is not None else self.mac_lookup(client[0]),
            ip=client[0],
            port=client[1],
            file=file,
            bytes=result.bytes if result else 0,
            seconds=round(seconds, 6),
            outcome=outcome,
            blksize=result.blksize if result else 512,
            windowsize=result.windowsize if result else 1,
        )
        try:
            self.on_transfer(record)
        except Exception:
            log.exception("TFTP transfer listener failed")
