"""One client per machine whether or not it sends ``01:<mac>`` (dhcp.match_client_id), and
RFC 6842's echo of the client identifier, with packets captured from real clients."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from roost.dhcp.codec import Packet, decode
from roost.dhcp.leases import BOUND
from roost.dhcp.options import MessageType as M
from roost.dhcp.options import Opt
from roost.dhcp.replies import client_key, matched_key
from roost.dhcp.server import DHCPServer, Policy

from .helpers import INBOUND, SERVER_IP, make_server, must, reply_packet

DATA = Path(__file__).parents[2] / "data" / "dhcp"


def captured(name: str) -> Packet:
    return decode((DATA / name).read_bytes())


def without_client_id(p: Packet) -> Packet:
    """The firmware stage: OVMF's PXE sends the same DISCOVER without option 61."""
    return replace(p, options={k: v for k, v in p.options.items() if k != Opt.CLIENT_ID})


def dora(srv: DHCPServer, discover: Packet, now: float) -> tuple[Packet, Packet]:
    offer = reply_packet(srv.handle(discover, INBOUND, now))
    opts = dict(discover.options)
    opts[Opt.MESSAGE_TYPE] = bytes((M.REQUEST,))
    opts[Opt.REQUESTED_IP] = offer.yiaddr.to_bytes(4, "big")
    opts[Opt.SERVER_ID] = SERVER_IP.packed
    ack = reply_packet(srv.handle(replace(discover, options=opts), INBOUND, now + 1))
    assert ack.message_type == M.ACK
    return offer, ack


# (the OS stage, its firmware stage): iPXE's DISCOVER (a PXE client: the boot-reply path) and
# udhcpc's beside dhclient's, which sends no identifier (the plain-reply path)
STAGES = [
    (captured("ipxe-00-discover.bin"), without_client_id(captured("ipxe-00-discover.bin"))),
    (captured("udhcpc-03-discover.bin"), captured("dhclient-00-discover.bin")),
]


@pytest.mark.parametrize(("with_id", "firmware"), STAGES)
def test_client_id_01_mac_is_the_same_client_as_none(with_id: Packet, firmware: Packet) -> None:
    assert with_id.options[Opt.CLIENT_ID] == b"\x01" + with_id.chaddr[:6]
    assert Opt.CLIENT_ID not in firmware.options and firmware.mac == with_id.mac
    srv = make_server()
    _, first = dora(srv, firmware, 0)
    offer, ack = dora(srv, with_id, 10)
    assert offer.yiaddr == ack.yiaddr == first.yiaddr
    _, again = dora(srv, firmware, 20)  # the next boot's firmware: still the same lease
    assert again.yiaddr == first.yiaddr
    assert [lease.state for lease in srv.leases if lease.mac == with_id.mac] == [BOUND]
    # RFC 6842: the identifier is echoed to the client that sent it, and only to that one
    assert offer.options[Opt.CLIENT_ID] == ack.options[Opt.CLIENT_ID] == with_id.options[61]
    assert Opt.CLIENT_ID not in first.options and Opt.CLIENT_ID not in again.options


@pytest.mark.parametrize(("with_id", "firmware"), STAGES)
def test_match_client_id_off_keeps_them_apart(with_id: Packet, firmware: Packet) -> None:
    srv = make_server(policy=Policy(match_client_id=False))
    _, first = dora(srv, firmware, 0)
    _, second = dora(srv, with_id, 10)
    assert first.yiaddr != second.yiaddr
    assert second.options[Opt.CLIENT_ID] == with_id.options[Opt.CLIENT_ID]


def test_other_client_identifiers_stay_clients_of_their_own() -> None:
    p = captured("udhcpc-03-discover.bin")
    hw = b"\x01" + p.chaddr[:6]
    assert client_key(p) == hw
    for cid in (b"\x00" + p.chaddr[:6], b"\x01" + bytes(6), b"\xffiaid-duid", b"node-a"):
        q = replace(p, options={**p.options, Opt.CLIENT_ID: cid})
        assert client_key(q) == b"\xff" + cid


def test_nak_echoes_the_client_identifier() -> None:
    p = captured("udhcpc-04-request.bin")  # asks 10.99.0.157, off this server's subnet
    opts = {k: v for k, v in p.options.items() if k != Opt.SERVER_ID}
    nak = reply_packet(must(make_server().handle(replace(p, options=opts), INBOUND, 0)))
    assert nak.message_type == M.NAK
    assert nak.options[Opt.CLIENT_ID] == p.options[Opt.CLIENT_ID]


def test_leases_stored_under_01_mac_are_rekeyed_on_load() -> None:
    mac = "52:54:00:12:34:56"
    old = b"\xff\x01" + bytes.fromhex("525400123456")
    assert matched_key(old, mac) == b"\x01" + bytes.fromhex("525400123456")
    for other in (b"\xff\x00" + bytes.fromhex("525400123456"), b"\xffnode-a", old[1:]):
        assert matched_key(other, mac) == other
