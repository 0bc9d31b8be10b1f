"""DHCP: subnets, reservations and leases.

Revision ID: 0002_dhcp
Revises: 0001_foundation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_dhcp"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("dhcp",)
depends_on: str | Sequence[str] | None = None

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "dhcp_subnets",
        sa.Column("id", BigID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "dhcp_reservations",
        sa.Column("mac", sa.String(17), primary_key=True),
        sa.Column("ip", sa.String(15), nullable=False, unique=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "dhcp_leases",
        sa.Column("ip", BigID, primary_key=True, autoincrement=False),
        sa.Column("address", sa.String(15), nullable=False),
        sa.Column("client", sa.LargeBinary(256), nullable=False),
        sa.Column("mac", sa.String(47), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("subnet_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("starts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_dhcp_leases_mac", "dhcp_leases", ["mac"])


def downgrade() -> None:
    op.drop_table("dhcp_leases")
    op.drop_table("dhcp_reservations")
    op.drop_table("dhcp_subnets")
