"""DHCP configuration and leases: subnets, reservations (operator to change, viewer to read).

Every subnet belongs to a site; a reservation has the site of the subnet its address is on, a
lease that of the subnet it was given on. A token limited to some sites sees and changes only
theirs: another site's subnet, reservation or lease answers as a missing one does.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from ipaddress import IPv4Address

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from roost.api.deps import Operator, RuntimeDep, Viewer
from roost.auth import Principal
from roost.dhcp import store
from roost.dhcp.config import ReservationSpec, SubnetSpec, normalise_mac, site_of_address
from roost.dhcp.leases import Lease
from roost.dhcp.service import DHCPService
from roost.errors import Invalid, NotFound
from roost.service import Runtime

router = APIRouter(prefix="/dhcp", tags=["dhcp"])


class ReservationOut(ReservationSpec):
    site: str | None = Field(
        default=None,
        description="the site of the subnet its address is on (null: on none; unscoped only)",
    )


class LeaseOut(BaseModel):
    ip: str
    mac: str
    hostname: str
    subnet: str | None
    site: str | None
    state: str
    starts: datetime
    expires: datetime


async def _applied(runtime: Runtime, what: str, name: str, site: str | None) -> None:
    """Make the change live in this process and tell other replicas through the event bus
    (the event has the site of what changed, so only that site's readers see it)."""
    svc = runtime.service("dhcp")
    if isinstance(svc, DHCPService):
        await svc.reload()
    await runtime.bus.publish("dhcp.config.changed", name, {"what": what}, site=site)


async def _visible_subnet(runtime: Runtime, name: str, who: Principal) -> SubnetSpec:
    for _id, spec in await store.list_subnets(runtime.db):
        if spec.name == name and who.sees(spec.site):
            return spec
    raise NotFound(f"no subnet {name!r} (see GET /api/v1/dhcp/subnets)")


@router.get("/subnets", response_model=list[SubnetSpec])
async def list_subnets(runtime: RuntimeDep, who: Viewer) -> list[SubnetSpec]:
    return [spec for _, spec in await store.list_subnets(runtime.db) if who.sees(spec.site)]


@router.get("/subnets/{name}", response_model=SubnetSpec)
async def get_subnet(name: str, runtime: RuntimeDep, who: Viewer) -> SubnetSpec:
    return await _visible_subnet(runtime, name, who)


@router.post("/subnets", status_code=201, response_model=SubnetSpec)
async def create_subnet(body: SubnetSpec, runtime: RuntimeDep, who: Operator) -> SubnetSpec:
    site = who.site_for_new(body.site) or runtime.settings.site
    spec = await store.put_subnet(runtime.db, body.model_copy(update={"site": site}), True, who)
    await _applied(runtime, "subnet", spec.name, spec.site)
    return spec


@router.put("/subnets/{name}", response_model=SubnetSpec)
async def replace_subnet(
    name: str, body: SubnetSpec, runtime: RuntimeDep, who: Operator
) -> SubnetSpec:
    """Replace a subnet; ``site`` left out keeps its site, given moves it (to a site of the
    token's own)."""
    if body.name != name:
        raise Invalid(
            f"body names subnet {body.name!r} but the URL names {name!r}; make them match"
        )
    current = await _visible_subnet(runtime, name, who)
    site = current.site if body.site is None else who.site_for_new(body.site)
    spec = await store.put_subnet(runtime.db, body.model_copy(update={"site": site}), False, who)
    await _applied(runtime, "subnet", spec.name, spec.site)
    return spec


@router.delete("/subnets/{name}", status_code=204)
async def delete_subnet(name: str, runtime: RuntimeDep, who: Operator) -> None:
    site = await store.delete_subnet(runtime.db, name, who)
    await _applied(runtime, "subnet", name, site)


@router.get("/reservations", response_model=list[ReservationOut])
async def list_reservations(runtime: RuntimeDep, who: Viewer) -> list[ReservationOut]:
    subnets = [spec for _, spec in await store.list_subnets(runtime.db)]
    out = []
    for r in await store.list_reservations(runtime.db):
        site = site_of_address(r.ip, subnets)
        if who.sees(site):
            out.append(ReservationOut(**r.model_dump(), site=site))
    return out


def _mac(value: str) -> str:
    try:
        return normalise_mac(value)
    except ValueError as exc:
        raise Invalid(f"path mac: {exc}") from None


@router.put("/reservations/{mac}", response_model=ReservationOut)
async def put_reservation(
    mac: str, body: ReservationSpec, runtime: RuntimeDep, who: Operator
) -> ReservationOut:
    if _mac(mac) != body.mac:
        raise Invalid(f"body names {body.mac} but the URL names {mac}; make them match")
    leases = await _leases(runtime)
    site = await store.put_reservation(runtime.db, body, leases, time.time(), who)
    await _applied(runtime, "reservation", body.mac, site)
    return ReservationOut(**body.model_dump(), site=site)


@router.delete("/reservations/{mac}", status_code=204)
async def delete_reservation(mac: str, runtime: RuntimeDep, who: Operator) -> None:
    mac = _mac(mac)
    site = await store.delete_reservation(runtime.db, mac, who)
    await _applied(runtime, "reservation", mac, site)


async def _leases(runtime: Runtime) -> list[Lease]:
    """The running server's leases, or the stored ones when it does not run in this process."""
    svc = runtime.service("dhcp")
    if isinstance(svc, DHCPService):
        return svc.snapshot()
    return await store.LeaseStore(runtime.db).load()


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@router.get("/leases", response_model=list[LeaseOut])
async def list_leases(
    runtime: RuntimeDep,
    who: Viewer,
    state: str | None = Query(None, description="only leases in this state (bound, offered, …)"),
    mac: str | None = Query(None, description="only this client's lease"),
) -> list[LeaseOut]:
    """Leases as the running server holds them (stored leases when it is not running here),
    of the token's sites only: a lease has its subnet's site (none once that is deleted)."""
    try:
        want_mac = normalise_mac(mac) if mac else None
    except ValueError as exc:
        raise Invalid(f"query mac: {exc}") from None
    subnets = dict(await store.list_subnets(runtime.db))
    out = []
    for lease in sorted(await _leases(runtime), key=lambda x: x.ip):
        subnet = subnets.get(lease.subnet_id)
        site = subnet.site if subnet is not None else None
        if not who.sees(site):
            continue
        if (state and lease.state != state) or (want_mac and lease.mac != want_mac):
            continue
        out.append(
            LeaseOut(
                ip=str(IPv4Address(lease.ip)),
                mac=lease.mac,
                hostname=lease.hostname,
                subnet=subnet.name if subnet is not None else None,
                site=site,
                state=lease.state,
                starts=_ts(lease.starts),
                expires=_ts(lease.expires),
            )
        )
    return out
