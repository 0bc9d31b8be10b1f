"""The pure parts of the ping probe: ICMP echo request bytes and reply parsing."""

from __future__ import annotations

import socket
import struct

import pytest

from roost.dhcp.probe import checksum, echo_request, parse_echo_reply

pytestmark = pytest.mark.unit


def test_rfc1071_checksum_example() -> None:
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum (with carries) to ddf2; checksum 220d
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_echo_request_checksums_to_zero() -> None:
    raw = echo_request(0x1234, 7)
    assert raw[0] == 8 and struct.unpack_from("!HH", raw, 4) == (0x1234, 7)
    assert checksum(raw) == 0


def test_parse_echo_reply() -> None:
    icmp = b"\x00\x00\x00\x00" + struct.pack("!HH", 0x1234, 7) + b"x"
    ip = bytes([0x45]) + bytes(11) + socket.inet_aton("10.0.0.9") + socket.inet_aton("10.0.0.1")
    assert parse_echo_reply(ip + icmp) == ("10.0.0.9", 0x1234, 7)
    assert parse_echo_reply(ip + b"\x08" + icmp[1:]) is None  # a request, not a reply
    assert parse_echo_reply(b"\x60" + bytes(40)) is None  # not IPv4
