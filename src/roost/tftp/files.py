"""What a resolver hands the TFTP server: a size and reads at an offset into a caller's buffer.

:class:`TFTPFile` is the whole contract. Two implementations cover every source: bytes in memory
(:class:`MemoryFile`, for rendered per-client scripts) and an open file descriptor
(:class:`OpenFile`, read with ``os.preadv`` straight into the packet buffer so a block is read
once and copied never). Reads are synchronous on purpose: they hit the page cache and are far
cheaper than a hop through a thread pool for every 1.4 KB block.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

__all__ = ["NETASCII_LIMIT", "MemoryFile", "OpenFile", "TFTPFile", "to_netascii"]

NETASCII_LIMIT = 16 * 1024 * 1024
"""Largest file served in netascii mode; the conversion happens in memory."""


@runtime_checkable
class TFTPFile(Protocol):
    """A readable, fixed-size file. ``readinto`` fills ``buf`` from ``offset`` and returns the
    number of bytes read (fewer only at the end of the file); ``close`` releases it."""

    size: int

    def readinto(self, offset: int, buf: memoryview) -> int: ...

    def close(self) -> None: ...


class MemoryFile:
    """Content held in memory, e.g. an iPXE script rendered for one client."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self.size = len(data)

    def readinto(self, offset: int, buf: memoryview) -> int:
        chunk = self._data[offset : offset + len(buf)]
        buf[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        self._data.release()


class OpenFile:
    """A file on disk, owned from here on: the server closes it when the transfer ends."""

    def __init__(self, fd: int, size: int | None = None) -> None:
        self._fd = fd
        self.size = os.fstat(fd).st_size if size is None else size

    def readinto(self, offset: int, buf: memoryview) -> int:
        return os.preadv(self._fd, [buf], offset)

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def to_netascii(file: TFTPFile) -> TFTPFile:
    """RFC 1350 netascii (RFC 764): LF becomes CR LF, a bare CR becomes CR NUL. Closes ``file``."""
    try:
        if file.size > NETASCII_LIMIT:
            raise ValueError(f"netascii mode serves files up to {NETASCII_LIMIT} bytes")
        buf = bytearray(file.size)
        got = file.readinto(0, memoryview(buf))
    finally:
        file.close()
    data = bytes(buf[:got]).replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")
    return MemoryFile(data)
