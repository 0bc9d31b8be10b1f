"""The DHCP service inside ``roost serve``: sockets, the batched packet path, group commit.

Theory of operation: one non-blocking socket per configured interface (and port 4011 in
proxy mode) is watched with ``loop.add_reader``. When one becomes readable, :meth:`_drain`
reads every queued datagram (up to a batch limit, like recvmmsg), decodes each, lets the
sans-IO :class:`DHCPServer` decide, and sends replies that need nothing stored (OFFER, NAK,
INFORM) at once. ACKs wait: the committer task takes all dirty leases, stores them in one
transaction, and only then sends the ACKs that depended on them (group commit). Nothing on
this path touches the database per packet, and leases live in memory. Live configuration
changes (API) call :meth:`reload`, which swaps the compiled configuration in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from roost.dhcp import metrics, store, transport
from roost.dhcp.codec import Packet, decode, ip_str
from roost.dhcp.errors import MalformedPacket
from roost.dhcp.leases import HOLDING, Lease, LeaseTable
from roost.dhcp.probe import Pinger
from roost.dhcp.pxe import TagsFor, no_tags
from roost.dhcp.ra import codec as ra_codec
from roost.dhcp.ra.transport import Advertiser
from roost.dhcp.ra.transport import Config as RAConfig
from roost.dhcp.replies import matched_key
from roost.dhcp.server import DHCPServer, Inbound, Policy, Reply
from roost.service import Health

if TYPE_CHECKING:
    from roost.service import Runtime

log = logging.getLogger(__name__)

BATCH = 64  # datagrams handled per wake-up before the loop runs others (the committer)
MALFORMED_EVERY = 10.0  # seconds between dhcp.packet.malformed events (rate limit)
EXHAUSTED_EVERY = 60.0
# At most one lease commit per COMMIT_EVERY: idle, an ACK is committed and sent at once; under
# load the next batch gathers for the rest of the interval, so a transaction carries many
# leases instead of one (its fixed cost dominates a small batch) for at most 1 ms more latency.
COMMIT_EVERY = 0.001


@dataclass
class _Listener:
    sock: socket.socket
    inbound: Inbound


class DHCPService:
    name = "dhcp"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings.dhcp
        self.leases = LeaseTable()
        self.server: DHCPServer | None = None
        self._listeners: list[_Listener] = []
        self._waiting: list[tuple[_Listener, Reply, float]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_event: dict[str, float] = {}
        self._malformed = 0
        self._committed = 0
        self._tags_for: TagsFor = no_tags
        self._store = store.LeaseStore(runtime.db)
        self._pinger: Pinger | None = None
        self._probes: set[asyncio.Task[None]] = set()
        self._advertisers: list[Advertiser] = []

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        config = await store.load_config(self.runtime.db)
        now = time.time()
        self._store.open()
        for lease in await self._store.load():
            if self.settings.match_client_id:  # leases stored keyed by 01:<mac> before it
                lease.client = matched_key(lease.client, lease.mac)
            self.leases.load(lease)
        policy = Policy(
            offer_hold=self.settings.offer_hold,
            decline_hold=self.settings.decline_hold,
            http_port=self.runtime.settings.boot.http_port,
            proxy=self.settings.proxy,
            authoritative=self.settings.authoritative,
            probe=self.settings.probe,
            match_client_id=self.settings.match_client_id,
            ipxe_script_url=self.settings.ipxe_script_url,
        )
        if self.settings.probe:
            self._pinger = Pinger()
            self._pinger.open()
        self.server = DHCPServer(config, self.leases, policy, self._tags_for)
        ports = (67, 4011) if self.settings.proxy else (67,)
        loop = asyncio.get_running_loop()
        try:
            for ifname in self.settings.interfaces:
                try:
                    local = transport.interface_address(ifname)
                except OSError as exc:
                    raise RuntimeError(
                        f"dhcp.interfaces: {ifname!r} has no IPv4 address or does not exist ({exc})"
                    ) from None
                for port in ports:
                    sock = transport.open_socket(ifname, port)
                    lst = _Listener(sock, Inbound(ifname, local, port))
                    self._listeners.append(lst)
                    loop.add_reader(sock.fileno(), self._drain, lst)
                if self.settings.ra_enabled:
                    self._start_advertiser(ifname)
        except BaseException:
            await self.stop()
            raise
        self._tasks.append(asyncio.create_task(self._committer(), name="dhcp-commit"))
        self._tasks.append(asyncio.create_task(self._sweeper(), name="dhcp-sweep"))
        self._update_gauges(now)
        log.info(
            "DHCP serving %s (%d subnets, %d leases loaded%s)",
            ", ".join(self.settings.interfaces),
            len(config.subnets),
            len(self.leases),
            ", proxy mode" if self.settings.proxy else "",
        )

    def _start_advertiser(self, ifname: str) -> None:
        """Router advertisements on ``ifname``; DHCP goes on without them if IPv6 is off there."""
        s = self.settings
        adv = ra_codec.RouterAdvertisement(
            router_lifetime=s.ra_router_lifetime,
            mtu=s.ra_mtu or None,
            prefixes=tuple(ra_codec.Prefix(net) for net in s.ra_prefixes),
        )
        config = RAConfig(adv, s.ra_max_interval / 3, s.ra_max_interval)
        advertiser = Advertiser(ifname, config, self.runtime.bus.emit)
        try:
            advertiser.start()
        except OSError as exc:
            log.warning("no IPv6 router advertisements on %s: %s", ifname, exc)
            return
        self._advertisers.append(advertiser)

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for advertiser in self._advertisers:
            advertiser.stop()
        self._advertisers.clear()
        for lst in self._listeners:
            loop.remove_reader(lst.sock.fileno())
        for task in [*self._tasks, *self._probes]:
            task.cancel()
        for task in [*self._tasks, *self._probes]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._pinger is not None:
            self._pinger.close()
            self._pinger = None
        with contextlib.suppress(Exception):
            await self._commit_once()  # store what is dirty; the waiting ACKs still go out
        for lst in self._listeners:
            lst.sock.close()
        self._listeners.clear()
        self._store.close()

    def health(self) -> Health:
        if not self._listeners:
            return Health(False, "not listening")
        return Health(True, f"{len(self._listeners)} sockets, {len(self.leases)} leases")

    # -- live configuration and integration -------------------------------------------------

    async def reload(self) -> None:
        """Apply the stored configuration now (called after every API change)."""
        config = await store.load_config(self.runtime.db)
        if self.server is not None:
            self.server.config = config

    def set_tags_for(self, tags_for: TagsFor) -> None:
        """The inventory hands in ``tags_for(mac) -> set[str]`` for per-tag boot overrides."""
        self._tags_for = tags_for
        if self.server is not None:
            self.server.tags_for = tags_for

    def snapshot(self) -> list[Lease]:
        return list(self.leases)

    # -- the packet path ------------------------------------------------------------------

    def _drain(self, lst: _Listener) -> None:
        server = self.server
        assert server is not None
        sock = lst.sock
        recv = sock.recvfrom
        now = time.time()  # one clock reading per batch: a batch takes well under a millisecond
        plain = lst.inbound.port == 67  # replies on 4011 go back to the sender: keep its address
        stats = metrics.PACKETS
        received = stats.received
        for _ in range(BATCH):
            try:
                data, src = recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                log.exception("DHCP receive on %s failed", lst.inbound.interface)
                break
            t0 = time.perf_counter()
            try:
                pkt = decode(data)
            except MalformedPacket as exc:
                self._drop_malformed(lst, src, str(exc))
                continue
            mtype = pkt.message_type
            if mtype in received:
                received[mtype] += 1
            inbound = lst.inbound if plain else _with_src(lst.inbound, src)
            try:
                reply = server.handle(pkt, inbound, now)
            except MalformedPacket as exc:
                self._drop_malformed(lst, src, str(exc))
                continue
            except Exception:
                log.exception("DHCP request from %s failed", src)
                stats.drop("error")
                continue
            if reply is None:
                stats.drop("ignored")
            elif reply.probe is not None and self._pinger is not None:
                self._spawn(self._probe_then_send(lst, pkt, inbound, reply, t0))
            elif reply.durable:
                self._waiting.append((lst, reply, t0))
            else:
                self._send(lst, reply, t0)
        self._flush_events()
        if self._waiting:
            self._wake.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def _probe_then_send(
        self, lst: _Listener, pkt: Packet, inbound: Inbound, reply: Reply, t0: float
    ) -> None:
        """Ping the address about to be offered; when it answers, quarantine it and decide
        again (a few times at most: each try quarantines one more address)."""
        assert self.server is not None and self._pinger is not None
        for _ in range(4):
            if reply.probe is None:
                break
            if not await self._pinger.ping(ip_str(reply.probe), self.settings.probe_timeout):
                break
            now = time.time()
            self.server.conflict(pkt, reply.probe, now)
            nxt = self.server.handle(pkt, inbound, now)
            self._flush_events()
            if nxt is None:
                return
            reply = nxt
        else:
            return
        self._send(lst, reply, t0)

    def _flush_events(self) -> None:
        assert self.server is not None
        if self.server.events:
            self._publish(self.server.events)
            self.server.events = []
        if self.leases.dirty:
            self._wake.set()

    def _send(self, lst: _Listener, reply: Reply, t0: float) -> None:
        try:
            if reply.arp is not None:
                transport.add_arp_entry(lst.sock, lst.inbound.interface, *reply.arp)
            lst.sock.sendto(reply.data, reply.dest)
        except OSError as exc:
            if reply.arp is not None:  # no ARP entry possible: fall back to broadcast
                with contextlib.suppress(OSError):
                    lst.sock.sendto(reply.data, ("255.255.255.255", 68))
                    metrics.PACKETS.replied(reply.mtype, time.perf_counter() - t0)
                    return
            log.debug("DHCP send to %s failed: %s", reply.dest, exc)
            metrics.PACKETS.drop("send_error")
            return
        metrics.PACKETS.replied(reply.mtype, time.perf_counter() - t0)

    def _drop_malformed(self, lst: _Listener, src: Any, why: str) -> None:
        metrics.PACKETS.drop("malformed")
        self._malformed += 1
        now = time.monotonic()
        if now - self._last_event.get("malformed", -1e9) >= MALFORMED_EVERY:
            self._last_event["malformed"] = now
            # about an interface, not an object of a site: no site, for unscoped readers only
            self.runtime.bus.emit(
                "dhcp.packet.malformed",
                lst.inbound.interface,
                {"from": f"{src[0]}:{src[1]}", "reason": why, "dropped_so_far": self._malformed},
            )

    def _publish(self, events: list[tuple[str, str, dict[str, Any], str | None]]) -> None:
        emit = self.runtime.bus.emit
        offered = self.settings.events_offered
        now = time.monotonic()
        for type_, subject, data, site in events:
            if type_ == "dhcp.lease.offered" and not offered:
                continue
            if type_ == "dhcp.pool.exhausted":
                key = f"exhausted:{subject}"
                if now - self._last_event.get(key, -1e9) < EXHAUSTED_EVERY:
                    continue
                self._last_event[key] = now
            emit(type_, subject, data, site)

    # -- group commit and expiry ------------------------------------------------------------

    async def _committer(self) -> None:
        loop = asyncio.get_running_loop()
        last = -COMMIT_EVERY
        while True:
            await self._wake.wait()
            wait = last + COMMIT_EVERY - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            last = loop.time()
            try:
                await self._commit_once()
            except Exception:
                log.exception("storing DHCP leases failed; their ACKs are not sent")
                await asyncio.sleep(0.5)

    async def _commit_once(self) -> None:
        batch = self.leases.take_dirty()
        waiting, self._waiting = self._waiting, []
        if batch:
            t0 = time.perf_counter()
            try:
                await self._store.write(batch)
            except BaseException:
                for lease in batch:  # keep them dirty for the next try; the clients retry
                    self.leases.dirty.setdefault(lease.ip, lease)
                raise
            metrics.COMMIT_SECONDS.observe(time.perf_counter() - t0)
            metrics.COMMIT_BATCH.observe(len(batch))
            self._committed += len(batch)
        for lst, reply, t0 in waiting:
            self._send(lst, reply, t0)

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            now = time.time()
            expired = self.leases.sweep(now)
            sites = self.server.config.sites if self.server is not None else {}
            for lease in expired:
                self.runtime.bus.emit(
                    "dhcp.lease.expired",
                    lease.mac,
                    {"mac": lease.mac, "ip": ip_str(lease.ip), "hostname": lease.hostname or None},
                    sites.get(lease.subnet_id),
                )
            if expired:
                self._wake.set()
            self._update_gauges(now)

    def _update_gauges(self, now: float) -> None:
        counts: dict[str, int] = {}
        for lease in self.leases:
            state = lease.state if lease.state not in HOLDING or lease.expires > now else "stale"
            counts[state] = counts.get(state, 0) + 1
        for state in ("offered", "bound", "declined", "released", "expired"):
            metrics.LEASES.labels(state).set(counts.get(state, 0))


def _with_src(inb: Inbound, src: Any) -> Inbound:
    return Inbound(inb.interface, inb.local_ip, inb.port, (src[0], src[1]))


def make(runtime: Runtime) -> DHCPService | None:
    """Entry point: no service unless ``dhcp.interfaces`` names at least one interface."""
    if not runtime.settings.dhcp.interfaces:
        return None
    return DHCPService(runtime)
