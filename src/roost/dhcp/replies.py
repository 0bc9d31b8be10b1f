"""Building DHCP replies: header fields (RFC 2131 Table 3), options in the client's order
(RFC 2132 §9.8), boot information, option 82 echo, and where a reply goes (RFC 2131 §4.1).

Pure functions the state machine in :mod:`roost.dhcp.server` calls once it has decided what
to answer; kept apart so that module holds only the decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from roost.dhcp import pxe
from roost.dhcp.codec import (
    BOOTREPLY,
    BROADCAST_FLAG,
    DEFAULT_MAX_SIZE,
    MIN_SIZE,
    OPTIONS_AT,
    Packet,
    encode,
    encode_options,
    encode_with_options,
    ip_str,
)
from roost.dhcp.config import ReservationSpec, Subnet
from roost.dhcp.options import MessageType, Opt

BROADCAST = "255.255.255.255"
ALWAYS = (Opt.SUBNET_MASK, Opt.ROUTERS, Opt.DNS_SERVERS, Opt.DOMAIN_NAME)
"""Sent even when not asked for (as Kea and dnsmasq do); the rest only when requested."""
BOOT_OPTIONS = (Opt.VENDOR_CLASS, Opt.VENDOR_SPECIFIC, Opt.TFTP_SERVER, Opt.BOOTFILE, Opt.IPXE)
_TYPE_BYTES: dict[int, bytes] = {int(t): bytes((t,)) for t in MessageType}


@dataclass(slots=True)
class Reply:
    data: bytes
    dest: tuple[str, int]
    mtype: int
    durable: bool = False
    arp: tuple[str, bytes] | None = None
    """(ip, hardware address): unicast to a client without an address needs an ARP entry."""
    probe: int | None = None
    """An address to ping before this OFFER may leave (a new address, ``dhcp.probe`` on)."""


def base(p: Packet, yiaddr: int, siaddr: int) -> Packet:
    """A reply's header: RFC 2131 Table 3 (xid, flags, giaddr, chaddr copied; hops/secs 0)."""
    return Packet(
        BOOTREPLY, p.htype, p.hlen, 0, p.xid, 0, p.flags, p.ciaddr, yiaddr, siaddr, p.giaddr,
        p.chaddr, bytes(64), bytes(128), {},
    )  # fmt: skip


def apply_boot(r: Packet, boot: pxe.BootReply, with_options: bool = True) -> None:
    r.siaddr = boot.siaddr
    r.file = boot.file.encode()[:127].ljust(128, b"\0")
    if with_options:
        r.options.update(boot.options)


def build(
    p: Packet,
    mtype: int,
    subnet: Subnet,
    server: IPv4Address,
    ip: int,
    reservation: ReservationSpec | None,
    http_port: int,
    tags_for: pxe.TagsFor,
    durable: bool = False,
    lease: bool = True,
    script_url: str | None = None,
) -> Reply:
    """OFFER or ACK (``lease=False``: the ACK to an INFORM, without lease times)."""
    r = base(p, ip, int(server))
    if mtype == MessageType.OFFER:
        r.ciaddr = 0  # RFC 2131 Table 3: ciaddr is 0 in an OFFER
    bc = pxe.classify(p)
    data = None
    if bc is None and (reservation is None or not reservation.hostname):
        data = _plain(r, p, mtype, subnet, server, lease)
    if data is None:
        data = _general(
            r, p, mtype, subnet, server, reservation, http_port, tags_for, lease, bc, script_url
        )
    dest, arp = destination(p, r)
    return Reply(data, dest, mtype, durable, arp)


def _general(
    r: Packet,
    p: Packet,
    mtype: int,
    subnet: Subnet,
    server: IPv4Address,
    reservation: ReservationSpec | None,
    http_port: int,
    tags_for: pxe.TagsFor,
    lease: bool,
    bc: pxe.BootClient | None,
    script_url: str | None = None,
) -> bytes:
    """Any reply: boot information, a reserved hostname, overload when it does not fit."""
    opts = r.options
    opts[Opt.MESSAGE_TYPE] = _TYPE_BYTES[mtype]
    opts[Opt.SERVER_ID] = server.packed
    if Opt.CLIENT_ID in p.options:  # RFC 6842: echo it
        opts[Opt.CLIENT_ID] = p.options[Opt.CLIENT_ID]
    if lease:
        opts.update(subnet.lease_options)
    have = subnet.options
    extra: dict[int, bytes] = {}
    if reservation is not None and reservation.hostname:
        extra[Opt.HOSTNAME] = reservation.hostname.encode()
    if bc is not None:
        node = reservation.boot if reservation else None
        boot = pxe.decide(
            p, bc, subnet.spec.boot, server, http_port, node, tags_for, script_url=script_url
        )
        if boot is not None:
            apply_boot(r, boot, with_options=False)
            extra.update(boot.options)
    for code in p.options.get(Opt.PARAMETER_REQUEST_LIST, b""):
        # RFC 2132 §9.8: in the order the client asked
        if code not in opts:
            value = extra.get(code) or have.get(code)
            if value is not None:
                opts[code] = value
    for code in ALWAYS:
        if code not in opts and code in have:
            opts[code] = have[code]
    for code in BOOT_OPTIONS:  # PXE ROMs need these whether or not they asked
        if code in extra and code not in opts:
            opts[code] = extra[code]
    if Opt.RELAY_AGENT_INFO in p.options:  # RFC 3046 §2.2: echo it, last
        opts[Opt.RELAY_AGENT_INFO] = p.options[Opt.RELAY_AGENT_INFO]
    return finish(r, p)


def _plain(
    r: Packet, p: Packet, mtype: int, subnet: Subnet, server: IPv4Address, lease: bool
) -> bytes | None:
    """The encoded reply for a client that is not booting and has no reserved hostname, or
    None when it must go the general way (too big for the client: overload). Its options
    depend only on the subnet, the client's parameter request list and ``lease``, so they
    are encoded once per such pair and kept on the subnet; the bytes equal what the general
    path builds."""
    prl = p.options.get(Opt.PARAMETER_REQUEST_LIST, b"")
    key = (prl, lease)
    middle = subnet.reply_options.get(key)
    if middle is None:
        opts: dict[int, bytes] = dict(subnet.lease_options) if lease else {}
        have = subnet.options
        for code in prl:
            if code not in opts and code not in _HEAD and code in have:
                opts[code] = have[code]
        for code in ALWAYS:
            if code not in opts and code in have:
                opts[code] = have[code]
        middle = encode_options(opts)
        if len(subnet.reply_options) < _PLAIN_CACHE:  # a client picks its list: stay bounded
            subnet.reply_options[key] = middle
    rai = p.options.get(Opt.RELAY_AGENT_INFO)
    cid = p.options.get(Opt.CLIENT_ID)
    body = b"".join(
        (
            _HEAD_TLV[mtype],
            b"\x36\x04",
            server.packed,
            b"" if cid is None else encode_options({Opt.CLIENT_ID: cid}),
            middle,
            b"" if rai is None else encode_options({Opt.RELAY_AGENT_INFO: rai}),
        )
    )
    if OPTIONS_AT + len(body) + 1 > max_size(p):
        return None
    data = encode_with_options(r, body)
    return data if len(data) >= MIN_SIZE else data + bytes(MIN_SIZE - len(data))


_HEAD = (Opt.MESSAGE_TYPE, Opt.SERVER_ID, Opt.CLIENT_ID)
_HEAD_TLV = {int(t): bytes((Opt.MESSAGE_TYPE, 1, t)) for t in MessageType}
_PLAIN_CACHE = 64


def nak(p: Packet, server: IPv4Address, why: str) -> Reply:
    r = base(p, 0, 0)
    r.options[Opt.MESSAGE_TYPE] = _TYPE_BYTES[MessageType.NAK]
    r.options[Opt.SERVER_ID] = server.packed
    r.options[Opt.MESSAGE] = why.encode()
    if Opt.CLIENT_ID in p.options:  # RFC 6842
        r.options[Opt.CLIENT_ID] = p.options[Opt.CLIENT_ID]
    if Opt.RELAY_AGENT_INFO in p.options:
        r.options[Opt.RELAY_AGENT_INFO] = p.options[Opt.RELAY_AGENT_INFO]
    if p.giaddr:
        r.flags |= BROADCAST_FLAG  # RFC 2131 §4.3.2: the relay must broadcast a NAK
        return Reply(finish(r, p), (ip_str(p.giaddr), 67), MessageType.NAK)
    return Reply(finish(r, p), (BROADCAST, 68), MessageType.NAK)


def proxy(
    p: Packet, mtype: int, server: IPv4Address, boot: pxe.BootReply, dest: tuple[str, int]
) -> Reply:
    """ProxyDHCP offer or ACK: boot information only, no address (PXE 2.1 §2.2.4)."""
    r = base(p, 0, int(server))
    r.options[Opt.MESSAGE_TYPE] = _TYPE_BYTES[mtype]
    r.options[Opt.SERVER_ID] = server.packed
    r.options[Opt.VENDOR_CLASS] = b"PXEClient"
    apply_boot(r, boot)
    if Opt.CLIENT_UUID in p.options:
        r.options[Opt.CLIENT_UUID] = p.options[Opt.CLIENT_UUID]
    return Reply(finish(r, p), dest, mtype)


def finish(r: Packet, p: Packet) -> bytes:
    """Encode within the client's size limit (overloading file/sname if needed), padded to
    the BOOTP minimum."""
    try:
        data = encode(r, max_size(p))
    except ValueError:  # too much even with overload: send it all and let the client cope
        return encode(r)
    return data if len(data) >= MIN_SIZE else data + bytes(MIN_SIZE - len(data))


def destination(p: Packet, r: Packet) -> tuple[tuple[str, int], tuple[str, bytes] | None]:
    """RFC 2131 §4.1: giaddr, else ciaddr, else broadcast flag, else unicast to yiaddr."""
    if p.giaddr:
        return (ip_str(p.giaddr), 67), None
    if p.ciaddr:
        return (ip_str(p.ciaddr), 68), None
    if p.flags & BROADCAST_FLAG or not r.yiaddr:
        return (BROADCAST, 68), None
    yi = ip_str(r.yiaddr)
    return (yi, 68), (yi, p.chaddr[: p.hlen])


def client_key(p: Packet, match_client_id: bool = True) -> bytes:
    """RFC 2131 §4.2: the client identifier if sent, else hardware type + address. With
    ``match_client_id``, an identifier that is the hardware type and address (``01:<mac>``, as
    iPXE, udhcpc and dhclient send) is the same client as none (the firmware's PXE)."""
    hw = bytes((p.htype,)) + p.chaddr[: p.hlen]
    cid = p.options.get(Opt.CLIENT_ID)
    if cid and not (match_client_id and cid == hw):
        return b"\xff" + cid
    return hw


def matched_key(key: bytes, mac: str) -> bytes:
    """A lease key stored before ``match_client_id`` (``ff 01 <mac>``) as it is keyed now."""
    if key[:2] == b"\xff\x01" and key[2:] == bytes.fromhex(mac.replace(":", "")):
        return key[1:]
    return key


def hostname(p: Packet) -> str:
    raw = p.options.get(Opt.HOSTNAME)
    return raw.decode("utf-8", "replace") if raw else ""


def max_size(p: Packet) -> int:
    """RFC 2132 §9.10 maximum message size, less IP and UDP headers; at least 576 - 28."""
    raw = p.options.get(Opt.MAX_MESSAGE_SIZE)
    size = int.from_bytes(raw, "big") if raw and len(raw) == 2 else DEFAULT_MAX_SIZE
    return max(DEFAULT_MAX_SIZE, min(size, 1500)) - 28
