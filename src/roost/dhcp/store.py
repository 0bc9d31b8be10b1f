"""Storage of the DHCP server: configuration CRUD with validation, and durable leases.

Leases are written in batches (``save_leases``: one upsert per batch, one transaction), which
is the group commit the service runs before it sends that batch's ACKs. Configuration writes
validate against everything already stored (:mod:`roost.dhcp.config`), so the API and any
other caller get the same messages.
"""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from roost.db import Database
from roost.dhcp.config import (
    Config,
    ReservationSpec,
    SubnetSpec,
    check_reservation,
    check_subnet,
    compile_config,
)
from roost.dhcp.leases import BOUND, Lease
from roost.dhcp.models import DHCPLeaseRow, DHCPReservationRow, DHCPSubnetRow
from roost.errors import Conflict, Invalid, NotFound

# -- configuration ----------------------------------------------------------------------------


async def list_subnets(db: Database) -> list[tuple[int, SubnetSpec]]:
    async with db.session() as s:
        rows = (await s.execute(select(DHCPSubnetRow).order_by(DHCPSubnetRow.id))).scalars()
        return [(r.id, SubnetSpec.model_validate(r.spec)) for r in rows]


async def list_reservations(db: Database) -> list[ReservationSpec]:
    async with db.session() as s:
        rows = (
            await s.execute(select(DHCPReservationRow).order_by(DHCPReservationRow.ip))
        ).scalars()
        return [ReservationSpec.model_validate(r.spec) for r in rows]


async def load_config(db: Database) -> Config:
    return compile_config(await list_subnets(db), await list_reservations(db))


async def put_subnet(db: Database, spec: SubnetSpec, create: bool) -> SubnetSpec:
    others = [s for _, s in await list_subnets(db)]
    exists = any(o.name == spec.name for o in others)
    if create and exists:
        raise Conflict(f"subnet {spec.name!r} exists; change it with PUT or pick another name")
    if not create and not exists:
        raise NotFound(f"no subnet {spec.name!r}; create it with POST first")
    check_subnet(spec, others)
    body = spec.model_dump(mode="json")
    async with db.session() as s:
        row = (
            await s.execute(select(DHCPSubnetRow).where(DHCPSubnetRow.name == spec.name))
        ).scalar_one_or_none()
        if row is None:
            s.add(DHCPSubnetRow(name=spec.name, spec=body))
        else:
            row.spec = body
    return spec


async def delete_subnet(db: Database, name: str) -> None:
    async with db.session() as s:
        res = await s.execute(delete(DHCPSubnetRow).where(DHCPSubnetRow.name == name))
        if not getattr(res, "rowcount", 0):
            raise NotFound(f"no subnet {name!r} (see `roost dhcp subnet list`)")


async def put_reservation(
    db: Database, spec: ReservationSpec, now: datetime | None = None
) -> ReservationSpec:
    subnets = [s for _, s in await list_subnets(db)]
    check_reservation(spec, subnets, await list_reservations(db))
    now = now or datetime.now(UTC)
    async with db.session() as s:
        lease = (
            await s.execute(select(DHCPLeaseRow).where(DHCPLeaseRow.ip == int(spec.ip)))
        ).scalar_one_or_none()
        if (
            lease is not None
            and lease.state == BOUND
            and lease.expires > now
            and lease.mac != spec.mac
        ):
            raise Invalid(
                f"{spec.ip} is leased to {lease.mac} until {lease.expires:%Y-%m-%d %H:%M:%S}Z; "
                "pick another address or wait until that lease ends"
            )
        row = await s.get(DHCPReservationRow, spec.mac)
        body = spec.model_dump(mode="json")
        if row is None:
            s.add(DHCPReservationRow(mac=spec.mac, ip=str(spec.ip), spec=body))
        else:
            row.ip, row.spec = str(spec.ip), body
    return spec


async def delete_reservation(db: Database, mac: str) -> None:
    async with db.session() as s:
        res = await s.execute(delete(DHCPReservationRow).where(DHCPReservationRow.mac == mac))
        if not getattr(res, "rowcount", 0):
            raise NotFound(f"no reservation for {mac} (see `roost dhcp reservation list`)")


# -- leases -----------------------------------------------------------------------------------


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _row(lease: Lease) -> dict[str, Any]:
    return {
        "ip": lease.ip,
        "address": str(IPv4Address(lease.ip)),
        "client": lease.client,
        "mac": lease.mac,
        "hostname": lease.hostname,
        "subnet_id": lease.subnet_id,
        "state": lease.state,
        "starts": _ts(lease.starts),
        "expires": _ts(lease.expires),
    }


async def save_leases(db: Database, leases: list[Lease]) -> None:
    """Upsert a batch of leases in one transaction (the group commit)."""
    if not leases:
        return
    rows = [_row(lease) for lease in leases]
    ins = pg_insert(DHCPLeaseRow) if db.dialect == "postgresql" else sqlite_insert(DHCPLeaseRow)
    stmt = ins.on_conflict_do_update(
        index_elements=[DHCPLeaseRow.ip],
        set_={c: ins.excluded[c] for c in rows[0] if c != "ip"},
    )
    async with db.session() as s:
        await s.execute(stmt, rows)


async def load_leases(db: Database) -> list[Lease]:
    async with db.session() as s:
        rows = (await s.execute(select(DHCPLeaseRow))).scalars()
        return [
            Lease(
                r.ip,
                r.client,
                r.mac,
                r.hostname,
                r.subnet_id,
                r.state,
                r.starts.timestamp(),
                r.expires.timestamp(),
            )
            for r in rows
        ]
