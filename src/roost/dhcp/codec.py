"""BOOTP/DHCPv4 packets as bytes and back (RFC 2131 §2, RFC 2132, RFC 3396), with no I/O.

Theory of operation: :func:`decode` reads the fixed 236-byte BOOTP header, the magic cookie
and the options, joins every option that appears more than once into one value (RFC 3396
§5: options field, then ``file``, then ``sname`` when option 52 overloads them), and returns a
:class:`Packet` whose ``options`` map codes to raw bytes in first-seen order. :func:`encode`
does the reverse: values longer than 255 bytes are split into consecutive instances, and when
a ``max_size`` is given and the options do not fit, the rest go into ``file`` and ``sname``
with option 52 (RFC 2132 §9.3). ``padding`` counts the zero bytes after END, so a client's
packet re-encodes byte for byte. Anything that does not parse raises :class:`MalformedPacket`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from roost.dhcp.errors import MalformedPacket
from roost.dhcp.options import Opt, decode_value

MAGIC = b"\x63\x82\x53\x63"
HEADER = struct.Struct("!BBBBIHHIIII16s64s128s")
BOOTREQUEST = 1
BOOTREPLY = 2
BROADCAST_FLAG = 0x8000
MIN_SIZE = 300  # RFC 1542 §2.1: BOOTP packets of less than 300 bytes may be dropped by relays
DEFAULT_MAX_SIZE = 576  # RFC 2131 §2: every client accepts at least this

OPTIONS_AT = HEADER.size + 4


@dataclass(slots=True)
class Packet:
    """One DHCP message. Header addresses are ints (cheap on the packet path; ``ip_str`` and
    ``IPv4Address`` turn them into text). ``chaddr`` is the raw 16-byte field; ``mac`` formats
    its first ``hlen`` bytes."""

    op: int = BOOTREQUEST
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: int = 0
    yiaddr: int = 0
    siaddr: int = 0
    giaddr: int = 0
    chaddr: bytes = bytes(16)
    sname: bytes = bytes(64)
    file: bytes = bytes(128)
    options: dict[int, bytes] = field(default_factory=dict)
    padding: int = 0
    _mac: str | None = field(default=None, repr=False, compare=False)

    @property
    def mac(self) -> str:
        """Lower-case, colon-separated hardware address (the inventory's node key); computed
        once, as the server asks for it several times per packet."""
        mac = self._mac
        if mac is None:
            mac = self._mac = self.chaddr[: min(self.hlen, 16)].hex(":")
        return mac

    @property
    def message_type(self) -> int | None:
        raw = self.options.get(Opt.MESSAGE_TYPE)
        return raw[0] if raw and len(raw) == 1 else None

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & BROADCAST_FLAG)

    def get(self, code: int) -> Any:
        """Typed value of an option, or None when absent; raises MalformedPacket if bad."""
        raw = self.options.get(code)
        return None if raw is None else decode_value(code, raw)


def ip_str(ip: int) -> str:
    """Dotted quad of an int address, faster than ``str(IPv4Address(ip))``."""
    return f"{ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}"


def _field_text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def boot_file(p: Packet) -> str:
    """The ``file`` header field as text (up to its first NUL)."""
    return _field_text(p.file)


def _parse_options(buf: bytes, start: int, end: int, into: dict[int, bytes]) -> tuple[int, int]:
    """Parse options in buf[start:end] into ``into``; return (overload value, padding)."""
    i = start
    overload = 0
    while i < end:
        code = buf[i]
        if code == 0:  # PAD
            i += 1
            continue
        if code == 255:  # END; whatever follows is padding
            return overload, end - i - 1
        if i + 1 >= end:
            raise MalformedPacket(f"option {code} truncated before its length")
        n = buf[i + 1]
        if i + 2 + n > end:
            raise MalformedPacket(f"option {code} ({n} bytes) runs past the packet")
        value = buf[i + 2 : i + 2 + n]
        if code == Opt.OVERLOAD:
            if n != 1 or value[0] not in (1, 2, 3):
                raise MalformedPacket("option 52 (overload) must be 1, 2 or 3")
            overload = value[0]
        elif code in into:
            into[code] += value  # RFC 3396 §5: instances are concatenated in order
        else:
            into[code] = value
        i += 2 + n
    return overload, 0


def decode(data: bytes) -> Packet:
    """Parse one DHCP message; raise :class:`MalformedPacket` for anything else."""
    if len(data) < OPTIONS_AT:
        raise MalformedPacket(f"{len(data)} bytes is shorter than a DHCP header (240)")
    if data[HEADER.size : OPTIONS_AT] != MAGIC:
        raise MalformedPacket("no DHCP magic cookie (plain BOOTP is not served)")
    (op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, chaddr, sname, file) = (
        HEADER.unpack_from(data)
    )
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise MalformedPacket(f"op {op} is neither BOOTREQUEST nor BOOTREPLY")
    options: dict[int, bytes] = {}
    overload, padding = _parse_options(data, OPTIONS_AT, len(data), options)
    if overload:
        # RFC 3396 §5 / RFC 2132 §9.3: file first, then sname; both then carry no text.
        if overload & 1:
            _parse_options(file, 0, len(file), options)
            file = bytes(128)
        if overload & 2:
            _parse_options(sname, 0, len(sname), options)
            sname = bytes(64)
    return Packet(
        op,
        htype,
        hlen,
        hops,
        xid,
        secs,
        flags,
        ci,
        yi,
        si,
        gi,
        chaddr,
        sname,
        file,
        options,
        padding,
    )


def _instances(options: dict[int, bytes]) -> list[bytes]:
    """Each option as one or more TLV instances, split at 255 bytes (RFC 3396 §7)."""
    out = []
    for code, value in options.items():
        if code in _MANAGED:
            raise ValueError(f"option {code} is managed by the codec")
        n = len(value)
        if n <= 255:
            out.append(_TL[code][n] + value)
            continue
        for i in range(0, n, 255):
            chunk = value[i : i + 255]
            out.append(bytes((code, len(chunk))) + chunk)
    return out


_MANAGED = frozenset((Opt.PAD, Opt.END, Opt.OVERLOAD))
_TL = [[bytes((c, n)) for n in range(256)] for c in range(256)]  # (code, length) prefixes


def _fill(instances: list[bytes], room: int) -> tuple[bytes, list[bytes]]:
    """Take instances while they fit in ``room`` bytes, splitting the one that does not
    (RFC 3396 §7: a value may be cut into consecutive instances); return them and the rest."""
    used, taken = 0, 0
    while taken < len(instances) and used + len(instances[taken]) <= room:
        used += len(instances[taken])
        taken += 1
    head, rest = instances[:taken], instances[taken:]
    left = room - used
    if rest and left >= 3 and len(rest[0]) > 6:
        first = rest[0]
        head.append(bytes((first[0], left - 2)) + first[2:left])
        rest[0] = bytes((first[0], len(first) - left)) + first[left:]
    return b"".join(head), rest


def encode_options(options: dict[int, bytes]) -> bytes:
    """The options area for ``options`` (TLVs, long values split), without END."""
    return b"".join(_instances(options))


def encode_with_options(p: Packet, body: bytes) -> bytes:
    """Serialise ``p``'s header with an options area already encoded (``encode_options``);
    the caller has checked that it fits."""
    return _header(p) + MAGIC + body + b"\xff"


def encode(p: Packet, max_size: int | None = None) -> bytes:
    """Serialise ``p``; with ``max_size``, overflow options into file/sname (option 52)."""
    header = _header(p)
    instances = _instances(p.options)
    body = b"".join(instances)
    if max_size is None or OPTIONS_AT + len(body) + 1 <= max_size:
        return header + MAGIC + body + b"\xff" + bytes(p.padding)
    return _encode_overloaded(p, header, instances, max_size)


def _header(p: Packet) -> bytes:
    return HEADER.pack(
        p.op,
        p.htype,
        p.hlen,
        p.hops,
        p.xid,
        p.secs,
        p.flags,
        p.ciaddr,
        p.yiaddr,
        p.siaddr,
        p.giaddr,
        p.chaddr.ljust(16, b"\0")[:16],
        p.sname.ljust(64, b"\0")[:64],
        p.file.ljust(128, b"\0")[:128],
    )


def _encode_overloaded(p: Packet, header: bytes, instances: list[bytes], max_size: int) -> bytes:
    can_file = not p.file.strip(b"\0")
    can_sname = not p.sname.strip(b"\0")
    room = max_size - OPTIONS_AT - 3 - 1  # option 52 takes 3 bytes, END 1
    main, rest = _fill(instances, room)
    file_part = sname_part = b""
    overload = 0
    if rest and can_file:
        file_part, rest = _fill(rest, 127)
        overload |= 1
    if rest and can_sname:
        sname_part, rest = _fill(rest, 63)
        overload |= 2
    if rest:
        raise ValueError(f"options do not fit in {max_size} bytes even with overload")
    head = bytearray(header)
    if overload & 1:
        head[108:236] = (file_part + b"\xff").ljust(128, b"\0")
    if overload & 2:
        head[44:108] = (sname_part + b"\xff").ljust(64, b"\0")
    return bytes(head) + MAGIC + bytes((Opt.OVERLOAD, 1, overload)) + main + b"\xff"
