"""Roost's TFTP server against real clients from Debian on a loopback port: tftp-hpa, curl,
busybox and atftp (RFC 7440 windowsize), with every download compared by sha256."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.integration.tftp_helpers import need, run, serving, sha256

HOST = "127.0.0.1"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(os.urandom(1_000_003))
    (root / "exact.bin").write_bytes(os.urandom(1468 * 200))  # ends with an empty block
    return root


@pytest.mark.slow
async def test_tftp_hpa_40_mib_rolls_block_numbers_over(tmp_path: Path) -> None:
    """40 MiB at blksize 512 is 81920 blocks: the 16-bit block number wraps past 65535."""
    need("tftp")
    root = tmp_path / "root"
    root.mkdir()
    big = root / "big.bin"
    with big.open("wb") as f:
        for _ in range(40):
            f.write(os.urandom(1 << 20))
    async with serving(root) as srv:
        rc, out = await run("tftp", "-m", "binary", HOST, str(srv.port), "-c", "get",
                            "big.bin", "got.bin", cwd=tmp_path, limit=120)  # fmt: skip
        rec = await srv.record()
    assert rc == 0, out
    assert sha256(tmp_path / "got.bin") == sha256(big)
    assert (rec.outcome, rec.bytes, rec.blksize, rec.file) == ("ok", 40 << 20, 512, "big.bin")


@pytest.mark.parametrize(("name", "blksize"), [("f.bin", 512), ("exact.bin", 1468),
                                               ("f.bin", 65464)])  # fmt: skip
async def test_curl_with_blksize(root: Path, tmp_path: Path, name: str, blksize: int) -> None:
    need("curl")
    async with serving(root) as srv:
        rc, out = await run("curl", "-sS", "-o", "got.bin", "--tftp-blksize", str(blksize),
                            f"tftp://{HOST}:{srv.port}/{name}", cwd=tmp_path)  # fmt: skip
        rec = await srv.record()
    assert rc == 0, out
    assert sha256(tmp_path / "got.bin") == sha256(root / name)
    assert (rec.outcome, rec.blksize, rec.ip, rec.mac) == ("ok", blksize, HOST, None)


async def test_busybox_tftp(root: Path, tmp_path: Path) -> None:
    need("busybox")
    async with serving(root) as srv:
        rc, out = await run("busybox", "tftp", "-g", "-b", "1468", "-r", "f.bin", "-l",
                            "got.bin", HOST, str(srv.port), cwd=tmp_path)  # fmt: skip
        rec = await srv.record()
    if "applet not found" in out:
        pytest.skip("this busybox has no tftp applet")
    assert rc == 0, out
    assert sha256(tmp_path / "got.bin") == sha256(root / "f.bin")
    assert (rec.outcome, rec.blksize) == ("ok", 1468)


@pytest.mark.parametrize("window", [4, 16])
async def test_atftp_windowsize(root: Path, tmp_path: Path, window: int) -> None:
    need("atftp")
    big = root / "w.bin"
    big.write_bytes(os.urandom(4 << 20))
    async with serving(root) as srv:
        rc, out = await run("atftp", "-g", "-r", "w.bin", "-l", "got.bin",
                            "--option", "blksize 1468", "--option", f"windowsize {window}",
                            HOST, str(srv.port), cwd=tmp_path)  # fmt: skip
        rec = await srv.record()
    assert rc == 0, out
    assert sha256(tmp_path / "got.bin") == sha256(big)
    assert (rec.outcome, rec.blksize, rec.windowsize) == ("ok", 1468, window)


async def test_tftp_hpa_netascii(root: Path, tmp_path: Path) -> None:
    need("tftp")
    text = b"#!ipxe\ndhcp\nchain http://192.0.2.1/boot.ipxe\r\n"
    (root / "boot.txt").write_bytes(text)
    async with serving(root) as srv:
        rc, out = await run("tftp", "-m", "ascii", HOST, str(srv.port), "-c", "get",
                            "boot.txt", "got.txt", cwd=tmp_path)  # fmt: skip
        rec = await srv.record()
    assert rc == 0, out
    assert (tmp_path / "got.txt").read_bytes() == text  # the client undoes the CR LF
    assert rec.outcome == "ok"


async def test_missing_file_fails_the_client(root: Path, tmp_path: Path) -> None:
    need("curl")
    async with serving(root) as srv:
        rc, _ = await run("curl", "-sS", "-o", "got.bin", f"tftp://{HOST}:{srv.port}/nope",
                          cwd=tmp_path)  # fmt: skip
        rec = await srv.record()
    assert rc != 0
    assert (rec.outcome, rec.file, rec.bytes) == ("not_found", "nope", 0)


async def test_ipv6_loopback_with_curl(root: Path, tmp_path: Path) -> None:
    need("curl")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    async with serving(root, host="::1") as srv:
        rc, out = await run("curl", "-sS", "-o", "got.bin", "--tftp-blksize", "1468",
                            f"tftp://[::1]:{srv.port}/f.bin", cwd=tmp_path)  # fmt: skip
        rec = await srv.record()
    assert rc == 0, out
    assert sha256(tmp_path / "got.bin") == sha256(root / "f.bin")
    assert (rec.outcome, rec.ip) == ("ok", "::1")
