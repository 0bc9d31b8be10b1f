"""When Roost serves DHCP on the site, a minted token goes to, and is spent from, only the
address Roost leased to the MAC.

In process rather than against ``roost serve``: a real DHCP exchange would need a network
namespace. The DHCP service is the real class, not started (no socket); its lease table, which
the enrollment policy reads, holds the lease a DHCP exchange would have made. The boot server
is real and listens on loopback; curl-like requests come from 127.0.0.1."""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from roost.boot.enrollment import enroller
from roost.boot.service import BootService
from roost.dhcp.leases import BOUND, Lease
from roost.dhcp.service import DHCPService
from roost.events import EventFilter
from roost.service import Runtime

MAC = "52:54:00:1e:00:01"
PROFILE = {"kernel": "vmlinuz", "cmdline": "t={{ token }} b={{ boot_token }}"}


def lease(dhcp: DHCPService, ip: str) -> None:
    now = time.time()
    addr = int(ipaddress.IPv4Address(ip))
    dhcp.leases.by_ip.clear()
    dhcp.leases.by_client.clear()
    client = b"\x01" + bytes.fromhex(MAC.replace(":", ""))
    dhcp.leases.put(Lease(addr, client, MAC, "", 1, BOUND, now, now + 600), durable=False)


@pytest.fixture
async def boot_with_dhcp(runtime: Runtime) -> AsyncIterator[tuple[str, DHCPService]]:
    runtime.settings.boot = runtime.settings.boot.model_copy(
        update={"enabled": True, "host": "127.0.0.1", "http_port": 0, "import_ipxe": False}
    )
    dhcp = DHCPService(runtime)
    runtime.services.append(dhcp)
    svc = BootService(runtime, enroll=enroller(runtime))
    await svc.start()
    try:
        assert svc.address is not None
        yield f"http://127.0.0.1:{svc.address[1]}", dhcp
    finally:
        await svc.stop()
        runtime.services.remove(dhcp)


async def test_tokens_only_for_and_from_the_leased_address(
    boot_with_dhcp: tuple[str, DHCPService], api: httpx.AsyncClient, runtime: Runtime
) -> None:
    url, dhcp = boot_with_dhcp
    assert (await api.put("/api/v1/boot/profiles/c", json=PROFILE)).status_code == 201
    await api.post("/api/v1/boot/rules", json={"profile": "c"})
    async with httpx.AsyncClient(base_url=url) as boot:
        lease(dhcp, "10.9.9.9")  # the MAC's lease is elsewhere: this client is not that node
        script = (await boot.get(f"/boot/{MAC}.ipxe")).text
        assert re.search(r"t= b=\s", script), script
        lease(dhcp, "127.0.0.1")
        script = (await boot.get(f"/boot/{MAC}.ipxe")).text
        token = re.search(r"t=(rnroll_\S+) b=\S+", script)
        assert token, script
        lease(dhcp, "10.9.9.9")  # the lease moved before the token was spent
        facts = {"mac": MAC, "cpus": 1}
        refused = await boot.post(f"/boot/enroll/{token[1]}", json=facts)
        assert refused.status_code == 403
        reasons = await runtime.bus.history(EventFilter(types=("enroll.refused",)))
        assert "has the lease 10.9.9.9" in reasons[-1].data["reason"]
        lease(dhcp, "127.0.0.1")
        done = await boot.post(f"/boot/enroll/{token[1]}", json=facts)
        assert done.status_code == 200, done.text
    assert (await api.get(f"/api/v1/nodes/{MAC}")).json()["state"] == "ready"
