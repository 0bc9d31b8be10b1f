"""How scan results change the stored view, and which events those changes are.

Each function runs inside the caller's transaction and returns the events to publish once
it has committed (write first, then tell). Host identity is the MAC: a known MAC at a new
address, or a known address answered by a new MAC, is ``discovery.host.changed``; a MAC
never seen (or seen again after it was gone) is ``discovery.host.found``; a host that missed
``gone_after`` complete sweeps of its subnet is ``discovery.host.gone``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from roost.discovery import oui, services
from roost.discovery.models import HostRow, PortRow

Pending = list[tuple[str, str, dict[str, Any]]]
"""Events to publish after commit: ``(type, subject, data)``."""


def host_data(row: HostRow, **extra: Any) -> dict[str, Any]:
    return {"mac": row.mac, "ip": row.ip, "vendor": row.vendor, "source": row.source, **extra}


async def observe(
    s: AsyncSession, site: str, mac: str, ip: str | None, source: str, now: datetime
) -> Pending:
    """Record that ``mac`` was seen (at ``ip`` when known)."""
    events: Pending = []
    row = (
        await s.execute(select(HostRow).where(HostRow.site == site, HostRow.mac == mac))
    ).scalar()
    if ip is not None:
        holders = (
            await s.execute(
                select(HostRow).where(HostRow.site == site, HostRow.ip == ip, HostRow.mac != mac)
            )
        ).scalars()
        for other in holders:  # the address moved to another MAC (a swapped NIC or machine)
            other.ip = None
            events.append(
                (
                    "discovery.host.changed",
                    mac,
                    {
                        "mac": mac,
                        "ip": ip,
                        "old_mac": other.mac,
                        "vendor": oui.vendor(mac),
                        "source": source,
                    },
                )
            )
    if row is None:
        row = HostRow(
            site=site,
            mac=mac,
            ip=ip,
            vendor=oui.vendor(mac),
            source=source,
            first_seen=now,
            last_seen=now,
            missed=0,
            gone=False,
        )
        s.add(row)
        events.insert(0, ("discovery.host.found", mac, host_data(row)))
        return events
    old_ip = row.ip
    row.last_seen, row.missed, row.source = now, 0, source
    if row.gone:
        row.gone = False
        row.ip = ip or row.ip
        events.insert(0, ("discovery.host.found", mac, host_data(row, returned=True)))
    elif ip is not None and old_ip != ip:
        row.ip = ip
        events.insert(0, ("discovery.host.changed", mac, host_data(row, old_ip=old_ip)))
    return events


async def sweep_done(
    s: AsyncSession,
    site: str,
    nets: Sequence[IPv4Network],
    answered: Iterable[str],
    gone_after: int,
    now: datetime,
) -> Pending:
    """After a complete sweep of ``nets``: count a miss for each silent host; retire the gone."""
    heard = set(answered)
    events: Pending = []
    rows = (
        await s.execute(select(HostRow).where(HostRow.site == site, HostRow.gone.is_(False)))
    ).scalars()
    for row in rows:
        if row.ip is None or row.mac in heard:
            continue
        if not any(IPv4Address(row.ip) in n for n in nets):
            continue
        row.missed += 1
        if row.missed >= gone_after:
            row.gone = True
            events.append(
                (
                    "discovery.host.gone",
                    row.mac,
                    host_data(row, last_seen=row.last_seen.isoformat()),
                )
            )
    return events


async def record_ports(
    s: AsyncSession,
    site: str,
    scan_id: int,
    protocol: str,
    ips: Sequence[str],
    ports: Sequence[int],
    results: dict[tuple[str, int], str],
    now: datetime,
    complete: bool = True,
) -> None:
    """Update the port history with one scan's results over ``ips`` by ``ports``.

    ``results`` holds every port the scan did not find closed (or, for UDP, every outcome);
    a port that was open before and is absent from ``results`` is now closed.
    """
    scanned = set(ports)
    existing = {
        (r.ip, r.port): r
        for r in (
            await s.execute(
                select(PortRow).where(
                    PortRow.site == site, PortRow.protocol == protocol, PortRow.ip.in_(list(ips))
                )
            )
        ).scalars()
        if r.port in scanned
    }
    for (ip, port), state in results.items():
        row = existing.pop((ip, port), None)
        if row is None:
            svc = services.lookup(port, protocol)
            row = PortRow(
                site=site, ip=ip, protocol=protocol, port=port, service=svc.name if svc else None
            )
            s.add(row)
        row.state, row.last_scan_id, row.updated_at = state, scan_id, now
        if state == "open":
            row.first_seen_open = row.first_seen_open or now
            row.last_seen_open = now
    for row in existing.values() if complete else ():
        if row.state != "closed":
            row.state, row.last_scan_id, row.updated_at = "closed", scan_id, now
