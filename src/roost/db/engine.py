"""The database handle: engine, sessions and migrations, for SQLite and PostgreSQL alike.

SQLite runs in WAL mode with foreign keys on and ``synchronous=FULL`` so that a row is on disk
before the caller acknowledges it; PostgreSQL is used as it comes (fsync on).

For a SQLite file there is also :attr:`Database.inline`, a synchronous engine for short writes
made on the event loop's own thread (the event bus's batches). aiosqlite runs every statement
in a worker thread, and under load those hops (thread wake-ups and GIL hand-overs) cost more
than the statements. The inline engine never waits for SQLite's write lock (busy timeout 0):
another connection may hold it across an ``await``, which waiting on the loop would deadlock,
so a caller that finds the database locked goes the asynchronous way instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

from roost.files import SQLITE_SIDECARS, private_file

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, busy_ms: int = 10000) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute(f"PRAGMA busy_timeout={busy_ms}")
    cur.close()


def _sqlite_pragmas_nowait(dbapi_conn: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_conn, record, busy_ms=0)


class Database:
    """Owns the engine; ``open()`` connects and migrates, ``close()`` disposes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self.inline: Engine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("database is not open")
        return self._engine

    async def open(self, migrate: bool = True) -> None:
        url = make_url(self.url)
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite" and url.database and url.database != ":memory:":
            path = Path(url.database)
            path.parent.mkdir(parents=True, exist_ok=True)
            # SQLite would create it 0644; its -wal and -shm copy the mode of this file
            private_file(path, SQLITE_SIDECARS)
        if self.dialect == "postgresql":
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self._engine = create_async_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)
            if url.database and url.database != ":memory:":
                self.inline = create_engine(url.set(drivername="sqlite"), poolclass=StaticPool)
                event.listen(self.inline, "connect", _sqlite_pragmas_nowait)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        if migrate:
            await self.migrate()

    async def migrate(self) -> None:
        """Apply every Alembic migration (all heads: each capability has its own branch)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)

    async def close(self) -> None:
        if self.inline is not None:
            self.inline.dispose()
            self.inline = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
            self._sessions = None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed on success and rolled back on error."""
        if self._sessions is None:
            raise RuntimeError("database is not open")
        async with self._sessions() as session, session.begin():
            yield session


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _upgrade(connection: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "heads")
