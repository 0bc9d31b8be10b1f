"""Retry-and-verify in the driver base class, exercised through the shipped fake driver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from roost.power import (
    BootDevice,
    FatalError,
    PowerAction,
    PowerState,
    RetryableError,
    RetryPolicy,
)
from roost.power.drivers import fake
from roost.power.drivers.fake import FakeDriver

pytestmark = pytest.mark.unit


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    fake.reset()
    yield
    fake.reset()


@pytest.fixture
def t() -> FakeTime:
    return FakeTime()


def make(t: FakeTime, attempts: int = 3, **settings: Any) -> FakeDriver:
    policy = RetryPolicy(
        attempts=attempts,
        backoff=1,
        backoff_max=4,
        verify_timeout=5,
        poll_interval=1,
        sleep=t.sleep,
        clock=t.clock,
    )
    return FakeDriver({"machine": "m1", **settings}, retry=policy)


async def test_power_on_is_verified_by_status(t: FakeTime) -> None:
    d = make(t)
    assert await d.power_on() == PowerState.ON
    assert fake.MACHINES["m1"].calls == ["on", "status"]
    assert await d.power_status() == PowerState.ON


async def test_slow_device_is_polled_until_it_reports_the_state(t: FakeTime) -> None:
    d = make(t, delay=3.0)
    assert await d.power_on() == PowerState.ON
    assert fake.MACHINES["m1"].calls == ["on", "status", "status", "status", "status"]
    assert t.sleeps == [0.0, 1, 1, 1]


async def test_retryable_errors_are_retried_with_backoff(t: FakeTime) -> None:
    d = make(t, attempts=4, fail_times=3)
    assert await d.power_off() == PowerState.OFF
    assert fake.MACHINES["m1"].calls == ["off", "off", "off", "off", "status"]
    assert t.sleeps == [0.0, 1, 2, 4]


async def test_retryable_errors_give_up_after_the_attempts(t: FakeTime) -> None:
    d = make(t, attempts=2, fail_times=5)
    with pytest.raises(RetryableError, match="did not reach on after 2 attempts"):
        await d.power_on()
    assert fake.MACHINES["m1"].calls == ["on", "on"]


async def test_fatal_errors_are_never_retried(t: FakeTime) -> None:
    d = make(t, attempts=5, fatal=True)
    with pytest.raises(FatalError, match="authentication failed"):
        await d.power_on()
    assert fake.MACHINES["m1"].calls == ["on"]
    with pytest.raises(FatalError):
        await d.power_status()
    with pytest.raises(FatalError):
        await d.set_boot_device(BootDevice.PXE)
    assert fake.MACHINES["m1"].calls == ["on", "status", "boot pxe"]


async def test_dropped_command_is_sent_again_after_verification_fails(t: FakeTime) -> None:
    d = make(t, ignore_commands=1)
    assert await d.power_on() == PowerState.ON
    calls = fake.MACHINES["m1"].calls
    assert calls.count("on") == 2
    # the first attempt polled status for the whole verify timeout (5 s at 1 s) before resending
    assert calls[: calls.index("on", 1)] == ["on"] + ["status"] * 6


async def test_never_reaching_the_state_raises_with_the_last_state(t: FakeTime) -> None:
    d = make(t, attempts=2, ignore_commands=2)
    with pytest.raises(RetryableError, match=r"did not reach on after 2 attempts \(last: off\)"):
        await d.power_on()


async def test_status_retries_then_answers(t: FakeTime) -> None:
    d = make(t, fail_times=2)
    assert await d.power_status() == PowerState.OFF
    assert fake.MACHINES["m1"].calls == ["status"] * 3


async def test_cycle_ends_on_and_boot_device_is_set(t: FakeTime) -> None:
    d = make(t, initial_state="on")
    await d.set_boot_device(BootDevice.PXE)
    assert await d.power_cycle() == PowerState.ON
    assert fake.MACHINES["m1"].boot_device == BootDevice.PXE
    assert fake.MACHINES["m1"].calls[:2] == ["boot pxe", "cycle"]


async def test_state_is_shared_by_instances_for_the_same_machine(t: FakeTime) -> None:
    await make(t).power_on()
    assert await make(t).power_status() == PowerState.ON
    assert await FakeDriver({"machine": "other"}).power_status() == PowerState.OFF


def test_backoff_is_capped() -> None:
    p = RetryPolicy(backoff=1, backoff_max=4)
    assert [p.delay(n) for n in range(1, 7)] == [0, 1, 2, 4, 4, 4]


def test_repr_hides_secrets() -> None:
    d = FakeDriver({"password": "hunter2"})
    assert "hunter2" not in repr(d)
    assert "'password': '***'" in repr(d)


async def test_perform_runs_the_verb_by_name(t: FakeTime) -> None:
    d = make(t)
    assert await d.perform("on") == PowerState.ON
    assert await d.perform(PowerAction.STATUS) == PowerState.ON
    assert await d.perform("cycle") == PowerState.ON
    assert await d.perform("off") == PowerState.OFF
    assert fake.MACHINES["m1"].calls == [
        "on",
        "status",
        "status",
        "cycle",
        "status",
        "off",
        "status",
    ]
    with pytest.raises(ValueError, match="'reboot' is not a valid PowerAction"):
        await d.perform("reboot")
