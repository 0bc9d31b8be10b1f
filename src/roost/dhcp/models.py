"""Database tables of the DHCP server: live configuration and durable leases.

Subnets and reservations keep their API body as JSON (``spec``) beside the columns that must
be unique. A subnet's site is a column of its own (NULL: global, for unscoped tokens only); a
reservation has the site of the subnet its address is on, a lease that of its ``subnet_id``.
The leases table has one row per address (primary key), which is what makes "one address, one
client" hold on disk as well as in memory.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from roost.db.models import Base, BigID, utcnow


class DHCPSubnetRow(Base):
    __tablename__ = "dhcp_subnets"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    site: Mapped[str | None] = mapped_column(String(64), nullable=True)
    spec: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DHCPReservationRow(Base):
    __tablename__ = "dhcp_reservations"

    mac: Mapped[str] = mapped_column(String(17), primary_key=True)
    ip: Mapped[str] = mapped_column(String(15), unique=True)
    spec: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DHCPLeaseRow(Base):
    __tablename__ = "dhcp_leases"

    ip: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    address: Mapped[str] = mapped_column(String(15))
    client: Mapped[bytes] = mapped_column(LargeBinary(256))
    mac: Mapped[str] = mapped_column(String(47), index=True)
    hostname: Mapped[str] = mapped_column(String(255), default="")
    subnet_id: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    starts: Mapped[datetime]
    expires: Mapped[datetime]
