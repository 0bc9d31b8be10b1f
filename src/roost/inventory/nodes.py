"""Inventory operations as the API and the CLI see them: one transaction each, then events.

Each function takes the :class:`~roost.service.Runtime`, the caller's site scope (``None``:
every site) and validated input; it commits first and publishes afterwards, so an event never
announces something that is not stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from roost.db.models import utcnow
from roost.errors import Invalid
from roost.inventory import power, store
from roost.inventory.lifecycle import State, parse_state
from roost.inventory.models import InterfaceRow, NodeRow
from roost.inventory.store import StateChange
from roost.inventory.views import CertificateOut, HistoryOut, NodeOut, history_out, node_out
from roost.pki.models import CertificateRow
from roost.secrets import secret_box
from roost.service import Runtime

Scope = Sequence[str] | None


class InterfaceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mac: str
    name: str | None = Field(default=None, max_length=32)
    addresses: list[str] = Field(default_factory=list)


class NodeSpec(BaseModel):
    """A node to add or import; ``mac`` is the primary (boot) interface."""

    model_config = ConfigDict(extra="forbid")
    mac: str = Field(examples=["52:54:00:12:34:56"])
    hostname: str | None = None
    site: str | None = Field(default=None, description="default: the server's site")
    tags: list[str] = Field(default_factory=list)
    ip: str | None = None
    architecture: str | None = Field(default=None, max_length=32, examples=["x86_64"])
    vendor: str | None = Field(default=None, max_length=128)
    boot_profile: str | None = Field(default=None, max_length=128)
    interfaces: list[InterfaceIn] = Field(default_factory=list, description="more NICs")
    power_driver: str | None = Field(default=None, examples=["ipmi"])
    power_settings: dict[str, Any] = Field(default_factory=dict)


class NodePatch(BaseModel):
    """Fields to change; absent fields stay, ``power_driver: null`` removes power control."""

    model_config = ConfigDict(extra="forbid")
    hostname: str | None = None
    site: str | None = None
    architecture: str | None = Field(default=None, max_length=32)
    vendor: str | None = Field(default=None, max_length=128)
    boot_profile: str | None = Field(default=None, max_length=128)
    power_driver: str | None = None
    power_settings: dict[str, Any] = Field(default_factory=dict)


async def certificates(s: AsyncSession, ids: Sequence[int]) -> dict[int, CertificateOut]:
    """The newest certificate of each node that is neither revoked nor expired."""
    q = (
        select(CertificateRow)
        .where(CertificateRow.node_id.in_(list(ids)), CertificateRow.revoked_at.is_(None))
        .where(CertificateRow.not_after > utcnow())
        .order_by(CertificateRow.not_after)
    )
    found: dict[int, CertificateOut] = {}
    for row in (await s.execute(q)).scalars():
        assert row.node_id is not None
        found[row.node_id] = CertificateOut.model_validate(row, from_attributes=True)
    return found


async def view(s: AsyncSession, node: NodeRow) -> NodeOut:
    return node_out(node, (await certificates(s, [node.id])).get(node.id))


async def publish(runtime: Runtime, changes: Sequence[StateChange | None]) -> None:
    """Publish state changes together, so the bus stores them in one group commit."""
    await asyncio.gather(
        *(
            runtime.bus.publish(store.STATE_CHANGED, c.mac, c.event(), site=c.site)
            for c in changes
            if c is not None
        )
    )


async def _add(
    s: AsyncSession, runtime: Runtime, spec: NodeSpec, scope: Scope, reason: str
) -> tuple[NodeRow, StateChange]:
    site = spec.site or runtime.settings.site
    store.allow_site(site, scope)
    node, change = await store.create_node(
        s,
        mac=spec.mac,
        site=site,
        reason=reason,
        hostname=spec.hostname,
        ip=spec.ip,
        architecture=spec.architecture,
        vendor=spec.vendor,
        boot_profile=spec.boot_profile,
    )
    await _update(s, runtime, node, spec, set(spec.model_fields_set) - {"mac", "ip"}, scope)
    return node, change


async def _update(
    s: AsyncSession,
    runtime: Runtime,
    node: NodeRow,
    spec: BaseModel,
    fields: set[str],
    scope: Scope,
) -> None:
    """Apply the given fields of a spec or patch to ``node``."""
    data = spec.model_dump()
    for key in ("architecture", "vendor", "boot_profile"):
        if key in fields:
            setattr(node, key, data[key])
    if "hostname" in fields and data["hostname"] != node.hostname:
        if data["hostname"]:
            await store.check_hostname_free(s, data["hostname"], node.id)
        node.hostname = store.check_hostname(data["hostname"]) if data["hostname"] else None
    if "site" in fields and data["site"] and data["site"] != node.site:
        store.allow_site(data["site"], scope)
        await store.ensure_site(s, data["site"])
        node.site = data["site"]
    if "tags" in fields:
        store.set_tags(
            node, add=data["tags"], remove={t.tag for t in node.tag_rows} - set(data["tags"])
        )
    for extra in data.get("interfaces") or []:
        mac = store.normalize_mac(extra["mac"])
        owner = await store.node_by_mac(s, mac)
        if owner is None:
            node.interfaces.append(
                InterfaceRow(mac=mac, name=extra["name"], addresses=extra["addresses"])
            )
        elif owner.id != node.id:
            raise Invalid(f"interface {mac} already belongs to node {owner.id}")
    if "power_driver" in fields or "power_settings" in fields:
        driver = data["power_driver"] if "power_driver" in fields else node.power_driver
        if driver is None:
            if data["power_settings"]:
                raise Invalid("power_settings need a power_driver")
            power.apply(node, None)
        else:
            box = secret_box(runtime.settings.data_dir)
            power.apply(node, power.prepare(box, node, driver, data["power_settings"]))
    node.updated_at = utcnow()
    await s.flush()


async def add_node(runtime: Runtime, spec: NodeSpec, scope: Scope) -> NodeOut:
    async with runtime.db.session() as s:
        node, change = await _add(s, runtime, spec, scope, "added by an operator")
        out = await view(s, node)
    await publish(runtime, [change])
    return out


async def upsert_nodes(runtime: Runtime, specs: Sequence[NodeSpec], scope: Scope) -> dict[str, int]:
    """Import: create unknown MACs, update known ones, all in one transaction."""
    changes: list[StateChange] = []
    updated = 0
    async with runtime.db.session() as s:
        for i, spec in enumerate(specs, 1):
            try:
                node = await store.node_by_mac(s, spec.mac)
                if node is None:
                    changes.append((await _add(s, runtime, spec, scope, "imported"))[1])
                else:
                    store.allow_site(node.site, scope)
                    await _update(
                        s, runtime, node, spec, set(spec.model_fields_set) - {"mac"}, scope
                    )
                    updated += 1
            except Invalid as exc:
                raise Invalid(f"record {i} ({spec.mac}): {exc}") from None
    await publish(runtime, changes)
    return {"created": len(changes), "updated": updated}


async def update_node(runtime: Runtime, ref: str, patch: NodePatch, scope: Scope) -> NodeOut:
    async with runtime.db.session() as s:
        node = await store.find_node(s, ref, scope)
        await _update(s, runtime, node, patch, set(patch.model_fields_set), scope)
        out = await view(s, node)
    await runtime.bus.publish(
        "node.updated",
        node.mac,
        {"node": node.id, "mac": node.mac, "fields": sorted(patch.model_fields_set)},
        site=node.site,
    )
    return out


async def get_node(runtime: Runtime, ref: str, scope: Scope) -> NodeOut:
    async with runtime.db.session() as s:
        return await view(s, await store.find_node(s, ref, scope))


async def list_nodes(runtime: Runtime, scope: Scope, **flt: Any) -> list[NodeOut]:
    async with runtime.db.session() as s:
        nodes = await store.list_nodes(s, sites=scope, **flt)
        certs = await certificates(s, [n.id for n in nodes])
        return [node_out(n, certs.get(n.id)) for n in nodes]


async def node_history(runtime: Runtime, ref: str, scope: Scope) -> list[HistoryOut]:
    async with runtime.db.session() as s:
        node = await store.find_node(s, ref, scope)
        return [history_out(h) for h in await store.history(s, node.id)]


async def tag_node(
    runtime: Runtime, ref: str, add: Sequence[str], remove: Sequence[str], scope: Scope
) -> NodeOut:
    async with runtime.db.session() as s:
        node = await store.find_node(s, ref, scope)
        store.set_tags(node, add, remove)
        await s.flush()
        out = await view(s, node)
    await runtime.bus.publish(
        "node.updated",
        node.mac,
        {"node": node.id, "mac": node.mac, "fields": ["tags"], "tags": out.tags},
        site=node.site,
    )
    return out


async def change_state(runtime: Runtime, ref: str, to: str, reason: str, scope: Scope) -> NodeOut:
    target = parse_state(to)
    async with runtime.db.session() as s:
        node = await store.find_node(s, ref, scope)
        change = await store.set_state(s, node, target, reason or f"set to {target} by an operator")
        if target is State.retired:
            from roost.pki.revocation import revoke_node

            await revoke_node(s, node.id, "node retired")
        out = await view(s, node)
    await publish(runtime, [change])
    return out


async def delete_node(runtime: Runtime, ref: str, scope: Scope) -> None:
    """Delete a node; its certificates are revoked first, so they stay on the CRL."""
    from roost.pki.revocation import revoke_node

    async with runtime.db.session() as s:
        node = await store.find_node(s, ref, scope)
        await revoke_node(s, node.id, "node deleted")
        mac, site = node.mac, node.site
        ident = {"node": node.id, "mac": mac, "hostname": node.hostname}
        await s.delete(node)
    await runtime.bus.publish("node.deleted", mac, ident, site=site)


async def set_facts(runtime: Runtime, node_id: int, facts: dict[str, Any]) -> NodeOut:
    """Replace a node's hardware facts (a node reporting about itself)."""
    async with runtime.db.session() as s:
        node = await store.find_node(s, node_id)
        node.facts, node.last_seen = facts, utcnow()
        node.updated_at = node.last_seen
        out = await view(s, node)
    await runtime.bus.publish(
        "node.updated",
        node.mac,
        {"node": node.id, "mac": node.mac, "fields": ["facts"]},
        site=node.site,
    )
    return out
