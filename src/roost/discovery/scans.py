"""One running scan: drives an engine on its thread and turns what it reports into rows and
events as it goes.

The engine (ARP sweep, TCP or UDP scan) runs on its own thread inside the site's namespace
and reports findings and progress through callbacks; those hop onto the event loop through
a queue. The job drains the queue in batches: each batch is written in one transaction and
*then* published (``discovery.host.found`` …, ``discovery.port.open``, and a throttled
``discovery.scan.progress``), so the event stream follows a scan live and never announces
a row that is not stored. Cancelling sets the engine's stop flag; the engine returns what it
has, and the job records it as ``cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from sqlalchemy import select

from roost.db import Database
from roost.discovery import arp, services, store, tcpscan, udpscan
from roost.discovery.models import HostRow, ScanResultRow, ScanRow
from roost.discovery.netns import run_in_thread
from roost.events import EventBus
from roost.settings import DiscoverySettings

Put = Callable[[tuple[Any, ...]], None]


@dataclass
class ScanJob:
    scan_id: int
    kind: str
    nets: list[IPv4Network]
    addrs: list[IPv4Address]
    ports: list[int]
    site: str
    settings: DiscoverySettings
    db: Database
    bus: EventBus
    stop: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task[None] | None = None
    percent: float = 0.0
    hosts: dict[str, str] = field(default_factory=dict)
    found_ports: dict[tuple[str, int], str] = field(default_factory=dict)
    _last_progress: float = 0.0

    @property
    def subject(self) -> str:
        return f"scan/{self.scan_id}"

    @property
    def protocol(self) -> str:
        return "udp" if self.kind == "udp" else "tcp"

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

        def put(item: tuple[Any, ...]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        started = time.monotonic()
        engine = asyncio.ensure_future(
            run_in_thread(self.settings.netns, lambda: self._engine(put))
        )
        state, error, stats = "finished", None, {}
        try:
            while not engine.done() or not queue.empty():
                with contextlib.suppress(TimeoutError):
                    first = await asyncio.wait_for(queue.get(), 0.25)
                    batch = [first]
                    while not queue.empty():
                        batch.append(queue.get_nowait())
                    await self._apply(batch)
            stats = await engine
        except Exception as exc:
            state, error = "failed", f"{type(exc).__name__}: {exc}"
            self.stop.set()  # e.g. the database failed: end the engine too, and wait for it
            with contextlib.suppress(Exception):
                await engine
        if self.stop.is_set() and state == "finished":
            state = "cancelled"
        await self._finish(state, error, stats, time.monotonic() - started)

    def _engine(self, put: Put) -> dict[str, Any]:
        s = self.settings

        def progress(fraction: float) -> None:
            put(("progress", fraction))

        if self.kind == "arp":
            assert s.interface is not None
            res = arp.sweep(
                s.interface,
                self.addrs,
                rate=s.arp_rate,
                attempts=s.arp_attempts,
                timeout=s.arp_timeout,
                stop=self.stop,
                on_found=lambda ip, mac: put(("host", str(ip), mac)),
                on_progress=lambda f, _n: progress(f),
            )
            return {
                "hosts": len(res.found),
                "addresses": len(self.addrs),
                "probes": res.sent,
                "ignored_frames": res.ignored,
            }
        addrs = self._on_link_hosts() if len(self.addrs) > 1 else self.addrs
        if self.stop.is_set():
            return {"probes": 0}
        total = len(addrs) * len(self.ports)
        pairs = ((str(ip), p) for ip in addrs for p in self.ports)
        report = lambda ip, port, st: put(("port", ip, port, st))  # noqa: E731
        on_progress = lambda done, tot: progress(done / tot if tot else 1.0)  # noqa: E731
        if self.kind == "tcp":
            st = tcpscan.scan_tcp(
                pairs,
                total=total,
                max_concurrency=s.tcp_concurrency,
                timeout=s.tcp_timeout,
                retries=s.tcp_retries,
                rate=s.tcp_rate,
                stop=self.stop,
                on_result=report,
                on_progress=on_progress,
            )
        else:
            st = udpscan.scan_udp(  # type: ignore[assignment]
                pairs,
                total=total,
                concurrency=s.udp_concurrency,
                timeout=s.udp_timeout,
                retries=s.udp_retries,
                rate=s.udp_rate,
                stop=self.stop,
                on_result=report,
                on_progress=on_progress,
            )
        return dict(vars(st))

    def _on_link_hosts(self) -> list[IPv4Address]:
        """For targets on the interface's own link, only the addresses that answer ARP.

        An address with no host costs a connect the kernel's whole neighbour resolution
        (about 3 s) before it fails, so, like nmap's ARP ping, a port scan of an on-link
        subnet first sweeps it. Routed targets (the interface's address is in none of the
        target networks) are scanned as given.
        """
        s = self.settings
        if not s.interface:
            return self.addrs
        mine = arp.interface_ipv4(s.interface)
        if mine is None or not any(mine in n for n in self.nets):
            return self.addrs
        res = arp.sweep(
            s.interface,
            self.addrs,
            rate=s.arp_rate,
            attempts=s.arp_attempts,
            timeout=s.arp_timeout,
            stop=self.stop,
        )
        return [ip for ip in self.addrs if ip in res.found]

    async def _apply(self, batch: list[tuple[Any, ...]]) -> None:
        now = datetime.now(UTC)
        pending: store.Pending = []
        results: list[ScanResultRow] = []
        for item in batch:
            if item[0] == "progress":
                self.percent = round(100.0 * item[1], 1)
            elif item[0] == "host":
                _, ip, mac = item
                self.hosts[ip] = mac
                results.append(ScanResultRow(scan_id=self.scan_id, ip=ip, mac=mac, state="up"))
            else:
                _, ip, port, state = item
                self.found_ports[(ip, port)] = state
                results.append(
                    ScanResultRow(
                        scan_id=self.scan_id, ip=ip, protocol=self.protocol, port=port, state=state
                    )
                )
                if state == "open":
                    svc = services.lookup(port, self.protocol)
                    pending.append(
                        (
                            "discovery.port.open",
                            self.subject,
                            {
                                "ip": ip,
                                "port": port,
                                "protocol": self.protocol,
                                "service": svc.name if svc else None,
                                "scan": self.scan_id,
                            },
                        )
                    )
        async with self.db.session() as s:
            for item in batch:
                if item[0] == "host":
                    pending += await store.observe(s, self.site, item[2], item[1], "arp", now)
            s.add_all(results)
            row = await s.get(ScanRow, self.scan_id)
            assert row is not None
            row.percent, row.hosts_found, row.ports_found = (
                self.percent,
                self.hosts_found,
                self.open_ports,
            )
        for type_, subject, data in pending:
            if type_ == "discovery.port.open":
                await self._with_mac(data)
            await self.bus.publish(type_, subject, data, site=self.site)
        if time.monotonic() - self._last_progress >= 0.25 or self.percent >= 100.0:
            self._last_progress = time.monotonic()
            self.bus.emit(
                "discovery.scan.progress", self.subject, self.progress_data(), site=self.site
            )

    async def _with_mac(self, data: dict[str, Any]) -> None:
        async with self.db.session() as s:
            data["mac"] = (
                await s.execute(
                    select(HostRow.mac).where(HostRow.site == self.site, HostRow.ip == data["ip"])
                )
            ).scalar()

    @property
    def hosts_found(self) -> int:
        """Hosts that answered: ARP replies, or addresses with an open port."""
        if self.kind == "arp":
            return len(self.hosts)
        return len({ip for (ip, _), st in self.found_ports.items() if st == "open"})

    @property
    def open_ports(self) -> int:
        return sum(1 for st in self.found_ports.values() if st == "open")

    def progress_data(self) -> dict[str, Any]:
        return {
            "scan": self.scan_id,
            "kind": self.kind,
            "percent": self.percent,
            "hosts_found": self.hosts_found,
            "ports_found": self.open_ports,
        }

    async def _finish(
        self, state: str, error: str | None, stats: dict[str, Any], took: float
    ) -> None:
        now = datetime.now(UTC)
        pending: store.Pending = []
        async with self.db.session() as s:
            if state == "finished" and self.kind == "arp":
                pending = await store.sweep_done(
                    s, self.site, self.nets, self.hosts.values(), self.settings.gone_after, now
                )
            elif state in ("finished", "cancelled") and self.kind != "arp":
                # A cancelled scan keeps what it found but proves no port closed.
                await store.record_ports(
                    s,
                    self.site,
                    self.scan_id,
                    self.protocol,
                    [str(a) for a in self.addrs],
                    self.ports,
                    self.found_ports,
                    now,
                    complete=state == "finished",
                )
            row = await s.get(ScanRow, self.scan_id)
            assert row is not None
            if state == "finished":
                self.percent = 100.0
            row.state, row.error, row.finished_at = state, error, now
            row.percent, row.hosts_found, row.ports_found = (
                self.percent,
                self.hosts_found,
                self.open_ports,
            )
            row.probes = int(stats.get("probes", stats.get("addresses", 0)))
            row.stats = {**stats, "seconds": round(took, 3)}
        for type_, subject, data in pending:
            await self.bus.publish(type_, subject, data, site=self.site)
        data = {**self.progress_data(), "state": state, "seconds": round(took, 3)}
        if error:
            data["error"] = error
        await self.bus.publish(f"discovery.scan.{state}", self.subject, data, site=self.site)
