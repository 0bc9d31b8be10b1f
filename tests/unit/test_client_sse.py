"""The client's event stream after a drop: it reconnects with Last-Event-ID, waits between
attempts instead of hammering the server, and ends when asked to stop."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from roost.client import Client, ClientError, Connection


class _Dropping(BaseHTTPRequestHandler):
    """Sends one event of a chunked stream, then closes without ending the body."""

    protocol_version = "HTTP/1.1"
    seen: list[str | None] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Last-Event-ID"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        event = f"id: {len(self.seen)}\ndata: {json.dumps({'n': len(self.seen)})}\n\n".encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    _Dropping.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Dropping)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_stream_reconnects_with_last_event_id_and_stops_when_asked(
    server: ThreadingHTTPServer,
) -> None:
    stop = threading.Event()
    got: list[dict[str, Any]] = []
    client = Client(Connection(f"http://127.0.0.1:{server.server_address[1]}", None))

    def follow() -> None:
        for ev in client.sse("/events", stop=stop):
            got.append(ev)
            if len(got) == 2:
                stop.set()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    follower.join(10)
    assert not follower.is_alive(), "the stream did not end after stop was set"
    assert got == [{"n": 1}, {"n": 2}]
    assert _Dropping.seen == [None, "1"]


def test_stream_waits_between_reconnects(server: ThreadingHTTPServer) -> None:
    stop = threading.Event()
    client = Client(Connection(f"http://127.0.0.1:{server.server_address[1]}", None))
    follower = threading.Thread(target=lambda: list(client.sse("/events", stop=stop)))
    follower.start()
    stop.wait(1.2)
    stop.set()
    follower.join(10)
    assert not follower.is_alive()
    # 0.5 s between attempts: at most three in 1.2 s (without a pause, hundreds).
    assert 2 <= len(_Dropping.seen) <= 3, _Dropping.seen


class _Ending(BaseHTTPRequestHandler):
    """Answers each request with one event and then ``ending`` (an SSE event type), closed."""

    protocol_version = "HTTP/1.0"
    ending = "revoked"
    seen: list[str | None] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Last-Event-ID"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        n = len(self.seen)
        data = json.dumps({"reason": "revoked"}) if self.ending == "revoked" else "{}"
        self.wfile.write(f"id: {n}\ndata: {json.dumps({'n': n})}\n\n".encode())
        self.wfile.write(f"event: {self.ending}\ndata: {data}\n\n".encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def ending() -> Iterator[ThreadingHTTPServer]:
    _Ending.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Ending)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_stream_stops_with_an_error_when_the_token_is_revoked(
    ending: ThreadingHTTPServer,
) -> None:
    _Ending.ending = "revoked"
    got: list[dict[str, Any]] = []
    client = Client(Connection(f"http://127.0.0.1:{ending.server_address[1]}", None))
    with client, pytest.raises(ClientError, match="the token is revoked"):
        for ev in client.sse("/events"):
            got.append(ev)
    assert got == [{"n": 1}]
    assert _Ending.seen == [None], "reconnected with a revoked token"


def test_stream_reconnects_after_an_overflow_instead_of_yielding_it(
    ending: ThreadingHTTPServer,
) -> None:
    _Ending.ending = "overflow"
    got: list[dict[str, Any]] = []
    with Client(Connection(f"http://127.0.0.1:{ending.server_address[1]}", None)) as client:
        for ev in client.sse("/events"):
            got.append(ev)
            if len(got) == 2:
                break
    assert got == [{"n": 1}, {"n": 2}]
    assert _Ending.seen == [None, "1"]
