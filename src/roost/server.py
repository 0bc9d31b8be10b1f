"""``roost serve``: one asyncio process running the API and every enabled service.

Start-up: settings are already validated; the data directory is created, migrations run,
the first admin token is created if there is none, services start, the API listens, and a
client file is written so the local CLI finds the server. SIGTERM or Ctrl-C shuts down in
order within ten seconds: stop accepting, end streams, stop services, flush events, close
the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import tomllib
from pathlib import Path

import uvicorn

from roost import privileges
from roost.api import create_app
from roost.auth import IssuedToken, ensure_admin_token
from roost.service import Runtime
from roost.settings import Settings

log = logging.getLogger(__name__)

CLIENT_FILE = "client.toml"
SHUTDOWN_SECONDS = 10.0
GC_EVERY = 300.0


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        """Roost handles signals itself."""


def write_client_file(data_dir: Path, url: str) -> Path:
    """Where the local CLI finds the API and the admin token (mode 0600)."""
    path = data_dir / CLIENT_FILE
    body = f'url = "{url}"\ntoken_file = "{data_dir / "admin-token"}"\n'
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)
    os.replace(tmp, path)
    return path


def read_client_file(data_dir: Path) -> dict[str, str]:
    try:
        with (data_dir / CLIENT_FILE).open("rb") as f:
            return {k: str(v) for k, v in tomllib.load(f).items()}
    except (FileNotFoundError, PermissionError, tomllib.TOMLDecodeError):
        return {}


def _announce(issued: IssuedToken | None, url: str, settings: Settings) -> None:
    """What the operator sees at start on stderr, which is the log (journal, a file). The
    first admin token goes only to its file and, when stdout is a terminal, to that terminal:
    a log is read and kept by more people than the token is meant for."""
    log_out = sys.stderr
    print(f"Roost API listening on {url}/api/v1 (docs: {url}/api/v1/docs)", file=log_out)
    if issued is not None:
        token_file = settings.data_dir / "admin-token"
        print(
            f"First start: an admin token was created and saved, mode 0600, in {token_file}\n"
            f'Use it as: curl -H "Authorization: Bearer $(cat {token_file})" '
            f"{url}/api/v1/events",
            file=log_out,
        )
        if sys.stdout.isatty():
            print(f"\nThe admin token, shown here once:\n\n  {issued.secret}\n", flush=True)
    log_out.flush()


async def serve(settings: Settings) -> None:
    privileges.report(settings)
    runtime = Runtime.create(settings)
    await runtime.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server: _Server | None = None
    collector: asyncio.Task[None] | None = None
    try:
        issued = await ensure_admin_token(runtime.db, settings.data_dir)
        sock = socket.socket(
            socket.AF_INET6 if ":" in settings.api.host else socket.AF_INET, socket.SOCK_STREAM
        )
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        privileges.bind(sock, (settings.api.host, settings.api.port), "api.port")
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        url = settings.api.public_url or f"http://{shown}:{port}"
        config = uvicorn.Config(
            create_app(runtime),
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(SHUTDOWN_SECONDS / 2),
            lifespan="off",
        )
        server = _Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not serving.done():  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.01)
        if serving.done():
            await serving
        write_client_file(settings.data_dir, url)
        _announce(issued, url, settings)
        collector = asyncio.create_task(_collect_garbage(), name="gc")
        await runtime.bus.publish("roost.started", settings.site, {"url": url, "pid": os.getpid()})
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, waiter}, return_when=asyncio.FIRST_COMPLETED)
        log.info("shutting down")
        server.should_exit = True
        runtime.bus.end_streams()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(serving, SHUTDOWN_SECONDS / 2)
        waiter.cancel()
    finally:
        if collector is not None:
            collector.cancel()
        with contextlib.suppress(Exception):
            await runtime.bus.publish("roost.stopped", settings.site, {"pid": os.getpid()})
        await asyncio.wait_for(runtime.stop(), SHUTDOWN_SECONDS / 2)


async def _collect_garbage() -> None:
    """Full garbage collections on a schedule instead of when CPython decides.

    CPython runs a full pass whenever the long-lived objects have grown by a quarter, and a
    pass walks every one of them: with a few hundred thousand leases in memory that is a
    pause of 100-200 ms, several times a minute while a busy DHCP network adds leases, and
    the packets that arrive meanwhile overflow the socket buffer. Start-up objects (modules,
    ORM and API models) are frozen out of the passes; automatic full passes are off; one full
    pass runs every ``GC_EVERY`` seconds, so cyclic garbage lives at most that long.
    """
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], 1 << 30)
    try:
        while True:
            await asyncio.sleep(GC_EVERY)
            gc.collect()
    finally:
        gc.set_threshold(*thresholds)


def run(settings: Settings) -> None:
    """Run :func:`serve` on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))
