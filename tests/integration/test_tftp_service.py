"""The TFTP service inside a runtime: settings, the entry point, and ``boot.tftp.transfer``
events on both databases."""

from __future__ import annotations

import asyncio
import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from roost.errors import ConfigError
from roost.events import Event, EventFilter
from roost.service import Runtime
from roost.settings import Settings, TFTPSettings, load_settings
from roost.tftp.files import MemoryFile, TFTPFile
from roost.tftp.service import EVENT_TRANSFER, TFTPService, make
from tests.integration.tftp_helpers import need, run, sha256


def test_entry_point_and_defaults(tmp_path: Path) -> None:
    eps = {ep.name: ep.value for ep in entry_points(group="roost.services")}
    assert eps["tftp"] == "roost.tftp.service:make"
    s = load_settings(None, {"data_dir": tmp_path})
    assert (s.tftp.enabled, s.tftp.host, s.tftp.port) == (False, "0.0.0.0", 69)
    assert make(Runtime.create(s)) is None  # port 69 stays unbound unless enabled
    assert (s.tftp.busy_poll, s.tftp.workers, s.tftp.pin_workers) == (50, "auto", True)
    pinned = make(Runtime.create(with_tftp(s, workers=2)))
    assert pinned is not None and pinned.server._pool is not None and pinned.server._pool.pin
    service = make(Runtime.create(with_tftp(s, busy_poll=20)))
    assert service is not None and service.server.busy_poll == pytest.approx(20e-6)
    named = s.model_copy(update={"tftp": TFTPSettings(enabled=True, host="pxe.example")})
    with pytest.raises(ConfigError, match=r"tftp\.host"):
        make(Runtime.create(named))


def test_workers_auto_is_one_per_cpu_when_there_are_several(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for cpus, want in ((1, 0), (2, 2), (8, 8), (200, 64)):
        monkeypatch.setattr("os.sched_getaffinity", lambda _pid, n=cpus: set(range(n)))
        assert TFTPSettings().worker_count == want
        assert TFTPSettings(workers=3).worker_count == 3  # a number means what it always did
        assert TFTPSettings(workers=0).worker_count == 0
    monkeypatch.setenv("ROOST_TFTP__WORKERS", "4")
    assert load_settings(None, {"data_dir": tmp_path}).tftp.workers == 4
    monkeypatch.setenv("ROOST_TFTP__WORKERS", "auto")
    assert load_settings(None, {"data_dir": tmp_path}).tftp.workers == "auto"
    monkeypatch.setenv("ROOST_TFTP__WORKERS", "many")
    with pytest.raises(ConfigError, match=r"tftp\.workers"):
        load_settings(None, {"data_dir": tmp_path})


def test_default_service_has_workers_on_more_than_one_cpu(tmp_path: Path) -> None:
    s = load_settings(None, {"data_dir": tmp_path})
    service = make(Runtime.create(with_tftp(s)))
    assert service is not None
    pool = service.server._pool
    if len(os.sched_getaffinity(0)) > 1:
        assert pool is not None and pool.count == len(os.sched_getaffinity(0))
    else:
        assert pool is None


def with_tftp(settings: Settings, **kw: Any) -> Settings:
    tftp = TFTPSettings(enabled=True, host="127.0.0.1", port=0, **kw)
    return settings.model_copy(update={"tftp": tftp})


async def wait_events(runtime: Runtime, count: int) -> list[Event]:
    for _ in range(200):
        found = await runtime.bus.history(EventFilter(types=(EVENT_TRANSFER,)))
        if len(found) >= count:
            return found
        await asyncio.sleep(0.025)
    raise AssertionError(f"expected {count} {EVENT_TRANSFER} events")


async def test_service_serves_root_and_publishes_events(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    need("curl")
    svc = make(Runtime(with_tftp(settings), runtime.db, runtime.bus))
    assert isinstance(svc, TFTPService)
    assert svc.root == settings.data_dir / "tftp"
    await svc.start()
    try:
        assert svc.root.is_dir()
        (svc.root / "undionly.kpxe").write_bytes(b"\x55\xaa" * 5000)
        url = f"tftp://127.0.0.1:{svc.server.port}"
        rc, out = await run("curl", "-sS", "-o", "got", f"{url}/undionly.kpxe", cwd=tmp_path)
        assert rc == 0, out
        assert sha256(tmp_path / "got") == sha256(svc.root / "undionly.kpxe")
        await run("curl", "-sS", "-o", "none", f"{url}/missing.efi", cwd=tmp_path)
        assert svc.health().ok
        events = await wait_events(runtime, 2)
    finally:
        await svc.stop()
    ok, missing = events[0].data, events[1].data
    assert {k: ok[k] for k in ("mac", "ip", "file", "bytes", "outcome")} == {
        "mac": None, "ip": "127.0.0.1", "file": "undionly.kpxe", "bytes": 10000, "outcome": "ok",
    }  # fmt: skip
    assert ok["seconds"] >= 0
    assert (missing["file"], missing["outcome"]) == ("missing.efi", "not_found")
    assert events[0].subject == "127.0.0.1"
    assert not svc.health().ok


class Greeting:
    async def resolve(self, path: str, client: tuple[str, int]) -> TFTPFile | None:
        return MemoryFile(f"#!ipxe\necho {client[0]}\n".encode()) if path == "boot.ipxe" else None


async def test_other_resolvers_go_before_the_directory(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    need("curl")
    svc = make(Runtime(with_tftp(settings, root=tmp_path / "files"), runtime.db, runtime.bus))
    assert isinstance(svc, TFTPService)
    svc.chain.resolvers.insert(0, Greeting())
    await svc.start()
    try:
        (tmp_path / "files" / "boot.ipxe").write_text("from disk\n")
        url = f"tftp://127.0.0.1:{svc.server.port}/boot.ipxe"
        rc, out = await run("curl", "-sS", "-o", "got", url, cwd=tmp_path)
    finally:
        await svc.stop()
    assert rc == 0, out
    assert (tmp_path / "got").read_text() == "#!ipxe\necho 127.0.0.1\n"
