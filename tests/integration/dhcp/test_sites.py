"""DHCP objects per site over the in-process API (both databases): defaults, moves, global
subnets stored before sites, the events' sites, and the migration that added the column."""

from __future__ import annotations

from typing import Any

import httpx
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from roost.auth import Role, create_token
from roost.db.engine import alembic_config
from roost.db.models import Base
from roost.dhcp.models import DHCPLeaseRow, DHCPReservationRow, DHCPSubnetRow
from roost.service import Runtime

from .test_api import LAN, problem

RES = {"mac": "52:54:00:aa:bb:01", "ip": "10.50.0.10"}


async def bearer(runtime: Runtime, role: Role, *sites: str) -> dict[str, str]:
    token = await create_token(runtime.db, "scoped", role, list(sites) or None)
    return {"Authorization": f"Bearer {token.secret}"}


async def test_subnet_site_defaults_keeps_and_moves(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    created = await api.post("/api/v1/dhcp/subnets", json=LAN)
    assert created.json()["site"] == runtime.settings.site
    kept = await api.put("/api/v1/dhcp/subnets/lan", json={**LAN, "lease_time": 600})
    assert (kept.json()["site"], kept.json()["lease_time"]) == (runtime.settings.site, 600)
    await api.put(f"/api/v1/dhcp/reservations/{RES['mac']}", json=RES)
    lab_viewer = await bearer(runtime, Role.viewer, "lab")
    assert (await api.get("/api/v1/dhcp/reservations", headers=lab_viewer)).json() == []
    moved = await api.put("/api/v1/dhcp/subnets/lan", json={**LAN, "site": "lab"})
    assert moved.json()["site"] == "lab"
    # the reservation follows its subnet
    [res] = (await api.get("/api/v1/dhcp/reservations", headers=lab_viewer)).json()
    assert (res["mac"], res["site"]) == (RES["mac"], "lab")
    events = (await api.get("/api/v1/events/history", params={"type": "dhcp.config."})).json()
    assert [e["site"] for e in events] == [runtime.settings.site] * 3 + ["lab"]
    lab_events = await api.get(
        "/api/v1/events/history", params={"type": "dhcp.config."}, headers=lab_viewer
    )
    assert [e["site"] for e in lab_events.json()] == ["lab"]


async def test_scoped_operator_creates_only_in_its_sites(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    two = await bearer(runtime, Role.operator, "east", "west")
    msg = await problem(await api.post("/api/v1/dhcp/subnets", json=LAN, headers=two), 422)
    assert msg.startswith("site:")
    made = await api.post("/api/v1/dhcp/subnets", json={**LAN, "site": "west"}, headers=two)
    assert made.status_code == 201 and made.json()["site"] == "west"
    east = await bearer(runtime, Role.operator, "east")
    # moving a west subnet to east needs west too: it is not this token's, so it is missing
    body = {**LAN, "site": "east"}
    assert "no subnet 'lan'" in await problem(
        await api.put("/api/v1/dhcp/subnets/lan", json=body, headers=east), 404
    )
    assert (await api.put("/api/v1/dhcp/subnets/lan", json=body, headers=two)).json()["site"] == (
        "east"
    )
    bad = await api.post("/api/v1/dhcp/subnets", json={**LAN, "name": "x", "site": "a b"})
    assert "body site" in await problem(bad, 422)


async def test_subnets_stored_before_sites_are_for_unscoped_tokens_only(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    await api.post("/api/v1/dhcp/subnets", json=LAN)
    await api.put(f"/api/v1/dhcp/reservations/{RES['mac']}", json=RES)
    async with runtime.db.session() as s:  # what migration 0005 leaves of an older subnet
        await s.execute(text("UPDATE dhcp_subnets SET site = NULL"))
    site_op = await bearer(runtime, Role.operator, runtime.settings.site)
    assert (await api.get("/api/v1/dhcp/subnets", headers=site_op)).json() == []
    assert (await api.get("/api/v1/dhcp/reservations", headers=site_op)).json() == []
    await problem(await api.delete("/api/v1/dhcp/subnets/lan", headers=site_op), 404)
    [glob] = (await api.get("/api/v1/dhcp/subnets")).json()
    assert glob["site"] is None
    assert (await api.put("/api/v1/dhcp/subnets/lan", json=LAN)).json()["site"] is None
    given = await api.put("/api/v1/dhcp/subnets/lan", json={**LAN, "site": runtime.settings.site})
    assert given.json()["site"] == runtime.settings.site
    assert len((await api.get("/api/v1/dhcp/reservations", headers=site_op)).json()) == 1


def _diff(conn: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


def _down_and_up(conn: Connection) -> list[Any]:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.downgrade(cfg, "0002_dhcp")
    conn.execute(
        text(
            "INSERT INTO dhcp_subnets (name, spec, updated_at)"
            ' VALUES (\'old\', \'{"name": "old", "cidr": "10.9.0.0/24"}\', CURRENT_TIMESTAMP)'
        )
    )
    command.upgrade(cfg, "heads")
    return list(conn.execute(text("SELECT name, site FROM dhcp_subnets")))


async def test_migration_adds_the_site_column_and_keeps_old_subnets_global(
    runtime: Runtime,
) -> None:
    async with runtime.db.engine.begin() as conn:
        rows = await conn.run_sync(_down_and_up)
        found = await conn.run_sync(_diff)
    assert rows == [("old", None)]
    assert [d for d in found if DHCP_TABLES & _tables(d)] == []


DHCP_TABLES = {m.__tablename__ for m in (DHCPSubnetRow, DHCPReservationRow, DHCPLeaseRow)}


def _tables(diff: Any) -> set[str | None]:
    """The tables an autogenerate difference names (a column's or index's, or by name)."""
    op = diff[0] if isinstance(diff, list) else diff  # modify_* come as a list of tuples
    return {
        x if isinstance(x, str) else getattr(getattr(x, "table", x), "name", None) for x in op[1:]
    }
