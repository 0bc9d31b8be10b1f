"""Secrets follow their target: an operator who changes where a power driver sends its
credentials does not get those credentials sent to the new place (issue #15, item 4)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.security.conftest import Roost

MAC = "52:54:00:15:04:01"


class Recorder(ThreadingHTTPServer):
    """A loopback HTTP server that answers ``on`` and records every request's headers."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self.server.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b"on"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def listeners() -> Iterator[tuple[Recorder, Recorder]]:
    servers = (Recorder(), Recorder())
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        yield servers
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def _webhook_node(roost: Roost, bmc: Recorder) -> None:
    settings = {
        "on_url": f"{bmc.url}/on",
        "off_url": f"{bmc.url}/off",
        "status_url": f"{bmc.url}/status",
        "username": "admin",
        "password": "hunter2",
        "secret_headers": {"X-Api-Key": "k3y"},
    }
    body = {"mac": MAC, "power_driver": "webhook", "power_settings": settings}
    r = roost.api().post("/nodes", json=body)
    assert r.status_code == 201, r.text


def test_changing_status_url_alone_is_refused_and_sends_nothing_to_the_new_host(
    roost: Roost, listeners: tuple[Recorder, Recorder]
) -> None:
    bmc, attacker = listeners
    _webhook_node(roost, bmc)
    operator = roost.api(roost.token("op", "operator"))
    moved = {"power_settings": {"status_url": f"{attacker.url}/status"}}
    r = operator.patch(f"/nodes/{MAC}", json=moved)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "status_url" in detail and "password" in detail and "given again" in detail
    r = operator.post(f"/nodes/{MAC}/power", json={"action": "status"})
    assert r.status_code == 200, r.text
    assert attacker.seen == []
    assert bmc.seen and "authorization" in bmc.seen[-1]


def test_secrets_given_again_or_removed_go_with_the_new_target(
    roost: Roost, listeners: tuple[Recorder, Recorder]
) -> None:
    bmc, elsewhere = listeners
    _webhook_node(roost, bmc)
    operator = roost.api(roost.token("op", "operator"))
    # "***" (what the API shows) is not giving a secret again
    masked = {"status_url": f"{elsewhere.url}/s", "password": "***", "secret_headers": "***"}
    r = operator.patch(f"/nodes/{MAC}", json={"power_settings": masked})
    assert r.status_code == 422 and "given again" in r.json()["detail"], r.text
    moved = {"status_url": f"{elsewhere.url}/s", "password": None, "secret_headers": None}
    r = operator.patch(f"/nodes/{MAC}", json={"power_settings": moved})
    assert r.status_code == 200, r.text
    r = operator.post(f"/nodes/{MAC}/power", json={"action": "status"})
    assert r.status_code == 200, r.text
    assert len(elsewhere.seen) == 1
    sent = elsewhere.seen[0]
    # the user name is not a secret: it still goes, with an empty password
    assert base64.b64decode(sent["authorization"].removeprefix("Basic ")) == b"admin:"
    assert "x-api-key" not in sent


def test_webhook_headers_stay_objects_and_later_patches_work(
    roost: Roost, listeners: tuple[Recorder, Recorder]
) -> None:
    bmc, _ = listeners
    _webhook_node(roost, bmc)
    api = roost.api()
    r = api.patch(
        f"/nodes/{MAC}",
        json={
            "power_settings": {
                "off_url": f"{bmc.url}/off2",
                "password": "hunter2",
                "secret_headers": {"X-Api-Key": "k"},
            }
        },
    )
    assert r.status_code == 200, r.text
    r = api.patch(f"/nodes/{MAC}", json={"power_settings": {"timeout": 5}})
    assert r.status_code == 200, r.text
    r = api.post(f"/nodes/{MAC}/power", json={"action": "on"})
    assert r.status_code == 200, r.text
    assert bmc.seen[-1].get("x-api-key") == "k"
    bad = {"power_settings": {"secret_headers": "X-Api-Key: k"}}
    r = api.patch(f"/nodes/{MAC}", json=bad)
    assert r.status_code == 422 and "secret_headers" in r.json()["detail"]
