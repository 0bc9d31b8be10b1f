"""A loopback HTTP server that replays a cloud provider's documented responses.

No public cloud is reachable from the tests, so this is the one stand-in the suite allows:
each route answers with a body from tests/data/cloud/<provider>/ (see the README there for
the API documentation section each body comes from) and every request is recorded, so the
tests assert what libcloud sent (method, path, query, auth header) as well as what it parsed.
A request no route knows gets 404 and is kept in ``unmatched``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

CLOUD_DATA = Path(__file__).resolve().parents[2] / "data" / "cloud"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: str


Answer = tuple[int, str]
"""HTTP status and the name of a file in the provider's data folder ("" for no body)."""

Route = Callable[[Request], Answer]


class ReplayServer:
    def __init__(self, provider: str, routes: dict[tuple[str, str], Route]) -> None:
        self.data = CLOUD_DATA / provider
        self.routes = routes
        self.requests: list[Request] = []
        self.unmatched: list[Request] = []
        self.url = ""

    def answer(self, req: Request) -> tuple[int, bytes, str]:
        route = self.routes.get((req.method, req.path))
        if route is None:
            self.unmatched.append(req)
            return 404, b'{"error": "no such route in the replay"}', "application/json"
        status, name = route(req)
        if not name:
            return status, b"", "application/json"
        kind = "text/xml" if name.endswith(".xml") else "application/json"
        return status, (self.data / name).read_bytes(), kind

    @contextmanager
    def running(self) -> Iterator[ReplayServer]:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if self.command == "POST" and "x-www-form-urlencoded" in (
                    self.headers.get("Content-Type") or ""
                ):
                    query.update({k: v[-1] for k, v in parse_qs(body).items()})
                req = Request(
                    self.command,
                    url.path,
                    query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                replay.requests.append(req)
                status, data, kind = replay.answer(req)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
