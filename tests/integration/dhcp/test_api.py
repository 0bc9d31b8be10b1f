"""DHCP configuration over the in-process API (both databases) and its live application."""

from __future__ import annotations

import time
from typing import Any

import httpx

from roost.dhcp import store
from roost.dhcp.leases import BOUND, Lease
from roost.dhcp.service import DHCPService
from roost.service import Runtime

LAN: dict[str, Any] = {
    "name": "lan",
    "cidr": "10.50.0.0/24",
    "pools": [{"start": "10.50.0.100", "end": "10.50.0.199"}],
    "routers": ["10.50.0.1"],
}


async def problem(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    return str(resp.json()["detail"])


async def test_subnet_crud(api: httpx.AsyncClient) -> None:
    assert (await api.post("/api/v1/dhcp/subnets", json=LAN)).status_code == 201
    listed = (await api.get("/api/v1/dhcp/subnets")).json()
    assert [s["name"] for s in listed] == ["lan"] and listed[0]["lease_time"] == 3600
    dup = await api.post("/api/v1/dhcp/subnets", json=LAN)
    assert "exists" in await problem(dup, 409)
    changed = {**LAN, "lease_time": 600}
    assert (await api.put("/api/v1/dhcp/subnets/lan", json=changed)).json()["lease_time"] == 600
    assert (await api.delete("/api/v1/dhcp/subnets/lan")).status_code == 204
    gone = await api.delete("/api/v1/dhcp/subnets/lan")
    assert "no subnet 'lan'" in await problem(gone, 404)


async def test_invalid_subnets_say_what_to_change(api: httpx.AsyncClient) -> None:
    outside = {**LAN, "pools": [{"start": "10.50.1.1", "end": "10.50.1.9"}]}
    msg = await problem(await api.post("/api/v1/dhcp/subnets", json=outside), 422)
    assert "not inside subnet 10.50.0.0/24" in msg and "change the pool" in msg
    overlap = {
        **LAN,
        "pools": [
            {"start": "10.50.0.10", "end": "10.50.0.20"},
            {"start": "10.50.0.15", "end": "10.50.0.30"},
        ],
    }
    assert "overlap" in await problem(await api.post("/api/v1/dhcp/subnets", json=overlap), 422)
    gateway = {**LAN, "routers": ["10.60.0.1"]}
    msg = await problem(await api.post("/api/v1/dhcp/subnets", json=gateway), 422)
    assert "gateway 10.60.0.1 is outside subnet" in msg
    backwards = {**LAN, "pools": [{"start": "10.50.0.9", "end": "10.50.0.1"}]}
    assert "swap them" in await problem(await api.post("/api/v1/dhcp/subnets", json=backwards), 422)
    await api.post("/api/v1/dhcp/subnets", json=LAN)
    other = {**LAN, "name": "lan2", "cidr": "10.50.0.128/25", "pools": [], "routers": []}
    msg = await problem(await api.post("/api/v1/dhcp/subnets", json=other), 422)
    assert "overlaps subnet 'lan'" in msg


async def test_reservations_and_their_checks(api: httpx.AsyncClient, runtime: Runtime) -> None:
    await api.post("/api/v1/dhcp/subnets", json=LAN)
    body = {"mac": "52-54-00-AA-BB-01", "ip": "10.50.0.10", "hostname": "n1"}
    saved = (await api.put("/api/v1/dhcp/reservations/52:54:00:aa:bb:01", json=body)).json()
    assert saved["mac"] == "52:54:00:aa:bb:01"
    nowhere = {"mac": "52:54:00:aa:bb:02", "ip": "192.168.9.9"}
    msg = await problem(
        await api.put("/api/v1/dhcp/reservations/52:54:00:aa:bb:02", json=nowhere), 422
    )
    assert "in no subnet" in msg
    taken = {"mac": "52:54:00:aa:bb:02", "ip": "10.50.0.10"}
    msg = await problem(
        await api.put("/api/v1/dhcp/reservations/52:54:00:aa:bb:02", json=taken), 422
    )
    assert "already reserved for 52:54:00:aa:bb:01" in msg
    # an address inside another client's current lease
    now = time.time()
    leased = Lease(
        int.from_bytes(bytes([10, 50, 0, 120]), "big"),
        b"c",
        "52:54:00:cc:cc:cc",
        "",
        1,
        BOUND,
        now,
        now + 600,
    )
    ls = store.LeaseStore(runtime.db)
    ls.open()
    await ls.write([leased])
    ls.close()
    clash = {"mac": "52:54:00:aa:bb:03", "ip": "10.50.0.120"}
    msg = await problem(
        await api.put("/api/v1/dhcp/reservations/52:54:00:aa:bb:03", json=clash), 422
    )
    assert "is leased to 52:54:00:cc:cc:cc" in msg
    leases = (await api.get("/api/v1/dhcp/leases")).json()
    assert [(x["ip"], x["state"]) for x in leases] == [("10.50.0.120", "bound")]
    bad_mac = await api.put("/api/v1/dhcp/reservations/xyz", json={**body, "mac": "xyz"})
    assert bad_mac.status_code == 422
    assert (await api.delete("/api/v1/dhcp/reservations/52:54:00:aa:bb:01")).status_code == 204
    assert (await api.get("/api/v1/dhcp/reservations")).json() == []


def served(svc: DHCPService) -> list[str]:
    assert svc.server is not None
    return [sub.spec.name for sub in svc.server.config.subnets]


async def test_changes_apply_to_the_running_server_without_restart(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    svc = DHCPService(runtime)  # no interfaces: the packet path is idle, the config is live
    await svc.start()
    runtime.services.append(svc)
    try:
        assert served(svc) == []
        await api.post("/api/v1/dhcp/subnets", json=LAN)
        assert served(svc) == ["lan"]
        body = {"mac": "52:54:00:aa:bb:01", "ip": "10.50.0.10"}
        await api.put("/api/v1/dhcp/reservations/52:54:00:aa:bb:01", json=body)
        assert svc.server is not None and "52:54:00:aa:bb:01" in svc.server.config.reservations
        events = (await api.get("/api/v1/events/history", params={"type": "dhcp.config."})).json()
        assert [e["type"] for e in events] == ["dhcp.config.changed"] * 2
    finally:
        runtime.services.remove(svc)
        await svc.stop()


async def test_viewer_cannot_change_configuration(api: httpx.AsyncClient) -> None:
    created = (await api.post("/api/v1/tokens", json={"name": "ro", "role": "viewer"})).json()
    viewer = {"Authorization": f"Bearer {created['token']}"}
    assert (await api.get("/api/v1/dhcp/subnets", headers=viewer)).status_code == 200
    denied = await api.post("/api/v1/dhcp/subnets", json=LAN, headers=viewer)
    assert denied.status_code == 403
