"""Typed events, one bus for every service, persistence, retention and fan-out.

Theory of operation: a service calls :meth:`EventBus.publish` (waits until the event is
stored) or :meth:`EventBus.emit` (fire-and-forget, for hot packet paths). A single writer
task takes whatever is queued, stores it in one transaction (group commit) and only then
fans the stored events, now carrying their ids, out to live subscribers. With PostgreSQL the
same transaction sends ``NOTIFY roost_events`` so that other replicas on the database fan the
events out to their own subscribers as well.

:meth:`EventBus.stream` is what the API serves: it registers a live subscription *first*,
then replays stored events, then continues live, skipping what the replay already delivered,
so a reconnecting client sees no gap and no duplicate. A subscriber that falls too far
behind is cut off rather than silently losing events; it reconnects with ``Last-Event-ID``.

Sites: an event carries the site of the object it is about (a node's, a DHCP subnet's; the
publisher passes it), and a reader limited to some sites gets only events of those sites
(:func:`roost.auth.in_scope`). An event about nothing of a site (a token, the server starting,
a malformed packet on an interface) has no site and goes to unscoped readers only: the bus
never stamps the server's own site on it, which handed server-wide events to that site's
viewers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from pydantic import BaseModel, Field
from sqlalchemy import Select, Table, delete, insert, or_, select, text
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.pool import PoolProxiedConnection

from roost.auth import in_scope
from roost.db import Database
from roost.db.models import EventRow
from roost.settings import EventSettings

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "roost_events"
_WRITE_BATCH = 1000
# Fire-and-forget events are written at most once per _LINGER: when the last write is more
# recent, the next batch waits out the rest of the interval. Idle, an event is written at once;
# under load (a DHCP server emits thousands a second) one transaction carries dozens of events
# instead of one, and a write costs mostly per transaction. A publish() ends the wait.
_LINGER = 0.005
_INLINE_INSERT = "INSERT INTO events (time, type, subject, site, data) VALUES (?, ?, ?, ?, ?)"
_NOTIFY_IDS = 400  # ids per NOTIFY payload; PostgreSQL caps payloads at 8000 bytes


class Event(BaseModel):
    """One thing that happened, as stored and as streamed."""

    id: int | None = None
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    type: str = Field(min_length=1, max_length=128, examples=["dhcp.lease.bound"])
    subject: str = Field(default="", max_length=255)
    site: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class Routed(Protocol):
    """What filters look at: an :class:`Event`, or one still on its way to the database."""

    @property
    def type(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def site(self) -> str | None: ...


@dataclass(frozen=True)
class EventFilter:
    """Which events a reader wants: type prefixes (any of), a subject, allowed sites."""

    types: tuple[str, ...] = ()
    subject: str | None = None
    sites: tuple[str, ...] | None = None  # None: every site and events of none

    def matches(self, ev: Routed) -> bool:
        if self.types and not any(ev.type.startswith(p) for p in self.types):
            return False
        if self.subject is not None and ev.subject != self.subject:
            return False
        return in_scope(ev.site, self.sites)


class SubscriberTooSlow(Exception):
    """The subscriber's queue overflowed; it must reconnect and replay."""


@dataclass(eq=False)
class Subscription:
    filter: EventFilter
    queue: asyncio.Queue[Event | None]
    overflowed: bool = False
    first: int | None = None
    last: int | None = None
    """Ids of the first and the latest event queued, which bound what a replay running beside
    the subscription must not give again (:meth:`EventBus.batches`)."""

    def deliver(self, ev: Event) -> None:
        if self.wants(ev):
            self.put(ev)

    def wants(self, ev: Routed) -> bool:
        return not self.overflowed and self.filter.matches(ev)

    def put(self, ev: Event) -> None:
        try:
            self.queue.put_nowait(ev)
        except asyncio.QueueFull:
            self.overflowed = True
            return
        if self.first is None:
            self.first = ev.id
        self.last = ev.id

    def close(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)

    def ready(self, limit: int) -> list[Event]:
        """Up to ``limit`` events already queued, without waiting (none past the end)."""
        out: list[Event] = []
        while len(out) < limit and not self.queue.empty():
            ev = self.queue.get_nowait()
            if ev is None:
                self.queue.put_nowait(None)  # the end: the next get() returns it
                break
            out.append(ev)
        return out

    async def get(self) -> Event | None:
        """The next event, or ``None`` when the bus shuts down."""
        if self.overflowed and self.queue.empty():
            raise SubscriberTooSlow
        ev = await self.queue.get()
        if ev is None and self.overflowed:
            raise SubscriberTooSlow
        return ev


@dataclass(slots=True)
class _Pending:
    """An event on its way to the database. The :class:`Event` model is built only for whoever
    receives it (a ``publish()`` caller, a subscriber whose filter matches): under a DHCP
    server's load most events are stored and never streamed, and the model cost more than
    the rest of the event's trip."""

    time: datetime
    type: str
    subject: str
    site: str | None
    data: dict[str, Any]
    done: asyncio.Future[Event] | None

    def event(self, ev_id: int) -> Event:
        return Event(
            id=ev_id,
            time=self.time,
            type=self.type,
            subject=self.subject,
            site=self.site,
            data=self.data,
        )


@dataclass
class EventBus:
    """The process-wide event bus; constructed without I/O, started by :meth:`start`."""

    db: Database
    settings: EventSettings
    instance: str = field(default_factory=lambda: uuid.uuid4().hex)
    _queue: asyncio.Queue[_Pending] = field(default_factory=asyncio.Queue)
    _subs: set[Subscription] = field(default_factory=set)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _listener: Any = None
    _remote: asyncio.Queue[list[int]] = field(default_factory=asyncio.Queue)
    _urgent: asyncio.Event = field(default_factory=asyncio.Event)  # a publish() is queued
    _inline_binds: tuple[Callable[[Any], Any], Callable[[Any], Any]] | None = None
    _inline_conn: PoolProxiedConnection | None = None
    published: int = 0

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._writer(), name="events-writer"))
        self._tasks.append(asyncio.create_task(self._retention(), name="events-retention"))
        if self.db.dialect == "postgresql":
            await self._listen()

    async def stop(self) -> None:
        await self._queue.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._inline_conn is not None:
            self._inline_conn.close()  # back to the engine's pool, which the database disposes
            self._inline_conn = None
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
        self.end_streams()

    def end_streams(self) -> None:
        """Tell every live subscriber that the stream ends (at shutdown)."""
        for sub in list(self._subs):
            sub.close()

    # -- publishing ------------------------------------------------------------------------

    def _pending(
        self,
        type: str,
        subject: str,
        data: dict[str, Any] | None,
        site: str | None,
        done: asyncio.Future[Event] | None,
    ) -> _Pending:
        # the Event model's limits, which are the columns' (checked here: the model is built later)
        if not 1 <= len(type) <= 128:
            raise ValueError(f"event type must have 1 to 128 characters, not {len(type)}")
        if len(subject) > 255:
            raise ValueError(f"event subject must have at most 255 characters, not {len(subject)}")
        return _Pending(datetime.now(UTC), type, subject, site, data or {}, done)

    async def publish(
        self,
        type: str,
        subject: str = "",
        data: dict[str, Any] | None = None,
        site: str | None = None,
    ) -> Event:
        """Store an event and return it with its id once it is durable. ``site``: the site of
        what it is about; None for a server-wide event, which only unscoped readers get."""
        done: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(self._pending(type, subject, data, site, done))
        self._urgent.set()
        return await done

    def emit(
        self,
        type: str,
        subject: str = "",
        data: dict[str, Any] | None = None,
        site: str | None = None,
    ) -> None:
        """Queue an event without waiting; for paths that must not block."""
        self._queue.put_nowait(self._pending(type, subject, data, site, None))

    async def _writer(self) -> None:
        loop = asyncio.get_running_loop()
        last = -_LINGER
        while True:
            batch = [await self._queue.get()]
            wait = last + _LINGER - loop.time()
            if wait > 0 and not self._urgent.is_set():
                await self._linger(wait)
            self._urgent.clear()
            last = loop.time()
            while len(batch) < _WRITE_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._store(batch)
            except Exception as exc:
                log.exception("storing %d events failed", len(batch))
                for p in batch:
                    if p.done is not None and not p.done.done():
                        p.done.set_exception(exc)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _linger(self, seconds: float) -> None:
        """Wait for more events; a publish() ends the wait at once."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._urgent.wait()

    async def _store(self, batch: list[_Pending]) -> None:
        ids = self._store_inline(batch)
        if ids is None:
            rows = [
                {"time": p.time, "type": p.type, "subject": p.subject, "site": p.site,
                 "data": p.data}
                for p in batch
            ]  # fmt: skip
            # Core, not the ORM: no identity map or per-row unit of work for rows never loaded.
            table = cast(Table, EventRow.__table__)
            stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
            async with self.db.session() as s:
                ids = [r[0] for r in await s.execute(stmt, rows)]
                if self.db.dialect == "postgresql":
                    for i in range(0, len(ids), _NOTIFY_IDS):
                        payload = json.dumps({"o": self.instance, "ids": ids[i : i + _NOTIFY_IDS]})
                        await s.execute(
                            text("SELECT pg_notify(:ch, :p)"), {"ch": NOTIFY_CHANNEL, "p": payload}
                        )
        subs = self._subs
        for p, ev_id in zip(batch, ids, strict=True):
            self.published += 1
            ev = None
            for sub in subs:
                if sub.wants(p):
                    ev = ev or p.event(ev_id)
                    sub.put(ev)
            if p.done is not None and not p.done.done():
                p.done.set_result(ev or p.event(ev_id))

    def _store_inline(self, batch: list[_Pending]) -> list[int] | None:
        """Write on the loop's thread (SQLite file); ``None`` when another writer holds the
        lock, and then the caller takes the asynchronous path, which may wait for it.

        One ``executemany`` on the driver's cursor with the columns' own bind processors
        (SQLAlchemy's per-row statement machinery cost more than SQLite's work). The ids are
        the last ``len(rows)`` rowids: the transaction holds the write lock, so nothing else
        inserts in between, and SQLite gives each new row the largest rowid plus one.
        """
        engine = self.db.inline
        if engine is None:
            return None
        conn = self._inline_conn
        if conn is None:
            # held for the bus's life: a checkout and a transaction object per batch cost
            # more than the batch's own SQL (the pool is static, one connection)
            conn = self._inline_conn = engine.raw_connection()
            cols, dialect = EventRow.__table__.c, engine.dialect
            self._inline_binds = (  # the dialect's own storage format, as the ORM writes it
                cols.time.type.dialect_impl(dialect).bind_processor(dialect) or _same,
                cols.data.type.dialect_impl(dialect).bind_processor(dialect) or _same,
            )
        assert self._inline_binds is not None
        time_of, data_of = self._inline_binds
        params = [(time_of(p.time), p.type, p.subject, p.site, data_of(p.data)) for p in batch]
        cur = conn.cursor()
        try:
            cur.executemany(_INLINE_INSERT, params)  # sqlite3 opens the transaction itself
            last = cur.execute("SELECT last_insert_rowid()").fetchone()[0]
            conn.commit()
        except sqlite3.OperationalError as exc:
            conn.rollback()
            if "database is locked" in str(exc):
                return None
            raise
        except BaseException:
            conn.rollback()
            raise
        finally:
            cur.close()
        return list(range(last - len(batch) + 1, last + 1))

    def _fan_out(self, ev: Event) -> None:
        for sub in self._subs:
            sub.deliver(ev)

    # -- other replicas (PostgreSQL LISTEN/NOTIFY) -------------------------------------------

    async def _listen(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        dsn = (
            make_url(self.db.url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        self._listener = await asyncpg.connect(dsn)
        self._tasks.append(asyncio.create_task(self._fan_out_remote(), name="events-remote"))
        await self._listener.add_listener(NOTIFY_CHANNEL, self._on_notify)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        msg = json.loads(payload)
        if msg.get("o") != self.instance:
            self._remote.put_nowait(msg["ids"])

    async def _fan_out_remote(self) -> None:
        """One task, in notification order, so remote events keep their order."""
        while True:
            ids = await self._remote.get()
            try:
                async with self.db.session() as s:
                    rows = (
                        await s.execute(
                            select(EventRow).where(EventRow.id.in_(ids)).order_by(EventRow.id)
                        )
                    ).scalars()
                    for row in rows:
                        self._fan_out(_to_event(row))
            except Exception:
                log.exception("fetching %d events announced by another replica failed", len(ids))

    # -- reading ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def subscribe(self, flt: EventFilter) -> Iterator[Subscription]:
        sub = Subscription(flt, asyncio.Queue(self.settings.subscriber_queue + 1))
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)

    async def history(
        self,
        flt: EventFilter,
        after_id: int | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        q = select(EventRow).order_by(EventRow.id).limit(limit)
        if after_id is not None:
            q = q.where(EventRow.id > after_id)
        if since is not None:
            q = q.where(EventRow.time >= since)
        async with self.db.session() as s:
            return [_to_event(r) for r in (await s.execute(self._filtered(q, flt))).scalars()]

    @staticmethod
    def _filtered(q: Select[EventRow], flt: EventFilter) -> Select[EventRow]:
        if flt.types:
            q = q.where(or_(*(EventRow.type.startswith(p, autoescape=True) for p in flt.types)))
        if flt.subject is not None:
            q = q.where(EventRow.subject == flt.subject)
        if flt.sites is not None:  # in_scope() in SQL: NULL is in no list
            q = q.where(EventRow.site.in_(flt.sites))
        return q

    async def tail(self, flt: EventFilter, count: int) -> list[Event]:
        """The newest ``count`` matching events, oldest first."""
        q = self._filtered(select(EventRow), flt).order_by(EventRow.id.desc()).limit(count)
        async with self.db.session() as s:
            return [_to_event(r) for r in reversed(list((await s.execute(q)).scalars()))]

    async def stream(
        self,
        flt: EventFilter,
        after_id: int | None = None,
        since: datetime | None = None,
        replay: bool = True,
    ) -> AsyncIterator[Event]:
        """Replay (when asked) and then follow live events; ends when the bus stops."""
        async for batch in self.batches(flt, after_id, since, replay):
            for ev in batch:
                yield ev

    async def batches(
        self,
        flt: EventFilter,
        after_id: int | None = None,
        since: datetime | None = None,
        replay: bool = True,
        limit: int = 1000,
        subscribed: Callable[[], None] | None = None,
    ) -> AsyncIterator[list[Event]]:
        """:meth:`stream` in lists of up to ``limit``: stored pages first, then as many live
        events as are waiting. ``subscribed`` is called once the live subscription is in
        place, before anything is read; nothing published after it is missed."""
        with self.subscribe(flt) as sub:
            if subscribed is not None:
                subscribed()
            # What the replay gave that may also come live, not to be given twice: its ids from
            # the first one queued on (published while it ran; once the queue overflowed, only
            # up to the last one queued), and its last few, for events stored but not yet
            # delivered when a page was read.
            recent: deque[int | None] = deque(maxlen=self.settings.subscriber_queue + 1)
            queued_too: set[int | None] = set()
            if replay and (after_id is not None or since is not None):
                cursor = after_id
                while True:
                    page = await self.history(flt, after_id=cursor, since=since, limit=limit)
                    if page:
                        recent.extend(ev.id for ev in page)
                        first = sub.first
                        if first is not None:
                            upto = sub.last if sub.overflowed else None
                            queued_too.update(
                                i
                                for ev in page
                                if (i := ev.id) is not None
                                and i >= first
                                and (upto is None or i <= upto)
                            )
                        cursor = page[-1].id
                        yield page
                    if len(page) < limit:
                        break
            seen = queued_too.union(recent)
            while (live := await sub.get()) is not None:
                batch = [ev for ev in [live, *sub.ready(limit - 1)] if ev.id not in seen]
                if batch:
                    yield batch

    # -- retention -------------------------------------------------------------------------

    async def sweep(self, now: datetime | None = None) -> int:
        """Delete events past their retention time or beyond the row cap; return how many."""
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(days=self.settings.retention_days)
        async with self.db.session() as s:
            res = await s.execute(delete(EventRow).where(EventRow.time < cutoff))
            gone = cast(CursorResult[Any], res).rowcount
            keep_from = (
                await s.execute(
                    select(EventRow.id)
                    .order_by(EventRow.id.desc())
                    .offset(self.settings.max_rows - 1)
                    .limit(1)
                )
            ).scalar()
            if keep_from is not None:
                res = await s.execute(delete(EventRow).where(EventRow.id < keep_from))
                gone += cast(CursorResult[Any], res).rowcount
        return int(gone or 0)

    async def _retention(self) -> None:
        while True:
            try:
                n = await self.sweep()
                if n:
                    log.info("event retention removed %d events", n)
            except Exception:
                log.exception("event retention sweep failed")
            await asyncio.sleep(3600)


def _same(value: Any) -> Any:
    return value


def _to_event(row: EventRow) -> Event:
    return Event(
        id=row.id, time=row.time, type=row.type, subject=row.subject, site=row.site, data=row.data
    )


def parse_types(values: Sequence[str]) -> tuple[str, ...]:
    """Type prefixes from repeated or comma-separated parameters."""
    return tuple(p.strip() for v in values for p in v.split(",") if p.strip())
