"""DHCP configuration and leases: subnets, reservations (operator to change, viewer to read)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from ipaddress import IPv4Address

from fastapi import APIRouter, Query
from pydantic import BaseModel

from roost.api.deps import Operator, RuntimeDep, Viewer
from roost.dhcp import store
from roost.dhcp.config import ReservationSpec, SubnetSpec, normalise_mac
from roost.dhcp.leases import Lease
from roost.dhcp.service import DHCPService
from roost.errors import Invalid, NotFound
from roost.service import Runtime

router = APIRouter(prefix="/dhcp", tags=["dhcp"])


class LeaseOut(BaseModel):
    ip: str
    mac: str
    hostname: str
    subnet: str | None
    state: str
    starts: datetime
    expires: datetime


async def _applied(runtime: Runtime, what: str, name: str) -> None:
    """Make the change live in this process and tell other replicas through the event bus."""
    svc = runtime.service("dhcp")
    if isinstance(svc, DHCPService):
        await svc.reload()
    await runtime.bus.publish("dhcp.config.changed", name, {"what": what})


@router.get("/subnets", response_model=list[SubnetSpec])
async def list_subnets(runtime: RuntimeDep, _: Viewer) -> list[SubnetSpec]:
    return [spec for _, spec in await store.list_subnets(runtime.db)]


@router.get("/subnets/{name}", response_model=SubnetSpec)
async def get_subnet(name: str, runtime: RuntimeDep, _: Viewer) -> SubnetSpec:
    for _id, spec in await store.list_subnets(runtime.db):
        if spec.name == name:
            return spec
    raise NotFound(f"no subnet {name!r} (see GET /api/v1/dhcp/subnets)")


@router.post("/subnets", status_code=201, response_model=SubnetSpec)
async def create_subnet(body: SubnetSpec, runtime: RuntimeDep, _: Operator) -> SubnetSpec:
    spec = await store.put_subnet(runtime.db, body, create=True)
    await _applied(runtime, "subnet", spec.name)
    return spec


@router.put("/subnets/{name}", response_model=SubnetSpec)
async def replace_subnet(
    name: str, body: SubnetSpec, runtime: RuntimeDep, _: Operator
) -> SubnetSpec:
    if body.name != name:
        raise Invalid(
            f"body names subnet {body.name!r} but the URL names {name!r}; make them match"
        )
    spec = await store.put_subnet(runtime.db, body, create=False)
    await _applied(runtime, "subnet", spec.name)
    return spec


@router.delete("/subnets/{name}", status_code=204)
async def delete_subnet(name: str, runtime: RuntimeDep, _: Operator) -> None:
    await store.delete_subnet(runtime.db, name)
    await _applied(runtime, "subnet", name)


@router.get("/reservations", response_model=list[ReservationSpec])
async def list_reservations(runtime: RuntimeDep, _: Viewer) -> list[ReservationSpec]:
    return await store.list_reservations(runtime.db)


@router.put("/reservations/{mac}", response_model=ReservationSpec)
async def put_reservation(
    mac: str, body: ReservationSpec, runtime: RuntimeDep, _: Operator
) -> ReservationSpec:
    try:
        if normalise_mac(mac) != body.mac:
            raise Invalid(f"body names {body.mac} but the URL names {mac}; make them match")
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    spec = await store.put_reservation(runtime.db, body, await _leases(runtime), time.time())
    await _applied(runtime, "reservation", spec.mac)
    return spec


@router.delete("/reservations/{mac}", status_code=204)
async def delete_reservation(mac: str, runtime: RuntimeDep, _: Operator) -> None:
    try:
        mac = normalise_mac(mac)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    await store.delete_reservation(runtime.db, mac)
    await _applied(runtime, "reservation", mac)


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
    _: Viewer,
    state: str | None = Query(None, description="only leases in this state (bound, offered, …)"),
    mac: str | None = Query(None, description="only this client's lease"),
) -> list[LeaseOut]:
    """Leases as the running server holds them (stored leases when it is not running here)."""
    names = {sid: spec.name for sid, spec in await store.list_subnets(runtime.db)}
    leases = await _leases(runtime)
    out = []
    try:
        want_mac = normalise_mac(mac) if mac else None
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    for lease in sorted(leases, key=lambda x: x.ip):
        if (state and lease.state != state) or (want_mac and lease.mac != want_mac):
            continue
        out.append(
            LeaseOut(
                ip=str(IPv4Address(lease.ip)),
                mac=lease.mac,
                hostname=lease.hostname,
                subnet=names.get(lease.subnet_id),
                state=lease.state,
                starts=_ts(lease.starts),
                expires=_ts(lease.expires),
            )
        )
    return out
