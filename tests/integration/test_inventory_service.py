"""Nodes appear by themselves: the inventory service follows DHCP, discovery and boot events."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from roost.events import Event, EventFilter
from roost.inventory import service as inventory_service
from roost.inventory import store
from roost.inventory.models import NodeRow
from roost.inventory.service import InventoryService, make
from roost.service import Runtime
from roost.settings import load_settings


@pytest.fixture
async def service(runtime: Runtime) -> AsyncIterator[InventoryService]:
    svc = make(runtime)
    assert isinstance(svc, InventoryService)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


async def _settled(svc: InventoryService, handled: int) -> None:
    for _ in range(3000):
        if svc.handled + svc.failed >= handled:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"inventory handled {svc.handled}, failed {svc.failed}")


async def test_unknown_mac_becomes_discovered_and_known_mac_is_refreshed(
    runtime: Runtime, service: InventoryService, api: httpx.AsyncClient
) -> None:
    bus = runtime.bus
    await bus.publish(
        "dhcp.lease.bound",
        "52:54:00:aa:00:01",
        {"mac": "52:54:00:AA:00:01", "ip": "10.0.0.5"},
        site="lab",
    )
    await bus.publish(
        "discovery.host.found",
        "10.0.0.6",
        {"mac": "52:54:00:aa:00:02", "ip": "10.0.0.6", "vendor": "QEMU"},
    )
    await bus.publish("dhcp.lease.bound", "x", {"mac": "52:54:00:aa:00:01", "ip": "10.0.0.9"})
    await bus.publish(
        "boot.callback", "x", {"mac": "52:54:00:aa:00:02", "ip": "10.0.0.6", "facts": {"cpus": 4}}
    )
    await bus.publish("dhcp.lease.bound", "x", {"mac": "not-a-mac"})
    await bus.publish("dhcp.lease.released", "x", {"no": "mac"})
    await _settled(service, 5)
    assert (service.handled, service.failed) == (4, 1)
    nodes = {n["mac"]: n for n in (await api.get("/api/v1/nodes")).json()}
    first, second = nodes["52:54:00:aa:00:01"], nodes["52:54:00:aa:00:02"]
    assert first["state"] == second["state"] == "discovered"
    assert first["site"] == "lab" and second["site"] == runtime.settings.site
    assert first["ip"] == "10.0.0.9"
    assert first["interfaces"][0]["addresses"] == ["10.0.0.5", "10.0.0.9"]
    assert second["vendor"] == "QEMU" and second["facts"] == {"cpus": 4}
    assert second["state_reason"] == "seen in discovery.host.found"
    created = await bus.history(EventFilter(types=("node.state.changed",)))
    assert sorted(e.data["mac"] for e in created) == ["52:54:00:aa:00:01", "52:54:00:aa:00:02"]
    assert all(e.data["from"] is None and e.data["to"] == "discovered" for e in created)
    assert service.health().ok


async def test_start_creates_the_ca_and_the_secrets_key(
    runtime: Runtime, service: InventoryService
) -> None:
    data = runtime.settings.data_dir
    for path in (data / "pki" / "ca.key", data / "secret.key"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert (data / "pki" / "ca.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


async def test_node_brief_for_the_boot_renderer(runtime: Runtime, api: httpx.AsyncClient) -> None:
    from roost.inventory.lookup import node_brief

    made = await api.post(
        "/api/v1/nodes",
        json={
            "mac": "52:54:00:aa:00:10",
            "hostname": "n10",
            "tags": ["gpu"],
            "architecture": "arm64",
            "interfaces": [{"mac": "52:54:00:aa:00:11"}],
        },
    )
    assert made.status_code == 201, made.text
    brief = await node_brief(runtime.db, "52-54-00-AA-00-11")
    assert brief is not None
    assert (brief.id, brief.mac, brief.hostname, brief.tags, brief.architecture) == (
        made.json()["id"],
        "52:54:00:aa:00:10",
        "n10",
        ("gpu",),
        "arm64",
    )
    assert await node_brief(runtime.db, "52:54:00:aa:00:99") is None
    assert await node_brief(runtime.db, "garbage") is None


async def test_a_flood_beyond_the_live_queue_loses_no_node(tmp_path: Path, db_url: str) -> None:
    # The inventory's live queue holds 10 events; 300 leases arrive at once. It is cut off as
    # too slow, and must catch up from the stored history instead of skipping what it missed.
    settings = load_settings(
        None,
        {"data_dir": tmp_path / "data", "database.url": db_url, "events.subscriber_queue": 10},
    )
    runtime = Runtime.create(settings)
    await runtime.start(load_services=False)
    svc = make(runtime)
    assert isinstance(svc, InventoryService)
    await svc.start()
    try:
        macs = [f"52:54:00:bb:{i >> 8:02x}:{i & 0xFF:02x}" for i in range(300)]
        for mac in macs:
            runtime.bus.emit("dhcp.lease.bound", mac, {"mac": mac, "ip": "10.1.0.1"})
        await _settled(svc, 300)
        async with runtime.db.session() as s:
            stored = {n.mac for n in await store.list_nodes(s)}
        assert stored == set(macs)
        assert (svc.handled, svc.failed) == (300, 0)
    finally:
        await svc.stop()
        await runtime.stop()


async def test_one_bad_event_in_a_batch_costs_only_itself(
    runtime: Runtime, service: InventoryService, api: httpx.AsyncClient
) -> None:
    # Emitted together, the three arrive in one batch; the middle one names a site that is not
    # a valid name, which fails its transaction. The other two still become nodes.
    bus = runtime.bus
    bus.emit("dhcp.lease.bound", "a", {"mac": "52:54:00:dd:00:01", "ip": "10.3.0.1"})
    bus.emit("dhcp.lease.bound", "b", {"mac": "52:54:00:dd:00:02"}, site="not a site!")
    bus.emit("dhcp.lease.bound", "c", {"mac": "52:54:00:dd:00:03", "ip": "10.3.0.3"})
    await _settled(service, 3)
    assert (service.handled, service.failed) == (2, 1)
    macs = {n["mac"] for n in (await api.get("/api/v1/nodes")).json()}
    assert macs == {"52:54:00:dd:00:01", "52:54:00:dd:00:03"}


async def test_a_node_created_after_the_batch_lookup_is_updated_not_duplicated(
    runtime: Runtime,
    service: InventoryService,
    api: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The batch looks its MACs up once and then inserts the unknown ones without asking again;
    # a node that appeared in between (an enrollment, another replica) must make the insert
    # fail on the unique MAC and the batch run again, finding the node.
    async with runtime.db.session() as s:
        await store.create_node(s, mac="52:54:00:ee:00:01", site="lab", reason="enrolled")
    real = store.nodes_by_macs
    stale = [True]

    async def lookup(s: AsyncSession, macs: Iterable[str]) -> dict[str, NodeRow]:
        if stale.pop() if stale else False:
            return {}  # as if read just before the node above was committed
        return await real(s, macs)

    monkeypatch.setattr(store, "nodes_by_macs", lookup)
    runtime.bus.emit("dhcp.lease.bound", "a", {"mac": "52:54:00:ee:00:01", "ip": "10.4.0.7"})
    await _settled(service, 1)
    assert (service.handled, service.failed) == (1, 0)
    assert not stale
    nodes = [n for n in (await api.get("/api/v1/nodes")).json() if n["mac"].endswith("ee:00:01")]
    assert len(nodes) == 1
    assert nodes[0]["ip"] == "10.4.0.7" and nodes[0]["state_reason"] == "enrolled"


async def test_a_new_mac_seen_twice_in_one_batch_is_one_node(
    runtime: Runtime,
    service: InventoryService,
    api: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Emitted together, both arrive in one batch, where the node is still waiting for its
    # insert: the second event must update it, not insert the MAC again (which would fail the
    # batch and send it down the slow one-event-at-a-time path).
    batches: list[tuple[int, bool]] = []
    real = inventory_service.observe

    async def observe(
        rt: Runtime, events: list[Event], through: int | None = None, limit: Any = None
    ) -> list[store.StateChange]:
        try:
            changes = await real(rt, events, through, limit)
        except Exception:
            batches.append((len(events), False))
            raise
        batches.append((len(events), True))
        return changes

    monkeypatch.setattr(inventory_service, "observe", observe)
    bus = runtime.bus
    bus.emit("dhcp.lease.bound", "a", {"mac": "52:54:00:ff:00:01", "ip": "10.5.0.1"})
    bus.emit("boot.callback", "a", {"mac": "52:54:00:ff:00:01", "ip": "10.5.0.2",
                                    "facts": {"cpus": 2}})  # fmt: skip
    await _settled(service, 2)
    assert (service.handled, service.failed) == (2, 0)
    assert batches == [(2, True)]
    nodes = [n for n in (await api.get("/api/v1/nodes")).json() if n["mac"].endswith("ff:00:01")]
    assert len(nodes) == 1
    assert nodes[0]["interfaces"][0]["addresses"] == ["10.5.0.1", "10.5.0.2"]
    assert nodes[0]["facts"] == {"cpus": 2} and nodes[0]["ip"] == "10.5.0.2"
    created = await bus.history(EventFilter(types=("node.state.changed",)))
    assert [e.data["mac"] for e in created] == ["52:54:00:ff:00:01"]
    history = (await api.get(f"/api/v1/nodes/{nodes[0]['id']}/history")).json()
    assert [(h["from"], h["to"]) for h in history] == [(None, "discovered")]


async def test_after_a_restart_the_inventory_applies_what_it_missed(
    runtime: Runtime, api: httpx.AsyncClient
) -> None:
    # Events stored while the inventory is down (Roost restarting, or it crashed with a
    # backlog) are applied when it starts again, from its cursor, and none twice.
    bus = runtime.bus
    await bus.publish("dhcp.lease.bound", "seen before", {"mac": "52:54:00:ab:00:09"})
    first = make(runtime)
    assert isinstance(first, InventoryService)
    await first.start()
    try:
        await bus.publish("dhcp.lease.bound", "a", {"mac": "52:54:00:ab:00:01", "ip": "10.6.0.1"})
        await _settled(first, 1)
    finally:
        await first.stop()
    await bus.publish("dhcp.lease.bound", "b", {"mac": "52:54:00:ab:00:02", "ip": "10.6.0.2"})
    await bus.publish("dhcp.lease.bound", "a", {"mac": "52:54:00:ab:00:01", "ip": "10.6.0.9"})
    again = make(runtime)
    assert isinstance(again, InventoryService)
    await again.start()
    try:
        await _settled(again, 2)
        await asyncio.sleep(0.2)  # anything replayed twice would arrive by now
        assert (again.handled, again.failed) == (2, 0)
    finally:
        await again.stop()
    nodes = {n["mac"]: n for n in (await api.get("/api/v1/nodes")).json()}
    # Before the inventory first started: not applied (a new follower starts from now).
    assert set(nodes) == {"52:54:00:ab:00:01", "52:54:00:ab:00:02"}
    assert nodes["52:54:00:ab:00:01"]["ip"] == "10.6.0.9"
    assert nodes["52:54:00:ab:00:01"]["interfaces"][0]["addresses"] == ["10.6.0.1", "10.6.0.9"]
    created = await bus.history(EventFilter(types=("node.state.changed",)))
    assert sorted(e.data["mac"] for e in created) == ["52:54:00:ab:00:01", "52:54:00:ab:00:02"]


async def test_events_published_during_the_replay_are_applied_once(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Events stored after the inventory subscribed but before its replay read the history come
    # both in the replay and from the live queue (here 10 long, so 14 overflow it); each must be
    # applied once, and the catch-up after the overflow must not go back either.
    settings = load_settings(
        None,
        {"data_dir": tmp_path / "data", "database.url": db_url, "events.subscriber_queue": 10},
    )
    runtime = Runtime.create(settings)
    await runtime.start(load_services=False)
    bus = runtime.bus
    real = bus.history
    published = 0

    async def history(*args: Any, **kw: Any) -> list[Event]:
        nonlocal published
        if not published:
            for i in range(14):
                data = {"mac": f"52:54:00:ac:00:{i:02x}", "ip": f"10.7.0.{i + 1}"}
                await bus.publish("dhcp.lease.bound", "x", data)
                published += 1
        return await real(*args, **kw)

    monkeypatch.setattr(bus, "history", history)
    svc = make(runtime)
    assert isinstance(svc, InventoryService)
    await svc.start()
    try:
        await _settled(svc, 14)
        await asyncio.sleep(0.3)  # a second copy would be applied by now
        assert published == 14
        assert (svc.handled, svc.failed) == (14, 0)
    finally:
        await svc.stop()
        await runtime.stop()
