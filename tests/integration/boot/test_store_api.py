"""The boot-file store over the API, on both databases: streaming CRUD, dedup, crash leftovers."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest

from roost.boot.service import BootService, store_for
from roost.service import Runtime

from .conftest import chunks_of


async def test_put_list_get_replace_delete(api: httpx.AsyncClient, runtime: Runtime) -> None:
    data = os.urandom(3 * 2**20 + 17)
    sha = hashlib.sha256(data).hexdigest()

    # a streamed body (no Content-Length), as a chunked upload arrives
    resp = await api.put(
        "/api/v1/boot/files/debian/vmlinuz?arch=x86_64-efi", content=chunks_of(data)
    )
    assert resp.status_code == 201, resp.text
    assert resp.json() | {"created_at": None} == {
        "name": "debian/vmlinuz",
        "sha256": sha,
        "size": len(data),
        "arch": "x86_64-efi",
        "content_type": "application/octet-stream",
        "node": None,
        "created_at": None,
    }
    listed = (await api.get("/api/v1/boot/files")).json()
    assert [f["name"] for f in listed] == ["debian/vmlinuz"]

    got = await api.get("/api/v1/boot/files/debian/vmlinuz")
    assert got.status_code == 200 and got.content == data
    assert got.headers["etag"] == f'"{sha}"'

    store = store_for(runtime)
    assert store.blob_path(sha).read_bytes() == data
    replaced = await api.put("/api/v1/boot/files/debian/vmlinuz", content=b"new kernel")
    assert replaced.status_code == 200
    assert not store.blob_path(sha).exists(), "the replaced blob had no other name"

    gone = await api.delete("/api/v1/boot/files/debian/vmlinuz")
    assert gone.status_code == 200
    assert not store.blob_path(gone.json()["sha256"]).exists()
    assert (await api.get("/api/v1/boot/files/debian/vmlinuz")).status_code == 404
    assert (await api.delete("/api/v1/boot/files/debian/vmlinuz")).status_code == 404


async def test_same_bytes_share_a_blob_until_the_last_name_goes(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    for name in ("a.img", "b.img"):
        assert (await api.put(f"/api/v1/boot/files/{name}", content=b"same")).status_code == 201
    blob = store_for(runtime).blob_path(hashlib.sha256(b"same").hexdigest())
    await api.delete("/api/v1/boot/files/a.img")
    assert blob.exists()
    await api.delete("/api/v1/boot/files/b.img")
    assert not blob.exists()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_traversal_names_refused_by_the_api(api: httpx.AsyncClient) -> None:
    names = [
        "..%2F..%2Fetc%2Fpasswd",
        "%2E%2E",
        ".hidden",
        "a%5Cb",
        "a%00b",
        "a%2F%2Fb",
        "a%2F.%2Fb",
        "%2Fetc%2Fpasswd",
    ]
    for name in names:
        resp = await api.put(f"/api/v1/boot/files/{name}", content=b"x")
        assert resp.status_code in (404, 422), (name, resp.text)
        assert (await api.get(f"/api/v1/boot/files/{name}")).status_code in (404, 422)
    assert (await api.get("/api/v1/boot/files")).json() == []


async def test_size_limit_and_viewer_rights(api: httpx.AsyncClient, runtime: Runtime) -> None:
    runtime.settings.boot = runtime.settings.boot.model_copy(update={"max_file_size": 1000})
    big = await api.put("/api/v1/boot/files/big.img", content=b"x" * 1001)
    assert big.status_code == 413
    assert "boot.max_file_size" in big.json()["detail"]
    streamed = await api.put("/api/v1/boot/files/big.img", content=chunks_of(b"x" * 1001, 100))
    assert streamed.status_code == 413  # no Content-Length: caught while streaming
    assert list((runtime.settings.data_dir / "boot" / "tmp").iterdir()) == []
    assert (await api.get("/api/v1/boot/files")).json() == []

    mac = "52:54:00:00:00:09"
    assert (
        await api.put(f"/api/v1/boot/files/key?node={mac}", content=b"secret")
    ).status_code == 201
    viewer = (await api.post("/api/v1/tokens", json={"name": "v", "role": "viewer"})).json()
    as_viewer = {"Authorization": f"Bearer {viewer['token']}"}
    assert (await api.get("/api/v1/boot/files", headers=as_viewer)).status_code == 200
    denied = await api.get("/api/v1/boot/files/key", headers=as_viewer)
    assert denied.status_code == 403
    assert (
        await api.put("/api/v1/boot/files/x", content=b"", headers=as_viewer)
    ).status_code == 403
    anonymous = await api.get("/api/v1/boot/files", headers={"Authorization": ""})
    assert anonymous.status_code == 401


async def test_start_removes_crash_leftovers_and_imports_ipxe(
    api: httpx.AsyncClient, runtime: Runtime, tmp_path
) -> None:
    await api.put("/api/v1/boot/files/keep.img", content=b"keep")
    store = store_for(runtime)
    partial = store.tmp / "dead.part"
    partial.write_bytes(b"half an upload")
    orphan = store.blob_path("ab" * 32)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"renamed, never committed")

    fake_ipxe = tmp_path / "ipxe"
    fake_ipxe.mkdir()
    (fake_ipxe / "undionly.kpxe").write_bytes(b"bios ipxe")
    (fake_ipxe / "ipxe.efi").write_bytes(b"efi ipxe")  # snponly.efi missing: only logged
    runtime.settings.boot = runtime.settings.boot.model_copy(
        update={"host": "127.0.0.1", "http_port": 0, "ipxe_dir": fake_ipxe}
    )
    svc = BootService(runtime)
    await svc.start()
    try:
        assert not partial.exists() and not orphan.exists()
        assert store.blob_path(hashlib.sha256(b"keep").hexdigest()).exists()
        files = {f["name"]: f for f in (await api.get("/api/v1/boot/files")).json()}
        assert files["undionly.kpxe"]["arch"] == "bios"
        assert files["ipxe.efi"]["arch"] == "x86_64-efi"
        assert "snponly.efi" not in files
        assert await svc.import_ipxe(fake_ipxe) == []  # already there: nothing to do
    finally:
        await svc.stop()
