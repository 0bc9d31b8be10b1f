"""Template rendering off the event loop: a few pre-started worker processes, with limits.

A profile template is operator input rendered on an anonymous request, and the sandbox bounds
what it may touch but not how long it runs (``{% for i in range(99999) %}{% for j in
range(99999) %}``). So each render goes to a worker process (``spawn``: a fresh interpreter,
no copy of the server's state, works under any user), and the event loop waits for its answer
with a deadline. A worker past the deadline is killed, which stops a loop that produces no
output too, and a new one takes its place. Output is capped in the worker
(:func:`roost.boot.render.render`), and its address space is limited so a huge value ends in
``MemoryError`` instead of the host swapping.

:class:`InlineRenderer` is the same interface in a thread of this process, for an API preview
while the boot service is off and for tests: the sandbox and output limits hold there, the time
limit only bounds how long the caller waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import resource
import signal
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from roost.boot.render import MAX_OUTPUT, RenderError, RenderFailure, render
from roost.errors import ConfigError

log = logging.getLogger(__name__)

WORKER_MEMORY = 1 << 30
"""Address space of a worker process (``RLIMIT_AS``), in bytes."""
START_TIMEOUT = 60.0
"""Seconds a new worker has to start its interpreter and say it is ready."""


@dataclass(frozen=True)
class Job:
    """One document: the command line (rendered first, as the ``cmdline`` variable) and the
    template, with their variables."""

    cmdline: str
    source: str
    values: dict[str, Any]
    what: str
    max_output: int = MAX_OUTPUT


def run(job: Job) -> str:
    """Render ``job`` here (in a worker, or inline)."""
    values = job.values
    if job.cmdline:
        cmdline = render(job.cmdline, values, "cmdline", job.max_output)
        values = {**values, "cmdline": cmdline, "profile": {**values["profile"]}}
        values["profile"]["cmdline"] = cmdline
    return render(job.source, values, job.what, job.max_output)


def _too_slow(job: Job, timeout: float) -> RenderError:
    return RenderError(f"{job.what}: render took over {timeout:g} s", "timeout")


class Renderer(Protocol):
    async def render(self, job: Job) -> str: ...


class InlineRenderer:
    """Renders in a thread of this process (see the module's docstring for what that bounds)."""

    def __init__(self, timeout: float = 2.0) -> None:
        self.timeout = timeout

    async def render(self, job: Job) -> str:
        try:
            return await asyncio.wait_for(asyncio.to_thread(run, job), self.timeout)
        except TimeoutError:
            raise _too_slow(job, self.timeout) from None


def _serve(conn: Connection, memory: int) -> None:
    """A worker's loop: a Job in, ``("ok", text)`` or ``("error", kind, detail)`` out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C of the terminal is the server's to handle
    with contextlib.suppress(ValueError, OSError):  # a limit the platform refuses
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if job is None:
            return
        try:
            conn.send(("ok", run(job)))
        except RenderError as exc:
            conn.send(("error", exc.kind, str(exc)))


def _ready(conn: Connection) -> bool:
    try:
        return conn.poll(START_TIMEOUT) and conn.recv() == "ready"
    except (EOFError, OSError):
        return False


@dataclass(eq=False)  # a worker is itself, kept in a set
class _Worker:
    process: BaseProcess
    conn: Connection

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()
        with contextlib.suppress(ValueError):
            self.process.close()


class RenderPool:
    """``workers`` processes, each rendering one job at a time under ``timeout`` seconds."""

    def __init__(self, workers: int = 2, timeout: float = 2.0, memory: int = WORKER_MEMORY) -> None:
        self.size = workers
        self.timeout = timeout
        self.memory = memory
        self._context = multiprocessing.get_context("spawn")
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._stopped = False

    def _spawn(self) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(theirs, self.memory), name="roost-render", daemon=True
        )
        process.start()
        theirs.close()
        worker = _Worker(process, ours)
        self._all.add(worker)
        return worker

    async def start(self) -> None:
        """Start every worker and wait until each is ready; a worker that cannot start (an
        interpreter this user may not run) is a ConfigError, not a crash at the first boot."""
        for _ in range(self.size):
            self._idle.put_nowait(await asyncio.to_thread(self._spawn))
        for worker in list(self._all):
            if not await asyncio.to_thread(_ready, worker.conn):
                await self.stop()
                raise ConfigError(
                    f"boot.render_workers: a render worker ({sys.executable}) did not start;"
                    " 0 renders in a thread of the server instead"
                )

    async def stop(self) -> None:
        self._stopped = True
        workers, self._all = self._all, set()
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in workers:
            await asyncio.to_thread(worker.process.join, 2)
            worker.kill()
        self._idle = asyncio.Queue()

    async def _replace(self, worker: _Worker) -> None:
        self._all.discard(worker)
        await asyncio.to_thread(worker.kill)
        new = await asyncio.to_thread(self._spawn)
        if await asyncio.to_thread(_ready, new.conn) and not self._stopped:
            self._idle.put_nowait(new)
        else:  # a stop came meanwhile, or the interpreter can no longer start
            if not self._stopped:
                log.error("render worker %s did not start", sys.executable)
            self._all.discard(new)
            await asyncio.to_thread(new.kill)

    async def render(self, job: Job) -> str:
        try:
            worker = await asyncio.wait_for(self._idle.get(), self.timeout)
        except TimeoutError:
            raise RenderError(f"{job.what}: every renderer is busy", "busy") from None
        answer = asyncio.get_running_loop().create_future()
        fd = worker.conn.fileno()

        def readable() -> None:
            if not answer.done():
                try:
                    answer.set_result(worker.conn.recv())
                except (EOFError, OSError) as exc:
                    answer.set_exception(exc)

        loop = asyncio.get_running_loop()
        healthy = False
        try:
            worker.conn.send(job)
            loop.add_reader(fd, readable)
            reply = await asyncio.wait_for(answer, self.timeout)
            healthy = True
        except TimeoutError:
            raise _too_slow(job, self.timeout) from None
        except (EOFError, OSError):
            raise RenderError(f"{job.what}: the renderer died", "crash") from None
        finally:
            loop.remove_reader(fd)
            if healthy:
                self._idle.put_nowait(worker)
            elif worker in self._all:
                await self._replace(worker)
        if reply[0] == "ok":
            text: str = reply[1]
            return text
        kind: RenderFailure = reply[1]
        raise RenderError(reply[2], kind)
