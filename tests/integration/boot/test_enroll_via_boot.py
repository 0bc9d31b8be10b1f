"""Commissioning enrollment through the boot server: the rendered command line carries a
one-time enrollment token for that MAC only; posting the facts with it makes the node
``ready``; the token cannot be spent twice or for another machine. Real curl as the client."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from roost.boot.enrollment import enroller
from roost.boot.service import BootService
from roost.events import EventFilter
from roost.service import Runtime

from .conftest import curl, curl_exit

MAC, OTHER = "52:54:00:e0:00:01", "52:54:00:e0:00:02"
PROFILE = {
    "kernel": "vmlinuz",
    "initrds": ["initrd.img"],
    "cmdline": "console=ttyS0 roost.callback={{ enroll_url }} roost.token={{ token }}",
}


@pytest.fixture
async def enrolling_boot(runtime: Runtime) -> AsyncIterator[str]:
    runtime.settings.boot = runtime.settings.boot.model_copy(
        update={"enabled": True, "host": "127.0.0.1", "http_port": 0, "import_ipxe": False}
    )
    svc = BootService(runtime, enroll=enroller(runtime))
    await svc.start()
    try:
        assert svc.address is not None
        yield f"http://127.0.0.1:{svc.address[1]}"
    finally:
        await svc.stop()


async def _command_line(boot_url: str, mac: str) -> tuple[str, str]:
    script = await curl(f"{boot_url}/boot/{mac}.ipxe")
    found = re.search(r"roost\.callback=(\S+) roost\.token=(\S+)", script)
    assert found, script
    return found[1], found[2]


async def _post(url: str, facts: dict[str, object]) -> tuple[str, str]:
    status, out, err = await curl_exit(
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        json.dumps(facts),
        url,
    )
    assert status == 0, err
    body, _, code = out.rpartition("\n")
    return code, body


async def test_node_enrolls_with_its_facts_and_becomes_ready(
    enrolling_boot: str, api: httpx.AsyncClient, runtime: Runtime
) -> None:
    assert (await api.put("/api/v1/boot/profiles/commission", json=PROFILE)).status_code == 201
    await api.post("/api/v1/boot/rules", json={"profile": "commission"})
    callback, token = await _command_line(enrolling_boot, MAC)
    assert callback == f"{enrolling_boot}/boot/enroll"
    facts = {"mac": MAC, "cpu": {"count": 2}, "memory_bytes": 1 << 30}
    code, body = await _post(f"{callback}/{token}", facts)
    assert code == "200" and json.loads(body)["enrolled"] is True
    node = (await api.get(f"/api/v1/nodes/{MAC}")).json()
    assert node["state"] == "ready"
    assert node["facts"]["cpu"] == {"count": 2}
    changes = await runtime.bus.history(EventFilter(types=("node.state.changed",)))
    assert [(e.data["from"], e.data["to"]) for e in changes if e.data["mac"] == MAC][-2:] == [
        ("discovered", "enrolling"),
        ("enrolling", "ready"),
    ]
    again, _ = await _post(f"{callback}/{token}", facts)
    assert again == "403"


async def test_token_of_one_machine_does_not_enroll_another(
    enrolling_boot: str, api: httpx.AsyncClient
) -> None:
    await api.put("/api/v1/boot/profiles/commission", json=PROFILE)
    await api.post("/api/v1/boot/rules", json={"profile": "commission"})
    callback, token = await _command_line(enrolling_boot, OTHER)
    code, _ = await _post(f"{callback}/{token}", {"mac": MAC})
    assert code == "403"
    missing_mac, _ = await _post(f"{callback}/{token}", {"cpu": 1})
    assert missing_mac == "400"
    assert (await api.get(f"/api/v1/nodes/{MAC}")).status_code == 404
