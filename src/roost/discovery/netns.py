"""Run blocking scan engines on their own thread, optionally inside a named network namespace.

Why a thread: the scan engines drive thousands of sockets through one ``epoll``/``select``
loop; doing that on the event loop would cost one callback per socket and compete with the API.
Why a *fresh* thread per run: ``setns(2)`` with ``CLONE_NEWNET`` moves only the calling thread,
and every socket it creates afterwards belongs to that namespace for its whole life. A pooled
thread would carry the namespace into unrelated work, so each run gets its own thread that
dies with it. ``netns=None`` means the namespace Roost itself runs in.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(name: str) -> None:
    """Move the calling thread into the network namespace ``/run/netns/<name>``."""
    path = NETNS_DIR / name
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


async def run_in_thread(netns: str | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a new thread (inside ``netns`` when given) and await its result.

    Cancelling the awaiting task does not stop ``fn``: the engines take a ``threading.Event``
    that the caller sets to end them early (they return what they found so far).
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def deliver(ok: bool, value: object) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)  # type: ignore[arg-type]
        else:
            fut.set_exception(value)  # type: ignore[arg-type]

    def target() -> None:
        try:
            if netns is not None:
                enter_netns(netns)
            result = fn()
        except BaseException as exc:
            loop.call_soon_threadsafe(deliver, False, exc)
        else:
            loop.call_soon_threadsafe(deliver, True, result)

    thread = threading.Thread(target=target, name=f"roost-scan-{netns or 'host'}", daemon=True)
    thread.start()
    return await asyncio.shield(fut)
