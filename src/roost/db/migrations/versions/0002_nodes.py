"""Nodes: sites, nodes, interfaces, tags, lifecycle history, enrollment tokens, certificates.

Revision ID: 0002_nodes
Revises: 0001_foundation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_nodes"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("nodes",)
depends_on: str | Sequence[str] | None = None

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "nodes",
        sa.Column("id", BigID, primary_key=True, autoincrement=True),
        sa.Column("hostname", sa.String(253), nullable=True, unique=True),
        sa.Column("site", sa.String(64), sa.ForeignKey("sites.name"), nullable=False),
        sa.Column("mac", sa.String(17), nullable=False, unique=True),
        sa.Column("ip", sa.String(45), nullable=True),
        sa.Column("architecture", sa.String(32), nullable=True),
        sa.Column("vendor", sa.String(128), nullable=True),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("boot_profile", sa.String(128), nullable=True),
        sa.Column("power_driver", sa.String(64), nullable=True),
        sa.Column("power_settings", sa.JSON(), nullable=False),
        sa.Column("power_secrets", sa.Text(), nullable=True),
        sa.Column("power_state", sa.String(16), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_reason", sa.String(255), nullable=False),
        sa.Column("last_seen", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_nodes_site", "nodes", ["site"])
    op.create_index("ix_nodes_state", "nodes", ["state"])
    op.create_table(
        "node_interfaces",
        sa.Column("id", BigID, primary_key=True, autoincrement=True),
        sa.Column("node_id", BigID, sa.ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("mac", sa.String(17), nullable=False, unique=True),
        sa.Column("name", sa.String(32), nullable=True),
        sa.Column("addresses", sa.JSON(), nullable=False),
    )
    op.create_index("ix_node_interfaces_node_id", "node_interfaces", ["node_id"])
    op.create_table(
        "node_tags",
        sa.Column("id", BigID, primary_key=True, autoincrement=True),
        sa.Column("node_id", BigID, sa.ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.UniqueConstraint("node_id", "tag"),
    )
    op.create_index("ix_node_tags_node_id", "node_tags", ["node_id"])
    op.create_index("ix_node_tags_tag", "node_tags", ["tag"])
    op.create_table(
        "node_history",
        sa.Column("id", BigID, primary_key=True, autoincrement=True),
        sa.Column("node_id", BigID, sa.ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("time", TS, nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(255), nullable=False),
    )
    op.create_index("ix_node_history_node_id", "node_history", ["node_id"])
    op.create_table(
        "enrollment_tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("node_id", BigID, sa.ForeignKey("nodes.id", ondelete="CASCADE"), nullable=True),
        sa.Column("mac", sa.String(17), nullable=True),
        sa.Column("site", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.Column("used_by", BigID, nullable=True),
    )
    op.create_index("ix_enrollment_tokens_node_id", "enrollment_tokens", ["node_id"])
    op.create_table(
        "node_certificates",
        sa.Column("serial", sa.String(40), primary_key=True),
        sa.Column("node_id", BigID, sa.ForeignKey("nodes.id", ondelete="SET NULL"), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
        sa.Column("not_before", TS, nullable=False),
        sa.Column("not_after", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoked_reason", sa.String(64), nullable=False),
        sa.Column("pem", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_node_certificates_node_id", "node_certificates", ["node_id"])
    op.create_index("ix_node_certificates_not_after", "node_certificates", ["not_after"])


def downgrade() -> None:
    for table in (
        "node_certificates",
        "enrollment_tokens",
        "node_history",
        "node_tags",
        "node_interfaces",
        "nodes",
        "sites",
    ):
        op.drop_table(table)
