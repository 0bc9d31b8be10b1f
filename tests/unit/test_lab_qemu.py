"""The lab's pure parts: QEMU command lines per firmware, topology names, the image's
kernel command line, and reading a guest's console."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.errors import Invalid
from roost.lab import console, image, qemu
from roost.lab.netns import Topology

pytestmark = pytest.mark.unit

TCG = qemu.Accel("tcg", "test")


def _argv(spec: qemu.GuestSpec, tap: str | None = "tap1") -> list[str]:
    return qemu.command(spec, TCG, qemu.GuestFiles(Path("/s/g1")), tap)


def _device(argv: list[str]) -> str:
    return next(a for a in argv if a.startswith(("virtio-net-pci,", "e1000,", "e1000e,")))


def test_bios_guest_boots_from_nic_with_ipxe_rom() -> None:
    argv = _argv(qemu.GuestSpec(index=3))
    assert "-bios" not in argv
    assert argv[argv.index("-boot") + 1] == "n"
    dev = _device(argv)
    assert "mac=52:54:00:99:00:03" in dev and "bootindex=1" in dev
    assert "romfile=" not in dev
    assert "tap,id=n0,ifname=tap1,script=no,downscript=no" in argv


def test_uefi_guest_uses_ovmf_and_its_own_pxe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qemu, "ovmf", lambda: Path("/fw/OVMF.fd"))
    argv = _argv(qemu.GuestSpec(index=2, firmware="uefi"))
    assert argv[argv.index("-bios") + 1] == "/fw/OVMF.fd"
    assert _device(argv).endswith(",romfile=")
    with_rom = _argv(qemu.GuestSpec(index=2, firmware="uefi", nic_rom=True))
    assert "romfile=" not in _device(with_rom)


def test_direct_kernel_boot_and_console_socket() -> None:
    spec = qemu.GuestSpec(index=1, kernel=Path("/k"), initrd=Path("/i"), append="console=ttyS0 x=1")
    argv = _argv(spec, tap=None)
    assert argv[argv.index("-kernel") + 1] == "/k" and argv[argv.index("-initrd") + 1] == "/i"
    assert argv[argv.index("-append") + 1] == "console=ttyS0 x=1"
    assert "-boot" not in argv and "-netdev" not in argv
    chardev = argv[argv.index("-chardev") + 1]
    assert "path=/s/g1/console.sock" in chardev and "logfile=/s/g1/console.log" in chardev


def test_unknown_nic_model_is_refused() -> None:
    with pytest.raises(ValueError, match="NIC model"):
        _argv(qemu.GuestSpec(index=1, nic="rtl8139"))


def test_default_mix_has_bios_and_uefi() -> None:
    specs = qemu.default_specs(3)
    assert [(s.firmware, s.rom) for s in specs] == [
        ("bios", True),
        ("uefi", False),
        ("bios", True),
    ]
    assert len({s.mac_address for s in specs}) == 3


def test_forced_tcg_needs_no_probe() -> None:
    assert qemu.choose_accel(None, None, "tcg").name == "tcg"
    with pytest.raises(ValueError):
        qemu.choose_accel(None, None, "xen")


def test_topology_names_and_validation() -> None:
    topo = Topology(prefix="rlbx", server_cidr="10.99.0.1/24")
    assert (topo.switch_ns, topo.server_ns, topo.server_ip) == ("rlbx-sw", "rlbx-srv", "10.99.0.1")
    assert topo.pool() == ("10.99.0.128", "10.99.0.254")
    for bad in ("Roost", "1lab", "a" * 21, "x y"):
        with pytest.raises(Invalid):
            Topology(prefix=bad)
    for cidr in ("10.99.0.0/24", "10.99.0.1/30", "nonsense"):
        with pytest.raises(Invalid):
            Topology(server_cidr=cidr)


def test_image_cmdline_carries_callback_token_and_after() -> None:
    line = image.cmdline("http://10.99.0.1:8442/boot/callback", "t0k", after="wait")
    assert line.split() == [
        "console=ttyS0",
        "quiet",
        "roost.callback=http://10.99.0.1:8442/boot/callback",
        "roost.token=t0k",
        "roost.after=wait",
    ]
    enrolling = image.cmdline("http://s/cb", "t", enroll="http://s/boot/enroll/e1")
    assert "roost.enroll=http://s/boot/enroll/e1" in enrolling.split()


def test_last_console_line(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    assert console.last_line(log) == ""
    log.write_text("SeaBIOS\nROOST: init start uptime=1\nROOST: lease ip=x uptime=2\nnoise\n\n")
    assert console.last_line(log) == "ROOST: lease ip=x uptime=2"
    log.write_text("iPXE 1.0\nConfiguring\n")
    assert console.last_line(log) == "Configuring"
