"""Packets built once per shared snapshot: the same datagrams as cutting them per transfer,
shared between transfers, and counted against the snapshots' memory limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from roost.tftp import codec
from roost.tftp.files import PACKETS_MIN_BLKSIZE, MemoryFile, OpenFile, Packets, Snapshots
from roost.tftp.session import Limits, TFTPSession

pytestmark = pytest.mark.unit

LIMITS = Limits(timeout=1.0, retries=3, max_blksize=1468, max_windowsize=32)


def ack(block: int) -> bytes:
    return codec.encode(codec.Ack(block & 0xFFFF))


def shared(path: Path, snapshots: Snapshots) -> MemoryFile:
    file = snapshots.share(OpenFile(os.open(path, os.O_RDONLY)))
    assert isinstance(file, MemoryFile)
    return file


def transcript(session: TFTPSession, late_block: int) -> list[bytes]:
    """Everything ``session`` sends to a client that ACKs each window's last block, through the
    carriers' hot path first (``receive_ack``) as they do, and lets the timer fire once on
    ``late_block``."""
    now = 0.0
    sent = session.datagrams_to_send(now)
    if isinstance(codec.decode(sent[0]), codec.OptionAck):
        session.receive(ack(0), now)
        sent += session.datagrams_to_send(now)
    window = sent[-1:]
    while not session.done:
        block = codec.decode(window[-1])
        assert isinstance(block, codec.Data)
        if block.block == late_block:
            now += session.timeout
            session.handle_timer(now)
            sent += session.datagrams_to_send(now)
        packet = session.receive_ack(ack(block.block), now)
        if packet is None:
            session.receive(ack(block.block), now)
            window = session.datagrams_to_send(now)
        else:
            window = [packet]
        sent += window
    return sent


@pytest.mark.parametrize("size", [0, 1, 511, 512, 1468, 4 * 1468, 4 * 1468 + 7, 100_000])
@pytest.mark.parametrize(
    "options", [{}, {"blksize": "1468"}, {"blksize": "1024", "windowsize": "4"}]
)
def test_built_packets_send_what_cutting_them_sends(
    tmp_path: Path, size: int, options: dict[str, str]
) -> None:
    content = os.urandom(size)
    path = tmp_path / "boot.bin"
    path.write_bytes(content)
    request = codec.Request(codec.RRQ, "boot.bin", "octet", options)
    snapshots = Snapshots()
    file = shared(path, snapshots)
    built = TFTPSession(request, file, LIMITS, 0.0)
    assert built._built is not None  # the snapshot's packets, not cut per transfer
    cut = TFTPSession(request, MemoryFile(content), LIMITS, 0.0)
    assert cut._built is None
    got = transcript(built, late_block=2)
    assert got == transcript(cut, late_block=2)
    assert built.outcome == cut.outcome == "ok"
    data = [p for p in map(codec.decode, got) if isinstance(p, codec.Data)]
    assert b"".join(dict((d.block, d.data) for d in data).values()) == content


def test_packets_are_shared_by_transfers_and_released_with_the_last(tmp_path: Path) -> None:
    path = tmp_path / "boot.bin"
    path.write_bytes(os.urandom(10_000))
    snapshots = Snapshots()
    first, second = shared(path, snapshots), shared(path, snapshots)
    packets = first.packets(1468)
    assert packets is not None and second.packets(1468) is packets
    assert second.packets(1024) is not packets  # one set per block size
    assert len(packets.data) == 10_000 // 1468 + 2  # data[0] is unused
    assert snapshots._total > 10_000 + 10_000  # the content and two sets of packets
    first.close()
    second.close()
    assert snapshots._total == 0
    assert first.packets(1468) is None  # closed


def test_no_packets_below_the_minimum_block_size_or_past_the_memory_limit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "boot.bin"
    path.write_bytes(os.urandom(4000))
    assert shared(path, Snapshots()).packets(PACKETS_MIN_BLKSIZE - 1) is None
    tight = Snapshots(total_limit=6000)  # room for the content, not for its packets too
    file = shared(path, tight)
    assert file.packets(1468) is None
    session = TFTPSession(codec.Request(codec.RRQ, "f", "octet", {}), file, LIMITS, 0.0)
    assert session._built is None and transcript(session, late_block=0)[-1][4:] != b""
    assert MemoryFile(b"rendered").packets(512) is None  # per-client content is cut


def test_built_block_numbers_roll_over_past_65535() -> None:
    blksize = PACKETS_MIN_BLKSIZE
    content = memoryview(bytes(blksize * 65_537))
    packets = Packets.build(content, blksize)
    assert len(packets.data) == 65_539  # 65 537 full blocks and the empty last one
    headers = [codec.decode(packets.data[b]) for b in (65_535, 65_536, 65_538)]
    assert [(d.block, len(d.data)) for d in headers if isinstance(d, codec.Data)] == [
        (65_535, blksize),
        (0, blksize),
        (2, 0),
    ]
    assert packets.acks[65_536] == ack(0) and packets.acks[65_538] == ack(2)


def test_a_transports_own_lockstep_run_moves_the_session_as_receive_ack_would(
    tmp_path: Path,
) -> None:
    content = os.urandom(10 * 512 + 100)
    path = tmp_path / "boot.bin"
    path.write_bytes(content)
    request = codec.Request(codec.RRQ, "boot.bin", "octet", {})
    run_by_hand = TFTPSession(request, shared(path, Snapshots()), LIMITS, 0.0)
    one_by_one = TFTPSession(request, MemoryFile(content), LIMITS, 0.0)
    assert run_by_hand.datagrams_to_send(0.0) == one_by_one.datagrams_to_send(0.0)  # DATA 1
    run = run_by_hand.lockstep_run()
    assert run is not None
    sent, last, packets, acks = run
    assert (sent, last) == (1, 10)  # DATA 1 out; block 11, the short one, is never in a run
    for block in range(1, 5):  # the client ACKs 1..4, answered with DATA 2..5
        assert acks[sent] == ack(block)
        sent += 1
        assert packets[sent] == one_by_one.receive_ack(ack(block), float(block))
    run_by_hand.lockstep_ran(sent, 4.0)
    assert run_by_hand.next_timer() == one_by_one.next_timer() == 5.0
    assert run_by_hand.bytes_acked == one_by_one.bytes_acked == 4 * 512
    # Then both go on alike: a duplicate ACK is ignored, the timer resends DATA 5.
    for session in (run_by_hand, one_by_one):
        assert session.receive_ack(ack(4), 4.5) is None
        session.receive(ack(4), 4.5)
        session.handle_timer(5.0)
    assert run_by_hand.datagrams_to_send(5.0) == one_by_one.datagrams_to_send(5.0)
    for block in range(5, 12):  # and to the end
        for session in (run_by_hand, one_by_one):
            session.receive(ack(block), 6.0)
        assert run_by_hand.datagrams_to_send(6.0) == one_by_one.datagrams_to_send(6.0)
    assert run_by_hand.outcome == one_by_one.outcome == "ok"


def test_no_lockstep_run_without_built_packets_or_outside_lockstep(tmp_path: Path) -> None:
    path = tmp_path / "boot.bin"
    path.write_bytes(os.urandom(3000))
    snapshots = Snapshots()

    def session(**options: str) -> TFTPSession:
        request = codec.Request(codec.RRQ, "boot.bin", "octet", options)
        return TFTPSession(request, shared(path, snapshots), LIMITS, 0.0)

    assert TFTPSession(codec.Request(codec.RRQ, "f", "octet", {}), MemoryFile(bytes(3000)),
                       LIMITS, 0.0).lockstep_run() is None  # fmt: skip
    assert session(windowsize="4").lockstep_run() is None
    waiting = session(tsize="0")  # the OACK is not acknowledged yet
    assert waiting.lockstep_run() is None
    waiting.receive(ack(0), 0.0)
    assert waiting.lockstep_run() is not None
    ended = session()
    ended.abort("stopped")
    assert ended.lockstep_run() is None
