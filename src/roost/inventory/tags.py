"""MAC → tags in memory, so DHCP's per-tag boot overrides never wait on the database.

The DHCP packet path calls ``tags_for(mac)`` synchronously for every boot decision. This
cache is loaded once at start and kept current from the inventory's own events
(``node.updated``, ``node.deleted``, ``node.state.changed``), one node at a time.
"""

from __future__ import annotations

from sqlalchemy import select

from roost.db import Database
from roost.inventory import store
from roost.inventory.models import NodeRow


class TagCache:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._tags: dict[str, frozenset[str]] = {}

    def tags_for(self, mac: str) -> set[str]:
        return set(self._tags.get(mac.lower(), ()))

    def _put(self, node: NodeRow) -> None:
        tags = frozenset(node.tags)
        for mac in {node.mac, *(i.mac for i in node.interfaces)}:
            if tags:
                self._tags[mac] = tags
            else:
                self._tags.pop(mac, None)

    async def load(self) -> None:
        async with self.db.session() as s:
            nodes = (await s.execute(select(NodeRow))).scalars().all()
        self._tags.clear()
        for node in nodes:
            self._put(node)

    async def refresh(self, mac: str) -> None:
        """Re-read one node (or forget its MAC when it is gone)."""
        mac = store.normalize_mac(mac)
        async with self.db.session() as s:
            node = await store.node_by_mac(s, mac)
        if node is None:
            self._tags.pop(mac, None)
        else:
            self._put(node)
