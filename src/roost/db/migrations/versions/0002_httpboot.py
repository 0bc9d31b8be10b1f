"""Boot capability: boot files, boot profiles and profile rules.

Revision ID: 0002_httpboot
Revises: 0001_foundation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_httpboot"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("httpboot",)
depends_on: str | Sequence[str] | None = None

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "boot_files",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("arch", sa.String(32), nullable=True),
        sa.Column("content_type", sa.String(128), nullable=False),
        sa.Column("node", sa.String(17), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_boot_files_sha256", "boot_files", ["sha256"])
    op.create_index("ix_boot_files_node", "boot_files", ["node"])
    op.create_table(
        "boot_profiles",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("kernel", sa.String(1024), nullable=True),
        sa.Column("initrds", sa.JSON(), nullable=False),
        sa.Column("cmdline", sa.Text(), nullable=False),
        sa.Column("templates", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "boot_rules",
        sa.Column("id", BigID, primary_key=True, autoincrement=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("arch", sa.String(32), nullable=True),
        sa.Column("mac", sa.String(17), nullable=True),
        sa.Column("tag", sa.String(64), nullable=True),
        sa.Column("node", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("boot_rules")
    op.drop_table("boot_profiles")
    op.drop_table("boot_files")
