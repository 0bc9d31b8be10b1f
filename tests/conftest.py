"""Fixtures shared by every test: databases (SQLite and a throwaway PostgreSQL), a started
runtime, an in-process API client with an admin token, and a real uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from roost.api import create_app
from roost.auth import Role, create_token
from roost.service import Runtime
from roost.settings import Settings, load_settings
from roost.testing.postgres import ThrowawayPostgres, throwaway_postgres, unavailable_reason


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """A socket or file left open is reported against the test that leaked it, not whichever
    later test the garbage collector happens to run in (``filterwarnings = error`` fails it).
    What survives is frozen, so each collection looks only at what the last test made: a full
    collection of everything the suite has imported takes over 100 ms."""
    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def postgres() -> Iterator[ThrowawayPostgres]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with throwaway_postgres() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'roost.db'}"
    pg: ThrowawayPostgres = request.getfixturevalue("postgres")
    return pg.create_database()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return load_settings(
        None, {"data_dir": tmp_path / "data", "database.url": db_url, "api.port": 0}
    )


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = Runtime.create(settings)
    await rt.start(load_services=False)
    try:
        yield rt
    finally:
        await rt.stop()


@pytest.fixture
async def admin_token(runtime: Runtime) -> str:
    return (await create_token(runtime.db, "test admin", Role.admin)).secret


@pytest.fixture
async def api(runtime: Runtime, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    """In-process client for the API, authenticated as admin."""
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://roost.test",
        headers={"Authorization": f"Bearer {admin_token}"},
    ) as client:
        yield client


@pytest.fixture
async def live_url(runtime: Runtime) -> AsyncIterator[str]:
    """A real uvicorn server on a loopback port, for streaming tests."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime), log_config=None, lifespan="off", timeout_graceful_shutdown=1
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        runtime.bus.end_streams()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
