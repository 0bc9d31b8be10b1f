"""Cursors into the event stream: how far a follower (the inventory) has applied it.

A follower advances its cursor in the same transaction as the changes an event caused, so
after a crash or restart it resumes right after the last event whose changes were committed:
nothing applied twice, nothing skipped. Cursors only move forward; replicas that follow the
same stream share one, which then says that some replica has applied every event up to it.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from roost.db.engine import Database
from roost.db.models import CursorRow, EventRow

__all__ = ["advance", "forget", "resume_point"]


async def resume_point(db: Database, name: str) -> int:
    """The id after which ``name`` resumes. The first time, the newest stored event's (0 if
    none), saved: a new follower starts from now, not from the whole stored history."""
    try:
        async with db.session() as s:
            row = await s.get(CursorRow, name)
            if row is not None:
                return row.event_id
            newest = int((await s.execute(select(func.max(EventRow.id)))).scalar() or 0)
            s.add(CursorRow(name=name, event_id=newest))
    except IntegrityError:  # another replica saved it first
        async with db.session() as s:
            row = await s.get(CursorRow, name)
            assert row is not None
            return row.event_id
    return newest


async def advance(s: AsyncSession, name: str, event_id: int) -> None:
    """Move ``name`` forward to ``event_id`` within the caller's transaction (never back)."""
    res = await s.execute(
        update(CursorRow)
        .where(CursorRow.name == name, CursorRow.event_id < event_id)
        .values(event_id=event_id)
    )
    if not cast(CursorResult[Any], res).rowcount and await s.get(CursorRow, name) is None:
        s.add(CursorRow(name=name, event_id=event_id))


async def forget(db: Database, name: str) -> None:
    """Drop ``name``: its next :func:`resume_point` is the newest event again."""
    async with db.session() as s:
        await s.execute(delete(CursorRow).where(CursorRow.name == name))
