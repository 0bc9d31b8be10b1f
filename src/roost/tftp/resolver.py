"""Where the TFTP server gets a file for a requested name: resolvers, tried in order.

The contract is one method, ``async resolve(path, client) -> TFTPFile | None``: ``path`` is the
filename exactly as the client sent it, ``client`` its ``(ip, port)``. ``None`` means "not
mine, ask the next resolver"; raising :class:`TFTPDenied` refuses the request outright with
that TFTP error and stops the chain. :class:`ChainResolver` puts per-client rendered content
(iPXE scripts by MAC or IP) before files, and :class:`DirectoryResolver` serves a directory
tree without ever letting a name reach outside it: ``..``, absolute names, backslashes, NUL
and control characters, over-long names, and symlinks pointing out of the tree are refused,
and only regular files are opened.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

from roost.tftp.codec import ErrorCode
from roost.tftp.files import OpenFile, TFTPFile

__all__ = [
    "MAX_PATH",
    "ChainResolver",
    "DirectoryResolver",
    "Resolver",
    "TFTPDenied",
    "safe_parts",
]

MAX_PATH = 255
"""Longest accepted filename in bytes; longer requests are refused, not truncated."""


class TFTPDenied(Exception):
    """A resolver refuses the request; the client gets ERROR ``code`` with this message."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.ACCESS_VIOLATION) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@runtime_checkable
class Resolver(Protocol):
    async def resolve(self, path: str, client: tuple[str, int]) -> TFTPFile | None:
        """The file for ``path`` asked by ``client``, ``None`` if this resolver has none."""
        ...


class ChainResolver:
    """Asks ``resolvers`` in order; the first file wins. ``resolvers`` is a public list so other
    capabilities can insert theirs (rendered content goes first) before the server starts."""

    def __init__(self, resolvers: Iterable[Resolver] = ()) -> None:
        self.resolvers: list[Resolver] = list(resolvers)

    async def resolve(self, path: str, client: tuple[str, int]) -> TFTPFile | None:
        for resolver in self.resolvers:
            found = await resolver.resolve(path, client)
            if found is not None:
                return found
        return None


def safe_parts(path: str) -> list[str]:
    """The components of a requested name, or :class:`TFTPDenied` when it could escape.

    Empty and ``.`` components are dropped (``a//./b`` is ``a/b``); everything that could name
    something outside the root, or confuse a filesystem, is refused rather than rewritten.
    """
    raw = path.encode("utf-8", "surrogateescape")
    if not raw:
        raise TFTPDenied("empty filename")
    if len(raw) > MAX_PATH:
        raise TFTPDenied(f"filename longer than {MAX_PATH} bytes")
    if any(b < 0x20 or b == 0x7F for b in raw):
        raise TFTPDenied("control character or NUL in filename")
    if b"\\" in raw:
        raise TFTPDenied("backslash in filename")
    if raw.startswith(b"/"):
        raise TFTPDenied("absolute filename")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise TFTPDenied("'..' in filename")
    if not parts:
        raise TFTPDenied("filename names no file")
    return parts


class DirectoryResolver:
    """Serves regular files below ``root``; see the module docstring for what is refused."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    async def resolve(self, path: str, client: tuple[str, int]) -> TFTPFile | None:
        # Synchronous on purpose: a few metadata calls on a local tree cost microseconds, less
        # than handing them to a thread.
        return self.open(safe_parts(path))

    def open(self, parts: list[str]) -> TFTPFile | None:
        """Open ``root/parts`` (already checked by :func:`safe_parts`) or return None."""
        root = os.path.realpath(self.root)
        target = os.path.realpath(os.path.join(root, *parts))
        # A symlink inside the tree may point anywhere inside it, never out of it.
        if os.path.commonpath([root, target]) != root:
            raise TFTPDenied("filename leads outside the TFTP root")
        try:
            # O_NONBLOCK: opening a FIFO must not hang the server; O_NOFOLLOW: the resolved
            # name has no symlink left, so one appearing now is a race and is refused.
            fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
            raise TFTPDenied(f"cannot read: {exc.strerror}") from None
        except OSError as exc:
            raise TFTPDenied(f"cannot open: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise TFTPDenied("not a regular file")
            if _opened_path(fd) not in (None, target):
                raise TFTPDenied("filename changed while being opened")
        except BaseException:
            os.close(fd)
            raise
        return OpenFile(fd, st.st_size)


def _opened_path(fd: int) -> str | None:
    """What the kernel says ``fd`` is (Linux); closes the gap between realpath and open."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
