"""Discovery through the API and the CLI, on loopback (configured as the site's subnet).

Loopback in the root namespace is shared with everything else on the machine, so these tests
assert what they control: the ports they open are found open, ports they just closed are
not, and refusals, conflicts and cancellation behave. Exact agreement with peers is proven in
test_discovery_netns.py, where the lab owns every address.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from roost.auth import Role, create_token
from roost.discovery.service import DiscoveryService
from roost.events import EventFilter
from roost.service import Runtime
from roost.settings import Settings, load_settings

ROOST = [sys.executable, "-m", "roost.cli"]
SCANS = "/api/v1/discovery/scans"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return load_settings(
        None,
        {
            "data_dir": tmp_path / "data",
            "database.url": db_url,
            "api.port": 0,
            "discovery.subnets": ["127.0.0.0/8"],
            "discovery.wake_timeout": 3.0,
        },
    )


@pytest.fixture
async def discovery(runtime: Runtime) -> AsyncIterator[DiscoveryService]:
    svc = DiscoveryService(runtime)
    runtime.services.append(svc)  # the runtime fixture stops it with the rest
    await svc.start()
    yield svc


@pytest.fixture
def ports() -> Iterator[tuple[dict[int, socket.socket], list[int]]]:
    """Three ports listening on 127.0.0.1, and two that were free a moment ago."""
    listening: dict[int, socket.socket] = {}
    for _ in range(3):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        listening[s.getsockname()[1]] = s
    free = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free.append(s.getsockname()[1])
    try:
        yield listening, free
    finally:
        for s in listening.values():
            s.close()


async def _scan(api: httpx.AsyncClient, svc: DiscoveryService, spec: str) -> dict[str, object]:
    r = await api.post(SCANS, json={"kind": "tcp", "targets": ["127.0.0.1"], "ports": spec})
    assert r.status_code == 202, r.text
    assert r.json()["state"] == "running"
    await svc.wait_scan(r.json()["id"])
    done: dict[str, object] = (await api.get(f"{SCANS}/{r.json()['id']}")).json()
    return done


async def test_port_scan_via_api_keeps_results_history_and_events(
    api: httpx.AsyncClient,
    discovery: DiscoveryService,
    runtime: Runtime,
    ports: tuple[dict[int, socket.socket], list[int]],
) -> None:
    listening, free = ports
    spec = ",".join(map(str, [*listening, *free]))
    done = await _scan(api, discovery, spec)
    assert done["state"] == "finished" and done["percent"] == 100.0 and done["ports_found"] == 3
    results = (await api.get(f"{SCANS}/{done['id']}/results")).json()
    assert {(x["port"], x["state"]) for x in results} == {(p, "open") for p in listening}
    rows = (await api.get("/api/v1/discovery/ports", params={"ip": "127.0.0.1"})).json()
    assert sorted(p["port"] for p in rows) == sorted(listening)
    first_seen = {p["port"]: p["first_seen_open"] for p in rows}
    assert all(first_seen.values())

    # Close one listener and scan again: it is closed now, and the history keeps when it
    # was first seen open.
    gone = next(iter(listening))
    listening.pop(gone).close()
    await _scan(api, discovery, spec)
    now_open = (await api.get("/api/v1/discovery/ports", params={"ip": "127.0.0.1"})).json()
    assert sorted(p["port"] for p in now_open) == sorted(listening)
    closed = (
        await api.get("/api/v1/discovery/ports", params={"ip": "127.0.0.1", "state": "closed"})
    ).json()
    assert [(p["port"], p["first_seen_open"]) for p in closed] == [(gone, first_seen[gone])]

    events = await runtime.bus.history(EventFilter(types=("discovery.",)), limit=1000)
    types = [e.type for e in events]
    assert types.count("discovery.scan.started") == 2
    assert types.count("discovery.scan.finished") == 2
    assert types.count("discovery.port.open") == 5
    fin = next(e for e in events if e.type == "discovery.scan.finished")
    assert fin.subject == f"scan/{done['id']}"
    assert {"percent", "hosts_found", "ports_found"} <= set(fin.data)


async def test_targets_outside_the_site_and_bad_input_are_refused_clearly(
    api: httpx.AsyncClient, discovery: DiscoveryService
) -> None:
    r = await api.post(SCANS, json={"kind": "tcp", "targets": ["10.1.2.3"], "ports": "22"})
    assert r.status_code == 422
    assert "outside the subnets configured" in r.json()["detail"]
    assert "discovery.subnets" in r.json()["detail"]
    r = await api.post(SCANS, json={"kind": "arp"})
    assert r.status_code == 422 and "discovery.interface" in r.json()["detail"]
    r = await api.post(SCANS, json={"kind": "tcp", "targets": ["127.0.0.1"], "ports": "99999"})
    assert r.status_code == 422 and "1-65535" in r.json()["detail"]
    r = await api.post(SCANS, json={"kind": "ping", "targets": ["127.0.0.1"]})
    assert r.status_code == 422
    r = await api.post("/api/v1/discovery/wake", json={"mac": "nonsense"})
    assert r.status_code == 422 and "MAC" in r.json()["detail"]
    r = await api.post("/api/v1/discovery/wake", json={"mac": "02:00:00:00:00:01"})
    assert r.status_code == 422 and "give its ip" in r.json()["detail"]
    r = await api.post(
        "/api/v1/discovery/wake", json={"mac": "02:00:00:00:00:01", "ip": "192.0.2.1"}
    )
    assert r.status_code == 422 and "discovery.subnets" in r.json()["detail"]


async def test_one_scan_per_subnet_and_cancel(
    api: httpx.AsyncClient, discovery: DiscoveryService
) -> None:
    big = await api.post(SCANS, json={"kind": "tcp", "targets": ["127.0.0.0/30"], "ports": "-"})
    assert big.status_code == 202
    scan_id = big.json()["id"]
    clash = await api.post(SCANS, json={"kind": "udp", "targets": ["127.0.0.1"], "ports": "53"})
    assert clash.status_code == 409 and f"scan {scan_id}" in clash.json()["detail"]
    cancelled = await api.post(f"{SCANS}/{scan_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = await api.post(f"{SCANS}/{scan_id}/cancel")
    assert again.status_code == 409 and "not running" in again.json()["detail"]
    listed = (await api.get(SCANS)).json()
    assert [s["id"] for s in listed] == [scan_id]


async def test_viewers_read_but_only_operators_scan(
    api: httpx.AsyncClient, discovery: DiscoveryService, runtime: Runtime
) -> None:
    viewer = (await create_token(runtime.db, "v", Role.viewer)).secret
    hdr = {"Authorization": f"Bearer {viewer}"}
    assert (await api.get(SCANS, headers=hdr)).status_code == 200
    r = await api.post(SCANS, headers=hdr, json={"kind": "tcp", "targets": ["127.0.0.1"]})
    assert r.status_code == 403
    assert (await api.get(SCANS, headers={"Authorization": ""})).status_code == 401


async def test_site_scoped_tokens_see_and_scan_only_their_sites(
    api: httpx.AsyncClient,
    discovery: DiscoveryService,
    runtime: Runtime,
    ports: tuple[dict[int, socket.socket], list[int]],
) -> None:
    here = runtime.settings.site
    done = await _scan(api, discovery, ",".join(map(str, ports[0])))
    assert done["site"] == here

    async def token(role: Role, site: str) -> dict[str, str]:
        secret = (await create_token(runtime.db, f"{role} {site}", role, [site])).secret
        return {"Authorization": f"Bearer {secret}"}

    mine, other = await token(Role.operator, here), await token(Role.operator, "elsewhere")
    assert [s["id"] for s in (await api.get(SCANS, headers=mine)).json()] == [done["id"]]
    assert (await api.get("/api/v1/discovery/ports", headers=mine)).json() != []
    assert (await api.get(SCANS, headers=other)).json() == []
    assert (await api.get("/api/v1/discovery/ports", headers=other)).json() == []
    missing = await api.get(f"{SCANS}/999999", headers=other)
    for path in (f"{SCANS}/{done['id']}", f"{SCANS}/{done['id']}/results"):
        r = await api.get(path, headers=other)
        assert r.status_code == 404
        assert r.json()["detail"] == missing.json()["detail"].replace("999999", str(done["id"]))
    r = await api.post(SCANS, headers=other, json={"kind": "tcp", "targets": ["127.0.0.1"]})
    assert r.status_code == 403 and here not in r.json()["detail"]
    wake = {"mac": "02:00:00:00:00:01", "ip": "127.0.0.1"}
    assert (await api.post("/api/v1/discovery/wake", headers=other, json=wake)).status_code == 403
    # an unscoped token narrows the view down with ?site=
    assert (await api.get(SCANS, params={"site": "elsewhere"})).json() == []
    assert len((await api.get(SCANS, params={"site": here})).json()) == 1


async def test_discovery_off_is_a_clear_conflict(api: httpx.AsyncClient) -> None:
    r = await api.post(SCANS, json={"kind": "tcp", "targets": ["127.0.0.1"]})
    assert r.status_code == 409 and "discovery.subnets" in r.json()["detail"]


async def _roost(url: str, token: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *ROOST,
        "--url",
        url,
        "--token",
        token,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_cli_scans_with_progress_and_json_and_wakes(
    live_url: str,
    admin_token: str,
    discovery: DiscoveryService,
    ports: tuple[dict[int, socket.socket], list[int]],
) -> None:
    listening, free = ports
    spec = ",".join(map(str, [*listening, *free]))
    rc, out, err = await _roost(
        live_url, admin_token, "scan", "ports", "127.0.0.1", "--ports", spec, "--json"
    )
    assert rc == 0, err
    body = json.loads(out)
    assert body["scan"]["state"] == "finished"
    assert {r["port"] for r in body["results"]} == set(listening)

    rc, out, err = await _roost(
        live_url, admin_token, "scan", "ports", "127.0.0.1", "--ports", spec
    )
    assert rc == 0, err
    assert all(str(p) in out for p in listening) and "finished" in err

    rc, out, err = await _roost(
        live_url, admin_token, "scan", "open", "--ip", "127.0.0.1", "--json"
    )
    assert rc == 0, err
    assert {p["port"] for p in json.loads(out)} == set(listening)

    rc, out, err = await _roost(live_url, admin_token, "scan", "status", "--json")
    assert rc == 0, err
    assert [s["state"] for s in json.loads(out)] == ["finished", "finished"]

    rc, out, err = await _roost(live_url, admin_token, "scan", "ports", "10.9.9.9")
    assert rc == 1 and "outside the subnets configured" in err

    # 127.0.0.5 answers ping, so the wake of this (imaginary) MAC there is confirmed by ICMP.
    rc, out, err = await _roost(
        live_url, admin_token, "wake", "02:00:00:00:00:01", "--ip", "127.0.0.5", "--wait", "--json"
    )
    assert rc == 0, err
    woke = json.loads(out)[0]
    assert woke["confirmed"] is True and woke["via"] == "icmp"
