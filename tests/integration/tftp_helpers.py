"""Shared pieces of the TFTP integration tests: a server on a loopback port, a raw client that
does not block the event loop the server runs in, and real client programs."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from roost.tftp import codec
from roost.tftp.resolver import DirectoryResolver
from roost.tftp.server import TFTPServer, TransferRecord
from roost.tftp.session import Limits


@dataclass
class Served:
    server: TFTPServer
    root: Path
    records: list[TransferRecord] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    async def record(self, count: int = 1) -> TransferRecord:
        """The ``count``-th transfer record, waiting briefly for the server to finish it."""
        for _ in range(200):
            if len(self.records) >= count:
                return self.records[count - 1]
            await asyncio.sleep(0.025)
        raise AssertionError(f"only {len(self.records)} transfers ended: {self.records}")


ServerFactory = Callable[..., Awaitable[Served]]


@asynccontextmanager
async def serving(root: Path, **kwargs: object) -> AsyncIterator[Served]:
    limits = kwargs.pop("limits", Limits(max_blksize=65464, max_windowsize=64))
    host = str(kwargs.pop("host", "127.0.0.1"))
    served = Served(TFTPServer(DirectoryResolver(root), host=host, port=0,
                               limits=limits, **kwargs), root)  # type: ignore[arg-type]  # fmt: skip
    served.server.on_transfer = served.records.append
    await served.server.start()
    try:
        yield served
    finally:
        await served.server.stop()


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (scripts/bootstrap installs them)")


async def run(*cmd: str, cwd: Path, limit: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class RawClient:
    """A hand-driven TFTP client on a non-blocking socket (the server shares the loop)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", 0))
        self.loop = asyncio.get_running_loop()

    async def send(self, data: bytes, addr: tuple[str, int]) -> None:
        await self.loop.sock_sendto(self.sock, data, addr)

    async def recv(self, wait: float = 3.0) -> tuple[codec.Packet, tuple[str, int]]:
        data, addr = await asyncio.wait_for(self.loop.sock_recvfrom(self.sock, 70000), wait)
        return codec.decode(data), addr

    async def request(self, port: int, name: str, **options: str) -> codec.Packet:
        req = codec.Request(codec.RRQ, name, "octet", dict(options))
        await self.send(codec.encode(req), ("127.0.0.1", port))
        packet, self.peer = await self.recv()
        return packet

    async def ack(self, block: int) -> None:
        await self.send(struct.pack("!HH", codec.ACK, block & 0xFFFF), self.peer)

    async def fetch_rest(self, first: codec.Packet, pause: float = 0.0) -> bytes:
        """ACK DATA in lockstep from ``first`` until a short block ends the file, ``pause``
        seconds before each ACK (a slow client)."""
        got = bytearray()
        packet = first
        while True:
            assert isinstance(packet, codec.Data), packet
            got += packet.data
            if pause:
                await asyncio.sleep(pause)
            await self.ack(packet.block)
            if len(packet.data) < 512:
                return bytes(got)
            packet, _ = await self.recv()

    def close(self) -> None:
        self.sock.close()
