"""Boot capability: boot profiles and rules belong to a site (NULL: global, for unscoped tokens).

Revision ID: 0005_sites_httpboot
Revises: 0002_httpboot
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_sites_httpboot"
down_revision: str | Sequence[str] | None = "0002_httpboot"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("boot_profiles", "boot_rules")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("site", sa.String(64), nullable=True))
            batch.create_index(f"ix_{table}_site", ["site"])


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_site")
            batch.drop_column("site")
