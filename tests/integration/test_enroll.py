"""Enrollment, node certificates and the security properties of the trust model, on both
databases: one-time tokens, signed node requests, isolation between nodes, revocation."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
from cryptography import x509
from sqlalchemy import update

from roost.events import EventFilter
from roost.pki.models import EnrollmentTokenRow
from roost.pki.tokens import issue_enrollment_token
from roost.service import Runtime
from tests.integration.nodes_support import Agent, anonymous

MAC_A = "52:54:00:00:01:0a"
MAC_B = "52:54:00:00:01:0b"
FACTS = {"cpus": 2, "memory_mib": 512, "architecture": "x86_64"}


async def _token(api: httpx.AsyncClient, **body: object) -> str:
    resp = await api.post("/api/v1/enroll/tokens", json=body)
    assert resp.status_code == 201, resp.text
    assert "secret_hash" not in resp.json()
    token: str = resp.json()["token"]
    return token


async def _enroll(
    api: httpx.AsyncClient,
    token: str,
    mac: str,
    agent: Agent | None = None,
    facts: dict[str, object] = FACTS,
) -> httpx.Response:
    body = {"token": token, "mac": mac, "ip": "10.0.0.7", "facts": facts}
    if agent is not None:
        body["csr"] = agent.csr()
    async with anonymous(api) as anon:
        resp = await anon.post("/api/v1/enroll", json=body)
    if agent is not None and resp.status_code == 200:
        agent.take(resp.json()["certificate"])
    return resp


async def _enrolled(api: httpx.AsyncClient, mac: str, kind: str = "ec") -> Agent:
    agent = Agent.new(kind)
    resp = await _enroll(api, await _token(api, mac=mac), mac, agent)
    assert resp.status_code == 200, resp.text
    return agent


async def test_facts_only_enrollment_reaches_ready(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    token = await _token(api, site="lab", ttl="10m")
    resp = await _enroll(api, token, MAC_A)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["state"] == "ready" and body["site"] == "lab" and body["certificate"] is None
    assert body["ca"].startswith("-----BEGIN CERTIFICATE-----")
    node = (await api.get(f"/api/v1/nodes/{MAC_A}")).json()
    assert node["facts"] == FACTS and node["architecture"] == "x86_64" and node["ip"] == "10.0.0.7"
    history = (await api.get(f"/api/v1/nodes/{MAC_A}/history")).json()
    assert [h["to"] for h in history] == ["discovered", "enrolling", "ready"]
    enrolled = await runtime.bus.history(EventFilter(types=("node.enrolled",)))
    assert enrolled[0].data["mac"] == MAC_A and enrolled[0].data["certificate"] is None


async def test_used_token_is_refused(api: httpx.AsyncClient, runtime: Runtime) -> None:
    token = await issue_enrollment_token(runtime.db, mac=MAC_A, ttl="1h")
    assert token.startswith("rnroll_") and " " not in token
    assert (await _enroll(api, token, MAC_A)).status_code == 200
    again = await _enroll(api, token, MAC_A)
    assert again.status_code == 401
    assert "refused" in again.json()["detail"]
    refused = await runtime.bus.history(EventFilter(types=("enroll.refused",)))
    assert "already used" in refused[-1].data["reason"]


async def test_one_token_racing_twice_enrolls_once(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    token = await issue_enrollment_token(runtime.db, site="lab", ttl=600)
    results = await asyncio.gather(*(_enroll(api, token, mac) for mac in (MAC_A, MAC_B)))
    assert sorted(r.status_code for r in results) == [200, 401]
    assert len((await api.get("/api/v1/nodes")).json()) == 1


async def test_expired_token_is_refused(api: httpx.AsyncClient, runtime: Runtime) -> None:
    token = await issue_enrollment_token(runtime.db, site="lab", ttl=3600)
    async with runtime.db.session() as s:
        await s.execute(
            update(EnrollmentTokenRow).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert (await _enroll(api, token, MAC_A)).status_code == 401
    refused = await runtime.bus.history(EventFilter(types=("enroll.refused",)))
    assert "expired" in refused[-1].data["reason"]
    assert (await api.get(f"/api/v1/nodes/{MAC_A}")).status_code == 404


async def test_token_scoped_to_a_node_does_not_fit_another_mac(api: httpx.AsyncClient) -> None:
    node = (await api.post("/api/v1/nodes", json={"mac": MAC_A})).json()
    token = await _token(api, node=str(node["id"]))
    assert (await _enroll(api, token, MAC_B)).status_code == 401
    # The refusal rolled back: the token is still good for its own node.
    assert (await _enroll(api, token, MAC_A)).status_code == 200
    assert (
        await api.post("/api/v1/enroll/tokens", json={"mac": MAC_A, "ttl": "30d"})
    ).status_code == 422


async def test_certificate_enrollment_and_self_service(api: httpx.AsyncClient) -> None:
    agent = await _enrolled(api, MAC_A)
    assert agent.cert is not None
    ca = x509.load_pem_x509_certificate((await anonymous(api).get("/api/v1/pki/ca.pem")).content)
    agent.cert.verify_directly_issued_by(ca)
    node = (await api.get(f"/api/v1/nodes/{MAC_A}")).json()
    assert agent.cert.subject.rfc4514_string() == f"CN=node-{node['id']}"
    assert node["certificate"]["serial"] == format(agent.cert.serial_number, "x")
    async with anonymous(api, agent.auth()) as me:
        mine = await me.get("/api/v1/nodes/self")
        assert mine.status_code == 200 and mine.json()["id"] == node["id"]
        changed = await me.put("/api/v1/nodes/self/facts", json={"facts": {"disks": 1}})
        assert changed.status_code == 200 and changed.json()["facts"] == {"disks": 1}


async def test_oversized_facts_are_refused(api: httpx.AsyncClient) -> None:
    token = await _token(api, mac=MAC_A)
    resp = await _enroll(api, token, MAC_A, facts={"blob": "x" * 300_000})
    assert resp.status_code == 422 and "at most 262144" in resp.json()["detail"]
    assert (await _enroll(api, token, MAC_A)).status_code == 200  # the token was not spent


async def test_ed25519_node_key(api: httpx.AsyncClient) -> None:
    agent = await _enrolled(api, MAC_A, "ed25519")
    async with anonymous(api, agent.auth()) as me:
        assert (await me.get("/api/v1/nodes/self")).json()["mac"] == MAC_A


async def test_a_node_cannot_read_or_change_another_node(api: httpx.AsyncClient) -> None:
    a = await _enrolled(api, MAC_A)
    b = await _enrolled(api, MAC_B)
    b_id = (await api.get(f"/api/v1/nodes/{MAC_B}")).json()["id"]
    async with anonymous(api, a.auth()) as node_a:
        for method, path, body in (
            ("GET", f"/api/v1/nodes/{b_id}", None),
            ("GET", "/api/v1/nodes", None),
            ("PATCH", f"/api/v1/nodes/{b_id}", {"vendor": "evil"}),
            ("POST", f"/api/v1/nodes/{b_id}/state", {"state": "broken"}),
            ("DELETE", f"/api/v1/nodes/{b_id}", None),
        ):
            resp = await node_a.request(method, path, json=body)
            assert resp.status_code == 401, (method, path, resp.text)
        await node_a.put("/api/v1/nodes/self/facts", json={"facts": {"who": "a"}})
    # Presenting B's certificate with a signature made by A's key is refused.
    assert b.cert is not None
    forged = Agent(a.key, b.cert)
    async with anonymous(api, forged.auth()) as mallory:
        resp = await mallory.put("/api/v1/nodes/self/facts", json={"facts": {"who": "mallory"}})
        assert resp.status_code == 401 and "signature does not verify" in resp.json()["detail"]
    assert (await api.get(f"/api/v1/nodes/{b_id}")).json()["facts"] == FACTS
    assert (await api.get(f"/api/v1/nodes/{MAC_A}")).json()["facts"] == {"who": "a"}


async def test_revoked_certificate_is_refused_on_its_next_request(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    agent = await _enrolled(api, MAC_A)
    assert agent.cert is not None
    async with anonymous(api, agent.auth()) as me:
        assert (await me.get("/api/v1/nodes/self")).status_code == 200
        revoked = await api.post(f"/api/v1/nodes/{MAC_A}/revoke")
        assert revoked.json() == {"revoked": [format(agent.cert.serial_number, "x")]}
        refused = await me.get("/api/v1/nodes/self")
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
        assert (await me.post("/api/v1/enroll/renew", json={"csr": agent.csr()})).status_code == 401
    crl_pem = (await anonymous(api).get("/api/v1/pki/crl.pem")).content
    crl = x509.load_pem_x509_crl(crl_pem)
    assert crl.get_revoked_certificate_by_serial_number(agent.cert.serial_number) is not None
    ca = x509.load_pem_x509_certificate((await anonymous(api).get("/api/v1/pki/ca.pem")).content)
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    events = await runtime.bus.history(EventFilter(types=("pki.certificate.revoked",)))
    assert events[-1].data["mac"] == MAC_A


async def test_renewal_supersedes_the_old_certificate(api: httpx.AsyncClient) -> None:
    agent = await _enrolled(api, MAC_A)
    old = Agent(agent.key, agent.cert)
    async with anonymous(api, agent.auth()) as me:
        resp = await me.post("/api/v1/enroll/renew", json={"csr": agent.csr()})
        assert resp.status_code == 200, resp.text
    agent.take(resp.json()["certificate"])
    assert old.cert is not None and agent.cert is not None
    assert agent.cert.serial_number != old.cert.serial_number
    async with anonymous(api, agent.auth()) as me:
        assert (await me.get("/api/v1/nodes/self")).status_code == 200
    async with anonymous(api, old.auth()) as stale:
        assert (await stale.get("/api/v1/nodes/self")).status_code == 401


async def test_replayed_stale_and_tampered_requests_are_refused(api: httpx.AsyncClient) -> None:
    agent = await _enrolled(api, MAC_A)
    async with anonymous(api) as anon:
        signed = agent.headers("GET", "/api/v1/nodes/self")
        assert (await anon.get("/api/v1/nodes/self", headers=signed)).status_code == 200
        replay = await anon.get("/api/v1/nodes/self", headers=signed)
        assert replay.status_code == 401 and "replayed" in replay.json()["detail"]
        stale = agent.headers("GET", "/api/v1/nodes/self", now=time.time() - 3600)
        resp = await anon.get("/api/v1/nodes/self", headers=stale)
        assert resp.status_code == 401 and "server clock" in resp.json()["detail"]
        body = b'{"facts": {"a": 1}}'
        tampered = agent.headers("PUT", "/api/v1/nodes/self/facts", body)
        resp = await anon.put(
            "/api/v1/nodes/self/facts",
            content=b'{"facts": {"a": 2}}',
            headers={**tampered, "content-type": "application/json"},
        )
        assert resp.status_code == 401
        missing = await anon.get("/api/v1/nodes/self")
        assert missing.status_code == 401 and "missing header" in missing.json()["detail"]


async def test_certificate_from_another_ca_is_refused(api: httpx.AsyncClient) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    agent = Agent.new()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node-1")])
    now = datetime.now(UTC)
    agent.cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(agent.key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .sign(agent.key, hashes.SHA256())
    )
    async with anonymous(api, agent.auth()) as me:
        resp = await me.get("/api/v1/nodes/self")
    assert resp.status_code == 401 and "not issued by this Roost CA" in resp.json()["detail"]


async def test_retired_node_may_not_enroll_and_its_certificate_stops(
    api: httpx.AsyncClient,
) -> None:
    agent = await _enrolled(api, MAC_A)
    assert (
        await api.post(f"/api/v1/nodes/{MAC_A}/state", json={"state": "retired"})
    ).status_code == 200
    async with anonymous(api, agent.auth()) as me:
        assert (await me.get("/api/v1/nodes/self")).status_code == 401
    assert (await _enroll(api, await _token(api, mac=MAC_A), MAC_A)).status_code == 401


async def test_expired_tokens_are_purged(runtime: Runtime) -> None:
    from roost.pki.tokens import purge

    old = await issue_enrollment_token(runtime.db, mac=MAC_A, ttl=60)
    await issue_enrollment_token(runtime.db, mac=MAC_B, ttl=60)
    async with runtime.db.session() as s:
        await s.execute(
            update(EnrollmentTokenRow)
            .where(EnrollmentTokenRow.id == old.split("_")[1])
            .values(expires_at=datetime.now(UTC) - timedelta(days=2))
        )
    async with runtime.db.session() as s:
        assert await purge(s, datetime.now(UTC)) == 1
        assert await purge(s, datetime.now(UTC)) == 0


async def test_certificate_from_a_mutual_tls_server_is_accepted(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    """An ASGI server that terminates mutual TLS reports the peer certificate in the TLS
    extension; uvicorn does not, so a wrapper plays that server's part here."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from roost.api import create_app

    agent = await _enrolled(api, MAC_A)
    assert agent.cert is not None
    pem = agent.cert.public_bytes(Encoding.PEM).decode()
    app = create_app(runtime)

    async def mtls(scope: dict[str, object], receive: object, send: object) -> None:
        tls = {"client_cert_chain": [pem], "client_cert_error": None}
        await app({**scope, "extensions": {"tls": tls}}, receive, send)  # type: ignore[arg-type]

    transport = httpx.ASGITransport(app=mtls)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as peer:
        mine = await peer.get("/api/v1/nodes/self")
        assert mine.status_code == 200 and mine.json()["mac"] == MAC_A
        await api.post(f"/api/v1/nodes/{MAC_A}/revoke")
        assert (await peer.get("/api/v1/nodes/self")).status_code == 401
