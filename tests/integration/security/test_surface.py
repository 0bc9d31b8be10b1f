"""What an anonymous client reaches on a real ``roost serve``: only the documented routes."""

from __future__ import annotations

from tests.integration.security.conftest import Roost


def test_api_refuses_anonymous_reads_and_writes(roost: Roost) -> None:
    anonymous = roost.api("")
    assert anonymous.get("/nodes").status_code == 401
    assert anonymous.post("/tokens", json={"name": "x", "role": "admin"}).status_code == 401
    assert roost.api().get("/nodes").status_code == 200
