"""What a resolver hands the TFTP server: a size and reads at an offset into a caller's buffer.

:class:`TFTPFile` is the whole contract. Two implementations cover every source: bytes in memory
(:class:`MemoryFile`, for rendered per-client scripts) and an open file descriptor
(:class:`OpenFile`, read with ``os.preadv`` straight into the packet buffer so a block is read
once and copied never). Reads are synchronous on purpose: they hit the page cache and are far
cheaper than a hop through a thread pool for every 1.4 KB block.
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple, Protocol, runtime_checkable

from roost.tftp.codec import ACK, DATA

__all__ = [
    "NETASCII_LIMIT",
    "MemoryFile",
    "OpenFile",
    "Packets",
    "Snapshots",
    "TFTPFile",
    "to_netascii",
]

NETASCII_LIMIT = 16 * 1024 * 1024
"""Largest file served in netascii mode; the conversion happens in memory."""
PACKETS_MIN_BLKSIZE = 512
"""Smallest block size a snapshot's packets are built for: below it a packet's own overhead
(``_PACKET_OVERHEAD``) is a large part of the block."""
_PACKET_OVERHEAD = 90
"""Bytes a built packet costs besides its block, about: its header, and two bytes objects and
list slots (the packet and its ACK)."""
_pack = struct.Struct("!HH").pack


@runtime_checkable
class TFTPFile(Protocol):
    """A readable, fixed-size file. ``readinto`` fills ``buf`` from ``offset`` and returns the
    number of bytes read (fewer only at the end of the file); ``close`` releases it."""

    size: int

    def readinto(self, offset: int, buf: memoryview) -> int: ...

    def close(self) -> None: ...


class Packets(NamedTuple):
    """Every DATA packet of a file at one block size, and every ACK a client answers them with,
    built once: ``data[b]`` and ``acks[b]`` are block ``b``'s (``data[0]`` is empty, ``acks[0]``
    is ACK 0). Shared by every transfer of the file at that size, so the packet path only looks
    a packet up."""

    data: list[bytes]
    acks: list[bytes]

    @classmethod
    def build(cls, content: memoryview, blksize: int) -> Packets:
        # RFC 1350 §6: a block shorter than blksize ends the file, so an exact multiple of
        # blksize ends with an empty block.
        blocks = len(content) // blksize + 1
        data = [b""]
        acks = [_pack(ACK, 0)]
        for block in range(1, blocks + 1):
            wire = block & 0xFFFF
            start = (block - 1) * blksize
            data.append(_pack(DATA, wire) + content[start : start + blksize])
            acks.append(_pack(ACK, wire))
        return cls(data, acks)


class MemoryFile:
    """Content held in memory, e.g. an iPXE script rendered for one client."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self.size = len(data)

    def view(self) -> memoryview:
        """The whole content, uncopied: a session cuts its DATA packets straight from it."""
        return self._data

    def packets(self, blksize: int) -> Packets | None:
        """The content's packets at ``blksize`` when they are kept built (shared snapshots),
        else None: the session cuts each packet from :meth:`view` as it goes."""
        return None

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


class Snapshots:
    """Whole small files read once and shared by every transfer of them in this process.

    In a boot storm hundreds of transfers send the same boot file at once. Each cutting its
    blocks from a read-ahead buffer of its own keeps megabytes of copies in flight, which the
    CPU cache cannot hold; one shared copy stays hot. A snapshot is keyed by the file's
    identity and change times, so a file replaced or rewritten is read anew, and it is
    dropped when its last transfer ends.
    """

    def __init__(self, file_limit: int = 8 << 20, total_limit: int = 64 << 20) -> None:
        self.file_limit = file_limit
        self.total_limit = total_limit
        self._held: dict[tuple[int, ...], _Snapshot] = {}
        self._total = 0

    def share(self, file: TFTPFile) -> TFTPFile:
        """A shared in-memory copy of ``file`` (then closed), or ``file`` itself when it is
        not a small file on disk, the limit is reached, or it changes while being read."""
        if not isinstance(file, OpenFile) or file.size > self.file_limit:
            return file
        st = os.fstat(file.fileno())
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        snapshot = self._held.get(key)
        if snapshot is None:
            if self._total + st.st_size > self.total_limit or st.st_size != file.size:
                return file
            buf = bytearray(st.st_size)
            if file.readinto(0, memoryview(buf)) != st.st_size:
                return file
            snapshot = self._held[key] = _Snapshot(self, key, bytes(buf))
            self._total += st.st_size
        snapshot.users += 1
        file.close()
        return _SharedFile(snapshot)

    def _release(self, snapshot: _Snapshot) -> None:
        snapshot.users -= 1
        if snapshot.users == 0 and self._held.pop(snapshot.key, None) is not None:
            self._total -= snapshot.footprint


class _Snapshot:
    def __init__(self, owner: Snapshots, key: tuple[int, ...], data: bytes) -> None:
        self.owner = owner
        self.key = key
        self.data = data
        self.users = 0
        self.footprint = len(data)
        """Bytes this snapshot counts against the owner's limit: its data and packets."""
        self.built: dict[int, Packets] = {}  # by block size

    def packets(self, blksize: int) -> Packets | None:
        packets = self.built.get(blksize)
        if packets is None and blksize >= PACKETS_MIN_BLKSIZE:
            size = len(self.data)
            cost = size + (size // blksize + 2) * _PACKET_OVERHEAD
            if self.owner._total + cost > self.owner.total_limit:
                return None
            packets = self.built[blksize] = Packets.build(memoryview(self.data), blksize)
            self.footprint += cost
            self.owner._total += cost
        return packets


class _SharedFile(MemoryFile):
    def __init__(self, snapshot: _Snapshot) -> None:
        super().__init__(snapshot.data)
        self._snapshot: _Snapshot | None = snapshot

    def packets(self, blksize: int) -> Packets | None:
        return None if self._snapshot is None else self._snapshot.packets(blksize)

    def close(self) -> None:
        super().close()
        if self._snapshot is not None:
            self._snapshot.owner._release(self._snapshot)
            self._snapshot = None


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
