"""Router solicitation/advertisement codec and timing (roost.dhcp.ra), with real packets."""

from __future__ import annotations

import random
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest
from pydantic import ValidationError

from roost.dhcp.errors import MalformedPacket
from roost.dhcp.ra.codec import (
    Prefix,
    RouterAdvertisement,
    RouterSolicitation,
    checksum,
    decode,
    encode,
)
from roost.dhcp.ra.schedule import MAX_RA_DELAY_TIME, MIN_DELAY_BETWEEN_RAS, Schedule
from roost.settings import DHCPSettings

DATA = Path(__file__).parents[2] / "data" / "dhcp" / "ra"


def captured(name: str) -> tuple[IPv6Address, IPv6Address, bytes]:
    """(source, destination, ICMPv6 message) of a captured IPv6 packet."""
    raw = (DATA / name).read_bytes()
    return IPv6Address(raw[8:24]), IPv6Address(raw[24:40]), raw[40:]


@pytest.mark.parametrize(
    ("name", "slla"),
    [("linux-rs.bin", bytes.fromhex("b24de00bcb39")), ("rdisc6-rs.bin", None)],
)
def test_real_solicitations_decode_and_checksums_match(name: str, slla: bytes | None) -> None:
    src, dst, msg = captured(name)
    assert dst == IPv6Address("ff02::2")
    assert checksum(src, dst, msg) == int.from_bytes(msg[2:4], "big")
    assert decode(msg, src) == RouterSolicitation(slla)
    assert encode(RouterSolicitation(slla))[4:] == msg[4:]  # same bytes but the checksum


def test_advertisement_round_trips_with_every_option() -> None:
    ra = RouterAdvertisement(
        router_lifetime=1800,
        source_link_address=bytes.fromhex("020000000001"),
        mtu=1500,
        prefixes=(
            Prefix(IPv6Network("fd00:201::/64")),
            Prefix(IPv6Network("fd00:1::/48"), autonomous=False),
        ),
    )
    data = encode(ra)
    assert len(data) == 16 + 8 + 8 + 32 * 2
    assert data[:2] == b"\x86\x00" and data[6:8] == (1800).to_bytes(2, "big")
    assert decode(data) == ra


def test_default_advertisement_says_no_router() -> None:
    data = encode(RouterAdvertisement())
    assert data == bytes.fromhex("86000000000000000000000000000000")
    assert decode(data).router_lifetime == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x85\x00\x00\x00\x00\x00", "bytes"),
        (b"\x80\x00\x00\x00\x00\x00\x00\x00", "type 128"),
        (b"\x85\x01\x00\x00\x00\x00\x00\x00", "code 1"),
        (b"\x85\x00\x00\x00\x00\x00\x00\x00\x01\x00" + bytes(6), "length 0"),
        (b"\x85\x00\x00\x00\x00\x00\x00\x00\x01\x02" + bytes(6), "past the end"),
        (b"\x85\x00\x00\x00\x00\x00\x00\x00\x01", "truncated"),
        (encode(RouterAdvertisement())[:12], "advertisement of 12"),
    ],
)
def test_malformed_messages_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(MalformedPacket, match=why):
        decode(data)


def test_link_address_from_the_unspecified_address_is_refused() -> None:
    _, _, msg = captured("linux-rs.bin")
    with pytest.raises(MalformedPacket, match="unspecified"):
        decode(msg, IPv6Address("::"))
    _, _, bare = captured("rdisc6-rs.bin")
    assert decode(bare, IPv6Address("::")) == RouterSolicitation()


def test_schedule_first_advertisements_are_fast_then_slow() -> None:
    sched = Schedule(200, 600, now=100.0, rng=random.Random(1))
    assert sched.next_at == 100.0
    gaps = []
    now = 100.0
    for _ in range(5):
        sched.sent(now)
        gaps.append(sched.next_at - now)
        now = sched.next_at
    assert all(g <= 16 for g in gaps[:3]) and all(200 <= g <= 600 for g in gaps[3:])


def test_solicitation_is_answered_within_half_a_second_but_not_within_3s_of_the_last() -> None:
    sched = Schedule(200, 600, now=0.0, rng=random.Random(2))
    sched.sent(0.0)
    sched.solicited(1.0)  # 1 s after the last multicast one: held until 3 s
    assert sched.next_at == MIN_DELAY_BETWEEN_RAS
    sched.sent(3.0)
    sched.solicited(10.0)
    assert 10.0 <= sched.next_at <= 10.0 + MAX_RA_DELAY_TIME
    due = sched.next_at
    sched.solicited(10.1)  # a storm does not push the answer back, nor bring more
    assert sched.next_at <= due + MAX_RA_DELAY_TIME and sched.next_at >= 10.0


def test_router_advertisements_default_on_but_not_in_proxy_mode() -> None:
    assert DHCPSettings().ra_enabled
    assert not DHCPSettings(proxy=True).ra_enabled
    assert DHCPSettings(proxy=True, router_advertisements=True).ra_enabled
    assert not DHCPSettings(router_advertisements=False).ra_enabled


@pytest.mark.parametrize(
    ("fields", "why"),
    [({"ra_router_lifetime": 60}, "ra_router_lifetime"), ({"ra_mtu": 1000}, "ra_mtu")],
)
def test_router_advertisement_settings_outside_rfc4861_are_refused(
    fields: dict[str, int], why: str
) -> None:
    with pytest.raises(ValidationError, match=why):
        DHCPSettings(**fields)
