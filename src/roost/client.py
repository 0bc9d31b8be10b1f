"""The API client the CLI uses, and how it finds the server and its token.

Order: ``--url``/``--token`` flags, ``ROOST_URL``/``ROOST_TOKEN``, then the client file that
``roost serve`` writes into the data directory (``ROOST_DATA_DIR`` or ``/var/lib/roost``).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from roost.server import read_client_file
from roost.settings import DEFAULT_DATA_DIR

_RECONNECT_FIRST = 0.5  # seconds before an event stream that dropped is reopened
_RECONNECT_MAX = 5.0


class ClientError(Exception):
    """The server refused or could not be reached; the message is for the operator."""


@dataclass
class Connection:
    url: str
    token: str | None


def locate(url: str | None = None, token: str | None = None) -> Connection:
    data_dir = Path(os.environ.get("ROOST_DATA_DIR") or DEFAULT_DATA_DIR)
    found = read_client_file(data_dir)
    url = url or os.environ.get("ROOST_URL") or found.get("url")
    if not url:
        raise ClientError(
            f"no Roost server known: pass --url, set ROOST_URL, or run `roost serve` "
            f"(it writes {data_dir / 'client.toml'})"
        )
    token = token or os.environ.get("ROOST_TOKEN")
    if token is None and found.get("token_file"):
        try:
            token = Path(found["token_file"]).read_text().strip()
        except OSError:
            token = None
    return Connection(url.rstrip("/"), token)


def _problem(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        return f"{resp.status_code} {body.get('title', '')}: {body.get('detail', resp.text)}"
    except ValueError:
        return f"{resp.status_code}: {resp.text[:200]}"


class Client:
    def __init__(self, conn: Connection, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {conn.token}"} if conn.token else {}
        self._http = httpx.Client(base_url=conn.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self._http.request(method, f"/api/v1{path}", **kw)
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach {self._http.base_url}: {exc}") from None
        if resp.status_code >= 400:
            raise ClientError(_problem(resp))
        return resp.json() if resp.content else None

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    def sse(
        self, path: str, params: Any = None, stop: threading.Event | None = None
    ) -> Iterator[dict[str, Any]]:
        """Follow a Server-Sent Events stream, reconnecting with Last-Event-ID on a drop or an
        ``overflow`` (after 0.5 s, doubling to 5 s while the server stays away) until ``stop``
        is set. A refusal (401 for a revoked or expired token) or an ``event: revoked`` ends
        it with a :class:`ClientError`: reconnecting with that token cannot succeed."""
        last_id: str | None = None
        stop = stop or threading.Event()
        pause = _RECONNECT_FIRST
        while not stop.is_set():
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with self._http.stream(
                    "GET",
                    f"/api/v1{path}",
                    params=params,
                    headers=headers,
                    timeout=httpx.Timeout(30.0, read=None),
                ) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        raise ClientError(_problem(resp))
                    pause = _RECONNECT_FIRST
                    data: list[str] = []
                    kind = "message"
                    for line in resp.iter_lines():
                        if line.startswith("id:"):
                            last_id = line[3:].strip()
                        elif line.startswith("event:"):
                            kind = line[6:].strip()
                        elif line.startswith("data:"):
                            data.append(line[5:].strip())
                        elif line == "" and data:
                            body = json.loads("\n".join(data))
                            if kind == "revoked":  # reconnecting would only get 401
                                reason = body.get("reason", "revoked")
                                raise ClientError(f"the event stream ended: the token is {reason}")
                            if kind == "overflow":  # too slow: reopen from the last event seen
                                break
                            yield body
                            data, kind = [], "message"
                    else:
                        return
            except httpx.TransportError as exc:
                if last_id is None:
                    raise ClientError(f"cannot reach {self._http.base_url}: {exc}") from None
                stop.wait(pause)
                pause = min(pause * 2, _RECONNECT_MAX)
