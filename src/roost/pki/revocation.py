"""Revocation: mark a node's certificates revoked, and the CRL built from them.

Revocation needs no propagation: every node request is checked against ``node_certificates``
(see :mod:`roost.pki.nodeauth`), so a revoked certificate is refused on its very next request.
The CRL (RFC 5280 §5) is for relying parties that check offline, such as site services; it
lists revoked certificates until they expire, after which they are refused anyway.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from roost.db.models import utcnow
from roost.pki.ca import CertificateAuthority
from roost.pki.models import CertificateRow

CRL_VALIDITY = timedelta(hours=1)
"""``nextUpdate`` of the CRL: relying parties fetch a fresh one at least this often."""


async def revoke_node(s: AsyncSession, node_id: int, reason: str) -> list[str]:
    """Revoke every live certificate of a node; return their serials."""
    now = utcnow()
    q = select(CertificateRow.serial).where(
        CertificateRow.node_id == node_id, CertificateRow.revoked_at.is_(None)
    )
    serials = list((await s.execute(q)).scalars())
    if serials:
        await s.execute(
            update(CertificateRow)
            .where(CertificateRow.serial.in_(serials))
            .values(revoked_at=now, revoked_reason=reason[:64])
            .execution_options(synchronize_session=False)
        )
    return serials


async def revoke_serial(s: AsyncSession, serial: str, reason: str) -> bool:
    res = await s.execute(
        update(CertificateRow)
        .where(CertificateRow.serial == serial, CertificateRow.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason[:64])
        .execution_options(synchronize_session=False)
    )
    return bool(cast(CursorResult[Any], res).rowcount)


async def crl_pem(s: AsyncSession, ca: CertificateAuthority, now: datetime) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    q = (
        select(CertificateRow.serial, CertificateRow.revoked_at)
        .where(CertificateRow.revoked_at.is_not(None), CertificateRow.not_after > now)
        .order_by(CertificateRow.revoked_at)
    )
    revoked = [
        (int(serial, 16), when) for serial, when in (await s.execute(q)).all() if when is not None
    ]
    return ca.crl(revoked, now, CRL_VALIDITY).public_bytes(Encoding.PEM)
