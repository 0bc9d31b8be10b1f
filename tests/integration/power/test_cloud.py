"""The libcloud driver against replayed provider responses (Hetzner, DigitalOcean, EC2, GCE).

Each test drives the real libcloud code path; only the far end is a replay of the provider's
documented answers. The assertions cover both directions: the requests libcloud sends and
the states Roost reads from the documented bodies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from roost.power import FatalError, PowerState, RetryPolicy
from roost.power.drivers.cloud import LibcloudDriver

from .replay import ReplayServer, Request

FAST = RetryPolicy(attempts=2, backoff=0.01, verify_timeout=2, poll_interval=0.01)


def cloud(server: ReplayServer, **settings: Any) -> LibcloudDriver:
    return LibcloudDriver({"endpoint": server.url, **settings}, retry=FAST)


def sent(server: ReplayServer, method: str | None = None) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in server.requests if method in (None, r.method)]


# -- Hetzner Cloud ---------------------------------------------------------------------------

HETZNER_TOKEN = "hcloud-token-0123456789"


@pytest.fixture
def hetzner() -> Iterator[ReplayServer]:
    state = {"42": "off"}

    def auth(req: Request, ok: tuple[int, str]) -> tuple[int, str]:
        if req.headers.get("authorization") != f"Bearer {HETZNER_TOKEN}":
            return 401, "error_unauthorized.json"
        return ok

    def power(new: str, body: str) -> Any:
        def route(req: Request) -> tuple[int, str]:
            answer = auth(req, (201, body))
            if answer[0] == 201:
                state["42"] = new
            return answer

        return route

    routes = {
        ("GET", "/v1/servers/42"): lambda r: auth(
            r, (200, "server_running.json" if state["42"] == "on" else "server_off.json")
        ),
        ("GET", "/v1/servers"): lambda r: auth(
            r, (200, f"list_servers_page{r.query['page']}.json")
        ),
        ("POST", "/v1/servers/42/actions/poweron"): power("on", "action_poweron.json"),
        ("POST", "/v1/servers/42/actions/poweroff"): power("off", "action_poweroff.json"),
        ("POST", "/v1/servers/42/actions/reset"): power("on", "action_reset.json"),
        ("POST", "/v1/servers"): lambda r: auth(r, (201, "create_server.json")),
        ("DELETE", "/v1/servers/42"): lambda r: auth(r, (200, "delete_server.json")),
    }
    with ReplayServer("hetzner", routes).running() as server:
        yield server
    assert not server.unmatched, server.unmatched


def hetzner_driver(server: ReplayServer, **over: Any) -> LibcloudDriver:
    return cloud(server, **{"provider": "hetzner", "key": HETZNER_TOKEN, "node_id": "42", **over})


async def test_hetzner_power_on_off_cycle(hetzner: ReplayServer) -> None:
    d = hetzner_driver(hetzner)
    assert await d.power_status() == PowerState.OFF
    assert await d.power_on() == PowerState.ON
    assert await d.power_cycle() == PowerState.ON
    assert await d.power_off() == PowerState.OFF
    assert sent(hetzner, "POST") == [
        ("POST", "/v1/servers/42/actions/poweron"),
        ("POST", "/v1/servers/42/actions/reset"),
        ("POST", "/v1/servers/42/actions/poweroff"),
    ]
    assert all(r.headers["authorization"] == f"Bearer {HETZNER_TOKEN}" for r in hetzner.requests)


async def test_hetzner_list_follows_pagination(hetzner: ReplayServer) -> None:
    nodes = await hetzner_driver(hetzner).list_nodes()
    assert [(n.id, n.name, n.state) for n in nodes] == [
        ("42", "my-server", PowerState.ON),
        ("43", "other-server", PowerState.OFF),
    ]
    assert nodes[0].public_ips == ["1.2.3.4", "2001:db8::/64"]
    assert nodes[0].private_ips == ["10.0.0.2"]
    assert [r.query["page"] for r in hetzner.requests] == ["1", "2"]


async def test_hetzner_create_and_destroy(hetzner: ReplayServer) -> None:

    d = hetzner_driver(hetzner)
    node = await d.create_node("rpw-new", size="cx22", image="ubuntu-24.04", location="fsn1")
    assert (node.id, node.name, node.state, node.native_state) == (
        "44",
        "rpw-new",
        PowerState.UNKNOWN,
        "pending",
    )
    create = hetzner.requests[-1]
    assert json.loads(create.body) == {
        "name": "rpw-new",
        "server_type": "cx22",
        "image": "ubuntu-24.04",
        "location": "fsn1",
    }
    await d.destroy_node()
    assert sent(hetzner)[-1] == ("DELETE", "/v1/servers/42")


async def test_hetzner_bad_token_is_fatal_and_not_retried(hetzner: ReplayServer) -> None:
    d = cloud(hetzner, provider="hetzner", key="wrong", node_id="42")
    with pytest.raises(FatalError, match=r"credentials refused.*unauthorized"):
        await d.power_on()
    assert len(hetzner.requests) == 1


async def test_power_without_node_id_is_fatal(hetzner: ReplayServer) -> None:
    with pytest.raises(FatalError, match="'node_id' is not set"):
        await cloud(hetzner, provider="hetzner", key=HETZNER_TOKEN).power_on()
    assert hetzner.requests == []


# -- DigitalOcean ----------------------------------------------------------------------------

DO_TOKEN = "dop_v1_0123456789abcdef"
DROPLET = "3164444"


@pytest.fixture
def digitalocean() -> Iterator[ReplayServer]:
    state = {"status": "off"}

    def action(req: Request) -> tuple[int, str]:
        kind = json.loads(req.body)["type"]
        state["status"] = "off" if kind == "power_off" else "active"
        return 201, {
            "power_on": "ex_power_on_node.json",
            "power_off": "power_off.json",
            "power_cycle": "ex_hard_reboot.json",
        }[kind]

    def authed(route: Any) -> Any:
        def check(req: Request) -> tuple[int, str]:
            if req.headers.get("authorization") != f"Bearer {DO_TOKEN}":
                return 401, "error_unauthorized.json"
            answer: tuple[int, str] = route(req)
            return answer

        return check

    routes = {
        ("GET", f"/v2/droplets/{DROPLET}"): lambda r: (200, f"droplet_{state['status']}.json"),
        ("POST", f"/v2/droplets/{DROPLET}/actions"): action,
        ("GET", "/v2/droplets"): lambda r: (200, "list_droplets.json"),
        ("POST", "/v2/droplets"): lambda r: (202, "create_droplet.json"),
        ("DELETE", f"/v2/droplets/{DROPLET}"): lambda r: (204, ""),
    }
    with ReplayServer("digitalocean", {k: authed(v) for k, v in routes.items()}).running() as s:
        yield s
    assert not s.unmatched, s.unmatched


def do_driver(server: ReplayServer, **over: Any) -> LibcloudDriver:
    return cloud(
        server, **{"provider": "digitalocean", "key": DO_TOKEN, "node_id": DROPLET, **over}
    )


async def test_digitalocean_power_actions(digitalocean: ReplayServer) -> None:
    d = do_driver(digitalocean)
    assert await d.power_status() == PowerState.OFF
    assert await d.power_on() == PowerState.ON
    assert await d.power_cycle() == PowerState.ON
    assert await d.power_off() == PowerState.OFF
    actions = [json.loads(r.body)["type"] for r in digitalocean.requests if r.method == "POST"]
    assert actions == ["power_on", "power_cycle", "power_off"]
    assert {r.headers["authorization"] for r in digitalocean.requests} == {f"Bearer {DO_TOKEN}"}


async def test_digitalocean_list_create_destroy(digitalocean: ReplayServer) -> None:
    d = do_driver(digitalocean)
    nodes = await d.list_nodes()
    assert [(n.id, n.name, n.state) for n in nodes] == [
        ("3164444", "ubuntu-s-1vcpu-1gb-sfo3-01", PowerState.ON)
    ]
    node = await d.create_node(
        "rpw-new", size="s-1vcpu-1gb", image="ubuntu-20-04-x64", location="nyc3"
    )
    assert (node.id, node.name, node.state) == ("3164494", "rpw-new", PowerState.UNKNOWN)
    body = json.loads(digitalocean.requests[-1].body)
    assert (body["name"], body["size"], body["image"], body["region"]) == (
        "rpw-new",
        "s-1vcpu-1gb",
        "ubuntu-20-04-x64",
        "nyc3",
    )
    await d.destroy_node()
    assert sent(digitalocean)[-1] == ("DELETE", f"/v2/droplets/{DROPLET}")


async def test_digitalocean_bad_token_is_fatal(digitalocean: ReplayServer) -> None:
    with pytest.raises(FatalError, match=r"credentials refused|401"):
        await do_driver(digitalocean, key="wrong").power_status()
    assert len(digitalocean.requests) == 1


# -- AWS EC2 -----------------------------------------------------------------------------

EC2_KEY, EC2_SECRET, INSTANCE = (
    "AKIDEXAMPLE",
    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "i-4382922a",
)


@pytest.fixture
def ec2() -> Iterator[ReplayServer]:
    state = {"name": "stopped"}
    answers = {
        "StartInstances": ("running", "start_instances.xml"),
        "StopInstances": ("stopped", "stop_instances.xml"),
        "RebootInstances": ("running", "reboot_instances.xml"),
        "TerminateInstances": ("terminated", "terminate_instances.xml"),
    }

    def api(req: Request) -> tuple[int, str]:
        if f"Credential={EC2_KEY}/" not in req.headers.get("authorization", ""):
            return 401, "error_auth_failure.xml"
        action = req.query["Action"]
        if action == "DescribeInstances":
            return 200, f"describe_instances_{state['name']}.xml"
        if action == "RunInstances":
            return 200, "run_instances.xml"
        if action == "DescribeAddresses":  # libcloud looks up elastic IPs with every listing
            return 200, "describe_addresses.xml"
        state["name"], body = answers[action]
        return 200, body

    with ReplayServer("ec2", {("GET", "/"): api, ("POST", "/"): api}).running() as server:
        yield server
    assert not server.unmatched, server.unmatched


def ec2_driver(server: ReplayServer, key: str = EC2_KEY) -> LibcloudDriver:
    return cloud(
        server, provider="ec2", key=key, secret=EC2_SECRET, region="eu-west-1", node_id=INSTANCE
    )


async def test_ec2_power_actions_are_signed_query_calls(ec2: ReplayServer) -> None:
    d = ec2_driver(ec2)
    assert await d.power_status() == PowerState.OFF
    assert await d.power_on() == PowerState.ON
    assert await d.power_cycle() == PowerState.ON
    assert await d.power_off() == PowerState.OFF
    calls = [(r.query["Action"], r.query.get("InstanceId.1")) for r in ec2.requests]
    assert [c for c in calls if not c[0].startswith("Describe")] == [
        ("StartInstances", INSTANCE),
        ("RebootInstances", INSTANCE),
        ("StopInstances", INSTANCE),
    ]
    assert all(c[1] == INSTANCE for c in calls if c[0] != "DescribeAddresses")
    for r in ec2.requests:
        # AWS Signature Version 4 (EC2 API reference, "Signing AWS API requests")
        assert r.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={EC2_KEY}/")
        assert "/eu-west-1/ec2/aws4_request" in r.headers["authorization"]
        assert EC2_SECRET not in r.headers["authorization"]


async def test_ec2_create_and_destroy(ec2: ReplayServer) -> None:
    d = ec2_driver(ec2)
    node = await d.create_node("rpw-new", size="m1.small", image="ami-be3adfd7")
    assert (node.id, node.native_state) == ("i-2ba64342", "pending")
    run = ec2.requests[-1].query
    assert (run["Action"], run["ImageId"], run["InstanceType"]) == (
        "RunInstances",
        "ami-be3adfd7",
        "m1.small",
    )
    await d.destroy_node()
    assert ec2.requests[-1].query["Action"] == "TerminateInstances"


# -- Google Compute Engine ---------------------------------------------------------------

GCE_ACCOUNT, GCE_PROJECT = "rpw@project_name.iam.gserviceaccount.com", "project_name"
GCE_BASE = f"/compute/v1/projects/{GCE_PROJECT}"
GCE_TOKEN = "ya29.rpw-test-access-token"


@pytest.fixture(scope="module")
def gce_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def gce() -> Iterator[ReplayServer]:
    state = {"status": "terminated"}
    instance = f"{GCE_BASE}/zones/us-central1-a/instances/node-name"
    ops = f"{GCE_BASE}/zones/us-central1-a/operations/operation-zones_us-central1-a_instances"
    ops += "_node-name"

    def bearer(route: Any) -> Any:
        def check(req: Request) -> tuple[int, str]:
            if req.headers.get("authorization") != f"Bearer {GCE_TOKEN}":
                return 401, "error_unauthorized.json"
            answer: tuple[int, str] = route(req)
            return answer

        return check

    def act(kind: str, new: str) -> Any:
        def route(req: Request) -> tuple[int, str]:
            state["status"] = new
            return 200, f"operation_{kind}_running.json"

        return route

    routes: dict[tuple[str, str], Any] = {
        ("GET", f"{GCE_BASE}/zones"): lambda r: (200, "zones.json"),
        ("GET", f"{GCE_BASE}/regions"): lambda r: (200, "regions.json"),
        # libcloud maps an instance's disks through the project's aggregated disk list
        ("GET", f"{GCE_BASE}/aggregated/disks"): lambda r: (200, "aggregated_disks.json"),
        ("GET", f"{GCE_BASE}/zones/us-central1-a"): lambda r: (200, "zone_us-central1-a.json"),
        ("GET", f"{GCE_BASE}/regions/us-central1"): lambda r: (200, "region_us-central1.json"),
        ("GET", instance): lambda r: (200, f"instance_{state['status']}.json"),
        ("POST", f"{instance}/start"): act("start", "running"),
        ("POST", f"{instance}/stop"): act("stop", "terminated"),
        ("POST", f"{instance}/reset"): act("reset", "running"),
        ("DELETE", instance): act("delete", "terminated"),
        ("GET", f"{GCE_BASE}/zones/us-central1-a/instances"): lambda r: (200, "instances.json"),
    }
    for kind in ("start", "stop", "reset", "delete"):
        routes[("GET", f"{ops}_{kind}")] = lambda r, k=kind: (200, f"operation_{k}_done.json")
    routes = {k: bearer(v) for k, v in routes.items()}
    # Google OAuth 2.0 for service accounts: a signed JWT is exchanged for a bearer token.
    routes[("POST", "/o/oauth2/token")] = lambda r: (200, "token.json")
    with ReplayServer("gce", routes).running() as server:
        yield server
    assert not server.unmatched, [(r.method, r.path) for r in server.unmatched]


def gce_driver(server: ReplayServer, key: str) -> LibcloudDriver:
    return cloud(
        server,
        provider="gce",
        key=GCE_ACCOUNT,
        secret=key,
        project=GCE_PROJECT,
        region="us-central1-a",
        node_id="node-name",
    )


async def test_gce_service_account_login_and_power(gce: ReplayServer, gce_key: str) -> None:
    d = gce_driver(gce, gce_key)
    assert await d.power_status() == PowerState.OFF
    token = gce.requests[0]
    assert (token.method, token.path) == ("POST", "/o/oauth2/token")
    assert token.query["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = _jwt_claims(token.query["assertion"])
    assert claims["iss"] == GCE_ACCOUNT and "auth/compute" in claims["scope"]
    assert await d.power_on() == PowerState.ON
    assert await d.power_cycle() == PowerState.ON
    assert await d.power_off() == PowerState.OFF
    posts = [r.path.rsplit("/", 1)[1] for r in gce.requests if r.method == "POST"]
    assert posts == ["token", "start", "reset", "stop"]  # one login for the driver's lifetime
    assert all(
        r.headers["authorization"] == f"Bearer {GCE_TOKEN}"
        for r in gce.requests
        if r.path.startswith("/compute/")
    )
    assert gce_key not in " ".join(r.body for r in gce.requests)  # the key signs, never travels


async def test_gce_list_and_destroy(gce: ReplayServer, gce_key: str) -> None:
    d = gce_driver(gce, gce_key)
    nodes = await d.list_nodes()
    assert [(n.name, n.state) for n in nodes] == [("node-name", PowerState.ON)]
    await d.destroy_node()
    assert ("DELETE", f"{GCE_BASE}/zones/us-central1-a/instances/node-name") in sent(gce)


def _jwt_claims(assertion: str) -> dict[str, Any]:
    import base64

    payload = assertion.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


async def test_gce_unusable_key_is_fatal(gce: ReplayServer) -> None:
    with pytest.raises(FatalError, match=r"credentials refused.*PEM"):
        await gce_driver(gce, "not a key").power_status()
    assert gce.requests == []


async def test_ec2_unknown_access_key_is_fatal(ec2: ReplayServer) -> None:
    with pytest.raises(FatalError, match=r"credentials refused.*AuthFailure"):
        await ec2_driver(ec2, key="AKIDUNKNOWN").power_on()
    assert len(ec2.requests) == 1
