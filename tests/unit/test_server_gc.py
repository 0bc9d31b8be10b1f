"""`roost serve`'s garbage collection schedule: no automatic full passes, one on a timer."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from roost import server

pytestmark = pytest.mark.unit


async def test_full_passes_run_on_the_schedule_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "GC_EVERY", 0.05)
    before = gc.get_threshold()
    full: list[int] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(1)

    task = asyncio.create_task(server._collect_garbage())
    gc.callbacks.append(seen)
    try:
        await asyncio.sleep(0.01)
        assert gc.get_threshold()[2] >= 1 << 30, "automatic full passes are off"
        start = len(full)
        await asyncio.sleep(0.12)
        assert len(full) - start >= 2, "the timer runs full passes"
    finally:
        gc.callbacks.remove(seen)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gc.unfreeze()
    assert gc.get_threshold() == before
