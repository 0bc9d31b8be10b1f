"""MAC vendor (OUI) lookup, offline, through aiooui's packaged IEEE table.

aiooui ships the IEEE MA-L registry as a compact sorted binary file that it memory-maps, so a
lookup is a binary search with no start-up parse and no network (the comparison with manuf,
mac-vendor-lookup and Debian's ieee-data is in docs/dependencies.md). Locally administered
addresses (bit 1 of the first octet, IEEE 802 §8.2.2) belong to no vendor: VMs, containers
and randomised Wi-Fi MACs carry them, so they are reported as such instead of looked up.
"""

from __future__ import annotations

import aiooui

LOCAL = "(locally administered)"


async def load() -> None:
    """Map the table (once; in a worker thread, so the event loop never blocks on it)."""
    await aiooui.async_load()


def vendor(mac: str) -> str | None:
    """The registered vendor of ``mac`` (``aa:bb:cc:…``), :data:`LOCAL`, or ``None``."""
    try:
        first = int(mac[:2], 16)
    except ValueError:
        return None
    if first & 0x02:
        return LOCAL
    if not aiooui.is_loaded():
        return None
    return aiooui.get_vendor(mac)
