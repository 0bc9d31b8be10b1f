"""Tables of the inventory: sites, nodes, their interfaces, tags and lifecycle history.

A node's MAC addresses live in ``node_interfaces`` (unique across the inventory, so one MAC is
one machine); ``nodes.mac`` repeats the primary (boot) MAC so listings and events need no join.
Power settings are split: plain values in ``power_settings``, secret ones sealed by
:mod:`roost.secrets` in ``power_secrets``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from roost.db.models import Base, BigID, utcnow


class SiteRow(Base):
    __tablename__ = "sites"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NodeRow(Base):
    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    hostname: Mapped[str | None] = mapped_column(String(253), unique=True, nullable=True)
    site: Mapped[str] = mapped_column(ForeignKey("sites.name"), index=True)
    mac: Mapped[str] = mapped_column(String(17), unique=True)
    ip: Mapped[str | None] = mapped_column(String(45), nullable=True)
    architecture: Mapped[str | None] = mapped_column(String(32), nullable=True)
    vendor: Mapped[str | None] = mapped_column(String(128), nullable=True)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    boot_profile: Mapped[str | None] = mapped_column(String(128), nullable=True)
    power_driver: Mapped[str | None] = mapped_column(String(64), nullable=True)
    power_settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    power_secrets: Mapped[str | None] = mapped_column(Text, nullable=True)
    power_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    state_reason: Mapped[str] = mapped_column(String(255), default="")
    last_seen: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    enroll_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Counts the node's enrollments; its boot token is bound to it, so a boot token that
    leaked before an enrollment is worthless after it."""
    recommission: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """An operator asked that the next boot may enroll again (consumed by that enrollment)."""
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """An enrollment waiting for approval: its facts, CSR, token id and address."""

    interfaces: Mapped[list[InterfaceRow]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="InterfaceRow.id"
    )
    tag_rows: Mapped[list[TagRow]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="TagRow.tag"
    )

    @property
    def tags(self) -> list[str]:
        return sorted(t.tag for t in self.tag_rows)


class InterfaceRow(Base):
    __tablename__ = "node_interfaces"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    mac: Mapped[str] = mapped_column(String(17), unique=True)
    name: Mapped[str | None] = mapped_column(String(32), nullable=True)
    addresses: Mapped[list[str]] = mapped_column(JSON, default=list)


class TagRow(Base):
    __tablename__ = "node_tags"
    __table_args__ = (UniqueConstraint("node_id", "tag"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    tag: Mapped[str] = mapped_column(String(64), index=True)


class HistoryRow(Base):
    __tablename__ = "node_history"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    time: Mapped[datetime] = mapped_column(default=utcnow)
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(255), default="")
