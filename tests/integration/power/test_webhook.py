"""The webhook driver against a small smart-plug server on loopback (stdlib http.server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from roost.power import BootDevice, FatalError, PowerState, RetryableError, RetryPolicy
from roost.power.drivers.webhook import WebhookDriver

FAST = RetryPolicy(attempts=3, backoff=0.01, verify_timeout=2, poll_interval=0.05)
TOKEN = "Bearer plug-token-123"


@dataclass
class Plug:
    """A Tasmota-like plug: POST /power/on|off, GET /status -> {"StatusSTS": {"POWER": "ON"}}."""

    url: str = ""
    power: bool = False
    boot: str = "disk"
    fail_next: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def plug() -> Iterator[Plug]:
    state = Plug()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            state.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "body": body,
                    "headers": dict(self.headers),
                }
            )
            if self.headers.get("Authorization") != TOKEN:
                return self._send(401, {"error": "unauthorized"})
            if state.fail_next > 0:
                state.fail_next -= 1
                return self._send(503, {"error": "busy"})
            route = (self.command, self.path)
            if route == ("POST", "/power/on"):
                state.power = True
            elif route == ("POST", "/power/off"):
                state.power = False
            elif route == ("PUT", "/boot/pxe"):
                state.boot = "pxe"
            elif route == ("GET", "/status"):
                return self._send(200, {"StatusSTS": {"POWER": "ON" if state.power else "OFF"}})
            elif route == ("GET", "/status.txt"):
                return self._send(200, f"relay: {'closed' if state.power else 'open'}\n")
            else:
                return self._send(404, {"error": "no route"})
            self._send(200, {"ok": True})

        def _send(self, code: int, payload: Any) -> None:
            data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def driver(plug: Plug, **over: Any) -> WebhookDriver:
    settings = {
        "on_url": plug.url + "/power/on",
        "on_body": '{"relay": 0}',
        "off_url": plug.url + "/power/off",
        "status_url": plug.url + "/status",
        "status_pointer": "/StatusSTS/POWER",
        "pxe_url": plug.url + "/boot/pxe",
        "pxe_method": "PUT",
        "headers": {"X-Client": "roost"},
        "secret_headers": {"Authorization": TOKEN},
        **over,
    }
    return WebhookDriver(settings, retry=FAST)


async def test_on_off_status_through_json_pointer(plug: Plug) -> None:
    d = driver(plug)
    assert await d.power_on() == PowerState.ON
    assert plug.power
    first = plug.requests[0]
    assert (first["method"], first["path"], first["body"]) == ("POST", "/power/on", '{"relay": 0}')
    assert first["headers"]["Content-Type"] == "application/json"
    assert first["headers"]["X-Client"] == "roost"
    assert first["headers"]["Authorization"] == TOKEN
    assert plug.requests[1]["method"] == "GET" and plug.requests[1]["path"] == "/status"
    assert await d.power_off() == PowerState.OFF
    assert not plug.power


async def test_status_through_a_regex(plug: Plug) -> None:
    d = driver(
        plug,
        status_url=plug.url + "/status.txt",
        status_pointer=None,
        status_regex=r"relay: (\w+)",
        status_on="closed",
        status_off="open",
    )
    assert await d.power_status() == PowerState.OFF
    assert await d.power_on() == PowerState.ON


async def test_cycle_without_a_cycle_call_is_off_then_on(plug: Plug) -> None:
    plug.power = True
    assert await driver(plug).power_cycle() == PowerState.ON
    paths = [r["path"] for r in plug.requests if r["method"] == "POST"]
    assert paths == ["/power/off", "/power/on"]


async def test_server_errors_are_retried(plug: Plug) -> None:
    plug.fail_next = 2
    assert await driver(plug).power_on() == PowerState.ON
    assert [r["path"] for r in plug.requests[:3]] == ["/power/on"] * 3


async def test_refused_credentials_are_fatal_and_not_retried(plug: Plug) -> None:
    d = driver(plug, secret_headers={"Authorization": "Bearer wrong"})
    with pytest.raises(FatalError, match=r"HTTP 401.*credentials refused"):
        await d.power_on()
    assert len(plug.requests) == 1


async def test_a_wrong_url_is_fatal(plug: Plug) -> None:
    with pytest.raises(FatalError, match="HTTP 404"):
        await driver(plug, on_url=plug.url + "/nope").power_on()


async def test_boot_device_only_with_its_url(plug: Plug) -> None:
    d = driver(plug)
    await d.set_boot_device(BootDevice.PXE)
    assert plug.boot == "pxe"
    with pytest.raises(FatalError, match="no disk_url set"):
        await d.set_boot_device(BootDevice.DISK)


async def test_without_status_the_command_is_sent_once_and_unverified(plug: Plug) -> None:
    d = driver(plug, status_url=None, status_pointer=None)
    assert await d.power_on() == PowerState.UNKNOWN
    assert plug.power and len(plug.requests) == 1


async def test_unreachable_server_is_retryable() -> None:
    d = WebhookDriver(
        {"on_url": "http://127.0.0.1:9/on", "off_url": "http://127.0.0.1:9/off"},
        retry=RetryPolicy(attempts=2, backoff=0.01),
    )
    with pytest.raises(RetryableError, match="ConnectError"):
        await d.power_on()
