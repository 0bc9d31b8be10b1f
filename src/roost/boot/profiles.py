"""Boot profiles (what a node boots) and the rules that choose one for a node.

A profile is a kernel, its initrds (store names or URLs), a command line and optional
templates per document kind; the built-in ``local`` profile boots from disk and cannot be
changed or removed. A node the inventory pinned to a profile boots that one. Otherwise rules
are tried in ``(priority, id)`` order; the first whose every given condition (architecture,
MAC, tag, node name) holds wins, and a rule with no condition matches everyone. When none
matches, ``boot.default_profile`` applies. :func:`choose` is pure so the selection is tested
without a database; :class:`ProfileBook` stores both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import func, select

from roost.boot.models import BootProfileRow, BootRuleRow
from roost.boot.names import check_arch, check_file_name, check_profile_name, normalize_mac
from roost.boot.render import LOCAL_IPXE, TemplateKind, compile_template
from roost.db import Database
from roost.db.models import utcnow
from roost.errors import Conflict, Forbidden, Invalid, NotFound

LOCAL = "local"
_URL_SCHEMES = ("http://", "https://", "tftp://")


def check_source(value: str) -> str:
    """A kernel or initrd is a URL or the name of a file in the boot-file store."""
    if value.startswith(_URL_SCHEMES):
        if any(c.isspace() for c in value):
            raise Invalid(f"{value!r}: a URL may not contain white space")
        return value
    return check_file_name(value)


class ProfileIn(BaseModel):
    """A profile as the API accepts it."""

    description: str = Field(default="", max_length=255)
    kernel: str | None = Field(default=None, max_length=1024, description="store name or URL")
    initrds: list[str] = Field(default_factory=list, max_length=16)
    cmdline: str = Field(default="", max_length=4096, description="Jinja2 template")
    templates: dict[TemplateKind, str] = Field(default_factory=dict)

    @field_validator("kernel")
    @classmethod
    def _kernel(cls, v: str | None) -> str | None:
        return check_source(v) if v else None

    @field_validator("initrds")
    @classmethod
    def _initrds(cls, v: list[str]) -> list[str]:
        return [check_source(x) for x in v]

    @model_validator(mode="after")
    def _complete(self) -> ProfileIn:
        if self.kernel is None and "ipxe" not in self.templates:
            raise ValueError("a profile needs a kernel or an ipxe template")
        if self.initrds and self.kernel is None:
            raise ValueError("initrds need a kernel")
        compile_template(self.cmdline, "cmdline")
        for kind, source in self.templates.items():
            compile_template(source, f"template {kind}")
        return self


class Profile(ProfileIn):
    name: str
    builtin: bool = False
    updated_at: datetime | None = None


LOCAL_PROFILE = Profile(
    name=LOCAL,
    description="boot from the local disk (built in)",
    templates={"ipxe": LOCAL_IPXE},
    builtin=True,
)


class RuleIn(BaseModel):
    profile: str
    priority: int = Field(default=100, ge=0, le=1_000_000, description="lower is tried first")
    arch: str | None = None
    mac: str | None = None
    tag: str | None = Field(default=None, min_length=1, max_length=64)
    node: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("arch")
    @classmethod
    def _arch(cls, v: str | None) -> str | None:
        return check_arch(v) if v else None

    @field_validator("mac")
    @classmethod
    def _mac(cls, v: str | None) -> str | None:
        return normalize_mac(v) if v else None


class Rule(RuleIn):
    id: int


@dataclass(frozen=True)
class NodeInfo:
    """What the inventory knows about a node; everything but ``mac`` may be unknown."""

    mac: str
    name: str | None = None
    hostname: str | None = None
    arch: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    profile: str | None = None
    """A profile the inventory pinned the node to; it wins over every rule."""


def matches(rule: RuleIn, node: NodeInfo, arch: str | None) -> bool:
    return (
        (rule.arch is None or rule.arch == arch)
        and (rule.mac is None or rule.mac == node.mac)
        and (rule.tag is None or rule.tag in node.tags)
        and (rule.node is None or rule.node == node.name)
    )


def choose(rules: list[Rule], node: NodeInfo, arch: str | None, default: str) -> str:
    """Name of the profile for ``node`` booting as ``arch``."""
    for rule in sorted(rules, key=lambda r: (r.priority, r.id)):
        if matches(rule, node, arch):
            return rule.profile
    return default


def _profile(row: BootProfileRow) -> Profile:
    return Profile(
        name=row.name,
        description=row.description,
        kernel=row.kernel,
        initrds=list(row.initrds),
        cmdline=row.cmdline,
        templates=dict(row.templates),
        updated_at=row.updated_at,
    )


def _rule(row: BootRuleRow) -> Rule:
    return Rule(
        id=row.id,
        profile=row.profile,
        priority=row.priority,
        arch=row.arch,
        mac=row.mac,
        tag=row.tag,
        node=row.node,
    )


class ProfileBook:
    """Profiles and rules in the database; constructed without I/O."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, name: str) -> Profile:
        if name == LOCAL:
            return LOCAL_PROFILE
        async with self.db.session() as s:
            row = await s.get(BootProfileRow, name)
            if row is None:
                raise NotFound(f"no boot profile {name!r} (see GET /api/v1/boot/profiles)")
            return _profile(row)

    async def profiles(self) -> list[Profile]:
        async with self.db.session() as s:
            rows = (await s.execute(select(BootProfileRow).order_by(BootProfileRow.name))).scalars()
            return [LOCAL_PROFILE, *(_profile(r) for r in rows)]

    async def put(self, name: str, body: ProfileIn) -> tuple[Profile, bool]:
        """Create or replace; returns the profile and whether it was created."""
        check_profile_name(name)
        if name == LOCAL:
            raise Forbidden("the local profile is built in; give yours another name")
        async with self.db.session() as s:
            row = await s.get(BootProfileRow, name)
            created = row is None
            if row is None:
                row = BootProfileRow(name=name, created_at=utcnow())
                s.add(row)
            row.description, row.kernel, row.initrds = body.description, body.kernel, body.initrds
            row.cmdline, row.templates = (
                body.cmdline,
                {str(k): v for k, v in body.templates.items()},
            )
            row.updated_at = utcnow()
            await s.flush()
            return _profile(row), created

    async def delete(self, name: str) -> Profile:
        if name == LOCAL:
            raise Forbidden("the local profile is built in and cannot be removed")
        async with self.db.session() as s:
            row = await s.get(BootProfileRow, name)
            if row is None:
                raise NotFound(f"no boot profile {name!r}")
            used = (
                await s.execute(
                    select(func.count()).select_from(BootRuleRow).where(BootRuleRow.profile == name)
                )
            ).scalar_one()
            if used:
                raise Conflict(f"{used} rule(s) use profile {name!r}; remove them first")
            gone = _profile(row)
            await s.delete(row)
            return gone

    async def rules(self) -> list[Rule]:
        async with self.db.session() as s:
            q = select(BootRuleRow).order_by(BootRuleRow.priority, BootRuleRow.id)
            return [_rule(r) for r in (await s.execute(q)).scalars()]

    async def add_rule(self, body: RuleIn) -> Rule:
        await self.get(body.profile)  # NotFound names the missing profile
        async with self.db.session() as s:
            row = BootRuleRow(**body.model_dump(), created_at=utcnow())
            s.add(row)
            await s.flush()
            return _rule(row)

    async def delete_rule(self, rule_id: int) -> Rule:
        async with self.db.session() as s:
            row = await s.get(BootRuleRow, rule_id)
            if row is None:
                raise NotFound(f"no boot rule {rule_id} (see GET /api/v1/boot/rules)")
            gone = _rule(row)
            await s.delete(row)
            return gone

    async def select(self, node: NodeInfo, arch: str | None, default: str) -> Profile:
        """The profile for ``node``: its pinned one, else the rules' choice; a name that does
        not exist (any more) falls back to ``default``."""
        name = node.profile or choose(await self.rules(), node, arch, default)
        try:
            return await self.get(name)
        except NotFound:
            return await self.get(default) if name != default else LOCAL_PROFILE
