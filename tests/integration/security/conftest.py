"""The attack suite's target: a real ``roost serve`` process with the boot server on loopback.

Each test attacks it the way an anonymous client on the boot LAN or a site-limited operator
would, over plain HTTP. The process runs on SQLite in the test's own data directory; a test
that needs other settings passes them as ``ROOST_*`` variables to :func:`start_roost`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

ROOST = [sys.executable, "-m", "roost.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Roost:
    """A running ``roost serve``: its API, its boot server, its admin token and its env."""

    proc: subprocess.Popen[bytes]
    url: str
    boot_url: str
    admin: str
    env: dict[str, str]
    log: Path
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return Path(self.env["ROOST_DATA_DIR"])

    def api(self, token: str | None = None) -> httpx.Client:
        """A client of ``/api/v1`` with ``token`` (the admin's by default; "" for none)."""
        headers = {} if token == "" else {"Authorization": f"Bearer {token or self.admin}"}
        client = httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=30)
        self.clients.append(client)
        return client

    def boot(self) -> httpx.Client:
        """An anonymous client of the boot server, as a machine on the boot LAN is."""
        client = httpx.Client(base_url=self.boot_url, timeout=30)
        self.clients.append(client)
        return client

    def token(self, name: str, role: str, sites: list[str] | None = None) -> str:
        """A new API token created by the admin."""
        body: dict[str, object] = {"name": name, "role": role}
        if sites is not None:
            body["sites"] = sites
        r = self.api().post("/tokens", json=body)
        assert r.status_code in (200, 201), r.text
        secret: str = r.json()["token"]
        return secret

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ROOST, *args], env=self.env, capture_output=True, text=True, timeout=60
        )

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_roost(tmp_path: Path, **extra: str) -> Roost:
    """Start ``roost serve`` with the boot server on 127.0.0.1 and wait until it answers."""
    data_dir = tmp_path / "data"
    boot_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOST_")}
    env.update(
        ROOST_DATA_DIR=str(data_dir),
        ROOST_DATABASE__URL=f"sqlite+aiosqlite:///{tmp_path / 'roost.db'}",
        ROOST_API__PORT="0",
        ROOST_BOOT__ENABLED="true",
        ROOST_BOOT__HOST="127.0.0.1",
        ROOST_BOOT__HTTP_PORT=str(boot_port),
        ROOST_BOOT__IMPORT_IPXE="false",
    )
    env.update(extra)
    log = tmp_path / "serve.log"
    client_file = data_dir / "client.toml"
    with log.open("ab") as out:
        proc = subprocess.Popen([*ROOST, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not client_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"roost serve did not start:\n{log.read_text()}")
        time.sleep(0.05)
    url = tomllib.loads(client_file.read_text())["url"]
    boot_url = f"http://127.0.0.1:{boot_port}"
    while True:
        try:
            httpx.get(f"{boot_url}/healthz", timeout=1)
            break
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise AssertionError(f"boot server did not answer:\n{log.read_text()}") from None
            time.sleep(0.05)
    admin = (data_dir / "admin-token").read_text().strip()
    return Roost(proc, url, boot_url, admin, env, log)


@pytest.fixture
def roost(tmp_path: Path) -> Iterator[Roost]:
    """``roost serve`` with its defaults and the boot server on."""
    served = start_roost(tmp_path)
    try:
        yield served
    finally:
        served.stop()
