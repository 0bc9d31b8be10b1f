"""Discovery API: start, follow, cancel and list scans; hosts and ports found; wake a machine.

Scans start in the background and answer 202 at once with the scan; progress and results
follow as events (``discovery.scan.*``, ``discovery.host.*``, ``discovery.port.open``) on
``/events``, filtered by the scan's subject ``scan/<id>``. Reading needs a viewer token;
scanning and waking need an operator.

Scans, hosts and ports belong to the site of the server that found them. A token sees those
of its sites (an unscoped one every site's; ``?site=`` narrows it down); another site's scan
answers 404 as a missing one does. Scanning and waking happen in the server's own site, so
they need a token of that site.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import Select, select
from sqlalchemy.orm import InstrumentedAttribute

from roost.api.deps import Operator, RuntimeDep, Viewer
from roost.auth import Principal
from roost.discovery.models import HostRow, PortRow, ScanResultRow, ScanRow
from roost.discovery.service import DiscoveryService
from roost.errors import Conflict, NotFound
from roost.service import Runtime

router = APIRouter(prefix="/discovery", tags=["discovery"])


def _service(runtime: Runtime) -> DiscoveryService:
    svc = runtime.service("discovery")
    if not isinstance(svc, DiscoveryService):
        raise Conflict(
            "discovery is off: set discovery.subnets (and discovery.interface for ARP "
            "sweeps and wake confirmation) in the settings"
        )
    return svc


class ScanRequest(BaseModel):
    kind: Literal["arp", "tcp", "udp"]
    targets: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="addresses or CIDRs; ARP: default all site subnets",
    )
    ports: str | None = Field(
        default=None, max_length=255, examples=["1-65535", "22,80,443", "top:100"]
    )


class ScanOut(BaseModel):
    id: int
    site: str
    kind: str
    targets: list[str]
    ports: str | None
    state: str
    percent: float
    hosts_found: int
    ports_found: int
    probes: int
    error: str | None
    requested_by: str | None
    started_at: datetime
    finished_at: datetime | None
    stats: dict[str, float | int | str]


class ResultOut(BaseModel):
    ip: str
    mac: str | None
    protocol: str | None
    port: int | None
    state: str


class HostOut(BaseModel):
    site: str
    mac: str
    ip: str | None
    vendor: str | None
    source: str
    first_seen: datetime
    last_seen: datetime
    gone: bool


class PortOut(BaseModel):
    site: str
    ip: str
    protocol: str
    port: int
    state: str
    service: str | None
    first_seen_open: datetime | None
    last_seen_open: datetime | None
    last_scan_id: int | None


class WakeRequest(BaseModel):
    mac: str = Field(examples=["52:54:00:12:34:56"])
    ip: str | None = Field(default=None, description="default: the address last seen for the MAC")
    wait: bool = Field(default=False, description="answer only once confirmed or timed out")
    password: str | None = Field(default=None, description="SecureOn password")


class WakeOut(BaseModel):
    mac: str
    ip: str | None
    confirmed: bool
    sent: list[str]
    via: str | None
    elapsed: float


def _scan_out(row: ScanRow) -> ScanOut:
    return ScanOut.model_validate(row, from_attributes=True)


SiteQuery = Query(None, max_length=64, description="only this site's (default: the token's)")


def _in_sites(
    q: Select[Any], column: InstrumentedAttribute[str], who: Principal, site: str | None
) -> Select[Any]:
    """Limit a query to the token's sites, and to ``site`` when given."""
    if who.sites is not None:
        q = q.where(column.in_(who.sites))
    if site is not None:
        q = q.where(column == site)
    return q


async def _scan(runtime: Runtime, who: Principal, scan_id: int) -> ScanRow:
    async with runtime.db.session() as s:
        row = await s.get(ScanRow, scan_id)
    if row is None or not who.sees(row.site):
        raise NotFound(f"no such scan {scan_id} (see GET /api/v1/discovery/scans)")
    return row


def _here(runtime: Runtime, who: Principal) -> None:
    """Scans and wakes act in this server's site: the token must be of it."""
    who.site_for_new(runtime.settings.site)


@router.post("/scans", status_code=202, response_model=ScanOut)
async def start_scan(body: ScanRequest, runtime: RuntimeDep, who: Operator) -> ScanOut:
    _here(runtime, who)
    row = await _service(runtime).start_scan(body.kind, body.targets, body.ports, who.token_id)
    return _scan_out(row)


@router.get("/scans", response_model=list[ScanOut])
async def list_scans(
    runtime: RuntimeDep,
    who: Viewer,
    state: str | None = None,
    limit: int = Query(50, ge=1, le=1000),
    site: str | None = SiteQuery,
) -> list[ScanOut]:
    q = _in_sites(select(ScanRow), ScanRow.site, who, site)
    if state:
        q = q.where(ScanRow.state == state)
    async with runtime.db.session() as s:
        rows = (await s.execute(q.order_by(ScanRow.id.desc()).limit(limit))).scalars().all()
    return [_scan_out(r) for r in rows]


@router.get("/scans/{scan_id}", response_model=ScanOut)
async def get_scan(scan_id: int, runtime: RuntimeDep, who: Viewer) -> ScanOut:
    return _scan_out(await _scan(runtime, who, scan_id))


@router.post("/scans/{scan_id}/cancel", response_model=ScanOut)
async def cancel_scan(scan_id: int, runtime: RuntimeDep, who: Operator) -> ScanOut:
    await _scan(runtime, who, scan_id)
    return _scan_out(await _service(runtime).cancel_scan(scan_id))


@router.get("/scans/{scan_id}/results", response_model=list[ResultOut])
async def scan_results(scan_id: int, runtime: RuntimeDep, who: Viewer) -> list[ResultOut]:
    await _scan(runtime, who, scan_id)
    async with runtime.db.session() as s:
        rows = (
            (
                await s.execute(
                    select(ScanResultRow)
                    .where(ScanResultRow.scan_id == scan_id)
                    .order_by(ScanResultRow.id)
                )
            )
            .scalars()
            .all()
        )
    return [ResultOut.model_validate(r, from_attributes=True) for r in rows]


@router.get("/hosts", response_model=list[HostOut])
async def list_hosts(
    runtime: RuntimeDep, who: Viewer, include_gone: bool = False, site: str | None = SiteQuery
) -> list[HostOut]:
    q = _in_sites(select(HostRow), HostRow.site, who, site)
    if not include_gone:
        q = q.where(HostRow.gone.is_(False))
    async with runtime.db.session() as s:
        rows = (await s.execute(q.order_by(HostRow.site, HostRow.ip, HostRow.mac))).scalars().all()
    return [HostOut.model_validate(r, from_attributes=True) for r in rows]


@router.get("/ports", response_model=list[PortOut])
async def list_ports(
    runtime: RuntimeDep,
    who: Viewer,
    ip: str | None = None,
    state: str | None = "open",
    site: str | None = SiteQuery,
) -> list[PortOut]:
    q = _in_sites(select(PortRow), PortRow.site, who, site)
    if ip:
        q = q.where(PortRow.ip == ip)
    if state:
        q = q.where(PortRow.state == state)
    async with runtime.db.session() as s:
        rows = (
            (await s.execute(q.order_by(PortRow.site, PortRow.ip, PortRow.protocol, PortRow.port)))
            .scalars()
            .all()
        )
    return [PortOut.model_validate(r, from_attributes=True) for r in rows]


@router.post("/wake", response_model=WakeOut)
async def wake(body: WakeRequest, runtime: RuntimeDep, who: Operator) -> WakeOut:
    _here(runtime, who)
    res = await _service(runtime).wake(body.mac, body.ip, body.wait, body.password, who.token_id)
    return WakeOut(
        mac=res.mac,
        ip=res.ip,
        confirmed=res.confirmed,
        sent=list(res.sent),
        via=res.via,
        elapsed=round(res.elapsed, 3),
    )
