"""What the inventory knows about a node, as the boot capability needs it.

Rules can choose a profile by the node's name or tags, and the inventory can pin a node to a
profile (``boot_profile``); both come from here. The node's recorded architecture is used
only when it is one of the boot architectures Roost names (``bios``, ``x86_64-efi``, …);
a CPU architecture such as ``x86_64`` says nothing about the firmware. The node's site decides
which rules and profiles apply to it and which tokens see its node-private files.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from roost.boot.documents import NodeLookup
from roost.boot.names import ARCHES
from roost.boot.profiles import NodeInfo
from roost.db import Database
from roost.inventory.store import node_by_mac, nodes_by_macs


def inventory_lookup(db: Database) -> NodeLookup:
    async def lookup(mac: str) -> NodeInfo | None:
        async with db.session() as s:
            node = await node_by_mac(s, mac)
            if node is None:
                return None
            return NodeInfo(
                mac=mac,
                name=node.hostname,
                hostname=node.hostname,
                arch=node.architecture if node.architecture in ARCHES else None,
                tags=tuple(node.tags),
                profile=node.boot_profile,
                site=node.site,
            )

    return lookup


def inventory_sites(db: Database) -> Callable[[Collection[str]], Awaitable[dict[str, str]]]:
    async def sites(macs: Collection[str]) -> dict[str, str]:
        if not macs:
            return {}
        async with db.session() as s:
            return {mac: node.site for mac, node in (await nodes_by_macs(s, macs)).items()}

    return sites
