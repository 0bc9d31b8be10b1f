"""Relayed requests through ISC dhcrelay, and proxyDHCP beside a dnsmasq that hands out
addresses; the server's replies are captured and checked byte for byte where RFCs fix them."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.dhcp.codec import Packet, encode
from roost.dhcp.options import MessageType, Opt
from roost.testing.netns import Lab

from .conftest import Link, tag
from .harness import Capture, RoostServer

pytestmark = pytest.mark.netns


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/bootstrap installs it)")


@pytest.fixture
def routed(lab: Lab, tmp_path: Path) -> Iterator[tuple[Link, str, str]]:
    """cli ── rly (10.202.0.1/24 | 10.201.0.2/24) ── srv (10.201.0.1/24, route via rly)."""
    t = tag()
    cli_ns, rly_ns, srv_ns = lab.ns("cli"), lab.ns("rly"), lab.ns("srv")
    cli_if, down, up, srv_if = f"{t}c0", f"{t}rd", f"{t}ru", f"{t}s0"
    lab.link(cli_ns, cli_if, None, rly_ns, down, "10.202.0.1/24")
    lab.link(rly_ns, up, "10.201.0.2/24", srv_ns, srv_if, "10.201.0.1/24")
    lab.exec(srv_ns, "ip", "route", "add", "10.202.0.0/24", "via", "10.201.0.2")
    server = RoostServer(lab, srv_ns, tmp_path / "data", [srv_if])
    try:
        yield Link(lab, srv_ns, cli_ns, srv_if, cli_if, server, tmp_path), rly_ns, f"{down} {up}"
    finally:
        server.stop()


def test_dhcrelay_relayed_lease_with_option_82_echoed(routed: tuple[Link, str, str]) -> None:
    need("dhcrelay", "udhcpc")
    link, rly_ns, ifs = routed
    down, up = ifs.split()
    link.server.configure(
        [
            {
                "name": "far",
                "cidr": "10.202.0.0/24",
                "pools": [{"start": "10.202.0.100", "end": "10.202.0.149"}],
                "routers": ["10.202.0.1"],
            }
        ]
    )
    link.server.start()
    link.lab.spawn(
        rly_ns,
        ["dhcrelay", "-4", "-d", "--no-pid", "-a", "-id", down, "-iu", up, "10.201.0.1"],
    )
    cap = Capture(link.lab, link.srv_ns, link.srv_if, link.tmp / "relay.pcap")
    out = link.lab.exec(
        link.cli_ns, "udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "2", "-i", link.cli_if,
        "-s", "/bin/true", check=False, timeout=60,
    )  # fmt: skip
    packets = cap.stop()
    m = re.search(r"lease of (10\.202\.0\.\d+) obtained", out.stdout + out.stderr)
    assert m, out.stdout + out.stderr
    requests = [(s, d, p) for s, d, p in packets if p.op == 1]
    replies = [(s, d, p) for s, d, p in packets if p.op == 2]
    assert requests and replies
    rai = requests[0][2].options[Opt.RELAY_AGENT_INFO]
    assert requests[0][2].giaddr == int.from_bytes(bytes([10, 202, 0, 1]), "big")
    for src, dst, reply in replies:
        # RFC 2131 §4.1: relayed replies go to the relay (giaddr) on port 67, unicast
        assert src == ("10.201.0.1", 67) and dst == ("10.202.0.1", 67)
        # RFC 3046 §2.2: the server echoes option 82 unchanged
        assert reply.options[Opt.RELAY_AGENT_INFO] == rai
    assert {p.message_type for _, _, p in replies} == {MessageType.OFFER, MessageType.ACK}
    link.server.wait_event("dhcp.lease.bound", ip=m.group(1))


PXE_VENDOR = "PXEClient:Arch:00000:UNDI:002001"


def test_proxy_dhcp_beside_dnsmasq(bridged: Link) -> None:
    need("dnsmasq", "udhcpc")
    link = bridged
    link.lab.exec(link.oth_ns, "ip", "addr", "add", "10.201.0.5/24", "dev", link.oth_if)
    link.lab.spawn(
        link.oth_ns,
        [
            "dnsmasq", "--keep-in-foreground", "--port=0", f"--interface={link.oth_if}",
            "--bind-interfaces", "--dhcp-range=10.201.0.150,10.201.0.199,1h", "--no-ping",
            f"--dhcp-leasefile={link.tmp / 'dnsmasq.leases'}", "--pid-file", "--user=root",
        ],
    )  # fmt: skip
    link.server.env["ROOST_DHCP__PROXY"] = "true"
    link.server.configure([{"name": "lan", "cidr": "10.201.0.0/24"}])
    link.server.start()
    cap = Capture(link.lab, link.cli_ns, link.cli_if, link.tmp / "proxy.pcap")
    # dhclient as a PXE-ish client: it sends the PXE vendor class and architecture, and like
    # a PXE ROM takes its address from the offer that has one (it requires a subnet mask,
    # which a proxy offer does not carry)
    conf = link.tmp / "pxe-dhclient.conf"
    conf.write_text(
        "option pxe-arch code 93 = unsigned integer 16;\n"
        f'send vendor-class-identifier "{PXE_VENDOR}";\nsend pxe-arch 0;\n'
        "require subnet-mask;\n"
    )
    out = link.lab.exec(
        link.cli_ns, "dhclient", "-4", "-v", "-1", "-sf", "/bin/true", "-cf", str(conf),
        "-lf", str(link.tmp / "pxe.leases"), "-pf", str(link.tmp / "pxe.pid"), link.cli_if,
        check=False, timeout=60,
    )  # fmt: skip
    link.lab.exec(link.cli_ns, "dhclient", "-x", "-pf", str(link.tmp / "pxe.pid"), check=False)
    packets = cap.stop()
    text = out.stdout + out.stderr
    m = re.search(r"DHCPACK of (10\.201\.0\.\d+) from 10\.201\.0\.5", text)
    assert m, text  # the address comes from dnsmasq
    ours = [p for s, _, p in packets if s[0] == "10.201.0.1" and p.op == 2]
    assert ours, "Roost sent no proxy offer"
    offer = ours[0]
    # PXE 2.1 proxy offer: no address, boot file and next-server, PXEClient, no lease
    assert offer.message_type == MessageType.OFFER and offer.yiaddr == 0
    assert offer.file.rstrip(b"\0") == b"undionly.kpxe"
    assert offer.siaddr == int.from_bytes(bytes([10, 201, 0, 1]), "big")
    assert offer.get(Opt.VENDOR_CLASS) == "PXEClient"
    assert Opt.LEASE_TIME not in offer.options
    assert link.server.leases() == {}
    # the PXE boot-server request on port 4011 is answered with an ACK back to the sender
    ip = m.group(1)
    link.lab.exec(link.cli_ns, "ip", "addr", "add", f"{ip}/24", "dev", link.cli_if)
    req = Packet(
        xid=0x4011,
        ciaddr=int.from_bytes(bytes(map(int, ip.split("."))), "big"),
        chaddr=bytes.fromhex("525400000001").ljust(16, b"\0"),
        options={
            Opt.MESSAGE_TYPE: b"\x03",
            Opt.VENDOR_CLASS: PXE_VENDOR.encode(),
            Opt.CLIENT_ARCH: b"\x00\x07",
        },
    )
    script = (
        "import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(10);"
        f"s.bind(('{ip}',4011));s.sendto(bytes.fromhex(sys.argv[1]),('10.201.0.1',4011));"
        "print(s.recv(2048).hex())"
    )
    res = link.lab.exec(link.cli_ns, "python3", "-c", script, encode(req).hex(), timeout=30)
    from roost.dhcp.codec import decode

    ack = decode(bytes.fromhex(res.stdout.strip()))
    assert ack.message_type == MessageType.ACK and ack.xid == 0x4011
    assert ack.file.rstrip(b"\0") == b"ipxe.efi"
