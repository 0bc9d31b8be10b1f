"""The event bus and its streams, on both databases: persistence, replay with no gap and no
duplicate, filters, site scopes, SSE and WebSocket over a real server, retention."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import text

from roost.auth import Role, create_token
from roost.events import Event, EventFilter, SubscriberTooSlow
from roost.service import Runtime


async def test_publish_persists_and_assigns_increasing_ids(runtime: Runtime) -> None:
    first = await runtime.bus.publish("test.a", "s1", {"n": 1})
    second = await runtime.bus.publish("test.b", "s2", {"n": 2})
    assert first.id is not None and second.id is not None and second.id > first.id
    stored = await runtime.bus.history(EventFilter(types=("test.",)))
    assert [(e.type, e.subject, e.data) for e in stored] == [
        ("test.a", "s1", {"n": 1}),
        ("test.b", "s2", {"n": 2}),
    ]


async def test_emit_batches_and_all_arrive(runtime: Runtime) -> None:
    for i in range(500):
        runtime.bus.emit("test.burst", str(i))
    await runtime.bus.publish("test.end")
    stored = await runtime.bus.history(EventFilter(types=("test.burst",)), limit=1000)
    assert [e.subject for e in stored] == [str(i) for i in range(500)]


async def test_stream_replays_then_follows_without_gap_or_duplicate(runtime: Runtime) -> None:
    before = [await runtime.bus.publish("test.x", str(i)) for i in range(5)]
    after_id = before[1].id
    got: list[str] = []

    async def reader() -> None:
        async for ev in runtime.bus.stream(EventFilter(types=("test.",)), after_id=after_id):
            got.append(ev.subject)
            if len(got) == 8:
                return

    task = asyncio.create_task(reader())
    # Publish while the replay may still be running: each event must arrive exactly once.
    for i in range(5, 10):
        runtime.bus.emit("test.x", str(i))
    await asyncio.wait_for(task, 10)
    assert got == [str(i) for i in range(2, 10)]


async def test_a_replay_does_not_give_again_what_its_live_queue_holds(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Events published after the stream subscribed but before its replay read them come both
    # in the replay and in the live queue. Here 14 of them overflow a queue of 10, so the
    # stream gives the replay, then must end as too slow without giving the 10 queued ones
    # again (the replay's last 11 ids alone do not cover the first 3).
    monkeypatch.setattr(runtime.bus.settings, "subscriber_queue", 10)
    start = await runtime.bus.publish("test.q", "start")
    real = runtime.bus.history
    calls = 0

    async def history(*args: Any, **kw: Any) -> list[Event]:
        nonlocal calls
        calls += 1
        if calls == 1:
            for i in range(14):
                await runtime.bus.publish("test.q", str(i))
        return await real(*args, **kw)

    monkeypatch.setattr(runtime.bus, "history", history)
    got: list[str] = []
    flt = EventFilter(types=("test.q",))
    with pytest.raises(SubscriberTooSlow):
        async for batch in runtime.bus.batches(flt, after_id=start.id, limit=5):
            got.extend(ev.subject for ev in batch)
    assert got == [str(i) for i in range(14)]


async def test_filters_by_type_prefix_subject_and_site(runtime: Runtime) -> None:
    await runtime.bus.publish("dhcp.lease.bound", "aa", site="lab")
    await runtime.bus.publish("dhcp.lease.bound", "bb", site="other")
    await runtime.bus.publish("node.state.changed", "aa", site="lab")
    only_dhcp = await runtime.bus.history(EventFilter(types=("dhcp.",)))
    assert {e.subject for e in only_dhcp} == {"aa", "bb"}
    by_subject = await runtime.bus.history(EventFilter(subject="aa"))
    assert [e.type for e in by_subject] == ["dhcp.lease.bound", "node.state.changed"]
    scoped = await runtime.bus.history(EventFilter(types=("dhcp.", "node."), sites=("lab",)))
    assert {(e.type, e.site) for e in scoped} == {
        ("dhcp.lease.bound", "lab"),
        ("node.state.changed", "lab"),
    }


async def test_retention_sweep_removes_old_events(runtime: Runtime) -> None:
    await runtime.bus.publish("test.old")
    later = datetime.now(UTC) + timedelta(days=runtime.settings.events.retention_days + 1)
    assert await runtime.bus.sweep(now=later) >= 1
    assert await runtime.bus.history(EventFilter(types=("test.",))) == []


def _sse_events(text: str) -> list[dict[str, Any]]:
    out = []
    for block in text.split("\n\n"):
        data = [line[5:].strip() for line in block.splitlines() if line.startswith("data:")]
        if data:
            out.append(json.loads("\n".join(data)))
    return out


async def test_sse_replays_from_last_event_id_and_continues_live(
    runtime: Runtime, live_url: str, admin_token: str
) -> None:
    seed = [await runtime.bus.publish("test.sse", str(i)) for i in range(3)]
    headers = {"Authorization": f"Bearer {admin_token}", "Last-Event-ID": str(seed[0].id)}
    received: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=live_url, timeout=10) as client,
        client.stream("GET", "/api/v1/events", params={"type": "test."}, headers=headers) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        buf = ""
        published = False
        async for chunk in r.aiter_text():
            buf += chunk
            received = _sse_events(buf)
            if len(received) >= 2 and not published:
                await runtime.bus.publish("test.sse", "live")
                published = True
            if len(received) == 3:
                break
    assert [e["subject"] for e in received] == ["1", "2", "live"]
    assert [e["id"] for e in received][:2] == [seed[1].id, seed[2].id]


async def test_sse_without_follow_ends_after_replay(
    runtime: Runtime, live_url: str, admin_token: str
) -> None:
    for i in range(3):
        await runtime.bus.publish("test.once", str(i))
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as client:
        r = await client.get(
            "/api/v1/events",
            params={"type": "test.once", "since": "0", "follow": "false"},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
    assert [e["subject"] for e in _sse_events(r.text)] == ["0", "1", "2"]


async def test_sse_rejects_bad_since_with_problem(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v1/events", params={"since": "yesterday-ish"})
    assert r.status_code == 422
    assert "ISO 8601" in r.json()["detail"]


async def test_websocket_streams_same_events_and_requires_token(
    runtime: Runtime, live_url: str, admin_token: str
) -> None:
    ws_url = live_url.replace("http://", "ws://") + "/api/v1/events/ws?type=test.ws&since=0"
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(ws_url):
            pass
    await runtime.bus.publish("test.ws", "replayed")
    async with websockets.connect(
        ws_url, additional_headers={"Authorization": f"Bearer {admin_token}"}
    ) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await runtime.bus.publish("test.ws", "live")
        second = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert (first["subject"], second["subject"]) == ("replayed", "live")


async def test_websocket_of_a_client_that_left_ends_without_waiting_for_an_event(
    runtime: Runtime, live_url: str, admin_token: str
) -> None:
    # The handler reads the socket: a client that closes is noticed at once, not at the next
    # matching event, which may never come (and meanwhile its stream re-reads its token).
    ws_url = live_url.replace("http://", "ws://") + "/api/v1/events/ws?type=test.never"
    before = len(runtime.bus._subs)
    async with websockets.connect(
        ws_url, additional_headers={"Authorization": f"Bearer {admin_token}"}
    ):
        for _ in range(100):
            if len(runtime.bus._subs) > before:
                break
            await asyncio.sleep(0.05)
        assert len(runtime.bus._subs) == before + 1
    for _ in range(100):
        if len(runtime.bus._subs) == before:
            break
        await asyncio.sleep(0.05)
    assert len(runtime.bus._subs) == before, "the subscription outlived its client"


async def test_site_scoped_token_sees_only_its_sites(
    runtime: Runtime, api: httpx.AsyncClient
) -> None:
    scoped = await create_token(runtime.db, "lab only", Role.viewer, sites=["lab"])
    await runtime.bus.publish("test.scope", "a", site="lab")
    await runtime.bus.publish("test.scope", "b", site="elsewhere")
    r = await api.get(
        "/api/v1/events/history",
        params={"type": "test.scope"},
        headers={"Authorization": f"Bearer {scoped.secret}"},
    )
    assert [e["subject"] for e in r.json()] == ["a"]


async def test_ids_given_at_write_match_the_stored_rows(runtime: Runtime) -> None:
    """Live subscribers get ids from the write; a replay reads them back from the table:
    both must name the same events (the SQLite write computes them from the last rowid)."""
    with runtime.bus.subscribe(EventFilter(types=("test.ids",))) as sub:
        for i in range(50):
            runtime.bus.emit("test.ids", str(i), {"n": i, "nested": {"k": [i]}})
        live = [await asyncio.wait_for(sub.get(), 10) for _ in range(50)]
    stored = await runtime.bus.history(EventFilter(types=("test.ids",)), limit=100)
    assert [(e.id, e.subject, e.data, e.time) for e in live if e is not None] == [
        (e.id, e.subject, e.data, e.time) for e in stored
    ]
    assert all(e.time.tzinfo is not None for e in stored)
    if runtime.db.dialect == "sqlite":  # stored as SQLAlchemy stores SQLite datetimes
        async with runtime.db.session() as s:
            raw = (await s.execute(text("SELECT time, data FROM events"))).all()
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", t) for t, _ in raw), raw
        assert all(isinstance(json.loads(d), dict) for _, d in raw)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_sqlite_writer_waits_out_another_writers_lock_without_blocking(
    runtime: Runtime,
) -> None:
    """Another connection holds SQLite's write lock across an await: the bus must neither
    block the event loop on it nor lose the event; it is stored once the lock is free."""
    assert runtime.db.inline is not None, "a SQLite file database has an inline writer"
    async with runtime.db.session() as s:
        await s.execute(
            text(
                "INSERT INTO events (time, type, subject, data) "
                "VALUES ('2026-01-01 00:00:00.000000', 'test.lock', 'held', '{}')"
            )
        )
        runtime.bus.emit("test.lock", "waiting")
        loop = asyncio.get_running_loop()
        gaps = []
        for _ in range(20):
            t = loop.time()
            await asyncio.sleep(0.01)
            gaps.append(loop.time() - t)
        # A writer that waited for the lock on the loop would freeze it for SQLite's busy
        # timeout (10 s) here, and the holder could not commit meanwhile.
        assert max(gaps) < 2.0, f"the event loop froze for {max(gaps):.1f} s"
    await runtime.bus.publish("test.lock", "after")
    stored = await runtime.bus.history(EventFilter(types=("test.lock",)))
    assert [e.subject for e in stored] == ["held", "waiting", "after"]


async def test_events_without_a_site_reach_unscoped_readers_only(runtime: Runtime) -> None:
    scoped, everything = EventFilter(sites=(runtime.settings.site,)), EventFilter()
    with runtime.bus.subscribe(scoped) as sub, runtime.bus.subscribe(everything) as all_:
        await runtime.bus.publish("test.global")  # no site: not stamped with the server's
        await runtime.bus.publish("test.site", site=runtime.settings.site)
        got = [await asyncio.wait_for(s.get(), 10) for s in (sub, all_, all_)]
    assert [(e.type, e.site) if e else None for e in got] == [
        ("test.site", runtime.settings.site),
        ("test.global", None),
        ("test.site", runtime.settings.site),
    ]
    assert [e.type for e in await runtime.bus.history(scoped)] == ["test.site"]
    assert [e.type for e in await runtime.bus.tail(scoped, 10)] == ["test.site"]
    assert len(await runtime.bus.history(everything)) == 2
