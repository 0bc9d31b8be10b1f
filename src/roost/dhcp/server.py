"""The DHCP server state machine (RFC 2131 §4.3), sans-IO, with time passed in.

Theory of operation: the transport hands each decoded request to :meth:`DHCPServer.handle`
with where it came from (:class:`Inbound`) and the current time; it gets back a
:class:`Reply` (packet, destination, and whether the reply must wait until the lease table's
dirty leases are stored) or None. Events for the bus pile up in ``events``; dirty leases in
``leases.dirty``. The server never does I/O, so every branch is a unit test.

Message → handling (RFC 2131 §4.3.1-§4.3.6):
  DISCOVER  choose an address (reservation, the client's lease, option 50, a free one), hold it,
            OFFER
  REQUEST   SELECTING (option 54): ours → ACK/NAK, another server's → drop our hold, silence;
            INIT-REBOOT (option 50, no ciaddr): wrong network or not the client's → NAK;
            RENEWING/REBINDING (ciaddr): the client's lease → ACK; another's → NAK;
            unknown → ACK when free (the server may have lost it), else silence
  DECLINE   quarantine the address; RELEASE  end the lease; INFORM  options only, no lease
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from roost.dhcp import pxe, replies
from roost.dhcp.codec import Packet, ip_str
from roost.dhcp.config import Config, Subnet
from roost.dhcp.leases import BOUND, DECLINED, EXPIRED, OFFERED, RELEASED, Lease, LeaseTable
from roost.dhcp.options import RAI_LINK_SELECTION, MessageType, Opt, decode_tlv
from roost.dhcp.replies import Reply, client_key, hostname

__all__ = ["DHCPServer", "Inbound", "Policy", "Reply", "client_key"]


@dataclass(frozen=True, slots=True)
class Inbound:
    """Where a request came in: interface, our address on it, local port, sender."""

    interface: str
    local_ip: IPv4Address
    port: int = 67
    src: tuple[str, int] = ("0.0.0.0", 68)


@dataclass
class Policy:
    """Server-wide behaviour (from settings), separate from the live configuration."""

    offer_hold: float = 30.0
    decline_hold: float = 86400.0
    http_port: int = 8442
    proxy: bool = False
    authoritative: bool = True
    probe: bool = False
    match_client_id: bool = True
    ipxe_script_url: str | None = None


@dataclass
class DHCPServer:
    config: Config
    leases: LeaseTable
    policy: Policy = field(default_factory=Policy)
    tags_for: pxe.TagsFor = pxe.no_tags
    events: list[tuple[str, str, dict[str, Any], str | None]] = field(default_factory=list)
    """(type, subject, data, site): a lease's events have its subnet's site."""

    # -- entry point ---------------------------------------------------------------------

    def handle(self, p: Packet, inb: Inbound, now: float) -> Reply | None:
        mtype = p.message_type
        if p.op != 1 or mtype is None:
            return None
        if self.policy.proxy:
            return self._proxy(p, mtype, inb)
        subnet = self.select_subnet(p, inb)
        if subnet is None:
            return None  # not a network we serve: never answer for it
        if mtype == MessageType.DISCOVER:
            return self._discover(p, subnet, inb, now)
        if mtype == MessageType.REQUEST:
            return self._request(p, subnet, inb, now)
        if mtype == MessageType.DECLINE:
            self._decline(p, subnet, inb, now)
        elif mtype == MessageType.RELEASE:
            self._release(p, subnet, inb, now)
        elif mtype == MessageType.INFORM:
            return self._inform(p, subnet, inb)
        return None

    # -- subnet selection ----------------------------------------------------------------

    def select_subnet(self, p: Packet, inb: Inbound) -> Subnet | None:
        """RFC 3527 link selection / RFC 3011 option 118 / giaddr for relayed requests; the
        receiving interface for direct ones (never another interface's subnet)."""
        link: int | None = None
        rai = p.options.get(Opt.RELAY_AGENT_INFO)
        if rai and p.giaddr:
            for code, value in decode_tlv(rai):
                if code == RAI_LINK_SELECTION and len(value) == 4:
                    link = int.from_bytes(value, "big")
        sel = p.options.get(Opt.SUBNET_SELECTION)
        if link is None and sel is not None and len(sel) == 4:
            link = int.from_bytes(sel, "big")
        subnets = self.config.subnets
        if p.giaddr:
            addr = link if link is not None else p.giaddr
            return next((s for s in subnets if s.contains(addr)), None)
        local = int(inb.local_ip)
        mine = [
            s
            for s in subnets
            if s.spec.interface == inb.interface or (s.spec.interface is None and s.contains(local))
        ]
        for hint in (link, p.ciaddr):
            if hint:
                for s in mine:
                    if s.contains(hint):
                        return s
        return mine[0] if mine else None

    # -- address choice -------------------------------------------------------------------

    def _bindable(self, ip: int, client: bytes, mac: str, subnet: Subnet, now: float) -> bool:
        if not subnet.contains(ip):
            return False
        owner = self.config.reserved_ips.get(ip)
        if owner is not None:
            return owner == mac
        return subnet.in_pool(ip) and self.leases.free_for(ip, client, now)

    def _choose(self, p: Packet, client: bytes, subnet: Subnet, now: float) -> int | None:
        """RFC 2131 §4.3.1: reservation, the client's current or previous address, the
        requested address, a free pool address."""
        mac = p.mac
        res = self.config.reservations.get(mac)
        if res is not None and subnet.contains(int(res.ip)):
            return int(res.ip)
        lease = self.leases.of_client(client)
        if lease is not None and self._bindable(lease.ip, client, mac, subnet, now):
            return lease.ip
        req = p.options.get(Opt.REQUESTED_IP)
        if req is not None and len(req) == 4:
            ip = int.from_bytes(req, "big")
            if self._bindable(ip, client, mac, subnet, now):
                return ip
        return self.leases.allocate(subnet, client, self.config.reserved_ips, now)

    # -- messages --------------------------------------------------------------------------

    def _discover(self, p: Packet, subnet: Subnet, inb: Inbound, now: float) -> Reply | None:
        client = client_key(p, self.policy.match_client_id)
        ip = self._choose(p, client, subnet, now)
        if ip is None:
            data = {"subnet": subnet.spec.name, "mac": p.mac}
            self.events.append(("dhcp.pool.exhausted", subnet.spec.name, data, subnet.spec.site))
            return None
        current = self.leases.by_ip.get(ip)
        fresh = (current is None or current.client != client) and ip not in self.config.reserved_ips
        if current is None or current.client != client or current.state != BOUND:
            self.leases.put(
                Lease(
                    ip,
                    client,
                    p.mac,
                    hostname(p),
                    subnet.id,
                    OFFERED,
                    now,
                    now + self.policy.offer_hold,
                ),
                durable=False,
            )
        self._lease_event("dhcp.lease.offered", p, ip, subnet)
        reply = self._reply(p, MessageType.OFFER, subnet, inb, ip)
        if fresh and self.policy.probe:
            reply.probe = ip
        return reply

    def conflict(self, p: Packet, ip: int, now: float) -> None:
        """A probe found ``ip`` in use (RFC 2131 §4.4.1): quarantine it as if declined."""
        held = self.leases.by_ip.get(ip)
        if held is not None:
            subnet_id = held.subnet_id
        else:
            subnet_id = next((s.id for s in self.config.subnets if s.contains(ip)), 0)
        self.leases.put(
            Lease(ip, b"", "", "", subnet_id, DECLINED, now, now + self.policy.decline_hold)
        )
        data = {"mac": p.mac, "ip": ip_str(ip), "hostname": hostname(p) or None,
                "reason": "the address answered a ping before it was offered"}  # fmt: skip
        self.events.append(("dhcp.lease.declined", p.mac, data, self.config.sites.get(subnet_id)))

    def _request(self, p: Packet, subnet: Subnet, inb: Inbound, now: float) -> Reply | None:
        client = client_key(p, self.policy.match_client_id)
        sid = p.options.get(Opt.SERVER_ID)
        req = p.options.get(Opt.REQUESTED_IP)
        ours = self._server_ip(subnet, inb)
        if sid is not None:  # SELECTING
            if sid != ours.packed:
                held = self.leases.of_client(client)
                if held is not None and held.state == OFFERED:  # the client chose another server
                    held.expires = now
                return None
            if req is None or len(req) != 4 or p.ciaddr:
                return self._nak(p, subnet, inb, "SELECTING needs option 50 and no ciaddr")
            return self._ack_or_nak(p, client, int.from_bytes(req, "big"), subnet, inb, now)
        if req is not None and len(req) == 4 and not p.ciaddr:  # INIT-REBOOT
            ip = int.from_bytes(req, "big")
            if not subnet.contains(ip):
                return self._nak(p, subnet, inb, "requested address is not on this network")
            lease = self.leases.of_client(client)
            if lease is not None and lease.ip != ip and lease.holds(now) and lease.state == BOUND:
                return self._nak(p, subnet, inb, "that is not your address")
            return self._ack_or_nak(p, client, ip, subnet, inb, now)
        if p.ciaddr:  # RENEWING (unicast) or REBINDING (broadcast)
            ip = p.ciaddr
            lease = self.leases.by_ip.get(ip)
            if (
                lease is not None
                and lease.client == client
                and lease.state in (BOUND, OFFERED, EXPIRED)
            ):
                return self._ack_or_nak(p, client, ip, subnet, inb, now)
            if self._bindable(ip, client, p.mac, subnet, now):
                return self._ack_or_nak(p, client, ip, subnet, inb, now)
            if subnet.contains(ip) and self.policy.authoritative:
                return self._nak(p, subnet, inb, "that address is not yours")
        return None

    def _ack_or_nak(
        self, p: Packet, client: bytes, ip: int, subnet: Subnet, inb: Inbound, now: float
    ) -> Reply | None:
        if not self._bindable(ip, client, p.mac, subnet, now):
            if not self.policy.authoritative:
                return None
            return self._nak(p, subnet, inb, "requested address is not available")
        old = self.leases.by_ip.get(ip)
        renewed = old is not None and old.client == client and old.state == BOUND
        self.leases.put(
            Lease(
                ip,
                client,
                p.mac,
                hostname(p) or (old.hostname if old else ""),
                subnet.id,
                BOUND,
                now,
                now + subnet.spec.lease_time,
            )
        )
        self._lease_event(
            "dhcp.lease.renewed" if renewed else "dhcp.lease.bound",
            p,
            ip,
            subnet,
            subnet.spec.lease_time,
        )
        return self._reply(p, MessageType.ACK, subnet, inb, ip, durable=True)

    def _decline(self, p: Packet, subnet: Subnet, inb: Inbound, now: float) -> None:
        sid = p.options.get(Opt.SERVER_ID)
        req = p.options.get(Opt.REQUESTED_IP)
        if (
            req is None
            or len(req) != 4
            or (sid is not None and sid != self._server_ip(subnet, inb).packed)
        ):
            return
        ip = int.from_bytes(req, "big")
        lease = self.leases.by_ip.get(ip)
        if lease is None or lease.client != client_key(p, self.policy.match_client_id):
            return
        # RFC 2131 §4.3.3: the address is in use by someone else; keep it out of the pool.
        self.leases.put(
            Lease(ip, b"", "", "", subnet.id, DECLINED, now, now + self.policy.decline_hold)
        )
        self._lease_event("dhcp.lease.declined", p, ip, subnet)

    def _release(self, p: Packet, subnet: Subnet, inb: Inbound, now: float) -> None:
        ip = p.ciaddr
        lease = self.leases.by_ip.get(ip)
        client = client_key(p, self.policy.match_client_id)
        if lease is None or lease.client != client or lease.state != BOUND:
            return
        lease.state = RELEASED
        lease.expires = now
        self.leases.dirty[ip] = lease
        self._lease_event("dhcp.lease.released", p, ip, subnet)

    def _inform(self, p: Packet, subnet: Subnet, inb: Inbound) -> Reply | None:
        if not p.ciaddr:
            return None
        return self._reply(p, MessageType.ACK, subnet, inb, 0, lease=False)

    def _nak(self, p: Packet, subnet: Subnet, inb: Inbound, why: str) -> Reply:
        return replies.nak(p, self._server_ip(subnet, inb), why)

    def _proxy(self, p: Packet, mtype: int, inb: Inbound) -> Reply | None:
        """ProxyDHCP (PXE 2.1 §2.2.4): boot information only, no address; on 67 answer
        DISCOVERs, on 4011 answer REQUESTs."""
        bc = pxe.classify(p)
        if bc is None:
            return None
        discover = inb.port == 67 and mtype == MessageType.DISCOVER
        if not (discover or (inb.port == 4011 and mtype == MessageType.REQUEST)):
            return None
        subnet = self.select_subnet(p, inb)
        if subnet is None:
            return None
        server = self._server_ip(subnet, inb)
        res = self.config.reservations.get(p.mac)
        node = res.boot if res is not None else None
        boot = pxe.decide(
            p, bc, subnet.spec.boot, server, self.policy.http_port, node, self.tags_for,
            proxy=True, script_url=self.policy.ipxe_script_url,
        )  # fmt: skip
        if boot is None:
            return None
        if discover:
            return replies.proxy(p, MessageType.OFFER, server, boot, (replies.BROADCAST, 68))
        return replies.proxy(p, MessageType.ACK, server, boot, inb.src)

    def _server_ip(self, subnet: Subnet, inb: Inbound) -> IPv4Address:
        return subnet.spec.server_address or inb.local_ip

    def _reply(
        self,
        p: Packet,
        mtype: int,
        subnet: Subnet,
        inb: Inbound,
        ip: int,
        durable: bool = False,
        lease: bool = True,
    ) -> Reply:
        return replies.build(
            p,
            mtype,
            subnet,
            self._server_ip(subnet, inb),
            ip,
            self.config.reservations.get(p.mac),
            self.policy.http_port,
            self.tags_for,
            durable,
            lease,
            self.policy.ipxe_script_url,
        )

    # -- events ----------------------------------------------------------------------------

    def _lease_event(
        self, type_: str, p: Packet, ip: int, subnet: Subnet, lease_time: int | None = None
    ) -> None:
        data: dict[str, Any] = {
            "mac": p.mac,
            "ip": ip_str(ip),
            "hostname": hostname(p) or None,
            "subnet": subnet.spec.name,
        }
        if lease_time is not None:
            data["lease_time"] = lease_time
        self.events.append((type_, p.mac, data, subnet.spec.site))
