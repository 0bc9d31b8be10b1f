"""Each guest's way through the boot chain, read from Roost's event stream.

Pure: :meth:`Board.apply` takes an event (as the API streams it) and the seconds since the
guests started, and moves the guest whose MAC the event names. Steps, in chain order:

    lease     dhcp.lease.bound (or .renewed)        (the firmware's, the first one)
    tftp      boot.tftp.transfer                    (iPXE binary; BIOS iPXE ROMs skip it)
    script    boot.http.fetch of /boot/<mac>.ipxe
    kernel    boot.http.fetch of the profile's kernel
    initrd    boot.http.fetch of the profile's initrd
    callback  boot.callback                         (the commissioning image's facts)
    enroll    node.enrolled                         (its one-time token spent: node ready)

:meth:`Board.failure` names the first step a guest never reached, for ``roost demo --once``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STEPS = ("lease", "tftp", "script", "kernel", "initrd", "callback", "enroll")


@dataclass
class GuestProgress:
    index: int
    mac: str
    firmware: str
    needs_tftp: bool
    """False for guests whose NIC ROM is iPXE: their firmware goes straight to HTTP."""
    times: dict[str, float] = field(default_factory=dict)
    detail: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> tuple[str, ...]:
        return STEPS if self.needs_tftp else tuple(s for s in STEPS if s != "tftp")

    @property
    def done(self) -> bool:
        return self.missing() is None

    def missing(self) -> str | None:
        return next((s for s in self.steps if s not in self.times), None)

    def mark(self, step: str, t: float, detail: str = "") -> None:
        if step not in self.times:
            self.times[step] = t
            if detail:
                self.detail[step] = detail


def _ok(data: dict[str, Any]) -> bool:
    status = data.get("status")
    outcome = data.get("outcome")
    return (status is None or 200 <= int(status) < 300) and outcome in (None, "ok")


class Board:
    """All guests of a demo, keyed by MAC; the kernel and initrd names tell fetches apart."""

    def __init__(self, guests: list[GuestProgress], kernel: str, initrd: str) -> None:
        self.guests = {g.mac.lower(): g for g in guests}
        self.kernel = kernel
        self.initrd = initrd
        self.by_ip: dict[str, str] = {}
        """Leased address → MAC, for events that know only the client's address."""

    def apply(self, event: dict[str, Any], t: float) -> GuestProgress | None:
        data = event.get("data") or {}
        ip = str(data.get("ip") or "")
        mac = str(data.get("mac") or "").lower() or self.by_ip.get(ip, "")
        guest = self.guests.get(mac)
        if guest is None:
            return None
        kind = event.get("type", "")
        if kind in ("dhcp.lease.bound", "dhcp.lease.renewed"):
            if ip:
                self.by_ip[ip] = mac
            guest.mark("lease", t, str(data.get("ip") or ""))
        elif kind == "boot.tftp.transfer" and _ok(data):
            guest.mark("tftp", t, str(data.get("file") or ""))
        elif kind == "boot.http.fetch" and _ok(data):
            path = str(data.get("path") or "")
            if path.startswith("/boot/") and ".ipxe" in path:
                guest.mark("script", t, path)
            elif path.rsplit("/", 1)[-1] == self.kernel:
                guest.mark("kernel", t, _size(data))
            elif path.rsplit("/", 1)[-1] == self.initrd:
                guest.mark("initrd", t, _size(data))
        elif kind == "boot.callback":
            facts = data.get("facts")
            guest.facts = facts if isinstance(facts, dict) else {}
            guest.mark("callback", t, summary(guest.facts))
        elif kind == "node.enrolled":
            guest.mark("enroll", t, f"node {data.get('node')}")
        else:
            return None
        return guest

    @property
    def all_done(self) -> bool:
        return all(g.done for g in self.guests.values())

    def failures(self) -> list[str]:
        """One line per guest that did not enroll, naming the step it never reached."""
        out = []
        for g in sorted(self.guests.values(), key=lambda g: g.index):
            step = g.missing()
            if step is not None:
                last = max(g.times, key=lambda s: g.times[s]) if g.times else None
                after = (
                    f" (last: {last} at {g.times[last]:.1f} s)" if last else " (no event at all)"
                )
                out.append(f"guest {g.index} ({g.firmware}, {g.mac}): no {step}{after}")
        return out


def _size(data: dict[str, Any]) -> str:
    size = data.get("bytes")
    return f"{int(size) / 2**20:.1f} MiB" if isinstance(size, int) else ""


def summary(facts: dict[str, Any]) -> str:
    """``1 CPU, 368 MiB, vda 8 GiB`` from the commissioning image's facts."""
    cpu = facts.get("cpu") or {}
    parts = []
    if isinstance(cpu, dict) and cpu.get("count"):
        parts.append(f"{cpu['count']} CPU")
    mem = facts.get("memory_bytes")
    if isinstance(mem, int):
        parts.append(f"{mem // 2**20} MiB")
    for disk in facts.get("disks") or []:
        if isinstance(disk, dict) and isinstance(disk.get("size_bytes"), int):
            parts.append(f"{disk.get('name')} {disk['size_bytes'] / 2**30:.0f} GiB")
    return ", ".join(parts)
