"""Modes of what Roost keeps on disk: private to the user it runs as.

The data directory holds the database, the lease database, boot blobs (node-private files
among them), the CA key and the admin token, so it is ``0700`` and every file in it ``0600``.
Two layers make that hold: the process umask is ``077`` while Roost runs (anything a library
creates is private too), and the files Roost creates itself get explicit modes, so a caller
with a wider umask gets the same result. A data directory or database file left wider by an
older Roost is tightened at start, with a warning saying so: an existing directory is trusted
no more than a new one.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
# SQLite creates these beside a database with the database file's own mode.
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def private_umask() -> int:
    """Set the process umask to ``077``; returns the previous one (to restore)."""
    return os.umask(UMASK)


def _tighten(path: Path, mode: int) -> None:
    """``chmod`` ``path`` to ``mode`` when it grants more and belongs to this user."""
    st = path.stat()
    if stat.S_IMODE(st.st_mode) & ~mode and st.st_uid == os.geteuid():
        os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
        log.warning(
            "%s was mode %04o; now %04o (readable by this user only)",
            path,
            stat.S_IMODE(st.st_mode),
            stat.S_IMODE(st.st_mode) & mode,
        )


def private_dir(path: Path) -> Path:
    """Create ``path`` mode 0700 (parents as the umask says), or tighten it to that."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    _tighten(path, DIR_MODE)
    return path


def private_file(path: Path, sidecars: tuple[str, ...] = ()) -> Path:
    """Create ``path`` empty mode 0600 unless it exists, else tighten it (and the ``sidecars``
    that exist: ``path`` with each suffix appended) to 0600. Nothing is truncated."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    os.close(fd)
    for p in (path, *(path.with_name(path.name + s) for s in sidecars)):
        if p.exists():
            _tighten(p, FILE_MODE)
    return path
