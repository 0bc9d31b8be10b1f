"""The power driver interface and the retry-and-verify loop every driver inherits.

Theory of operation. Callers use the public verbs (``power_on``, ``power_off``,
``power_cycle``, ``power_status``, ``set_boot_device``); drivers implement only the
underscored primitives (``_on``, ``_off``, ``_cycle``, ``_status``, ``_set_boot_device``),
each of which talks to the device once and translates the device's errors into
``RetryableError`` or ``FatalError``. The base class (a template method, as in MAAS) then:

1. runs the primitive; a ``RetryableError`` is retried after an exponential backoff, up to
   ``RetryPolicy.attempts`` times; a ``FatalError`` (bad credentials, bad settings) is raised
   at once and never retried;
2. verifies: polls ``_status`` until the device reports the state the action should reach,
   for at most ``RetryPolicy.verify_timeout`` seconds; a device that never gets there has the
   action sent again (the next attempt), because BMCs do drop commands;
3. returns the verified state, or raises ``RetryableError`` naming the last state seen.

Each driver translates its native states through a table (``POWER_STATE_MAP``, as in
Ironic); anything not in the table is ``PowerState.UNKNOWN``, which never counts as reached.
Constructors do no I/O: drivers connect lazily inside the primitives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from roost.power.errors import FatalError, RetryableError, UnsupportedError
from roost.power.spec import SettingSpec, redact, validate_settings

log = logging.getLogger(__name__)

T = TypeVar("T")


class PowerState(StrEnum):
    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"


class BootDevice(StrEnum):
    PXE = "pxe"
    DISK = "disk"


class PowerAction(StrEnum):
    """The verbs of ``roost node power NODE on|off|cycle|status``."""

    ON = "on"
    OFF = "off"
    CYCLE = "cycle"
    STATUS = "status"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the base class tries; time is injectable so tests never wait on a clock."""

    attempts: int = 3
    """How many times an action is sent before giving up (retryable errors and failed
    verifications both use one attempt)."""
    backoff: float = 1.0
    """Seconds before the second attempt; doubles each time up to ``backoff_max``."""
    backoff_max: float = 10.0
    verify_timeout: float = 30.0
    """Seconds to wait for the device to report the expected state after an action."""
    poll_interval: float = 1.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    def delay(self, attempt: int) -> float:
        """Backoff before attempt number ``attempt`` (1-based; the first has none)."""
        return 0.0 if attempt <= 1 else min(self.backoff * 2 ** (attempt - 2), self.backoff_max)


class PowerDriver(ABC):
    """Base of every power driver; subclasses set ``name`` and ``SETTINGS``."""

    name: ClassVar[str]
    SETTINGS: ClassVar[tuple[SettingSpec, ...]]
    RETRY: ClassVar[RetryPolicy] = RetryPolicy()
    """Default policy of the driver; an instance may get its own through the constructor."""

    def __init__(self, settings: Mapping[str, Any], *, retry: RetryPolicy | None = None) -> None:
        # Validating here (cheap, no I/O) means a driver never runs with settings its
        # declaration does not allow, whoever built it.
        self.settings: dict[str, Any] = validate_settings(type(self), settings)
        self.retry = retry or self.RETRY

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {redact(type(self), self.settings)}>"

    # -- the primitives drivers implement (one device round trip each) -------------------

    @abstractmethod
    async def _on(self) -> None: ...

    @abstractmethod
    async def _off(self) -> None: ...

    @abstractmethod
    async def _status(self) -> PowerState: ...

    async def _cycle(self) -> None:
        """Hard reset; the default powers off, waits for off, then powers on."""
        await self._off()
        if self._can_verify():
            await self._wait_for(PowerState.OFF)
        await self._on()

    async def _set_boot_device(self, device: BootDevice) -> None:
        raise UnsupportedError(f"the {self.name} driver cannot set the boot device")

    def _can_verify(self) -> bool:
        """Whether ``_status`` can tell on from off (a webhook without a status call cannot)."""
        return True

    # -- the verbs callers use -----------------------------------------------------------

    async def power_on(self) -> PowerState:
        return await self._act("power on", self._on, PowerState.ON)

    async def power_off(self) -> PowerState:
        return await self._act("power off", self._off, PowerState.OFF)

    async def power_cycle(self) -> PowerState:
        return await self._act("power cycle", self._cycle, PowerState.ON)

    async def power_status(self) -> PowerState:
        return await self._retrying("power status", self._status)

    async def set_boot_device(self, device: BootDevice) -> None:
        device = BootDevice(device)
        await self._retrying(f"set boot device {device}", lambda: self._set_boot_device(device))

    async def perform(self, action: PowerAction | str) -> PowerState:
        """Run one of the CLI/API verbs by name; returns the (verified) state."""
        verbs = {
            PowerAction.ON: self.power_on,
            PowerAction.OFF: self.power_off,
            PowerAction.CYCLE: self.power_cycle,
            PowerAction.STATUS: self.power_status,
        }
        return await verbs[PowerAction(action)]()

    # -- the loop ------------------------------------------------------------------------

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        policy = self.retry
        for attempt in range(1, policy.attempts + 1):
            await policy.sleep(policy.delay(attempt))
            try:
                return await call()
            except FatalError:
                raise
            except RetryableError as exc:
                log.warning(
                    "%s: %s failed (attempt %d/%d): %s",
                    self.name,
                    what,
                    attempt,
                    policy.attempts,
                    exc,
                )
                if attempt == policy.attempts:
                    raise
        raise AssertionError("unreachable: attempts >= 1")

    async def _act(
        self, what: str, call: Callable[[], Awaitable[None]], expect: PowerState
    ) -> PowerState:
        policy = self.retry
        last: PowerState | str = "not checked"
        for attempt in range(1, policy.attempts + 1):
            await policy.sleep(policy.delay(attempt))
            try:
                await call()
                if not self._can_verify():
                    return PowerState.UNKNOWN
                last = await self._wait_for(expect)
                if last == expect:
                    return last
                log.warning(
                    "%s: %s sent but state is %s after %.0f s (attempt %d/%d)",
                    self.name,
                    what,
                    last,
                    policy.verify_timeout,
                    attempt,
                    policy.attempts,
                )
            except FatalError:
                raise
            except RetryableError as exc:
                last = f"error: {exc}"
                log.warning(
                    "%s: %s failed (attempt %d/%d): %s",
                    self.name,
                    what,
                    attempt,
                    policy.attempts,
                    exc,
                )
        raise RetryableError(
            f"{self.name}: {what} did not reach {expect!s} after {policy.attempts} attempts "
            f"(last: {last})"
        )

    async def _wait_for(self, expect: PowerState) -> PowerState:
        """Poll ``_status`` until it reports ``expect`` or the verify timeout passes.

        A status call that fails with a retryable error counts as "not yet": BMCs often stop
        answering for a moment while they switch power.
        """
        policy = self.retry
        deadline = policy.clock() + policy.verify_timeout
        state = PowerState.UNKNOWN
        while True:
            try:
                state = await self._status()
            except RetryableError as exc:
                log.debug("%s: status failed while waiting for %s: %s", self.name, expect, exc)
                state = PowerState.UNKNOWN
            if state == expect or policy.clock() >= deadline:
                return state
            await policy.sleep(policy.poll_interval)
