"""The IPMI driver against ipmi_sim, whose chassis control starts and stops a real process."""

from __future__ import annotations

import asyncio
import socket

import pytest

from roost.power import BootDevice, FatalError, PowerState, RetryableError, RetryPolicy
from roost.power.drivers import ipmi
from roost.power.drivers.ipmi import IPMIDriver
from roost.testing.ipmisim import IPMISim

from .conftest import free_port

pytestmark = pytest.mark.slow

FAST = RetryPolicy(attempts=2, backoff=0.1, verify_timeout=10, poll_interval=0.2)


def driver(sim: IPMISim, **over: object) -> IPMIDriver:
    settings = {
        "host": "127.0.0.1",
        "port": sim.port,
        "username": "admin",
        "password": "secret",
        **over,
    }
    return IPMIDriver(settings, retry=FAST)


async def test_power_on_off_really_starts_and_stops_the_machine(ipmi_sim: IPMISim) -> None:
    d = driver(ipmi_sim)
    await d.power_off()
    assert ipmi_sim.node_pid() is None
    assert await d.power_on() == PowerState.ON
    pid = ipmi_sim.node_pid()
    assert pid is not None
    # the reference client agrees
    assert "Chassis Power is on" in ipmi_sim.ipmitool("chassis", "power", "status").stdout
    assert await d.power_status() == PowerState.ON
    assert await d.power_off() == PowerState.OFF
    assert ipmi_sim.node_pid() is None
    assert "Chassis Power is off" in ipmi_sim.ipmitool("chassis", "power", "status").stdout


async def test_cycle_replaces_the_running_machine(ipmi_sim: IPMISim) -> None:
    d = driver(ipmi_sim)
    await d.power_on()
    before = ipmi_sim.node_pid()
    assert await d.power_cycle() == PowerState.ON
    after = ipmi_sim.node_pid()
    assert before is not None and after is not None and after != before
    assert "0x20 set reset 1" in ipmi_sim.calls()
    await d.power_off()
    # cycling a machine that is off powers it on
    assert await d.power_cycle() == PowerState.ON
    assert ipmi_sim.node_pid() is not None
    await d.power_off()


async def test_boot_device_reaches_the_chassis(ipmi_sim: IPMISim) -> None:
    d = driver(ipmi_sim)
    await d.set_boot_device(BootDevice.PXE)
    assert ipmi_sim.calls()[-1] == "0x20 set boot pxe"
    await d.set_boot_device(BootDevice.DISK)
    assert ipmi_sim.calls()[-1] == "0x20 set boot default"


async def test_status_seen_by_ipmitool_changes_is_read(ipmi_sim: IPMISim) -> None:
    d = driver(ipmi_sim)
    assert ipmi_sim.ipmitool("chassis", "power", "on").returncode == 0
    assert await d.power_status() == PowerState.ON
    assert ipmi_sim.ipmitool("chassis", "power", "off").returncode == 0
    assert await d.power_status() == PowerState.OFF


async def test_wrong_password_is_fatal_and_not_retried(ipmi_sim: IPMISim) -> None:
    d = driver(ipmi_sim, password="wrong")
    calls = len(ipmi_sim.calls())
    with pytest.raises(FatalError, match="Incorrect password"):
        await d.power_on()
    assert len(ipmi_sim.calls()) == calls  # nothing reached the chassis


async def test_concurrent_calls_share_one_session(ipmi_sim: IPMISim) -> None:
    states = await asyncio.gather(*(driver(ipmi_sim).power_status() for _ in range(5)))
    assert len(set(states)) == 1 and states[0] in (PowerState.ON, PowerState.OFF)
    sessions = [key for key in ipmi._sessions if key[:2] == ("127.0.0.1", ipmi_sim.port)]
    assert len(sessions) == 1


async def test_unreachable_bmc_is_retryable() -> None:
    d = IPMIDriver(
        {
            "host": "127.0.0.1",
            "port": free_port(socket.SOCK_DGRAM),
            "username": "admin",
            "password": "secret",
        },
        retry=RetryPolicy(attempts=1, verify_timeout=1),
    )
    with pytest.raises(RetryableError, match="no answer"):
        await d.power_status()
