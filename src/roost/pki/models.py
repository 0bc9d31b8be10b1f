"""Tables of the certificate authority: one-time enrollment tokens and issued certificates.

Tokens are stored as the SHA-256 of their secret only. Every issued certificate is recorded
by serial, so a request signed with it is checked against this table (revocation is immediate)
and the CRL is built from it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from roost.db.models import Base, BigID, utcnow
from roost.inventory import models as _inventory  # noqa: F401 - defines the nodes table


class EnrollmentTokenRow(Base):
    __tablename__ = "enrollment_tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    node_id: Mapped[int | None] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), nullable=True, index=True
    )
    mac: Mapped[str | None] = mapped_column(String(17), nullable=True)
    site: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    used_by: Mapped[int | None] = mapped_column(BigID, nullable=True)
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Minted for an anonymous boot render (not by an operator): the enrollment policy,
    the DHCP lease check and ``enroll.approve`` apply to it."""


class CertificateRow(Base):
    __tablename__ = "node_certificates"

    serial: Mapped[str] = mapped_column(String(40), primary_key=True)
    node_id: Mapped[int | None] = mapped_column(
        ForeignKey("nodes.id", ondelete="SET NULL"), nullable=True, index=True
    )
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    not_before: Mapped[datetime] = mapped_column()
    not_after: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_reason: Mapped[str] = mapped_column(String(64), default="")
    pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
