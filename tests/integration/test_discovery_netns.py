"""Discovery against 50 real hosts in network namespaces, checked against arp-scan and nmap.

One lab per module (building it is the expensive part): a hub namespace with the bridge
``rdsbr`` (10.231.0.1/24, where Roost scans from) and 50 host namespaces at .10 to .59. Some
hosts listen on TCP and UDP ports (one process for all of them), one runs dnsmasq as a real
DNS server on 53/udp. Every test uses a fresh database and service; the lab is removed at the
end even when a test fails.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from roost.discovery.service import DiscoveryService
from roost.errors import Conflict
from roost.events import Event, EventFilter
from roost.service import Runtime
from roost.settings import load_settings
from roost.testing import netlab

pytestmark = pytest.mark.netns

PREFIX = "rdsi"
SUBNET = "10.231.0.0/24"
HOSTS = 50
TCP_PORTS = {
    0: [22, 80],
    1: [443, 8080],
    2: [5432],
    3: [22, 3306, 9100],
    4: [1, 1024],
    5: [65000],
    6: [80, 443, 8443],
    7: [2049],
    8: [6443],
    9: [10250, 50000],
}
UDP_PORTS = {1: [123, 5000], 2: [161], 3: [5000]}
DNS_HOST = 0
SCANNED_PORTS = "1-1024,2049,3306,5432,6443,8080,8443,9100,10250,50000,65000"
UDP_SCANNED = [53, 54, 123, 124, 161, 162, 5000, 5001]


def _mac(i: int) -> str:
    # The first five carry an Intel OUI, so the vendor lookup has something to find.
    return f"00:1b:21:72:64:{i:02x}" if i < 5 else f"02:72:64:73:00:{i:02x}"


@pytest.fixture(scope="module")
def lab() -> Iterator[netlab.Lab]:
    reason = netlab.unavailable_reason()
    if reason:
        pytest.skip(reason)
    for tool in ("nmap", "arp-scan", "dnsmasq", "busybox"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/bootstrap installs it)")
    with netlab.lab(PREFIX, SUBNET, HOSTS, macs=_mac) as built:
        spec: dict[str, dict[str, list[int]]] = {}
        for i, ports in TCP_PORTS.items():
            spec.setdefault(built.hosts[i].netns, {})["tcp"] = ports
        for i, ports in UDP_PORTS.items():
            spec.setdefault(built.hosts[i].netns, {})["udp"] = ports
        import json

        listeners = built.python(built.hub, "roost.testing.listeners", json.dumps(spec))
        assert listeners.stdout is not None
        assert listeners.stdout.readline().strip() == b"ready"
        dns = built.hosts[DNS_HOST]
        built.spawn(
            dns.netns,
            [
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--port=53",
                "--bind-interfaces",
                f"--listen-address={dns.ip}",
                "--pid-file=",
                "--address=/roost.test/10.231.0.1",
            ],
        )
        _wait_udp_port(built, dns.netns, 53)
        yield built


def _wait_udp_port(lab: netlab.Lab, ns: str, port: int) -> None:
    for _ in range(100):
        out = subprocess.run(
            ["ip", "netns", "exec", ns, "ss", "-lun"], capture_output=True, text=True
        ).stdout
        if f":{port} " in out:
            return
        subprocess.run(["sleep", "0.05"], check=True)
    raise AssertionError(f"nothing listens on udp/{port} in {ns}")


@pytest.fixture
async def disc(tmp_path: Path, lab: netlab.Lab) -> AsyncIterator[tuple[Runtime, DiscoveryService]]:
    settings = load_settings(
        None,
        {
            "data_dir": tmp_path,
            "database.url": f"sqlite+aiosqlite:///{tmp_path / 'roost.db'}",
            "site": "lab",
            "discovery.subnets": [SUBNET, "127.0.0.0/8"],
            "discovery.interface": netlab.BRIDGE,
            "discovery.netns": lab.hub,
            "discovery.gone_after": 1,
            "discovery.wake_timeout": 2.0,
            "discovery.udp_timeout": 0.5,
            "discovery.udp_rate": 2000.0,
        },
    )
    rt = Runtime.create(settings)
    await rt.start(load_services=False)
    svc = DiscoveryService(rt)
    rt.services.append(svc)
    await svc.start()
    try:
        yield rt, svc
    finally:
        await rt.stop()


async def _events(rt: Runtime, prefix: str) -> list[Event]:
    await asyncio.sleep(0.05)  # let fire-and-forget progress events reach the store
    return await rt.bus.history(EventFilter(types=(prefix,)), limit=100_000)


async def _ip(*args: str) -> None:
    await asyncio.to_thread(subprocess.run, ["ip", *args], check=True)


def _nmap(lab: netlab.Lab, args: list[str]) -> dict[tuple[str, str, int], str]:
    """``{(ip, protocol, port): state}`` for every port nmap reports, from its XML."""
    xml = lab.run(["nmap", "-n", "-Pn", "-oX", "-", *args], timeout=300)
    found: dict[tuple[str, str, int], str] = {}
    for host in ET.fromstring(xml).iter("host"):
        addr = host.find("address")
        assert addr is not None
        for port in host.iter("port"):
            state = port.find("state")
            assert state is not None
            found[(addr.get("addr", ""), port.get("protocol", ""), int(port.get("portid", 0)))] = (
                state.get("state", "")
            )
    return found


async def test_arp_sweep_finds_every_host_with_its_mac_and_nothing_else(
    lab: netlab.Lab, disc: tuple[Runtime, DiscoveryService]
) -> None:
    rt, svc = disc
    scan = await svc.start_scan("arp")
    done = await svc.wait_scan(scan.id)
    assert done.state == "finished" and done.percent == 100.0
    # 253 addresses (the /24 less ours) asked; the 203 silent ones twice (arp_attempts = 2).
    assert done.stats["probes"] == 50 + 2 * 203 and done.stats["hosts"] == HOSTS
    expected = {str(h.ip): h.mac for h in lab.hosts}
    async with rt.db.session() as s:
        from sqlalchemy import select

        from roost.discovery.models import HostRow

        rows = (await s.execute(select(HostRow))).scalars().all()
    assert {r.ip: r.mac for r in rows} == expected
    assert {r.mac: r.vendor for r in rows}[_mac(0)] == "Intel Corporate"

    found = await _events(rt, "discovery.host.found")
    assert {e.data["ip"]: e.data["mac"] for e in found} == expected
    assert all("vendor" in e.data for e in found)
    progress = await _events(rt, "discovery.scan.")
    kinds = [e.type for e in progress]
    assert kinds[0] == "discovery.scan.started" and kinds[-1] == "discovery.scan.finished"
    assert progress[-1].data["hosts_found"] == HOSTS and progress[-1].data["percent"] == 100.0
    assert {"percent", "hosts_found", "ports_found"} <= set(progress[-1].data)

    # arp-scan, with its defaults, on the same wire sees the same hosts.
    out = await asyncio.to_thread(lab.run, ["arp-scan", "-I", netlab.BRIDGE, "-q", "-x", SUBNET])
    peer = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}
    assert peer == expected


async def test_sweeps_report_moved_and_gone_hosts(
    lab: netlab.Lab, disc: tuple[Runtime, DiscoveryService]
) -> None:
    rt, svc = disc
    await svc.wait_scan((await svc.start_scan("arp")).id)
    moved, silent = lab.hosts[7], lab.hosts[8]
    new_ip = "10.231.0.250"
    await _ip("-n", moved.netns, "addr", "flush", "dev", "eth0")
    await _ip("-n", moved.netns, "addr", "add", f"{new_ip}/24", "dev", "eth0")
    await _ip("-n", silent.netns, "link", "set", "eth0", "down")
    try:
        await svc.wait_scan((await svc.start_scan("arp")).id)
    finally:
        await _ip("-n", moved.netns, "addr", "flush", "dev", "eth0")
        await _ip("-n", moved.netns, "addr", "add", f"{moved.ip}/24", "dev", "eth0")
        await _ip("-n", silent.netns, "link", "set", "eth0", "up")
    changed = await _events(rt, "discovery.host.changed")
    assert [(e.data["mac"], e.data["ip"], e.data["old_ip"]) for e in changed] == [
        (moved.mac, new_ip, str(moved.ip))
    ]
    gone = await _events(rt, "discovery.host.gone")
    assert [(e.data["mac"], e.data["ip"]) for e in gone] == [(silent.mac, str(silent.ip))]


async def test_tcp_scan_finds_exactly_the_open_ports_and_nmap_agrees(
    lab: netlab.Lab, disc: tuple[Runtime, DiscoveryService]
) -> None:
    rt, svc = disc
    addrs = [str(h.ip) for h in lab.hosts]
    # The whole subnet: Roost ARP-sweeps it first and probes only the 50 hosts that answer.
    scan = await svc.start_scan("tcp", [SUBNET], SCANNED_PORTS)
    done = await svc.wait_scan(scan.id)
    assert done.state == "finished"
    expected = {(str(lab.hosts[i].ip), p) for i, ports in TCP_PORTS.items() for p in ports}
    expected.add((str(lab.hosts[DNS_HOST].ip), 53))  # dnsmasq answers DNS over TCP as well
    opened = await _events(rt, "discovery.port.open")
    assert {(e.data["ip"], e.data["port"]) for e in opened} == expected
    assert done.ports_found == len(expected)
    nmap = await asyncio.to_thread(_nmap, lab, ["-sT", "-T4", "-p", SCANNED_PORTS, *addrs])
    assert {(ip, port) for (ip, _, port), st in nmap.items() if st == "open"} == expected
    port22 = next(e for e in opened if e.data["port"] == 22)
    assert port22.data["service"] == "ssh" and port22.data["protocol"] == "tcp"


async def test_udp_scan_tells_open_from_closed_and_nmap_agrees(
    lab: netlab.Lab, disc: tuple[Runtime, DiscoveryService]
) -> None:
    rt, svc = disc
    hosts = [str(lab.hosts[i].ip) for i in range(5)]
    ports = ",".join(map(str, UDP_SCANNED))
    done = await svc.wait_scan((await svc.start_scan("udp", hosts, ports)).id)
    assert done.state == "finished"
    from sqlalchemy import select

    from roost.discovery.models import ScanResultRow

    async with rt.db.session() as s:
        rows = (
            (await s.execute(select(ScanResultRow).where(ScanResultRow.scan_id == done.id)))
            .scalars()
            .all()
        )
    ours = {(r.ip, r.port): r.state for r in rows}
    expected_open = {(str(lab.hosts[i].ip), p) for i, ps in UDP_PORTS.items() for p in ps}
    expected_open.add((str(lab.hosts[DNS_HOST].ip), 53))
    assert {k for k, v in ours.items() if v == "open"} == expected_open
    assert {k for k, v in ours.items() if v == "closed"} == {
        (h, p) for h in hosts for p in UDP_SCANNED
    } - expected_open
    nmap = await asyncio.to_thread(_nmap, lab, ["-sU", "-T4", "-p", ports, *hosts])
    assert {(ip, port): st for (ip, _, port), st in nmap.items()} == ours


async def test_tcp_scan_of_loopback_never_reports_a_self_connect(
    lab: netlab.Lab, disc: tuple[Runtime, DiscoveryService]
) -> None:
    _, svc = disc
    # Inside the hub namespace nothing listens on loopback, so every port must be closed,
    # including the ephemeral range where a connect could pick its own port as source.
    done = await svc.wait_scan((await svc.start_scan("tcp", ["127.0.0.1"], "20000-65535")).id)
    assert done.state == "finished" and done.ports_found == 0
    assert done.stats["closed"] == 45536


async def test_wake_is_confirmed_when_the_host_comes_up_and_times_out_when_it_never_does(
    lab: netlab.Lab, disc: tuple[Runtime, DiscoveryService]
) -> None:
    rt, svc = disc
    mac, addr = "02:72:64:73:ff:01", "10.231.0.200"
    ns = lab.add_bare_host("wk", mac)
    try:
        wakee = lab.python(ns, "roost.testing.wakee", "--mac", mac, "--addr", f"{addr}/24")
        assert wakee.stdout is not None
        assert wakee.stdout.readline().strip() == b"listening"
        result = await svc.wake(mac, addr, wait=True)
        assert result.confirmed and result.via == "arp"
        assert wakee.wait(5) == 0
        silent = await svc.wake("02:72:64:73:ff:02", "10.231.0.201", wait=True)
        assert not silent.confirmed
    finally:
        lab.remove_ns(ns)
    events = await _events(rt, "power.wake.")
    seen = [(e.type, e.data["mac"], e.data["ip"]) for e in events]
    assert seen == [
        ("power.wake.sent", mac, addr),
        ("power.wake.confirmed", mac, addr),
        ("power.wake.sent", "02:72:64:73:ff:02", "10.231.0.201"),
        ("power.wake.timeout", "02:72:64:73:ff:02", "10.231.0.201"),
    ]
    found = await _events(rt, "discovery.host.found")
    assert [(e.data["mac"], e.data["ip"]) for e in found] == [(mac, addr)]


async def test_gratuitous_arp_and_dhcp_requests_are_seen_without_probing(
    lab: netlab.Lab, disc: tuple[Runtime, DiscoveryService]
) -> None:
    rt, _ = disc
    garp, dhcp = lab.hosts[20], lab.hosts[21]
    await asyncio.to_thread(
        subprocess.run,
        [
            "ip",
            "netns",
            "exec",
            garp.netns,
            "busybox",
            "arping",
            "-U",
            "-c",
            "1",
            "-I",
            "eth0",
            str(garp.ip),
        ],
        check=True,
        capture_output=True,
    )
    await asyncio.to_thread(
        subprocess.run,
        [
            "ip",
            "netns",
            "exec",
            dhcp.netns,
            "busybox",
            "udhcpc",
            "-i",
            "eth0",
            "-n",
            "-q",
            "-t",
            "1",
            "-T",
            "1",
            "-r",
            "10.231.0.99",
            "-s",
            "/bin/true",
        ],
        capture_output=True,
    )
    found: dict[str, dict[str, Any]] = {}
    for _ in range(100):
        found = {e.data["mac"]: e.data for e in await _events(rt, "discovery.host.found")}
        if garp.mac in found and dhcp.mac in found:
            break
        await asyncio.sleep(0.05)
    assert found[garp.mac]["ip"] == str(garp.ip)
    assert found[garp.mac]["source"] == "passive-garp"
    assert found[dhcp.mac]["ip"] == "10.231.0.99"
    assert found[dhcp.mac]["source"] == "passive-dhcp"
    scans = await _events(rt, "discovery.scan.")
    assert scans == []  # seen without any probe


async def test_one_scan_of_a_subnet_at_a_time_and_cancel(
    lab: netlab.Lab, disc: tuple[Runtime, DiscoveryService]
) -> None:
    rt, svc = disc
    big = await svc.start_scan("tcp", [SUBNET], "1-65535")
    with pytest.raises(Conflict, match=f"scan {big.id}"):
        await svc.start_scan("arp")
    with pytest.raises(Conflict):
        await svc.start_scan("udp", [str(lab.hosts[3].ip)], "53")
    done = await svc.cancel_scan(big.id)
    assert done.state == "cancelled" and done.percent < 100.0
    cancelled = await _events(rt, "discovery.scan.cancelled")
    assert [e.subject for e in cancelled] == [f"scan/{big.id}"]
    again = await svc.start_scan("arp")  # the subnet is free again
    assert (await svc.wait_scan(again.id)).state == "finished"


async def test_tcp_engine_tells_open_closed_and_unreachable(lab: netlab.Lab) -> None:
    import threading

    from roost.discovery import tcpscan
    from roost.discovery.netns import run_in_thread

    up = str(lab.hosts[0].ip)
    nobody = "10.231.0.100"  # inside the subnet, no host: ARP fails, the kernel says so
    seen: dict[tuple[str, int], str] = {}
    stats = await run_in_thread(
        lab.hub,
        lambda: tcpscan.scan_tcp(
            [(up, 22), (up, 23), (nobody, 22)],
            total=3,
            timeout=5.0,
            retries=0,
            stop=threading.Event(),
            on_result=lambda ip, port, state: seen.__setitem__((ip, port), state),
        ),
    )
    assert seen == {(up, 22): "open", (nobody, 22): "unreachable"}
    assert (stats.open, stats.closed, stats.unreachable, stats.filtered) == (1, 1, 1, 0)


async def test_scheduled_sweeps_run_by_themselves(tmp_path: Path, lab: netlab.Lab) -> None:
    settings = load_settings(
        None,
        {
            "data_dir": tmp_path,
            "database.url": f"sqlite+aiosqlite:///{tmp_path / 'roost.db'}",
            "discovery.subnets": [SUBNET],
            "discovery.interface": netlab.BRIDGE,
            "discovery.netns": lab.hub,
            "discovery.passive": False,
            "discovery.schedule_interval": 0.2,
        },
    )
    rt = Runtime.create(settings)
    await rt.start(load_services=False)
    svc = DiscoveryService(rt)
    rt.services.append(svc)
    try:
        await svc.start()
        finished: list[Event] = []
        for _ in range(200):
            finished = await rt.bus.history(EventFilter(types=("discovery.scan.finished",)))
            if finished:
                break
            await asyncio.sleep(0.05)
        assert finished and finished[0].data["hosts_found"] == HOSTS
        started = await rt.bus.history(EventFilter(types=("discovery.scan.started",)))
        assert started[0].data["by"] == "schedule"
    finally:
        await rt.stop()
