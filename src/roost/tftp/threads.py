"""Transfers in threads, for worker processes: each transfer its own socket and thread around
a :class:`TFTPSession`, started and stopped by one :class:`ThreadCarrier`.

The thread blocks in ``recv`` on its transfer's socket, as atftpd's threads do: it answers an
ACK and goes back to sleep on its socket, so the kernel schedules each client with the thread
that serves it. Where clients share the server's CPUs (virtual machines on the host that boots
them, and the benchmark), this matters: the event-loop :class:`~roost.tftp.transfer.Carrier`
answers every waiting ACK in one pass and wakes the clients one after another, and each then
runs after hundreds of others on a cold cache. With 500 transfers of 1 MiB at once the clients
spent 1.4-1.8x more CPU per packet against the carrier than against atftpd; against these
threads, the same as against atftpd (docs/tftp.md).

Threads pay for it in the GIL: every ACK is a thread taking it. Only processes that do nothing
else use them, and a few hundred transfers are spread over several (``tftp.workers``); the
server process keeps the carrier, which shares its one thread with the event loop. Over a
shared snapshot's built packets the thread answers lockstep ACKs in a loop of its own (compare,
look up, send: :meth:`TFTPSession.lockstep_run`), otherwise through the session's one-call
hot path (:meth:`TFTPSession.receive_ack`), and goes straight back to ``recv``; the
retransmission timer is the socket's receive timeout, so a timer that fires has found the
socket empty. Worker processes run ``SCHED_BATCH`` (:mod:`roost.tftp.worker`): a thread woken
by its ACK does not preempt the sibling holding the GIL. While a process carries at most
``_SPIN_MAX`` transfers, each polls for its next ACK a little before it sleeps
(``busy_poll``, :class:`BusyPoll`).
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import logging
import os
import socket
import struct
import time
from collections.abc import Callable

from roost.tftp.codec import Request
from roost.tftp.files import Snapshots, TFTPFile
from roost.tftp.session import Limits, TFTPSession
from roost.tftp.transfer import BusyPoll, TransferResult, enable_gso, open_session, send_window

__all__ = ["ThreadCarrier", "ThreadTransfer"]

log = logging.getLogger(__name__)

_SPIN_MAX = 2
"""Transfers a process may carry for them to busy-poll: with more, a CPU has other work while
one waits, and hundreds of polling threads only take it from the clients."""
_SLACK = 0.01  # a receive timeout this far off the retransmission deadline is set again
_STOP_JOIN = 5.0
_IDLE = 60.0  # seconds an idle thread waits for another transfer before it ends
_TIMEVAL = struct.Struct("@ll")


class ThreadCarrier:
    """Starts the transfers of one process, each in its own thread, and reports their results
    on the event loop; see the module docstring."""

    def __init__(self, busy_poll: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.loop = asyncio.get_running_loop()
        self.busy_poll = busy_poll
        self.clock = clock
        self.snapshots = Snapshots()
        self.sleeps = 0
        """Times a transfer blocked in ``recv`` (each one a wake-up when a datagram came)."""
        self.spins = 0
        """Busy-poll windows run, and of them ``caught``: those that got a datagram."""
        self.caught = 0
        self.threads = 0
        """Threads started; each serves transfer after transfer while they keep coming."""
        self._transfers: set[ThreadTransfer] = set()
        self._idle: list[_Parked] = []
        self._closed = False

    def __len__(self) -> int:
        return len(self._transfers)

    def start(
        self,
        sock: socket.socket,
        request: Request,
        file: TFTPFile,
        limits: Limits,
        on_done: Callable[[ThreadTransfer, TransferResult], None],
    ) -> ThreadTransfer:
        """Serve ``file`` for ``request`` over ``sock`` (bound, connected) until it ends; owns
        the socket and the file from here on, also when this raises. ``on_done`` is called on
        the event loop."""
        session = open_session(self.snapshots, sock, request, file, limits, self.clock(), True)
        transfer = ThreadTransfer(self, sock, session, request.filename, on_done)
        self._transfers.add(transfer)
        try:
            self._give(transfer)
        except BaseException:
            self._transfers.discard(transfer)
            sock.close()
            session.file.close()
            raise
        return transfer

    def close(self) -> None:
        """End every transfer (``stopped``), wait for them, and let idle threads go."""
        self._closed = True
        transfers = list(self._transfers)
        for transfer in transfers:
            transfer.stop()
        for transfer in transfers:
            transfer.join(_STOP_JOIN)
            self._done(transfer)  # a thread that did not end keeps its transfer
        while self._idle:
            self._idle.pop().hand(None)

    def _give(self, transfer: ThreadTransfer) -> None:
        """Run ``transfer`` in an idle thread, or a new one. Bare threads, not
        :class:`threading.Thread`, which waits until its thread has run: in a storm that
        thread waits for the GIL, and the hand-off of every other request with it."""
        transfer._running.acquire()
        try:
            parked = self._idle.pop()
        except IndexError:
            try:
                _thread.start_new_thread(self._thread, (transfer,))
            except BaseException:
                transfer._running.release()
                raise
            self.threads += 1
        else:
            parked.hand(transfer)

    def _thread(self, transfer: ThreadTransfer | None) -> None:
        # Reused, a thread saves its start (about 100 µs here: clone, a stack, a thread state).
        while transfer is not None:
            transfer._run()
            transfer = self._park()

    def _park(self) -> ThreadTransfer | None:
        """Wait as an idle thread for the next transfer; None: time to end."""
        parked = _Parked()
        self._idle.append(parked)
        if not self._closed and parked.wake.acquire(timeout=_IDLE):
            return parked.transfer
        try:
            self._idle.remove(parked)
        except ValueError:  # taken just now: its transfer is being handed over
            parked.wake.acquire()
            return parked.transfer
        return None

    def _finished(self, transfer: ThreadTransfer) -> None:
        """Called by a transfer's thread as it ends."""
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is left to tell
            self.loop.call_soon_threadsafe(self._done, transfer)

    def _done(self, transfer: ThreadTransfer) -> None:
        if not transfer.ended or transfer not in self._transfers:
            return
        self._transfers.discard(transfer)
        session = transfer.session
        session.file.close()  # here, not in the thread: snapshots are the loop's
        result = TransferResult(
            session.outcome or "stopped",
            session.bytes_acked,
            session.blksize,
            session.windowsize,
            transfer.malformed,
        )
        transfer.on_done(transfer, result)


class _Parked:
    """An idle thread's place in :attr:`ThreadCarrier._idle`."""

    def __init__(self) -> None:
        self.transfer: ThreadTransfer | None = None
        self.wake = _thread.allocate_lock()
        self.wake.acquire()

    def hand(self, transfer: ThreadTransfer | None) -> None:
        self.transfer = transfer
        self.wake.release()


class ThreadTransfer:
    """Runs ``session`` over ``sock`` in its own thread until it ends; made by
    :meth:`ThreadCarrier.start`."""

    def __init__(
        self,
        carrier: ThreadCarrier,
        sock: socket.socket,
        session: TFTPSession,
        name: str,
        on_done: Callable[[ThreadTransfer, TransferResult], None],
    ) -> None:
        self.carrier = carrier
        self.sock = sock
        self.session = session
        self.name = name
        self.on_done = on_done
        self.malformed = 0
        self.stopping = False
        self.ended = False
        """Set by the thread as its last act on the session and socket."""
        self.spin = BusyPoll(carrier.busy_poll)
        self.gso = 0  # packets per UDP GSO send; 0 sends one packet per syscall
        self._armed = 0.0  # the socket's receive timeout, seconds
        self._sleeps = 0  # of the lockstep hot path, added to the carrier's at the end
        self._running = _thread.allocate_lock()

    def join(self, timeout: float) -> bool:
        """Wait until the thread has ended; False if it still runs after ``timeout`` s."""
        if not self._running.acquire(timeout=timeout):
            return False
        self._running.release()
        return True

    def stop(self) -> None:
        """Make the thread end (``stopped``) soon; safe from any thread."""
        self.stopping = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv with b""

    def _run(self) -> None:
        session = self.session
        try:
            if session.windowsize > 1:
                self.gso = enable_gso(self.sock, 4 + session.blksize)
            self._flush(self.carrier.clock())
            self._serve()
        except Exception:
            log.exception("TFTP transfer of %r failed", self.name)
            session.abort("error")
        finally:
            self.sock.close()
            self.ended = True
            self._running.release()
            self.carrier._finished(self)

    def _serve(self) -> None:
        session, carrier, sock, spin = self.session, self.carrier, self.sock, self.spin
        clock, send, transfers = carrier.clock, sock.send, carrier._transfers
        receive_ack = session.receive_ack
        sleeps = 0
        data: bytes | None = None
        now = clock()
        held = False  # ``data`` (a datagram, or None for a timeout) is still to be handled
        try:
            while session.outcome is None:
                polling = spin.window and len(transfers) <= _SPIN_MAX
                if not held:
                    data = self._spin() if polling and spin.should_spin() else None
                    if data is None:
                        deadline = session.next_timer()
                        if deadline is not None and abs(self._armed - deadline + now) > _SLACK:
                            self._arm(deadline - now)
                        sleeps += 1
                        data = self._recv()
                    now = clock()
                held = False
                if self.stopping:
                    session.abort("stopped")
                    return
                if data is None:  # the receive timed out (or the client is gone)
                    session.handle_timer(now)
                    self._flush(now)
                    continue
                packet = receive_ack(data, now)
                if packet is None:
                    if not session.receive(data, now):
                        self.malformed += 1
                    self._flush(now)
                    continue
                try:
                    if polling:
                        send(packet)
                        continue
                    data, now = self._lockstep(packet, now)
                except OSError:  # e.g. ICMP port unreachable: the client is gone
                    session.abort("unreachable")
                    return
                held = True
        finally:
            carrier.sleeps += sleeps + self._sleeps

    def _lockstep(self, packet: bytes, now: float) -> tuple[bytes | None, float]:
        """The lockstep hot path, as long as ACKs keep coming: answer, sleep, repeat. Starts by
        sending ``packet``, the answer to the ACK taken at ``now``; returns the datagram that
        did not fit (None: the receive timed out) and when it came. The socket's timeout stays
        as armed: each DATA moves the deadline to a full timeout from then."""
        session, sock, clock = self.session, self.sock, self.carrier.clock
        send, recv = sock.send, sock.recv
        sleeps = 0
        try:
            run = session.lockstep_run()
            if run is None:  # blocks cut as they go: one session call per ACK
                answer: bytes | None = packet
                while answer is not None:
                    send(answer)
                    sleeps += 1
                    data = recv(2048)
                    now = clock()
                    answer = session.receive_ack(data, now)
                return data, now
            # Built packets: the loop only compares and looks up, and tells the session after.
            # ACKs are read into one buffer: no allocation per datagram.
            sent, last, packets, acks = run
            expect = acks[sent]
            buf = bytearray(2048)
            recv_into, fits = sock.recv_into, buf.startswith
            send(packet)
            try:
                while True:
                    sleeps += 1
                    n = recv_into(buf)
                    if n != 4 or not fits(expect) or sent >= last:
                        break
                    now = clock()
                    sent += 1
                    send(packets[sent])
                    expect = acks[sent]
            finally:
                session.lockstep_ran(sent, now)
            return bytes(buf[:n]), clock()
        except (BlockingIOError, InterruptedError):  # timed out
            return None, clock()
        finally:
            self._sleeps += sleeps

    def _recv(self) -> bytes | None:
        """The next datagram; None when the receive timed out or the client is gone (then the
        session is aborted)."""
        try:
            return self.sock.recv(2048)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:  # e.g. ICMP port unreachable
            self.session.abort("unreachable")
            return None

    def _spin(self) -> bytes | None:
        """Poll for the next ACK before sleeping: a fast client's answer is caught without the
        wake-up of a sleeping thread (and, in a VM, of an idle vCPU), which is most of a
        lockstep round trip. Other runnable threads go first between polls."""
        carrier, spin, recv = self.carrier, self.spin, self.sock.recv
        clock, yield_cpu = carrier.clock, os.sched_yield
        carrier.spins += 1
        until = clock() + spin.window
        while True:
            try:
                data = recv(2048, socket.MSG_DONTWAIT)
            except BlockingIOError:
                if clock() >= until:
                    spin.ended(False)
                    return None
                yield_cpu()
            except OSError:
                return None  # the blocking receive meets the same error and says what it is
            else:
                spin.ended(True)
                carrier.caught += 1
                return data

    def _arm(self, remaining: float) -> None:
        """Make the socket's receive time out after ``remaining`` seconds: the retransmission
        timer. Only called when the timeout set last is off by more than the slack."""
        remaining = max(remaining, 0.001)
        seconds = int(remaining)
        timeval = _TIMEVAL.pack(seconds, int((remaining - seconds) * 1e6))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        self._armed = remaining

    def _flush(self, now: float) -> None:
        session = self.session
        out = session.datagrams_to_send(now)
        try:
            if len(out) == 1:
                self.sock.send(out[0])
            elif out:
                self._send_many(out)
        except OSError:
            session.abort("unreachable")

    def _send_many(self, out: list[bytes]) -> None:
        self.gso = send_window(self.sock.send, out, self.gso)
