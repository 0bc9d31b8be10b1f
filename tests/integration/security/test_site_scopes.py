"""Site scopes against a real ``roost serve``: what a token limited to site ``east`` may reach.

Issue #15, items 2, 3 (DHCP) and 8 (events without a site, naive ``expires_at``). Each test is
the attack as a site-limited admin, operator or viewer would make it; every one of them worked
before the scopes held (see the commit that added this file).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from roost.db import Database
from roost.dhcp.leases import BOUND, Lease
from roost.dhcp.store import LeaseStore
from tests.integration.security.conftest import Roost, start_roost

pytestmark = pytest.mark.slow

WEST = {"name": "westlan", "cidr": "10.77.0.0/24", "pools": [{"start": "10.77.0.100",
        "end": "10.77.0.199"}]}  # fmt: skip
EAST = {"name": "eastlan", "cidr": "10.66.0.0/24", "pools": [{"start": "10.66.0.100",
        "end": "10.66.0.199"}]}  # fmt: skip
WEST_MAC, EAST_MAC = "52:54:00:77:00:01", "52:54:00:66:00:01"


def detail(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    return str(r.json()["detail"])


# -- tokens -----------------------------------------------------------------------------------


def test_east_admin_cannot_create_an_unscoped_admin_token(roost: Roost) -> None:
    east_admin = roost.api(roost.token("east admin", "admin", ["east"]))
    before = {t["id"] for t in roost.api().get("/tokens").json()}
    msg = detail(east_admin.post("/tokens", json={"name": "escape", "role": "admin"}), 403)
    assert msg.startswith("sites:")
    assert {t["id"] for t in roost.api().get("/tokens").json()} == before


def test_east_admin_cannot_create_a_token_for_west(roost: Roost) -> None:
    east_admin = roost.api(roost.token("east admin", "admin", ["east"]))
    for sites in (["west"], ["east", "west"]):
        body = {"name": "escape", "role": "viewer", "sites": sites}
        assert detail(east_admin.post("/tokens", json=body), 403).startswith("sites:")
    body = {"name": "fine", "role": "operator", "sites": ["east"]}
    assert east_admin.post("/tokens", json=body).status_code == 201


def test_east_admin_lists_only_east_scoped_tokens(roost: Roost) -> None:
    east_admin = roost.api(roost.token("east admin", "admin", ["east"]))
    roost.token("west viewer", "viewer", ["west"])
    roost.token("both viewer", "viewer", ["east", "west"])
    roost.token("east viewer", "viewer", ["east"])
    listed = east_admin.get("/tokens")
    assert listed.status_code == 200
    assert sorted(t["name"] for t in listed.json()) == ["east admin", "east viewer"]
    assert all(t["sites"] == ["east"] for t in listed.json())


def test_east_admin_cannot_revoke_the_global_admin_token(roost: Roost) -> None:
    east_admin = roost.api(roost.token("east admin", "admin", ["east"]))
    admin_id = roost.admin.split("_")[1]
    missing = detail(east_admin.delete("/tokens/000000000000"), 404)
    assert detail(east_admin.delete(f"/tokens/{admin_id}"), 404) == missing.replace(
        "000000000000", admin_id
    )
    assert roost.api().get("/tokens").status_code == 200  # the global admin still works


def test_naive_or_past_expires_at_is_a_422_naming_the_field(roost: Roost) -> None:
    admin = roost.api()
    naive = {"name": "n", "role": "viewer", "expires_at": "2999-01-01T00:00:00"}
    assert "expires_at" in detail(admin.post("/tokens", json=naive), 422)
    past = {"name": "p", "role": "viewer", "expires_at": "2000-01-01T00:00:00Z"}
    assert "expires_at" in detail(admin.post("/tokens", json=past), 422)
    ok = {"name": "ok", "role": "viewer", "expires_at": "2999-01-01T00:00:00+02:00"}
    assert admin.post("/tokens", json=ok).status_code == 201


# -- DHCP ---------------------------------------------------------------------------------------


@pytest.fixture
def west(roost: Roost) -> Roost:
    """A ``west`` subnet with a reservation, made by a ``west`` operator (its only site)."""
    west_operator = roost.api(roost.token("west operator", "operator", ["west"]))
    assert west_operator.post("/dhcp/subnets", json=WEST).status_code == 201
    body = {"mac": WEST_MAC, "ip": "10.77.0.10", "hostname": "w1"}
    assert west_operator.put(f"/dhcp/reservations/{WEST_MAC}", json=body).status_code == 200
    return roost


def test_east_operator_cannot_create_a_west_subnet(west: Roost) -> None:
    east = west.api(west.token("east operator", "operator", ["east"]))
    other = {**WEST, "name": "west2", "cidr": "10.78.0.0/24", "pools": [], "site": "west"}
    assert detail(east.post("/dhcp/subnets", json=other), 403).startswith("site:")
    created = east.post("/dhcp/subnets", json=EAST)  # its only site is the default
    assert created.status_code == 201 and created.json()["site"] == "east"
    names = {s["name"]: s["site"] for s in west.api().get("/dhcp/subnets").json()}
    assert names == {"westlan": "west", "eastlan": "east"}


def test_east_operator_can_neither_see_nor_change_west_subnets(west: Roost) -> None:
    east = west.api(west.token("east operator", "operator", ["east"]))
    assert east.get("/dhcp/subnets").json() == []
    missing = detail(east.get("/dhcp/subnets/nosuch"), 404)
    assert detail(east.get("/dhcp/subnets/westlan"), 404) == missing.replace("nosuch", "westlan")
    changed = {**WEST, "lease_time": 60}
    assert "west" not in detail(east.put("/dhcp/subnets/westlan", json=changed), 404).replace(
        "'westlan'", ""
    )
    detail(east.put("/dhcp/subnets/westlan", json={**changed, "site": "east"}), 404)
    detail(east.delete("/dhcp/subnets/westlan"), 404)
    # an overlapping east subnet is refused without naming the west one
    overlap = {**EAST, "cidr": "10.77.0.0/16", "pools": []}
    assert "westlan" not in detail(east.post("/dhcp/subnets", json=overlap), 422)
    kept = west.api().get("/dhcp/subnets/westlan").json()
    assert (kept["site"], kept["lease_time"]) == ("west", 3600)


def test_east_operator_cannot_create_or_change_west_reservations(west: Roost) -> None:
    east = west.api(west.token("east operator", "operator", ["east"]))
    assert east.post("/dhcp/subnets", json=EAST).status_code == 201
    # an address on the west subnet is, to this token, on no subnet at all
    on_west = {"mac": EAST_MAC, "ip": "10.77.0.20"}
    nowhere = {"mac": EAST_MAC, "ip": "192.168.9.9"}
    msg = detail(east.put(f"/dhcp/reservations/{EAST_MAC}", json=on_west), 422)
    assert msg == detail(east.put(f"/dhcp/reservations/{EAST_MAC}", json=nowhere), 422).replace(
        "192.168.9.9", "10.77.0.20"
    )
    # the west client's reservation can be neither moved to east nor deleted
    steal = {"mac": WEST_MAC, "ip": "10.66.0.10"}
    msg = detail(east.put(f"/dhcp/reservations/{WEST_MAC}", json=steal), 409)
    assert "10.77" not in msg and "w1" not in msg and "west" not in msg
    detail(east.delete(f"/dhcp/reservations/{WEST_MAC}"), 404)
    [kept] = west.api().get("/dhcp/reservations").json()
    assert (kept["mac"], kept["ip"], kept["site"]) == (WEST_MAC, "10.77.0.10", "west")
    own = {"mac": EAST_MAC, "ip": "10.66.0.10"}
    saved = east.put(f"/dhcp/reservations/{EAST_MAC}", json=own)
    assert saved.status_code == 200 and saved.json()["site"] == "east"


def _store_leases(roost: Roost, *leases: tuple[str, str, str]) -> None:
    """Leases (mac, ip, subnet name) as Roost's DHCP server stores them beside its database."""
    with sqlite3.connect(roost.db_path) as db:
        ids = dict(db.execute("SELECT name, id FROM dhcp_subnets").fetchall())
    now = time.time()
    rows = [
        Lease(int.from_bytes(bytes(map(int, ip.split("."))), "big"), mac.encode(), mac, "",
              ids[subnet], BOUND, now, now + 600)
        for mac, ip, subnet in leases
    ]  # fmt: skip
    store = LeaseStore(Database(f"sqlite:///{roost.db_path}"))
    store.open()
    try:
        asyncio.run(store.write(rows))
    finally:
        store.close()


def test_east_viewer_reads_no_west_reservation_or_lease(west: Roost) -> None:
    east_operator = west.api(west.token("east operator", "operator", ["east"]))
    assert east_operator.post("/dhcp/subnets", json=EAST).status_code == 201
    body = {"mac": EAST_MAC, "ip": "10.66.0.10"}
    assert east_operator.put(f"/dhcp/reservations/{EAST_MAC}", json=body).status_code == 200
    _store_leases(
        west, (WEST_MAC, "10.77.0.150", "westlan"), ("52:54:00:66:00:02", "10.66.0.150", "eastlan")
    )
    viewer = west.api(west.token("east viewer", "viewer", ["east"]))
    reservations = viewer.get("/dhcp/reservations").json()
    assert [r["mac"] for r in reservations] == [EAST_MAC]
    assert reservations[0]["site"] == "east"
    leases = viewer.get("/dhcp/leases").json()
    assert [x["ip"] for x in leases] == ["10.66.0.150"]
    assert (leases[0]["subnet"], leases[0]["site"]) == ("eastlan", "east")
    assert viewer.get("/dhcp/leases", params={"mac": WEST_MAC}).json() == []
    assert len(west.api().get("/dhcp/leases").json()) == 2


# -- events -------------------------------------------------------------------------------------


@pytest.fixture
def east_server(tmp_path: Path) -> Iterator[Roost]:
    """A server whose own site is ``east``: its server-wide events used to be stamped east."""
    served = start_roost(tmp_path, ROOST_SITE="east")
    try:
        yield served
    finally:
        served.stop()


def _sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line[6:])


def _server_wide_and_east_events(roost: Roost) -> str:
    """A global event (a token created) and an east one (a node added); the node's MAC."""
    roost.token("another", "viewer")
    mac = "52:54:00:66:00:99"
    assert roost.api().post("/nodes", json={"mac": mac, "site": "east"}).status_code == 201
    return mac


def _only_east(events: list[dict[str, Any]], mac: str) -> None:
    assert mac in {ev["subject"] for ev in events}, events
    assert {ev["site"] for ev in events} == {"east"}, events
    assert not {"roost.started", "token.created"} & {ev["type"] for ev in events}, events


def test_events_without_a_site_are_not_in_an_east_viewers_history_or_stream(
    east_server: Roost,
) -> None:
    viewer = east_server.api(east_server.token("east viewer", "viewer", ["east"]))
    with viewer.stream("GET", "/events", params={"since": "0"}) as stream:
        mac = _server_wide_and_east_events(east_server)
        seen = []
        for ev in _sse_events(stream):
            seen.append(ev)
            if ev["subject"] == mac:
                break
    # only east's events (the node's; the east boot server's fetches): not the server's
    # start, nor the tokens created
    _only_east(seen, mac)
    _only_east(viewer.get("/events/history", params={"tail": 1000}).json(), mac)
    everything = east_server.api().get("/events/history", params={"tail": 1000}).json()
    assert {"roost.started", "token.created"} <= {e["type"] for e in everything if not e["site"]}


def test_events_without_a_site_are_not_in_an_east_viewers_websocket(east_server: Roost) -> None:
    token = east_server.token("east viewer", "viewer", ["east"])
    ws_url = east_server.url.replace("http", "ws", 1) + "/api/v1/events/ws?since=0"
    with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        mac = _server_wide_and_east_events(east_server)
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1]["subject"] != mac:
            seen.append(json.loads(ws.recv(timeout=20)))
    _only_east(seen, mac)
