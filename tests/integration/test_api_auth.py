"""Tokens and roles over the in-process API, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from roost.auth import (
    Principal,
    Role,
    create_token,
    on_revoke,
    revoke_token,
    token_ended,
    verify_token,
)
from roost.db.models import TokenRow
from roost.errors import Forbidden
from roost.service import Runtime


async def test_no_token_gets_401_problem(api: httpx.AsyncClient) -> None:
    resp = await api.get("/api/v1/tokens", headers={"Authorization": ""})
    assert resp.status_code == 401
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert "missing bearer token" in resp.json()["detail"]


async def test_health_answers_without_token(api: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(transport=api._transport, base_url="http://roost.test") as anon:
        assert (await anon.get("/healthz")).status_code == 200
        assert (await anon.get("/api/v1/openapi.json")).status_code == 200
        assert (await anon.get("/metrics")).status_code == 401


async def test_roles_and_revocation(api: httpx.AsyncClient, runtime: Runtime) -> None:
    created = (await api.post("/api/v1/tokens", json={"name": "ro", "role": "viewer"})).json()
    viewer = {"Authorization": f"Bearer {created['token']}"}
    assert (await api.get("/api/v1/events/history", headers=viewer)).status_code == 200
    denied = await api.get("/api/v1/tokens", headers=viewer)
    assert denied.status_code == 403
    assert "admin role" in denied.json()["detail"]
    assert (await api.delete(f"/api/v1/tokens/{created['id']}")).status_code == 200
    assert (await api.get("/api/v1/events/history", headers=viewer)).status_code == 401
    listed = (await api.get("/api/v1/tokens")).json()
    assert all("token" not in t and "secret_hash" not in t for t in listed)


async def test_malformed_body_gets_precise_problem(api: httpx.AsyncClient) -> None:
    resp = await api.post("/api/v1/tokens", json={"name": "", "role": "root"})
    assert resp.status_code == 422
    body = resp.json()
    locations = {e["location"] for e in body["errors"]}
    assert locations == {"body name", "body role"}
    assert "viewer" in body["detail"]


async def test_metrics_with_token(api: httpx.AsyncClient) -> None:
    await api.get("/api/v1/tokens")
    text = (await api.get("/metrics")).text
    assert 'roost_http_requests_total{method="GET",route="/tokens",status="200"}' in text


async def test_readyz_reports_database_and_started_state(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    ready = await api.get("/readyz", headers={"Authorization": ""})
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == {"ok": True}
    # the token check needs the database, so readiness is asked anonymously
    await runtime.db.close()
    try:
        down = await api.get("/readyz", headers={"Authorization": ""})
        assert down.status_code == 503
        assert down.json()["checks"]["database"]["ok"] is False
    finally:
        await runtime.db.open(migrate=False)


async def test_token_scope_rules_in_detail(api: httpx.AsyncClient, runtime: Runtime) -> None:
    east = await create_token(runtime.db, "east admin", Role.admin, ["east", "north"])
    as_east = {"Authorization": f"Bearer {east.secret}"}
    empty = await api.post("/api/v1/tokens", json={"name": "e", "sites": []}, headers=as_east)
    assert empty.status_code == 422 and "body sites" in empty.json()["detail"]
    dup = {"name": "d", "sites": ["east", "east", "north"]}
    made = await api.post("/api/v1/tokens", json=dup, headers=as_east)
    assert made.status_code == 201 and made.json()["sites"] == ["east", "north"]
    bad = await api.post("/api/v1/tokens", json={"name": "b", "sites": ["a b"]}, headers=as_east)
    assert bad.status_code == 422 and "body sites.0" in bad.json()["detail"]
    # what the admin-only routes cannot show: no role above the caller's own
    operator = Principal("t", "op", Role.operator, ("east",))
    for role, sites in ((Role.admin, ["east"]), (Role.viewer, None), (Role.viewer, ["west"])):
        with pytest.raises(Forbidden):
            operator.check_grant(role, sites)
    operator.check_grant(Role.operator, ["east"])


async def test_token_ended_reads_without_writing_and_revocation_tells_watchers(
    runtime: Runtime,
) -> None:
    issued = await create_token(runtime.db, "watched", Role.viewer)
    assert await verify_token(runtime.db, issued.secret) is not None  # sets last_used_at
    async with runtime.db.session() as s:
        first = await s.get(TokenRow, issued.id)
        assert first is not None and first.last_used_at is not None
        used = first.last_used_at
    assert await token_ended(runtime.db, issued.id) is None
    told: list[str] = []
    with on_revoke(issued.id, lambda: told.append("revoked")):
        await revoke_token(runtime.db, issued.id)
    await revoke_token(runtime.db, issued.id)  # outside the block: nobody is told
    assert told == ["revoked"]
    assert await token_ended(runtime.db, issued.id) == "revoked"
    assert await token_ended(runtime.db, "000000000000") == "revoked"  # gone counts as revoked
    async with runtime.db.session() as s:
        row = await s.get(TokenRow, issued.id)
        assert row is not None and row.last_used_at == used  # token_ended wrote nothing
        row.revoked_at = None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert await token_ended(runtime.db, issued.id) == "expired"
