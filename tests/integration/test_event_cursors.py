"""Cursors into the event stream: saved with the follower's changes, only ever forward."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from roost.db import cursors
from roost.db.models import Base
from roost.events import EventFilter
from roost.service import Runtime


async def test_migration_creates_the_cursor_table_as_modelled(runtime: Runtime) -> None:
    def diff(conn: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))

    async with runtime.db.engine.connect() as conn:
        found = await conn.run_sync(diff)
    assert "event_cursors" in Base.metadata.tables
    assert [d for d in found if "event_cursors" in repr(d)] == []


async def test_a_cursor_starts_at_the_newest_event_and_only_moves_forward(
    runtime: Runtime,
) -> None:
    db = runtime.db
    await runtime.bus.publish("test.cursor", "a")
    newest = (await runtime.bus.history(EventFilter(types=("test.cursor",))))[-1].id
    assert newest is not None
    assert await cursors.resume_point(db, "t") == newest
    await runtime.bus.publish("test.cursor", "b")
    assert await cursors.resume_point(db, "t") == newest  # saved the first time, not "now"
    async with db.session() as s:
        await cursors.advance(s, "t", newest + 5)
    async with db.session() as s:
        await cursors.advance(s, "t", newest + 2)  # never back
    assert await cursors.resume_point(db, "t") == newest + 5
    with pytest.raises(RuntimeError):
        async with db.session() as s:
            await cursors.advance(s, "t", newest + 9)
            raise RuntimeError("the follower's changes failed")
    assert await cursors.resume_point(db, "t") == newest + 5  # rolled back with them
    async with db.session() as s:
        await cursors.advance(s, "u", 3)  # made on first advance too
    assert await cursors.resume_point(db, "u") == 3
    await cursors.forget(db, "t")
    latest = (await runtime.bus.history(EventFilter(types=("test.cursor",))))[-1].id
    assert await cursors.resume_point(db, "t") == latest
