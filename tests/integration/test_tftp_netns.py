"""Port 69 on the wildcard address inside a network namespace of the test's own: every
transfer answers from the address its request was sent to (IP_PKTINFO), as clients that check
the server's address expect, and real clients fetch through it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

NS = f"rtf-t{os.getpid() % 100000}"

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, socket, sys
    from roost.tftp import codec
    from roost.tftp.resolver import DirectoryResolver
    from roost.tftp.server import TFTPServer

    async def ask(loop, ip):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind(("127.0.0.1", 0))  # so that a reply's default source would be 127.0.0.1
        await loop.sock_sendto(s, codec.encode(codec.Request(1, "f.bin", "octet")), (ip, 69))
        data, addr = await asyncio.wait_for(loop.sock_recvfrom(s, 2048), 5)
        await loop.sock_sendto(s, b"\\x00\\x04\\x00\\x01", addr)
        s.close()
        return [addr[0], len(codec.decode(data).data)]

    async def main():
        server = TFTPServer(DirectoryResolver(sys.argv[1]), host="0.0.0.0", port=69)
        await server.start()
        loop = asyncio.get_running_loop()
        try:
            answers = {ip: await ask(loop, ip) for ip in ("10.79.2.1", "127.0.0.1")}
            curl = await asyncio.create_subprocess_exec(
                "curl", "-sS", "-o", sys.argv[2], "tftp://10.79.2.1/f.bin")
            answers["curl"] = await curl.wait()
        finally:
            await server.stop()
        print(json.dumps(answers))

    asyncio.run(main())
    """
)


@pytest.fixture
def namespace() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace")
    if shutil.which("ip") is None or shutil.which("curl") is None:
        pytest.skip("needs iproute2 and curl")
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        subprocess.run(["ip", "-n", NS, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", NS, "addr", "add", "10.79.2.1/32", "dev", "lo"], check=True)
        yield NS
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def test_wildcard_listener_answers_from_the_address_asked(namespace: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(b"k" * 3000)
    out = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", SCRIPT, str(root),
         str(tmp_path / "got.bin")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    answers = json.loads(out.stdout.strip().splitlines()[-1])
    assert answers["10.79.2.1"] == ["10.79.2.1", 512]
    assert answers["127.0.0.1"] == ["127.0.0.1", 512]
    assert answers["curl"] == 0
    assert (tmp_path / "got.bin").read_bytes() == b"k" * 3000
