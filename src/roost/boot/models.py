"""Tables of the boot capability: stored boot files, boot profiles and the rules that pick them.

File contents live on disk as sha256-named blobs (see :mod:`roost.boot.store`); a row here is
the name an operator or a node uses for one blob. Profiles and rules are plain rows so that an
edit takes effect at the next boot without a restart; each belongs to a site or is global.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from roost.db.models import Base, BigID, utcnow


class BootFileRow(Base):
    __tablename__ = "boot_files"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    arch: Mapped[str | None] = mapped_column(String(32), nullable=True)
    content_type: Mapped[str] = mapped_column(String(128))
    node: Mapped[str | None] = mapped_column(String(17), nullable=True, index=True)
    """MAC of the only node that may fetch this file (node-private), or None for everyone."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BootProfileRow(Base):
    __tablename__ = "boot_profiles"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    kernel: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    initrds: Mapped[list[str]] = mapped_column(JSON, default=list)
    cmdline: Mapped[str] = mapped_column(Text, default="")
    templates: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    site: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    """The site whose nodes may boot it, or None (global: changed by unscoped tokens only)."""


class BootRuleRow(Base):
    __tablename__ = "boot_rules"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    profile: Mapped[str] = mapped_column(String(64))
    arch: Mapped[str | None] = mapped_column(String(32), nullable=True)
    mac: Mapped[str | None] = mapped_column(String(17), nullable=True)
    tag: Mapped[str | None] = mapped_column(String(64), nullable=True)
    node: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    site: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    """The only site whose nodes the rule matches, or None (global: every site)."""
