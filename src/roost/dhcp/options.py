"""DHCPv4 option codes and their typed values (RFC 2132 and the RFCs cited per option).

A packet keeps every option as the raw bytes of its (RFC 3396 joined) value, so unknown
options survive untouched and the hot path decodes only what it reads. This module turns raw
values into typed Python values and back: ``decode_value(code, raw)`` and
``encode_value(code, value)``, driven by the ``KINDS`` table. Values that do not parse raise
:class:`~roost.dhcp.errors.MalformedPacket`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from enum import IntEnum
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from roost.dhcp.errors import MalformedPacket


class Opt(IntEnum):
    PAD = 0
    SUBNET_MASK = 1
    ROUTERS = 3
    DNS_SERVERS = 6
    HOSTNAME = 12
    DOMAIN_NAME = 15
    BROADCAST = 28
    NTP_SERVERS = 42
    VENDOR_SPECIFIC = 43
    REQUESTED_IP = 50
    LEASE_TIME = 51
    OVERLOAD = 52
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAMETER_REQUEST_LIST = 55
    MESSAGE = 56
    MAX_MESSAGE_SIZE = 57
    RENEWAL_TIME = 58
    REBINDING_TIME = 59
    VENDOR_CLASS = 60
    CLIENT_ID = 61
    TFTP_SERVER = 66
    BOOTFILE = 67
    USER_CLASS = 77
    RELAY_AGENT_INFO = 82
    CLIENT_ARCH = 93
    CLIENT_NDI = 94
    CLIENT_UUID = 97
    SUBNET_SELECTION = 118
    DOMAIN_SEARCH = 119
    CLASSLESS_ROUTES = 121
    IPXE = 175
    END = 255


class MessageType(IntEnum):
    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


# -- value kinds ---------------------------------------------------------------------------


def _ip(raw: bytes) -> IPv4Address:
    if len(raw) != 4:
        raise MalformedPacket(f"address option of {len(raw)} bytes, not 4")
    return IPv4Address(raw)


def _ips(raw: bytes) -> list[IPv4Address]:
    if len(raw) % 4:
        raise MalformedPacket(f"address list of {len(raw)} bytes, not a multiple of 4")
    return [IPv4Address(raw[i : i + 4]) for i in range(0, len(raw), 4)]


def _uint(size: int) -> tuple[Callable[[bytes], int], Callable[[int], bytes]]:
    fmt = {1: "!B", 2: "!H", 4: "!I"}[size]

    def dec(raw: bytes) -> int:
        if len(raw) != size:
            raise MalformedPacket(f"{size}-byte integer option of {len(raw)} bytes")
        return int(struct.unpack(fmt, raw)[0])

    def enc(v: int) -> bytes:
        return struct.pack(fmt, v)

    return dec, enc


def _text(raw: bytes) -> str:
    # surrogateescape: any byte string survives decode/encode unchanged (RFC 2132 says NVT
    # ASCII, real clients send UTF-8 and worse).
    return raw.decode("utf-8", "surrogateescape")


def _untext(v: str) -> bytes:
    return v.encode("utf-8", "surrogateescape")


def decode_tlv(raw: bytes) -> list[tuple[int, bytes]]:
    """Sub-options (code, length, value)* as in options 43, 82 (RFC 3046 §2.0) and 175."""
    out: list[tuple[int, bytes]] = []
    i, n = 0, len(raw)
    while i < n:
        code = raw[i]
        if code in (0, 255) and i + 1 >= n:  # a trailing PAD or END (PXE option 43 ends with 255)
            break
        if i + 2 > n or i + 2 + raw[i + 1] > n:
            raise MalformedPacket(f"sub-option {code} runs past its option")
        out.append((code, raw[i + 2 : i + 2 + raw[i + 1]]))
        i += 2 + raw[i + 1]
    return out


def encode_tlv(subs: list[tuple[int, bytes]]) -> bytes:
    parts = []
    for code, value in subs:
        if len(value) > 255:
            raise ValueError(f"sub-option {code} longer than 255 bytes")
        parts.append(bytes((code, len(value))) + value)
    return b"".join(parts)


def _user_class(raw: bytes) -> list[bytes]:
    """RFC 3004 §4: length-prefixed instances; iPXE and others send one bare string."""
    items, i = [], 0
    while i < len(raw):
        n = raw[i]
        if n == 0 or i + 1 + n > len(raw):
            return [raw]
        items.append(raw[i + 1 : i + 1 + n])
        i += 1 + n
    return items if items else [raw]


def _un_user_class(v: list[bytes]) -> bytes:
    return b"".join(bytes((len(x),)) + x for x in v)


def _domain_search(raw: bytes) -> list[str]:
    """RFC 3397: DNS names, possibly compressed with pointers into the option itself."""
    names: list[str] = []
    i = 0
    while i < len(raw):
        labels, i = _read_name(raw, i)
        names.append(".".join(labels))
    return names


def _read_name(raw: bytes, i: int) -> tuple[list[str], int]:
    labels: list[str] = []
    end: int | None = None
    jumps = 0
    while True:
        if i >= len(raw):
            raise MalformedPacket("domain search name runs past its option")
        n = raw[i]
        if n == 0:
            return labels, (end if end is not None else i + 1)
        if n & 0xC0 == 0xC0:
            if i + 1 >= len(raw) or jumps > 64:
                raise MalformedPacket("bad compression pointer in domain search")
            if end is None:
                end = i + 2
            i = ((n & 0x3F) << 8) | raw[i + 1]
            jumps += 1
            continue
        if n > 63 or i + 1 + n > len(raw):
            raise MalformedPacket("bad label in domain search")
        labels.append(raw[i + 1 : i + 1 + n].decode("ascii", "surrogateescape"))
        i += 1 + n


def _un_domain_search(names: list[str]) -> bytes:
    out = bytearray()
    for name in names:
        for label in filter(None, name.split(".")):
            b = label.encode("ascii", "surrogateescape")
            if len(b) > 63:
                raise ValueError(f"DNS label {label!r} longer than 63 bytes")
            out += bytes((len(b),)) + b
        out += b"\0"
    return bytes(out)


def _routes(raw: bytes) -> list[tuple[IPv4Network, IPv4Address]]:
    """RFC 3442: (width, significant octets of the destination, router)*."""
    routes, i = [], 0
    while i < len(raw):
        width = raw[i]
        if width > 32:
            raise MalformedPacket(f"classless route of width {width}")
        octets = (width + 7) // 8
        if i + 1 + octets + 4 > len(raw):
            raise MalformedPacket("classless route runs past its option")
        dest = raw[i + 1 : i + 1 + octets] + bytes(4 - octets)
        try:
            net = IPv4Network((int.from_bytes(dest, "big"), width))
        except ValueError as exc:
            raise MalformedPacket(f"classless route: {exc}") from None
        routes.append((net, IPv4Address(raw[i + 1 + octets : i + 5 + octets])))
        i += 5 + octets
    return routes


def _un_routes(routes: list[tuple[IPv4Network, IPv4Address]]) -> bytes:
    out = bytearray()
    for net, router in routes:
        octets = (net.prefixlen + 7) // 8
        out += bytes((net.prefixlen,)) + net.network_address.packed[:octets] + router.packed
    return bytes(out)


def _arch(raw: bytes) -> list[int]:
    if len(raw) % 2 or not raw:
        raise MalformedPacket("client architecture option not a list of 16-bit types")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def _ndi(raw: bytes) -> tuple[int, int, int]:
    if len(raw) != 3:
        raise MalformedPacket("client network interface identifier is not 3 bytes")
    return raw[0], raw[1], raw[2]


_u8, _p8 = _uint(1)
_u16, _p16 = _uint(2)
_u32, _p32 = _uint(4)

KINDS: dict[int, tuple[Callable[[bytes], Any], Callable[[Any], bytes]]] = {
    Opt.SUBNET_MASK: (_ip, lambda v: v.packed),
    Opt.ROUTERS: (_ips, lambda v: b"".join(a.packed for a in v)),
    Opt.DNS_SERVERS: (_ips, lambda v: b"".join(a.packed for a in v)),
    Opt.HOSTNAME: (_text, _untext),
    Opt.DOMAIN_NAME: (_text, _untext),
    Opt.BROADCAST: (_ip, lambda v: v.packed),
    Opt.NTP_SERVERS: (_ips, lambda v: b"".join(a.packed for a in v)),
    Opt.VENDOR_SPECIFIC: (decode_tlv, encode_tlv),
    Opt.REQUESTED_IP: (_ip, lambda v: v.packed),
    Opt.LEASE_TIME: (_u32, _p32),
    Opt.OVERLOAD: (_u8, _p8),
    Opt.MESSAGE_TYPE: (_u8, _p8),
    Opt.SERVER_ID: (_ip, lambda v: v.packed),
    Opt.PARAMETER_REQUEST_LIST: (list, bytes),
    Opt.MESSAGE: (_text, _untext),
    Opt.MAX_MESSAGE_SIZE: (_u16, _p16),
    Opt.RENEWAL_TIME: (_u32, _p32),
    Opt.REBINDING_TIME: (_u32, _p32),
    Opt.VENDOR_CLASS: (_text, _untext),
    Opt.CLIENT_ID: (bytes, bytes),
    Opt.TFTP_SERVER: (_text, _untext),
    Opt.BOOTFILE: (_text, _untext),
    Opt.USER_CLASS: (_user_class, _un_user_class),
    Opt.RELAY_AGENT_INFO: (decode_tlv, encode_tlv),
    Opt.CLIENT_ARCH: (_arch, lambda v: b"".join(x.to_bytes(2, "big") for x in v)),
    Opt.CLIENT_NDI: (_ndi, bytes),
    Opt.CLIENT_UUID: (bytes, bytes),
    Opt.SUBNET_SELECTION: (_ip, lambda v: v.packed),
    Opt.DOMAIN_SEARCH: (_domain_search, _un_domain_search),
    Opt.CLASSLESS_ROUTES: (_routes, _un_routes),
    Opt.IPXE: (decode_tlv, encode_tlv),
}
"""code → (decode raw bytes to a typed value, encode a typed value to raw bytes)."""


def decode_value(code: int, raw: bytes) -> Any:
    """The typed value of option ``code``; unknown options stay bytes."""
    kind = KINDS.get(code)
    if kind is None:
        return raw
    try:
        return kind[0](raw)
    except MalformedPacket:
        raise
    except (ValueError, IndexError) as exc:
        raise MalformedPacket(f"option {code}: {exc}") from None


def encode_value(code: int, value: Any) -> bytes:
    """Raw bytes of a typed value for option ``code``; bytes pass through unchanged."""
    kind = KINDS.get(code)
    if kind is None or isinstance(value, bytes):
        return bytes(value)
    return kind[1](value)


# RFC 3046 §2.0 sub-options of option 82, and RFC 3527 link selection inside it.
RAI_CIRCUIT_ID = 1
RAI_REMOTE_ID = 2
RAI_LINK_SELECTION = 5
