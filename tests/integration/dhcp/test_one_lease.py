"""One lease per machine across its boot stages: the firmware's PXE (no client identifier),
then iPXE and the OS (client identifier 01:<mac>), against a real `roost serve`."""

from __future__ import annotations

import sys

import pytest

from .conftest import SUBNET, Link
from .test_clients import DHClient, need, udhcpc

pytestmark = pytest.mark.netns

# The firmware stage as OVMF sends it: DISCOVER and REQUEST with the broadcast flag and no
# option 61, from a plain UDP socket on port 68. Prints the address it was ACKed.
FIRMWARE = """
import socket, sys
from roost.dhcp.codec import Packet, decode, encode
ifname = sys.argv[1]
mac = bytes.fromhex(open(f"/sys/class/net/{ifname}/address").read().strip().replace(":", ""))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.bind(("0.0.0.0", 68))
s.settimeout(10)
def ask(mtype, extra):
    opts = {53: bytes((mtype,)), 55: bytes((1, 3, 6, 66, 67)), 93: b"\\x00\\x07", **extra}
    p = Packet(xid=0x0F0F0F0F, flags=0x8000, chaddr=mac.ljust(16, b"\\0"), options=opts)
    s.sendto(encode(p), ("255.255.255.255", 67))
    while True:
        r = decode(s.recv(4096))
        if r.xid == p.xid:
            assert 61 not in r.options
            return r
offer = ask(1, {})
ack = ask(3, {50: offer.yiaddr.to_bytes(4, "big"), 54: offer.options[54]})
assert ack.message_type == 5, ack
print(socket.inet_ntoa(ack.yiaddr.to_bytes(4, "big")))
"""


def firmware(link: Link) -> str:
    res = link.lab.exec(link.cli_ns, sys.executable, "-c", FIRMWARE, link.cli_if, timeout=30)
    return res.stdout.strip()


def leases_of(link: Link, mac: str) -> dict[str, str]:
    return {ip: state for ip, (m, state) in link.server.leases().items() if m == mac}


def mac_of(link: Link) -> str:
    out = link.lab.exec(link.cli_ns, "cat", f"/sys/class/net/{link.cli_if}/address").stdout
    return out.strip()


def test_firmware_ipxe_and_os_stages_end_with_one_lease(link: Link) -> None:
    need("udhcpc", "dhclient")
    link.server.configure([SUBNET])
    link.server.start()
    mac = mac_of(link)
    first = firmware(link)  # OVMF: no client identifier
    out = udhcpc(link)  # iPXE-like: 01:<mac> (busybox udhcpc's default)
    assert f"lease of {first} obtained" in out, out
    client = DHClient(link)
    client.conf.write_text("send dhcp-client-identifier = hardware;\n")  # the OS: 01:<mac>
    err = client.run("-1")
    assert f"bound to {first}" in err, err
    assert leases_of(link, mac) == {first: "bound"}


def test_without_match_client_id_each_identifier_is_a_client(link: Link) -> None:
    """The old keying, kept behind the setting (and the proof the test above can fail)."""
    need("udhcpc")
    link.server.env["ROOST_DHCP__MATCH_CLIENT_ID"] = "false"
    link.server.configure([SUBNET])
    link.server.start()
    first = firmware(link)
    out = udhcpc(link)
    assert "obtained" in out and f"lease of {first} obtained" not in out, out
    assert len(leases_of(link, mac_of(link))) == 2


def test_leases_keyed_by_client_identifier_before_the_upgrade_keep_their_address(
    link: Link,
) -> None:
    need("udhcpc")
    link.server.env["ROOST_DHCP__MATCH_CLIENT_ID"] = "false"  # stores the key ff 01 <mac>
    link.server.configure([SUBNET])
    link.server.start()
    out = udhcpc(link)
    ip = out.split("lease of ")[1].split()[0]
    link.server.stop()
    del link.server.env["ROOST_DHCP__MATCH_CLIENT_ID"]
    link.server.start()
    assert firmware(link) == ip  # the stored 01:<mac> lease is this machine's, without 61
    assert f"lease of {ip} obtained" in udhcpc(link)
    assert leases_of(link, mac_of(link)) == {ip: "bound"}
