"""The ``wol`` power driver against a real sleeping machine: a namespace that brings its
address up only when it receives its magic packet (roost.testing.wakee)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from roost.power import load_driver
from roost.power.base import PowerState, RetryPolicy
from roost.power.errors import RetryableError
from roost.testing import netlab

pytestmark = pytest.mark.netns

PREFIX = "rwl"
SUBNET = "10.232.0.0/24"
MAC = "02:72:77:6c:00:01"
ADDR = "10.232.0.50"


@pytest.fixture(scope="module")
def lab() -> Iterator[netlab.Lab]:
    reason = netlab.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with netlab.lab(PREFIX, SUBNET, 0) as built:
        yield built


def _settings(lab: netlab.Lab, mac: str, ip: str) -> dict[str, object]:
    return {"mac": mac, "ip": ip, "interface": netlab.BRIDGE, "netns": lab.hub}


async def test_power_on_wakes_and_verifies(lab: netlab.Lab, api: httpx.AsyncClient) -> None:
    ns = lab.add_bare_host("wk", MAC)
    try:
        wakee = lab.python(ns, "roost.testing.wakee", "--mac", MAC, "--addr", f"{ADDR}/24")
        assert wakee.stdout is not None
        assert wakee.stdout.readline().strip() == b"listening"
        made = await api.post(
            "/api/v1/nodes",
            json={
                "mac": MAC,
                "power_driver": "wol",
                "power_settings": {**_settings(lab, MAC, ADDR), "password": "01:02:03:04:05:06"},
            },
        )
        assert made.status_code == 201, made.text
        assert made.json()["power"]["settings"]["password"] == "***"
        before = await api.post(f"/api/v1/nodes/{MAC}/power", json={"action": "status"})
        assert before.json()["state"] == "off"
        on = await api.post(f"/api/v1/nodes/{MAC}/power", json={"action": "on"})
        assert on.status_code == 200, on.text
        assert on.json()["state"] == "on"
        assert wakee.wait(10) == 0
        off = await api.post(f"/api/v1/nodes/{MAC}/power", json={"action": "off"})
        assert off.status_code >= 400 and "only wake" in off.json()["detail"]
    finally:
        lab.remove_ns(ns)


async def test_machine_that_never_answers_is_not_reported_on(lab: netlab.Lab) -> None:
    driver_cls = load_driver("wol")
    policy = RetryPolicy(attempts=2, backoff=0.1, verify_timeout=2.0, poll_interval=0.2)
    driver = driver_cls(_settings(lab, "02:72:77:6c:00:02", "10.232.0.51"), retry=policy)
    assert await driver.power_status() == PowerState.OFF
    with pytest.raises(RetryableError, match="did not reach on after 2 attempts"):
        await driver.power_on()


async def test_without_an_address_the_wake_is_sent_but_unverified(lab: netlab.Lab) -> None:
    driver = load_driver("wol")(
        {"mac": "02:72:77:6c:00:03", "interface": netlab.BRIDGE, "netns": lab.hub}
    )
    assert await driver.power_on() == PowerState.UNKNOWN
