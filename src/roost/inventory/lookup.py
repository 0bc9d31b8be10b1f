"""What other capabilities ask the inventory about one MAC, without going through the API.

The boot renderer uses :func:`node_brief` to pick a profile by name, hostname, architecture
and tags, and :func:`roost.pki.issue_enrollment_token` for the command line's token.
"""

from __future__ import annotations

from dataclasses import dataclass

from roost.db import Database
from roost.errors import Invalid
from roost.inventory import store


@dataclass(frozen=True)
class NodeBrief:
    id: int
    mac: str
    site: str
    state: str
    hostname: str | None
    architecture: str | None
    boot_profile: str | None
    tags: tuple[str, ...]


async def node_brief(db: Database, mac: str) -> NodeBrief | None:
    """The node that owns ``mac`` (any of its interfaces), or None when unknown or malformed."""
    try:
        mac = store.normalize_mac(mac)
    except Invalid:
        return None
    async with db.session() as s:
        node = await store.node_by_mac(s, mac)
        if node is None:
            return None
        return NodeBrief(
            id=node.id,
            mac=node.mac,
            site=node.site,
            state=node.state,
            hostname=node.hostname,
            architecture=node.architecture,
            boot_profile=node.boot_profile,
            tags=tuple(node.tags),
        )
