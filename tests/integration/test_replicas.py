"""Several Roost replicas on one PostgreSQL database see each other's events (LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from roost.events import EventFilter
from roost.service import Runtime
from roost.settings import load_settings
from roost.testing.postgres import ThrowawayPostgres


async def test_replica_receives_events_published_by_another(
    postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    url = postgres.create_database()
    replicas = [
        Runtime.create(load_settings(None, {"data_dir": tmp_path / n, "database.url": url}))
        for n in ("a", "b")
    ]
    for rt in replicas:
        await rt.start(load_services=False)
    a, b = replicas
    try:
        got: list[str] = []

        async def follow_on_b() -> None:
            async for ev in b.bus.stream(EventFilter(types=("test.replica",))):
                got.append(ev.subject)
                if len(got) == 3:
                    return

        task = asyncio.create_task(follow_on_b())
        await asyncio.sleep(0.2)  # let the subscription register before publishing
        for i in range(3):
            await a.bus.publish("test.replica", str(i))
        await asyncio.wait_for(task, 10)
        assert got == ["0", "1", "2"]
        # and nothing is delivered twice to A's own subscribers via its own NOTIFY
        seen_on_a: list[str] = []

        async def follow_on_a() -> None:
            async for ev in a.bus.stream(EventFilter(types=("test.own",))):
                seen_on_a.append(ev.subject)

        task_a = asyncio.create_task(follow_on_a())
        await asyncio.sleep(0.2)
        await a.bus.publish("test.own", "once")
        await asyncio.sleep(0.5)
        task_a.cancel()
        assert seen_on_a == ["once"]
    finally:
        for rt in replicas:
            await rt.stop()
