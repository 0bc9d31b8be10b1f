"""A TCP relay from this machine's loopback into a lab namespace.

Roost serves inside the lab's server namespace, where this machine's own processes cannot
reach it. The relay listens on a loopback port here and, per connection, opens a socket that
belongs to the lab namespace (a socket keeps the network namespace it was created in, so the
thread enters the namespace only for the ``socket()`` call, via setns(2)), then copies bytes
both ways. So ``roost events --follow`` and curl work from the host while the lab runs, and
nothing in the lab is exposed beyond loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
from pathlib import Path

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def socket_in(ns: str) -> socket.socket:
    """A TCP socket in network namespace ``ns`` (created there, usable from anywhere)."""
    own = os.open(f"/proc/{os.getpid()}/task/{_gettid()}/ns/net", os.O_RDONLY)
    target = os.open(Path("/run/netns") / ns, os.O_RDONLY)
    try:
        _setns(target)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)
    return sock


def _gettid() -> int:
    return int(_libc.syscall(186))  # SYS_gettid on x86-64: setns acts on this thread only


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class Relay:
    """Loopback ``host:port`` here → ``target`` inside namespace ``ns``."""

    def __init__(self, ns: str, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.ns = ns
        self.target = target
        self.host = host
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and close open connections (an SSE stream never ends by itself)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.close()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            await self._relay(reader, writer)
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = socket_in(self.ns)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, self.target)
            up_reader, up_writer = await asyncio.open_connection(sock=sock)
        except OSError:
            sock.close()
            writer.close()
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers.discard(up_writer)
