"""DHCP: every subnet belongs to a site (its reservations and leases take its site).

Subnets stored before this revision keep site NULL: global, visible to unscoped tokens only
(the migration cannot know the server's site, and guessing it would hand them to that site's
tokens). An unscoped admin gives each one its site with ``PUT /api/v1/dhcp/subnets/NAME``.

Revision ID: 0005_sites_dhcp
Revises: 0002_dhcp
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_sites_dhcp"
down_revision: str | Sequence[str] | None = "0002_dhcp"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dhcp_subnets") as batch:
        batch.add_column(sa.Column("site", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dhcp_subnets") as batch:
        batch.drop_column("site")
