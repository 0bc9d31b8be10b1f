"""What an anonymous client reaches on a real ``roost serve``: only the routes README.md names."""

from __future__ import annotations

import re

from tests.integration.security.conftest import Roost

# (method, path template) that answer without an API token. README.md ("Using it") lists these;
# POST /enroll and /enroll/{token} are authenticated by the one-time token they carry.
ANONYMOUS = {
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/docs"),
    ("post", "/api/v1/enroll"),
    ("post", "/api/v1/enroll/{token}"),
    ("get", "/api/v1/pki/ca.pem"),
    ("get", "/api/v1/pki/crl.pem"),
}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def test_every_other_route_needs_a_token(roost: Roost) -> None:
    anonymous = roost.api("")
    spec = anonymous.get(f"{roost.url}/api/v1/openapi.json")
    assert spec.status_code == 200
    operations = {
        (method, path)
        for path, ops in spec.json()["paths"].items()
        for method in ops
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert operations, "the OpenAPI document lists no operations"
    open_ones = set()
    for method, path in sorted(operations):
        r = anonymous.request(method, f"{roost.url}{_concrete(path)}", json={})
        if r.status_code != 401:
            open_ones.add((method, path))
    assert open_ones <= ANONYMOUS, f"answer without a token: {sorted(open_ones - ANONYMOUS)}"
    # and the list is not stale: each named route exists and answers without a token
    documented = {("get", "/api/v1/openapi.json"), ("get", "/api/v1/docs")}
    assert ANONYMOUS - documented <= operations
    assert ANONYMOUS - documented <= open_ones


def test_api_refuses_anonymous_reads_and_writes(roost: Roost) -> None:
    anonymous = roost.api("")
    assert anonymous.get("/nodes").status_code == 401
    assert anonymous.post("/tokens", json={"name": "x", "role": "admin"}).status_code == 401
    assert roost.api().get("/nodes").status_code == 200
