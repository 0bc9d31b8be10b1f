"""Site scopes of boot profiles, rules and node-private files, on both databases.

The attacks are in tests/integration/security/test_site_scopes_boot.py; here are the rules
around them: which site a new object gets, what is refused with which words, and how the
selection keeps one site's rules and profiles away from another site's nodes.
"""

from __future__ import annotations

from typing import Any

import httpx
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from roost.auth import Role, create_token
from roost.boot.profiles import NodeInfo, Rule, choose
from roost.db.models import Base
from roost.events import EventFilter
from roost.service import Runtime

EAST_MAC, WEST_MAC = "52:54:00:ea:00:02", "52:54:00:5e:00:02"
BASE = {"http_base": "http://boot.example:8080"}
BOOT_TABLES = {"boot_files", "boot_profiles", "boot_rules"}


async def _as(runtime: Runtime, api: httpx.AsyncClient, role: Role, *sites: str) -> dict[str, str]:
    secret = (await create_token(runtime.db, f"{role} {sites}", role, list(sites))).secret
    return {"Authorization": f"Bearer {secret}"}


async def _nodes(api: httpx.AsyncClient) -> None:
    for mac, site in ((EAST_MAC, "east"), (WEST_MAC, "west")):
        r = await api.post("/api/v1/nodes", json={"mac": mac, "site": site})
        assert r.status_code == 201, r.text


def _kernel(host: str, **extra: Any) -> dict[str, Any]:
    return {"kernel": f"http://{host}/vmlinuz", **extra}


async def test_boot_migration_matches_models(runtime: Runtime) -> None:
    def diff(conn: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))

    async with runtime.db.engine.connect() as conn:
        found = await conn.run_sync(diff)
    assert [d for d in found if any(t in repr(d) for t in BOOT_TABLES)] == []


def test_a_rule_matches_only_its_sites_nodes() -> None:
    rules = [
        Rule(id=1, profile="east-only", priority=1, site="east"),
        Rule(id=2, profile="everyone", priority=2),
    ]
    east, west = NodeInfo("aa", site="east"), NodeInfo("bb", site="west")
    assert choose(rules, east, None, "default") == "east-only"
    assert choose(rules, west, None, "default") == "everyone"
    assert choose(rules[:1], west, None, "default") == "default"


async def test_which_site_a_new_profile_or_rule_gets(
    runtime: Runtime, api: httpx.AsyncClient
) -> None:
    p = "/api/v1/boot/profiles"
    created = await api.put(f"{p}/global", json=_kernel("g.example"))
    assert created.json()["site"] is None  # an unscoped token makes global ones
    east = await _as(runtime, api, Role.operator, "east")
    assert (await api.put(f"{p}/e", json=_kernel("e.example"), headers=east)).json()[
        "site"
    ] == "east"
    both = await _as(runtime, api, Role.operator, "east", "west")
    r = await api.put(f"{p}/x", json=_kernel("x.example"), headers=both)
    assert r.status_code == 422 and "site" in r.json()["detail"]
    r = await api.put(f"{p}/x", json=_kernel("x.example", site="north"), headers=both)
    assert r.status_code == 403 and "site" in r.json()["detail"]
    r = await api.put(f"{p}/x", json=_kernel("x.example", site="west"), headers=both)
    assert r.status_code == 201 and r.json()["site"] == "west"
    # a replace keeps the site unless the body names one
    assert (await api.put(f"{p}/x", json=_kernel("y.example"))).json()["site"] == "west"

    # a scoped token neither sees a global profile nor builds a rule on one
    assert (await api.get(f"{p}/global", headers=east)).status_code == 404
    r = await api.post("/api/v1/boot/rules", json={"profile": "global"}, headers=east)
    assert r.status_code == 404
    assert (await api.delete(f"{p}/global", headers=east)).status_code == 404
    # but it may use the built-in local profile
    r = await api.post("/api/v1/boot/rules", json={"profile": "local"}, headers=east)
    assert r.status_code == 201 and r.json()["site"] == "east"

    # even an unscoped token cannot point a rule of one site at another site's profile
    r = await api.post("/api/v1/boot/rules", json={"profile": "e", "site": "west"})
    assert r.status_code == 422 and r.json()["detail"].startswith("profile:")
    r = await api.post("/api/v1/boot/rules", json={"profile": "e"})
    assert r.status_code == 422  # a global rule would reach every site with it
    assert (await api.post("/api/v1/boot/rules", json={"profile": "x", "site": "west"})).is_success
    moved = await api.put(f"{p}/x", json=_kernel("y.example", site="east"))
    assert moved.status_code == 409 and "rules use" in moved.json()["detail"]


async def test_a_node_boots_only_its_sites_or_global_profiles(
    runtime: Runtime, api: httpx.AsyncClient
) -> None:
    await _nodes(api)
    await api.put("/api/v1/boot/profiles/east-p", json=_kernel("east.example", site="east"))
    await api.put("/api/v1/boot/profiles/all-p", json=_kernel("all.example"))
    # a west node pinned to an east profile does not boot it: the default applies
    r = await api.patch(f"/api/v1/nodes/{WEST_MAC}", json={"boot_profile": "east-p"})
    assert r.status_code == 200, r.text
    west = await api.get(f"/api/v1/boot/render/{WEST_MAC}/ipxe", params=BASE)
    assert west.headers["x-roost-profile"] == "local"
    # a global rule reaches both sites; an east one only the east node
    await api.post("/api/v1/boot/rules", json={"profile": "all-p", "priority": 9})
    await api.post("/api/v1/boot/rules", json={"profile": "east-p", "priority": 1, "site": "east"})
    await api.patch(f"/api/v1/nodes/{WEST_MAC}", json={"boot_profile": None})
    for mac, profile in ((EAST_MAC, "east-p"), (WEST_MAC, "all-p")):
        r = await api.get(f"/api/v1/boot/render/{mac}/ipxe", params=BASE)
        assert r.headers["x-roost-profile"] == profile, mac


async def test_an_unknown_mac_is_of_the_servers_site(
    runtime: Runtime, api: httpx.AsyncClient
) -> None:
    here = runtime.settings.site
    await api.put("/api/v1/boot/profiles/here-p", json=_kernel("here.example", site=here))
    await api.put("/api/v1/boot/profiles/far-p", json=_kernel("far.example", site="far"))
    await api.post("/api/v1/boot/rules", json={"profile": "far-p", "priority": 1, "site": "far"})
    await api.post("/api/v1/boot/rules", json={"profile": "here-p", "priority": 2, "site": here})
    r = await api.get("/api/v1/boot/render/52:54:00:99:99:99/ipxe", params=BASE)
    assert r.headers["x-roost-profile"] == "here-p"
    # and a token of another site cannot preview it: it is no node of its sites
    far = await _as(runtime, api, Role.operator, "far")
    r = await api.get("/api/v1/boot/render/52:54:00:99:99:99/ipxe", params=BASE, headers=far)
    assert r.status_code == 404


async def test_node_private_files_follow_their_nodes_site(
    runtime: Runtime, api: httpx.AsyncClient
) -> None:
    await _nodes(api)
    east_op = await _as(runtime, api, Role.operator, "east")
    east_viewer = await _as(runtime, api, Role.viewer, "east")
    west_viewer = await _as(runtime, api, Role.viewer, "west")
    files = "/api/v1/boot/files"
    r = await api.put(f"{files}/e.key", content=b"k", params={"node": EAST_MAC}, headers=east_op)
    assert r.status_code == 201, r.text
    again = await api.put(
        f"{files}/e.key", content=b"k2", params={"node": EAST_MAC}, headers=east_op
    )
    assert again.status_code == 200
    assert (await api.get(f"{files}/e.key", headers=east_op)).content == b"k2"
    assert [f["name"] for f in (await api.get(files, headers=east_viewer)).json()] == ["e.key"]
    assert (await api.get(f"{files}/e.key", headers=east_viewer)).status_code == 403
    assert (await api.get(files, headers=west_viewer)).json() == []
    assert (await api.get(f"{files}/e.key", headers=west_viewer)).status_code == 404
    # moving it to a node of another site is refused too
    r = await api.put(f"{files}/e.key", content=b"x", params={"node": WEST_MAC}, headers=east_op)
    assert r.status_code == 404
    # a file for a MAC that is no node is for unscoped tokens only
    r = await api.put(
        f"{files}/n.key", content=b"x", params={"node": "52:54:00:00:00:01"}, headers=east_op
    )
    assert r.status_code == 404
    assert (await api.delete(f"{files}/e.key", headers=east_op)).status_code == 200


async def test_boot_events_carry_their_objects_site(
    runtime: Runtime, api: httpx.AsyncClient
) -> None:
    await _nodes(api)
    east = await _as(runtime, api, Role.operator, "east")
    await api.put("/api/v1/boot/profiles/e", json=_kernel("e.example"), headers=east)
    await api.post("/api/v1/boot/rules", json={"profile": "e"}, headers=east)
    await api.put(
        "/api/v1/boot/files/w.key", content=b"k", params={"node": WEST_MAC}
    )  # by the admin, for a west node
    events = await runtime.bus.history(EventFilter(types=("boot.",)), limit=100)
    sites = {e.type: e.site for e in events}
    assert sites["boot.profile.saved"] == "east"
    assert sites["boot.rule.added"] == "east"
    assert sites["boot.file.stored"] == "west"
