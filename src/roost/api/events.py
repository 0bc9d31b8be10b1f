"""The event stream: Server-Sent Events, a WebSocket form, and a JSON history.

Filters: ``type`` (prefixes, repeated or comma-separated), ``subject``. Replay: the
``Last-Event-ID`` header or ``since`` (an event id, an ISO 8601 time, or an age such as
``15m``/``2h``/``1d``), then live with no gap and no duplicate (see roost.events).
A token limited to some sites sees only their events; an event without a site (server-wide:
tokens, start and stop, …) only unscoped tokens see.

A live stream lasts only as long as its token: when the token is revoked in this process the
stream ends at once, and every ``TOKEN_CHECK_SECONDS`` it reads the token again (revoked by
another replica on the same database, or expired). SSE then ends with ``event: revoked``
(data ``{"reason": "revoked" | "expired"}``); the WebSocket closes with code 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from roost.api.deps import RuntimeDep, Viewer, websocket_principal
from roost.auth import Principal, Role, on_revoke, token_ended
from roost.errors import Invalid
from roost.events import Event, EventFilter, SubscriberTooSlow, parse_types
from roost.service import Runtime

router = APIRouter(prefix="/events", tags=["events"])

HEARTBEAT_SECONDS = 15.0
TOKEN_CHECK_SECONDS = 2.0  # how stale a stream's view of its token may get (issue #15: 5 s)
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


class Idle:
    """Nothing happened for ``HEARTBEAT_SECONDS``."""


@dataclass(frozen=True)
class Ended:
    """Why a live stream ends early: ``overflow`` (too slow; reconnect with Last-Event-ID) or
    its token is no longer valid (``revoked``, ``expired``; do not reconnect with it)."""

    reason: str

    @property
    def token(self) -> bool:
        return self.reason != "overflow"


async def live_stream(
    runtime: Runtime,
    who: Principal,
    flt: EventFilter,
    after_id: int | None,
    since_time: datetime | None,
) -> AsyncGenerator[Event | Idle | Ended]:
    """Replay, then live events for ``who`` as long as its token is valid; an :class:`Ended`
    is the last item when the stream ends for a reason the client should hear."""
    queue: asyncio.Queue[Event | Exception | None] = asyncio.Queue(maxsize=1000)
    revoked = False

    def wake() -> None:  # revoke_token ran in this process: end without waiting for a check
        nonlocal revoked
        revoked = True
        with contextlib.suppress(asyncio.QueueFull):  # full: the loop is awake anyway
            queue.put_nowait(None)

    pump = asyncio.create_task(_pump(runtime.bus.stream(flt, after_id, since_time), queue))
    try:
        with on_revoke(who.token_id, wake):
            now = time.monotonic()
            check_at, beat_at = now + TOKEN_CHECK_SECONDS, now + HEARTBEAT_SECONDS
            while True:
                try:
                    timeout = max(0.0, min(check_at, beat_at) - time.monotonic())
                    item: Event | Exception | Idle | None = await asyncio.wait_for(
                        queue.get(), timeout
                    )
                except TimeoutError:
                    item = Idle()
                if revoked:
                    yield Ended("revoked")
                    return
                now = time.monotonic()
                if now >= check_at:  # a primary-key read, at most once per interval
                    if reason := await token_ended(runtime.db, who.token_id):
                        yield Ended(reason)
                        return
                    check_at = now + TOKEN_CHECK_SECONDS
                if isinstance(item, Idle):
                    if now >= beat_at:
                        beat_at = now + HEARTBEAT_SECONDS
                        yield item
                    continue
                if item is None:
                    return
                if isinstance(item, Exception):
                    yield Ended("overflow")
                    return
                beat_at = now + HEARTBEAT_SECONDS
                yield item
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump


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
    """Replay (``Last-Event-ID``/``since``), then live events. Ends with ``event: overflow``
    when the client is too slow (reconnect with ``Last-Event-ID``), or ``event: revoked`` with
    ``{"reason": "revoked" | "expired"}`` within 5 s of the token's revocation or expiry."""
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
        async with contextlib.aclosing(
            live_stream(runtime, who, flt, after_id, since_time)
        ) as live:
            async for item in live:
                if isinstance(item, Idle):
                    yield ": keep-alive\n\n"
                elif isinstance(item, Ended):
                    data = json.dumps({"reason": item.reason}) if item.token else "{}"
                    yield f"event: {'revoked' if item.token else 'overflow'}\ndata: {data}\n\n"
                else:
                    yield _sse(item)

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
    """The same stream as JSON text frames; auth by header or ``access_token`` query. Closes
    with 1008 ``token revoked``/``token expired`` within 5 s of either, 1013 when too slow."""
    runtime = ws.app.state.runtime
    try:
        who = await websocket_principal(ws, Role.viewer)
        after_id, since_time = parse_since(since, None)
    except Exception as exc:  # auth or input: refuse the handshake with a reason
        await ws.close(code=1008, reason=str(getattr(exc, "detail", exc))[:120])
        return
    await ws.accept()
    live = live_stream(runtime, who, _filter(who, type, subject), after_id, since_time)
    send = asyncio.create_task(_send_events(ws, live))
    # A client that leaves is noticed only by reading: without this, a stream with nothing to
    # send would stay (and keep checking its token) until its next event.
    gone = asyncio.create_task(_until_disconnect(ws))
    try:
        await asyncio.wait({send, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (send, gone):
            task.cancel()
        await asyncio.gather(send, gone, return_exceptions=True)  # neither outlives the socket
    if send.cancelled():  # the client left
        return
    failed = send.exception()
    if isinstance(failed, WebSocketDisconnect):
        return
    if failed is not None:
        raise failed
    code, reason = send.result()
    with contextlib.suppress(Exception):
        await ws.close(code=code, reason=reason)


async def _send_events(
    ws: WebSocket, live: AsyncGenerator[Event | Idle | Ended]
) -> tuple[int, str]:
    """Send the stream's events; the close code and reason to end with."""
    async with contextlib.aclosing(live):
        async for item in live:
            if isinstance(item, Ended):
                # 1008 (policy violation): the token no longer allows this stream; 1013
                # (try again later): too slow, reconnect and replay
                if item.token:
                    return 1008, f"token {item.reason}"
                return 1013, "too slow"
            if isinstance(item, Event):
                await ws.send_text(item.model_dump_json())
    return 1000, ""


async def _until_disconnect(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends until it disconnects."""
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass
