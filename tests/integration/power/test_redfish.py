"""The Redfish driver against sushy-emulator (fake driver, Basic auth) on loopback."""

from __future__ import annotations

import httpx
import pytest

from roost.power import BootDevice, FatalError, PowerState, RetryPolicy
from roost.power.drivers.redfish import RedfishDriver

from .conftest import Emulator

pytestmark = pytest.mark.slow

FAST = RetryPolicy(attempts=2, backoff=0.1, verify_timeout=15, poll_interval=0.2)
SYSTEM = "00000000-0000-0000-0000-000000000001"


def driver(emu: Emulator, **over: object) -> RedfishDriver:
    settings = {
        "address": emu.url,
        "username": "admin",
        "password": emu.password,
        "system_id": SYSTEM,
        "timeout": 5.0,
        **over,
    }
    return RedfishDriver(settings, retry=FAST)


def system_json(emu: Emulator, system: str = SYSTEM) -> dict[str, object]:
    r = httpx.get(f"{emu.url}/redfish/v1/Systems/{system}", auth=("admin", emu.password))
    r.raise_for_status()
    data: dict[str, object] = r.json()
    return data


async def test_power_on_is_verified_against_the_emulator(sushy_emulator: Emulator) -> None:
    d = driver(sushy_emulator)
    assert await d.power_status() == PowerState.OFF
    assert await d.power_on() == PowerState.ON
    assert system_json(sushy_emulator)["PowerState"] == "On"
    assert await d.power_off() == PowerState.OFF
    assert system_json(sushy_emulator)["PowerState"] == "Off"


async def test_cycle_from_off_and_from_on(sushy_emulator: Emulator) -> None:
    d = driver(sushy_emulator, system_id="00000000-0000-0000-0000-000000000002")
    assert await d.power_cycle() == PowerState.ON
    assert await d.power_cycle() == PowerState.ON
    await d.power_off()


async def test_boot_device_override(sushy_emulator: Emulator) -> None:
    # The emulator stores BootSourceOverrideTarget but always reports
    # BootSourceOverrideEnabled "Continuous" (sushy-tools main.py ignores it), so only the
    # target can be checked here.
    d = driver(sushy_emulator)
    await d.set_boot_device(BootDevice.PXE)
    boot = system_json(sushy_emulator)["Boot"]
    assert isinstance(boot, dict) and boot["BootSourceOverrideTarget"] == "Pxe"
    await driver(sushy_emulator, boot_persistent=True).set_boot_device(BootDevice.DISK)
    boot = system_json(sushy_emulator)["Boot"]
    assert isinstance(boot, dict) and boot["BootSourceOverrideTarget"] == "Hdd"


async def test_wrong_password_is_fatal(sushy_emulator: Emulator) -> None:
    with pytest.raises(FatalError, match=r"401|[Aa]ccess|[Uu]nauthori"):
        await driver(sushy_emulator, password="wrong").power_status()


async def test_unknown_system_is_fatal(sushy_emulator: Emulator) -> None:
    with pytest.raises(FatalError, match=r"404|not found|NotFound"):
        await driver(sushy_emulator, system_id="no-such-system").power_on()


async def test_several_systems_need_a_system_id(sushy_emulator: Emulator) -> None:
    with pytest.raises(FatalError, match="exactly one"):
        await driver(sushy_emulator, system_id=None).power_status()
