"""Boot files (streamed in and out), boot profiles, profile rules, and rendered previews.

Uploads are the raw request body, streamed to the store without holding the file in memory;
the store acknowledges only once the bytes and their name are durable. Node-private files and
previews (which contain node tokens) need the operator role; public files can be read by
viewers.

Site scopes: profiles and rules belong to a site or are global; a node-private file belongs
to its node's site; a token limited to sites sees and changes only its sites' objects (others
answer 404 in the words a missing one would). Public boot files are global: every token reads
them (the boot server hands them to anyone on the boot LAN), only an unscoped one changes
them. A preview is only of a node of the token's sites.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import datetime

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import BaseModel

from roost.api.deps import Operator, RuntimeDep, Viewer
from roost.auth import Principal, Role
from roost.boot.documents import Documents
from roost.boot.enrollment import EnrollmentGate
from roost.boot.names import check_arch, check_file_name, normalize_mac
from roost.boot.profiles import Profile, ProfileBook, ProfileIn, Rule, RuleIn
from roost.boot.render import TemplateKind
from roost.boot.render_pool import InlineRenderer
from roost.boot.service import BootService, node_lookup, node_sites, store_for, tokens_for
from roost.boot.store import BootFile, TooLarge
from roost.errors import Conflict, Forbidden, Invalid, NotFound
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


def _no_file(name: str) -> NotFound:
    return NotFound(f"no boot file {name!r} (see GET /api/v1/boot/files)")


async def _private_site(runtime: Runtime, mac: str) -> str | None:
    """The site of the node a node-private file is for (None: that MAC is no node)."""
    return (await node_sites(runtime)([mac])).get(mac)


async def _check_change(runtime: Runtime, who: Principal, found: BootFile) -> None:
    """Refuse replacing or deleting a file the token may not change."""
    if found.node is None:
        if who.scoped:
            raise Forbidden(
                "public boot files are global: only a token of every site may change them "
                "(a token limited to sites stores node-private files, ?node=MAC)"
            )
    elif not who.sees(await _private_site(runtime, found.node)):
        raise _no_file(found.name)


# -- files ---------------------------------------------------------------------------------------


@router.get("/files", response_model=list[BootFileOut])
async def list_files(runtime: RuntimeDep, who: Viewer) -> list[BootFileOut]:
    """Public files, and the node-private files of the token's sites' nodes."""
    files = await store_for(runtime).files()
    sites = await node_sites(runtime)({f.node for f in files if f.node is not None})
    return [
        BootFileOut(**asdict(f)) for f in files if f.node is None or who.sees(sites.get(f.node))
    ]


@router.put(
    "/files/{name:path}",
    response_model=BootFileOut,
    status_code=201,
    responses={200: {"model": BootFileOut, "description": "Replaced a file of that name"}},
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
    node = normalize_mac(node) if node else None
    if node is not None:
        who.check_site(await _private_site(runtime, node), f"node {node!r}")
    elif who.scoped:
        raise Forbidden(
            "public boot files are global: a token limited to sites stores only node-private "
            "files (?node=MAC of one of its nodes)"
        )
    store = store_for(runtime)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > store.max_size:
        raise TooLarge(f"{name}: {declared} B is over boot.max_file_size ({store.max_size} B)")
    old = await store.get(name)
    if old is not None:
        await _check_change(runtime, who, old)
    stored = await store.put(
        name, request.stream(), arch=arch, content_type=content_type, node=node
    )
    if old is not None:
        response.status_code = 200
    await runtime.bus.publish(
        "boot.file.stored",
        name,
        {"name": name, "sha256": stored.sha256, "size": stored.size, "by": who.token_id},
        site=await _private_site(runtime, node) if node else None,
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
        raise _no_file(name)
    if found.node is not None:
        if not who.sees(await _private_site(runtime, found.node)):
            raise _no_file(name)
        who.require(Role.operator)
    return FileResponse(
        store.blob_path(found.sha256),
        media_type=found.content_type,
        headers={"etag": f'"{found.sha256}"', "x-sha256": found.sha256},
    )


@router.delete("/files/{name:path}", response_model=BootFileOut)
async def delete_file(name: str, runtime: RuntimeDep, who: Operator) -> BootFileOut:
    store = store_for(runtime)
    found = await store.get(check_file_name(name))
    if found is None:
        raise _no_file(name)
    await _check_change(runtime, who, found)
    site = await _private_site(runtime, found.node) if found.node else None
    gone = await store.delete(name)
    await runtime.bus.publish(
        "boot.file.deleted", name, {"name": name, "by": who.token_id}, site=site
    )
    return BootFileOut(**asdict(gone))


# -- profiles and rules --------------------------------------------------------------------------


@router.get("/profiles", response_model=list[Profile])
async def list_profiles(runtime: RuntimeDep, who: Viewer) -> list[Profile]:
    return await _book(runtime).profiles(who)


@router.get("/profiles/{name}", response_model=Profile)
async def get_profile(name: str, runtime: RuntimeDep, who: Viewer) -> Profile:
    return await _book(runtime).get(name, who)


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
            await book.get(name, who)
        except NotFound:
            pass  # missing, or another site's: put answers the latter as missing
        else:
            raise Conflict(f"profile {name!r} exists; replace it on purpose (roost … --replace)")
    profile, created = await book.put(name, body, who)
    if not created:
        response.status_code = 200
    await runtime.bus.publish(
        "boot.profile.saved", name, {"name": name, "by": who.token_id}, site=profile.site
    )
    return profile


@router.delete("/profiles/{name}", response_model=Profile)
async def delete_profile(name: str, runtime: RuntimeDep, who: Operator) -> Profile:
    gone = await _book(runtime).delete(name, who)
    await runtime.bus.publish(
        "boot.profile.deleted", name, {"name": name, "by": who.token_id}, site=gone.site
    )
    return gone


@router.get("/rules", response_model=list[Rule])
async def list_rules(runtime: RuntimeDep, who: Viewer) -> list[Rule]:
    return await _book(runtime).rules(who)


@router.post("/rules", response_model=Rule, status_code=201)
async def add_rule(body: RuleIn, runtime: RuntimeDep, who: Operator) -> Rule:
    """Add a rule; rules are tried by ascending priority, then age; first match wins. A rule
    of a site matches only that site's nodes."""
    rule = await _book(runtime).add_rule(body, who)
    await runtime.bus.publish(
        "boot.rule.added", str(rule.id), {**rule.model_dump(), "by": who.token_id}, site=rule.site
    )
    return rule


@router.delete("/rules/{rule_id}", response_model=Rule)
async def delete_rule(rule_id: int, runtime: RuntimeDep, who: Operator) -> Rule:
    gone = await _book(runtime).delete_rule(rule_id, who)
    await runtime.bus.publish(
        "boot.rule.deleted", str(rule_id), {"id": rule_id, "by": who.token_id}, site=gone.site
    )
    return gone


# -- preview -------------------------------------------------------------------------------------


def _documents(runtime: Runtime) -> Documents:
    svc = runtime.service("boot")
    if isinstance(svc, BootService) and svc.documents is not None:
        return svc.documents
    boot = runtime.settings.boot
    boot_tokens = tokens_for(runtime)
    return Documents(
        _book(runtime),
        boot_tokens,
        boot.default_profile,
        EnrollmentGate(runtime, boot_tokens),
        lookup=node_lookup(runtime),
        site=runtime.settings.site,
        renderer=InlineRenderer(boot.render_timeout),
        bus=runtime.bus,
        max_output=boot.render_max_output,
    )


@router.get("/render/{mac}/{kind}", response_class=PlainTextResponse)
async def render(
    mac: str,
    kind: TemplateKind,
    runtime: RuntimeDep,
    who: Operator,
    arch: str | None = None,
    ip: str = "0.0.0.0",
    http_base: str | None = Query(None, description="default: boot.public_url"),
) -> PlainTextResponse:
    """What node ``mac`` would be served as ``kind`` (it contains the node's tokens). A token
    limited to sites previews only its sites' nodes."""
    mac = normalize_mac(mac)
    if who.scoped:
        known = await node_lookup(runtime)(mac)
        who.check_site(known.site if known else None, f"node {mac!r}")
    boot = runtime.settings.boot
    base = http_base or boot.public_url
    if not base:
        raise Invalid("pass http_base=http://<boot server>:<port> or set boot.public_url")
    done = await _documents(runtime).render(
        kind,
        mac,
        ip=ip,
        arch=check_arch(arch) if arch else None,
        http_base=base.rstrip("/"),
    )
    return PlainTextResponse(done.text, headers={"x-roost-profile": done.profile})
