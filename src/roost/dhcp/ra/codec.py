"""ICMPv6 router solicitations and advertisements as bytes and back (RFC 4861 §4.1, §4.2,
§4.6), with no I/O.

The kernel fills in the ICMPv6 checksum of what a raw ICMPv6 socket sends and checks it on what
it delivers (RFC 3542 §3.1), so :func:`encode` leaves it zero; :func:`checksum` computes it over
the IPv6 pseudo-header for packets read from a capture. :func:`decode` applies the validity
checks of RFC 4861 §6.1.1/§6.1.2 that the message itself carries (code 0, length, non-zero
option lengths, no source link-layer option from the unspecified address); the hop limit of
255 is the transport's to check, it is not in the ICMPv6 message. Anything else raises
:class:`MalformedPacket`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network

from roost.dhcp.errors import MalformedPacket

ROUTER_SOLICITATION = 133
ROUTER_ADVERTISEMENT = 134
OPT_SOURCE_LINK_ADDRESS = 1
OPT_PREFIX_INFORMATION = 3
OPT_MTU = 5
FLAG_MANAGED = 0x80
FLAG_OTHER = 0x40
PREFIX_ON_LINK = 0x80
PREFIX_AUTONOMOUS = 0x40
_RA = struct.Struct("!BBHBBHII")
_PREFIX = struct.Struct("!BBBBIII16s")  # type, length, prefix length, flags, lifetimes, prefix


@dataclass(frozen=True, slots=True)
class Prefix:
    """A Prefix Information option (RFC 4861 §4.6.2); lifetimes default to §6.2.1's."""

    network: IPv6Network
    on_link: bool = True
    autonomous: bool = True
    valid_lifetime: int = 2_592_000
    preferred_lifetime: int = 604_800


@dataclass(frozen=True, slots=True)
class RouterSolicitation:
    source_link_address: bytes | None = None


@dataclass(frozen=True, slots=True)
class RouterAdvertisement:
    router_lifetime: int = 0
    """Seconds this router may be a default router; 0: it is none (RFC 4861 §4.2)."""
    cur_hop_limit: int = 0  # 0: unspecified, hosts keep their own
    flags: int = 0
    reachable_time: int = 0
    retrans_timer: int = 0
    source_link_address: bytes | None = None
    mtu: int | None = None
    prefixes: tuple[Prefix, ...] = field(default=())


Message = RouterSolicitation | RouterAdvertisement


def _option(kind: int, body: bytes) -> bytes:
    """An ND option: type, length in units of 8 bytes, body padded to that length."""
    size = -(-(len(body) + 2) // 8) * 8
    return bytes((kind, size // 8)) + body.ljust(size - 2, b"\0")


def encode(msg: Message) -> bytes:
    """The ICMPv6 message, checksum zero (the kernel fills it in)."""
    opts = b""
    if msg.source_link_address is not None:
        opts += _option(OPT_SOURCE_LINK_ADDRESS, msg.source_link_address)
    if isinstance(msg, RouterSolicitation):
        return struct.pack("!BBHI", ROUTER_SOLICITATION, 0, 0, 0) + opts
    if msg.mtu is not None:
        opts += _option(OPT_MTU, struct.pack("!HI", 0, msg.mtu))
    for p in msg.prefixes:
        flags = (PREFIX_ON_LINK if p.on_link else 0) | (PREFIX_AUTONOMOUS if p.autonomous else 0)
        opts += _PREFIX.pack(
            OPT_PREFIX_INFORMATION, 4, p.network.prefixlen, flags,
            p.valid_lifetime, p.preferred_lifetime, 0, p.network.network_address.packed,
        )  # fmt: skip
    head = _RA.pack(
        ROUTER_ADVERTISEMENT, 0, 0, msg.cur_hop_limit, msg.flags, msg.router_lifetime,
        msg.reachable_time, msg.retrans_timer,
    )  # fmt: skip
    return head + opts


def _options(data: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise MalformedPacket("truncated ND option")
        kind, units = data[pos], data[pos + 1]
        if units == 0:
            raise MalformedPacket("ND option of length 0")  # §6.1.1: silently discard
        end = pos + units * 8
        if end > len(data):
            raise MalformedPacket("ND option runs past the end of the message")
        out.append((kind, data[pos + 2 : end]))
        pos = end
    return out


def decode(data: bytes, source: IPv6Address | None = None) -> Message:
    """A router solicitation or advertisement; ``source`` is the IPv6 source when known."""
    if len(data) < 8:
        raise MalformedPacket(f"ICMPv6 message of {len(data)} bytes")
    kind, code = data[0], data[1]
    if kind not in (ROUTER_SOLICITATION, ROUTER_ADVERTISEMENT):
        raise MalformedPacket(f"ICMPv6 type {kind} is not a router solicitation/advertisement")
    if code != 0:
        raise MalformedPacket(f"ICMPv6 code {code} (must be 0)")
    if kind == ROUTER_SOLICITATION:
        slla = None
        for opt, body in _options(data[8:]):
            if opt == OPT_SOURCE_LINK_ADDRESS:
                slla = body
        if slla is not None and source is not None and source.is_unspecified:
            raise MalformedPacket("source link-layer address from the unspecified address")
        return RouterSolicitation(slla)
    if len(data) < _RA.size:
        raise MalformedPacket(f"router advertisement of {len(data)} bytes")
    _, _, _, hop, flags, lifetime, reachable, retrans = _RA.unpack_from(data)
    slla, mtu, prefixes = None, None, []
    for opt, body in _options(data[_RA.size :]):
        if opt == OPT_SOURCE_LINK_ADDRESS:
            slla = body
        elif opt == OPT_MTU:
            if len(body) != 6:
                raise MalformedPacket("MTU option of the wrong length")
            mtu = struct.unpack("!I", body[2:])[0]
        elif opt == OPT_PREFIX_INFORMATION:
            if len(body) != 30:
                raise MalformedPacket("prefix information option of the wrong length")
            _, _, plen, pflags, valid, preferred, _, raw = _PREFIX.unpack(bytes((3, 4)) + body)
            if plen > 128:
                raise MalformedPacket(f"prefix length {plen}")
            net = IPv6Network((IPv6Address(raw), plen), strict=False)
            prefixes.append(
                Prefix(
                    net,
                    bool(pflags & PREFIX_ON_LINK),
                    bool(pflags & PREFIX_AUTONOMOUS),
                    valid,
                    preferred,
                )
            )
    return RouterAdvertisement(lifetime, hop, flags, reachable, retrans, slla, mtu, tuple(prefixes))


def checksum(source: IPv6Address, dest: IPv6Address, message: bytes) -> int:
    """The ICMPv6 checksum (RFC 4443 §2.3) of ``message`` with its checksum field zeroed."""
    body = message[:2] + b"\0\0" + message[4:]
    data = source.packed + dest.packed + struct.pack("!IxxxB", len(body), 58) + body
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
