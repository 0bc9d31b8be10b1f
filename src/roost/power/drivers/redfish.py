"""Redfish (DMTF DSP0266) power control through sushy, OpenStack Ironic's Redfish client.

sushy is synchronous (requests), so each primitive runs in a worker thread. The driver
connects lazily on first use and keeps the ``System`` resource, refreshing it before each
status read. sushy's own server-side retries are turned off: the base class retries, and
two nested retry loops would multiply the waiting. Power actions use
``ComputerSystem.Reset`` (DSP2046 ``ResetType``); the boot device is a
``BootSourceOverrideTarget`` that applies to the next boot unless ``boot_persistent``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from roost.power.base import BootDevice, PowerDriver, PowerState, RetryPolicy
from roost.power.errors import FatalError, RetryableError
from roost.power.spec import SettingSpec

T = TypeVar("T")

POWER_STATE_MAP: dict[str, PowerState] = {
    "On": PowerState.ON,
    "Off": PowerState.OFF,
    # Transitional states are neither: verification keeps polling until the BMC settles.
    "PoweringOn": PowerState.UNKNOWN,
    "PoweringOff": PowerState.UNKNOWN,
}
"""Redfish ``ComputerSystem.PowerState`` values to ``PowerState``."""

BOOT_SOURCE_MAP: dict[BootDevice, str] = {BootDevice.PXE: "Pxe", BootDevice.DISK: "Hdd"}
"""``BootDevice`` to Redfish ``BootSourceOverrideTarget`` values."""

CYCLE_PREFERENCE = ("ForceRestart", "PowerCycle")
"""Reset types that hard-reset a running system, best first; a BMC advertises its own set."""


class RedfishDriver(PowerDriver):
    name = "redfish"
    SETTINGS = (
        SettingSpec(
            "address",
            str,
            required=True,
            target=True,
            help="BMC base URL, e.g. https://10.0.0.5 (the /redfish/v1 root is added)",
        ),
        SettingSpec("username", str, required=True, help="BMC user name"),
        SettingSpec("password", str, required=True, secret=True, help="BMC password"),
        SettingSpec(
            "system_id", str, help="ComputerSystem path or id (default: the BMC's only system)"
        ),
        SettingSpec("verify_tls", bool, default=True, help="check the BMC's TLS certificate"),
        SettingSpec("timeout", float, default=30.0, help="seconds per HTTP request"),
        SettingSpec(
            "boot_persistent",
            bool,
            default=False,
            help="keep the boot device for every boot rather than the next one only",
        ),
    )
    RETRY: ClassVar[RetryPolicy] = RetryPolicy(attempts=3, verify_timeout=60, poll_interval=1)

    def __init__(self, settings: Any, *, retry: RetryPolicy | None = None) -> None:
        super().__init__(settings, retry=retry)
        self._system: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        import sushy
        from sushy import auth

        s = self.settings
        root = sushy.Sushy(
            s["address"].rstrip("/") + "/redfish/v1",
            auth=auth.BasicAuth(s["username"], s["password"]),
            verify=s["verify_tls"],
            read_timeout=s["timeout"],
            server_side_retries=0,
        )
        system_id = s["system_id"]
        if system_id and not system_id.startswith("/"):
            system_id = root.get_system_collection().path.rstrip("/") + "/" + system_id
        return root.get_system(system_id or None)

    def _call_sync(self, fn: Callable[[Any], T]) -> T:
        from sushy import exceptions as sx

        where = f"Redfish BMC {self.settings['address']}"
        with self._lock:
            try:
                if self._system is None:
                    self._system = self._connect()
                return fn(self._system)
            except (
                sx.AccessError,
                sx.BadRequestError,
                sx.ResourceNotFoundError,
                sx.UnknownDefaultError,
                sx.InvalidParameterValueError,
                sx.MissingActionError,
            ) as exc:
                self._system = None
                raise FatalError(f"{where}: {exc}") from exc
            except (sx.SushyError, OSError) as exc:
                self._system = None
                raise RetryableError(f"{where}: {exc}") from exc

    async def _call(self, fn: Callable[[Any], T]) -> T:
        return await asyncio.to_thread(self._call_sync, fn)

    @staticmethod
    def _reset(system: Any, reset_type: str) -> None:
        import sushy

        system.reset_system(sushy.ResetType(reset_type))

    async def _on(self) -> None:
        await self._call(lambda s: self._reset(s, "On"))

    async def _off(self) -> None:
        await self._call(lambda s: self._reset(s, "ForceOff"))

    async def _cycle(self) -> None:
        def cycle(system: Any) -> bool:
            system.refresh()
            if POWER_STATE_MAP.get(system.power_state.value) == PowerState.OFF:
                self._reset(system, "On")
                return True
            allowed = {v.value for v in system.get_allowed_reset_system_values()}
            for reset_type in CYCLE_PREFERENCE:
                if reset_type in allowed:
                    self._reset(system, reset_type)
                    return True
            return False

        if not await self._call(cycle):
            await super()._cycle()

    async def _status(self) -> PowerState:
        def status(system: Any) -> str:
            system.refresh()
            return str(system.power_state.value) if system.power_state else ""

        return POWER_STATE_MAP.get(await self._call(status), PowerState.UNKNOWN)

    async def _set_boot_device(self, device: BootDevice) -> None:
        import sushy

        target = sushy.BootSource(BOOT_SOURCE_MAP[device])
        enabled = (
            sushy.BootSourceOverrideEnabled.CONTINUOUS
            if self.settings["boot_persistent"]
            else sushy.BootSourceOverrideEnabled.ONCE
        )
        await self._call(lambda s: s.set_system_boot_options(target, enabled=enabled))
