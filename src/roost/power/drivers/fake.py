"""An in-memory power driver, shipped as a real plugin (Ironic's ``fake`` idea).

It lets the whole pipeline (inventory, API, CLI, events) run without hardware, and gives the
retry-and-verify loop a device whose misbehaviour tests can dial in: ``fail_times`` retryable
failures before it answers, ``fatal`` to fail like a BMC refusing credentials,
``ignore_commands`` accepted-but-dropped commands (as real BMCs sometimes do), and ``delay``
seconds before a change shows in the status. Machines live in the process-wide ``MACHINES``
table keyed by the ``machine`` setting, so every driver instance built for the same node sees
the same power state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from roost.power.base import BootDevice, PowerDriver, PowerState
from roost.power.errors import FatalError, RetryableError
from roost.power.spec import SettingSpec


@dataclass
class FakeMachine:
    state: PowerState = PowerState.OFF
    boot_device: BootDevice = BootDevice.DISK
    pending: PowerState | None = None
    pending_at: float = 0.0
    calls: list[str] = field(default_factory=list)
    """Every primitive the machine received, in order (``on``, ``off``, ``status``, ...)."""


MACHINES: dict[str, FakeMachine] = {}


def reset() -> None:
    """Forget every fake machine (tests)."""
    MACHINES.clear()


class FakeDriver(PowerDriver):
    name = "fake"
    SETTINGS = (
        SettingSpec("machine", str, default="default", help="name of the simulated machine"),
        SettingSpec(
            "initial_state",
            str,
            default="off",
            choices=("on", "off"),
            help="power state of the machine the first time it is used",
        ),
        SettingSpec(
            "delay", float, default=0.0, help="seconds before a power change shows in the status"
        ),
        SettingSpec(
            "fail_times", int, default=0, help="the next N calls fail with a retryable error"
        ),
        SettingSpec(
            "ignore_commands",
            int,
            default=0,
            help="the next N power commands are accepted but not carried out",
        ),
        SettingSpec(
            "fatal", bool, default=False, help="every call fails as if the credentials were wrong"
        ),
        SettingSpec(
            "password", str, secret=True, help="ignored; lets tests check that secrets are redacted"
        ),
    )
    STATE_MAP: ClassVar[dict[str, PowerState]] = {"on": PowerState.ON, "off": PowerState.OFF}
    """Native states to ``PowerState`` (the fake's native states are already Roost's)."""

    @property
    def machine(self) -> FakeMachine:
        key = self.settings["machine"]
        if key not in MACHINES:
            MACHINES[key] = FakeMachine(state=self.STATE_MAP[self.settings["initial_state"]])
        return MACHINES[key]

    def _enter(self, call: str) -> FakeMachine:
        m = self.machine
        m.calls.append(call)
        if self.settings["fatal"]:
            raise FatalError(f"fake machine {self.settings['machine']!r}: authentication failed")
        if self.settings["fail_times"] > 0:
            self.settings["fail_times"] -= 1
            raise RetryableError(f"fake machine {self.settings['machine']!r}: timed out")
        if m.pending is not None and self.retry.clock() >= m.pending_at:
            m.state, m.pending = m.pending, None
        return m

    def _command(self, call: str, target: PowerState) -> None:
        m = self._enter(call)
        if self.settings["ignore_commands"] > 0:
            self.settings["ignore_commands"] -= 1
            return
        if self.settings["delay"] > 0:
            m.pending, m.pending_at = target, self.retry.clock() + self.settings["delay"]
        else:
            m.state, m.pending = target, None

    async def _on(self) -> None:
        self._command("on", PowerState.ON)

    async def _off(self) -> None:
        self._command("off", PowerState.OFF)

    async def _cycle(self) -> None:
        # A hard reset: the machine ends up on whatever state it was in.
        self._command("cycle", PowerState.ON)

    async def _status(self) -> PowerState:
        return self._enter("status").state

    async def _set_boot_device(self, device: BootDevice) -> None:
        self._enter(f"boot {device}").boot_device = device
