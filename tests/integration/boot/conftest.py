"""Fixtures for the boot capability: a running boot service on a loopback port."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator

import pytest

from roost.boot.service import BootService
from roost.service import Runtime


@pytest.fixture
async def boot(runtime: Runtime) -> AsyncIterator[BootService]:
    """The boot service on 127.0.0.1 (free port), without the Debian iPXE import."""
    runtime.settings.boot = runtime.settings.boot.model_copy(
        update={"enabled": True, "host": "127.0.0.1", "http_port": 0, "import_ipxe": False}
    )
    svc = BootService(runtime)
    runtime.services.append(svc)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()
        runtime.services.remove(svc)


@pytest.fixture
def boot_url(boot: BootService) -> str:
    assert boot.address is not None
    return f"http://127.0.0.1:{boot.address[1]}"


async def curl_exit(*args: str) -> tuple[int, str, str]:
    """Run the real curl client: (exit status, what it printed, what it complained)."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (Debian package curl; scripts/bootstrap installs it)")
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode("latin-1"), err.decode()


async def curl(*args: str) -> str:
    """Run curl and return what it printed; it must not fail as a client."""
    status, out, err = await curl_exit(*args)
    assert status == 0, f"curl {' '.join(args)}: {err}"
    return out


async def chunks_of(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]
