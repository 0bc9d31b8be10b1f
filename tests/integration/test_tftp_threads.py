"""Transfers in threads (what worker processes run), driven directly: real sockets on
loopback, hand-driven clients and atftp, the carrier's counters to see how each transfer
waited. Every test runs twice: serving content held in memory (blocks cut as they go) and a
file on disk (a shared snapshot with its packets built, the hot path's own loop)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from roost.tftp import codec
from roost.tftp.files import MemoryFile, OpenFile, TFTPFile
from roost.tftp.session import Limits
from roost.tftp.threads import ThreadCarrier, ThreadTransfer
from roost.tftp.transfer import TransferResult
from tests.integration.tftp_helpers import RawClient, need

DATA = os.urandom(5000)  # 10 blocks of 512
LIMITS = Limits(max_blksize=1468, max_windowsize=64)


class Carried:
    """A thread carrier and the results of its transfers, in order of ending."""

    def __init__(self, busy_poll: float, files: Path | None) -> None:
        self.carrier = ThreadCarrier(busy_poll)
        self.files = files
        """Where content is written to be served from disk; None serves it from memory."""
        self.results: list[TransferResult] = []
        self._ended = asyncio.Event()

    def start(
        self,
        peer: tuple[str, int],
        data: bytes = DATA,
        limits: Limits = LIMITS,
        options: dict[str, str] | None = None,
    ) -> ThreadTransfer:
        """Serve ``data`` to the client at ``peer`` as if it had asked with ``options``."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.connect(peer)
        request = codec.Request(codec.RRQ, "f.bin", "octet", options or {})
        transfer = self.carrier.start(sock, request, self._file(data), limits, self._done)
        assert (transfer.session._built is not None) == (self.files is not None)
        return transfer

    def _file(self, data: bytes) -> TFTPFile:
        if self.files is None:
            return MemoryFile(data)
        path = self.files / f"{len(list(self.files.iterdir()))}.bin"
        path.write_bytes(data)
        return OpenFile(os.open(path, os.O_RDONLY))

    def _done(self, _transfer: ThreadTransfer, result: TransferResult) -> None:
        self.results.append(result)
        self._ended.set()

    async def result(self, count: int = 1, wait: float = 10.0) -> TransferResult:
        async with asyncio.timeout(wait):
            while len(self.results) < count:
                self._ended.clear()
                await self._ended.wait()
        return self.results[count - 1]


Carry = Callable[..., Carried]


@pytest.fixture(params=["cut", "built"])
async def carry(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Carry]:
    made: list[Carried] = []
    files = tmp_path / "served" if request.param == "built" else None
    if files is not None:
        files.mkdir()

    def make(busy_poll: float = 0.0) -> Carried:
        made.append(Carried(busy_poll, files))
        return made[-1]

    yield make
    for carried in made:
        carried.carrier.close()


@pytest.fixture
async def client() -> AsyncIterator[RawClient]:
    c = RawClient()
    yield c
    c.close()


async def first_packet(client: RawClient) -> codec.Packet:
    packet, client.peer = await client.recv()
    return packet


async def fetch_all(carried: Carried, clients: list[RawClient]) -> None:
    """Start a transfer for each client at once and check every one gets the whole file."""
    for c in clients:
        carried.start(c.sock.getsockname())
    firsts = [await first_packet(c) for c in clients]
    got = await asyncio.gather(
        *(c.fetch_rest(first) for c, first in zip(clients, firsts, strict=True))
    )
    assert set(got) == {DATA}


async def serve_atftp(carried: Carried, tmp_path: Path, *options: str) -> Path:
    """Run atftp against a port of the test's own, start a thread transfer for its request,
    and return the file it wrote."""
    need("atftp")
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.setblocking(False)
    got = tmp_path / "got.bin"
    args = [a for o in options for a in ("--option", o)]
    proc = await asyncio.create_subprocess_exec(
        "atftp", "-g", "-r", "f.bin", "-l", str(got), *args,
        "127.0.0.1", str(listener.getsockname()[1]),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        raw, peer = await asyncio.wait_for(
            asyncio.get_running_loop().sock_recvfrom(listener, 2048), 10
        )
        request = codec.decode(raw)
        assert isinstance(request, codec.Request)
        carried.start(peer, DATA * 100, options=request.options)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, out
    finally:
        listener.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return got


async def test_transfers_at_once_are_all_answered(client: RawClient, carry: Carry) -> None:
    carried = carry()
    clients = [RawClient() for _ in range(24)]
    try:
        await fetch_all(carried, clients)
        await carried.result(24)
        assert {r.outcome for r in carried.results} == {"ok"}
        assert len(carried.carrier) == 0
    finally:
        for c in clients:
            c.close()


async def test_a_window_goes_out_whole_and_the_file_arrives_intact(
    tmp_path: Path, carry: Carry
) -> None:
    carried = carry()
    got = await serve_atftp(carried, tmp_path, "windowsize 16", "blksize 1468")
    result = await carried.result()
    assert (result.outcome, result.windowsize, result.blksize) == ("ok", 16, 1468)
    assert got.read_bytes() == DATA * 100


async def test_busy_polling_catches_a_fast_clients_acks_without_sleeping(
    tmp_path: Path, carry: Carry
) -> None:
    # atftp answers each DATA at once; lockstep at blksize 512 is one ACK per block. Without
    # busy polling the transfer sleeps in recv for every ACK; with a generous window it
    # catches them all while it polls.
    sleeps = {}
    for busy_poll in (0.0, 0.5):
        carried = carry(busy_poll)
        got = await serve_atftp(carried, tmp_path)
        assert (await carried.result()).outcome == "ok"
        assert got.read_bytes() == DATA * 100  # 977 blocks
        sleeps[busy_poll] = carried.carrier.sleeps
    assert sleeps[0.0] >= 977
    assert sleeps[0.5] <= 5


async def test_busy_polling_backs_off_for_slow_clients(client: RawClient, carry: Carry) -> None:
    # A client slower than the window (firmware on a real LAN): spins catch nothing, so the
    # transfer skips spinning for its next ACKs instead of burning a window before each.
    carried = carry(busy_poll=0.001)
    carried.start(client.sock.getsockname())
    assert await client.fetch_rest(await first_packet(client), pause=0.01) == DATA
    assert (await carried.result()).outcome == "ok"
    carrier = carried.carrier
    # Spins before ACKs 1, 3, 7 (each a miss, each skipping more), not before every one.
    assert carrier.caught == 0
    assert 2 <= carrier.spins < carrier.sleeps / 2


async def test_busy_polling_stops_when_a_process_carries_more_than_two(carry: Carry) -> None:
    carried = carry(busy_poll=0.05)
    idle = [RawClient() for _ in range(2)]  # two transfers waiting throughout: never ACKed
    clients = [RawClient() for _ in range(3)]
    try:
        for c in idle:
            carried.start(c.sock.getsockname(), limits=Limits(timeout=30))
            await first_packet(c)
        # Each polls once after its first block, as one of at most two (it may start just
        # after the client has the block), then sleeps in recv.
        async with asyncio.timeout(5):
            while carried.carrier.spins < 2:  # noqa: ASYNC110 - counted in threads, no event
                await asyncio.sleep(0.01)
        await fetch_all(carried, clients)
        await carried.result(3)
        # With at least three in flight, none polls: 10 ACK waits each, all asleep in recv.
        assert carried.carrier.spins == 2
        assert carried.carrier.sleeps >= 30
    finally:
        for c in idle + clients:
            c.close()


async def test_the_receive_timeout_retransmits_then_gives_up(
    client: RawClient, carry: Carry
) -> None:
    carried = carry()
    carried.start(client.sock.getsockname(), limits=Limits(timeout=1, retries=1))
    first = await first_packet(client)
    again, _ = await client.recv(wait=3.0)  # no ACK: the same block after the timeout
    assert isinstance(first, codec.Data) and again == first
    assert (await carried.result()).outcome == "timeout"


async def test_a_client_that_goes_quiet_mid_transfer_gets_its_block_again(
    client: RawClient, carry: Carry
) -> None:
    # The timeout comes while the thread is in its lockstep loop: the transfer resends the
    # block the client missed (not an older one) and carries on when the ACKs come back.
    carried = carry()
    carried.start(client.sock.getsockname(), limits=Limits(timeout=1, retries=3))
    assert await first_packet(client) == codec.Data(1, DATA[:512])
    await client.ack(1)
    await client.recv()  # DATA 2, answered by the loop
    await client.ack(2)
    third, _ = await client.recv()
    assert third == codec.Data(3, DATA[1024:1536])
    again, _ = await client.recv(wait=3.0)  # no ACK: block 3 again after the timeout
    assert again == third
    assert DATA[:1024] + await client.fetch_rest(again) == DATA
    assert (await carried.result()).outcome == "ok"


async def test_an_ack_that_comes_after_the_deadline_is_answered_not_retransmitted(
    client: RawClient, carry: Carry
) -> None:
    # A transfer whose thread gets the CPU only after its deadline (an overloaded machine;
    # here the clock jumps) must answer the client's ACK with DATA 1 before it looks at its
    # timer, not send the OACK again (atftp aborts on a second OACK).
    carried = carry()
    late = 0.0
    carried.carrier.clock = lambda: time.monotonic() + late
    carried.start(client.sock.getsockname(), limits=Limits(timeout=1), options={"tsize": "0"})
    oack = await first_packet(client)
    assert isinstance(oack, codec.OptionAck)
    late = 5.0
    await client.ack(0)
    first, _ = await client.recv(wait=3.0)
    assert isinstance(first, codec.Data) and first.block == 1, first
    assert await client.fetch_rest(first) == DATA
    assert (await carried.result()).outcome == "ok"


async def test_closing_the_carrier_ends_a_transfer_asleep_in_recv(
    client: RawClient, carry: Carry
) -> None:
    # The thread sleeps in recv for an ACK that never comes; closing wakes it at once (not
    # after its 30 s timeout) and reports it stopped.
    carried = carry()
    transfer = carried.start(client.sock.getsockname(), limits=Limits(timeout=30))
    assert isinstance(await first_packet(client), codec.Data)
    carried.carrier.close()  # waits up to 5 s for the thread: ended means it woke at once
    assert transfer.ended
    assert (await carried.result()).outcome == "stopped"
    assert len(carried.carrier) == 0


async def test_malformed_datagrams_are_counted_and_the_transfer_carries_on(
    client: RawClient, carry: Carry
) -> None:
    carried = carry()
    carried.start(client.sock.getsockname())
    first = await first_packet(client)
    await client.send(b"\x42", client.peer)
    await client.send(b"\x00\x04\x00\x01trailing", client.peer)
    await client.ack(1)
    second, _ = await client.recv()  # the thread is in its lockstep loop from here
    await client.send(b"\x00\x04\x00\x02trailing", client.peer)
    await client.send(b"\x42", client.peer)
    assert first == codec.Data(1, DATA[:512])
    assert DATA[:512] + await client.fetch_rest(second) == DATA
    result = await carried.result()
    assert (result.outcome, result.malformed) == ("ok", 4)


async def test_a_thread_serves_the_next_transfer_when_its_last_one_ends(
    client: RawClient, carry: Carry
) -> None:
    carried = carry()
    for n in (1, 2, 3):
        carried.start(client.sock.getsockname())
        assert await client.fetch_rest(await first_packet(client)) == DATA
        assert (await carried.result(n)).outcome == "ok"
        await asyncio.sleep(0.05)  # the thread parks after reporting
    assert carried.carrier.threads == 1
    carried.carrier.close()
    assert not carried.carrier._idle
    # A thread that parks after the close goes at once rather than waiting to be reused.
    assert carried.carrier._park() is None and not carried.carrier._idle
