"""The inventory over the in-process API on both databases: add, show, filter by site and tag,
tags, lifecycle transitions with history and events, sites, import and export."""

from __future__ import annotations

import csv
import io

import httpx

from roost.events import EventFilter
from roost.service import Runtime

MAC_A = "52:54:00:00:00:0a"
MAC_B = "52:54:00:00:00:0b"
MAC_C = "52:54:00:00:00:0c"


async def _add(api: httpx.AsyncClient, **body: object) -> dict[str, object]:
    resp = await api.post("/api/v1/nodes", json=body)
    assert resp.status_code == 201, resp.text
    data: dict[str, object] = resp.json()
    return data


async def test_add_show_and_filter_by_site_and_tag(api: httpx.AsyncClient) -> None:
    a = await _add(api, mac="52-54-00-00-00-0A", hostname="Alpha", site="lab", tags=["gpu", "x"])
    await _add(api, mac=MAC_B, hostname="beta", site="lab", tags=["x"])
    await _add(api, mac=MAC_C, site="dc1", tags=["gpu"])
    assert a["mac"] == MAC_A and a["hostname"] == "alpha" and a["state"] == "discovered"
    assert a["interfaces"] == [{"mac": MAC_A, "name": None, "addresses": []}]
    for ref in (str(a["id"]), MAC_A.upper(), "alpha"):
        assert (await api.get(f"/api/v1/nodes/{ref}")).json()["id"] == a["id"]
    # A hostname that looks like a MAC or an id still finds its node.
    hexy = await _add(api, mac="52:54:00:00:00:0d", hostname="deadbeefcafe", site="lab")
    digits = await _add(api, mac="52:54:00:00:00:0e", hostname="4711", site="lab")
    assert (await api.get("/api/v1/nodes/deadbeefcafe")).json()["id"] == hexy["id"]
    assert (await api.get("/api/v1/nodes/4711")).json()["id"] == digits["id"]
    await api.delete("/api/v1/nodes/deadbeefcafe")
    await api.delete("/api/v1/nodes/4711")

    async def macs(**params: str | list[str]) -> set[str]:
        resp = await api.get("/api/v1/nodes", params=params)
        assert resp.status_code == 200, resp.text
        return {n["mac"] for n in resp.json()}

    assert await macs(site="lab") == {MAC_A, MAC_B}
    assert await macs(tag="gpu") == {MAC_A, MAC_C}
    assert await macs(tag=["gpu", "x"]) == {MAC_A}
    assert await macs(site="dc1", tag="x") == set()
    assert await macs(state="discovered") == {MAC_A, MAC_B, MAC_C}
    sites = {s["name"]: s["nodes"] for s in (await api.get("/api/v1/sites")).json()}
    assert sites == {"lab": 2, "dc1": 1}
    tags = (await api.get("/api/v1/tags", params={"site": "lab"})).json()
    assert tags == [{"tag": "gpu", "nodes": 1}, {"tag": "x", "nodes": 2}]


async def test_bad_input_gets_precise_problems(api: httpx.AsyncClient) -> None:
    bad_mac = await api.post("/api/v1/nodes", json={"mac": "52:54:00"})
    assert bad_mac.status_code == 422 and "not a MAC address" in bad_mac.json()["detail"]
    await _add(api, mac=MAC_A, hostname="alpha")
    dup = await api.post("/api/v1/nodes", json={"mac": MAC_A.upper()})
    assert dup.status_code == 409 and "already belongs to node" in dup.json()["detail"]
    dup_host = await api.post("/api/v1/nodes", json={"mac": MAC_B, "hostname": "ALPHA"})
    assert dup_host.status_code == 409
    reserved = await api.post("/api/v1/nodes", json={"mac": MAC_B, "hostname": "self"})
    assert reserved.status_code == 422 and "reserved" in reserved.json()["detail"]
    bad_tag = await api.post(f"/api/v1/nodes/{MAC_A}/tags", json={"tags": ["no spaces"]})
    assert bad_tag.status_code == 422 and "not a valid name" in bad_tag.json()["detail"]
    missing = await api.get("/api/v1/nodes/nosuchhost")
    assert missing.status_code == 404 and "no node 'nosuchhost'" in missing.json()["detail"]
    bad_state = await api.get("/api/v1/nodes", params={"state": "asleep"})
    assert bad_state.status_code == 422 and "discovered" in bad_state.json()["detail"]


async def test_tag_untag_rm(api: httpx.AsyncClient) -> None:
    await _add(api, mac=MAC_A)
    tagged = (await api.post(f"/api/v1/nodes/{MAC_A}/tags", json={"tags": ["b", "a", "b"]})).json()
    assert tagged["tags"] == ["a", "b"]
    untagged = (await api.delete(f"/api/v1/nodes/{MAC_A}/tags/a")).json()
    assert untagged["tags"] == ["b"]
    assert (await api.delete(f"/api/v1/nodes/{MAC_A}")).status_code == 204
    assert (await api.get(f"/api/v1/nodes/{MAC_A}")).status_code == 404


async def test_lifecycle_transitions_history_and_events(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    node = await _add(api, mac=MAC_A)
    path = f"/api/v1/nodes/{node['id']}"
    refused = await api.post(f"{path}/state", json={"state": "deployed"})
    assert refused.status_code == 422
    assert "cannot become deployed" in refused.json()["detail"]
    assert "may become: broken, enrolling, ready, retired" in refused.json()["detail"]
    for to in ("ready", "deploying", "deployed"):
        resp = await api.post(f"{path}/state", json={"state": to, "reason": f"test {to}"})
        assert resp.status_code == 200 and resp.json()["state"] == to
    same = await api.post(f"{path}/state", json={"state": "deployed"})
    assert same.status_code == 200
    history = (await api.get(f"{path}/history")).json()
    assert [(h["from"], h["to"]) for h in history] == [
        (None, "discovered"),
        ("discovered", "ready"),
        ("ready", "deploying"),
        ("deploying", "deployed"),
    ]
    events = await runtime.bus.history(EventFilter(types=("node.state.changed",)))
    assert [e.data for e in events][-1] == {
        "node": node["id"],
        "mac": MAC_A,
        "from": "deploying",
        "to": "deployed",
        "reason": "test deployed",
    }
    assert len(events) == 4 and all(e.subject == MAC_A for e in events)


async def test_site_limited_token_sees_only_its_site(api: httpx.AsyncClient) -> None:
    await _add(api, mac=MAC_A, site="lab")
    other = await _add(api, mac=MAC_B, site="dc1")
    made = await api.post(
        "/api/v1/tokens", json={"name": "lab-op", "role": "operator", "sites": ["lab"]}
    )
    lab = {"Authorization": f"Bearer {made.json()['token']}"}
    listed = (await api.get("/api/v1/nodes", headers=lab)).json()
    assert [n["mac"] for n in listed] == [MAC_A]
    assert (await api.get(f"/api/v1/nodes/{other['id']}", headers=lab)).status_code == 404
    denied = await api.post("/api/v1/nodes", json={"mac": MAC_C, "site": "dc1"}, headers=lab)
    assert denied.status_code == 403 and "site 'dc1'" in denied.json()["detail"]


async def test_import_and_export_round_trip(api: httpx.AsyncClient) -> None:
    doc = (
        "mac,hostname,site,tags,interfaces,architecture\n"
        f"{MAC_A},alpha,lab,gpu;rack1,{MAC_C},x86_64\n"
        f"{MAC_B},,dc1,,,\n"
    )
    resp = await api.post("/api/v1/nodes/import", content=doc, headers={"content-type": "text/csv"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"created": 2, "updated": 0}
    exported = (await api.get("/api/v1/nodes/export", params={"site": "lab"})).json()
    assert len(exported) == 1
    rec = exported[0]
    assert rec["tags"] == ["gpu", "rack1"] and rec["architecture"] == "x86_64"
    assert [i["mac"] for i in rec["interfaces"]] == [MAC_C]
    rec["vendor"] = "Acme"
    again = await api.post("/api/v1/nodes/import", json=exported)
    assert again.json() == {"created": 0, "updated": 1}
    assert (await api.get(f"/api/v1/nodes/{MAC_A}")).json()["vendor"] == "Acme"
    text = (await api.get("/api/v1/nodes/export", params={"format": "csv"})).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["mac"] for r in rows] == [MAC_A, MAC_B]
    assert rows[0]["tags"] == "gpu;rack1" and rows[0]["interfaces"] == MAC_C
    # CSV out → CSV in is a no-op update for every node.
    back = await api.post(
        "/api/v1/nodes/import", content=text, headers={"content-type": "text/csv"}
    )
    assert back.json() == {"created": 0, "updated": 2}


async def test_import_is_all_or_nothing_and_names_the_record(api: httpx.AsyncClient) -> None:
    resp = await api.post(
        "/api/v1/nodes/import", json=[{"mac": MAC_A}, {"mac": MAC_B, "colour": "red"}]
    )
    assert resp.status_code == 422
    assert resp.json()["detail"].startswith("record 2: colour")
    assert (await api.get("/api/v1/nodes")).json() == []
    bad_csv = await api.post(
        "/api/v1/nodes/import", content="host\nx\n", headers={"content-type": "text/csv"}
    )
    assert bad_csv.status_code == 422 and "mac column" in bad_csv.json()["detail"]
