"""Power wiring and secrets at rest: a node's power settings are validated by its driver's
declaration, the secret ones sealed in the database, shown as ``***`` and never returned or
logged; power actions reach the driver with the real secret and publish events.

Most tests put a recording driver behind the adapter's one seam
(``roost.inventory.power.library``), to assert exactly which settings a driver received;
the last test runs the real ``roost.power`` library and its ``fake`` driver end to end.
"""

from __future__ import annotations

import logging

import httpx
import pytest
from sqlalchemy import text

import roost.power.drivers.fake as fake
from roost.events import EventFilter
from roost.inventory import power
from roost.service import Runtime
from tests.integration.nodes_support import POWER_LIBRARY, RecordingDriver

MAC = "52:54:00:00:02:0a"
SECRET = "s3cret-BMC-pw-7f1e"
SETTINGS = {"host": "10.0.0.100", "username": "admin", "password": SECRET}


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> type[RecordingDriver]:
    monkeypatch.setattr(power, "library", POWER_LIBRARY)
    RecordingDriver.calls = []
    RecordingDriver.state = "off"
    RecordingDriver.fail = False
    return RecordingDriver


async def _everything_visible(api: httpx.AsyncClient) -> str:
    """Every response an operator can get about nodes, concatenated."""
    parts = []
    for path in (
        "/api/v1/nodes",
        f"/api/v1/nodes/{MAC}",
        f"/api/v1/nodes/{MAC}/history",
        "/api/v1/nodes/export",
        "/api/v1/nodes/export?format=csv",
        "/api/v1/events/history?tail=1000",
    ):
        resp = await api.get(path)
        assert resp.status_code == 200, (path, resp.text)
        parts.append(resp.text)
    return "\n".join(parts)


async def test_secrets_are_sealed_masked_and_never_logged(
    api: httpx.AsyncClient,
    runtime: Runtime,
    recording: type[RecordingDriver],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    made = await api.post(
        "/api/v1/nodes", json={"mac": MAC, "power_driver": "recording", "power_settings": SETTINGS}
    )
    assert made.status_code == 201, made.text
    assert made.json()["power"] == {
        "driver": "recording",
        "settings": {"host": "10.0.0.100", "username": "admin", "password": "***"},
        "state": None,
    }
    assert SECRET not in made.text
    on = await api.post(f"/api/v1/nodes/{MAC}/power", json={"action": "on"})
    assert on.status_code == 200 and on.json()["state"] == "on"
    assert recording.calls == [("on", SETTINGS)]
    # Re-import what export shows ("***"): the stored secret survives.
    exported = (await api.get("/api/v1/nodes/export")).json()
    assert (await api.post("/api/v1/nodes/import", json=exported)).status_code == 200
    # A new host gets the password only when it is given again with it.
    moved = {"host": "10.0.0.101"}
    patched = await api.patch(f"/api/v1/nodes/{MAC}", json={"power_settings": moved})
    assert patched.status_code == 422 and "'password'" in patched.json()["detail"]
    moved["password"] = SECRET
    patched = await api.patch(f"/api/v1/nodes/{MAC}", json={"power_settings": moved})
    assert patched.status_code == 200, patched.text
    await api.post(f"/api/v1/nodes/{MAC}/power", json={"action": "cycle"})
    assert recording.calls[-1] == ("cycle", {**SETTINGS, "host": "10.0.0.101"})
    assert SECRET not in await _everything_visible(api)
    async with runtime.db.session() as s:
        stored = (await s.execute(text("SELECT power_settings, power_secrets FROM nodes"))).one()
    assert SECRET not in str(stored) and str(stored[1]).startswith("v1:")
    assert SECRET not in caplog.text
    recording.fail = True
    failed = await api.post(f"/api/v1/nodes/{MAC}/power", json={"action": "on"})
    assert failed.status_code == 502 and "did not answer" in failed.json()["detail"]
    assert SECRET not in failed.text
    # The capture really holds Roost's and the database driver's log lines, secret-free.
    assert {"roost.inventory.power", "roost.secrets"} <= {r.name for r in caplog.records}
    assert SECRET not in caplog.text


async def test_power_actions_publish_events(
    api: httpx.AsyncClient, runtime: Runtime, recording: type[RecordingDriver]
) -> None:
    await api.post(
        "/api/v1/nodes", json={"mac": MAC, "power_driver": "recording", "power_settings": SETTINGS}
    )
    for action, expected in (("status", "off"), ("status", "off"), ("on", "on"), ("off", "off")):
        resp = await api.post(f"/api/v1/nodes/{MAC}/power", json={"action": action})
        assert resp.json()["state"] == expected
    boot = await api.post(f"/api/v1/nodes/{MAC}/boot-device", json={"device": "pxe"})
    assert boot.status_code == 200 and recording.calls[-1][0] == "boot:pxe"
    events = await runtime.bus.history(EventFilter(types=("power.",)))
    assert [
        (e.type, e.data.get("action"), e.data.get("from"), e.data.get("to")) for e in events
    ] == [
        ("power.state.changed", "status", None, "off"),
        ("power.state.changed", "on", "off", "on"),
        ("power.state.changed", "off", "on", "off"),
        ("power.boot_device.changed", None, None, None),
    ]
    assert all(e.data["mac"] == MAC for e in events)
    assert (await api.get(f"/api/v1/nodes/{MAC}")).json()["power"]["state"] == "off"


async def test_driver_declaration_validates_settings(
    api: httpx.AsyncClient, recording: type[RecordingDriver]
) -> None:
    resp = await api.post(
        "/api/v1/nodes",
        json={"mac": MAC, "power_driver": "recording", "power_settings": {"host": "h"}},
    )
    assert resp.status_code == 422 and "missing settings" in resp.json()["detail"]
    no_driver = await api.post("/api/v1/nodes", json={"mac": MAC})
    assert no_driver.status_code == 201
    resp = await api.post(f"/api/v1/nodes/{MAC}/power", json={"action": "on"})
    assert resp.status_code == 422 and "has no power driver" in resp.json()["detail"]
    bad = await api.post(f"/api/v1/nodes/{MAC}/power", json={"action": "explode"})
    assert bad.status_code == 422 and "body action" in bad.json()["detail"]


async def test_missing_driver_is_a_precise_422(api: httpx.AsyncClient) -> None:
    resp = await api.post(
        "/api/v1/nodes",
        json={"mac": MAC, "power_driver": "no-such-driver", "power_settings": {"a": "b"}},
    )
    assert resp.status_code == 422
    assert "not installed" in resp.json()["detail"]


async def test_with_the_power_library_fake_driver(
    api: httpx.AsyncClient, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.reset()
    settings = {"machine": "rnd-n1", "password": SECRET, "fail_times": "1"}
    made = await api.post(
        "/api/v1/nodes", json={"mac": MAC, "power_driver": "fake", "power_settings": settings}
    )
    assert made.status_code == 201, made.text
    shown = made.json()["power"]["settings"]
    assert shown["password"] == "***" and shown["fail_times"] == 1  # CLI text became an int
    on = await api.post(f"/api/v1/nodes/{MAC}/power", json={"action": "on"})
    assert on.status_code == 200 and on.json()["state"] == "on", on.text
    boot = await api.post(f"/api/v1/nodes/{MAC}/boot-device", json={"device": "pxe"})
    assert boot.status_code == 200, boot.text
    assert str(fake.MACHINES["rnd-n1"].boot_device.value) == "pxe"
    events = await runtime.bus.history(EventFilter(types=("power.state.changed",)))
    assert events[-1].data["to"] == "on"
    assert SECRET not in await _everything_visible(api)
    assert SECRET not in caplog.text
