"""Node authentication cost: a certificate-signed node request (``GET /nodes/self``) against a
bearer-token request for the same record (``GET /nodes/{id}``, the foundation's API-token
check), in the same run, on SQLite; plus the rate of enrollments with a CSR (token spent, node
created, certificate issued, events stored).

Requests go through the ASGI app in process (httpx's ASGI transport), not over TCP: on this
host a loopback HTTP round trip through uvicorn has a ~40 ms floor (delayed ACKs) that would
drown the difference being measured.

Prints medians and the ratio; the last line is one JSON object with the figures.
"""

from __future__ import annotations

import os
import sys

# Run as ``python bench/<name>.py``, this folder comes first on sys.path, where bench/http.py
# (the HTTP benchmark) would stand in for the standard library's ``http`` package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.nodes_support import Agent

from roost.api import create_app
from roost.auth import Role, create_token
from roost.pki.tokens import issue_enrollment_token
from roost.service import Runtime
from roost.settings import load_settings


async def _timed(client: httpx.AsyncClient, path: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        resp = await client.get(path)
        out.append(time.perf_counter() - t0)
        resp.raise_for_status()
    return out


async def main(requests: int, enrollments: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="rnd-bench-") as tmp:
        settings = load_settings(None, {"data_dir": Path(tmp), "api.port": 0})
        runtime = Runtime.create(settings)
        await runtime.start(load_services=False)
        transport = httpx.ASGITransport(app=create_app(runtime))
        url = "http://roost.bench"
        try:
            admin = (await create_token(runtime.db, "bench", Role.admin)).secret
            agents = []
            t0 = time.perf_counter()
            async with httpx.AsyncClient(transport=transport, base_url=url) as anon:
                for i in range(enrollments):
                    mac = f"52:54:00:10:{i // 256:02x}:{i % 256:02x}"
                    token = await issue_enrollment_token(runtime.db, mac=mac, ttl=600)
                    agent = Agent.new()
                    resp = await anon.post(
                        "/api/v1/enroll", json={"token": token, "mac": mac, "csr": agent.csr()}
                    )
                    resp.raise_for_status()
                    agent.take(resp.json()["certificate"])
                    agents.append((resp.json()["node"], agent))
            enroll_rate = enrollments / (time.perf_counter() - t0)
            node_id, agent = agents[0]
            headers = {"Authorization": f"Bearer {admin}"}
            async with (
                httpx.AsyncClient(transport=transport, base_url=url, headers=headers) as bearer,
                httpx.AsyncClient(transport=transport, base_url=url, auth=agent.auth()) as signed,
            ):
                await _timed(bearer, f"/api/v1/nodes/{node_id}", 20)  # warm up both paths
                await _timed(signed, "/api/v1/nodes/self", 20)
                b = await _timed(bearer, f"/api/v1/nodes/{node_id}", requests)
                s = await _timed(signed, "/api/v1/nodes/self", requests)
        finally:
            await runtime.stop()
    figures = {
        "requests": requests,
        "bearer_median_ms": statistics.median(b) * 1000,
        "signed_median_ms": statistics.median(s) * 1000,
        "signed_over_bearer": statistics.median(s) / statistics.median(b),
        "enrollments_per_s": enroll_rate,
    }
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (< 60 s)")
    args = parser.parse_args()
    n, e = (300, 30) if args.quick else (3000, 200)
    figures = asyncio.run(main(n, e))
    print(
        f"bearer token: {figures['bearer_median_ms']:.2f} ms median; "
        f"signed node request: {figures['signed_median_ms']:.2f} ms median "
        f"(x{figures['signed_over_bearer']:.2f}); "
        f"{figures['enrollments_per_s']:.1f} enrollments/s with a CSR"
    )
    print(json.dumps(figures))
