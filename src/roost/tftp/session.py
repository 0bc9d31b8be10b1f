"""One read transfer as a sans-IO state machine with time injected (in the style of aioquic).

Theory of operation: the transport feeds datagrams from the client with :meth:`receive`, sends
whatever :meth:`datagrams_to_send` returns, and calls :meth:`handle_timer` once ``now`` reaches
:meth:`next_timer`. The session never touches a socket or a clock.

States: ``OACK sent`` (the client asked for options, RFC 2347 §3: wait for ACK 0) →
``sending`` (a window of up to ``windowsize`` DATA blocks in flight, RFC 7440 §4) → ``done``
(``outcome`` says how). A new ACK moves the window to the block after it; an ACK for a block
inside the window means the client lost the rest, so the window restarts there (RFC 7440 §4).
A duplicate or stale ACK is ignored: answering it would double the traffic for the rest of the
transfer (the Sorcerer's Apprentice bug, RFC 1123 §4.2.3.1); only the timer retransmits.
Block numbers are 16 bits on the wire and roll over to 0 after 65535; inside, blocks are
counted without limit and an ACK is mapped to the one block in flight it can mean.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from roost.tftp import codec
from roost.tftp.codec import ErrorCode, Request
from roost.tftp.files import MemoryFile, Packets, TFTPFile

__all__ = ["MAX_BLKSIZE", "Limits", "Negotiated", "TFTPSession", "negotiate"]

MAX_BLKSIZE = 65464
"""RFC 2348: largest block size (65535 minus IP and UDP headers)."""
DEFAULT_BLKSIZE = 512
READ_AHEAD = 64 * 1024
"""Bytes read from the file at once; a window of DATA packets is cut from one read."""
_pack = struct.Struct("!HH").pack  # opcode and block: a DATA header or a whole ACK
_ACK, _DATA = codec.ACK, codec.DATA


@dataclass(frozen=True)
class Limits:
    """What the server allows; the client's options are clamped to these."""

    timeout: float = 1.0
    retries: int = 5
    max_blksize: int = 1468
    max_windowsize: int = 32


@dataclass(frozen=True)
class Negotiated:
    blksize: int
    windowsize: int
    timeout: float
    oack: dict[str, str]
    """Options acknowledged to the client; empty means no OACK (RFC 2347 §3)."""


def _int(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 10 else None


def negotiate(options: dict[str, str], size: int, limits: Limits) -> Negotiated:
    """Accept, clamp or ignore each requested option.

    Unknown options and invalid values are left out of the OACK, which RFC 2347 §3 defines as
    declining them; the transfer then uses the default for that option.
    """
    blksize, window, timeout = DEFAULT_BLKSIZE, 1, limits.timeout
    oack: dict[str, str] = {}
    for name, value in options.items():
        n = _int(value)
        if n is None:
            continue
        if name == "blksize" and n >= 8:
            # RFC 2348: 8..65464; the server may answer with a smaller size, never a larger one.
            blksize = min(n, limits.max_blksize, MAX_BLKSIZE)
            oack[name] = str(blksize)
        elif name == "windowsize" and 1 <= n <= 65535:
            # RFC 7440 §3: 1..65535; the server may answer with a smaller window.
            window = min(n, limits.max_windowsize)
            oack[name] = str(window)
        elif name == "timeout" and 1 <= n <= 255:
            # RFC 2349 §2: seconds, 1..255, acknowledged unchanged or not at all.
            timeout = float(n)
            oack[name] = str(n)
        elif name == "tsize":
            # RFC 2349 §4: a read request carries 0; the answer is the file's size.
            oack[name] = str(size)
    return Negotiated(blksize, window, timeout, oack)


class TFTPSession:
    """Serves ``file`` for one read request; see the module docstring for the states."""

    def __init__(self, request: Request, file: TFTPFile, limits: Limits, now: float) -> None:
        self.file = file
        self.size = file.size
        n = negotiate(request.options, self.size, limits)
        self.blksize, self.windowsize, self.timeout = n.blksize, n.windowsize, n.timeout
        self.retries = limits.retries
        # RFC 1350 §6: a block shorter than blksize ends the transfer, so a size that is an
        # exact multiple of blksize ends with an empty block.
        self.blocks = self.size // self.blksize + 1
        self.outcome: str | None = None
        self._acked = 0  # highest block the client acknowledged
        self._sent = 0  # highest block sent
        self._tries = 0  # retransmissions without progress
        self._out: list[bytes] = []
        # Read-ahead buffer: whole blocks, about READ_AHEAD bytes, refilled when passed.
        self._chunk = max(1, READ_AHEAD // self.blksize) * self.blksize
        # Content already in memory is cut from directly, never copied into a read-ahead.
        self._cache = memoryview(b"")
        self._cache_at = 0
        self._hot_first = self._hot_last = 0  # blocks the hot path may cut from the cache
        # Packets built once for every transfer of a shared snapshot: looked up, not cut.
        self._built: Packets | None = None
        if isinstance(file, MemoryFile):
            self._set_cache(file.view(), 0)
            self._built = file.packets(self.blksize)
        self._oack = codec.encode(codec.OptionAck(n.oack)) if n.oack else None
        # The exact ACK that :meth:`receive_ack` takes: of the newest block, in lockstep, while
        # the transfer runs; None otherwise.
        self._lockstep_ack: bytes | None = None
        self._deadline = now + self.timeout
        if self._oack is not None:
            self._out.append(self._oack)
        else:
            self._send_window()

    # -- public surface ----------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.outcome is not None

    @property
    def bytes_acked(self) -> int:
        return min(self._acked * self.blksize, self.size)

    def receive_ack(self, datagram: bytes, now: float) -> bytes | None:
        """The hot path of a lockstep transfer, one call per ACK: when ``datagram`` is the ACK
        of the newest block sent and the next block is a full one at hand, it is taken and the
        next DATA packet returned (counted as sent). Otherwise nothing changes and the result
        is None: feed the datagram to :meth:`receive`."""
        if datagram != self._lockstep_ack:
            return None
        acked = self._sent
        sent = acked + 1
        if not self._hot_first <= sent <= self._hot_last:
            return None  # a refill or the last block: the general path
        self._acked = acked
        self._sent = sent
        self._tries = 0
        self._deadline = now + self.timeout
        built = self._built
        if built is not None:
            self._lockstep_ack = built.acks[sent]
            return built.data[sent]
        wire = sent & 0xFFFF
        self._lockstep_ack = _pack(_ACK, wire)
        start = acked * self.blksize - self._cache_at
        return _pack(_DATA, wire) + self._cache[start : start + self.blksize]

    def lockstep_run(self) -> tuple[int, int, list[bytes], list[bytes]] | None:
        """The lockstep hot path for a transport's own loop, over built packets:
        ``(sent, last, data, acks)``. While the client's next datagram is ``acks[sent]`` and
        ``sent < last``, answer it with ``data[sent + 1]`` and count ``sent`` on; then tell the
        session with :meth:`lockstep_ran`. None when the transfer is not in lockstep over built
        packets (a window, blocks cut as they go, the OACK not yet acknowledged, ended)."""
        built = self._built
        if built is None or self._lockstep_ack is None:
            return None
        return self._sent, self._hot_last, built.data, built.acks

    def lockstep_ran(self, sent: int, now: float) -> None:
        """A run from :meth:`lockstep_run` sent DATA up to block ``sent``, the last of it on
        an ACK taken at ``now``."""
        if sent > self._sent and self._built is not None:
            self._acked = sent - 1
            self._sent = sent
            self._tries = 0
            self._deadline = now + self.timeout
            self._lockstep_ack = self._built.acks[sent]

    def receive(self, datagram: bytes, now: float) -> bool:
        """Feed one datagram from the client; return False when it was malformed (dropped)."""
        if len(datagram) != 4 or datagram[1] != codec.ACK or datagram[0] or self._oack:
            return self._receive_other(datagram, now)
        if self.outcome is not None:
            return True
        # The one block in flight (acked, sent] whose low 16 bits match (a window is at most
        # 65535 blocks, so it is unambiguous).
        ahead = (((datagram[2] << 8) | datagram[3]) - self._acked) & 0xFFFF
        acked = self._acked + ahead
        if ahead == 0 or acked > self._sent:
            return True  # duplicate or stale: never answer it (Sorcerer's Apprentice)
        self._acked = acked
        if acked >= self.blocks:
            self._end("ok")
            return True
        self._tries = 0
        self._deadline = now + self.timeout
        self._send_window()
        return True

    def _receive_other(self, datagram: bytes, now: float) -> bool:
        if self.outcome is not None:
            return True
        try:
            packet = codec.decode(datagram)
        except codec.DecodeError:
            return False
        if isinstance(packet, codec.Ack):
            if packet.block == 0 and self._oack is not None:
                self._oack = None  # RFC 2347 §3: ACK 0 accepts the OACK
                self._tries = 0
                self._deadline = now + self.timeout
                self._send_window()
            # any other ACK before the OACK is acknowledged is stale
        elif isinstance(packet, codec.Error):
            # The client gave up, e.g. after reading tsize from the OACK (RFC 2349 §4).
            self._end("aborted")
        else:
            # RFC 1350 §7: anything but ACK or ERROR on a read transfer is an illegal operation.
            self._fail(ErrorCode.ILLEGAL_OPERATION, "only ACK or ERROR expected", "error")
        return True

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def next_timer(self) -> float | None:
        return None if self.outcome is not None else self._deadline

    def handle_timer(self, now: float) -> None:
        if self.outcome is not None or now < self._deadline:
            return
        self._tries += 1
        if self._tries > self.retries:
            self._end("timeout")
            return
        self._deadline = now + self.timeout
        if self._oack is not None:
            self._out.append(self._oack)
        else:
            self._send_window()

    def abort(self, outcome: str) -> None:
        """End the transfer from outside (the client is unreachable, the server stops)."""
        if self.outcome is None:
            self._end(outcome)

    # -- internals ---------------------------------------------------------------------------

    def _send_window(self) -> None:
        last = min(self._acked + self.windowsize, self.blocks)
        out = self._out
        for block in range(self._acked + 1, last + 1):
            packet = self._data(block)
            if packet is None:
                return
            out.append(packet)
        self._sent = last
        if self.windowsize == 1 and self.outcome is None:
            self._lockstep_ack = _pack(_ACK, last & 0xFFFF)

    def _data(self, block: int) -> bytes | None:
        if self._built is not None:
            return self._built.data[block]
        offset = (block - 1) * self.blksize
        if offset >= self.size:
            chunk = memoryview(b"")  # the empty block after an exact multiple of blksize
        else:
            start = offset - self._cache_at
            if not 0 <= start < len(self._cache):
                self._fill(offset)
                start = 0
            chunk = self._cache[start : start + self.blksize]
        if len(chunk) < self.blksize and block != self.blocks:
            self._fail(ErrorCode.NOT_DEFINED, "file changed while being sent", "error")
            return None
        return _pack(_DATA, block & 0xFFFF) + chunk

    def _fill(self, offset: int) -> None:
        """Read ahead a run of whole blocks: one read for many packets."""
        length = min(self._chunk, self.size - offset)
        buf = bytearray(length)
        got = self.file.readinto(offset, memoryview(buf))
        self._set_cache(memoryview(buf)[:got], offset)

    def _set_cache(self, view: memoryview, offset: int) -> None:
        """``view`` holds the file from ``offset`` (a block boundary) on."""
        self._cache = view
        self._cache_at = offset
        # Whole blocks in it, but never the last block of the file, which ends the transfer.
        self._hot_first = offset // self.blksize + 1
        self._hot_last = min((offset + len(view)) // self.blksize, self.blocks - 1)

    def _fail(self, code: ErrorCode, message: str, outcome: str) -> None:
        self._out.append(codec.error(code, message))
        self._end(outcome)

    def _end(self, outcome: str) -> None:
        self.outcome = outcome
        self._lockstep_ack = None
