"""The demo's reading of the event stream: each guest moves through the chain by its MAC,
fetches are told apart by file name, failures name the first step never reached."""

from __future__ import annotations

from typing import Any

import pytest

from roost.lab.progress import Board, GuestProgress, summary

pytestmark = pytest.mark.unit

BIOS = "52:54:00:99:00:01"
UEFI = "52:54:00:99:00:02"


def _board() -> Board:
    return Board(
        [GuestProgress(1, BIOS, "bios", needs_tftp=False), GuestProgress(2, UEFI, "uefi", True)],
        kernel="k",
        initrd="i.img",
    )


def _ev(kind: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, "data": data}


def test_full_chain_for_both_guests() -> None:
    b = _board()
    b.apply(_ev("dhcp.lease.bound", mac=BIOS.upper(), ip="10.99.0.130"), 1.0)
    b.apply(_ev("dhcp.lease.bound", mac=UEFI, ip="10.99.0.131"), 2.0)
    # TFTP events may lack the MAC; the leased address finds the guest.
    b.apply(_ev("boot.tftp.transfer", mac=None, ip="10.99.0.131", file="ipxe.efi", outcome="ok"), 3)
    for mac in (BIOS, UEFI):
        b.apply(_ev("boot.http.fetch", mac=mac, path=f"/boot/{mac}.ipxe", status=200), 4)
        b.apply(_ev("boot.http.fetch", mac=mac, path="/files/k", status=200, bytes=2**20), 5)
        assert b.guests[mac].missing() == "initrd"
        b.apply(_ev("boot.http.fetch", mac=mac, path="/files/i.img", status=200), 6)
        facts = {"cpu": {"count": 2}, "memory_bytes": 512 * 2**20, "disks": []}
        b.apply(_ev("boot.callback", mac=mac, ip="x", facts=facts), 7)
        assert not b.guests[mac].done and b.guests[mac].missing() == "enroll"
        b.apply(_ev("node.enrolled", mac=mac, ip="x", node=3), 8)
    assert b.all_done and b.failures() == []
    assert b.guests[UEFI].detail["tftp"] == "ipxe.efi"
    assert b.guests[BIOS].steps == ("lease", "script", "kernel", "initrd", "callback", "enroll")
    assert b.guests[BIOS].detail["kernel"] == "1.0 MiB"
    assert b.guests[UEFI].detail["callback"] == "2 CPU, 512 MiB"


def test_failed_fetches_and_strangers_do_not_count() -> None:
    b = _board()
    assert b.apply(_ev("dhcp.lease.bound", mac="52:54:00:00:00:09", ip="10.99.0.9"), 1) is None
    b.apply(_ev("dhcp.lease.bound", mac=UEFI, ip="10.99.0.131"), 1)
    b.apply(_ev("boot.tftp.transfer", mac=UEFI, file="ipxe.efi", outcome="aborted"), 2)
    b.apply(_ev("boot.http.fetch", mac=UEFI, path="/files/k", status=404), 3)
    assert b.guests[UEFI].missing() == "tftp"
    # a later step's time is kept even when an earlier one is missing; the first gap is named
    assert b.failures() == [
        "guest 1 (bios, 52:54:00:99:00:01): no lease (no event at all)",
        "guest 2 (uefi, 52:54:00:99:00:02): no tftp (last: lease at 1.0 s)",
    ]


def test_first_time_of_a_step_wins() -> None:
    b = _board()
    b.apply(_ev("dhcp.lease.bound", mac=BIOS, ip="10.99.0.130"), 1.0)
    b.apply(_ev("dhcp.lease.renewed", mac=BIOS, ip="10.99.0.130"), 9.0)
    assert b.guests[BIOS].times["lease"] == 1.0


def test_summary_of_facts() -> None:
    facts = {
        "cpu": {"count": 1},
        "memory_bytes": 331 * 2**20,
        "disks": [{"name": "vda", "size_bytes": 8 << 30}],
    }
    assert summary(facts) == "1 CPU, 331 MiB, vda 8 GiB"
    assert summary({}) == ""
