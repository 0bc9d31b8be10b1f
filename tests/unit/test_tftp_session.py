"""The transfer state machine, driven with injected time: no sockets, no clock."""

from __future__ import annotations

import struct

import pytest

from roost.tftp import codec
from roost.tftp.codec import Request
from roost.tftp.files import MemoryFile
from roost.tftp.session import Limits, TFTPSession, negotiate

pytestmark = pytest.mark.unit

LIMITS = Limits(timeout=1.0, retries=3, max_blksize=1468, max_windowsize=32)


def rrq(**options: str) -> Request:
    return Request(codec.RRQ, "f", "octet", dict(options))


def ack(block: int) -> bytes:
    return struct.pack("!HH", codec.ACK, block & 0xFFFF)


def data_blocks(out: list[bytes]) -> list[tuple[int, bytes]]:
    blocks = []
    for raw in out:
        pkt = codec.decode(raw)
        assert isinstance(pkt, codec.Data), pkt
        blocks.append((pkt.block, pkt.data))
    return blocks


def fetch(session: TFTPSession, out: list[bytes] | None = None, now: float = 0.0) -> bytes:
    """A well-behaved client: ACK the last block of every window until the end; ``out`` is
    what the session sent last if the test already took it."""
    got = bytearray()
    out = session.datagrams_to_send(now) if out is None else out
    if out and isinstance(codec.decode(out[0]), codec.OptionAck):
        session.receive(ack(0), now)
        out = session.datagrams_to_send(now)
    while not session.done:
        blocks = data_blocks(out)
        assert blocks, "session stalled"
        for _, data in blocks:
            got += data
        session.receive(ack(blocks[-1][0]), now)
        out = session.datagrams_to_send(now)
    return bytes(got)


def test_lockstep_without_options_sends_data_1_at_once() -> None:
    s = TFTPSession(rrq(), MemoryFile(b"x" * 1000), LIMITS, 0.0)
    first = s.datagrams_to_send(0.0)
    assert data_blocks(first) == [(1, b"x" * 512)]
    assert fetch(s, first) == b"x" * 1000
    assert s.outcome == "ok" and s.bytes_acked == 1000


def test_exact_multiple_of_blksize_ends_with_empty_block() -> None:
    s = TFTPSession(rrq(), MemoryFile(b"y" * 1024), LIMITS, 0.0)
    s.datagrams_to_send(0.0)
    s.receive(ack(1), 0.0)
    assert data_blocks(s.datagrams_to_send(0.0)) == [(2, b"y" * 512)]
    s.receive(ack(2), 0.0)
    assert data_blocks(s.datagrams_to_send(0.0)) == [(3, b"")]
    s.receive(ack(3), 0.0)
    assert s.outcome == "ok"


def test_options_are_acknowledged_then_ack_0_starts_data() -> None:
    s = TFTPSession(rrq(blksize="1000", tsize="0"), MemoryFile(b"z" * 3000), LIMITS, 0.0)
    (oack,) = s.datagrams_to_send(0.0)
    assert codec.decode(oack) == codec.OptionAck({"blksize": "1000", "tsize": "3000"})
    s.receive(ack(5), 0.0)  # not the OACK's acknowledgement: ignored
    assert s.datagrams_to_send(0.0) == []
    s.receive(ack(0), 0.0)
    assert data_blocks(s.datagrams_to_send(0.0)) == [(1, b"z" * 1000)]


def test_duplicate_acks_are_never_answered() -> None:
    """Sorcerer's Apprentice (RFC 1123 §4.2.3.1): a repeated ACK must not resend DATA."""
    s = TFTPSession(rrq(), MemoryFile(bytes(5000)), LIMITS, 0.0)
    s.datagrams_to_send(0.0)
    s.receive(ack(1), 0.1)
    assert len(s.datagrams_to_send(0.1)) == 1
    for _ in range(5):
        s.receive(ack(1), 0.2)
        s.receive(ack(0), 0.2)
        s.receive(ack(60000), 0.2)  # far ahead of anything sent: stale
    assert s.datagrams_to_send(0.2) == []


def test_timer_retransmits_then_gives_up() -> None:
    s = TFTPSession(rrq(), MemoryFile(bytes(5000)), LIMITS, 10.0)
    first = s.datagrams_to_send(10.0)
    assert s.next_timer() == 11.0
    s.handle_timer(10.5)  # early: nothing
    assert s.datagrams_to_send(10.5) == []
    for attempt in range(1, 4):
        s.handle_timer(10.0 + attempt)
        assert s.datagrams_to_send(10.0 + attempt) == first
        assert s.next_timer() == 11.0 + attempt
    s.handle_timer(14.0)
    assert s.outcome == "timeout" and s.next_timer() is None


def test_progress_resets_the_retry_count() -> None:
    s = TFTPSession(rrq(), MemoryFile(bytes(2000)), LIMITS, 0.0)
    s.datagrams_to_send(0.0)
    s.handle_timer(1.0)
    s.handle_timer(2.0)
    s.receive(ack(1), 2.5)
    assert s.next_timer() == 3.5
    for t in (3.5, 4.5, 5.5):
        s.handle_timer(t)
    assert not s.done  # three retries after the progress are allowed


def test_client_timeout_option_sets_the_retransmission_interval() -> None:
    s = TFTPSession(rrq(timeout="5"), MemoryFile(bytes(10)), LIMITS, 0.0)
    assert s.next_timer() == 5.0


def test_block_numbers_roll_over_past_65535() -> None:
    size = 8 * 70_000 + 3
    content = bytes(i % 251 for i in range(size))
    s = TFTPSession(rrq(blksize="8"), MemoryFile(content), LIMITS, 0.0)
    seen: list[int] = []
    s.datagrams_to_send(0.0)
    s.receive(ack(0), 0.0)
    got = bytearray()
    while not s.done:
        ((block, data),) = data_blocks(s.datagrams_to_send(0.0))
        seen.append(block)
        got += data
        s.receive(ack(block), 0.0)
    assert bytes(got) == content
    assert seen[65534:65537] == [65535, 0, 1]
    assert s.outcome == "ok" and s.bytes_acked == size


def test_window_sends_windowsize_blocks_per_ack() -> None:
    content = bytes(range(256)) * 100  # 25600 bytes = 50 blocks of 512
    s = TFTPSession(rrq(windowsize="8"), MemoryFile(content), LIMITS, 0.0)
    s.datagrams_to_send(0.0)
    s.receive(ack(0), 0.0)
    assert [b for b, _ in data_blocks(s.datagrams_to_send(0.0))] == list(range(1, 9))
    s.receive(ack(8), 0.0)
    second = s.datagrams_to_send(0.0)
    assert [b for b, _ in data_blocks(second)] == list(range(9, 17))
    assert fetch(s, second) == content[8 * 512 :]


def test_ack_inside_window_restarts_after_it() -> None:
    """RFC 7440 §4: the client ACKs the last block it got in order; resend from there."""
    s = TFTPSession(rrq(windowsize="4"), MemoryFile(bytes(512 * 20)), LIMITS, 0.0)
    s.datagrams_to_send(0.0)
    s.receive(ack(0), 0.0)
    s.datagrams_to_send(0.0)  # blocks 1-4
    s.receive(ack(2), 0.0)  # 3 was lost
    assert [b for b, _ in data_blocks(s.datagrams_to_send(0.0))] == [3, 4, 5, 6]
    s.receive(ack(2), 0.0)  # the same ACK again: no second resend
    assert s.datagrams_to_send(0.0) == []


def test_error_from_client_aborts() -> None:
    s = TFTPSession(rrq(tsize="0"), MemoryFile(bytes(100)), LIMITS, 0.0)
    s.datagrams_to_send(0.0)
    s.receive(codec.error(codec.ErrorCode.OPTION_NEGOTIATION, "just asking the size"), 0.0)
    assert s.outcome == "aborted" and s.next_timer() is None


def test_malformed_datagram_is_reported_and_changes_nothing() -> None:
    s = TFTPSession(rrq(), MemoryFile(bytes(2000)), LIMITS, 0.0)
    s.datagrams_to_send(0.0)
    assert s.receive(b"\x00", 0.0) is False
    assert s.receive(b"\x00\x04\x00\x01junk", 0.0) is False
    assert s.receive(b"\x13\x37garbage", 0.0) is False
    assert s.datagrams_to_send(0.0) == [] and not s.done


def test_data_from_client_is_an_illegal_operation() -> None:
    s = TFTPSession(rrq(), MemoryFile(bytes(2000)), LIMITS, 0.0)
    s.datagrams_to_send(0.0)
    assert s.receive(codec.encode(codec.Data(1, b"x")), 0.0)
    (err,) = s.datagrams_to_send(0.0)
    assert codec.decode(err) == codec.Error(4, "only ACK or ERROR expected")
    assert s.outcome == "error"


def test_file_shrinking_under_the_transfer_ends_it_with_an_error() -> None:
    class Shrunk(MemoryFile):
        def __init__(self) -> None:
            super().__init__(bytes(100))
            self.size = 5000  # claims more than it has

    s = TFTPSession(rrq(), Shrunk(), LIMITS, 0.0)
    (err,) = s.datagrams_to_send(0.0)
    assert isinstance(codec.decode(err), codec.Error) and s.outcome == "error"


@pytest.mark.parametrize(
    ("options", "blksize", "window", "oack"),
    [
        ({}, 512, 1, {}),
        ({"blksize": "1468"}, 1468, 1, {"blksize": "1468"}),
        ({"blksize": "65464"}, 1468, 1, {"blksize": "1468"}),  # clamped to the server's max
        ({"blksize": "7"}, 512, 1, {}),  # below RFC 2348's minimum: ignored
        ({"blksize": "big"}, 512, 1, {}),
        ({"blksize": "-1"}, 512, 1, {}),
        ({"windowsize": "16"}, 512, 16, {"windowsize": "16"}),
        ({"windowsize": "1000"}, 512, 32, {"windowsize": "32"}),  # clamped to the cap
        ({"windowsize": "0"}, 512, 1, {}),
        ({"windowsize": "65536"}, 512, 1, {}),
        ({"timeout": "0"}, 512, 1, {}),
        ({"timeout": "256"}, 512, 1, {}),
        ({"timeout": "3"}, 512, 1, {"timeout": "3"}),
        ({"tsize": "0"}, 512, 1, {"tsize": "4242"}),
        ({"multicast": ""}, 512, 1, {}),  # RFC 2090: not supported, ignored
    ],
)
def test_negotiation(
    options: dict[str, str], blksize: int, window: int, oack: dict[str, str]
) -> None:
    n = negotiate(options, 4242, LIMITS)
    assert (n.blksize, n.windowsize, n.oack) == (blksize, window, oack)


def test_blksize_up_to_65464_when_allowed() -> None:
    n = negotiate({"blksize": "70000"}, 0, Limits(max_blksize=65464))
    assert n.blksize == 65464
