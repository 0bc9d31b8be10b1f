"""The sans-IO codec: round trips, RFC 3396 long options, overload, garbage, real client bytes."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roost.dhcp.codec import MAGIC, Packet, decode, encode
from roost.dhcp.errors import MalformedPacket
from roost.dhcp.options import Opt, decode_value, encode_value

pytestmark = pytest.mark.unit
DATA = Path(__file__).parents[2] / "data" / "dhcp"

addresses = st.integers(0, 2**32 - 1)
option_codes = st.integers(1, 254).filter(lambda c: c != Opt.OVERLOAD)
packets = st.builds(
    Packet,
    op=st.sampled_from([1, 2]),
    htype=st.integers(0, 255),
    hlen=st.integers(0, 255),
    hops=st.integers(0, 255),
    xid=st.integers(0, 2**32 - 1),
    secs=st.integers(0, 2**16 - 1),
    flags=st.integers(0, 2**16 - 1),
    ciaddr=addresses,
    yiaddr=addresses,
    siaddr=addresses,
    giaddr=addresses,
    chaddr=st.binary(min_size=16, max_size=16),
    sname=st.binary(min_size=64, max_size=64),
    file=st.binary(min_size=128, max_size=128),
    options=st.dictionaries(option_codes, st.binary(max_size=700), max_size=12),
    padding=st.integers(0, 64),
)


@given(packets)
def test_decode_inverts_encode(p: Packet) -> None:
    assert decode(encode(p)) == p


@given(st.binary(max_size=1500))
@settings(max_examples=500)
def test_garbage_raises_only_malformed(data: bytes) -> None:
    for candidate in (data, bytes(236) + MAGIC + data, b"\x01" + bytes(235) + MAGIC + data):
        try:
            p = decode(candidate)
        except MalformedPacket:
            continue
        for code in p.options:  # typed access may fail too, but only with our error
            with contextlib.suppress(MalformedPacket):
                p.get(code)


@given(packets, st.data())
def test_truncated_packets_raise_only_malformed(p: Packet, data: st.DataObject) -> None:
    raw = encode(p)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with contextlib.suppress(MalformedPacket):
        decode(raw[:cut])


def test_long_option_is_split_and_joined_rfc3396() -> None:
    value = bytes(range(256)) * 3  # 768 bytes: four instances of option 43
    raw = encode(Packet(options={Opt.MESSAGE_TYPE: b"\x02", Opt.VENDOR_SPECIFIC: value}))
    i = 240 + 3
    lengths = []
    while raw[i] == Opt.VENDOR_SPECIFIC:
        lengths.append(raw[i + 1])
        i += 2 + raw[i + 1]
    assert lengths == [255, 255, 255, 3]
    assert decode(raw).options[Opt.VENDOR_SPECIFIC] == value


@given(st.dictionaries(option_codes, st.binary(min_size=1, max_size=60), min_size=8, max_size=14))
def test_overload_moves_options_into_file_and_sname(options: dict[int, bytes]) -> None:
    p = Packet(options=options)
    limit = 240 + 8 + sum(2 + len(v) for v in options.values()) // 2
    try:
        raw = encode(p, max_size=limit)
    except ValueError:
        return  # honestly too big even with file and sname
    assert len(raw) <= limit
    assert decode(raw) == replace(p, padding=0)


def test_overload_fixture_by_hand() -> None:
    """Option 52 = 3: the file then sname fields carry options (RFC 2132 §9.3)."""
    header = bytearray(236)
    header[0] = 2
    header[44:108] = (b"\x0c\x03abc\xff").ljust(64, b"\0")  # sname: hostname
    header[108:236] = (b"\x0f\x04lab1\x0c\x02de\xff").ljust(128, b"\0")  # file: domain, host
    raw = bytes(header) + MAGIC + b"\x35\x01\x05\x34\x01\x03\x0c\x02zz\xff"
    p = decode(raw)
    assert p.get(Opt.HOSTNAME) == "zzdeabc"  # options field, then file, then sname
    assert p.get(Opt.DOMAIN_NAME) == "lab1"
    assert p.file == bytes(128) and p.sname == bytes(64)


@pytest.mark.parametrize("path", sorted(DATA.glob("*.bin")), ids=lambda p: p.name)
def test_captured_client_packets_reencode_byte_for_byte(path: Path) -> None:
    raw = path.read_bytes()
    p = decode(raw)
    assert encode(p) == raw
    assert p.mac == ("52:54:00:12:34:57" if path.name.startswith("ipxe") else "52:54:00:12:34:56")
    assert p.op == 1 and p.htype == 1 and p.hlen == 6


def test_captured_dhclient_request_fields() -> None:
    p = decode((DATA / "dhclient-01-request.bin").read_bytes())
    assert p.message_type == 3
    assert p.get(Opt.SERVER_ID) == IPv4Address("10.99.0.1")
    assert p.get(Opt.REQUESTED_IP) == IPv4Address("10.99.0.157")
    assert p.get(Opt.HOSTNAME) == "roost-capture"
    assert p.get(Opt.PARAMETER_REQUEST_LIST) == [1, 28, 2, 3, 15, 6, 12]
    assert p.ciaddr == 0


def test_captured_udhcpc_discover_fields() -> None:
    p = decode((DATA / "udhcpc-03-discover.bin").read_bytes())
    assert p.message_type == 1
    assert p.get(Opt.CLIENT_ID) == b"\x01" + bytes.fromhex("525400123456")
    assert p.get(Opt.MAX_MESSAGE_SIZE) == 576
    assert p.get(Opt.VENDOR_CLASS) == "roost-capture"


TYPED: list[tuple[int, Any]] = [
    (Opt.SUBNET_MASK, IPv4Address("255.255.255.0")),
    (Opt.ROUTERS, [IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")]),
    (Opt.DNS_SERVERS, [IPv4Address("10.0.0.53")]),
    (Opt.HOSTNAME, "node-1"),
    (Opt.DOMAIN_NAME, "lab.example"),
    (Opt.BROADCAST, IPv4Address("10.0.0.255")),
    (Opt.NTP_SERVERS, [IPv4Address("10.0.0.5")]),
    (Opt.VENDOR_SPECIFIC, [(6, b"\x08"), (71, b"\x80\x00\x00\x00")]),
    (Opt.REQUESTED_IP, IPv4Address("10.0.0.9")),
    (Opt.LEASE_TIME, 3600),
    (Opt.OVERLOAD, 3),
    (Opt.MESSAGE_TYPE, 5),
    (Opt.SERVER_ID, IPv4Address("10.0.0.1")),
    (Opt.PARAMETER_REQUEST_LIST, [1, 3, 6, 175]),
    (Opt.MAX_MESSAGE_SIZE, 1500),
    (Opt.RENEWAL_TIME, 1800),
    (Opt.REBINDING_TIME, 3150),
    (Opt.VENDOR_CLASS, "PXEClient:Arch:00007:UNDI:003016"),
    (Opt.CLIENT_ID, b"\x01\x52\x54\x00\x12\x34\x56"),
    (Opt.TFTP_SERVER, "10.0.0.1"),
    (Opt.BOOTFILE, "ipxe.efi"),
    (Opt.USER_CLASS, [b"iPXE", b"roost"]),
    (Opt.RELAY_AGENT_INFO, [(1, b"eth0"), (2, b"\x00\x11"), (5, b"\x0a\x00\x02\x00")]),
    (Opt.CLIENT_ARCH, [7]),
    (Opt.CLIENT_NDI, (1, 3, 16)),
    (Opt.CLIENT_UUID, b"\x00" + bytes(range(16))),
    (Opt.SUBNET_SELECTION, IPv4Address("10.0.2.0")),
    (Opt.DOMAIN_SEARCH, ["lab.example", "example"]),
    (
        Opt.CLASSLESS_ROUTES,
        [
            (IPv4Network("0.0.0.0/0"), IPv4Address("10.0.0.1")),
            (IPv4Network("10.20.0.0/14"), IPv4Address("10.0.0.2")),
        ],
    ),
    (Opt.IPXE, [(176, b"\x01"), (19, b"\x01")]),
]


@pytest.mark.parametrize(("code", "value"), TYPED, ids=[str(int(c)) for c, _ in TYPED])
def test_typed_option_round_trip(code: int, value: Any) -> None:
    assert decode_value(code, encode_value(code, value)) == value


def test_rfc_fixed_encodings() -> None:
    # RFC 3442 §3 example: 10.17.0.0/16 via 10.229.0.128 → 16 10 17 10 229 0 128
    route = [(IPv4Network("10.17.0.0/16"), IPv4Address("10.229.0.128"))]
    assert encode_value(Opt.CLASSLESS_ROUTES, route) == bytes([16, 10, 17, 10, 229, 0, 128])
    # RFC 3397 §2 example with a compression pointer to offset 0 ("eng.apple.com", "marketing"+ptr)
    raw = b"\x03eng\x05apple\x03com\x00\x09marketing\xc0\x04"
    assert decode_value(Opt.DOMAIN_SEARCH, raw) == ["eng.apple.com", "marketing.apple.com"]
    # RFC 3004 §4: each user class instance is length-prefixed; iPXE sends a bare string
    assert decode_value(Opt.USER_CLASS, b"iPXE") == [b"iPXE"]
    assert encode_value(Opt.USER_CLASS, [b"iPXE"]) == b"\x04iPXE"


def test_unknown_option_kept_as_bytes() -> None:
    p = decode(encode(Packet(options={Opt.MESSAGE_TYPE: b"\x01", 224: b"\xde\xad"})))
    assert p.get(224) == b"\xde\xad"


@pytest.mark.parametrize(
    "raw",
    [b"", bytes(239), bytes(236) + b"\x63\x82\x53\x64", b"\x03" + bytes(235) + MAGIC + b"\xff"],
)
def test_short_or_foreign_bytes_rejected(raw: bytes) -> None:
    with pytest.raises(MalformedPacket):
        decode(raw)


def test_bad_typed_values_raise_malformed() -> None:
    with pytest.raises(MalformedPacket):
        decode_value(Opt.REQUESTED_IP, b"\x01\x02\x03")
    with pytest.raises(MalformedPacket):
        decode_value(Opt.CLASSLESS_ROUTES, b"\x21\x00")
    with pytest.raises(MalformedPacket):
        decode_value(Opt.DOMAIN_SEARCH, b"\xc0\x00")


def test_captured_ipxe_rom_discover_fields() -> None:
    p = decode((DATA / "ipxe-00-discover.bin").read_bytes())
    assert p.message_type == 1
    assert p.get(Opt.VENDOR_CLASS) == "PXEClient:Arch:00000:UNDI:002001"
    assert p.get(Opt.USER_CLASS) == [b"iPXE"]  # sent bare, not in RFC 3004 form
    assert p.get(Opt.CLIENT_ARCH) == [0] and p.get(Opt.CLIENT_NDI) == (1, 2, 1)
    assert Opt.IPXE in p.options
    assert p.get(Opt.MAX_MESSAGE_SIZE) == 1472
