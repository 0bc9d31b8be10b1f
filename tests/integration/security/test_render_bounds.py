"""Item 6 of issue #15: one profile template must not stall ``roost serve``.

An operator's template runs on every anonymous fetch of ``/boot/<mac>.ipxe``. Before, nested
``range`` loops or ``'a'*10**7`` ran on the event loop: ``/healthz`` and boot-file downloads
waited behind it. Now renders run in worker processes with a time limit (the worker is killed
and replaced) and an output limit, and a failure is a ``boot.render.failed`` event and a 500
whose short reason names the profile and the limit, never the template's text.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.integration.security.conftest import Roost, start_roost

MAC = "52:54:00:15:06:01"
RUNAWAY = "#!ipxe\n{% for i in range(15000) %}{% for j in range(15000) %}{% endfor %}{% endfor %}\n"
TIMEOUT = 3.0


def render_workers(roost: Roost) -> list[int]:
    """The pids of the server's render worker processes (its ``spawn`` children)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == roost.proc.pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def serve_profile(roost: Roost, name: str, ipxe: str) -> None:
    api = roost.api()
    r = api.put(f"/boot/profiles/{name}", json={"templates": {"ipxe": ipxe}})
    assert r.status_code == 201, r.text
    r = api.post("/boot/rules", json={"profile": name, "mac": MAC})
    assert r.status_code == 201, r.text


def test_runaway_template_does_not_stall_the_server(tmp_path: Path) -> None:
    roost = start_roost(tmp_path, ROOST_BOOT__RENDER_TIMEOUT=str(TIMEOUT))
    try:
        assert roost.api().put("/boot/files/small.bin", content=b"x" * 4096).status_code == 201
        serve_profile(roost, "runaway", RUNAWAY)
        workers_before = render_workers(roost)
        assert len(workers_before) == 2
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            fetch = pool.submit(roost.boot().get, f"/boot/{MAC}.ipxe")
            time.sleep(0.5)  # the render is under way
            assert not fetch.done()
            # Both must answer while the runaway render still runs (before its own deadline).
            quick = TIMEOUT - (time.monotonic() - started) - 0.2
            health = httpx.get(f"{roost.url}/healthz", timeout=quick)
            assert health.status_code == 200
            boot_file = httpx.get(f"{roost.boot_url}/files/small.bin", timeout=quick)
            assert boot_file.status_code == 200
            assert boot_file.content == b"x" * 4096
            assert not fetch.done(), "the answers must come while the runaway still renders"
            got = fetch.result(timeout=30)
        assert got.status_code == 500
        assert got.text == f"runaway ipxe: render took over {TIMEOUT:g} s\n"
        assert "range" not in got.text
        # The runaway worker was killed (it burns no more CPU) and replaced.
        workers_after = render_workers(roost)
        assert len(workers_after) == 2
        assert set(workers_after) != set(workers_before)

        event = roost.wait_for_event("boot.render.failed")[-1]
        data = event["data"]
        assert isinstance(data, dict)
        assert {k: data[k] for k in ("profile", "kind", "mac", "reason")} == {
            "profile": "runaway",
            "kind": "ipxe",
            "mac": MAC,
            "reason": "timeout",
        }

        # A fixed profile renders again on the replacement workers.
        r = roost.api().put("/boot/profiles/runaway", json={"templates": {"ipxe": "#!ipxe\n"}})
        assert r.status_code == 200, r.text
        again = roost.boot().get(f"/boot/{MAC}.ipxe")
        assert again.status_code == 200
        assert again.text == "#!ipxe\n"
    finally:
        roost.stop()


def test_huge_output_fails_with_the_output_limit(roost: Roost) -> None:
    serve_profile(roost, "huge", "#!ipxe\n{{ 'a'*10**7 }}\n")
    started = time.monotonic()
    got = roost.boot().get(f"/boot/{MAC}.ipxe")
    assert got.status_code == 500
    assert "more than 1048576" in got.text
    assert "'a'" not in got.text
    assert time.monotonic() - started < 2.0
    event = roost.wait_for_event("boot.render.failed")[-1]
    data = event["data"]
    assert isinstance(data, dict)
    assert (data["profile"], data["reason"]) == ("huge", "output")

    # Many small pieces hit the same limit while streaming, and the limit is a setting.
    r = roost.api().put(
        "/boot/profiles/huge",
        json={"templates": {"ipxe": "{% for i in range(100000) %}{{ 'x' * 50 }}{% endfor %}"}},
    )
    assert r.status_code == 200, r.text
    got = roost.boot().get(f"/boot/{MAC}.ipxe")
    assert got.status_code == 500
    assert "output passed the limit of 1048576 characters" in got.text
