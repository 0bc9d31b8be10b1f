"""Sites and tags as first-class listings: each with the number of nodes it holds."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from roost.inventory import store
from roost.inventory.models import NodeRow, SiteRow, TagRow
from roost.service import Runtime


class SiteIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=255)


class SiteOut(SiteIn):
    nodes: int = 0


class TagOut(BaseModel):
    tag: str
    nodes: int


async def list_sites(runtime: Runtime, scope: Sequence[str] | None) -> list[SiteOut]:
    counts = select(NodeRow.site, func.count()).group_by(NodeRow.site)
    async with runtime.db.session() as s:
        n = {site: count for site, count in (await s.execute(counts)).all()}
        rows = (await s.execute(select(SiteRow).order_by(SiteRow.name))).scalars()
        return [
            SiteOut(name=r.name, description=r.description, nodes=n.get(r.name, 0))
            for r in rows
            if scope is None or r.name in scope
        ]


async def add_site(runtime: Runtime, site: SiteIn, scope: Sequence[str] | None) -> SiteOut:
    store.allow_site(site.name, scope)
    async with runtime.db.session() as s:
        await store.ensure_site(s, site.name)
        row = await s.get(SiteRow, site.name)
        assert row is not None
        row.description = site.description
    await runtime.bus.publish("site.updated", site.name, site.model_dump(), site=site.name)
    return SiteOut(name=site.name, description=site.description)


async def list_tags(
    runtime: Runtime, scope: Sequence[str] | None, site: str | None = None
) -> list[TagOut]:
    q = select(TagRow.tag, func.count()).join(NodeRow, NodeRow.id == TagRow.node_id)
    if site is not None:
        q = q.where(NodeRow.site == site)
    if scope is not None:
        q = q.where(NodeRow.site.in_(list(scope)))
    q = q.group_by(TagRow.tag).order_by(TagRow.tag)
    async with runtime.db.session() as s:
        return [TagOut(tag=t, nodes=c) for t, c in (await s.execute(q)).all()]
