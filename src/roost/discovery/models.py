"""Discovery's tables: hosts seen, scans with their progress, per-scan results, port history.

``discovery_hosts`` is the current view of each MAC on the site (IP, vendor, first and last
seen, how many sweeps missed it). ``discovery_scans`` records every scan and its outcome;
``discovery_scan_results`` keeps what each scan found (the history), and ``discovery_ports``
keeps one row per (ip, protocol, port) with the first and last time it was seen open.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from roost.db.models import Base, BigID, utcnow


class HostRow(Base):
    __tablename__ = "discovery_hosts"
    __table_args__ = (UniqueConstraint("site", "mac"), Index("ix_discovery_hosts_ip", "site", "ip"))

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(17))
    ip: Mapped[str | None] = mapped_column(String(15))
    vendor: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    missed: Mapped[int] = mapped_column(default=0)
    gone: Mapped[bool] = mapped_column(default=False)


class ScanRow(Base):
    __tablename__ = "discovery_scans"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    targets: Mapped[list[str]] = mapped_column()
    ports: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), index=True)
    percent: Mapped[float] = mapped_column(default=0.0)
    hosts_found: Mapped[int] = mapped_column(default=0)
    ports_found: Mapped[int] = mapped_column(default=0)
    probes: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(String(1024))
    requested_by: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ScanResultRow(Base):
    __tablename__ = "discovery_scan_results"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    scan_id: Mapped[int] = mapped_column(
        ForeignKey("discovery_scans.id", ondelete="CASCADE"), index=True
    )
    ip: Mapped[str] = mapped_column(String(15))
    mac: Mapped[str | None] = mapped_column(String(17))
    protocol: Mapped[str | None] = mapped_column(String(4))
    port: Mapped[int | None] = mapped_column()
    state: Mapped[str] = mapped_column(String(16))


class PortRow(Base):
    __tablename__ = "discovery_ports"
    __table_args__ = (UniqueConstraint("site", "ip", "protocol", "port"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(15), index=True)
    protocol: Mapped[str] = mapped_column(String(4))
    port: Mapped[int] = mapped_column()
    state: Mapped[str] = mapped_column(String(16))
    service: Mapped[str | None] = mapped_column(String(64))
    first_seen_open: Mapped[datetime | None] = mapped_column()
    last_seen_open: Mapped[datetime | None] = mapped_column()
    last_scan_id: Mapped[int | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
