"""Boot files (streamed in and out), boot profiles, profile rules, and rendered previews.

Uploads are the raw request body, streamed to the store without holding the file in memory;
the store acknowledges only once the bytes and their name are durable. Node-private files and
previews (which contain node tokens) need the operator role; public files can be read by
viewers.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import datetime

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import BaseModel

from roost.api.deps import Operator, RuntimeDep, Viewer
from roost.auth import Role
from roost.boot.documents import Documents
from roost.boot.names import check_arch, check_file_name, normalize_mac
from roost.boot.profiles import Profile, ProfileBook, ProfileIn, Rule, RuleIn
from roost.boot.render import TemplateKind
from roost.boot.service import BootService, node_lookup, store_for, tokens_for
from roost.boot.store import TooLarge
from roost.errors import Conflict, Invalid, NotFound
from roost.service import Runtime

router = APIRouter(prefix="/boot", tags=["boot"])


class BootFileOut(BaseModel):
    name: str
    sha256: str
    size: int
    arch: str | None
    content_type: str
    node: str | None
    created_at: datetime


def _book(runtime: Runtime) -> ProfileBook:
    return ProfileBook(runtime.db)


# -- files ---------------------------------------------------------------------------------------


@router.get("/files", response_model=list[BootFileOut])
async def list_files(runtime: RuntimeDep, _: Viewer) -> list[BootFileOut]:
    return [BootFileOut(**asdict(f)) for f in await store_for(runtime).files()]


@router.put(
    "/files/{name:path}",
    response_model=BootFileOut,
    status_code=201,
    # streamed to disk, never held in memory: the store's boot.max_file_size bounds it
    max_body_size=sys.maxsize,
)
async def put_file(
    name: str,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    who: Operator,
    arch: str | None = Query(None, description="architecture the file is for, e.g. bios"),
    node: str | None = Query(None, description="MAC of the only node that may fetch it"),
    content_type: str | None = Query(None, max_length=128, description="default: from name"),
) -> BootFileOut:
    """Store the raw request body under ``name`` (replacing an older file of that name)."""
    check_file_name(name)
    if arch:
        check_arch(arch)
    store = store_for(runtime)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > store.max_size:
        raise TooLarge(f"{name}: {declared} B is over boot.max_file_size ({store.max_size} B)")
    existed = await store.get(name) is not None
    stored = await store.put(
        name, request.stream(), arch=arch, content_type=content_type, node=node
    )
    if existed:
        response.status_code = 200
    await runtime.bus.publish(
        "boot.file.stored",
        name,
        {"name": name, "sha256": stored.sha256, "size": stored.size, "by": who.token_id},
    )
    return BootFileOut(**asdict(stored))


@router.get(
    "/files/{name:path}",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def get_file(name: str, request: Request, runtime: RuntimeDep, who: Viewer) -> FileResponse:
    """The file's bytes (Range and ETag supported); node-private files need an operator."""
    store = store_for(runtime)
    found = await store.get(check_file_name(name))
    if found is None:
        raise NotFound(f"no boot file {name!r} (see GET /api/v1/boot/files)")
    if found.node is not None:
        who.require(Role.operator)
    return FileResponse(
        store.blob_path(found.sha256),
        media_type=found.content_type,
        headers={"etag": f'"{found.sha256}"', "x-sha256": found.sha256},
    )


@router.delete("/files/{name:path}", response_model=BootFileOut)
async def delete_file(name: str, runtime: RuntimeDep, who: Operator) -> BootFileOut:
    gone = await store_for(runtime).delete(check_file_name(name))
    await runtime.bus.publish("boot.file.deleted", name, {"name": name, "by": who.token_id})
    return BootFileOut(**asdict(gone))


# -- profiles and rules --------------------------------------------------------------------------


@router.get("/profiles", response_model=list[Profile])
async def list_profiles(runtime: RuntimeDep, _: Viewer) -> list[Profile]:
    return await _book(runtime).profiles()


@router.get("/profiles/{name}", response_model=Profile)
async def get_profile(name: str, runtime: RuntimeDep, _: Viewer) -> Profile:
    return await _book(runtime).get(name)


@router.put("/profiles/{name}", response_model=Profile, status_code=201)
async def put_profile(
    name: str,
    body: ProfileIn,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    who: Operator,
) -> Profile:
    """Create or replace a profile; templates are checked for syntax before it is stored.
    With ``If-None-Match: *`` an existing profile is left alone (409)."""
    book = _book(runtime)
    if request.headers.get("if-none-match", "").strip() == "*":
        try:
            await book.get(name)
        except NotFound:
            pass
        else:
            raise Conflict(f"profile {name!r} exists; replace it on purpose (roost … --replace)")
    profile, created = await book.put(name, body)
    if not created:
        response.status_code = 200
    await runtime.bus.publish("boot.profile.saved", name, {"name": name, "by": who.token_id})
    return profile


@router.delete("/profiles/{name}", response_model=Profile)
async def delete_profile(name: str, runtime: RuntimeDep, who: Operator) -> Profile:
    gone = await _book(runtime).delete(name)
    await runtime.bus.publish("boot.profile.deleted", name, {"name": name, "by": who.token_id})
    return gone


@router.get("/rules", response_model=list[Rule])
async def list_rules(runtime: RuntimeDep, _: Viewer) -> list[Rule]:
    return await _book(runtime).rules()


@router.post("/rules", response_model=Rule, status_code=201)
async def add_rule(body: RuleIn, runtime: RuntimeDep, who: Operator) -> Rule:
    """Add a rule; rules are tried by ascending priority, then age; first match wins."""
    rule = await _book(runtime).add_rule(body)
    await runtime.bus.publish(
        "boot.rule.added", str(rule.id), {**rule.model_dump(), "by": who.token_id}
    )
    return rule


@router.delete("/rules/{rule_id}", response_model=Rule)
async def delete_rule(rule_id: int, runtime: RuntimeDep, who: Operator) -> Rule:
    gone = await _book(runtime).delete_rule(rule_id)
    await runtime.bus.publish(
        "boot.rule.deleted", str(rule_id), {"id": rule_id, "by": who.token_id}
    )
    return gone


# -- preview -------------------------------------------------------------------------------------


def _documents(runtime: Runtime) -> Documents:
    svc = runtime.service("boot")
    if isinstance(svc, BootService) and svc.documents is not None:
        return svc.documents
    boot = runtime.settings.boot
    return Documents(
        _book(runtime), tokens_for(runtime), boot.default_profile, lookup=node_lookup(runtime)
    )


@router.get("/render/{mac}/{kind}", response_class=PlainTextResponse)
async def render(
    mac: str,
    kind: TemplateKind,
    runtime: RuntimeDep,
    _: Operator,
    arch: str | None = None,
    ip: str = "0.0.0.0",
    http_base: str | None = Query(None, description="default: boot.public_url"),
) -> PlainTextResponse:
    """What node ``mac`` would be served as ``kind`` (it contains the node's tokens)."""
    boot = runtime.settings.boot
    base = http_base or boot.public_url
    if not base:
        raise Invalid("pass http_base=http://<boot server>:<port> or set boot.public_url")
    done = await _documents(runtime).render(
        kind,
        normalize_mac(mac),
        ip=ip,
        arch=check_arch(arch) if arch else None,
        http_base=base.rstrip("/"),
    )
    return PlainTextResponse(done.text, headers={"x-roost-profile": done.profile})
