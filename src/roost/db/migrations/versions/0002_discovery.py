"""Discovery: hosts, scans, per-scan results and port history.

Revision ID: 0002_discovery
Revises: 0001_foundation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_discovery"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("discovery",)
depends_on: str | Sequence[str] | None = None

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "discovery_hosts",
        sa.Column("id", BigID, primary_key=True, autoincrement=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("mac", sa.String(17), nullable=False),
        sa.Column("ip", sa.String(15), nullable=True),
        sa.Column("vendor", sa.String(255), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("missed", sa.Integer(), nullable=False),
        sa.Column("gone", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("site", "mac"),
    )
    op.create_index("ix_discovery_hosts_ip", "discovery_hosts", ["site", "ip"])
    op.create_table(
        "discovery_scans",
        sa.Column("id", BigID, primary_key=True, autoincrement=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("ports", sa.String(255), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("percent", sa.Float(), nullable=False),
        sa.Column("hosts_found", sa.Integer(), nullable=False),
        sa.Column("ports_found", sa.Integer(), nullable=False),
        sa.Column("probes", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(1024), nullable=True),
        sa.Column("requested_by", sa.String(64), nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("stats", sa.JSON(), nullable=False),
    )
    op.create_index("ix_discovery_scans_site", "discovery_scans", ["site"])
    op.create_index("ix_discovery_scans_state", "discovery_scans", ["state"])
    op.create_table(
        "discovery_scan_results",
        sa.Column("id", BigID, primary_key=True, autoincrement=True),
        sa.Column(
            "scan_id",
            BigID,
            sa.ForeignKey("discovery_scans.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("ip", sa.String(15), nullable=False),
        sa.Column("mac", sa.String(17), nullable=True),
        sa.Column("protocol", sa.String(4), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
    )
    op.create_index("ix_discovery_scan_results_scan_id", "discovery_scan_results", ["scan_id"])
    op.create_table(
        "discovery_ports",
        sa.Column("id", BigID, primary_key=True, autoincrement=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("ip", sa.String(15), nullable=False),
        sa.Column("protocol", sa.String(4), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("service", sa.String(64), nullable=True),
        sa.Column("first_seen_open", TS, nullable=True),
        sa.Column("last_seen_open", TS, nullable=True),
        sa.Column("last_scan_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("site", "ip", "protocol", "port"),
    )
    op.create_index("ix_discovery_ports_ip", "discovery_ports", ["ip"])


def downgrade() -> None:
    op.drop_table("discovery_ports")
    op.drop_table("discovery_scan_results")
    op.drop_table("discovery_scans")
    op.drop_table("discovery_hosts")
