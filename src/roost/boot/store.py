"""The content-addressed boot-file store: sha256-named blobs on disk, names in the database.

Theory of operation: an upload streams into a temporary file under ``<data_dir>/boot/tmp``
while it is hashed, is fsynced, renamed to ``blobs/<aa>/<sha256>`` (the directory fsynced
too), and only then is the name committed in the database; a crash at any point leaves either
the old name or the new one, never a name without its bytes. Identical contents share one
blob. A blob is unlinked when the last name pointing at it goes; one lock per store directory
orders that against a concurrent upload of the same bytes. Leftovers of a crash (temporary
files, blobs no name points at) are removed by :meth:`BootStore.open` at service start.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mimetypes
import os
import time
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from sqlalchemy import func, select

from roost.boot.models import BootFileRow
from roost.boot.names import check_arch, check_content_type, check_file_name, normalize_mac
from roost.db import Database
from roost.db.models import utcnow
from roost.errors import NotFound, RoostError
from roost.files import DIR_MODE, FILE_MODE

log = logging.getLogger(__name__)

_WRITE_CHUNK = 1 << 20  # hash and write in 1 MiB pieces, off the event loop
_LOCKS: dict[Path, asyncio.Lock] = {}
_FRESH = 2.0  # seconds a looked-up name is trusted without asking the database
_CACHE_MAX = 4096
_TYPES = {".ipxe": "text/plain", ".kpxe": "application/octet-stream"}


class TooLarge(RoostError):
    status = 413
    title = "Content too large"


@dataclass(frozen=True)
class BootFile:
    name: str
    sha256: str
    size: int
    arch: str | None
    content_type: str
    node: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: BootFileRow) -> BootFile:
        return cls(
            row.name, row.sha256, row.size, row.arch, row.content_type, row.node, row.created_at
        )


def guess_type(name: str) -> str:
    suffix = os.path.splitext(name)[1].lower()
    return _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BootStore:
    """Boot files by name; constructed without I/O."""

    def __init__(self, data_dir: Path, db: Database, max_size: int = 16 * 2**30) -> None:
        self.root = data_dir / "boot"
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"
        self.db = db
        self.max_size = max_size
        self._lock = _LOCKS.setdefault(self.root, asyncio.Lock())
        self._cache: dict[str, tuple[float, BootFile | None]] = {}
        self._pending: dict[str, asyncio.Future[BootFile | None]] = {}

    def blob_path(self, sha256: str) -> Path:
        return self.blobs / sha256[:2] / sha256

    async def open(self) -> None:
        """Create the directories and remove what an interrupted upload or delete left."""
        await asyncio.to_thread(self._mkdirs)
        async with self._lock:
            async with self.db.session() as s:
                referenced = set((await s.execute(select(BootFileRow.sha256))).scalars())
            await asyncio.to_thread(self._sweep, referenced)

    def _mkdirs(self) -> None:
        for d in (self.root, self.blobs, self.tmp):
            d.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)

    def _sweep(self, referenced: set[str]) -> None:
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)
        tightened = 0
        for blob in self.blobs.glob("*/*"):
            if blob.name not in referenced:
                blob.unlink(missing_ok=True)
            elif blob.stat().st_mode & 0o077:  # stored by a Roost that made blobs 0644
                blob.chmod(FILE_MODE)
                tightened += 1
        if tightened:
            log.warning("boot store: %d blobs were readable by others; now mode 0600", tightened)

    # -- reading -----------------------------------------------------------------------------

    async def get(self, name: str) -> BootFile | None:
        async with self.db.session() as s:
            row = await s.get(BootFileRow, name)
            return BootFile.of(row) if row else None

    async def lookup(self, name: str) -> BootFile | None:
        """:meth:`get` for the serving hot path: answers at most ``_FRESH`` seconds old, and
        one query for any number of concurrent misses on a name. A boot storm asks for the
        same few files thousands of times a second; the database should not see that. This
        process's own puts and deletes take effect at once; another replica's within
        ``_FRESH`` seconds."""
        hit = self._cache.get(name)
        if hit is not None and time.monotonic() - hit[0] < _FRESH:
            return hit[1]
        pending = self._pending.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[BootFile | None] = asyncio.get_running_loop().create_future()
        self._pending[name] = fut
        try:
            found = await self.get(name)
        except BaseException:
            fut.cancel()  # waiters see CancelledError only if they were cancelled themselves
            raise
        finally:
            del self._pending[name]
        if len(self._cache) >= _CACHE_MAX:  # unknown names are cached too: keep it bounded
            self._cache.clear()
        self._cache[name] = (time.monotonic(), found)
        fut.set_result(found)
        return found

    async def files(self) -> list[BootFile]:
        async with self.db.session() as s:
            rows = (await s.execute(select(BootFileRow).order_by(BootFileRow.name))).scalars()
            return [BootFile.of(r) for r in rows]

    async def open_file(self, name: str) -> tuple[Path, int] | None:
        """Path and size of a public boot file, for servers that send it (TFTP, HTTP).

        Node-private files are never returned: they go only through the token-checked URL.
        """
        found = await self.lookup(name)
        if found is None or found.node is not None:
            return None
        return self.blob_path(found.sha256), found.size

    # -- writing -----------------------------------------------------------------------------

    async def put(
        self,
        name: str,
        chunks: AsyncIterable[bytes],
        *,
        arch: str | None = None,
        content_type: str | None = None,
        node: str | None = None,
    ) -> BootFile:
        """Store the streamed bytes under ``name`` (replacing what was there) once durable."""
        check_file_name(name)
        arch = check_arch(arch) if arch else None
        node = normalize_mac(node) if node else None
        content_type = check_content_type(content_type) if content_type else None
        await asyncio.to_thread(self._mkdirs)
        tmp = self.tmp / f"{uuid.uuid4().hex}.part"
        f = await asyncio.to_thread(_create_private, tmp)
        digest = hashlib.sha256()
        size = 0
        try:
            buf = bytearray()
            async for chunk in chunks:
                size += len(chunk)
                if size > self.max_size:
                    raise TooLarge(f"{name}: larger than boot.max_file_size ({self.max_size} B)")
                buf += chunk
                if len(buf) >= _WRITE_CHUNK:
                    await asyncio.to_thread(_absorb, f, digest, bytes(buf))
                    buf.clear()
            await asyncio.to_thread(_absorb, f, digest, bytes(buf), final=True)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        f.close()
        sha = digest.hexdigest()
        async with self._lock:
            await asyncio.to_thread(self._install, tmp, sha)
            async with self.db.session() as s:
                row = await s.get(BootFileRow, name)
                old = row.sha256 if row else None
                if row is None:
                    row = BootFileRow(name=name)
                    s.add(row)
                row.sha256, row.size, row.arch, row.node = sha, size, arch, node
                row.content_type = content_type or guess_type(name)
                row.created_at = utcnow()
                await s.flush()
                stored = BootFile.of(row)
            self._cache.pop(name, None)
            if old and old != sha:
                await self._collect(old)
        return stored

    async def put_path(self, name: str, path: Path, *, arch: str | None = None) -> BootFile:
        """Import a local file (the iPXE binaries of Debian's package) without reading it whole."""

        async def chunks() -> AsyncIterable[bytes]:
            with path.open("rb") as src:
                while piece := await asyncio.to_thread(src.read, _WRITE_CHUNK):
                    yield piece

        return await self.put(name, chunks(), arch=arch)

    def _install(self, tmp: Path, sha: str) -> None:
        final = self.blob_path(sha)
        final.parent.mkdir(exist_ok=True, mode=DIR_MODE)
        os.replace(tmp, final)  # same bytes if it existed: replacing is harmless
        _fsync_dir(final.parent)

    async def delete(self, name: str) -> BootFile:
        async with self._lock:
            async with self.db.session() as s:
                row = await s.get(BootFileRow, name)
                if row is None:
                    raise NotFound(f"no boot file {name!r} (see GET /api/v1/boot/files)")
                gone = BootFile.of(row)
                await s.delete(row)
            self._cache.pop(name, None)
            await self._collect(gone.sha256)
        return gone

    async def _collect(self, sha: str) -> None:
        """Unlink a blob no name points at any more (caller holds the lock)."""
        async with self.db.session() as s:
            users = (
                await s.execute(
                    select(func.count()).select_from(BootFileRow).where(BootFileRow.sha256 == sha)
                )
            ).scalar_one()
        if not users:
            await asyncio.to_thread(self.blob_path(sha).unlink, missing_ok=True)


def _create_private(path: Path) -> IO[bytes]:
    """A new file for writing, mode 0600 whatever the umask (blobs include node-private files)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    return os.fdopen(fd, "wb")


def _absorb(f: IO[bytes], digest: hashlib._Hash, data: bytes, final: bool = False) -> None:
    digest.update(data)
    f.write(data)
    if final:
        f.flush()
        os.fsync(f.fileno())
