"""Item 3 (boot and discovery): a token limited to site ``east`` stays in ``east``.

Against a real ``roost serve``: the admin makes a node in each of ``east`` and ``west``, then an
``east`` operator or viewer tries what worked before: render a ``west`` node's documents (they
carry its enrollment token), redirect its kernel with a rule, overwrite a shared boot file,
read or change ``west`` profiles, rules and node-private files, read ``west`` scans and hosts.
Another site's object must answer exactly what a missing one does.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.integration.security.conftest import Roost, start_roost

EAST_MAC, WEST_MAC = "52:54:00:ea:00:01", "52:54:00:5e:00:01"
BASE = {"http_base": "http://boot.example:8080"}
EVIL = "http://evil.example/vmlinuz"


def _node(roost: Roost, mac: str, site: str) -> None:
    r = roost.api().post("/nodes", json={"mac": mac, "site": site, "hostname": f"{site}-n1"})
    assert r.status_code == 201, r.text


@pytest.fixture
def two_sites(roost: Roost) -> Roost:
    _node(roost, EAST_MAC, "east")
    _node(roost, WEST_MAC, "west")
    return roost


def _tells_nothing_of_west(r: httpx.Response) -> None:
    """A 404 that names neither the site nor the node (only what the caller asked for)."""
    assert r.status_code == 404, r.text
    assert "west" not in r.text.lower(), r.text


def test_east_operator_cannot_preview_a_west_node(two_sites: Roost) -> None:
    east = two_sites.api(two_sites.token("east op", "operator", ["east"]))
    assert east.get(f"/boot/render/{EAST_MAC}/ipxe", params=BASE).status_code == 200
    r = east.get(f"/boot/render/{WEST_MAC}/ipxe", params=BASE)
    assert r.status_code == 404
    assert "roost_" not in r.text and "token" not in r.text.lower()
    # the answer for a west node is word for word the one for a MAC that is no node at all
    nobody = east.get("/boot/render/52:54:00:00:00:99/ipxe", params=BASE)
    assert nobody.status_code == 404
    assert r.json()["detail"].replace(WEST_MAC, "X") == nobody.json()["detail"].replace(
        "52:54:00:00:00:99", "X"
    )
    for kind in ("user-data", "meta-data"):
        assert east.get(f"/boot/render/{WEST_MAC}/{kind}", params=BASE).status_code == 404


def test_east_rule_cannot_redirect_a_west_node(two_sites: Roost) -> None:
    east = two_sites.api(two_sites.token("east op", "operator", ["east"]))
    r = east.put("/boot/profiles/evil", json={"kernel": EVIL})
    assert r.status_code == 201, r.text
    saved = [r.json()]
    for rule in ({"mac": WEST_MAC}, {"node": "west-n1"}, {}):
        r = east.post("/boot/rules", json={"profile": "evil", "priority": 0, **rule})
        assert r.status_code == 201, r.text
        saved.append(r.json())
    admin = two_sites.api()
    west = admin.get(f"/boot/render/{WEST_MAC}/ipxe", params=BASE)
    assert west.status_code == 200, west.text
    assert "evil" not in west.text and west.headers["x-roost-profile"] != "evil"
    # the anonymous boot server renders the same for the west node itself
    served = two_sites.boot().get(f"/boot/{WEST_MAC}.ipxe")
    assert "evil" not in served.text
    # the east node, which the rule may choose, does get it: the rule works in its own site
    assert EVIL in admin.get(f"/boot/render/{EAST_MAC}/ipxe", params=BASE).text
    assert [x["site"] for x in saved] == ["east"] * 4  # the token's one site, by default


def test_east_operator_cannot_overwrite_or_delete_a_global_boot_file(roost: Roost) -> None:
    admin = roost.api()
    original = b"#!ipxe\necho the real one\n"
    assert admin.put("/boot/files/shared.ipxe", content=original).status_code == 201
    east = roost.api(roost.token("east op", "operator", ["east"]))
    r = east.put("/boot/files/shared.ipxe", content=b"#!ipxe\nchain http://evil.example/\n")
    assert r.status_code == 403, r.text
    assert east.delete("/boot/files/shared.ipxe").status_code == 403
    # nor may it add a public file that a profile of any site could then load
    assert east.put("/boot/files/new.ipxe", content=b"#!ipxe\n").status_code == 403
    assert east.get("/boot/files/shared.ipxe").content == original  # reading is fine
    assert roost.boot().get("/files/shared.ipxe").content == original
    assert [f["name"] for f in admin.get("/boot/files").json()] == ["shared.ipxe"]


def test_east_operator_cannot_read_or_change_west_profiles_rules_and_private_files(
    two_sites: Roost,
) -> None:
    admin = two_sites.api()
    west_profile = {"kernel": "http://west.example/vmlinuz", "site": "west"}
    assert admin.put("/boot/profiles/wp", json=west_profile).status_code == 201
    r = admin.post("/boot/rules", json={"profile": "wp", "site": "west"})
    assert r.status_code == 201, r.text
    rule_id = r.json()["id"]
    r = admin.put("/boot/files/w.key", content=b"west secret", params={"node": WEST_MAC})
    assert r.status_code == 201, r.text

    east = two_sites.api(two_sites.token("east op", "operator", ["east"]))
    assert "wp" not in [p["name"] for p in east.get("/boot/profiles").json()]
    assert east.get("/boot/rules").json() == []
    assert "w.key" not in [f["name"] for f in east.get("/boot/files").json()]
    for r in (
        east.get("/boot/profiles/wp"),
        east.put("/boot/profiles/wp", json={"kernel": EVIL}),
        east.put("/boot/profiles/wp", json={"kernel": EVIL, "site": "east"}),
        east.delete("/boot/profiles/wp"),
        east.post("/boot/rules", json={"profile": "wp"}),
        east.delete(f"/boot/rules/{rule_id}"),
        east.get("/boot/files/w.key"),
        east.put("/boot/files/w.key", content=b"east's now", params={"node": EAST_MAC}),
        east.delete("/boot/files/w.key"),
        east.put("/boot/files/e.key", content=b"x", params={"node": WEST_MAC}),
    ):
        _tells_nothing_of_west(r)
    # word for word what a missing one answers
    missing = east.get("/boot/profiles/nothing").json()["detail"]
    assert east.get("/boot/profiles/wp").json()["detail"] == missing.replace("nothing", "wp")
    nobody = "52:54:00:00:00:99"
    missing = east.put("/boot/files/e.key", content=b"x", params={"node": nobody})
    r = east.put("/boot/files/e.key", content=b"x", params={"node": WEST_MAC})
    assert r.json()["detail"] == missing.json()["detail"].replace(nobody, WEST_MAC)
    missing = east.delete(f"/boot/rules/{rule_id + 100}").json()["detail"]
    assert east.delete(f"/boot/rules/{rule_id}").json()["detail"] == missing.replace(
        str(rule_id + 100), str(rule_id)
    )

    assert admin.get("/boot/profiles/wp").json()["kernel"] == west_profile["kernel"]
    assert [r["id"] for r in admin.get("/boot/rules").json()] == [rule_id]
    assert admin.get("/boot/files/w.key").content == b"west secret"
    assert "e.key" not in [f["name"] for f in admin.get("/boot/files").json()]


def test_east_viewer_reads_no_west_rule(two_sites: Roost) -> None:
    admin = two_sites.api()
    for site in ("east", "west"):
        body = {"kernel": f"http://{site}.example/vmlinuz", "site": site}
        assert admin.put(f"/boot/profiles/{site}-p", json=body).status_code == 201
        r = admin.post("/boot/rules", json={"profile": f"{site}-p", "site": site})
        assert r.status_code == 201, r.text
    assert admin.post("/boot/rules", json={"profile": "local"}).status_code == 201  # global
    assert len(admin.get("/boot/rules").json()) == 3

    viewer = two_sites.api(two_sites.token("east viewer", "viewer", ["east"]))
    rules = viewer.get("/boot/rules").json()
    assert [r["profile"] for r in rules] == ["east-p"]
    assert rules[0]["site"] == "east"
    profiles = [p["name"] for p in viewer.get("/boot/profiles").json()]
    assert profiles == ["local", "east-p"]
    assert "west" not in viewer.get("/boot/rules").text


def _seed_hosts(db: Path) -> None:
    """Hosts as an ARP sweep of each site leaves them (a sweep needs a LAN of its own)."""
    now = datetime.now(UTC).isoformat(sep=" ")
    with sqlite3.connect(db) as con:
        for site, mac, ip in (("east", EAST_MAC, "10.1.0.5"), ("west", WEST_MAC, "10.2.0.5")):
            con.execute(
                "INSERT INTO discovery_hosts (site, mac, ip, vendor, source, first_seen,"
                " last_seen, missed, gone) VALUES (?, ?, ?, NULL, 'arp', ?, ?, 0, 0)",
                (site, mac, ip, now, now),
            )


def test_scans_and_hosts_are_filtered_by_the_tokens_sites(tmp_path: Path) -> None:
    roost = start_roost(tmp_path, ROOST_SITE="west", ROOST_DISCOVERY__SUBNETS='["127.0.0.0/8"]')
    try:
        admin = roost.api()
        r = admin.post(
            "/discovery/scans", json={"kind": "tcp", "targets": ["127.0.0.1"], "ports": "1"}
        )
        assert r.status_code == 202, r.text
        scan = r.json()["id"]
        deadline = time.monotonic() + 30
        while admin.get(f"/discovery/scans/{scan}").json()["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        _seed_hosts(tmp_path / "roost.db")

        viewer = roost.api(roost.token("east viewer", "viewer", ["east"]))
        assert viewer.get("/discovery/scans").json() == []
        for path in (f"/discovery/scans/{scan}", f"/discovery/scans/{scan}/results"):
            r = viewer.get(path)
            assert r.status_code == 404 and "west" not in r.text
        hosts = viewer.get("/discovery/hosts").json()
        assert [(h["site"], h["mac"]) for h in hosts] == [("east", EAST_MAC)]
        assert viewer.get("/discovery/ports", params={"state": ""}).json() == []

        operator = roost.api(roost.token("east op", "operator", ["east"]))
        r = operator.post("/discovery/scans", json={"kind": "tcp", "targets": ["127.0.0.1"]})
        assert r.status_code == 403 and "west" not in r.text
        assert operator.post(f"/discovery/scans/{scan}/cancel").status_code == 404

        west = roost.api(roost.token("west viewer", "viewer", ["west"]))
        assert [s["id"] for s in west.get("/discovery/scans").json()] == [scan]
        assert [h["mac"] for h in west.get("/discovery/hosts").json()] == [WEST_MAC]
        assert {h["site"] for h in admin.get("/discovery/hosts").json()} == {"east", "west"}
        assert [h["site"] for h in admin.get("/discovery/hosts?site=east").json()] == ["east"]
    finally:
        roost.stop()
