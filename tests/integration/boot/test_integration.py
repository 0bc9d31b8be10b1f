"""The boot capability with its neighbours: the inventory chooses profiles, the TFTP server
serves the store and rendered scripts."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from roost.boot.service import BootService
from roost.service import Runtime
from roost.tftp.service import TFTPService

from .conftest import chunks_of, curl, curl_exit

MAC = "52:54:00:cc:00:01"
BASE = "http://10.0.0.1:8442"


async def _profile(api: httpx.AsyncClient, name: str) -> None:
    body = {"kernel": f"{name}.vmlinuz"}
    assert (await api.put(f"/api/v1/boot/profiles/{name}", json=body)).status_code == 201


async def test_inventory_tags_names_and_pins_choose_the_profile(api: httpx.AsyncClient) -> None:
    await _profile(api, "gpu")
    await _profile(api, "pinned")
    await api.post("/api/v1/boot/rules", json={"profile": "gpu", "tag": "gpu"})
    node = {"mac": MAC, "hostname": "web1", "tags": ["gpu"], "architecture": "bios"}
    created = await api.post("/api/v1/nodes", json=node)
    assert created.status_code == 201, created.text

    async def preview() -> httpx.Response:
        return await api.get(f"/api/v1/boot/render/{MAC}/ipxe", params={"http_base": BASE})

    got = await preview()
    assert got.headers["x-roost-profile"] == "gpu"
    assert f"for {MAC} (web1)" in got.text
    assert "initrd" not in got.text.split("\n")[2] and "gpu.vmlinuz" in got.text
    patched = await api.patch(f"/api/v1/nodes/{MAC}", json={"boot_profile": "pinned"})
    assert patched.status_code == 200, patched.text
    assert (await preview()).headers["x-roost-profile"] == "pinned"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_tftp_serves_the_store_and_rendered_scripts(runtime: Runtime) -> None:
    s = runtime.settings
    s.boot = s.boot.model_copy(
        update={
            "enabled": True,
            "host": "127.0.0.1",
            "http_port": 0,
            "import_ipxe": False,
            "public_url": BASE,
        }
    )
    s.tftp = s.tftp.model_copy(update={"enabled": True, "host": "127.0.0.1", "port": 0})
    boot, tftp = BootService(runtime), TFTPService(runtime)
    runtime.services += [boot, tftp]  # the order Runtime.start uses: by name
    for svc in runtime.services:
        await svc.start()
    try:
        data = bytes(range(256)) * 4000
        await boot.store.put("undionly.kpxe", chunks_of(data))
        await boot.store.put("secret.key", chunks_of(b"k"), node=MAC)
        url = f"tftp://127.0.0.1:{tftp.server.port}"
        got = await curl("--tftp-blksize", "1468", "-o", "-", f"{url}/undionly.kpxe")
        assert hashlib.sha256(got.encode("latin-1")).digest() == hashlib.sha256(data).digest()
        script = await curl(f"{url}/boot/{MAC}.ipxe")
        assert script.startswith(f"#!ipxe\n# Roost: {MAC}")
        assert "profile local" in script
        status, _, err = await curl_exit("-o", "/dev/null", f"{url}/secret.key")
        assert status == 68, err  # TFTP "file not found": node-private files never go out
    finally:
        for svc in reversed(runtime.services):
            await svc.stop()
        runtime.services.clear()
