"""Wake-on-LAN as a power driver, for machines with no BMC at all.

It can only wake: ``power on`` sends the magic packet through discovery's :func:`wake`, and the
base class verifies it by polling :meth:`_status`, which asks the machine by ARP (and ping)
whether it is up. Without an ``ip`` there is nothing to ask, so the result is ``unknown``
(MAAS does the same). ``power off`` and boot-device changes are not possible over WoL and say
so as fatal, non-retried errors. A machine that does not answer within the probe window is
reported ``off``: on its own layer-2 segment a running machine answers ARP, firewall or not.
"""

from __future__ import annotations

import threading

from roost.discovery.netns import run_in_thread
from roost.discovery.wol import WakeError, wake, watch
from roost.power.base import PowerDriver, PowerState
from roost.power.errors import FatalError, RetryableError, UnsupportedError
from roost.power.spec import SettingSpec

PROBE_SECONDS = 1.5
"""How long one status probe waits for an ARP or ICMP answer."""


class WOLDriver(PowerDriver):
    name = "wol"
    SETTINGS = (
        SettingSpec("mac", str, required=True, help="MAC address of the NIC to wake"),
        SettingSpec("ip", str, help="the machine's address once up; enables verification"),
        SettingSpec("interface", str, help="interface to send from (raw Ethernet and ARP)"),
        SettingSpec(
            "broadcast",
            str,
            default="255.255.255.255",
            target=True,
            help="broadcast or directed broadcast",
        ),
        SettingSpec("port", int, default=9, help="UDP port of the magic packet"),
        SettingSpec("password", str, secret=True, help="SecureOn password, if the NIC has one"),
        SettingSpec("netns", str, help="network namespace to act from (labs and tests)"),
    )

    async def _on(self) -> None:
        s = self.settings
        try:
            await wake(
                s["mac"],
                ip=s.get("ip"),
                broadcast=s.get("broadcast"),
                port=s["port"],
                interface=s.get("interface"),
                netns=s.get("netns"),
                password=s.get("password"),
                confirm=False,
            )
        except WakeError as exc:
            raise FatalError(f"wol: {exc}") from None
        except OSError as exc:
            raise RetryableError(f"wol: sending the magic packet failed: {exc}") from None

    async def _off(self) -> None:
        raise UnsupportedError("Wake-on-LAN can only wake a machine, not power it off")

    async def _status(self) -> PowerState:
        s = self.settings
        if not s.get("ip"):
            return PowerState.UNKNOWN
        try:
            via = await run_in_thread(
                s.get("netns"),
                lambda: watch(
                    s["mac"],
                    s["ip"],
                    interface=s.get("interface"),
                    timeout=PROBE_SECONDS,
                    stop=threading.Event(),
                ),
            )
        except OSError as exc:
            raise RetryableError(f"wol: probing {s['ip']} failed: {exc}") from None
        return PowerState.ON if via else PowerState.OFF

    def _can_verify(self) -> bool:
        return bool(self.settings.get("ip"))
