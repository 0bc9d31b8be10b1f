"""The server's behaviour on the wire, with a hand-driven client: refusals, the traversal
corpus, malformed packets, write requests, the transfer cap, and duplicate requests."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.tftp import codec
from roost.tftp.codec import ErrorCode
from roost.tftp.session import Limits
from tests.integration.tftp_helpers import RawClient, metric, need, run, serving
from tests.unit.test_tftp_resolver import TRAVERSAL, traversal_tree


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = traversal_tree(tmp_path)
    (root / "f.bin").write_bytes(os.urandom(5000))
    return root


@pytest.fixture
async def client() -> AsyncIterator[RawClient]:
    c = RawClient()
    yield c
    c.close()


# Names that fit in a request (NUL ends a string on the wire; empty is malformed).
WIRE_TRAVERSAL = [n for n in TRAVERSAL if "\0" not in n and n]


async def test_traversal_corpus_is_refused_over_the_wire(root: Path, client: RawClient) -> None:
    async with serving(root) as srv:
        for i, name in enumerate(WIRE_TRAVERSAL, start=1):
            reply = await client.request(srv.port, name)
            assert isinstance(reply, codec.Error), name
            assert reply.code == ErrorCode.ACCESS_VIOLATION, (name, reply)
            assert (await srv.record(i)).outcome == "denied"
        # and the same server still serves what is inside the root
        first = await client.request(srv.port, "f.bin")
        assert await client.fetch_rest(first) == (root / "f.bin").read_bytes()


async def test_malformed_packets_are_counted_and_dropped(root: Path, client: RawClient) -> None:
    garbage = [b"", b"\x00", b"\xff\xff\x00\x00", b"\x00\x03\x00\x01data", b"\x00\x01f.bin"]
    before = metric("roost_tftp_malformed_packets_total", socket="request")
    async with serving(root) as srv:
        for raw in garbage:
            await client.send(raw, ("127.0.0.1", srv.port))
        # garbage on a transfer's own port too; the transfer carries on afterwards
        first = await client.request(srv.port, "f.bin")
        in_transfer = metric("roost_tftp_malformed_packets_total", socket="transfer")
        await client.send(b"\x00\x04\x00\x01trailing", client.peer)
        await client.send(b"\x42", client.peer)
        assert await client.fetch_rest(first) == (root / "f.bin").read_bytes()
        assert (await srv.record()).outcome == "ok"
    after = metric("roost_tftp_malformed_packets_total", socket="request")
    assert after - before == len(garbage)
    assert metric("roost_tftp_malformed_packets_total", socket="transfer") - in_transfer == 2


async def test_write_requests_are_refused_from_a_new_port(root: Path, client: RawClient) -> None:
    async with serving(root) as srv:
        wrq = codec.Request(codec.WRQ, "upload.bin", "octet")
        await client.send(codec.encode(wrq), ("127.0.0.1", srv.port))
        reply, addr = await client.recv()
        assert reply == codec.Error(ErrorCode.ACCESS_VIOLATION, "server is read-only")
        assert addr[1] != srv.port  # RFC 1350 §4: answers come from a new TID
        assert (await srv.record()).outcome == "write_refused"
    assert not (root / "upload.bin").exists()


async def test_mail_mode_is_refused(root: Path, client: RawClient) -> None:
    async with serving(root) as srv:
        await client.send(codec.encode(codec.Request(codec.RRQ, "f.bin", "mail")),
                          ("127.0.0.1", srv.port))  # fmt: skip
        reply, _ = await client.recv()
        assert isinstance(reply, codec.Error) and reply.code == ErrorCode.ILLEGAL_OPERATION


async def test_transfer_cap_answers_busy_then_recovers(root: Path) -> None:
    clients = [RawClient() for _ in range(3)]
    try:
        async with serving(root, max_transfers=2) as srv:
            firsts = [await c.request(srv.port, "f.bin") for c in clients[:2]]
            assert all(isinstance(p, codec.Data) for p in firsts)
            busy = await clients[2].request(srv.port, "f.bin")
            assert isinstance(busy, codec.Error) and "busy" in busy.message
            assert busy.code == ErrorCode.NOT_DEFINED
            assert srv.server.active == 2
            for c, first in zip(clients[:2], firsts, strict=True):
                await c.fetch_rest(first)
            await srv.record(3)
            again = await clients[2].request(srv.port, "f.bin")
            assert isinstance(again, codec.Data)
            await clients[2].fetch_rest(again)
            outcomes = sorted(r.outcome for r in srv.records[:3])
            assert outcomes == ["busy", "ok", "ok"]
    finally:
        for c in clients:
            c.close()


async def test_repeated_request_does_not_start_a_second_transfer(
    root: Path, client: RawClient
) -> None:
    async with serving(root, limits=Limits(timeout=30)) as srv:
        rrq = codec.encode(codec.Request(codec.RRQ, "f.bin", "octet"))
        await client.send(rrq, ("127.0.0.1", srv.port))
        await client.send(rrq, ("127.0.0.1", srv.port))
        first, client.peer = await client.recv()
        with pytest.raises(TimeoutError):
            await client.recv(wait=0.3)  # no second DATA 1 from another port
        assert srv.server.active == 1
        await client.fetch_rest(first)
        await srv.record()


async def test_unacknowledged_transfer_times_out(root: Path, client: RawClient) -> None:
    async with serving(root, limits=Limits(timeout=0.05, retries=2)) as srv:
        first = await client.request(srv.port, "f.bin")
        resent = [await client.recv() for _ in range(2)]
        assert all(p == first for p, _ in resent)  # the same DATA 1, from the same port
        rec = await srv.record()
        assert (rec.outcome, rec.bytes) == ("timeout", 0)
        assert srv.server.active == 0


async def test_client_error_after_oack_ends_the_transfer(root: Path, client: RawClient) -> None:
    async with serving(root) as srv:
        oack = await client.request(srv.port, "f.bin", tsize="0", blksize="1468")
        assert oack == codec.OptionAck({"tsize": "5000", "blksize": "1468"})
        await client.send(codec.error(ErrorCode.OPTION_NEGOTIATION, "size only"), client.peer)
        assert (await srv.record()).outcome == "aborted"
        await asyncio.sleep(0)
        assert srv.server.active == 0


async def test_worker_processes_carry_transfers(root: Path, tmp_path: Path) -> None:
    """With workers the server hands each transfer's socket and file to another process;
    content resolved in memory travels as a memfd. Results come back as the same records."""
    need("curl", "atftp")
    (root / "w.bin").write_bytes(os.urandom(3 << 20))
    async with serving(root, workers=2) as srv:
        before = metric("roost_tftp_malformed_packets_total", socket="transfer")
        client = RawClient()
        try:
            first = await client.request(srv.port, "f.bin")
            await client.send(b"\x42", client.peer)  # counted by the worker, reported back
            assert await client.fetch_rest(first) == (root / "f.bin").read_bytes()
        finally:
            client.close()
        rc, out = await run("atftp", "-g", "-r", "w.bin", "-l", "w.got", "--option",
                            "windowsize 16", "127.0.0.1", str(srv.port), cwd=tmp_path)  # fmt: skip
        assert rc == 0, out
        rc, out = await run("curl", "-sS", "-o", "t.got", f"tftp://127.0.0.1:{srv.port}/f.bin",
                            "-B", cwd=tmp_path)  # fmt: skip
        assert rc == 0, out
        records = [await srv.record(i) for i in (1, 2, 3)]
        pool = srv.server._pool
        assert pool is not None and pool.handed_off == 3
    assert [r.outcome for r in records] == ["ok", "ok", "ok"]
    assert records[1].windowsize == 16 and records[1].bytes == 3 << 20
    assert (tmp_path / "w.got").read_bytes() == (root / "w.bin").read_bytes()
    assert metric("roost_tftp_malformed_packets_total", socket="transfer") - before == 1
    netascii = (root / "f.bin").read_bytes().replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")
    assert (tmp_path / "t.got").read_bytes() == netascii  # curl keeps netascii as sent


async def test_workers_are_pinned_one_cpu_each_within_the_servers_cpus(root: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    for pin in (True, False):
        async with serving(root, workers=3, pin_workers=pin) as srv:
            pool = srv.server._pool
            assert pool is not None
            got = [os.sched_getaffinity(w.proc.pid) for w in pool._workers]
            client = RawClient()
            try:  # and they still carry transfers
                first = await client.request(srv.port, "f.bin")
                assert await client.fetch_rest(first) == (root / "f.bin").read_bytes()
            finally:
                client.close()
        if pin:
            assert got == [{cpus[i % len(cpus)]} for i in range(3)]
        else:
            assert got == [set(cpus)] * 3


async def test_workers_and_their_transfer_threads_do_not_preempt_on_wake_up(root: Path) -> None:
    policy = os.sched_getscheduler(0)
    async with serving(root, workers=1, limits=Limits(timeout=30)) as srv:
        pool = srv.server._pool
        assert pool is not None
        client = RawClient()
        try:
            first = await client.request(srv.port, "f.bin")  # its thread now waits for ACK 1
            tasks = [int(t) for t in os.listdir(f"/proc/{pool._workers[0].proc.pid}/task")]
            assert len(tasks) >= 2  # the worker's event loop and the transfer's thread
            assert {os.sched_getscheduler(t) for t in tasks} == {os.SCHED_BATCH}
            assert await client.fetch_rest(first) == (root / "f.bin").read_bytes()
        finally:
            client.close()
    assert os.sched_getscheduler(0) == policy  # the server process (this one) is left as it was


async def test_lost_workers_fail_their_transfers_and_the_server_carries_on(root: Path) -> None:
    async with serving(root, workers=1, limits=Limits(timeout=30)) as srv:
        pool = srv.server._pool
        assert pool is not None
        client = RawClient()
        try:
            first = await client.request(srv.port, "f.bin")
            assert isinstance(first, codec.Data) and pool.handed_off == 1
            for worker in pool._workers:
                worker.proc.kill()
            rec = await srv.record()
            assert rec.outcome == "error" and srv.server.active == 0
            again = await client.request(srv.port, "f.bin")  # now carried in-process
            assert await client.fetch_rest(again) == (root / "f.bin").read_bytes()
            assert (await srv.record(2)).outcome == "ok" and pool.handed_off == 1
        finally:
            client.close()


async def test_many_acks_in_one_wake_up_are_all_answered(root: Path) -> None:
    # 24 ACKs reach the server in one wake-up (the clients share its loop and send without
    # yielding): one epoll poll serves them all, none is lost or answered twice.
    clients = [RawClient() for _ in range(24)]
    try:
        async with serving(root) as srv:
            firsts = [await c.request(srv.port, "f.bin") for c in clients]
            got = await asyncio.gather(
                *(c.fetch_rest(first) for c, first in zip(clients, firsts, strict=True))
            )
            assert set(got) == {(root / "f.bin").read_bytes()}
            await srv.record(24)
            assert {r.outcome for r in srv.records} == {"ok"}
    finally:
        for c in clients:
            c.close()


async def test_busy_polling_catches_a_fast_clients_acks_without_waking(
    root: Path, tmp_path: Path
) -> None:
    # atftp answers each DATA at once; lockstep at blksize 512 is one ACK per block. Without
    # busy polling every ACK is a wake-up of the carrier; with a generous window the carrier
    # catches them all while it polls, in a handful of wake-ups.
    need("atftp")
    (root / "big.bin").write_bytes(os.urandom(512 * 400))
    wakeups = {}
    for busy_poll in (0.0, 0.5):
        async with serving(root, busy_poll=busy_poll) as srv:
            carrier = srv.server.carrier
            assert carrier is not None
            carrier.hold = 60.0  # this test is about the window, not the loop's turn
            got = tmp_path / f"got-{busy_poll}.bin"
            rc, out = await run("atftp", "-g", "-r", "big.bin", "-l", str(got),
                                "127.0.0.1", str(srv.port), cwd=tmp_path)  # fmt: skip
            assert rc == 0, out
            assert got.read_bytes() == (root / "big.bin").read_bytes()
            assert (await srv.record()).outcome == "ok"
            wakeups[busy_poll] = carrier.wakeups
    assert wakeups[0.0] >= 400
    assert wakeups[0.5] <= 5


async def test_busy_polling_gives_the_event_loop_its_turn(root: Path, tmp_path: Path) -> None:
    # A client that always answers within the window would keep the carrier polling for the
    # whole transfer; the hold hands the loop back so timers, requests and DHCP still run.
    need("atftp")
    (root / "big.bin").write_bytes(os.urandom(512 * 2000))
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async with serving(root, busy_poll=0.5) as srv:
        carrier = srv.server.carrier
        assert carrier is not None
        carrier.hold = 0.002
        rc, out = await run("atftp", "-g", "-r", "big.bin", "-l", str(tmp_path / "got.bin"),
                            "127.0.0.1", str(srv.port), cwd=tmp_path)  # fmt: skip
        assert rc == 0, out
        ticker = asyncio.create_task(other_work())
        try:
            begin, wakeups = turns, carrier.wakeups
            rc, out = await run("atftp", "-g", "-r", "big.bin", "-l", str(tmp_path / "2.bin"),
                                "127.0.0.1", str(srv.port), cwd=tmp_path)  # fmt: skip
            assert rc == 0, out
            during = turns - begin
        finally:
            ticker.cancel()
        assert (await srv.record(2)).outcome == "ok"
    # Every return to the loop lets the other task run; a carrier that kept polling until the
    # transfer ended would have returned about once.
    assert carrier.wakeups - wakeups >= 3
    assert during >= 3


async def test_busy_polling_backs_off_for_slow_clients(root: Path, client: RawClient) -> None:
    # A client slower than the window (firmware on a real LAN): spins catch nothing, so the
    # carrier skips spinning on the next wake-ups instead of burning a window after each ACK.
    async with serving(root, busy_poll=0.001) as srv:
        carrier = srv.server.carrier
        assert carrier is not None
        first = await client.request(srv.port, "f.bin")
        got = await client.fetch_rest(first, pause=0.01)
        assert got == (root / "f.bin").read_bytes()
        assert (await srv.record()).outcome == "ok"
        # Spins on wake-ups 1, 3, 7 (each a miss, each skipping more), not on every one.
        assert 2 <= carrier.spin.misses < carrier.wakeups / 2


async def test_an_ack_waiting_when_the_timer_fires_is_answered_not_retransmitted(
    root: Path,
) -> None:
    # A carrier that falls a whole timeout behind (here it stops watching its sockets) must
    # find the client's ACK in the socket when the retransmission timer fires and answer it
    # with DATA 1, not send the OACK again (atftp aborts on a second OACK).
    async with serving(root, limits=Limits(timeout=1)) as srv:
        carrier = srv.server.carrier
        assert carrier is not None
        client = RawClient()
        try:
            oack = await client.request(srv.port, "f.bin", tsize="0")
            assert isinstance(oack, codec.OptionAck)
            carrier.loop.remove_reader(carrier._epoll.fileno())
            await client.ack(0)
            first, _ = await client.recv(wait=3.0)
            assert isinstance(first, codec.Data) and first.block == 1, first
            carrier.loop.add_reader(carrier._epoll.fileno(), carrier._ready)
            assert await client.fetch_rest(first) == (root / "f.bin").read_bytes()
        finally:
            client.close()
        assert (await srv.record(1)).outcome == "ok"
