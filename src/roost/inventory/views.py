"""How a node looks from outside: the API's response model, with every secret masked."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

from roost.inventory import power
from roost.inventory.models import HistoryRow, NodeRow

MAX_FACTS_BYTES = 256 * 1024
"""Largest facts document a node may report (JSON), so a node cannot bloat the database."""


def check_facts(facts: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(facts, separators=(",", ":")))
    if size > MAX_FACTS_BYTES:
        raise ValueError(f"facts are {size} bytes of JSON; at most {MAX_FACTS_BYTES} are kept")
    return facts


Facts = Annotated[dict[str, Any], AfterValidator(check_facts)]


class InterfaceOut(BaseModel):
    mac: str
    name: str | None = None
    addresses: list[str] = Field(default_factory=list)


class PowerOut(BaseModel):
    driver: str | None = None
    settings: dict[str, Any] = Field(
        default_factory=dict, description="secret settings are shown as ***"
    )
    state: str | None = Field(default=None, description="last known: on, off or unknown")


class CertificateOut(BaseModel):
    serial: str
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None = None


class NodeOut(BaseModel):
    id: int
    hostname: str | None
    site: str
    mac: str
    ip: str | None
    state: str
    state_reason: str
    tags: list[str]
    architecture: str | None
    vendor: str | None
    interfaces: list[InterfaceOut]
    facts: dict[str, Any]
    boot_profile: str | None
    power: PowerOut
    certificate: CertificateOut | None = None
    recommission: bool = Field(
        default=False, description="an operator asked that the next boot may enroll again"
    )
    pending_facts: dict[str, Any] | None = Field(
        default=None, description="facts of an enrollment waiting for approval (state pending)"
    )
    last_seen: datetime | None
    created_at: datetime
    updated_at: datetime


class HistoryOut(BaseModel):
    time: datetime
    from_state: str | None = Field(serialization_alias="from")
    to_state: str = Field(serialization_alias="to")
    reason: str


def node_out(node: NodeRow, certificate: CertificateOut | None = None) -> NodeOut:
    return NodeOut(
        id=node.id,
        hostname=node.hostname,
        site=node.site,
        mac=node.mac,
        ip=node.ip,
        state=node.state,
        state_reason=node.state_reason,
        tags=node.tags,
        architecture=node.architecture,
        vendor=node.vendor,
        interfaces=[
            InterfaceOut(mac=i.mac, name=i.name, addresses=list(i.addresses))
            for i in node.interfaces
        ],
        facts=dict(node.facts or {}),
        boot_profile=node.boot_profile,
        power=PowerOut(
            driver=node.power_driver, settings=power.shown(node), state=node.power_state
        ),
        certificate=certificate,
        recommission=bool(node.recommission),
        pending_facts=(node.pending or {}).get("facts") if node.state == "pending" else None,
        last_seen=node.last_seen,
        created_at=node.created_at,
        updated_at=node.updated_at,
    )


def history_out(row: HistoryRow) -> HistoryOut:
    return HistoryOut(
        time=row.time, from_state=row.from_state, to_state=row.to_state, reason=row.reason
    )
