"""Nodes: inventory, lifecycle, tags, sites, import/export, power; and a node's own record.

Operators and viewers use API tokens (a token limited to sites sees only those nodes). A node
uses its certificate, and only for ``/nodes/self`` — it can read and change nothing else.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from roost.api.deps import Operator, RuntimeDep, Viewer
from roost.api.nodeauth import NodeDep
from roost.inventory import catalog, nodes, powerops, transfer
from roost.inventory.catalog import SiteIn, SiteOut, TagOut
from roost.inventory.nodes import NodePatch, NodeSpec
from roost.inventory.power import BootDevice, PowerAction
from roost.inventory.views import Facts, HistoryOut, NodeOut
from roost.pki import enroll

router = APIRouter(prefix="/nodes", tags=["nodes"])
meta = APIRouter(tags=["nodes"])

SiteQuery = Annotated[str | None, Query(description="only nodes of this site")]
TagQuery = Annotated[list[str], Query(description="only nodes with every one of these tags")]
StateQuery = Annotated[str | None, Query(description="only nodes in this lifecycle state")]


class TagsIn(BaseModel):
    tags: list[str] = Field(min_length=1)


class StateIn(BaseModel):
    state: str = Field(examples=["deploying"])
    reason: str = Field(default="", max_length=255)


class PowerIn(BaseModel):
    action: PowerAction


class BootDeviceIn(BaseModel):
    device: BootDevice


class FactsIn(BaseModel):
    facts: Facts


@router.get("", response_model=list[NodeOut])
async def list_(
    runtime: RuntimeDep,
    who: Viewer,
    site: SiteQuery = None,
    tag: TagQuery = [],  # noqa: B006 - FastAPI reads the default, never mutates it
    state: StateQuery = None,
) -> list[NodeOut]:
    return await nodes.list_nodes(runtime, who.sites, site=site, tags=tag, state=state)


@router.post("", status_code=201, response_model=NodeOut)
async def add(body: NodeSpec, runtime: RuntimeDep, who: Operator) -> NodeOut:
    return await nodes.add_node(runtime, body, who.sites)


@router.get(
    "/export",
    response_model=None,
    summary="Export nodes as JSON or CSV",
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
)
async def export(
    runtime: RuntimeDep,
    who: Viewer,
    format: Literal["json", "csv"] = "json",
    site: SiteQuery = None,
    tag: TagQuery = [],  # noqa: B006
    state: StateQuery = None,
) -> Any:
    found = await nodes.list_nodes(runtime, who.sites, site=site, tags=tag, state=state)
    records = [transfer.export_record(n) for n in found]
    if format == "csv":
        return Response(transfer.to_csv(records), media_type="text/csv")
    return records


@router.post(
    "/import",
    summary="Import nodes from CSV (text/csv) or JSON (a list)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
async def import_(request: Request, runtime: RuntimeDep, who: Operator) -> dict[str, int]:
    specs = transfer.parse(await request.body(), request.headers.get("content-type", ""))
    return await nodes.upsert_nodes(runtime, specs, who.sites)


@router.get("/self", response_model=NodeOut, summary="The calling node's own record")
async def self_(runtime: RuntimeDep, me: NodeDep) -> NodeOut:
    return await nodes.get_node(runtime, str(me.node_id), None)


@router.put("/self/facts", response_model=NodeOut, summary="Replace the calling node's facts")
async def self_facts(body: FactsIn, runtime: RuntimeDep, me: NodeDep) -> NodeOut:
    return await nodes.set_facts(runtime, me.node_id, body.facts)


@router.get("/{node}", response_model=NodeOut)
async def show(node: str, runtime: RuntimeDep, who: Viewer) -> NodeOut:
    return await nodes.get_node(runtime, node, who.sites)


@router.patch("/{node}", response_model=NodeOut)
async def update(node: str, body: NodePatch, runtime: RuntimeDep, who: Operator) -> NodeOut:
    return await nodes.update_node(runtime, node, body, who.sites)


@router.delete("/{node}", status_code=204)
async def remove(node: str, runtime: RuntimeDep, who: Operator) -> None:
    await nodes.delete_node(runtime, node, who.sites)


@router.post("/{node}/tags", response_model=NodeOut)
async def tag(node: str, body: TagsIn, runtime: RuntimeDep, who: Operator) -> NodeOut:
    return await nodes.tag_node(runtime, node, body.tags, (), who.sites)


@router.delete("/{node}/tags/{tag}", response_model=NodeOut)
async def untag(node: str, tag: str, runtime: RuntimeDep, who: Operator) -> NodeOut:
    return await nodes.tag_node(runtime, node, (), (tag,), who.sites)


@router.post("/{node}/state", response_model=NodeOut)
async def state(node: str, body: StateIn, runtime: RuntimeDep, who: Operator) -> NodeOut:
    return await nodes.change_state(runtime, node, body.state, body.reason, who.sites)


@router.get("/{node}/history", response_model=list[HistoryOut])
async def history(node: str, runtime: RuntimeDep, who: Viewer) -> list[HistoryOut]:
    return await nodes.node_history(runtime, node, who.sites)


@router.post("/{node}/revoke", summary="Revoke the node's certificates")
async def revoke(node: str, runtime: RuntimeDep, who: Operator) -> dict[str, list[str]]:
    return {"revoked": await enroll.revoke(runtime, node, who.sites)}


@router.post(
    "/{node}/recommission",
    response_model=NodeOut,
    summary="Let the node's next boot enroll again",
    responses={409: {"description": "the node's state cannot enroll"}},
)
async def recommission(node: str, runtime: RuntimeDep, who: Operator) -> NodeOut:
    return await enroll.recommission(runtime, node, who.sites)


@router.post(
    "/{node}/approve",
    response_model=NodeOut,
    summary="Approve the node's pending enrollment",
    responses={409: {"description": "the node is not pending"}},
)
async def approve(node: str, runtime: RuntimeDep, who: Operator) -> NodeOut:
    return await enroll.approve(runtime, node, who.sites)


@router.post("/{node}/power", summary="Power on, off, cycle, or read the power state")
async def power(node: str, body: PowerIn, runtime: RuntimeDep, who: Operator) -> dict[str, Any]:
    return await powerops.power_action(runtime, node, body.action, who.sites)


@router.post("/{node}/boot-device", summary="Boot from the network (pxe) or disk next time")
async def boot_device(
    node: str, body: BootDeviceIn, runtime: RuntimeDep, who: Operator
) -> dict[str, Any]:
    return await powerops.set_boot_device(runtime, node, body.device, who.sites)


@meta.get("/sites", response_model=list[SiteOut])
async def sites(runtime: RuntimeDep, who: Viewer) -> list[SiteOut]:
    return await catalog.list_sites(runtime, who.sites)


@meta.post("/sites", response_model=SiteOut, status_code=201)
async def add_site(body: SiteIn, runtime: RuntimeDep, who: Operator) -> SiteOut:
    return await catalog.add_site(runtime, body, who.sites)


@meta.get("/tags", response_model=list[TagOut])
async def tags(runtime: RuntimeDep, who: Viewer, site: SiteQuery = None) -> list[TagOut]:
    return await catalog.list_tags(runtime, who.sites, site)
