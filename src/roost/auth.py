"""API tokens: creation, hashed storage, verification, roles and site scopes.

A token reads ``roost_<id>_<secret>``. Only the SHA-256 of the 256-bit random secret is stored
(a slow password hash buys nothing for a secret of that entropy), compared in constant time.
Roles are ordered: ``viewer`` reads, ``operator`` acts on machines, ``admin`` also manages
tokens and settings. A token may be limited to some sites: it then sees and changes only
objects of those sites (never global ones, whose site is None), and creates, lists and revokes
only tokens no wider than itself (:class:`Principal`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import StringConstraints
from sqlalchemy import func, select

from roost.db import Database
from roost.db.models import TokenRow
from roost.errors import Forbidden, Invalid, NotFound

SiteName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$", max_length=64)
]
"""A site's name in a request body: what the inventory accepts (letters, digits, ``_.:-``)."""


class Role(StrEnum):
    viewer = "viewer"
    operator = "operator"
    admin = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Role.viewer: 1, Role.operator: 2, Role.admin: 3}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, name, role and the sites it may see (None: all)."""

    token_id: str
    name: str
    role: Role
    sites: tuple[str, ...] | None

    def require(self, role: Role) -> None:
        if self.role.rank < role.rank:
            raise Forbidden(f"this needs the {role.name} role; the token has {self.role.name}")

    @property
    def scoped(self) -> bool:
        """True for a token limited to some sites."""
        return self.sites is not None

    def sees(self, site: str | None) -> bool:
        """Whether an object of ``site`` is this token's: global objects (site None) belong to
        unscoped tokens only."""
        return in_scope(site, self.sites)

    def covers(self, sites: Sequence[str] | None) -> bool:
        """Whether a token of ``sites`` lies inside this token's scope: every one of its sites
        is this token's; an unscoped one is inside an unscoped token's only."""
        if self.sites is None:
            return True
        return sites is not None and all(s in self.sites for s in sites)

    def check_grant(self, role: Role, sites: Sequence[str] | None) -> None:
        """Refuse to create a token wider than this one: a higher role, or sites that are not
        all this token's (an unscoped token comes only from an unscoped one)."""
        if role.rank > self.role.rank:
            raise Forbidden(f"role: this token ({self.role.name}) cannot grant {role.name}")
        if self.covers(sites):
            return
        if sites is None:
            raise Forbidden(
                "sites: a token limited to sites may only create tokens limited to some of "
                "them; give sites"
            )
        raise Forbidden("sites: outside the sites of this token")

    def check_site(self, site: str | None, what: str) -> None:
        """Refuse an object outside the token's sites as if it did not exist: the message
        names nothing of it (its name, id or site)."""
        if not self.sees(site):
            raise NotFound(f"no such {what}")

    def site_for_new(self, site: str | None) -> str | None:
        """The site of an object this token creates: the one named, which must be its own; a
        token of exactly one site may leave it out; only an unscoped token makes global ones."""
        if self.sites is None:
            return site
        if site is None:
            if len(self.sites) == 1:
                return self.sites[0]
            raise Invalid("site: required for a token limited to several sites")
        if site not in self.sites:
            raise Forbidden("site: outside the sites of this token")
        return site


def in_scope(site: str | None, sites: Sequence[str] | None) -> bool:
    """The site rule, for callers that hold only a scope (an event filter): everything is in
    the scope None; a site is in a scope that lists it; a global object (site None) is in no
    limited scope."""
    return sites is None or (site is not None and site in sites)


@dataclass(frozen=True)
class IssuedToken:
    id: str
    name: str
    role: str
    sites: list[str] | None
    expires_at: datetime | None
    secret: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_token(
    db: Database,
    name: str,
    role: Role,
    sites: list[str] | None = None,
    expires_at: datetime | None = None,
) -> IssuedToken:
    if not name.strip():
        raise Invalid("token name must not be empty")
    if sites is not None and not sites:
        raise Invalid("sites: give at least one site, or leave it out for every site")
    if expires_at is not None:
        if expires_at.tzinfo is None or expires_at.utcoffset() is None:
            raise Invalid("expires_at: give a time zone, e.g. 2030-01-01T00:00:00Z")
        if expires_at <= datetime.now(UTC):
            raise Invalid("expires_at: must be in the future")
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    async with db.session() as s:
        s.add(
            TokenRow(
                id=token_id,
                name=name,
                role=role.name,
                sites=sites,
                secret_hash=_hash(secret),
                expires_at=expires_at,
            )
        )
    return IssuedToken(token_id, name, role.name, sites, expires_at, f"roost_{token_id}_{secret}")


async def verify_token(db: Database, presented: str) -> Principal | None:
    """The principal for a presented token, or None when it is unknown, revoked or expired."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != "roost":
        return None
    _, token_id, secret = parts
    async with db.session() as s:
        row = await s.get(TokenRow, token_id)
        if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
            return None
        now = datetime.now(UTC)
        if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
            return None
        row.last_used_at = now
        return Principal(
            row.id, row.name, Role[row.role], tuple(row.sites) if row.sites is not None else None
        )


async def token_ended(db: Database, token_id: str) -> str | None:
    """Why a token stopped being valid (``"revoked"``, ``"expired"``; revoked also when it is
    gone), or None while it is valid. Read-only, unlike :func:`verify_token`: open streams
    call it every few seconds and must not write ``last_used_at`` each time."""
    async with db.session() as s:
        row = (
            await s.execute(
                select(TokenRow.revoked_at, TokenRow.expires_at).where(TokenRow.id == token_id)
            )
        ).one_or_none()
    if row is None or row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= datetime.now(UTC):
        return "expired"
    return None


_on_revoke: dict[str, set[Callable[[], None]]] = {}
"""Who to tell at once when a token is revoked in this process (open event streams)."""


@contextmanager
def on_revoke(token_id: str, callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` when :func:`revoke_token` revokes ``token_id`` in this process, while
    the block runs. Other replicas and expiry are not signalled: :func:`token_ended` is."""
    _on_revoke.setdefault(token_id, set()).add(callback)
    try:
        yield
    finally:
        callbacks = _on_revoke.get(token_id)
        if callbacks is not None:
            callbacks.discard(callback)
            if not callbacks:
                del _on_revoke[token_id]


async def list_tokens(db: Database, who: Principal | None = None) -> list[TokenRow]:
    """Every token, or those inside ``who``'s scope (:meth:`Principal.covers`)."""
    async with db.session() as s:
        rows = (await s.execute(select(TokenRow).order_by(TokenRow.created_at))).scalars()
        return [r for r in rows if who is None or who.covers(r.sites)]


async def revoke_token(db: Database, token_id: str, who: Principal | None = None) -> TokenRow:
    """Revoke a token; one outside ``who``'s scope answers as an unknown id would."""
    async with db.session() as s:
        row = await s.get(TokenRow, token_id)
        if row is None or (who is not None and not who.covers(row.sites)):
            raise NotFound(f"no token with id {token_id!r}")
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
    for callback in list(_on_revoke.get(token_id, ())):  # committed: tell its open streams
        callback()
    return row


async def ensure_admin_token(db: Database, data_dir: Path) -> IssuedToken | None:
    """On first start (no live admin token), create one and write it mode 0600."""
    async with db.session() as s:
        live = await s.scalar(
            select(func.count())
            .select_from(TokenRow)
            .where(TokenRow.role == Role.admin.name, TokenRow.revoked_at.is_(None))
        )
    if live:
        return None
    issued = await create_token(db, "admin (first start)", Role.admin)
    path = data_dir / "admin-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(issued.secret + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, 0o600)
    return issued
