"""Power actions on nodes: load the node's driver with its opened settings, act, record.

The driver library retries and verifies each action; this module only resolves the node,
runs the action, stores the observed power state and publishes ``power.state.changed`` (for
``on``/``off``/``cycle`` always, for ``status`` only when the state differs from the last one
known) and ``power.boot_device.changed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from roost.db.models import utcnow
from roost.inventory import power, store
from roost.inventory.power import BootDevice, PowerAction
from roost.secrets import secret_box
from roost.service import Runtime


async def power_action(
    runtime: Runtime, ref: str, action: PowerAction, scope: Sequence[str] | None
) -> dict[str, Any]:
    box = secret_box(runtime.settings.data_dir)
    async with runtime.db.session() as s:
        node = await store.find_node(s, ref, scope)
        driver = power.instance(box, node)
        ident = {"node": node.id, "mac": node.mac, "ip": node.ip}
        site, before = node.site, node.power_state
    state = await power.act(driver, action)
    async with runtime.db.session() as s:
        row = await store.find_node(s, str(ident["node"]))
        row.power_state = state
        row.updated_at = utcnow()
    if action is not PowerAction.status or state != before:
        await runtime.bus.publish(
            "power.state.changed",
            str(ident["mac"]),
            {**ident, "action": action.value, "from": before, "to": state},
            site=site,
        )
    return {**ident, "action": action.value, "state": state}


async def set_boot_device(
    runtime: Runtime, ref: str, device: BootDevice, scope: Sequence[str] | None
) -> dict[str, Any]:
    box = secret_box(runtime.settings.data_dir)
    async with runtime.db.session() as s:
        node = await store.find_node(s, ref, scope)
        driver = power.instance(box, node)
        ident = {"node": node.id, "mac": node.mac, "ip": node.ip}
        site = node.site
    await power.boot_device(driver, device)
    await runtime.bus.publish(
        "power.boot_device.changed", str(ident["mac"]), {**ident, "device": device.value}, site=site
    )
    return {**ident, "device": device.value}
