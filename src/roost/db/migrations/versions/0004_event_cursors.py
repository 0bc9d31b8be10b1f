"""Events: cursors, how far each follower of the event stream (the inventory) has applied it,
so that it resumes there after a restart instead of from the moment it starts.

Revision ID: 0004_event_cursors
Revises: 0003_event_indexes
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_event_cursors"
down_revision: str | Sequence[str] | None = "0003_event_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_cursors",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("event_cursors")
