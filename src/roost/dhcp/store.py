"""Storage of the DHCP server: configuration CRUD with validation, and durable leases.

Leases are written in batches (``save_leases``: one upsert per batch, one transaction), which
is the group commit the service runs before it sends that batch's ACKs. Configuration writes
validate against everything already stored (:mod:`roost.dhcp.config`), so the API and any
other caller get the same messages.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url

from roost.auth import Principal
from roost.db import Database
from roost.dhcp.codec import ip_str
from roost.dhcp.config import (
    Config,
    ReservationSpec,
    SubnetSpec,
    check_reservation,
    check_subnet,
    compile_config,
    site_of_address,
)
from roost.dhcp.leases import Lease
from roost.dhcp.models import DHCPLeaseRow, DHCPReservationRow, DHCPSubnetRow
from roost.errors import Conflict, NotFound
from roost.files import SQLITE_SIDECARS, private_file

# -- configuration ----------------------------------------------------------------------------
#
# ``who`` is the calling token (None: Roost itself, which sees everything). A subnet outside its
# scope answers as a missing one would, and checks against it name nothing of it.


def _subnet(row: DHCPSubnetRow) -> SubnetSpec:
    return SubnetSpec.model_validate({**row.spec, "site": row.site})


async def list_subnets(db: Database) -> list[tuple[int, SubnetSpec]]:
    async with db.session() as s:
        rows = (await s.execute(select(DHCPSubnetRow).order_by(DHCPSubnetRow.id))).scalars()
        return [(r.id, _subnet(r)) for r in rows]


async def list_reservations(db: Database) -> list[ReservationSpec]:
    async with db.session() as s:
        rows = (
            await s.execute(select(DHCPReservationRow).order_by(DHCPReservationRow.ip))
        ).scalars()
        return [ReservationSpec.model_validate(r.spec) for r in rows]


async def load_config(db: Database) -> Config:
    return compile_config(await list_subnets(db), await list_reservations(db))


def _sees(who: Principal | None, site: str | None) -> bool:
    return who is None or who.sees(site)


async def put_subnet(
    db: Database, spec: SubnetSpec, create: bool, who: Principal | None = None
) -> SubnetSpec:
    """Store a subnet whose site is decided (the caller's business: see roost.api.dhcp)."""
    stored = [s for _, s in await list_subnets(db)]
    seen = [o for o in stored if _sees(who, o.site)]
    if create and any(o.name == spec.name for o in stored):
        raise Conflict(f"subnet {spec.name!r} exists; change it with PUT or pick another name")
    if not create and not any(o.name == spec.name for o in seen):
        raise NotFound(f"no subnet {spec.name!r}; create it with POST first")
    check_subnet(spec, seen, [o for o in stored if not _sees(who, o.site)])
    body = spec.model_dump(mode="json", exclude={"site"})
    async with db.session() as s:
        row = (
            await s.execute(select(DHCPSubnetRow).where(DHCPSubnetRow.name == spec.name))
        ).scalar_one_or_none()
        if row is None:
            s.add(DHCPSubnetRow(name=spec.name, site=spec.site, spec=body))
        else:
            row.site, row.spec = spec.site, body
    return spec


async def delete_subnet(db: Database, name: str, who: Principal | None = None) -> str | None:
    """Delete a subnet; return its site. Its reservations stay, global until a subnet covers
    their addresses again."""
    async with db.session() as s:
        row = (
            await s.execute(select(DHCPSubnetRow).where(DHCPSubnetRow.name == name))
        ).scalar_one_or_none()
        if row is None or not _sees(who, row.site):
            raise NotFound(f"no subnet {name!r} (see `roost dhcp subnet list`)")
        site = row.site
        await s.delete(row)
    return site


async def put_reservation(
    db: Database,
    spec: ReservationSpec,
    leases: list[Lease],
    now: float,
    who: Principal | None = None,
) -> str | None:
    """Store a reservation after checking it against subnets, reservations and ``leases``;
    return its site (its subnet's). A scoped token reserves only on its sites' subnets."""
    subnets = [s for _, s in await list_subnets(db)]
    seen = [s for s in subnets if _sees(who, s.site)]
    async with db.session() as s:
        row = await s.get(DHCPReservationRow, spec.mac)
        if row is not None and not _sees(who, site_of_address(IPv4Address(row.ip), subnets)):
            # the MAC is the key: one reservation per client, whichever site holds it
            raise Conflict(f"{spec.mac} is reserved on a subnet this token cannot see")
    check_reservation(spec, seen, await list_reservations(db), leases, now)
    async with db.session() as s:
        row = await s.get(DHCPReservationRow, spec.mac)
        body = spec.model_dump(mode="json")
        if row is None:
            s.add(DHCPReservationRow(mac=spec.mac, ip=str(spec.ip), spec=body))
        else:
            row.ip, row.spec = str(spec.ip), body
    return site_of_address(spec.ip, seen)


async def delete_reservation(db: Database, mac: str, who: Principal | None = None) -> str | None:
    """Delete a reservation; return the site it had."""
    subnets = [s for _, s in await list_subnets(db)]
    async with db.session() as s:
        row = await s.get(DHCPReservationRow, mac)
        site = site_of_address(IPv4Address(row.ip), subnets) if row is not None else None
        if row is None or not _sees(who, site):
            raise NotFound(f"no reservation for {mac} (see `roost dhcp reservation list`)")
        await s.delete(row)
    return site


# -- leases -----------------------------------------------------------------------------------


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _row(lease: Lease) -> dict[str, Any]:
    return {
        "ip": lease.ip,
        "address": ip_str(lease.ip),
        "client": lease.client,
        "mac": lease.mac,
        "hostname": lease.hostname,
        "subnet_id": lease.subnet_id,
        "state": lease.state,
        "starts": _ts(lease.starts),
        "expires": _ts(lease.expires),
    }


_SQLITE_SCHEMA = """CREATE TABLE IF NOT EXISTS dhcp_leases (
    ip INTEGER PRIMARY KEY, address TEXT NOT NULL, client BLOB NOT NULL, mac TEXT NOT NULL,
    hostname TEXT NOT NULL, subnet_id INTEGER NOT NULL, state TEXT NOT NULL,
    starts REAL NOT NULL, expires REAL NOT NULL)"""
_SQLITE_UPSERT = (
    "INSERT OR REPLACE INTO dhcp_leases"
    " (ip, address, client, mac, hostname, subnet_id, state, starts, expires)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_SELECT = (
    "SELECT ip, client, mac, hostname, subnet_id, state, starts, expires FROM dhcp_leases"
)


class LeaseStore:
    """Durable leases, written in batches (the group commit before a batch's ACKs).

    With PostgreSQL the leases live in the ``dhcp_leases`` table and a batch is one Core
    executemany. With SQLite they live in their own file beside the database
    (``<name>-dhcp-leases.db``): SQLite has one write lock per file, and sharing it with the
    event writer made every lease commit wait out the other's transaction. The whole batch
    (executemany + COMMIT with ``synchronous=FULL``) runs on the event loop's own thread:
    nothing else writes that file, so it never waits for a lock, and a commit costs tens of
    microseconds on an SSD or tmpfs (an fsync on a spinning disk, a few milliseconds, during
    which the next batch gathers in the socket buffer). A worker thread cost more than the
    commit itself: under load every batch paid two thread wake-ups and a GIL hand-over.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.path: Path | None = None
        if db.dialect == "sqlite":
            name = make_url(db.url).database
            if name and name != ":memory:":
                p = Path(name)
                self.path = p.with_name(f"{p.stem}-dhcp-leases.db")
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        if self.path is None:
            return
        private_file(self.path, SQLITE_SIDECARS)  # its -wal and -shm follow its mode
        conn = sqlite3.connect(self.path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute(_SQLITE_SCHEMA)
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def load(self) -> list[Lease]:
        if self.path is None:
            return await _load_table(self.db)
        if self._conn is None:
            self.open()
            try:
                return self._load_sync()
            finally:
                self.close()
        return self._load_sync()

    def _load_sync(self) -> list[Lease]:
        assert self._conn is not None
        return [Lease(*row) for row in self._conn.execute(_SQLITE_SELECT)]

    async def write(self, leases: list[Lease]) -> None:
        if not leases:
            return
        if self._conn is None:
            await _save_table(self.db, leases)
            return
        rows = [
            (
                x.ip,
                ip_str(x.ip),
                x.client,
                x.mac,
                x.hostname,
                x.subnet_id,
                x.state,
                x.starts,
                x.expires,
            )
            for x in leases
        ]
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_SQLITE_UPSERT, rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


async def _save_table(db: Database, leases: list[Lease]) -> None:
    rows = [_row(lease) for lease in leases]
    ins = pg_insert(DHCPLeaseRow) if db.dialect == "postgresql" else sqlite_insert(DHCPLeaseRow)
    stmt = ins.on_conflict_do_update(
        index_elements=[DHCPLeaseRow.ip],
        set_={c: ins.excluded[c] for c in rows[0] if c != "ip"},
    )
    # Core on one connection, not the ORM: no per-row unit-of-work bookkeeping.
    async with db.engine.begin() as conn:
        await conn.execute(stmt, rows)


async def _load_table(db: Database) -> list[Lease]:
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
