"""Worker processes that carry transfers, so a boot storm uses every core.

Most of a transfer's cost is the kernel's (two syscalls and a wake-up per packet), and one
process runs on one core. With ``tftp.workers = N`` the server process still owns port 69, the
resolvers and the transfer cap; for each accepted request it opens the transfer's socket and
file itself and hands both descriptors to the least busy worker over a Unix socket
(``SCM_RIGHTS``), with the request's options. Content held in memory is copied into a
``memfd`` first, so a worker only ever sees descriptors. The worker runs each transfer in a
thread of its own (:mod:`roost.tftp.threads`) and answers with the result; the server turns it
into the transfer's event.
A worker that dies takes its transfers with it (outcome ``error``); the server then carries new
transfers itself. Run as ``python -m roost.tftp.worker FD LIMITS_JSON BUSY_POLL_SECONDS CPU``
(CPU -1: not pinned).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import asdict

from roost.tftp import codec
from roost.tftp.files import OpenFile, TFTPFile
from roost.tftp.session import Limits
from roost.tftp.threads import ThreadCarrier
from roost.tftp.transfer import TransferResult

__all__ = ["WorkerPool", "main"]

log = logging.getLogger(__name__)

_MESSAGE = 65536
_START_TIMEOUT = 30.0
_SEND_TIMEOUT = 2.0  # a worker that cannot take a message for this long is considered dead


def _descriptor(file: TFTPFile) -> int:
    """A descriptor with ``file``'s content for another process; closes ``file``."""
    try:
        if isinstance(file, OpenFile):
            return os.dup(file.fileno())
        fd = os.memfd_create("roost-tftp", os.MFD_CLOEXEC)
        buf = bytearray(min(file.size, 1 << 20) or 1)
        offset = 0
        while offset < file.size:
            n = file.readinto(offset, memoryview(buf))
            if n == 0:
                break
            os.pwrite(fd, memoryview(buf)[:n], offset)
            offset += n
        return fd
    finally:
        file.close()


class _Worker:
    def __init__(self, ctl: socket.socket, proc: asyncio.subprocess.Process) -> None:
        self.ctl = ctl
        self.proc = proc
        self.keys: set[int] = set()
        self.alive = True


class WorkerPool:
    """The server side: spawns ``count`` workers and hands transfers to them."""

    def __init__(
        self,
        count: int,
        limits: Limits,
        on_result: Callable[[int, TransferResult], None],
        busy_poll: float = 0.0,
        pin: bool = False,
    ) -> None:
        self.count = count
        self.pin = pin
        self.limits = limits
        self.busy_poll = busy_poll
        self.on_result = on_result
        self._workers: list[_Worker] = []
        self.handed_off = 0

    @property
    def alive(self) -> bool:
        return any(w.alive for w in self._workers)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        cpus = sorted(os.sched_getaffinity(0))
        for i in range(self.count):
            cpu = cpus[i % len(cpus)] if self.pin else -1
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            ours.setblocking(False)
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "roost.tftp.worker", str(theirs.fileno()),
                    json.dumps(asdict(self.limits)), str(self.busy_poll), str(cpu),
                    pass_fds=(theirs.fileno(),),
                )  # fmt: skip
            finally:
                theirs.close()
            self._workers.append(_Worker(ours, proc))
        try:
            # Ready means imported and listening: a transfer handed over starts at once.
            answers = await asyncio.wait_for(
                asyncio.gather(*(loop.sock_recv(w.ctl, _MESSAGE) for w in self._workers)),
                _START_TIMEOUT,
            )
            if any(a != b"ready" for a in answers):
                raise RuntimeError("a TFTP worker exited while starting")
        except BaseException:
            await self.stop()
            raise
        for worker in self._workers:
            worker.ctl.settimeout(_SEND_TIMEOUT)
            loop.add_reader(worker.ctl.fileno(), self._results, worker)

    def hand_off(
        self, key: int, sock: socket.socket, file: TFTPFile, request: codec.Request
    ) -> bool:
        """Give the transfer to a worker; False (nothing closed) when none can take it."""
        live = [w for w in self._workers if w.alive]
        if not live:
            return False
        worker = min(live, key=lambda w: len(w.keys))
        msg = {"key": key, "file": request.filename, "options": request.options}
        fd = _descriptor(file)
        try:
            socket.send_fds(worker.ctl, [json.dumps(msg).encode()], [sock.fileno(), fd])
        except OSError:
            log.exception("TFTP worker %d does not take transfers", worker.proc.pid)
            self._lost(worker)
            os.close(fd)
            return False
        os.close(fd)
        sock.close()
        worker.keys.add(key)
        self.handed_off += 1
        return True

    def _results(self, worker: _Worker) -> None:
        try:
            raw = worker.ctl.recv(_MESSAGE)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return
        except OSError:
            raw = b""
        if not raw:
            self._lost(worker)
            return
        msg = json.loads(raw)
        key = msg.pop("key")
        worker.keys.discard(key)
        self.on_result(key, TransferResult(**msg))

    def _lost(self, worker: _Worker) -> None:
        if not worker.alive:
            return
        worker.alive = False
        asyncio.get_running_loop().remove_reader(worker.ctl.fileno())
        log.error(
            "TFTP worker %d is gone; its %d transfers fail", worker.proc.pid, len(worker.keys)
        )
        for key in sorted(worker.keys):
            self.on_result(key, TransferResult("error", 0, 512, 1, 0))
        worker.keys.clear()

    async def stop(self) -> None:
        """Close the control sockets; workers end their transfers and exit."""
        loop = asyncio.get_running_loop()
        for worker in self._workers:
            if worker.alive:
                loop.remove_reader(worker.ctl.fileno())
                worker.alive = False
            worker.ctl.close()
        for worker in self._workers:
            try:
                await asyncio.wait_for(worker.proc.wait(), 5)
            except TimeoutError:
                worker.proc.kill()
                await worker.proc.wait()
        self._workers.clear()


async def _serve(ctl: socket.socket, limits: Limits, busy_poll: float) -> None:
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()
    carrier = ThreadCarrier(busy_poll)

    def report(key: int, result: TransferResult) -> None:
        with contextlib.suppress(OSError):
            ctl.send(json.dumps({"key": key, **asdict(result)}).encode())

    def incoming() -> None:
        try:
            raw, fds, _flags, _addr = socket.recv_fds(ctl, _MESSAGE, 2)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return
        except OSError:
            raw, fds = b"", []
        if not raw:
            closed.set()
            loop.remove_reader(ctl.fileno())
            return
        msg = json.loads(raw)
        sock = socket.socket(fileno=fds[0])
        sock.setblocking(False)
        request = codec.Request(codec.RRQ, msg["file"], "octet", msg["options"])
        key = msg["key"]
        carrier.start(sock, request, OpenFile(fds[1]), limits, lambda _t, r: report(key, r))

    loop.add_reader(ctl.fileno(), incoming)
    ctl.send(b"ready")
    await closed.wait()
    carrier.close()


def main(argv: list[str]) -> int:
    # Ctrl-C, `timeout` and systemd signal the whole process group or cgroup; the server
    # decides when workers stop, and a worker also stops when the server's end closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ctl = socket.socket(fileno=int(argv[1]))
    ctl.settimeout(_SEND_TIMEOUT)
    limits = Limits(**json.loads(argv[2]))
    busy_poll = float(argv[3])
    cpu = int(argv[4])
    if cpu >= 0:
        # Before any thread starts: threads inherit it. The GIL lets one thread of the process
        # run at a time anyway; on one CPU, waking transfers do not fight for it across CPUs.
        os.sched_setaffinity(0, {cpu})
    # Also inherited: a transfer woken by its ACK waits for the running task to block or use
    # its slice instead of preempting it. Preempting a sibling that holds the GIL only to wait
    # for it is waste, and where clients share the CPUs they are preempted half as often.
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    try:
        import uvloop

        uvloop.run(_serve(ctl, limits, busy_poll))
    except ImportError:
        asyncio.run(_serve(ctl, limits, busy_poll))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
