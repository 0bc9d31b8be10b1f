"""The HTTP boot server on loopback, driven by the real curl: Range, HEAD, ETag, tokens,
traversal, callbacks and fetch events."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from typing import Any

import httpx
import pytest

from roost.boot.service import BootService
from roost.events import EventFilter
from roost.service import Runtime

from .conftest import chunks_of, curl

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
"""For what the database has no part in: run once, not once per backend."""
MAC = "52:54:00:aa:bb:01"
OTHER = "52:54:00:aa:bb:02"


async def _events(runtime: Runtime, type_: str, count: int = 1) -> list[dict[str, Any]]:
    for _ in range(200):  # emit() is batched: wait until the writer stored them
        found = await runtime.bus.history(EventFilter(types=(type_,)))
        if len(found) >= count:
            return [e.data for e in found]
        await asyncio.sleep(0.025)
    raise AssertionError(f"fewer than {count} {type_} events")


@pytest.fixture
async def blob(boot: BootService) -> bytes:
    data = os.urandom(8 * 2**20 + 123)  # several socket buffers: sendfile waits in between
    await boot.store.put("vmlinuz", chunks_of(data))
    return data


@SQLITE_ONLY
async def test_full_range_head_and_etag_with_curl(
    boot_url: str, blob: bytes, runtime: Runtime
) -> None:
    url = f"{boot_url}/files/vmlinuz"
    sha = hashlib.sha256(blob).hexdigest()
    out = await curl("-o", "-", "-w", "\n%{http_code} %{num_connects}", url, url)
    assert out.count("\n200 ") == 2
    body = out.encode("latin-1").split(b"\n200 ")[0]
    assert hashlib.sha256(body).hexdigest() == sha
    assert out.endswith("200 0"), "the second request reused the kept-alive connection"

    out = await curl("-r", "10-19", "-D", "-", url)
    head, payload = out.split("\r\n\r\n", 1)
    assert head.startswith("HTTP/1.1 206")
    assert f"content-range: bytes 10-19/{len(blob)}" in head
    assert payload.encode("latin-1") == blob[10:20]

    out = await curl("-r", "-5", "-o", "-", url)
    assert out.encode("latin-1") == blob[-5:]

    out = await curl("-I", url)
    assert out.startswith("HTTP/1.1 200")
    assert f"content-length: {len(blob)}" in out
    assert f'etag: "{sha}"' in out
    assert "accept-ranges: bytes" in out

    out = await curl(
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        "-H",
        f'If-None-Match: W/"x", "{sha}"',
        url,
    )
    assert out == "304 0"
    out = await curl("-o", "/dev/null", "-w", "%{http_code}", "-H", 'If-None-Match: "x"', url)
    assert out == "200"
    out = await curl("-r", f"{len(blob)}-", "-D", "-", "-o", "/dev/null", url)
    assert out.startswith("HTTP/1.1 416")
    assert f"content-range: bytes */{len(blob)}" in out
    out = await curl(
        "-r",
        "0-9",
        "-H",
        'If-Range: "stale"',
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        url,
    )
    assert out == f"200 {len(blob)}"

    fetches = await _events(runtime, "boot.http.fetch", 8)
    full = [f for f in fetches if f["status"] == 200 and f["bytes"] == len(blob)]
    assert full and full[0]["ip"] == "127.0.0.1" and full[0]["path"] == "/files/vmlinuz"
    assert full[0]["complete"] is True and full[0]["seconds"] >= 0
    assert {f["status"] for f in fetches} >= {200, 206, 304, 416}


TRAVERSAL = [
    "/files/../etc/passwd",
    "/files/%2e%2e/%2e%2e/etc/passwd",
    "/files/..%2f..%2fetc%2fpasswd",
    "/files/a%00b",
    "/files/a%5c..%5cb",
    "/files/.secret",
    "/files/%ff",
    "/files//etc/passwd",
    "/private/" + MAC + "/../files/vmlinuz",
    "/nocloud/" + MAC + "/../../etc/passwd",
]


@SQLITE_ONLY
async def test_traversal_in_urls_is_refused(boot_url: str, blob: bytes) -> None:
    for path in TRAVERSAL:
        out = await curl("--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", boot_url + path)
        assert out in ("400", "403", "404"), path


@SQLITE_ONLY
async def test_node_private_file_needs_that_nodes_token(boot_url: str, boot: BootService) -> None:
    await boot.store.put("id_ed25519", chunks_of(b"PRIVATE KEY"), node=MAC)
    tokens = boot.documents.tokens if boot.documents else None
    assert tokens is not None
    good, other = tokens.issue(MAC), tokens.issue(OTHER)
    wrong = good[:-4] + "0000"

    async def status(path: str) -> str:
        return await curl("-o", "/dev/null", "-w", "%{http_code}", boot_url + path)

    assert await status(f"/private/{MAC}/id_ed25519") == "403"  # no token
    assert await status(f"/private/{MAC}/{wrong}/id_ed25519") == "403"
    assert await status(f"/private/{MAC}/{other}/id_ed25519") == "403"  # another node's
    assert await status(f"/private/{OTHER}/{other}/id_ed25519") == "404"  # not its file
    assert await status("/files/id_ed25519") == "404"  # never public
    out = await curl(f"{boot_url}/private/{MAC.upper().replace(':', '-')}/{good}/id_ed25519")
    assert out == "PRIVATE KEY"
    out = await curl(f"{boot_url}/private/{MAC}/id_ed25519?token={good}")
    assert out == "PRIVATE KEY"


async def test_profile_documents_over_http(
    boot_url: str, boot: BootService, api: httpx.AsyncClient, runtime: Runtime
) -> None:
    profile = {
        "kernel": "vmlinuz",
        "initrds": ["initrd.img"],
        "cmdline": "console=ttyS0 roost.callback={{ callback_url }}",
        "templates": {"user-data": "#cloud-config\nhostname: {{ hostname }}\n# {{ token }}\n"},
    }
    assert (await api.put("/api/v1/boot/profiles/commission", json=profile)).status_code == 201
    rule = {"profile": "commission", "arch": "bios"}
    assert (await api.post("/api/v1/boot/rules", json=rule)).status_code == 201

    upper = MAC.upper().replace(":", "-")
    script = await curl(f"{boot_url}/boot/{upper}.ipxe?platform=pcbios&buildarch=i386")
    host = boot_url.removeprefix("http://")
    assert script.startswith("#!ipxe\n# Roost: profile commission for " + MAC)
    assert f"kernel http://{host}/files/vmlinuz initrd=initrd.img console=ttyS0" in script
    token = boot.documents.tokens.issue(MAC) if boot.documents else ""
    assert f"roost.callback=http://{host}/boot/callback/{token}" in script
    efi = await curl(f"{boot_url}/boot/{OTHER}.ipxe?platform=efi&buildarch=x86_64")
    assert "profile local" in efi and efi.rstrip().endswith("exit")

    async def code(path: str) -> str:
        return await curl("-o", "/dev/null", "-w", "%{http_code}", boot_url + path)

    assert await code(f"/nocloud/{MAC}/user-data") == "403"
    assert await code(f"/nocloud/{MAC}/user-data?token=bad") == "403"
    user_data = await curl(f"{boot_url}/nocloud/{MAC}/{token}/user-data")
    assert user_data.startswith("#cloud-config\nhostname: node-525400aabb01\n")
    meta = await curl(f"{boot_url}/nocloud/{MAC}/meta-data")
    assert meta == "instance-id: roost-525400aabb01\nlocal-hostname: node-525400aabb01\n"
    assert await code(f"/preseed/{MAC}/{token}/preseed.cfg") == "404"  # none defined
    assert await code(f"/boot/{MAC}.ipxe?arch=Bad%20Arch") == "400"
    assert await code("/boot/not-a-mac.ipxe") == "400"

    paths = [f["path"] for f in await _events(runtime, "boot.http.fetch", 9)]
    assert all(token not in p for p in paths), "tokens must not reach the event log"
    assert f"/nocloud/{MAC}/<token>/user-data" in paths


async def test_callback_publishes_facts(boot_url: str, boot: BootService, runtime: Runtime) -> None:
    assert boot.documents is not None
    token = boot.documents.tokens.issue(MAC)
    facts = {"mac": MAC, "cpu": {"count": 2}, "memory": 536870912, "disks": ["vda"]}
    out = await curl(
        "-H",
        "content-type: application/json",
        "-d",
        json.dumps(facts),
        f"{boot_url}/boot/callback/{token}",
    )
    assert json.loads(out) == {"ok": True, "mac": MAC}
    (event,) = await _events(runtime, "boot.callback")
    assert event == {"mac": MAC, "ip": "127.0.0.1", "facts": facts}

    async def post(path: str, data: str) -> str:
        return await curl("-o", "/dev/null", "-w", "%{http_code}", "-d", data, boot_url + path)

    assert await post("/boot/callback/" + token[:-1] + "0", "{}") == "403"
    assert await post("/boot/callback/nonsense", "{}") == "403"
    assert await post(f"/boot/callback/{token}", "not json") == "400"
    assert await post(f"/boot/callback/{token}", "[1, 2]") == "400"
    assert await post("/files/vmlinuz", "x") == "405"
    assert len(await _events(runtime, "boot.callback")) == 1
