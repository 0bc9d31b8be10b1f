"""Boot profiles (what a node boots) and the rules that choose one for a node.

A profile is a kernel, its initrds (store names or URLs), a command line and optional
templates per document kind; the built-in ``local`` profile boots from disk and cannot be
changed or removed. A node the inventory pinned to a profile boots that one. Otherwise rules
are tried in ``(priority, id)`` order; the first whose every given condition (architecture,
MAC, tag, node name) holds wins, and a rule with no condition matches everyone. When none
matches, ``boot.default_profile`` applies. :func:`choose` is pure so the selection is tested
without a database; :class:`ProfileBook` stores both.

Profiles and rules belong to a site or are global (site None). A rule matches only nodes of its
own site (a global one every node), and a node boots only a profile of its own site or a global
one, so what one site's operators change can never reach another site's nodes. What a token
sees and changes is decided by :class:`~roost.auth.Principal`; ``who=None`` is Roost itself
(the boot server), which sees everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from roost.auth import Principal
from roost.boot.models import BootProfileRow, BootRuleRow
from roost.boot.names import check_arch, check_file_name, check_profile_name, normalize_mac
from roost.boot.render import LOCAL_IPXE, TemplateKind, compile_template
from roost.db import Database
from roost.db.models import utcnow
from roost.errors import Conflict, Forbidden, Invalid, NotFound

LOCAL = "local"
_URL_SCHEMES = ("http://", "https://", "tftp://")
_SITE_HELP = "its site; default: the token's one site, global for an unscoped token"


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
    site: str | None = Field(
        default=None, min_length=1, max_length=64, description=f"{_SITE_HELP}; kept on replace"
    )

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
    site: str | None = Field(
        default=None, min_length=1, max_length=64, description=f"{_SITE_HELP}; matches its nodes"
    )

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
    site: str | None = None
    """The node's site; only that site's rules and profiles (and global ones) apply to it."""


def fits(site: str | None, node: NodeInfo) -> bool:
    """Whether a rule or profile of ``site`` may apply to ``node``: global ones apply to all."""
    return site is None or site == node.site


def matches(rule: RuleIn, node: NodeInfo, arch: str | None) -> bool:
    return (
        fits(rule.site, node)
        and (rule.arch is None or rule.arch == arch)
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
        site=row.site,
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
        site=row.site,
    )


def _no_profile(name: str) -> NotFound:
    # the same words whether it is missing or another site's: they tell nothing of the latter
    return NotFound(f"no boot profile {name!r} (see GET /api/v1/boot/profiles)")


def _no_rule(rule_id: int) -> NotFound:
    return NotFound(f"no boot rule {rule_id} (see GET /api/v1/boot/rules)")


class ProfileBook:
    """Profiles and rules in the database; constructed without I/O.

    The API passes the calling token (``who``): a profile or rule outside its sites is
    answered as if it did not exist."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, name: str, who: Principal | None = None) -> Profile:
        if name == LOCAL:
            return LOCAL_PROFILE
        async with self.db.session() as s:
            row = await s.get(BootProfileRow, name)
            if row is None or (who is not None and not who.sees(row.site)):
                raise _no_profile(name)
            return _profile(row)

    async def profiles(self, who: Principal | None = None) -> list[Profile]:
        async with self.db.session() as s:
            rows = (await s.execute(select(BootProfileRow).order_by(BootProfileRow.name))).scalars()
            mine = (_profile(r) for r in rows if who is None or who.sees(r.site))
            return [LOCAL_PROFILE, *mine]

    async def put(self, name: str, body: ProfileIn, who: Principal) -> tuple[Profile, bool]:
        """Create or replace; returns the profile and whether it was created. A replaced
        profile keeps its site unless the body names one."""
        check_profile_name(name)
        if name == LOCAL:
            raise Forbidden("the local profile is built in; give yours another name")
        async with self.db.session() as s:
            row = await s.get(BootProfileRow, name)
            if row is not None and not who.sees(row.site):
                raise _no_profile(name)
            created = row is None
            if row is None or "site" in body.model_fields_set:
                site = who.site_for_new(body.site)
            else:
                site = row.site
            if row is None:
                row = BootProfileRow(name=name, created_at=utcnow())
                s.add(row)
            elif site != row.site and await _rules_using(s, name):
                raise Conflict(f"rules use profile {name!r}; remove them before moving it")
            row.site = site
            row.description, row.kernel, row.initrds = body.description, body.kernel, body.initrds
            row.cmdline, row.templates = (
                body.cmdline,
                {str(k): v for k, v in body.templates.items()},
            )
            row.updated_at = utcnow()
            await s.flush()
            return _profile(row), created

    async def delete(self, name: str, who: Principal) -> Profile:
        if name == LOCAL:
            raise Forbidden("the local profile is built in and cannot be removed")
        async with self.db.session() as s:
            row = await s.get(BootProfileRow, name)
            if row is None or not who.sees(row.site):
                raise _no_profile(name)
            # a rule uses a profile of its own site or a global one, and only an unscoped
            # token (which sees every rule) deletes a global profile: the count tells nothing
            used = await _rules_using(s, name)
            if used:
                raise Conflict(f"{used} rule(s) use profile {name!r}; remove them first")
            gone = _profile(row)
            await s.delete(row)
            return gone

    async def rules(self, who: Principal | None = None) -> list[Rule]:
        async with self.db.session() as s:
            q = select(BootRuleRow).order_by(BootRuleRow.priority, BootRuleRow.id)
            rows = (await s.execute(q)).scalars()
            return [_rule(r) for r in rows if who is None or who.sees(r.site)]

    async def add_rule(self, body: RuleIn, who: Principal) -> Rule:
        site = who.site_for_new(body.site)
        profile = await self.get(body.profile, who)  # NotFound names only what was asked for
        if profile.site is not None and profile.site != site:
            raise Invalid(
                f"profile: {body.profile!r} is of site {profile.site!r}; a rule may use only "
                "a profile of its own site or a global one"
            )
        async with self.db.session() as s:
            row = BootRuleRow(**{**body.model_dump(), "site": site}, created_at=utcnow())
            s.add(row)
            await s.flush()
            return _rule(row)

    async def delete_rule(self, rule_id: int, who: Principal) -> Rule:
        async with self.db.session() as s:
            row = await s.get(BootRuleRow, rule_id)
            if row is None or not who.sees(row.site):
                raise _no_rule(rule_id)
            gone = _rule(row)
            await s.delete(row)
            return gone

    async def select(self, node: NodeInfo, arch: str | None, default: str) -> Profile:
        """The profile for ``node``: its pinned one, else the rules' choice; a name that does
        not exist (any more) or names another site's profile falls back to ``default``."""
        name = node.profile or choose(await self.rules(), node, arch, default)
        for candidate in (name, default):
            try:
                profile = await self.get(candidate)
            except NotFound:
                continue
            if fits(profile.site, node):
                return profile
        return LOCAL_PROFILE


async def _rules_using(s: AsyncSession, profile: str) -> int:
    q = select(func.count()).select_from(BootRuleRow).where(BootRuleRow.profile == profile)
    used: int = (await s.execute(q)).scalar_one()
    return used
