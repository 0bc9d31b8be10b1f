"""``roost lab up|status|console|down`` on a real lab: the topology is what it says (server
address, no default route, taps on the bridge), a BIOS guest's iPXE ROM starts on the serial
console, and ``down`` leaves no namespace and no QEMU behind. Also: the KVM probe recognises a
kernel that boots (under TCG, which always works) and never hangs."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.lab import image, qemu
from roost.lab.netns import ip, namespaces
from tests.e2e.conftest import needs_qemu, needs_root_and_netns

pytestmark = [pytest.mark.netns, pytest.mark.vm, pytest.mark.slow]


@pytest.fixture
def cli() -> Iterator[tuple[list[str], str]]:
    needs_root_and_netns()
    needs_qemu()
    prefix = f"rlb{secrets.token_hex(3)}"
    state = Path(tempfile.mkdtemp(prefix="rlb-"))
    roost = shutil.which("roost") or str(Path(__file__).parents[2] / ".venv/bin/roost")
    opts = ["--prefix", prefix, "--state-dir", str(state)]
    try:
        yield [roost, "lab"], " ".join(opts)
    finally:
        subprocess.run([roost, "lab", "down", *opts], capture_output=True, check=False)
        shutil.rmtree(state, ignore_errors=True)


def _run(cli: tuple[list[str], str], *args: str) -> str:
    res = subprocess.run(
        [*cli[0], *args, *cli[1].split()], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr + res.stdout
    return res.stdout


def test_lab_up_status_console_down(cli: tuple[list[str], str]) -> None:
    prefix = cli[1].split()[1]
    _run(cli, "up", "--guests", "1", "--accel", "tcg")
    assert {f"{prefix}-sw", f"{prefix}-srv"} <= namespaces()
    addrs = json.loads(ip("-j", "addr", "show", "dev", "lab0", ns=f"{prefix}-srv"))
    assert [a["local"] for a in addrs[0]["addr_info"] if a["family"] == "inet"] == ["10.99.0.1"]
    assert ip("route", "show", "default", ns=f"{prefix}-srv").strip() == ""
    ports = json.loads(ip("-j", "link", "show", "master", "br0", ns=f"{prefix}-sw"))
    assert {p["ifname"] for p in ports} == {"lab0-br", "tap1"}

    rows = json.loads(_run(cli, "status", "--json"))
    assert [(r["guest"], r["firmware"], r["state"]) for r in rows] == [(1, "bios", "running")]
    # SeaBIOS runs QEMU's iPXE ROM, which announces itself on the serial console.
    log = Path(cli[1].split()[3]) / prefix / "guest1" / "console.log"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and "iPXE" not in log.read_text(errors="replace"):
        time.sleep(0.5)
    follow = subprocess.run(
        ["timeout", "10", *cli[0], "console", "1", *cli[1].split()],
        capture_output=True,
        text=True,
        check=False,
    )
    assert follow.returncode == 124  # it follows until stopped
    assert "iPXE" in follow.stdout

    qemus = _qemu_pids(prefix)
    assert len(qemus) == 1
    out = _run(cli, "down")
    assert f"deleted namespace {prefix}-sw" in out and "stopped guest1" in out
    assert not {f"{prefix}-sw", f"{prefix}-srv"} & namespaces()
    assert not [p for p in qemus if _alive(p)]


def _qemu_pids(prefix: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", f"{prefix}-sw"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_kvm_probe_sees_a_booting_kernel(commissioning: image.CommissioningImage) -> None:
    needs_qemu()
    assert qemu.probe_kvm(commissioning.kernel, accel="tcg", timeout=60)
    # Whatever this host's KVM does, the answer comes back (a hanging guest is killed).
    assert qemu.choose_accel(commissioning.kernel, None).name in ("kvm", "tcg")
