"""Router advertisements from a real `roost serve` to real IPv6 hosts in network namespaces:
rdisc6 (ndisc6) and the Linux kernel's own autoconfiguration (accept_ra)."""

from __future__ import annotations

import shutil
import sys
import time

import pytest

from roost.testing.netns import wait_for

from .conftest import SUBNET, Link
from .test_clients import need, udhcpc

pytestmark = pytest.mark.netns

PREFIX = "fd00:201::"


def need_rdisc6() -> None:
    if shutil.which("rdisc6") is None:
        pytest.skip("rdisc6 is not installed (Debian package ndisc6; scripts/bootstrap)")


def start(link: Link, **env: str) -> None:
    link.server.env.update(env)
    link.server.configure([SUBNET])
    link.server.start()
    link.server.wait_event("dhcp.ra.started", interface=link.srv_if)


def client_autoconfigures(link: Link) -> None:
    """The client side as a plain Linux host: accept RAs, and solicit by coming up again."""
    ns, ifname = link.cli_ns, link.cli_if
    link.lab.exec(ns, "sysctl", "-qw", f"net.ipv6.conf.{ifname}.accept_ra=1")
    link.lab.exec(ns, "ip", "link", "set", ifname, "down")
    link.lab.exec(ns, "ip", "link", "set", ifname, "up")


def default_routes(link: Link) -> str:
    return link.lab.exec(link.cli_ns, "ip", "-6", "route", "show", "default").stdout.strip()


def addresses(link: Link) -> str:
    return link.lab.exec(link.cli_ns, "ip", "-6", "addr", "show", "dev", link.cli_if).stdout


def link_local_ready(link: Link) -> None:
    """The client's own link-local address has passed DAD (until then it cannot send)."""
    ok = wait_for(lambda: "fe80" in (a := addresses(link)) and "tentative" not in a, 10)
    assert ok, addresses(link)


def test_rdisc6_is_told_at_once_there_is_no_router(link: Link) -> None:
    need_rdisc6()
    start(link)
    link_local_ready(link)
    t0 = time.monotonic()
    res = link.lab.exec(
        link.cli_ns, "rdisc6", "-1", "-r", "1", "-w", "4000", link.cli_if, check=False
    )
    elapsed = time.monotonic() - t0
    out = res.stdout
    assert "Router lifetime" in out, (res.stderr, addresses(link), link.server.metrics())
    lifetime = next(line for line in out.splitlines() if "Router lifetime" in line)
    assert ": 0 (0x00000000) seconds" in " ".join(lifetime.split()).replace(" :", ":"), lifetime
    assert "Prefix" not in out  # none configured, none advertised
    assert elapsed < 1.0  # answered directly within 0.5 s, not by the 3 s multicast timer
    m = link.server.metrics()
    assert m["roost_dhcp_ra_solicitations_received_total"] >= 1
    assert m['roost_dhcp_ra_advertisements_sent_total{reason="solicited"}'] >= 1


def test_linux_host_learns_the_prefix_but_installs_no_default_route(link: Link) -> None:
    start(link, ROOST_DHCP__RA_PREFIXES=f"{PREFIX}/64")
    client_autoconfigures(link)
    assert wait_for(lambda: PREFIX in addresses(link), 15), addresses(link)
    time.sleep(0.5)
    assert default_routes(link) == ""


def test_a_configured_router_lifetime_makes_a_default_route_until_roost_stops(link: Link) -> None:
    """The control for the test above: the client does install a route when told to, and
    Roost withdraws it (a final RA with lifetime 0) when it stops."""
    start(link, ROOST_DHCP__RA_ROUTER_LIFETIME="1800")
    client_autoconfigures(link)
    assert wait_for(lambda: "default via fe80::" in default_routes(link), 15)
    link.server.stop()
    assert wait_for(lambda: default_routes(link) == "", 10), default_routes(link)


SEND_RS = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, sys.argv[1].encode())
idx = socket.if_nametoindex(sys.argv[1])
for hops, msg in ((255, "8500000000000000" "0100" + "00" * 6), (64, "8500000000000000")):
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, hops)
    s.sendto(bytes.fromhex(msg), ("ff02::2", 0, 0, idx))
"""


def test_malformed_and_off_link_solicitations_are_dropped_and_counted(link: Link) -> None:
    start(link)
    link_local_ready(link)
    link.lab.exec(link.cli_ns, sys.executable, "-c", SEND_RS, link.cli_if)

    def dropped() -> dict[str, float]:
        m = link.server.metrics()
        return {
            r: m.get(f'roost_dhcp_ra_dropped_total{{reason="{r}"}}', 0)
            for r in ("malformed", "hop_limit")
        }

    assert wait_for(lambda: dropped() == {"malformed": 1, "hop_limit": 1}, 5), dropped()
    assert link.server.proc is not None and link.server.proc.poll() is None


def test_solicitations_from_the_servers_own_host_are_not_answered(link: Link) -> None:
    """The server host's own kernel solicits too (its interface comes up with accept_ra);
    Roost must not answer itself, or its host would take its prefixes and route."""
    need_rdisc6()
    start(link)
    link.lab.exec(link.cli_ns, "sysctl", "-qw", f"net.ipv6.conf.{link.cli_if}.accept_ra=0")
    time.sleep(0.5)  # the client's kernel stops soliciting
    key = "roost_dhcp_ra_solicitations_received_total"
    before = link.server.metrics()[key]
    res = link.lab.exec(
        link.srv_ns, "rdisc6", "-1", "-r", "1", "-w", "1500", link.srv_if, check=False
    )
    assert "Router lifetime" not in res.stdout, res.stdout
    assert link.server.metrics()[key] == before


def test_an_interface_without_ipv6_serves_dhcp_without_advertisements(link: Link) -> None:
    need("udhcpc")
    link.lab.exec(link.srv_ns, "sysctl", "-qw", f"net.ipv6.conf.{link.srv_if}.disable_ipv6=1")
    link.server.configure([SUBNET])
    link.server.start()
    assert "obtained" in udhcpc(link)
    assert f"no IPv6 router advertisements on {link.srv_if}" in link.server.log.read_text()
    assert link.server.events("dhcp.ra.") == []
