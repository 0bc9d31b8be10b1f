"""API tokens: creation, hashed storage, verification, roles and site scopes.

A token reads ``roost_<id>_<secret>``. Only the SHA-256 of the 256-bit random secret is stored
(a slow password hash buys nothing for a secret of that entropy), compared in constant time.
Roles are ordered: ``viewer`` reads, ``operator`` acts on machines, ``admin`` also manages
tokens and settings. A token may be limited to some sites.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import func, select

from roost.db import Database
from roost.db.models import TokenRow
from roost.errors import Forbidden, Invalid, NotFound


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
        return self.sites is None or (site is not None and site in self.sites)

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
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise Invalid("expires_at must be in the future")
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


async def list_tokens(db: Database) -> list[TokenRow]:
    async with db.session() as s:
        return list((await s.execute(select(TokenRow).order_by(TokenRow.created_at))).scalars())


async def revoke_token(db: Database, token_id: str) -> TokenRow:
    async with db.session() as s:
        row = await s.get(TokenRow, token_id)
        if row is None:
            raise NotFound(f"no token with id {token_id!r}")
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
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
