"""IPMI 2.0 (RMCP+) power control through pyghmi, which speaks the protocol itself.

pyghmi is synchronous and keeps its own I/O thread, so each primitive runs in a worker
thread. One pyghmi ``Command`` (one RMCP+ session) is kept per BMC and credentials and reused,
which saves the RAKP handshake on every call. pyghmi 1.6 never forgets a session in its
``initting_sessions`` table, and hangs when a second ``Command`` for the same BMC and
credentials finds it there; the driver drops that entry before it opens a new session. Calls on one
session are serialised by a lock. Authentication failures (RAKP refusals, IPMI completion
codes for privilege) are fatal; timeouts and dropped sessions are retryable, and a dropped
session is forgotten so the next attempt logs in again.
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

POWER_STATE_MAP: dict[str, PowerState] = {"on": PowerState.ON, "off": PowerState.OFF}
"""pyghmi's ``powerstate`` values (IPMI Get Chassis Status, byte 1 bit 0) to ``PowerState``."""

BOOT_DEVICE_MAP: dict[BootDevice, str] = {BootDevice.PXE: "network", BootDevice.DISK: "hd"}
"""``BootDevice`` to pyghmi ``set_bootdev`` names (IPMI boot options parameter 5)."""

FATAL_MARKERS = ("password", "unauthorized", "privilege", "rakp", "kg", "insufficient")
"""Words in pyghmi's messages that mean the BMC refused who we are; retrying cannot help."""

_sessions: dict[tuple[Any, ...], Any] = {}
_locks: dict[tuple[Any, ...], threading.Lock] = {}
_table_lock = threading.Lock()


class IPMIDriver(PowerDriver):
    name = "ipmi"
    SETTINGS = (
        SettingSpec("host", str, required=True, target=True, help="BMC address (name or IP)"),
        SettingSpec("port", int, default=623, help="BMC UDP port (RMCP)"),
        SettingSpec("username", str, default="", help="BMC user name (empty: anonymous)"),
        SettingSpec("password", str, required=True, secret=True, help="BMC password"),
        SettingSpec("kg", str, secret=True, help="BMC key (K_g) for two-key RMCP+ login"),
        SettingSpec(
            "boot_persistent",
            bool,
            default=False,
            help="keep the boot device for every boot rather than the next one only",
        ),
    )
    RETRY: ClassVar[RetryPolicy] = RetryPolicy(attempts=3, verify_timeout=30, poll_interval=1)

    @property
    def _key(self) -> tuple[Any, ...]:
        s = self.settings
        return (s["host"], s["port"], s["username"], s["password"], s["kg"])

    def _call_sync(self, fn: Callable[[Any], T]) -> T:
        from pyghmi.exceptions import IpmiException, PyghmiException
        from pyghmi.ipmi import command
        from pyghmi.ipmi.private import session

        key = self._key
        with _table_lock:
            lock = _locks.setdefault(key, threading.Lock())
        with lock:
            try:
                cmd = _sessions.get(key)
                if cmd is None or cmd.ipmi_session.broken:
                    s = self.settings
                    session.Session.initting_sessions.pop(
                        (s["host"], s["username"], s["password"], s["port"], s["kg"] or None), None
                    )
                    cmd = command.Command(
                        bmc=s["host"],
                        port=s["port"],
                        userid=s["username"],
                        password=s["password"],
                        kg=s["kg"] or None,
                    )
                    _sessions[key] = cmd
                return fn(cmd)
            except (IpmiException, PyghmiException, OSError) as exc:
                _sessions.pop(key, None)
                where = f"BMC {self.settings['host']}:{self.settings['port']}"
                text = str(exc) if str(exc) not in ("", "None") else "no answer (timeout)"
                if isinstance(exc, IpmiException) and any(m in text.lower() for m in FATAL_MARKERS):
                    raise FatalError(f"{where}: {text}") from exc
                raise RetryableError(f"{where}: {text}") from exc

    async def _call(self, fn: Callable[[Any], T]) -> T:
        return await asyncio.to_thread(self._call_sync, fn)

    async def _on(self) -> None:
        await self._call(lambda c: c.set_power("on"))

    async def _off(self) -> None:
        # Chassis Control "power down" (hard off): power off must work on a hung machine.
        await self._call(lambda c: c.set_power("off"))

    async def _cycle(self) -> None:
        # pyghmi's "boot": power up when off, hard reset when on (IPMI chassis control 0x03).
        await self._call(lambda c: c.set_power("boot"))

    async def _status(self) -> PowerState:
        answer = await self._call(lambda c: c.get_power())
        return POWER_STATE_MAP.get(str(answer.get("powerstate")), PowerState.UNKNOWN)

    async def _set_boot_device(self, device: BootDevice) -> None:
        name, persist = BOOT_DEVICE_MAP[device], self.settings["boot_persistent"]
        await self._call(lambda c: c.set_bootdev(name, persist=persist))
