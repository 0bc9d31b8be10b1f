"""The discovery service: starts, cancels and schedules scans, listens passively, wakes.

One :class:`DiscoveryService` per ``roost serve`` (entry point ``discovery``), built only when
``discovery.subnets`` is set. It is the single place that enforces the safety rules: targets
inside the site's subnets (:mod:`roost.discovery.targets`), one scan of a subnet at a time
(a second scan overlapping a running one is a conflict naming that scan), and rates bounded
by the settings. The API and the CLI only call its methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from sqlalchemy import select

from roost.discovery import arp, oui, store, targets, wol
from roost.discovery.models import HostRow, ScanRow
from roost.discovery.passive import PassiveListener, Sighting
from roost.discovery.scans import ScanJob
from roost.errors import Conflict, Invalid, NotFound
from roost.service import Health, Runtime

log = logging.getLogger(__name__)

KINDS = ("arp", "tcp", "udp")


class DiscoveryService:
    name = "discovery"

    def __init__(self, runtime: Runtime) -> None:
        self.settings = runtime.settings.discovery
        self.site = runtime.settings.site
        self.db = runtime.db
        self.bus = runtime.bus
        self.jobs: dict[int, ScanJob] = {}
        self.passive: PassiveListener | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = threading.Event()  # ends wake watchers still waiting at shutdown
        self._error = ""

    async def start(self) -> None:
        await oui.load()
        await self._close_orphans()
        s = self.settings
        if s.interface and s.passive:
            self.passive = PassiveListener(s.interface, s.netns, self._sighted)
            try:
                await self.passive.start()
            except OSError as exc:
                self._error = f"passive listener on {s.interface}: {exc}"
                log.warning("discovery: %s", self._error)
                self.passive = None
        if s.schedule_interval > 0 and s.interface:
            self._scheduler = asyncio.create_task(self._schedule(), name="discovery-schedule")

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
        self._stopping.set()
        for job in list(self.jobs.values()):
            job.stop.set()
        await asyncio.gather(
            *(j.task for j in self.jobs.values() if j.task), return_exceptions=True
        )
        if self._tasks:  # wake watchers see _stopping within half a second and finish
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for task in list(self._tasks):
            task.cancel()
        if self.passive is not None:
            self.passive.stop()

    def health(self) -> Health:
        detail = f"{len(self.jobs)} scan(s) running"
        if self.passive is not None:
            detail += f"; passive: {self.passive.frames} frames, {self.passive.ignored} ignored"
        return Health(not self._error, self._error or detail)

    async def _close_orphans(self) -> None:
        """Scans left ``running`` by a process that died are over: mark them failed."""
        async with self.db.session() as s:
            rows = (await s.execute(select(ScanRow).where(ScanRow.state == "running"))).scalars()
            for row in rows:
                row.state, row.error = "failed", "Roost stopped during the scan"
                row.finished_at = datetime.now(UTC)

    # -- scans -------------------------------------------------------------------------

    async def start_scan(
        self,
        kind: str,
        target_specs: list[str] | None = None,
        ports: str | None = None,
        requested_by: str | None = None,
    ) -> ScanRow:
        s = self.settings
        if kind not in KINDS:
            raise Invalid(f"scan kind {kind!r}: use one of {', '.join(KINDS)}")
        if kind == "arp":
            if not s.interface:
                raise Invalid("an ARP sweep needs discovery.interface (the site's LAN interface)")
            # Loopback has no link layer: a loopback subnet is there for port scans only.
            specs = target_specs or [str(n) for n in s.subnets if not n.is_loopback]
            if not specs:
                raise Invalid("no subnet to sweep: discovery.subnets lists only loopback")
            port_list: list[int] = []
            ports = None
        else:
            if not target_specs:
                raise Invalid("a port scan needs a target: an address or CIDR")
            specs = target_specs
            ports = ports or "top:100"
            port_list = targets.parse_ports(ports, kind)
        nets, addrs = targets.expand(specs, s.subnets, self.site, s.max_targets)
        if len(addrs) * max(1, len(port_list)) > 16_777_216:
            raise Invalid("scan too large: addresses x ports must stay under 16 777 216")
        for job in self.jobs.values():
            clash = next((n for n in nets for m in job.nets if n.overlaps(m)), None)
            if clash is not None:
                raise Conflict(
                    f"scan {job.scan_id} ({job.kind}) of {', '.join(map(str, job.nets))} is "
                    f"running; one scan of a subnet at a time: wait for it or cancel it "
                    f"(roost scan cancel {job.scan_id})"
                )
        async with self.db.session() as ses:
            row = ScanRow(
                site=self.site,
                kind=kind,
                targets=[str(n) for n in nets],
                ports=ports,
                state="running",
                percent=0.0,
                hosts_found=0,
                ports_found=0,
                probes=0,
                requested_by=requested_by,
                stats={},
            )
            ses.add(row)
            await ses.flush()
        job = ScanJob(row.id, kind, nets, addrs, port_list, self.site, s, self.db, self.bus)
        self.jobs[row.id] = job
        await self.bus.publish(
            "discovery.scan.started",
            job.subject,
            {
                "scan": row.id,
                "kind": kind,
                "targets": row.targets,
                "ports": ports,
                "addresses": len(addrs),
                "port_count": len(port_list),
                "by": requested_by,
            },
            site=self.site,
        )
        job.task = asyncio.create_task(self._run(job), name=f"discovery-scan-{row.id}")
        return row

    async def _run(self, job: ScanJob) -> None:
        try:
            await job.run()
        except Exception:
            log.exception("scan %d failed", job.scan_id)
        finally:
            self.jobs.pop(job.scan_id, None)

    async def cancel_scan(self, scan_id: int) -> ScanRow:
        job = self.jobs.get(scan_id)
        if job is None:
            row = await self.get_scan(scan_id)
            raise Conflict(f"scan {scan_id} is not running (it is {row.state})")
        job.stop.set()
        if job.task is not None:
            await asyncio.shield(job.task)
        return await self.get_scan(scan_id)

    async def wait_scan(self, scan_id: int) -> ScanRow:
        job = self.jobs.get(scan_id)
        if job is not None and job.task is not None:
            await asyncio.shield(job.task)
        return await self.get_scan(scan_id)

    async def get_scan(self, scan_id: int) -> ScanRow:
        async with self.db.session() as s:
            row = await s.get(ScanRow, scan_id)
        if row is None or row.site != self.site:
            raise NotFound(f"no scan {scan_id}")
        return row

    async def _schedule(self) -> None:
        while True:
            await asyncio.sleep(self.settings.schedule_interval)
            try:
                await self.start_scan("arp", requested_by="schedule")
            except Conflict:
                log.info("scheduled sweep skipped: a scan of the subnet is still running")
            except Exception:
                log.exception("scheduled sweep failed to start")

    # -- passive -----------------------------------------------------------------------

    def _sighted(self, seen: Sighting) -> None:
        if (
            seen.ip is not None
            and targets.subnet_of(IPv4Address(seen.ip), self.settings.subnets) is None
        ):
            return  # not one of ours: never record hosts outside the site's subnets
        task = asyncio.create_task(self._record_sighting(seen))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record_sighting(self, seen: Sighting) -> None:
        async with self.db.session() as s:
            pending = await store.observe(
                s, self.site, seen.mac, seen.ip, f"passive-{seen.how}", datetime.now(UTC)
            )
        for type_, subject, data in pending:
            await self.bus.publish(type_, subject, data, site=self.site)

    # -- wake --------------------------------------------------------------------------

    async def wake(
        self,
        mac: str,
        ip: str | None = None,
        wait: bool = False,
        password: str | None = None,
        by: str | None = None,
    ) -> wol.WakeResult:
        """Send the magic packet; with ``wait``, return only once confirmed or timed out.

        Without ``wait`` the confirmation watch continues in the background and ends in
        ``power.wake.confirmed`` or ``power.wake.timeout`` all the same.
        """
        try:
            wol.magic_packet(mac, password)
        except wol.WakeError as exc:
            raise Invalid(str(exc)) from None
        mac = arp.mac_str(arp.mac_bytes(mac))
        if ip is None:
            async with self.db.session() as s:
                ip = (
                    await s.execute(
                        select(HostRow.ip).where(HostRow.site == self.site, HostRow.mac == mac)
                    )
                ).scalar()
        net: IPv4Network | None = None
        if ip is not None:
            net = targets.check_network(ip, self.settings.subnets, self.site)
            net = targets.subnet_of(net.network_address, self.settings.subnets)
        elif not self.settings.interface:
            raise Invalid(
                f"no address known for {mac} and no discovery.interface to wake it on: give its ip"
            )
        sent_event = asyncio.Event()
        job = asyncio.create_task(self._wake(mac, ip, net, password, by, sent_event))
        self._tasks.add(job)
        job.add_done_callback(self._tasks.discard)
        if wait:
            return await asyncio.shield(job)
        await sent_event.wait()
        if job.done():
            return job.result()
        return wol.WakeResult(mac, ip, False, ())

    async def _wake(
        self,
        mac: str,
        ip: str | None,
        net: IPv4Network | None,
        password: str | None,
        by: str | None,
        sent_event: asyncio.Event,
    ) -> wol.WakeResult:
        s = self.settings
        base = {"mac": mac, "ip": ip, "by": by}

        async def on_sent(how: tuple[str, ...]) -> None:
            await self.bus.publish(
                "power.wake.sent", mac, {**base, "via": list(how)}, site=self.site
            )
            sent_event.set()

        try:
            result = await wol.wake(
                mac,
                ip=ip,
                broadcast=str(net.broadcast_address) if net and net.prefixlen < 31 else None,
                port=s.wol_port,
                interface=s.interface,
                netns=s.netns,
                password=password,
                confirm_timeout=s.wake_timeout,
                stop=self._stopping,
                on_sent=on_sent,
            )
        finally:
            sent_event.set()
        if result.confirmed:
            await self.bus.publish(
                "power.wake.confirmed",
                mac,
                {**base, "via": result.via, "seconds": round(result.elapsed, 3)},
                site=self.site,
            )
            if ip is not None:
                async with self.db.session() as ses:
                    pending = await store.observe(
                        ses, self.site, mac, ip, "wake", datetime.now(UTC)
                    )
                for type_, subject, data in pending:
                    await self.bus.publish(type_, subject, data, site=self.site)
        else:
            await self.bus.publish(
                "power.wake.timeout",
                mac,
                {**base, "seconds": round(result.elapsed, 3)},
                site=self.site,
            )
        return result


def make(runtime: Runtime) -> DiscoveryService | None:
    """Entry point ``roost.services: discovery``; off while ``discovery.subnets`` is empty."""
    if not runtime.settings.discovery.subnets:
        return None
    return DiscoveryService(runtime)
