"""Fixtures for the lab's end-to-end tests: a lab of our own (prefix ``rlb`` plus random hex),
taken down even when a test fails, and the commissioning image the bootstrap built."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.errors import NotFound
from roost.lab import image, qemu
from roost.lab.netns import Topology
from roost.lab.runner import Lab


def needs_root_and_netns() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    if shutil.which("ip") is None:
        pytest.skip("needs `ip` from iproute2")


def needs_qemu() -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("needs qemu-system-x86_64 (Debian qemu-system-x86)")


@pytest.fixture
def commissioning() -> image.CommissioningImage:
    needs_qemu()
    try:
        return image.locate()
    except NotFound as exc:
        # scripts/bootstrap builds it before every `make test`: missing is a failure.
        pytest.fail(str(exc))


@pytest.fixture
def accel(commissioning: image.CommissioningImage) -> qemu.Accel:
    return qemu.choose_accel(commissioning.kernel, Path("/run/roost-lab/accel.json"))


@pytest.fixture
def lab(accel: qemu.Accel) -> Iterator[Lab]:
    needs_root_and_netns()
    needs_qemu()
    topo = Topology(prefix=f"rlb{secrets.token_hex(3)}", server_cidr="10.99.0.1/24")
    # A short state directory: QEMU's console and monitor are Unix sockets (108-byte paths).
    root = Path(tempfile.mkdtemp(prefix="rlb-"))
    the_lab = Lab(topo, state_root=root)
    the_lab.up(accel)
    try:
        yield the_lab
    finally:
        the_lab.down()
        shutil.rmtree(root, ignore_errors=True)
