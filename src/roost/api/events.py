"""The event stream: Server-Sent Events, a WebSocket form, and a JSON history.

Filters: ``type`` (prefixes, repeated or comma-separated), ``subject``. Replay: the
``Last-Event-ID`` header or ``since`` (an event id, an ISO 8601 time, or an age such as
``15m``/``2h``/``1d``), then live with no gap and no duplicate (see roost.events).
A token limited to some sites sees only their events; an event without a site (server-wide:
tokens, start and stop, …) only unscoped tokens see.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from roost.api.deps import RuntimeDep, Viewer, websocket_principal
from roost.auth import Principal, Role
from roost.errors import Invalid
from roost.events import Event, EventFilter, SubscriberTooSlow, parse_types

router = APIRouter(prefix="/events", tags=["events"])

HEARTBEAT_SECONDS = 15.0
_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}

TypeQuery = Annotated[list[str], Query(description="type prefixes, e.g. dhcp. or node.state")]
SubjectQuery = Annotated[str | None, Query(description="exact subject, e.g. a MAC address")]
SinceQuery = Annotated[
    str | None, Query(description="replay from an event id, an ISO 8601 time, or an age (15m)")
]


def parse_since(since: str | None, last_event_id: str | None) -> tuple[int | None, datetime | None]:
    """Turn ``Last-Event-ID``/``since`` into (after_id, since_time)."""
    if last_event_id:
        if not last_event_id.isdigit():
            raise Invalid(f"Last-Event-ID must be an event id, got {last_event_id!r}")
        return int(last_event_id), None
    if not since:
        return None, None
    if since.isdigit():
        return int(since), None
    if m := _AGE.match(since):
        return None, datetime.now(UTC) - timedelta(seconds=float(m[1]) * _UNIT[m[2]])
    try:
        when = datetime.fromisoformat(since)
    except ValueError:
        raise Invalid(
            f"since must be an event id, an ISO 8601 time or an age like 15m; got {since!r}"
        ) from None
    return None, when if when.tzinfo else when.replace(tzinfo=UTC)


def _filter(who: Principal, types: list[str], subject: str | None) -> EventFilter:
    return EventFilter(types=parse_types(types), subject=subject, sites=who.sites)


def _sse(ev: Event) -> str:
    return f"id: {ev.id}\nevent: {ev.type}\ndata: {ev.model_dump_json()}\n\n"


async def _pump(source: AsyncIterator[Event], out: asyncio.Queue[Event | Exception | None]) -> None:
    try:
        async for ev in source:
            await out.put(ev)
        await out.put(None)
    except SubscriberTooSlow as exc:
        await out.put(exc)


@router.get(
    "",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
    summary="Stream events (Server-Sent Events)",
)
async def stream(
    runtime: RuntimeDep,
    who: Viewer,
    type: TypeQuery = [],  # noqa: B006 - FastAPI reads the default, never mutates it
    subject: SubjectQuery = None,
    since: SinceQuery = None,
    follow: bool = True,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    after_id, since_time = parse_since(since, last_event_id)
    flt = _filter(who, type, subject)

    async def body() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        if not follow:
            cursor = after_id
            while page := await runtime.bus.history(flt, after_id=cursor, since=since_time):
                for ev in page:
                    cursor = ev.id
                    yield _sse(ev)
            return
        queue: asyncio.Queue[Event | Exception | None] = asyncio.Queue(maxsize=1000)
        pump = asyncio.create_task(_pump(runtime.bus.stream(flt, after_id, since_time), queue))
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if item is None:
                    return
                if isinstance(item, Exception):
                    yield "event: overflow\ndata: {}\n\n"
                    return
                yield _sse(item)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/history", response_model=list[Event], summary="Stored events as JSON")
async def history(
    runtime: RuntimeDep,
    who: Viewer,
    type: TypeQuery = [],  # noqa: B006
    subject: SubjectQuery = None,
    since: SinceQuery = None,
    tail: Annotated[int, Query(ge=1, le=10_000, description="only the newest N")] = 100,
) -> list[Event]:
    after_id, since_time = parse_since(since, None)
    flt = _filter(who, type, subject)
    if after_id is None and since_time is None:
        return await runtime.bus.tail(flt, tail)
    return await runtime.bus.history(flt, after_id=after_id, since=since_time, limit=tail)


@router.websocket("/ws")
async def websocket(
    ws: WebSocket,
    type: TypeQuery = [],  # noqa: B006
    subject: SubjectQuery = None,
    since: SinceQuery = None,
) -> None:
    """The same stream as JSON text frames; auth by header or ``access_token`` query."""
    runtime = ws.app.state.runtime
    try:
        who = await websocket_principal(ws, Role.viewer)
        after_id, since_time = parse_since(since, None)
    except Exception as exc:  # auth or input: refuse the handshake with a reason
        await ws.close(code=1008, reason=str(getattr(exc, "detail", exc))[:120])
        return
    await ws.accept()
    try:
        async for ev in runtime.bus.stream(_filter(who, type, subject), after_id, since_time):
            await ws.send_text(ev.model_dump_json())
    except (WebSocketDisconnect, SubscriberTooSlow):
        pass
    with contextlib.suppress(Exception):
        await ws.close()
