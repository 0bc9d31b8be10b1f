"""A throwaway PostgreSQL server: its own data directory and Unix socket, removed afterwards.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path


def find_bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def unavailable_reason() -> str | None:
    """Why no throwaway server can run here, or None when one can."""
    if find_bindir() is None:
        return "PostgreSQL server binaries (initdb, postgres) are not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no 'postgres' user to run the server as"
    return None


class ThrowawayPostgres:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="roost-pg-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_dir(self) -> Path:
        return self.base / "sock"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@/{database}?host={self.socket_dir}"

    def _as_owner(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def start(self) -> None:
        bindir = find_bindir()
        assert bindir is not None
        data = self.base / "data"
        self.socket_dir.mkdir()
        os.chmod(self.base, 0o755)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in (self.base, self.socket_dir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        subprocess.run(
            self._as_owner(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.proc = subprocess.Popen(
            self._as_owner(
                [
                    str(bindir / "postgres"),
                    "-D",
                    str(data),
                    "-k",
                    str(self.socket_dir),
                    "-c",
                    "listen_addresses=",
                    "-c",
                    "max_connections=200",
                    "-c",
                    "shared_buffers=64MB",
                    # Segments in the data directory, which stop() removes, not in /dev/shm,
                    # where a server killed before it cleans up leaves them behind.
                    "-c",
                    "dynamic_shared_memory_type=mmap",
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not (self.socket_dir / ".s.PGSQL.5432").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("throwaway PostgreSQL did not start")
            time.sleep(0.05)
        self.psql("SELECT 1")

    def psql(self, sql: str, database: str = "postgres") -> None:
        bindir = find_bindir()
        assert bindir is not None
        psql = bindir / "psql"
        argv = [
            str(psql) if psql.exists() else "psql",
            "-h",
            str(self.socket_dir),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            sql,
        ]
        for _ in range(100):
            result = subprocess.run(argv, capture_output=True)
            if result.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(result.stderr.decode())

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    pg = ThrowawayPostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()
