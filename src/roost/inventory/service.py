"""The inventory service: nodes appear by themselves from what the network tells Roost.

It follows the event bus live (``dhcp.lease.*``, ``discovery.host.*``, ``boot.*``). An event
whose ``data.mac`` is unknown creates a ``discovered`` node in the event's site (for
anonymous ``boot.*`` requests only as fast as ``enroll.anonymous_node_*`` allow); a known MAC
refreshes the node's address and last-seen time, and a boot callback's ``facts`` are stored.
Events are applied in arrival order, as many as are waiting (up to 500) in one transaction,
which also moves the inventory's cursor (:mod:`roost.db.cursors`): after a restart it resumes
with the stored events after it. A failure is logged and counted, never fatal. At start it
also makes sure the CA and the secrets key exist ("created at first start").
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from roost.db import cursors
from roost.db.models import utcnow
from roost.errors import Invalid
from roost.events import Event, EventFilter, SubscriberTooSlow
from roost.inventory import store
from roost.inventory.models import NodeRow
from roost.inventory.nodes import publish
from roost.inventory.tags import TagCache
from roost.pki import tokens
from roost.pki.enroll import authority
from roost.pki.limits import AnonymousLimit
from roost.secrets import secret_box
from roost.service import Health, Runtime, Service

log = logging.getLogger(__name__)

WATCHED = ("dhcp.lease.", "discovery.host.", "boot.")
_BATCH = 500  # events applied in one transaction at most
CURSOR = "inventory"
"""Its cursor into the event stream (:mod:`roost.db.cursors`)."""
NODE_CHANGES = ("node.updated", "node.deleted", "node.state.changed")
"""Changes that may alter a node's tags (kept in :class:`TagCache` for DHCP)."""


def _ip(value: Any) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


ANONYMOUS = "boot."
"""Events of anonymous boot requests: the nodes they create are capped (enroll.anonymous_node_*)."""


async def observe(
    runtime: Runtime,
    events: list[Event],
    through: int | None = None,
    limit: AnonymousLimit | None = None,
) -> list[store.StateChange]:
    """Apply events to the inventory in one transaction, in order, and move the inventory's
    cursor to ``through`` (the id of the last event looked at) in it; return the creations.
    A new MAC from a boot request creates a node only while ``limit`` allows."""
    async with runtime.db.session() as s:
        known = await store.nodes_by_macs(s, (str(ev.data["mac"]) for ev in events))
        created: list[NodeRow] = []
        for ev in events:
            mac = store.normalize_mac(str(ev.data["mac"]))
            if (
                limit is not None
                and mac not in known
                and ev.type.startswith(ANONYMOUS)
                and not limit.allow(mac, ev.site or runtime.settings.site)
            ):
                continue
            await _apply(s, runtime, ev, known, created)
        if through is not None:
            await cursors.advance(s, CURSOR, through)
        if not created:
            return []
        # One insert per table for the batch's new nodes. A node with one of these MACs
        # committed since the lookup fails it on the unique column, and the batch runs again.
        await s.flush()
        return [await store.add_history(s, n, None, n.state_reason) for n in created]


async def _apply(
    s: AsyncSession, runtime: Runtime, ev: Event, known: dict[str, NodeRow], created: list[NodeRow]
) -> None:
    mac = store.normalize_mac(str(ev.data["mac"]))
    ip = _ip(ev.data.get("ip"))
    facts = ev.data.get("facts")
    vendor = ev.data.get("vendor")
    node = known.get(mac)
    if node is None:
        site = ev.site or runtime.settings.site
        await store.ensure_site(s, site)
        node = store.discovered_node(
            mac=mac,
            site=site,
            ip=ip,
            seen=ev.time,
            reason=f"seen in {ev.type}",
            vendor=vendor[:128] if isinstance(vendor, str) else None,
        )
        s.add(node)
        known[mac] = node
        created.append(node)
    else:
        node.last_seen = max(node.last_seen or ev.time, ev.time)
        node.ip = ip or node.ip
    if ip and node.interfaces:
        iface = next((i for i in node.interfaces if i.mac == mac), None)
        if iface is not None and ip not in iface.addresses:
            iface.addresses = [*iface.addresses, ip]
    if ev.type == "boot.callback" and isinstance(facts, dict):
        node.facts = {**(node.facts or {}), **facts}


class InventoryService:
    name = "inventory"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.handled = 0
        self.failed = 0
        self._task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self.tags = TagCache(runtime.db)
        cfg = runtime.settings.enroll
        self.anonymous_nodes = AnonymousLimit(
            "nodes", cfg.anonymous_node_burst, cfg.anonymous_nodes_per_minute, runtime.bus
        )

    async def start(self) -> None:
        settings = self.runtime.settings
        await asyncio.to_thread(authority, settings)
        secret_box(settings.data_dir)
        self._tasks.append(asyncio.create_task(self._purge(), name="inventory-purge"))
        await self._serve_tags_to_dhcp()
        if settings.nodes.auto_discover:
            after = await cursors.resume_point(self.runtime.db, CURSOR)
            self._task = asyncio.create_task(self._follow(after), name="inventory-follow")
            await self._ready.wait()
        else:
            # What is seen while auto-discovery is off is not applied when it is turned on.
            await cursors.forget(self.runtime.db, CURSOR)

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._task] if self._task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task, self._tasks = None, []

    def health(self) -> Health:
        if self.runtime.settings.nodes.auto_discover and (self._task is None or self._task.done()):
            return Health(False, "not following events")
        return Health(True, f"{self.handled} events handled, {self.failed} failed")

    async def _serve_tags_to_dhcp(self) -> None:
        """Hand DHCP ``tags_for`` for its per-tag boot overrides, kept current by events."""
        from roost.dhcp.service import DHCPService

        dhcp = self.runtime.service("dhcp")
        if not isinstance(dhcp, DHCPService):
            return
        following = asyncio.Event()
        self._tasks.append(asyncio.create_task(self._follow_tags(following), name="inventory-tags"))
        await following.wait()
        await self.tags.load()
        dhcp.set_tags_for(self.tags.tags_for)

    async def _follow_tags(self, following: asyncio.Event) -> None:
        while True:
            with self.runtime.bus.subscribe(EventFilter(types=NODE_CHANGES)) as sub:
                following.set()
                try:
                    while (ev := await sub.get()) is not None:
                        try:
                            await self.tags.refresh(ev.subject)
                        except Exception:
                            log.exception("refreshing the tags of %s failed", ev.subject)
                    return
                except SubscriberTooSlow:
                    await self.tags.load()

    async def _follow(self, after: int) -> None:
        flt = EventFilter(types=WATCHED)
        last = after  # id of the newest event handled
        while True:
            try:
                # After the last event handled, here or before a restart (the cursor), and
                # again after the live queue overflowed and dropped events: the rest are
                # stored, and the bus replays them before the live ones.
                async for batch in self.runtime.bus.batches(
                    flt, after_id=last, limit=_BATCH, subscribed=self._ready.set
                ):
                    await self._handle(batch)
                    last = batch[-1].id or last
                return
            except SubscriberTooSlow:
                log.warning("inventory fell behind the event stream; catching up from history")

    async def _purge(self) -> None:
        """Hourly: drop enrollment tokens that expired more than a day ago (the boot renderer
        mints one per new MAC and token lifetime, so they would otherwise pile up)."""
        while True:
            try:
                async with self.runtime.db.session() as s:
                    gone = await tokens.purge(s, utcnow())
                if gone:
                    log.info("purged %d expired enrollment tokens", gone)
            except Exception:
                log.exception("purging enrollment tokens failed")
            await asyncio.sleep(3600)

    async def _handle(self, events: list[Event]) -> None:
        """Apply ``events`` in one transaction; when that fails, one at a time, so one bad
        event costs only itself."""
        valid = []
        for ev in events:
            mac = ev.data.get("mac")
            if not isinstance(mac, str):
                continue
            try:
                store.normalize_mac(mac)
            except Invalid as exc:
                self.failed += 1
                log.warning("inventory dropped event %s (%s): %s", ev.id, ev.type, exc)
                continue
            valid.append(ev)
        if not valid:
            return
        through = events[-1].id
        try:
            try:
                changes = await observe(self.runtime, valid, through, self.anonymous_nodes)
            except IntegrityError:
                # Another replica or an enrollment created a node at the same moment.
                changes = await observe(self.runtime, valid, through, self.anonymous_nodes)
            await publish(self.runtime, changes)
        except Exception:
            if len(valid) > 1:
                for ev in valid:
                    await self._handle([ev])
                return
            self.failed += 1
            log.exception("inventory could not handle event %s (%s)", valid[0].id, valid[0].type)
            return
        self.handled += len(valid)


def make(runtime: Runtime) -> Service | None:
    return InventoryService(runtime)
