"""The real driver library behind the inventory's API: node power settings validated by the
driver's declaration, actions run through the driver (fake, and ipmi against ipmi_sim), the
state recorded and ``power.state.changed`` published, secrets never shown."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from roost.events import EventFilter
from roost.power.drivers import fake
from roost.service import Runtime
from roost.testing.ipmisim import IPMISim

MAC = "52:54:00:77:00:01"


@pytest.fixture(autouse=True)
def clean_fake() -> Iterator[None]:
    fake.reset()
    yield
    fake.reset()


async def test_fake_driver_through_the_api(api: httpx.AsyncClient, runtime: Runtime) -> None:
    bad = await api.post(
        "/api/v1/nodes",
        json={"mac": MAC, "power_driver": "fake", "power_settings": {"delay": "soon"}},
    )
    assert bad.status_code == 422 and "'delay'" in bad.json()["detail"]
    made = await api.post(
        "/api/v1/nodes",
        json={
            "mac": MAC,
            "power_driver": "fake",
            "power_settings": {"machine": "rpw-wired", "password": "pw-never-shown"},
        },
    )
    assert made.status_code == 201, made.text
    assert made.json()["power"]["settings"]["password"] == "***"
    for action, expected in (("on", "on"), ("status", "on"), ("cycle", "on"), ("off", "off")):
        resp = await api.post(f"/api/v1/nodes/{MAC}/power", json={"action": action})
        assert resp.status_code == 200, resp.text
        assert resp.json()["state"] == expected
    assert fake.MACHINES["rpw-wired"].state == "off"
    boot = await api.post(f"/api/v1/nodes/{MAC}/boot-device", json={"device": "pxe"})
    assert boot.status_code == 200 and fake.MACHINES["rpw-wired"].boot_device == "pxe"
    events = await runtime.bus.history(EventFilter(types=("power.state.changed",)))
    assert [(e.data["action"], e.data["to"]) for e in events] == [
        ("on", "on"),
        ("cycle", "on"),
        ("off", "off"),
    ]
    assert all(e.data["mac"] == MAC for e in events)


async def test_fatal_driver_error_is_a_502_without_retries(api: httpx.AsyncClient) -> None:
    await api.post(
        "/api/v1/nodes",
        json={
            "mac": MAC,
            "power_driver": "fake",
            "power_settings": {"machine": "rpw-locked", "fatal": True},
        },
    )
    resp = await api.post(f"/api/v1/nodes/{MAC}/power", json={"action": "on"})
    assert resp.status_code == 502 and "authentication failed" in resp.json()["detail"]
    assert fake.MACHINES["rpw-locked"].calls == ["on"]


@pytest.mark.slow
async def test_ipmi_node_powered_through_the_api(api: httpx.AsyncClient, ipmi_sim: IPMISim) -> None:
    made = await api.post(
        "/api/v1/nodes",
        json={
            "mac": MAC,
            "power_driver": "ipmi",
            "power_settings": {
                "host": "127.0.0.1",
                "port": ipmi_sim.port,
                "username": "admin",
                "password": "secret",
            },
        },
    )
    assert made.status_code == 201, made.text
    on = await api.post(f"/api/v1/nodes/{MAC}/power", json={"action": "on"})
    assert on.status_code == 200 and on.json()["state"] == "on"
    assert ipmi_sim.node_pid() is not None
    off = await api.post(f"/api/v1/nodes/{MAC}/power", json={"action": "off"})
    assert off.status_code == 200 and off.json()["state"] == "off"
    assert ipmi_sim.node_pid() is None
    shown = (await api.get(f"/api/v1/nodes/{MAC}")).json()["power"]
    assert shown["settings"]["password"] == "***" and shown["state"] == "off"
