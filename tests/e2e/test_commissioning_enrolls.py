"""The commissioning guest enrolls: the image boots under QEMU in the lab, gets a lease from
busybox udhcpd, and — with ``roost.callback`` pointing at a real ``roost serve``'s enroll
endpoint and ``roost.token`` holding a one-time enrollment token — POSTs its facts there, so
its node reaches ``ready`` with those facts. Nothing in the image is specific to this test."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from roost.db import Database
from roost.inventory.lookup import node_brief
from roost.inventory.models import NodeRow
from roost.lab import image, qemu
from roost.lab.runner import Lab
from roost.pki.tokens import issue_enrollment_token

pytestmark = [pytest.mark.vm, pytest.mark.netns, pytest.mark.slow]

ROOST = str(Path(sys.executable).with_name("roost"))
PORT = 8440


async def _issue(url: str, mac: str) -> str:
    db = Database(url)
    await db.open()
    try:
        return await issue_enrollment_token(db, mac=mac, ttl=900)
    finally:
        await db.close()


async def _ready_node(url: str, mac: str, wait: float) -> NodeRow | None:
    """The node once it is ready, read from the server's database like a second process."""
    db = Database(url)
    await db.open()
    try:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            brief = await node_brief(db, mac)
            if brief is not None and brief.state == "ready":
                async with db.session() as s:
                    return await s.get(NodeRow, brief.id)
            await asyncio.sleep(0.5)
        return None
    finally:
        await db.close()


def _wait_file(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.2)
    return False


def test_commissioning_guest_enrolls_and_becomes_ready(
    lab: Lab, commissioning: image.CommissioningImage, tmp_path: Path
) -> None:
    srv, server_ip = lab.topo.server_ns, lab.topo.server_ip
    lo, hi = lab.topo.pool()
    conf = tmp_path / "udhcpd.conf"
    conf.write_text(
        f"start {lo}\nend {hi}\ninterface lab0\nlease_file {tmp_path / 'leases'}\n"
        "option subnet 255.255.255.0\noption lease 600\n"
    )
    (tmp_path / "leases").touch()
    lab.spawn("udhcpd", ["busybox", "udhcpd", "-f", str(conf)], srv, tmp_path / "udhcpd.log")
    data = tmp_path / "roost"
    serve_log = tmp_path / "serve.log"
    lab.spawn(
        "roost",
        [ROOST, "serve", "--host", server_ip, "--port", str(PORT), "--data-dir", str(data)],
        srv,
        serve_log,
    )
    assert _wait_file(data / "client.toml", 60), serve_log.read_text()[-3000:]

    url = f"sqlite+aiosqlite:///{data / 'roost.db'}"  # shared with the server (WAL)
    spec = qemu.GuestSpec(
        index=1, nic="e1000", kernel=commissioning.kernel, initrd=commissioning.initrd
    )
    token = asyncio.run(_issue(url, spec.mac_address))
    callback = f"http://{server_ip}:{PORT}/api/v1/enroll"
    guest = lab.start_guest(replace(spec, append=image.cmdline(callback, token)))
    node = asyncio.run(_ready_node(url, spec.mac_address, wait=240))
    console_log = Path(guest.console_log)
    assert node is not None, (
        f"no ready node; console:\n{console_log.read_text(errors='replace')[-3000:]}\n"
        f"server:\n{serve_log.read_text()[-2000:]}"
    )
    assert node.facts["cpu"]["count"] == 1
    assert node.facts["disks"][0]["name"] == "vda"
    assert node.facts["nics"] == [{"name": "eth0", "mac": spec.mac_address}]
    assert node.ip is not None and node.ip.startswith("10.99.0.")
    # The image saw a 200 from the enroll endpoint and powered off by itself.
    assert lab.wait_exit(guest, timeout=60), "QEMU still runs after the callback"
    assert "ROOST: callback ok" in console_log.read_text(errors="replace")
