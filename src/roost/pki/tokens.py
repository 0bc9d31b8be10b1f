"""One-time enrollment tokens: issued per node, per MAC or per site; short-lived, single-use.

A token reads ``rnroll_<id>_<secret>`` (no spaces or quotes, so it fits a kernel command line
as ``roost.token=<token>``). Only the SHA-256 of its 256-bit secret is stored, compared in
constant time. Redeeming is one conditional UPDATE (``used_at IS NULL AND expires_at > now``)
whose row count decides, so two racing enrollments cannot both spend the same token on
either database.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from roost.db import Database
from roost.errors import Invalid, NotFound
from roost.inventory.models import NodeRow
from roost.inventory.store import allow_site, check_name, find_node, normalize_mac
from roost.pki.models import EnrollmentTokenRow
from roost.service import Runtime

PREFIX = "rnroll"
_AGE = re.compile(r"^(\d+)([smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class TokenRefused(Exception):
    """The presented token is unknown, used, expired or does not fit; the reason is logged,
    the client only learns that it was refused."""


@dataclass(frozen=True)
class Redeemed:
    """What a spent token allows: a node, a MAC, or any MAC in a site."""

    id: str
    node_id: int | None
    mac: str | None
    site: str | None
    anonymous: bool = False


def parse_ttl(value: str | int | float | timedelta) -> timedelta:
    """``3600``, ``90s``, ``30m``, ``1h``, ``2d`` or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    m = _AGE.match(value.strip())
    if not m:
        raise Invalid(f"ttl {value!r} is not a duration: give seconds or e.g. 90s, 30m, 1h, 2d")
    return timedelta(seconds=int(m[1]) * _UNIT[m[2]])


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_token(
    s: AsyncSession,
    *,
    node_id: int | None,
    mac: str | None,
    site: str | None,
    ttl: timedelta,
    max_ttl: timedelta,
    now: datetime,
    anonymous: bool = False,
) -> tuple[str, EnrollmentTokenRow]:
    if ttl <= timedelta(0) or ttl > max_ttl:
        raise Invalid(f"ttl must be between 1s and {int(max_ttl.total_seconds())}s, got {ttl}")
    if node_id is None and mac is None and site is None:
        raise Invalid("an enrollment token needs a node, a MAC or a site")
    mac = normalize_mac(mac) if mac else None
    if node_id is not None:
        node = await s.get(NodeRow, node_id)
        if node is None:
            raise NotFound(f"no node {node_id}")
        if mac is not None and mac not in {i.mac for i in node.interfaces}:
            raise Invalid(f"MAC {mac} is not an interface of node {node_id}")
        site = node.site
    elif site is not None:
        check_name("site", site)
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    row = EnrollmentTokenRow(
        id=token_id,
        secret_hash=_hash(secret),
        node_id=node_id,
        mac=mac,
        site=site,
        created_at=now,
        expires_at=now + ttl,
        anonymous=anonymous,
    )
    s.add(row)
    await s.flush()
    return f"{PREFIX}_{token_id}_{secret}", row


async def issue_enrollment_token(
    db: Database,
    *,
    node_id: int | None = None,
    mac: str | None = None,
    site: str | None = None,
    ttl: str | int | float | timedelta = 3600,
    max_ttl: timedelta = timedelta(days=7),
) -> str:
    """A fresh one-time token, for the boot renderer to put on a kernel command line as
    ``roost.token=<token>``. Scope: a node (by id), a MAC (the node it becomes or is), or a
    site (any MAC; the node is created there)."""
    async with db.session() as s:
        token, _ = await create_token(
            s,
            node_id=node_id,
            mac=mac,
            site=site,
            ttl=parse_ttl(ttl),
            max_ttl=max_ttl,
            now=datetime.now(UTC),
        )
    return token


async def find(s: AsyncSession, presented: str) -> EnrollmentTokenRow:
    """The stored row of a presented token, its secret checked; TokenRefused otherwise."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        raise TokenRefused("not an enrollment token")
    _, token_id, secret = parts
    row = await s.get(EnrollmentTokenRow, token_id)
    if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
        raise TokenRefused("unknown token")
    return row


async def still_open(s: AsyncSession, token_id: str, now: datetime) -> bool:
    """True while the token is unused and unexpired (a minted token is re-used until then)."""
    row = await s.get(EnrollmentTokenRow, token_id)
    return row is not None and row.used_at is None and row.expires_at > now


async def redeem(s: AsyncSession, presented: str, now: datetime) -> Redeemed:
    """Spend a token inside the caller's transaction (so a failed enrollment rolls it back)."""
    row = await find(s, presented)
    token_id = row.id
    if row.used_at is not None:
        raise TokenRefused(f"token {token_id} was already used")
    if row.expires_at <= now:
        raise TokenRefused(f"token {token_id} expired")
    spent = await s.execute(
        update(EnrollmentTokenRow)
        .where(
            EnrollmentTokenRow.id == token_id,
            EnrollmentTokenRow.used_at.is_(None),
            EnrollmentTokenRow.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], spent).rowcount != 1:
        raise TokenRefused(f"token {token_id} was already used")
    return Redeemed(row.id, row.node_id, row.mac, row.site, row.anonymous)


async def mark_used_by(s: AsyncSession, token_id: str, node_id: int) -> None:
    await s.execute(
        update(EnrollmentTokenRow)
        .where(EnrollmentTokenRow.id == token_id)
        .values(used_by=node_id)
        .execution_options(synchronize_session=False)
    )


async def purge(s: AsyncSession, now: datetime, keep: timedelta = timedelta(days=1)) -> int:
    """Forget tokens that expired more than ``keep`` ago (used or not); return how many."""
    res = await s.execute(
        delete(EnrollmentTokenRow).where(EnrollmentTokenRow.expires_at < now - keep)
    )
    return int(cast(CursorResult[Any], res).rowcount or 0)


async def list_tokens(s: AsyncSession) -> list[EnrollmentTokenRow]:
    q = select(EnrollmentTokenRow).order_by(EnrollmentTokenRow.created_at)
    return list((await s.execute(q)).scalars())


async def create_for(
    runtime: Runtime,
    *,
    node: str | None,
    mac: str | None,
    site: str | None,
    ttl: str | int | None,
    scope: Sequence[str] | None,
) -> tuple[str, EnrollmentTokenRow]:
    """The API's token creation: resolve the node, check the caller's sites, publish."""
    cfg = runtime.settings.nodes
    async with runtime.db.session() as s:
        node_id = (await find_node(s, node, scope)).id if node else None
        if node_id is None and site is None and mac is None:
            site = runtime.settings.site
        if site is not None:
            allow_site(site, scope)
        elif node_id is None and scope is not None:
            raise Invalid("this token is limited to some sites: give --site or --node")
        token, row = await create_token(
            s,
            node_id=node_id,
            mac=mac,
            site=site,
            ttl=parse_ttl(ttl if ttl is not None else cfg.enrollment_ttl_seconds),
            max_ttl=timedelta(seconds=cfg.enrollment_max_ttl_seconds),
            now=datetime.now(UTC),
        )
    await runtime.bus.publish(
        "enroll.token.created",
        row.mac or "",
        {
            "id": row.id,
            "node": row.node_id,
            "mac": row.mac,
            "site": row.site,
            "expires_at": row.expires_at.isoformat(),
        },
        site=row.site,
    )
    return token, row
