"""Migration 0002_nodes creates exactly what the inventory and PKI models describe."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

import roost.inventory.models
import roost.pki.models
from roost.db.models import Base
from roost.service import Runtime

TABLES = {
    "sites",
    "nodes",
    "node_interfaces",
    "node_tags",
    "node_history",
    "enrollment_tokens",
    "node_certificates",
}


def _table(diff: Any) -> str | None:
    op = diff[0] if isinstance(diff, list) else diff
    for item in op[1:]:
        name = getattr(item, "name", None) if not isinstance(item, str) else None
        table = getattr(item, "table", None)
        if table is not None:
            return str(table.name)
        if name in TABLES:
            return str(name)
        if isinstance(item, str) and item in TABLES:
            return item
    return None


async def test_migration_matches_models(runtime: Runtime) -> None:
    for model in (roost.inventory.models.NodeRow, roost.pki.models.CertificateRow):
        assert model.__tablename__ in Base.metadata.tables

    def diff(conn: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))

    async with runtime.db.engine.connect() as conn:
        found = await conn.run_sync(diff)
    mine = [d for d in found if _table(d) in TABLES]
    assert mine == []
