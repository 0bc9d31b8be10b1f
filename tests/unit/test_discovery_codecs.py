"""Round trips and fuzzing for the discovery codecs: ARP, Ethernet, magic packets, sightings."""

from __future__ import annotations

import contextlib
import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.discovery import arp, passive, wol

pytestmark = pytest.mark.unit

macs = st.binary(min_size=6, max_size=6)
ips = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
packets = st.builds(arp.ARPPacket, st.sampled_from([arp.REQUEST, arp.REPLY]), macs, ips, macs, ips)


@given(packets)
def test_arp_round_trip(pkt: arp.ARPPacket) -> None:
    assert arp.decode_arp(arp.encode_arp(pkt)) == pkt


@given(packets, macs, macs)
def test_frame_round_trip_pads_to_minimum(pkt: arp.ARPPacket, dst: bytes, src: bytes) -> None:
    frame = arp.encode_frame(dst, src, arp.ETH_P_ARP, arp.encode_arp(pkt))
    assert len(frame) == 60
    assert arp.parse_reply(frame) == pkt
    d, s, etype, _ = arp.decode_frame(frame)
    assert (d, s, etype) == (dst, src, arp.ETH_P_ARP)


@given(st.binary(max_size=80))
def test_arbitrary_bytes_raise_only_arp_error(data: bytes) -> None:
    with contextlib.suppress(arp.ARPError):
        arp.decode_arp(data)
    assert arp.parse_reply(data) is None or isinstance(arp.parse_reply(data), arp.ARPPacket)


def test_vlan_tag_is_stepped_over() -> None:
    pkt = arp.ARPPacket(
        arp.REPLY, b"\x02" * 6, IPv4Address("10.0.0.2"), b"\x04" * 6, IPv4Address("10.0.0.1")
    )
    tagged = b"\xff" * 6 + b"\x02" * 6 + struct.pack("!HHH", 0x8100, 7, arp.ETH_P_ARP)
    assert arp.parse_reply(tagged + arp.encode_arp(pkt)) == pkt


def test_request_frame_is_a_broadcast_who_has() -> None:
    frame = arp.request_frame(b"\x02" * 6, IPv4Address("10.0.0.1"), IPv4Address("10.0.0.9"))
    dst, src, etype, payload = arp.decode_frame(frame)
    pkt = arp.decode_arp(payload)
    assert dst == arp.BROADCAST and etype == arp.ETH_P_ARP and pkt.op == arp.REQUEST
    assert pkt.target_ip == IPv4Address("10.0.0.9") and pkt.sender_mac == src


@given(macs)
def test_mac_text_round_trip(raw: bytes) -> None:
    text = arp.mac_str(raw)
    assert arp.mac_bytes(text) == raw
    assert arp.mac_bytes(text.replace(":", "-").upper()) == raw


@pytest.mark.parametrize("bad", ["", "00:11:22:33:44", "zz:11:22:33:44:55", "0011223344556"])
def test_bad_mac_text_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        arp.mac_bytes(bad)


# -- magic packets -------------------------------------------------------------------------

passwords = st.one_of(st.none(), st.builds(arp.mac_str, macs), st.builds(lambda a: str(a), ips))


@given(macs.filter(lambda m: m != b"\xff" * 6), passwords, st.binary(max_size=40))
def test_magic_packet_is_found_inside_any_frame(raw: bytes, pw: str | None, prefix: bytes) -> None:
    mac = arp.mac_str(raw)
    packet = wol.magic_packet(mac, pw)
    assert packet[:6] == b"\xff" * 6 and packet[6:102] == raw * 16
    assert len(packet) == 102 + (0 if pw is None else 4 if "." in pw else 6)
    found = wol.find_magic(prefix.replace(b"\xff", b"\x00") + packet)
    assert found == (mac, wol.secureon(pw))


@given(st.binary(max_size=300))
def test_find_magic_never_crashes(data: bytes) -> None:
    found = wol.find_magic(data)
    assert found is None or len(found[0]) == 17


def test_bad_wake_input_is_refused() -> None:
    with pytest.raises(wol.WakeError):
        wol.magic_packet("not-a-mac")
    with pytest.raises(wol.WakeError):
        wol.magic_packet("02:00:00:00:00:01", "1.2.3")


def test_icmp_echo_checksum_verifies() -> None:
    msg = wol.icmp_echo(0x1234, 7)
    assert msg[0] == 8 and wol._checksum(msg) == 0


# -- passive sightings ---------------------------------------------------------------------


def _garp(mac: bytes, ip: IPv4Address) -> bytes:
    pkt = arp.ARPPacket(arp.REQUEST, mac, ip, b"\0" * 6, ip)
    return arp.encode_frame(arp.BROADCAST, mac, arp.ETH_P_ARP, arp.encode_arp(pkt))


def _dhcp_frame(mac: bytes, msg_type: int, requested: IPv4Address | None) -> bytes:
    bootp = bytearray(240)
    bootp[0:3] = b"\x01\x01\x06"
    bootp[28:34] = mac
    bootp[236:240] = b"\x63\x82\x53\x63"
    opts = bytes([53, 1, msg_type])
    if requested is not None:
        opts += bytes([50, 4]) + requested.packed
    payload = bytes(bootp) + opts + b"\xff"
    udp = struct.pack("!HHHH", 68, 67, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\0" * 4, b"\xff" * 4
    )
    return arp.encode_frame(arp.BROADCAST, mac, arp.ETH_P_IP, ip + udp)


@given(macs, ips.filter(lambda a: int(a) != 0))
def test_gratuitous_arp_is_a_sighting(mac: bytes, ip: IPv4Address) -> None:
    assert passive.sight(_garp(mac, ip)) == passive.Sighting(arp.mac_str(mac), str(ip), "garp")


@given(macs, st.sampled_from([1, 3, 8]), st.none() | ips)
def test_dhcp_client_message_is_a_sighting(mac: bytes, kind: int, req: IPv4Address | None) -> None:
    seen = passive.sight(_dhcp_frame(mac, kind, req))
    assert seen == passive.Sighting(arp.mac_str(mac), str(req) if req else None, "dhcp")


def test_dhcp_server_messages_and_plain_arp_are_not_sightings() -> None:
    mac = b"\x02\x00\x00\x00\x00\x05"
    assert passive.sight(_dhcp_frame(mac, 2, None)) is None  # OFFER comes from a server
    who_has = arp.request_frame(mac, IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2"))
    assert passive.sight(who_has) is None


@given(st.binary(max_size=400))
def test_sight_never_crashes(data: bytes) -> None:
    seen = passive.sight(data)
    assert seen is None or isinstance(seen, passive.Sighting)


@given(st.binary(min_size=14, max_size=14), st.binary(max_size=400))
def test_sight_survives_truncated_ip_payloads(header: bytes, body: bytes) -> None:
    frame = header[:12] + struct.pack("!H", arp.ETH_P_IP) + body
    seen = passive.sight(frame)
    assert seen is None or seen.how == "dhcp"


def test_udp_payloads_are_well_formed() -> None:
    from roost.discovery.udpscan import PAYLOADS, payload_for

    dns = PAYLOADS[53]
    assert struct.unpack("!HHHHHH", dns[:12])[2] == 1 and dns[12:] == b"\x00\x00\x02\x00\x01"
    nbns = PAYLOADS[137]
    assert nbns[12] == 32 and nbns[13:45] == b"CK" + b"A" * 30 and len(nbns) == 50
    snmp = PAYLOADS[161]
    assert snmp[0] == 0x30 and snmp[1] + 2 == len(snmp) and b"public" in snmp
    assert len(PAYLOADS[123]) == 48 and PAYLOADS[123][0] & 0x07 == 3  # NTP client mode
    assert payload_for(40000) == b""
