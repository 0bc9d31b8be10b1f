"""Enrollment policy: a node's enrollment generation, recommission flag and pending
enrollment; whether an enrollment token was minted for an anonymous boot render.

Revision ID: 0005_enroll_policy
Revises: 0002_nodes
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_enroll_policy"
down_revision: str | Sequence[str] | None = "0002_nodes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as t:
        t.add_column(
            sa.Column("enroll_generation", sa.Integer(), nullable=False, server_default="0")
        )
        t.add_column(
            sa.Column("recommission", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        t.add_column(sa.Column("pending", sa.JSON(), nullable=True))
    with op.batch_alter_table("enrollment_tokens") as t:
        t.add_column(
            sa.Column("anonymous", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("enrollment_tokens") as t:
        t.drop_column("anonymous")
    with op.batch_alter_table("nodes") as t:
        t.drop_column("pending")
        t.drop_column("recommission")
        t.drop_column("enroll_generation")
