"""The server state machine, RFC 2131 §4.3 branch by branch, with time passed in."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roost.dhcp.codec import BROADCAST_FLAG, Packet
from roost.dhcp.config import BootOverride, Pool, ReservationSpec
from roost.dhcp.errors import MalformedPacket
from roost.dhcp.leases import BOUND, DECLINED, EXPIRED, RELEASED
from roost.dhcp.options import MessageType as M
from roost.dhcp.options import Opt, decode_tlv, encode_tlv
from roost.dhcp.server import Inbound, Policy

from .helpers import INBOUND, SERVER_IP, lan, make_server, must, reply_packet, request

pytestmark = pytest.mark.unit
SID = SERVER_IP.packed


def A(s: str) -> int:
    return int(IPv4Address(s))


def ip(s: str) -> bytes:
    return IPv4Address(s).packed


def dora(srv, n: int = 1, now: float = 0.0) -> int:
    offer = reply_packet(srv.handle(request(M.DISCOVER, n), INBOUND, now))
    ack = srv.handle(
        request(M.REQUEST, n, server_id=SID, requested_ip=offer.yiaddr.to_bytes(4, "big")),
        INBOUND,
        now,
    )
    assert ack is not None and ack.durable
    assert reply_packet(ack).message_type == M.ACK
    return offer.yiaddr


def test_discover_offers_pool_address_with_options_in_client_order() -> None:
    srv = make_server()
    prl = bytes([6, 3, 1, 51])
    r = must(srv.handle(request(M.DISCOVER, parameter_request_list=prl), INBOUND, 0.0))
    p = reply_packet(r)
    assert p.message_type == M.OFFER and p.op == 2
    assert p.yiaddr == A("10.0.0.100")
    assert p.get(Opt.SERVER_ID) == SERVER_IP
    assert p.get(Opt.LEASE_TIME) == 3600
    assert p.get(Opt.RENEWAL_TIME) == 1800 and p.get(Opt.REBINDING_TIME) == 3150
    order = [c for c in p.options if c in (6, 3, 1)]
    assert order == [6, 3, 1]
    assert not r.durable and len(r.data) >= 300
    assert srv.events[-1][0] == "dhcp.lease.offered"
    assert srv.events[-1][2]["mac"] == "52:54:00:00:00:01"


def test_address_choice_order() -> None:
    res = ReservationSpec(mac="52:54:00:00:00:05", ip=IPv4Address("10.0.0.50"))
    srv = make_server(reservations=[res])
    # a reservation wins, even outside the pools
    assert reply_packet(srv.handle(request(M.DISCOVER, 5), INBOUND, 0)).yiaddr == int(res.ip)
    # the requested address (option 50) when free and in a pool
    got = reply_packet(
        srv.handle(request(M.DISCOVER, 1, requested_ip=ip("10.0.0.102")), INBOUND, 0)
    )
    assert got.yiaddr == A("10.0.0.102")
    # the client's existing lease beats what it asks for
    again = srv.handle(request(M.DISCOVER, 1, requested_ip=ip("10.0.0.101")), INBOUND, 1)
    assert reply_packet(again).yiaddr == A("10.0.0.102")
    # a reserved address is never handed to someone else
    other = srv.handle(request(M.DISCOVER, 2, requested_ip=ip("10.0.0.50")), INBOUND, 1)
    assert reply_packet(other).yiaddr == A("10.0.0.100")


def test_offers_are_held_and_pool_exhaustion_is_an_event() -> None:
    srv = make_server()
    got = {reply_packet(srv.handle(request(M.DISCOVER, n), INBOUND, 0)).yiaddr for n in (1, 2, 3)}
    assert len(got) == 3
    assert srv.handle(request(M.DISCOVER, 4), INBOUND, 1) is None
    assert srv.events[-1][0] == "dhcp.pool.exhausted"
    # after the hold (30 s) runs out the address is free again
    assert reply_packet(srv.handle(request(M.DISCOVER, 4), INBOUND, 31)).yiaddr in got


def test_selecting_ack_then_renew_and_release() -> None:
    srv = make_server()
    addr = dora(srv)
    lease = srv.leases.by_ip[int(addr)]
    assert lease.state == BOUND and lease.expires == 3600
    assert srv.leases.take_dirty() == [lease]
    # RENEWING: unicast with ciaddr, no 50/54
    renew = replace(request(M.REQUEST), ciaddr=addr)
    r = must(srv.handle(renew, INBOUND, 1000))
    p = reply_packet(r)
    assert p.message_type == M.ACK and p.yiaddr == addr and p.ciaddr == addr
    assert r.dest == (str(IPv4Address(addr)), 68)
    assert srv.leases.by_ip[int(addr)].expires == 4600
    assert srv.events[-1][0] == "dhcp.lease.renewed"
    assert srv.handle(replace(request(M.RELEASE), ciaddr=addr), INBOUND, 1100) is None
    assert srv.leases.by_ip[int(addr)].state == RELEASED
    assert srv.events[-1][0] == "dhcp.lease.released"
    # a released client coming back gets its previous address (RFC 2131 §4.3.1)
    assert reply_packet(srv.handle(request(M.DISCOVER), INBOUND, 1200)).yiaddr == addr


def test_request_for_another_server_is_ignored_and_frees_the_hold() -> None:
    srv = make_server()
    offer = reply_packet(srv.handle(request(M.DISCOVER), INBOUND, 0))
    other = request(
        M.REQUEST, server_id=ip("10.0.0.2"), requested_ip=offer.yiaddr.to_bytes(4, "big")
    )
    assert srv.handle(other, INBOUND, 1) is None
    assert srv.leases.free_for(int(offer.yiaddr), b"someone", 1.5)


def test_selecting_wrong_address_gets_nak_broadcast() -> None:
    srv = make_server()
    srv.handle(request(M.DISCOVER, 2), INBOUND, 0)  # 10.0.0.100 held for client 2
    r = must(
        srv.handle(request(M.REQUEST, 1, server_id=SID, requested_ip=ip("10.0.0.100")), INBOUND, 1)
    )
    p = reply_packet(r)
    assert p.message_type == M.NAK and p.yiaddr == 0
    assert Opt.LEASE_TIME not in p.options
    assert r.dest == ("255.255.255.255", 68) and not r.durable


def test_init_reboot_rules() -> None:
    srv = make_server(subnets=[lan(lease_time=600)])
    addr = dora(srv)
    # right address: ACK; wrong network: NAK; another address than the client's lease: NAK
    assert (
        reply_packet(
            srv.handle(request(M.REQUEST, requested_ip=addr.to_bytes(4, "big")), INBOUND, 5)
        ).message_type
        == M.ACK
    )
    wrong_net = srv.handle(request(M.REQUEST, requested_ip=ip("192.168.1.7")), INBOUND, 6)
    assert reply_packet(wrong_net).message_type == M.NAK
    wrong_ip = srv.handle(request(M.REQUEST, requested_ip=ip("10.0.0.101")), INBOUND, 7)
    assert reply_packet(wrong_ip).message_type == M.NAK
    # a client the server has no record of, asking for a free pool address: ACK (lost lease)
    fresh = srv.handle(request(M.REQUEST, 9, requested_ip=ip("10.0.0.102")), INBOUND, 8)
    assert reply_packet(fresh).message_type == M.ACK


def test_rebinding_for_someone_elses_address_is_nakked() -> None:
    srv = make_server()
    addr = dora(srv, 1)
    r = must(srv.handle(replace(request(M.REQUEST, 2), ciaddr=addr), INBOUND, 10))
    assert reply_packet(r).message_type == M.NAK


def test_decline_quarantines_the_address() -> None:
    srv = make_server()
    addr = dora(srv, 1)
    srv.handle(
        request(M.DECLINE, 1, server_id=SID, requested_ip=addr.to_bytes(4, "big")), INBOUND, 5
    )
    lease = srv.leases.by_ip[int(addr)]
    assert lease.state == DECLINED and lease.expires == 5 + 86400
    assert srv.events[-1][0] == "dhcp.lease.declined"
    assert reply_packet(srv.handle(request(M.DISCOVER, 1), INBOUND, 6)).yiaddr != addr


def test_expiry_sweep() -> None:
    srv = make_server(subnets=[lan(lease_time=60)])
    addr = dora(srv)
    srv.leases.take_dirty()
    assert srv.leases.sweep(59) == []
    expired = srv.leases.sweep(61)
    assert [lease.ip for lease in expired] == [int(addr)] and expired[0].state == EXPIRED
    assert srv.leases.take_dirty() == expired


def test_inform_gets_options_without_lease() -> None:
    srv = make_server()
    r = must(srv.handle(replace(request(M.INFORM), ciaddr=A("10.0.0.7")), INBOUND, 0))
    p = reply_packet(r)
    assert p.message_type == M.ACK and p.yiaddr == 0
    assert Opt.LEASE_TIME not in p.options and p.get(Opt.ROUTERS) == [SERVER_IP]
    assert r.dest == ("10.0.0.7", 68) and not r.durable


def test_broadcast_vs_unicast_rfc2131_4_1() -> None:
    srv = make_server()
    flagged = replace(request(M.DISCOVER, 1), flags=BROADCAST_FLAG)
    assert must(srv.handle(flagged, INBOUND, 0)).dest == ("255.255.255.255", 68)
    plain = must(srv.handle(request(M.DISCOVER, 2), INBOUND, 0))
    assert plain.dest == ("10.0.0.101", 68)
    assert plain.arp == ("10.0.0.101", bytes.fromhex("525400000002"))


def test_relayed_request_selects_by_giaddr_and_echoes_option_82() -> None:
    srv = make_server(
        subnets=[
            lan(),
            lan(
                name="far",
                cidr="10.5.0.0/24",
                pools=[Pool(start=IPv4Address("10.5.0.10"), end=IPv4Address("10.5.0.20"))],
                routers=["10.5.0.1"],
            ),
        ]
    )
    rai = encode_tlv([(1, b"port7"), (2, b"sw1")])
    p = replace(request(M.DISCOVER, relay_agent_info=rai), giaddr=A("10.5.0.1"), hops=1)
    r = must(srv.handle(p, INBOUND, 0))
    got = reply_packet(r)
    assert got.yiaddr == A("10.5.0.10") and got.giaddr == A("10.5.0.1")
    assert r.dest == ("10.5.0.1", 67)
    assert list(got.options)[-1] == Opt.RELAY_AGENT_INFO
    assert got.options[Opt.RELAY_AGENT_INFO] == rai


def test_link_selection_beats_giaddr() -> None:
    far = lan(
        name="far",
        cidr="10.5.0.0/24",
        pools=[Pool(start=IPv4Address("10.5.0.10"), end=IPv4Address("10.5.0.20"))],
        routers=[],
    )
    srv = make_server(subnets=[lan(), far])
    rai = encode_tlv([(5, ip("10.5.0.0"))])
    p = replace(request(M.DISCOVER, relay_agent_info=rai), giaddr=A("10.0.0.254"))
    assert reply_packet(srv.handle(p, INBOUND, 0)).yiaddr == A("10.5.0.10")
    p118 = replace(request(M.DISCOVER, 2, subnet_selection=ip("10.5.0.0")), giaddr=A("10.0.0.254"))
    assert reply_packet(srv.handle(p118, INBOUND, 0)).yiaddr == A("10.5.0.11")


def test_never_answers_for_a_subnet_it_does_not_serve() -> None:
    srv = make_server()
    other_if = Inbound("rdh9", IPv4Address("192.168.7.1"))
    assert srv.handle(request(M.DISCOVER), other_if, 0) is None
    relayed = replace(request(M.DISCOVER), giaddr=A("172.16.0.1"))
    assert srv.handle(relayed, INBOUND, 0) is None


def test_subnet_by_interface_name() -> None:
    srv = make_server(
        subnets=[
            lan(
                interface="rdh0",
                cidr="10.9.0.0/24",
                pools=[Pool(start=IPv4Address("10.9.0.5"), end=IPv4Address("10.9.0.6"))],
                routers=[],
            )
        ]
    )
    assert reply_packet(srv.handle(request(M.DISCOVER), INBOUND, 0)).yiaddr == A("10.9.0.5")


PXE_BIOS = b"PXEClient:Arch:00000:UNDI:002001"


@pytest.mark.parametrize(
    ("arch", "vendor", "file"),
    [
        (0, PXE_BIOS, "undionly.kpxe"),
        (7, b"PXEClient:Arch:00007:UNDI:003016", "ipxe.efi"),
        (9, b"PXEClient:Arch:00009:UNDI:003016", "ipxe.efi"),
        (11, b"PXEClient:Arch:00011:UNDI:003016", "ipxe-arm64.efi"),
        (16, b"HTTPClient:Arch:00016:UNDI:003001", "http://10.0.0.1:8442/files/ipxe.efi"),
    ],
)
def test_pxe_boot_file_by_architecture(arch: int, vendor: bytes, file: str) -> None:
    srv = make_server()
    p = request(M.DISCOVER, vendor_class=vendor, client_arch=arch.to_bytes(2, "big"))
    got = reply_packet(srv.handle(p, INBOUND, 0))
    assert got.file.rstrip(b"\0").decode() == file
    assert got.siaddr == int(SERVER_IP)
    assert got.get(Opt.VENDOR_CLASS) == ("HTTPClient" if arch == 16 else "PXEClient")
    if arch != 16:
        assert got.get(Opt.BOOTFILE) == file and got.get(Opt.TFTP_SERVER) == "10.0.0.1"
        assert decode_tlv(got.options[Opt.VENDOR_SPECIFIC]) == [(6, b"\x08")]


def test_ipxe_gets_its_script_url_and_no_pxedhcp() -> None:
    srv = make_server()
    p = request(M.DISCOVER, user_class=b"iPXE", client_arch=b"\x00\x07", vendor_class=PXE_BIOS)
    got = reply_packet(srv.handle(p, INBOUND, 0))
    assert got.file.rstrip(b"\0") == b"http://10.0.0.1:8442/boot/52:54:00:00:00:01.ipxe"
    assert decode_tlv(got.options[Opt.IPXE]) == [(176, b"\x01")]
    p175 = request(M.DISCOVER, 2, ipxe=encode_tlv([(19, b"\x01")]))
    assert b"/boot/52:54:00:00:00:02.ipxe" in reply_packet(srv.handle(p175, INBOUND, 0)).file


def test_per_node_and_per_tag_overrides() -> None:
    from roost.dhcp.config import Boot

    node = ReservationSpec(
        mac="52:54:00:00:00:01",
        ip=IPv4Address("10.0.0.9"),
        boot=BootOverride(boot_file="special.kpxe"),
    )
    sub = lan(boot=Boot(tags={"gpu": BootOverride(ipxe_script="http://x/gpu.ipxe")}))
    srv = make_server(subnets=[sub], reservations=[node])
    srv.tags_for = lambda mac: {"gpu"} if mac.endswith("02") else set()
    bios = request(M.DISCOVER, 1, vendor_class=PXE_BIOS, client_arch=b"\x00\x00")
    assert reply_packet(srv.handle(bios, INBOUND, 0)).file.rstrip(b"\0") == b"special.kpxe"
    ipxe = request(M.DISCOVER, 2, user_class=b"iPXE")
    assert reply_packet(srv.handle(ipxe, INBOUND, 0)).file.rstrip(b"\0") == b"http://x/gpu.ipxe"


def test_proxy_dhcp_answers_pxe_only_without_address() -> None:
    srv = make_server(policy=Policy(proxy=True))
    assert srv.handle(request(M.DISCOVER, 1), INBOUND, 0) is None
    pxe = request(M.DISCOVER, 2, vendor_class=PXE_BIOS, client_arch=b"\x00\x00")
    r = must(srv.handle(pxe, INBOUND, 0))
    got = reply_packet(r)
    assert got.message_type == M.OFFER and got.yiaddr == 0
    assert got.file.rstrip(b"\0") == b"undionly.kpxe" and got.get(Opt.VENDOR_CLASS) == "PXEClient"
    assert Opt.LEASE_TIME not in got.options and r.dest == ("255.255.255.255", 68)
    # the PXE boot server request on port 4011 is answered with an ACK, unicast back
    req = replace(
        request(M.REQUEST, 2, vendor_class=PXE_BIOS, client_arch=b"\x00\x00"),
        ciaddr=A("10.0.0.77"),
    )
    at4011 = Inbound("rdh0", SERVER_IP, 4011, ("10.0.0.77", 4011))
    r2 = must(srv.handle(req, at4011, 0))
    assert reply_packet(r2).message_type == M.ACK and r2.dest == ("10.0.0.77", 4011)
    assert srv.handle(request(M.REQUEST, 2, vendor_class=PXE_BIOS), INBOUND, 0) is None
    assert len(srv.leases) == 0


def test_large_reply_uses_overload_within_max_size() -> None:
    many = [f"d{i}.example.org" for i in range(25)]
    srv = make_server(subnets=[lan(domain_search=many)])
    r = must(srv.handle(request(M.DISCOVER, parameter_request_list=bytes([119, 1, 3])), INBOUND, 0))
    assert len(r.data) <= 548
    got = reply_packet(r)
    assert got.get(Opt.DOMAIN_SEARCH) == many


def test_probe_asked_only_for_new_addresses_and_conflict_quarantines() -> None:
    res = ReservationSpec(mac="52:54:00:00:00:05", ip=IPv4Address("10.0.0.50"))
    srv = make_server(reservations=[res], policy=Policy(probe=True))
    first = must(srv.handle(request(M.DISCOVER, 1), INBOUND, 0))
    assert first.probe == A("10.0.0.100")
    assert must(srv.handle(request(M.DISCOVER, 1), INBOUND, 1)).probe is None  # held for it
    assert must(srv.handle(request(M.DISCOVER, 5), INBOUND, 1)).probe is None  # reservation
    srv.conflict(request(M.DISCOVER, 1), A("10.0.0.100"), 2)
    assert srv.leases.by_ip[A("10.0.0.100")].state == DECLINED
    assert srv.events[-1][0] == "dhcp.lease.declined" and "ping" in srv.events[-1][2]["reason"]
    again = must(srv.handle(request(M.DISCOVER, 1), INBOUND, 3))
    assert reply_packet(again).yiaddr == A("10.0.0.101") and again.probe == A("10.0.0.101")


def test_captured_ipxe_discover_gets_its_script_not_a_loop() -> None:
    from pathlib import Path

    from roost.dhcp.codec import decode

    raw = (Path(__file__).parents[2] / "data" / "dhcp" / "ipxe-00-discover.bin").read_bytes()
    srv = make_server()
    got = reply_packet(srv.handle(decode(raw), INBOUND, 0))
    assert got.file.rstrip(b"\0") == b"http://10.0.0.1:8442/boot/52:54:00:12:34:57.ipxe"
    assert decode_tlv(got.options[Opt.IPXE]) == [(176, b"\x01")]
    assert got.siaddr == int(SERVER_IP)


hostile_codes = st.sampled_from(
    [1, 3, 12, 43, 50, 51, 53, 54, 55, 57, 60, 61, 77, 82, 93, 94, 97, 118, 119, 121, 175, 200]
)
hostile = st.builds(
    Packet,
    op=st.sampled_from([1, 2]),
    htype=st.integers(0, 255),
    hlen=st.integers(0, 255),
    xid=st.integers(0, 2**32 - 1),
    flags=st.integers(0, 2**16 - 1),
    ciaddr=st.sampled_from([0, A("10.0.0.100"), A("10.0.0.7"), A("192.168.1.1")]),
    giaddr=st.sampled_from([0, A("10.0.0.254"), A("10.5.0.1"), A("172.16.0.1")]),
    chaddr=st.binary(min_size=16, max_size=16),
    options=st.dictionaries(hostile_codes, st.binary(max_size=40), max_size=8).map(
        lambda o: {53: bytes([o.get(53, b"\x01")[:1][0] % 10 if o.get(53) else 1]), **o}
    ),
)


@given(st.lists(hostile, max_size=12))
@settings(max_examples=300, deadline=None)
def test_hostile_requests_never_crash_or_escape_the_served_subnets(packets: list[Packet]) -> None:
    far = lan(
        name="far",
        cidr="10.5.0.0/24",
        pools=[Pool(start=IPv4Address("10.5.0.10"), end=IPv4Address("10.5.0.20"))],
        routers=[],
    )
    srv = make_server(subnets=[lan(), far], policy=Policy(probe=True))
    for i, p in enumerate(packets):
        for port in (67, 4011):
            try:
                r = srv.handle(p, Inbound("rdh0", SERVER_IP, port), float(i))
            except MalformedPacket:
                continue
            if r is None:
                continue
            got = reply_packet(r)
            assert got.op == 2 and got.xid == p.xid
            if got.yiaddr:  # an address handed out is always on a served subnet
                assert any(s.contains(got.yiaddr) for s in srv.config.subnets)
    for lease in srv.leases:
        assert any(s.contains(lease.ip) for s in srv.config.subnets)


@settings(max_examples=300, deadline=None)
@given(
    prl=st.binary(max_size=40),
    mtype=st.sampled_from([M.OFFER, M.ACK]),
    lease=st.booleans(),
    rai=st.none() | st.binary(min_size=1, max_size=300),
    max_size=st.none() | st.integers(min_value=0, max_value=1600),
    search=st.lists(st.sampled_from(["a.example", "b.example.org", "lab"]), max_size=30),
)
def test_cached_plain_reply_equals_the_general_path(
    prl: bytes,
    mtype: int,
    lease: bool,
    rai: bytes | None,
    max_size: int | None,
    search: list[str],
) -> None:
    """Replies to clients that are not booting come from options encoded once per subnet and
    parameter request list: the bytes must equal the general path's, overload included."""
    from roost.dhcp import replies

    srv = make_server(subnets=[lan(domain_search=search, ntp_servers=["10.0.0.123"])])
    subnet = srv.config.subnets[0]
    p = request(M.DISCOVER, 3, parameter_request_list=prl)
    p.giaddr = A("10.0.0.9")
    if rai is not None:
        p.options[Opt.RELAY_AGENT_INFO] = rai
    if max_size is not None:
        p.options[Opt.MAX_MESSAGE_SIZE] = max_size.to_bytes(2, "big")
    args = (p, mtype, subnet, SERVER_IP, A("10.0.0.100"), None, 8442, srv.tags_for)
    for _ in range(2):  # the second time from the subnet's cache
        got = replies.build(*args, lease=lease)
        r = replies.base(p, A("10.0.0.100"), int(SERVER_IP))
        if mtype == M.OFFER:
            r.ciaddr = 0
        want = replies._general(
            r, p, mtype, subnet, SERVER_IP, None, 8442, srv.tags_for, lease, None
        )
        assert got.data == want
        assert (prl, lease) in subnet.reply_options  # the cached path was the one taken


def test_lease_events_carry_the_site_of_their_subnet() -> None:
    """Readers limited to a site follow its leases: every lease event has its subnet's site."""
    srv = make_server(subnets=[lan(site="east")], policy=Policy(probe=True))
    dora(srv, 1)
    srv.conflict(request(M.DISCOVER, 2), A("10.0.0.101"), 1)
    full = make_server(subnets=[lan(site="east", pools=[])])
    full.handle(request(M.DISCOVER, 3), INBOUND, 0)
    events = srv.events + full.events
    assert {e[0] for e in events} >= {
        "dhcp.lease.offered",
        "dhcp.lease.bound",
        "dhcp.lease.declined",
        "dhcp.pool.exhausted",
    }
    assert {e[3] for e in events} == {"east"}
