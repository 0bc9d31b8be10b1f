"""The small HTTP/1.1 server itself, on loopback: bad input, limits, slow and vanishing peers."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.boot.http11 import FileBody, HTTPServer, Request, Response

from .conftest import curl


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big"
    path.write_bytes(os.urandom(32 * 2**20))
    return path


@pytest.fixture
async def server(
    big_file: Path,
) -> AsyncIterator[tuple[HTTPServer, list[tuple[str, int, int, bool]]]]:
    seen: list[tuple[str, int, int, bool]] = []

    async def handler(request: Request) -> Response:
        if request.path == "/big":
            fd = os.open(big_file, os.O_RDONLY)
            return Response(200, [], file=FileBody(fd, 0, os.fstat(fd).st_size))
        if request.path == "/boom":
            raise RuntimeError("handler bug")
        return Response(200, [("content-type", "text/plain")], request.body or b"hello")

    def observe(req: Request, resp: Response, sent: int, seconds: float, complete: bool) -> None:
        seen.append((req.path, resp.status, sent, complete))

    srv = HTTPServer(handler, observe, max_connections=4, idle_timeout=0.5, max_body=1024)
    await srv.start("127.0.0.1", 0)
    try:
        yield srv, seen
    finally:
        await srv.stop()


async def _exchange(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def test_malformed_requests_get_400_and_the_server_goes_on(server) -> None:
    srv, _ = server
    port = srv.address[1]
    for junk in (
        b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
        b"GET / HTTP/1.1\r\nbad header\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ):  # HTTP/1.1 without Host
        assert (await _exchange(port, junk)).startswith(b"HTTP/1.1 400")
    huge = b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nhost: x\r\n\r\n"
    assert (await _exchange(port, huge)).startswith(b"HTTP/1.1 4")
    assert await curl(f"http://127.0.0.1:{port}/") == "hello"


async def test_body_limit_handler_error_and_expect_continue(server) -> None:
    srv, _ = server
    url = f"http://127.0.0.1:{srv.address[1]}"
    assert await curl("-o", "/dev/null", "-w", "%{http_code}", "-d", "x" * 2000, url) == "413"
    assert await curl("-o", "/dev/null", "-w", "%{http_code}", url + "/boom") == "500"
    # curl sends Expect: 100-continue for this body; the server must answer it, not stall
    out = await curl("-H", "Expect: 100-continue", "--data-binary", "y" * 1000, url)
    assert out == "y" * 1000


async def test_connection_cap_answers_503(server) -> None:
    srv, _ = server
    port = srv.address[1]
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
    await asyncio.sleep(0.1)
    try:
        out = await curl("-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/")
        assert out == "503"
        assert srv.refused == 1
    finally:
        for _, w in idle:
            w.close()


async def test_idle_connection_is_closed(server) -> None:
    srv, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.address[1])
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the 0.5 s idle timeout
    writer.close()


async def test_reader_that_vanishes_mid_transfer_is_reported_incomplete(server) -> None:
    srv, seen = server
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", srv.address[1]))
    await loop.sock_sendall(sock, b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
    assert (await loop.sock_recv(sock, 100)).startswith(b"HTTP/1.1 200")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # RST: the server's next sendfile fails
    for _ in range(200):
        if seen:
            break
        await asyncio.sleep(0.025)
    path, status, sent, complete = seen[-1]
    assert (path, status, complete) == ("/big", 200, False)
    assert 0 < sent < 32 * 2**20
    assert srv.active == 0
