"""Attacks on enrollment from the boot LAN, against a real ``roost serve`` (issue #15, items 1
and 5): an anonymous client must not take over an enrolled node through its boot documents,
and random MACs must not grow the database without bound."""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

import httpx

from tests.integration.nodes_support import Agent
from tests.integration.security.conftest import Roost, start_roost

MAC = "52:54:00:5e:00:01"
FACTS = {"cpus": 2, "system": {"serial": "SN-REAL-0001", "uuid": "1111-2222"}}
PROFILE = {
    "kernel": "vmlinuz",
    "cmdline": "roost.callback={{ enroll_url }} roost.token={{ token }} "
    "roost.report={{ callback_url }} ds=nocloud-net;s={{ nocloud_url }}",
    "templates": {"user-data": "#cloud-config\n# secret of {{ mac }}\n"},
}
TOKEN = re.compile(r"rnroll_[A-Za-z0-9_-]+")
BOOT_TOKEN = re.compile(r"/boot/callback/([0-9a-f]{12}-[0-9a-f]{32})")


def commissioning(roost: Roost) -> None:
    admin = roost.api()
    assert admin.put("/boot/profiles/commission", json=PROFILE).status_code in (200, 201)
    assert admin.post("/boot/rules", json={"profile": "commission"}).status_code == 201


def script(client: httpx.Client, mac: str = MAC) -> str:
    r = client.get(f"/boot/{mac}.ipxe")
    assert r.status_code == 200, r.text
    return r.text


def tokens_in(text: str) -> tuple[str | None, str | None]:
    """(enrollment token, boot token) a rendered document carries."""
    token, boot = TOKEN.search(text), BOOT_TOKEN.search(text)
    return (token[0] if token else None), (boot[1] if boot else None)


def enroll(roost: Roost, token: str, agent: Agent, facts: object = FACTS) -> httpx.Response:
    body = {"token": token, "mac": MAC, "facts": facts, "csr": agent.csr()}
    return roost.api("").post("/enroll", json=body)


def deployed_node(roost: Roost) -> tuple[Agent, str, str]:
    """A node that booted, enrolled with the token of its render and was deployed; returns
    its agent, the spent token and the boot token its render carried before enrolling."""
    commissioning(roost)
    token, boot_token = tokens_in(script(roost.boot()))
    assert token and boot_token
    agent = Agent.new()
    r = enroll(roost, token, agent)
    assert r.status_code == 200, r.text
    agent.take(r.json()["certificate"])
    admin = roost.api()
    for state in ("deploying", "deployed"):
        assert admin.post(f"/nodes/{MAC}/state", json={"state": state}).status_code == 200
    return agent, token, boot_token


def node_self(roost: Roost, agent: Agent) -> int:
    with httpx.Client(base_url=roost.url, auth=agent.auth(), timeout=30) as me:
        return me.get("/api/v1/nodes/self").status_code


def test_anonymous_render_cannot_take_over_a_deployed_node(roost: Roost) -> None:
    """Fails on the old code: the render carried a fresh token, the attacker's enrollment got
    200 and the node's certificate, and the real node's certificate was superseded."""
    agent, spent, leaked_boot_token = deployed_node(roost)
    admin = roost.api()
    put = admin.put(f"/boot/files/n1/secret.txt?node={MAC}", content=b"node-private")
    assert put.status_code == 201, put.text
    attacker = roost.boot()
    seen = script(attacker) + attacker.get(f"/nocloud/{MAC}/meta-data").text
    stolen, boot_token = tokens_in(seen)
    mallory = Agent.new()
    evil = {"cpus": 64, "system": {"serial": "SN-REAL-0001", "uuid": "1111-2222"}}
    answers = [enroll(roost, t, mallory, evil).status_code for t in (stolen, spent) if t]
    assert stolen is None and boot_token is None, seen
    assert answers == [401]
    # The boot token the node's first render carried is dead after its enrollment.
    for path in (f"/nocloud/{MAC}/{leaked_boot_token}/user-data",
                 f"/private/{MAC}/{leaked_boot_token}/n1/secret.txt"):  # fmt: skip
        assert attacker.get(path).status_code == 403, path
    callback = attacker.post(f"/boot/callback/{leaked_boot_token}", json={"cpus": 64})
    assert callback.status_code == 403
    by_boot = attacker.post(f"/boot/enroll/{spent}", json={"mac": MAC, **evil})
    assert by_boot.status_code == 403
    node = admin.get(f"/nodes/{MAC}").json()
    assert node["state"] == "deployed" and node["facts"] == FACTS
    assert node_self(roost, agent) == 200 and mallory.cert is None


def limited(roost: Roost) -> set[object]:
    """What ``enroll.limit.reached`` events say was capped (tokens, nodes)."""
    return {e["data"]["what"] for e in roost.events("enroll.limit.reached")}  # type: ignore[index]


def test_random_macs_create_at_most_the_cap(roost: Roost) -> None:
    """Fails on the old code: 50 meta-data GETs made 50 token rows and 50 discovered nodes,
    and nothing said so."""

    def random_mac() -> str:
        return "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))

    commissioning(roost)  # every MAC's script carries a token when it may have one
    anonymous = roost.boot()
    admin = roost.api()
    t0 = time.monotonic()
    for _ in range(50):
        assert anonymous.get(f"/nocloud/{random_mac()}/meta-data").status_code == 200
    # The default meta-data cannot use a token, so those fetches mint none.
    assert admin.get("/enroll/tokens").json() == []
    for _ in range(50):
        assert anonymous.get(f"/boot/{random_mac()}.ipxe").status_code == 200
    elapsed = time.monotonic() - t0
    roost.wait_for_event("enroll.limit.reached")
    # Defaults: a burst of 20, then one a second.
    assert len(admin.get("/enroll/tokens").json()) <= 20 + int(elapsed) + 1 < 50
    deadline = time.monotonic() + 15
    while "nodes" not in limited(roost):
        assert time.monotonic() < deadline, "no enroll.limit.reached event for nodes"
        time.sleep(0.1)
    time.sleep(0.5)  # the inventory has looked at every fetch event by now
    nodes = admin.get("/nodes").json()
    assert len(nodes) <= 20 + int(time.monotonic() - t0) + 1 < 50
    assert "tokens" in limited(roost)
    auth = {"Authorization": f"Bearer {roost.admin}"}
    metrics = httpx.get(f"{roost.url}/metrics", headers=auth, timeout=10).text
    assert 'roost_enroll_anonymous_limited_total{what="tokens"}' in metrics
    assert 'roost_enroll_anonymous_limited_total{what="nodes"}' in metrics


def test_renders_of_one_mac_share_one_token(roost: Roost) -> None:
    """Fails on the old code: 50 renders made 50 token rows."""
    commissioning(roost)
    boot = roost.boot()
    seen = {tokens_in(script(boot))[0] for _ in range(50)}
    assert len(seen) == 1 and None not in seen
    rows = roost.api().get("/enroll/tokens").json()
    assert len(rows) == 1 and rows[0]["mac"] == MAC and rows[0]["site"] == "default"


def test_recommission_lets_the_next_boot_enroll_once(roost: Roost) -> None:
    agent, _, _ = deployed_node(roost)
    assert tokens_in(script(roost.boot())) == (None, None)
    done = roost.cli("node", "recommission", MAC, "--json")
    assert done.returncode == 0, done.stderr
    assert roost.api().get(f"/nodes/{MAC}").json()["recommission"] is True
    token, boot_token = tokens_in(script(roost.boot()))
    assert token and boot_token
    again = Agent.new()
    r = enroll(roost, token, again)
    assert r.status_code == 200, r.text
    again.take(r.json()["certificate"])
    node = roost.api().get(f"/nodes/{MAC}").json()
    assert node["state"] == "ready" and node["recommission"] is False
    assert tokens_in(script(roost.boot())) == (None, None)  # the request was consumed
    assert node_self(roost, again) == 200 and node_self(roost, agent) == 401
    assert roost.events("node.recommission.requested")


def test_reenrollment_with_another_serial_is_refused(roost: Roost) -> None:
    agent, _, _ = deployed_node(roost)
    assert roost.cli("node", "recommission", MAC).returncode == 0
    token, _ = tokens_in(script(roost.boot()))
    assert token
    impostor = {"cpus": 2, "system": {"serial": "SN-OTHER", "uuid": "1111-2222"}}
    assert enroll(roost, token, Agent.new(), impostor).status_code == 401
    mismatch = roost.wait_for_event("node.enroll.mismatch")
    assert mismatch[0]["data"]["key"] == "serial"  # type: ignore[index]
    assert mismatch[0]["data"]["reported"] == "sn-other"  # type: ignore[index]
    node = roost.api().get(f"/nodes/{MAC}").json()
    assert node["state"] == "deployed" and node["facts"] == FACTS
    assert node_self(roost, agent) == 200


def test_approve_keeps_enrollments_pending_until_an_operator_says_so(tmp_path: Path) -> None:
    roost = start_roost(tmp_path, ROOST_ENROLL__APPROVE="true")
    try:
        commissioning(roost)
        token, _ = tokens_in(script(roost.boot()))
        assert token
        agent = Agent.new()
        waiting = enroll(roost, token, agent)
        assert waiting.status_code == 202, waiting.text
        assert waiting.json()["state"] == "pending" and waiting.json()["certificate"] is None
        listed = roost.cli("node", "ls")
        assert listed.returncode == 0 and "pending" in listed.stdout, listed.stdout
        node = roost.api().get(f"/nodes/{MAC}").json()
        assert node["facts"] == {} and node["pending_facts"] == FACTS
        assert roost.events("node.enroll.pending")
        assert tokens_in(script(roost.boot())) == (None, None)  # no second token meanwhile
        assert enroll(roost, token, agent).status_code == 202  # asking again: still waiting
        done = roost.cli("node", "approve", MAC)
        assert done.returncode == 0, done.stderr
        assert roost.events("node.enroll.approved")
        collected = enroll(roost, token, agent)
        assert collected.status_code == 200, collected.text
        agent.take(collected.json()["certificate"])
        assert node_self(roost, agent) == 200
        node = roost.api().get(f"/nodes/{MAC}").json()
        assert node["state"] == "ready" and node["facts"] == FACTS
        assert enroll(roost, token, Agent.new()).status_code == 401  # another key: refused
        assert roost.api().post(f"/nodes/{MAC}/approve").status_code == 409
    finally:
        roost.stop()


def test_anonymous_arch_does_not_change_what_the_node_gets(roost: Roost) -> None:
    """Fails on the old code: the attacker's ``?arch=bios`` switched the node's user-data to
    the BIOS profile."""
    admin = roost.api()
    for name, arch in (("uefi", "x86_64-efi"), ("legacy", "bios")):
        profile = {**PROFILE, "templates": {"user-data": f"#cloud-config\n# {name}\n"}}
        assert admin.put(f"/boot/profiles/{name}", json=profile).status_code == 201
        assert admin.post("/boot/rules", json={"profile": name, "arch": arch}).status_code == 201
    node = roost.boot()
    text = node.get(f"/boot/{MAC}.ipxe", params={"arch": "x86_64-efi"}).text
    _, boot_token = tokens_in(text)
    assert boot_token, text
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=roost.boot_url, transport=transport, timeout=30) as attacker:
        assert attacker.get(f"/boot/{MAC}.ipxe", params={"arch": "bios"}).status_code == 200
    user_data = node.get(f"/nocloud/{MAC}/{boot_token}/user-data")
    assert user_data.status_code == 200 and "# uefi" in user_data.text, user_data.text


def test_a_site_with_auto_off_mints_nothing_until_recommissioned(tmp_path: Path) -> None:
    roost = start_roost(tmp_path, ROOST_ENROLL__SITES='{"default": {"auto": "off"}}')
    try:
        commissioning(roost)
        assert tokens_in(script(roost.boot())) == (None, None)
        assert roost.api().post("/nodes", json={"mac": MAC}).status_code in (200, 201, 409)
        assert roost.cli("node", "recommission", MAC).returncode == 0
        token, boot_token = tokens_in(script(roost.boot()))
        assert token and boot_token
        assert roost.api().get("/enroll/tokens").json()[0]["site"] == "default"
    finally:
        roost.stop()


def test_a_token_minted_before_deployment_is_refused_after_it(roost: Roost) -> None:
    """The policy is checked again when a minted token is spent."""
    commissioning(roost)
    admin = roost.api()
    assert admin.post("/nodes", json={"mac": MAC}).status_code == 201
    token, _ = tokens_in(script(roost.boot()))
    assert token
    for state in ("ready", "deploying", "deployed"):
        assert admin.post(f"/nodes/{MAC}/state", json={"state": state}).status_code == 200
    assert enroll(roost, token, Agent.new()).status_code == 401
    refused = roost.wait_for_event("enroll.refused")
    assert "anonymous boot render" in str(refused[-1]["data"])
    assert admin.get(f"/nodes/{MAC}").json()["state"] == "deployed"
