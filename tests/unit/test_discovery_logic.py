"""Pure parts of discovery: the sweep's timing, the adaptive window, targets, lookups."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.discovery import oui, services, targets
from roost.discovery.arp import Sweep
from roost.discovery.tcpscan import Window
from roost.errors import Invalid

pytestmark = pytest.mark.unit

NET = IPv4Network("10.9.0.0/28")


def test_sweep_respects_rate_and_retries_silent_addresses() -> None:
    addrs = list(NET.hosts())  # 14
    sw = Sweep(addrs, rate=10.0, attempts=2, timeout=0.5)
    sent: list[tuple[float, IPv4Address]] = []
    now = 0.0
    while (deadline := sw.next_deadline(now)) is not None:
        now = max(now, deadline)
        sent += [(now, ip) for ip in sw.due(now)]
        if now >= 0.3 and addrs[0] not in sw.found:
            sw.answer(addrs[0], b"\x02" * 6)
    per_ip = {ip: [t for t, x in sent if x == ip] for ip in addrs}
    assert len(per_ip[addrs[0]]) == 1  # answered: never asked again
    assert all(len(v) == 2 for ip, v in per_ip.items() if ip != addrs[0])
    times = sorted(t for t, _ in sent)
    # 10 per second with a burst of one: no two requests closer than 0.1 s (float slack).
    assert all(b - a >= 0.1 - 1e-9 for a, b in itertools.pairwise(times))
    for v in per_ip.values():
        if len(v) == 2:
            assert v[1] - v[0] >= 0.5
    assert sw.progress == 1.0 and sw.sent == 27


def test_sweep_ignores_unasked_and_duplicate_answers() -> None:
    sw = Sweep([IPv4Address("10.9.0.1")], rate=100.0, attempts=1, timeout=0.1)
    assert not sw.answer(IPv4Address("10.9.0.2"), b"\x02" * 6)
    assert sw.answer(IPv4Address("10.9.0.1"), b"\x02" * 6)
    assert not sw.answer(IPv4Address("10.9.0.1"), b"\x04" * 6)
    assert sw.found == {IPv4Address("10.9.0.1"): b"\x02" * 6}


@given(st.lists(st.booleans(), max_size=200), st.integers(1, 4096))
def test_window_stays_within_bounds(outcomes: list[bool], limit: int) -> None:
    w = Window(limit)
    for answered in outcomes:
        w.answered() if answered else w.timed_out()
        assert min(w.floor, limit) <= w.size <= limit


def test_window_halves_on_timeout_and_grows_by_one() -> None:
    w = Window(1000, size=64)
    w.timed_out()
    assert w.size == 32
    w.answered()
    assert w.size == 33


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("22,80", [22, 80]),
        ("8000-8002,22", [22, 8000, 8001, 8002]),
        ("-3", [1, 2, 3]),
        ("65534-", [65534, 65535]),
    ],
)
def test_parse_ports(spec: str, expected: list[int]) -> None:
    assert targets.parse_ports(spec) == expected


def test_parse_ports_all_and_top() -> None:
    assert len(targets.parse_ports("1-65535")) == 65535
    assert targets.parse_ports("-") == list(range(1, 65536))
    top = targets.parse_ports("top:10")
    assert len(top) == 10 and 22 in top and 80 in top


@pytest.mark.parametrize("spec", ["0", "1-70000", "80-22", "http", "top:x", "top:0", ","])
def test_parse_ports_refuses_nonsense(spec: str) -> None:
    with pytest.raises(Invalid):
        targets.parse_ports(spec)


def test_targets_outside_the_site_subnets_are_refused_with_the_setting_named() -> None:
    allowed = [IPv4Network("10.9.0.0/24")]
    with pytest.raises(Invalid) as err:
        targets.expand(["10.9.1.5"], allowed, "lab", 1000)
    assert "outside the subnets configured for site 'lab'" in str(err.value)
    assert "discovery.subnets" in str(err.value)
    with pytest.raises(Invalid):
        targets.expand(["127.0.0.1"], allowed, "lab", 1000)  # loopback is no exception
    with pytest.raises(Invalid):
        targets.expand(["10.9.0.0/16"], allowed, "lab", 1_000_000)  # wider than the subnet
    _, addrs = targets.expand(["10.9.0.0/30", "10.9.0.2"], allowed, "lab", 1000)
    assert addrs == [IPv4Address("10.9.0.1"), IPv4Address("10.9.0.2")]
    with pytest.raises(Invalid, match="max_targets"):
        targets.expand(["10.9.0.0/24"], allowed, "lab", 100)


def test_iana_services_have_names_descriptions_and_protocols() -> None:
    dns = services.lookup(53, "udp")
    assert dns is not None and dns.name == "domain" and "Domain Name" in dns.description
    ssh = services.lookup(22, "tcp")
    assert ssh is not None and ssh.name == "ssh" and ssh.protocol == "tcp"
    assert services.lookup(0, "tcp") is None


async def test_oui_vendor_lookup_is_offline_and_knows_local_addresses() -> None:
    await oui.load()
    assert oui.vendor("00:1b:21:00:00:01") == "Intel Corporate"
    assert oui.vendor("52:54:00:12:34:56") == oui.LOCAL  # QEMU's locally administered range
    assert oui.vendor("zz") is None


def test_discovery_is_registered_as_a_service_and_off_without_subnets(tmp_path: Path) -> None:
    from importlib.metadata import entry_points

    from roost.discovery.service import DiscoveryService, make
    from roost.service import Runtime
    from roost.settings import load_settings

    eps = {e.name: e.value for e in entry_points(group="roost.services")}
    assert eps.get("discovery") == "roost.discovery.service:make"
    off = Runtime.create(load_settings(None, {"data_dir": tmp_path}))
    assert make(off) is None
    on = Runtime.create(
        load_settings(None, {"data_dir": tmp_path, "discovery.subnets": ["10.9.0.0/24"]})
    )
    assert isinstance(make(on), DiscoveryService)
