"""boot.http_root: an existing PXE tree served at the root of the boot server's URL space,
driven by the real curl (Range, HEAD, ETag, traversal), beside Roost's own paths."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.boot.service import BootService
from roost.service import Runtime

from .conftest import chunks_of, curl

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

SCRIPT = b"#!ipxe\nkernel /images/vmlinuz\nboot\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "pxe"
    (root / "images").mkdir(parents=True)
    (root / "boot.ipxe").write_bytes(SCRIPT)
    (root / "images" / "vmlinuz").write_bytes(os.urandom(3 * 2**20 + 7))
    (root / "same.ipxe").symlink_to("boot.ipxe")  # a link inside the tree is fine
    secret = tmp_path / "secret"
    secret.write_text("not for nodes")
    (root / "escape").symlink_to(secret)
    return root


@pytest.fixture
async def served(runtime: Runtime, tree: Path) -> AsyncIterator[str]:
    runtime.settings.boot = runtime.settings.boot.model_copy(
        update={"enabled": True, "host": "127.0.0.1", "http_port": 0, "import_ipxe": False,
                "http_root": tree}
    )  # fmt: skip
    svc = BootService(runtime)
    await svc.start()
    try:
        await svc.store.put("ipxe.efi", chunks_of(b"from the store"))
        assert svc.address is not None
        yield f"http://127.0.0.1:{svc.address[1]}"
    finally:
        await svc.stop()


async def status(*args: str) -> str:
    return await curl("--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", *args)


async def test_files_of_the_tree_are_served_as_nginx_served_them(served: str, tree: Path) -> None:
    assert (await curl(f"{served}/boot.ipxe")).encode() == SCRIPT
    assert (await curl(f"{served}/same.ipxe?mac=52:54:00:00:00:01")).encode() == SCRIPT
    kernel = (tree / "images" / "vmlinuz").read_bytes()
    part = await curl("-r", "1000-1999", f"{served}/images/vmlinuz")
    assert part.encode("latin-1") == kernel[1000:2000]
    head = await curl("-I", f"{served}/images/vmlinuz")
    assert f"content-length: {len(kernel)}" in head.lower()
    etag = next(line.split(": ", 1)[1].strip() for line in head.splitlines()
                if line.lower().startswith("etag:"))  # fmt: skip
    fds = len(os.listdir("/proc/self/fd"))  # the server runs in this process
    for _ in range(5):  # answers without a body close the file they opened
        assert await status("-H", f"If-None-Match: {etag}", f"{served}/images/vmlinuz") == "304"
        assert await status("-r", "9999999-", f"{served}/images/vmlinuz") == "416"
        assert await status("-I", f"{served}/images/vmlinuz") == "200"
    assert len(os.listdir("/proc/self/fd")) <= fds
    # Roost's own paths come first: the store, not a file of the tree
    assert await curl(f"{served}/files/ipxe.efi") == "from the store"
    (tree / "images" / "vmlinuz").write_bytes(b"new kernel")  # a changed file: a new ETag
    assert await status("-H", f"If-None-Match: {etag}", f"{served}/images/vmlinuz") == "200"


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/escape", "403"),  # a symlink out of the tree
        ("/images", "403"),  # not a regular file
        ("/../secret", "403"),
        ("/images/%2e%2e/%2e%2e/secret", "403"),
        ("/a%5cb", "403"),
        ("/missing.ipxe", "404"),
        ("/", "404"),
    ],
)
async def test_the_tree_keeps_tftps_traversal_rules(served: str, path: str, code: str) -> None:
    assert await status(served + path) == code
