"""`roost dhcp` against a real server: subnet add/list/rm and `leases --follow --json`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from roost.service import Runtime

ROOST = str(Path(sys.executable).with_name("roost"))


async def cli(live_url: str, token: str, *args: str) -> tuple[int, str, str]:
    # the server runs on this event loop: the CLI must not block it
    env = dict(os.environ, ROOST_URL=live_url, ROOST_TOKEN=token)
    proc = await asyncio.create_subprocess_exec(
        ROOST, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_subnet_commands_and_follow(
    live_url: str, admin_token: str, runtime: Runtime
) -> None:
    rc, _, err = await cli(live_url, admin_token, "dhcp", "subnet", "add", "lab", "10.70.0.0/24",
                           "--pool", "10.70.0.10-10.70.0.20", "--router", "10.70.0.1")  # fmt: skip
    assert rc == 0, err
    rc, _, err = await cli(live_url, admin_token, "dhcp", "subnet", "add", "bad", "10.71.0.0/24",
                           "--pool", "10.72.0.1-10.72.0.9")  # fmt: skip
    assert rc == 1 and "not inside subnet 10.71.0.0/24" in err
    rc, out, _ = await cli(live_url, admin_token, "dhcp", "subnet", "list", "--json")
    assert [(s["name"], s["pools"][0]["start"]) for s in json.loads(out)] == [("lab", "10.70.0.10")]
    rc, out, err = await cli(live_url, admin_token, "dhcp", "subnet", "add", "east", "10.73.0.0/24",
                             "--site", "east")  # fmt: skip
    assert rc == 0 and "added to site east" in out, err
    rc, out, _ = await cli(live_url, admin_token, "dhcp", "subnet", "list")
    cells = [line.strip("│ ").split("│") for line in out.splitlines() if "10.7" in line]
    sites = {c[0].strip(): c[1].strip() for c in cells}
    assert sites == {"lab": runtime.settings.site, "east": "east"}, out
    await cli(live_url, admin_token, "dhcp", "subnet", "rm", "east")
    env = dict(os.environ, ROOST_URL=live_url, ROOST_TOKEN=admin_token)
    follow = await asyncio.create_subprocess_exec(
        ROOST, "dhcp", "leases", "--follow", "--json", env=env, stdout=asyncio.subprocess.PIPE
    )
    data = {"mac": "52:54:00:00:00:09", "ip": "10.70.0.10", "hostname": "n9", "subnet": "lab"}

    async def keep_publishing() -> None:
        # the follower shows what happens after it started; it starts slowly, so repeat
        while True:
            await runtime.bus.publish("dhcp.lease.bound", data["mac"], data)
            await asyncio.sleep(0.5)

    publisher = asyncio.create_task(keep_publishing())
    try:
        assert follow.stdout is not None
        ev = json.loads(await asyncio.wait_for(follow.stdout.readline(), 60))
        assert ev["type"] == "dhcp.lease.bound" and ev["data"]["ip"] == "10.70.0.10"
    finally:
        publisher.cancel()
        follow.kill()
        await follow.wait()
    rc, _, err = await cli(live_url, admin_token, "dhcp", "subnet", "rm", "lab")
    assert rc == 0, err


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_subnet_add_takes_every_boot_setting(live_url: str, admin_token: str) -> None:
    rc, _, err = await cli(
        live_url, admin_token, "dhcp", "subnet", "add", "lab", "10.70.0.0/24",
        "--bios", "pxelinux.0", "--efi-x64", "grubx64.efi", "--efi-arm64", "grubaa64.efi",
        "--ipxe-script-url", "http://10.70.0.1/boot.ipxe?mac=${mac}",
        "--tag-boot-file", "gpu=gpu.kpxe", "--tag-ipxe-script", "gpu=http://x/gpu.ipxe",
        "--tag-boot-file", "old=old.kpxe",
    )  # fmt: skip
    assert rc == 0, err
    rc, out, _ = await cli(live_url, admin_token, "dhcp", "subnet", "list", "--json")
    assert json.loads(out)[0]["boot"] == {
        "enabled": True,
        "bios": "pxelinux.0",
        "efi_x64": "grubx64.efi",
        "efi_arm64": "grubaa64.efi",
        "ipxe_script_url": "http://10.70.0.1/boot.ipxe?mac=${mac}",
        "tags": {
            "gpu": {"boot_file": "gpu.kpxe", "ipxe_script": "http://x/gpu.ipxe"},
            "old": {"boot_file": "old.kpxe", "ipxe_script": None},
        },
    }
    rc, _, err = await cli(live_url, admin_token, "dhcp", "subnet", "add", "off",
                           "10.71.0.0/24", "--no-boot")  # fmt: skip
    assert rc == 0, err
    rc, out, _ = await cli(live_url, admin_token, "dhcp", "subnet", "list", "--json")
    assert [s["boot"]["enabled"] for s in json.loads(out)] == [True, False]
    rc, _, err = await cli(live_url, admin_token, "dhcp", "subnet", "add", "bad",
                           "10.72.0.0/24", "--tag-boot-file", "gpu")  # fmt: skip
    assert rc == 2 and "TAG=VALUE" in err
    rc, _, err = await cli(live_url, admin_token, "dhcp", "subnet", "add", "bad",
                           "10.72.0.0/24", "--ipxe-script-url", "/boot.ipxe")  # fmt: skip
    assert rc == 1 and "ipxe_script_url" in err, err
