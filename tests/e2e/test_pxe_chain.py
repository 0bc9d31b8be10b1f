"""The proof of network boot: a BIOS guest (SeaBIOS, iPXE NIC ROM) and a UEFI guest (OVMF's
own PXE client, NIC ROM disabled: firmware → TFTP ipxe.efi → iPXE → HTTP) boot through Roost
alone — its DHCP, TFTP and HTTP boot server in the lab's server namespace, no dnsmasq, no
other server — to the commissioning image's callback, whose facts reach the inventory, and
its enrollment, which makes the nodes ready."""

from __future__ import annotations

import queue
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.client import Client
from roost.lab.demo import Demo, DemoOptions, missing_capabilities
from roost.lab.progress import Board
from tests.e2e.conftest import needs_qemu, needs_root_and_netns

pytestmark = [pytest.mark.vm, pytest.mark.netns, pytest.mark.slow]

BOOT_TIMEOUT = 480.0
"""TCG on a busy 2-core machine: a UEFI boot takes ~80 s alone; leave room for load."""


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CONFIGURED = re.compile(r"Configuring \(net\d+ [0-9a-f:]{17}\)(\.*) ok")


@pytest.fixture
def demo() -> Iterator[Demo]:
    needs_root_and_netns()
    needs_qemu()
    gone = missing_capabilities()
    if gone:
        pytest.skip("boot services not in this Roost yet: " + ", ".join(gone))
    root = Path(tempfile.mkdtemp(prefix="rlb-"))
    opts = DemoOptions(
        guests=2, once=True, prefix=f"rlb{secrets.token_hex(3)}", state_root=root, api_port=0
    )
    run = Demo(opts, say=lambda _text: None)
    try:
        yield run
    finally:
        run.stop()
        shutil.rmtree(root, ignore_errors=True)
    # Its pooled keep-alive socket, left open, warned in whichever later test freed it.
    assert run.api is not None and run.api.closed, "the demo left its API client open"


def _boot(run: Demo) -> tuple[Board, Client]:
    img, _accel = run.prepare()
    api = run.start_server()
    run.provision(api, img)
    run.follow(api)
    t0 = time.monotonic()
    board = run.start_guests(img)
    while not board.all_done and time.monotonic() - t0 < BOOT_TIMEOUT:
        try:
            ev = run.events.get(timeout=1.0)
        except queue.Empty:
            continue
        assert ev is not None, "the event stream ended: roost serve stopped"
        board.apply(ev, time.monotonic() - t0)
    return board, api


def test_bios_and_uefi_guests_boot_through_roost_alone(demo: Demo) -> None:
    board, api = _boot(demo)
    consoles = {g.index: Path(g.console_log) for g in demo.lab.load().guests}
    assert board.all_done, "\n".join(
        [*board.failures(), *(p.read_text(errors="replace")[-1500:] for p in consoles.values())]
    )
    bios, uefi = sorted(board.guests.values(), key=lambda g: g.index)
    assert (bios.firmware, uefi.firmware) == ("bios", "uefi")
    # Each step happened, in chain order (the facts POST is the enrollment: node.enrolled and
    # boot.callback come from the same request, in either order).
    for g in (bios, uefi):
        times = [g.times[s] for s in g.steps if s != "enroll"]
        assert times == sorted(times), g.times
        assert g.times["enroll"] >= g.times["initrd"], g.times
    # BIOS: the NIC ROM is iPXE, so no TFTP; UEFI: OVMF's PXE fetched ipxe.efi over TFTP.
    assert "tftp" not in bios.times
    assert uefi.detail["tftp"] == "ipxe.efi"
    for guest in demo.lab.load().guests:  # roost.after=poweroff: QEMU ends by itself
        assert demo.lab.wait_exit(guest, timeout=60)
    for g in (bios, uefi):
        assert g.facts["mac"] == g.mac
        assert g.facts["firmware"] == g.firmware
        assert g.facts["disks"][0]["size_bytes"] == 8 << 30
        text = consoles[g.index].read_text(errors="replace")
        assert "ROOST: callback ok" in text
        # iPXE prints a dot a second while it configures; Roost's router advertisement ends the
        # IPv6 wait at once (without one: 15 dots and more, ~16 s)
        runs = _CONFIGURED.findall(_ANSI.sub("", text))
        assert runs, f"guest {g.index}: no iPXE 'Configuring … ok' line:\n{text[-3000:]}"
        assert all(len(dots) <= 6 for dots in runs), (g.index, runs)
    # one lease per machine across firmware, iPXE and Linux
    leases = api.get("/dhcp/leases")
    for g in (bios, uefi):
        assert [lease["mac"] for lease in leases].count(g.mac) == 1, leases
    # The inventory made nodes of them and kept the facts the image sent.
    deadline = time.monotonic() + 30
    while True:
        nodes = {n["mac"]: n for n in api.get("/nodes")}
        stored = [nodes[g.mac]["facts"] for g in (bios, uefi) if g.mac in nodes]
        if (len(stored) == 2 and all("cpu" in f for f in stored)) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [f.get("cpu", {}).get("count") for f in stored] == [1, 1], sorted(nodes)
    # They enrolled with the one-time token on their command line, so they are ready.
    assert [nodes[g.mac]["state"] for g in (bios, uefi)] == ["ready", "ready"]
