"""Bounded work for what a client sends: body sizes, import shapes, header values, slow
request heads, runaway templates and revoked tokens' streams (issue #15, items 6-8), each
attacked on a real ``roost serve``."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from tests.integration.security.conftest import Roost, start_roost

MIB = 2**20


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A JSON body of ``total`` bytes sent without Content-Length (chunked)."""
    yield b'{"mac": "52:54:00:15:08:01", "hostname": "'
    for _ in range(total // size):
        yield b"a" * size
    yield b'"}'


def test_oversized_body_is_413_before_parsing(roost: Roost) -> None:
    api = roost.api()
    big = json.dumps({"mac": "52:54:00:15:08:01", "hostname": "a" * (2 * MIB)})
    r = api.post("/nodes", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    # without a Content-Length the body is counted as it arrives
    r = api.post("/nodes", content=_chunks(2 * MIB), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert "api.max_body_size" in r.json()["detail"]
    assert api.post("/nodes", json={"mac": "52:54:00:15:08:02"}).status_code == 201


def test_boot_file_uploads_stay_streamed_past_the_body_limit(roost: Roost) -> None:
    blob = b"\x90" * (3 * MIB)
    r = roost.api().put("/boot/files/big.bin", content=blob)
    assert r.status_code == 201, r.text
    got = roost.boot().get("/files/big.bin")
    assert got.status_code == 200 and got.content == blob


def test_deeply_nested_import_json_is_422(roost: Roost) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    r = roost.api().post(
        "/nodes/import", content=nested, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert "nested" in r.json()["detail"]


def test_csv_field_over_128_kib_is_422_naming_the_line(roost: Roost) -> None:
    csv = "mac,hostname\n52:54:00:15:08:03,ok\n52:54:00:15:08:04," + "x" * (130 * 1024) + "\n"
    r = roost.api().post("/nodes/import", content=csv, headers={"content-type": "text/csv"})
    assert r.status_code == 422, r.text
    assert "line 3" in r.json()["detail"]


def test_boot_file_content_type_with_crlf_is_422_and_files_stay_servable(roost: Roost) -> None:
    api = roost.api()
    evil = "text/plain\r\nSet-Cookie: a=b"
    r = api.put("/boot/files/evil.txt", params={"content_type": evil}, content=b"hi")
    assert r.status_code == 422, r.text
    assert "content_type" in r.json()["detail"]
    r = api.put(
        "/boot/files/ok.txt", params={"content_type": "text/plain; charset=utf-8"}, content=b"hi"
    )
    assert r.status_code == 201, r.text
    got = roost.boot().get("/files/ok.txt")
    assert got.status_code == 200 and got.headers["content-type"] == "text/plain; charset=utf-8"


def _trickler(port: int, source: str) -> socket.socket:
    """A connection from ``source`` that has sent the start of a request head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(source, 0))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has answered or closed: a busy 503 or EOF, not a silent wait."""
    try:
        return sock.recv(4096) is not None
    except TimeoutError:
        return False
    except OSError:
        return True


def test_tricklers_cannot_hold_every_boot_slot(tmp_path: Path) -> None:
    roost = start_roost(
        tmp_path,
        ROOST_BOOT__MAX_CONNECTIONS="5",
        ROOST_BOOT__MAX_CONNECTIONS_PER_CLIENT="2",
        ROOST_BOOT__HEADER_TIMEOUT="3",
    )
    port = int(roost.boot_url.rsplit(":", 1)[1])
    socks = [_trickler(port, "127.0.0.2") for _ in range(5)]
    try:
        time.sleep(0.5)
        # a normal client (another address) is served while the tricklers hold what they got
        assert roost.boot().get("/boot/boot.ipxe").status_code == 200
        started = time.monotonic()
        held = list(socks)
        while held and time.monotonic() - started < 15:
            for sock in list(held):
                sock.settimeout(0.05)
                if _closed_by_server(sock):
                    held.remove(sock)
                    continue
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Trickle: 1\r\n")
            time.sleep(1.5)
        # cut at the head deadline (3 s), though each sent a header line every 1.5 s
        assert held == []
        assert roost.boot().get("/boot/boot.ipxe").status_code == 200
    finally:
        for sock in socks:
            sock.close()
        roost.stop()
