"""Real DHCP clients against a real `roost serve` in network namespaces."""

from __future__ import annotations

import re
import shutil

import pytest

from roost.dhcp.options import MessageType, Opt
from roost.testing.netns import wait_for

from .conftest import SUBNET, Link
from .harness import Capture

pytestmark = pytest.mark.netns

# Configures the address like dhclient-script would, without touching /etc/resolv.conf (shared
# with the host: namespaces have their own network, not their own files).
DHCLIENT_SCRIPT = """#!/bin/sh
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT)
    [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ] &&
      ip addr del "$old_ip_address/$new_subnet_mask" dev "$interface" 2>/dev/null
    ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
  EXPIRE|FAIL|RELEASE|STOP)
    [ -n "$old_ip_address" ] && ip addr del "$old_ip_address/$old_subnet_mask" dev "$interface" ;;
esac
exit 0
"""


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/bootstrap installs it)")


class DHClient:
    def __init__(self, link: Link, hostname: str = "node-a") -> None:
        self.link = link
        d = link.tmp / "dhclient"
        d.mkdir(exist_ok=True)
        self.script = d / "script"
        self.script.write_text(DHCLIENT_SCRIPT)
        self.script.chmod(0o755)
        self.conf = d / "dhclient.conf"
        self.conf.write_text(f'send host-name "{hostname}";\n')
        self.leases = d / "dhclient.leases"
        self.pid = d / "dhclient.pid"

    def run(self, *flags: str, timeout: float = 40) -> str:
        res = self.link.lab.exec(
            self.link.cli_ns,
            "dhclient", "-4", "-v", *flags, "-sf", str(self.script), "-cf", str(self.conf),
            "-lf", str(self.leases), "-pf", str(self.pid), self.link.cli_if,
            check=False, timeout=timeout,
        )  # fmt: skip
        return res.stderr

    def address(self) -> str | None:
        out = self.link.lab.exec(
            self.link.cli_ns, "ip", "-4", "-o", "addr", "show", self.link.cli_if
        )
        m = re.search(r"inet (\S+)/", out.stdout)
        return m.group(1) if m else None


@pytest.mark.slow
def test_dhclient_full_life_cycle(link: Link) -> None:
    need("dhclient")
    srv = link.server
    srv.configure([{**SUBNET, "lease_time": 30}])
    srv.start()
    client = DHClient(link)
    out = client.run("-1")
    assert "DHCPACK" in out, out
    ip = client.address()
    assert ip is not None and ip.startswith("10.201.0.1")
    bound = srv.wait_event("dhcp.lease.bound", ip=ip)
    assert bound["hostname"] == "node-a" and re.fullmatch(
        r"([0-9a-f]{2}:){5}[0-9a-f]{2}", bound["mac"]
    )
    mac = bound["mac"]
    assert srv.leases()[ip] == (mac, "bound")
    # RENEWING: T1 is 15 s; dhclient renews unicast from its address
    srv.wait_event("dhcp.lease.renewed", timeout=30, ip=ip, mac=mac)
    # INIT-REBOOT after a server restart: stop the client quietly (-x), restart the server
    client.run("-x")
    srv.stop()
    srv.start()
    out = client.run("-1")
    assert f"DHCPREQUEST for {ip}" in out and "DHCPDISCOVER" not in out.split("DHCPACK")[0], out
    assert f"DHCPACK of {ip}" in out
    assert client.address() == ip
    # RELEASE
    client.run("-r")
    srv.wait_event("dhcp.lease.released", ip=ip, mac=mac)
    assert wait_for(lambda: srv.leases()[ip] == (mac, "released"), 10)


def test_wrong_address_gets_nak_then_a_fresh_lease(link: Link) -> None:
    need("dhclient")
    link.server.configure([SUBNET])
    link.server.start()
    client = DHClient(link)
    # a remembered lease for an address outside the pools: INIT-REBOOT asks for it
    client.leases.write_text(
        f'lease {{\n  interface "{link.cli_if}";\n  fixed-address 10.201.0.250;\n'
        "  option subnet-mask 255.255.255.0;\n  option dhcp-server-identifier 10.201.0.1;\n"
        "  renew 4 2037/01/01 00:00:00;\n  rebind 4 2037/01/01 00:00:00;\n"
        "  expire 4 2037/01/01 00:00:00;\n}\n"
    )
    out = client.run("-1")
    assert "DHCPREQUEST for 10.201.0.250" in out and "DHCPNAK from 10.201.0.1" in out, out
    assert "DHCPACK" in out
    ip = client.address()
    assert ip is not None and ip != "10.201.0.250" and ip.startswith("10.201.0.1")


def udhcpc(link: Link, *args: str, timeout: float = 30) -> str:
    res = link.lab.exec(
        link.cli_ns, "udhcpc", "-f", "-q", "-n", "-t", "4", "-T", "2", "-i", link.cli_if,
        "-s", "/bin/true", *args, check=False, timeout=timeout,
    )  # fmt: skip
    return res.stdout + res.stderr


def test_udhcpc_obtains_a_lease_with_options(link: Link) -> None:
    need("udhcpc")
    link.server.configure([SUBNET])
    link.server.start()
    cap = Capture(link.lab, link.cli_ns, link.cli_if, link.tmp / "udhcpc.pcap")
    out = udhcpc(link, "-x", "hostname:node-u")
    packets = cap.stop()
    m = re.search(r"lease of (\S+) obtained from 10\.201\.0\.1", out)
    assert m, out
    ip = m.group(1)
    assert link.server.wait_event("dhcp.lease.bound", ip=ip)["hostname"] == "node-u"
    acks = [p for _, _, p in packets if p.message_type == MessageType.ACK]
    assert acks, "no ACK on the wire"
    ack = acks[-1]
    # RFC 2131 §4.3.1 / RFC 2132: fields and options the RFCs fix
    assert ack.op == 2 and ack.get(Opt.SERVER_ID).packed == bytes([10, 201, 0, 1])
    assert str(ack.get(Opt.SUBNET_MASK)) == "255.255.255.0"
    assert ack.get(Opt.LEASE_TIME) == 3600
    assert ack.get(Opt.RENEWAL_TIME) == 1800 and ack.get(Opt.REBINDING_TIME) == 3150
    assert ack.get(Opt.DOMAIN_NAME) == "lab.test"
    requested = [p for _, _, p in packets if p.message_type == MessageType.REQUEST][-1]
    prl = requested.get(Opt.PARAMETER_REQUEST_LIST)
    sent = [c for c in ack.options if c in prl]
    assert sent == [c for c in prl if c in ack.options]  # in the client's order


def test_reservation_added_live_through_the_cli(link: Link) -> None:
    need("udhcpc")
    link.server.configure([SUBNET])
    link.server.start()
    mac = "52:54:00:aa:bb:01"
    link.lab.exec(link.cli_ns, "ip", "link", "set", link.cli_if, "address", mac)
    link.server.cli("dhcp", "reservation", "add", mac, "10.201.0.42", "--hostname", "fixed-1")
    listed = link.server.cli("dhcp", "reservation", "list", "--json").stdout
    assert '"10.201.0.42"' in listed
    out = udhcpc(link)
    assert "lease of 10.201.0.42 obtained" in out, out
    leases = link.server.cli("dhcp", "leases", "--json").stdout
    assert '"10.201.0.42"' in leases and mac in leases
    bad = link.server.cli(
        "dhcp", "reservation", "add", "52:54:00:aa:bb:02", "10.201.0.42", check=False
    )
    assert bad.returncode != 0 and "already reserved for 52:54:00:aa:bb:01" in bad.stderr


def test_decline_quarantines_an_address_in_use(bridged: Link) -> None:
    need("udhcpc")
    link = bridged
    link.server.configure([{**SUBNET, "pools": [{"start": "10.201.0.100", "end": "10.201.0.101"}]}])
    link.server.start()
    # another host on the link already uses the first pool address (and answers ARP for it)
    link.lab.exec(link.oth_ns, "ip", "addr", "add", "10.201.0.100/24", "dev", link.oth_if)
    out = udhcpc(link, "-a1000", timeout=60)
    assert "lease of 10.201.0.101 obtained" in out, out
    declined = link.server.wait_event("dhcp.lease.declined", ip="10.201.0.100")
    assert declined["mac"]
    assert link.server.leases()["10.201.0.100"][1] == "declined"


def test_perfdhcp_smoke(link: Link) -> None:
    need("perfdhcp")
    subnet = {**SUBNET, "pools": [{"start": "10.201.0.10", "end": "10.201.0.250"}]}
    link.server.configure([subnet])
    link.server.start()
    link.lab.exec(link.cli_ns, "ip", "addr", "add", "10.201.0.2/24", "dev", link.cli_if)
    # hostile input first: garbage and truncated datagrams are dropped, counted, reported once
    junk = (
        "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
        "[s.sendto(bytes([i % 256])*i,('10.201.0.1',67)) for i in range(1,300,7)]"
    )
    link.lab.exec(link.cli_ns, "python3", "-c", junk)
    malformed = link.server.wait_event("dhcp.packet.malformed")
    assert "shorter than a DHCP header" in malformed["reason"] and malformed["from"]
    res = link.lab.exec(
        link.cli_ns, "perfdhcp", "-4", "-l", link.cli_if, "-r", "50", "-R", "200", "-n", "100",
        "-p", "10", "-W", "2000000", check=False, timeout=60,
    )  # fmt: skip
    received = [int(x) for x in re.findall(r"received packets: (\d+)", res.stdout)]
    sent = [int(x) for x in re.findall(r"sent packets: (\d+)", res.stdout)]
    assert len(received) == 2 and sent[0] >= 100, res.stdout + res.stderr
    # perfdhcp acts as a relay (giaddr 10.201.0.2): every exchange it started was answered
    assert received[0] == sent[0] and received[1] == sent[1], res.stdout
    leases = link.server.leases()
    assert sum(1 for _, state in leases.values() if state == "bound") >= sent[1] * 0.5
    # /metrics counts every request and reply of the run, and the garbage as malformed
    m = link.server.metrics()
    assert m['roost_dhcp_packets_received_total{type="discover"}'] == sent[0]
    assert m['roost_dhcp_replies_sent_total{type="offer"}'] == received[0]
    assert m['roost_dhcp_replies_sent_total{type="ack"}'] == received[1]
    assert m['roost_dhcp_packets_dropped_total{reason="malformed"}'] == len(range(1, 300, 7))
    assert m['roost_dhcp_reply_seconds_count{type="offer"}'] == received[0]
    assert m['roost_dhcp_reply_seconds_bucket{le="+Inf",type="ack"}'] == received[1]
    assert m['roost_dhcp_reply_seconds_sum{type="ack"}'] > 0


def test_ping_probe_skips_an_address_in_use(bridged: Link) -> None:
    need("udhcpc")
    link = bridged
    link.server.env["ROOST_DHCP__PROBE"] = "true"
    link.server.configure([{**SUBNET, "pools": [{"start": "10.201.0.100", "end": "10.201.0.101"}]}])
    link.server.start()
    link.lab.exec(link.oth_ns, "ip", "addr", "add", "10.201.0.100/24", "dev", link.oth_if)
    out = udhcpc(link)
    assert "lease of 10.201.0.101 obtained" in out, out
    declined = link.server.wait_event("dhcp.lease.declined", ip="10.201.0.100")
    assert "ping" in declined["reason"]
