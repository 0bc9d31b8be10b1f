"""Where the TFTP server gets a file for a requested name: resolvers, tried in order.

The contract is one method, ``async resolve(path, client) -> TFTPFile | None``: ``path`` is the
filename exactly as the client sent it, ``client`` its ``(ip, port)``. ``None`` means "not
mine, ask the next resolver"; raising :class:`TFTPDenied` refuses the request outright with
that TFTP error and stops the chain. :class:`ChainResolver` puts per-client rendered content
(iPXE scripts by MAC or IP) before files, and :class:`DirectoryResolver` serves a directory
tree without ever letting a name reach outside it: ``..``, absolute names, backslashes, NUL
and control characters, over-long names, and symlinks pointing out of the tree are refused,
and only regular files are opened.

The directory resolver opens a name with ``openat2(RESOLVE_BENEATH)`` where the kernel has it
(Linux 5.6): one call in which the kernel itself refuses any step out of the root, symlinks
included, with no gap between a check and the open. What that call refuses or cannot do (an
absolute symlink, which it refuses even when it points inside the tree; an old kernel) goes
the checked way: resolve the whole name, compare it with the root, open without following
links, and confirm what was opened.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Callable, Iterable
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
# O_NONBLOCK: opening a FIFO must not hang the server.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
_SYS_OPENAT2 = 437  # the same number on every Linux architecture
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_HOW = _OpenHow(_OPEN_FLAGS, 0, _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)


def _find_syscall() -> Callable[..., int] | None:
    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p,
                        ctypes.c_size_t]  # fmt: skip
    return syscall


_syscall = _find_syscall()


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
        global _syscall
        if _syscall is not None:
            try:
                root = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
            except OSError:
                pass  # the checked way says why
            else:
                try:
                    name = os.fsencode("/".join(parts))
                    fd = _syscall(_SYS_OPENAT2, root, name, ctypes.byref(_HOW), ctypes.sizeof(_HOW))
                    failed = ctypes.get_errno() if fd < 0 else 0
                finally:
                    os.close(root)
                if fd >= 0:
                    return _regular(fd, None)
                if failed == errno.ENOENT:
                    return None
                if failed == errno.ENOSYS:
                    _syscall = None
                # Refused (EXDEV: a step out of the root, or an absolute symlink) or not
                # openable: the checked way decides, exactly as without openat2.
        return self._open_checked(parts)

    def _open_checked(self, parts: list[str]) -> TFTPFile | None:
        root = os.path.realpath(self.root)
        target = os.path.realpath(os.path.join(root, *parts))
        # A symlink inside the tree may point anywhere inside it, never out of it.
        if os.path.commonpath([root, target]) != root:
            raise TFTPDenied("filename leads outside the TFTP root")
        try:
            # O_NOFOLLOW: the resolved name has no symlink left, so one appearing now is a race
            # and is refused.
            fd = os.open(target, _OPEN_FLAGS | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
            raise TFTPDenied(f"cannot read: {exc.strerror}") from None
        except OSError as exc:
            raise TFTPDenied(f"cannot open: {exc.strerror}") from None
        return _regular(fd, target)


def _regular(fd: int, target: str | None) -> OpenFile:
    """``fd`` as a file to serve if it is a regular file (and, given ``target``, still the file
    resolved there); closed and refused otherwise."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TFTPDenied("not a regular file")
        if target is not None and _opened_path(fd) not in (None, target):
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
