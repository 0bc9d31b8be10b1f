"""``roost demo --once`` as a user runs it: when a guest does not get through the chain in
time, it exits 1 and names the guest and the first step it never reached, and the lab is
gone afterwards. (The full chain to the callback is proven in test_pxe_chain.py.)"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from roost.lab.demo import missing_capabilities
from roost.lab.netns import namespaces
from tests.e2e.conftest import needs_qemu, needs_root_and_netns

pytestmark = [pytest.mark.vm, pytest.mark.netns, pytest.mark.slow]


def test_demo_once_names_the_step_a_guest_never_reached() -> None:
    needs_root_and_netns()
    needs_qemu()
    gone = missing_capabilities()
    if gone:
        pytest.skip("boot services not in this Roost yet: " + ", ".join(gone))
    prefix = f"rlb{secrets.token_hex(3)}"
    state = Path(tempfile.mkdtemp(prefix="rlb-"))
    roost = shutil.which("roost") or str(Path(__file__).parents[2] / ".venv/bin/roost")
    try:
        # 10 s is far less than a guest needs under TCG (≈ 60 s) or KVM (iPXE alone waits
        # ≈ 13 s for IPv6 router advertisements), so the guest cannot have called back.
        res = subprocess.run(
            [roost, "demo", "--once", "--guests", "1", "--timeout", "10", "--port", "0",
             "--prefix", prefix, "--state-dir", str(state)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    finally:
        subprocess.run(
            [roost, "lab", "down", "--prefix", prefix, "--state-dir", str(state)],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(state, ignore_errors=True)
    assert res.returncode == 1, res.stdout + res.stderr
    assert re.search(
        r"demo: guest 1 \(bios, 52:54:00:99:00:01\): no (lease|script|kernel|initrd|callback) ",
        res.stderr,
    ), res.stderr
    assert "lab down" in res.stdout
    assert not {f"{prefix}-sw", f"{prefix}-srv"} & namespaces()
