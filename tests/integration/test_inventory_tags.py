"""The inventory hands DHCP its tags: ``tags_for(mac)`` answers from memory and follows tag
changes made through the API, so per-tag boot overrides see them without a restart."""

from __future__ import annotations

import asyncio

import httpx

from roost.dhcp.service import DHCPService
from roost.inventory.service import InventoryService
from roost.service import Runtime

MAC = "52:54:00:7a:00:01"


async def _until(check: object, want: set[str]) -> set[str]:
    assert callable(check)
    for _ in range(200):  # bounded: the refresh follows the node's event
        got: set[str] = check(MAC)
        if got == want:
            return got
        await asyncio.sleep(0.02)
    return check(MAC)  # type: ignore[no-any-return]


async def test_dhcp_sees_node_tags_as_they_change(runtime: Runtime, api: httpx.AsyncClient) -> None:
    made = await api.post("/api/v1/nodes", json={"mac": MAC, "tags": ["gpu"]})
    assert made.status_code == 201, made.text
    dhcp = DHCPService(runtime)  # not started: no socket is bound, only the seam is used
    inventory = InventoryService(runtime)
    runtime.services += [dhcp, inventory]
    await inventory.start()
    try:
        tags_for = dhcp._tags_for
        assert tags_for(MAC) == {"gpu"}  # loaded at start
        await api.post(f"/api/v1/nodes/{MAC}/tags", json={"tags": ["rack1"]})
        assert await _until(tags_for, {"gpu", "rack1"}) == {"gpu", "rack1"}
        await api.delete(f"/api/v1/nodes/{MAC}/tags/gpu")
        assert await _until(tags_for, {"rack1"}) == {"rack1"}
        await api.delete(f"/api/v1/nodes/{MAC}")
        assert await _until(tags_for, set()) == set()
        assert tags_for("52:54:00:7a:00:99") == set()
    finally:
        await inventory.stop()
