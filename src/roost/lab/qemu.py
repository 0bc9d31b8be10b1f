"""QEMU guests for the lab: the command line for a BIOS or UEFI guest, and the accelerator.

BIOS guests run SeaBIOS with QEMU's iPXE option ROM for their NIC (so their PXE client *is*
iPXE); UEFI guests run OVMF, by default with the NIC ROM disabled so OVMF's own PXE client
boots: firmware → TFTP ``ipxe.efi`` → iPXE → HTTP. The serial console goes to a Unix socket
that also logs to a file, so ``roost lab console`` can both tail and attach.

KVM: ``/dev/kvm`` existing proves little. Some hosts expose a KVM that cannot run a stock
guest (a PVM nested hypervisor, ``kvm_pvm``, hangs an unmodified kernel before its first
line). :func:`choose_accel` therefore refuses PVM and otherwise boots the commissioning
kernel under KVM with a short timeout, waiting for its first console line; anything else
means TCG. The answer is cached per host boot, because the probe costs seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Firmware = Literal["bios", "uefi"]

OVMF_PATHS = (Path("/usr/share/ovmf/OVMF.fd"), Path("/usr/share/qemu/OVMF.fd"))
NIC_MODELS = ("virtio-net-pci", "e1000", "e1000e")
PROBE_TIMEOUT = 8.0
"""Seconds a working KVM needs to print the kernel's first line: well under one."""


@dataclass(frozen=True)
class GuestSpec:
    """One guest; ``kernel``/``initrd``/``append`` boot it directly instead of over the network."""

    index: int
    firmware: Firmware = "bios"
    nic: str = "virtio-net-pci"
    nic_rom: bool | None = None
    """iPXE option ROM on the NIC; default: on for BIOS, off for UEFI (OVMF's own PXE)."""
    memory_mb: int = 384
    disk_gb: int = 8
    """Size of an empty virtio disk (null-co: no file, reads zeros), so facts list a disk."""
    mac: str = ""
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = ""

    @property
    def mac_address(self) -> str:
        return self.mac or f"52:54:00:99:00:{self.index:02x}"

    @property
    def rom(self) -> bool:
        return self.firmware == "bios" if self.nic_rom is None else self.nic_rom


DEFAULT_MIX: tuple[tuple[Firmware, str], ...] = (
    ("bios", "virtio-net-pci"),
    ("uefi", "virtio-net-pci"),
    ("bios", "e1000"),
)
"""Guests 1, 2, 3, … cycle through these: SeaBIOS + iPXE ROM, OVMF's own PXE, an Intel NIC."""


def default_specs(count: int, firmware: Firmware | None = None) -> list[GuestSpec]:
    specs = []
    for i in range(1, count + 1):
        fw, nic = DEFAULT_MIX[(i - 1) % len(DEFAULT_MIX)]
        specs.append(GuestSpec(index=i, firmware=firmware or fw, nic=nic))
    return specs


@dataclass(frozen=True)
class Accel:
    name: Literal["kvm", "tcg"]
    reason: str


@dataclass
class GuestFiles:
    """Where one guest keeps its console log, console socket, monitor socket and pid."""

    directory: Path
    console_log: Path = field(init=False)
    console_sock: Path = field(init=False)
    monitor_sock: Path = field(init=False)

    def __post_init__(self) -> None:
        self.console_log = self.directory / "console.log"
        self.console_sock = self.directory / "console.sock"
        self.monitor_sock = self.directory / "monitor.sock"


def ovmf() -> Path:
    for path in OVMF_PATHS:
        if path.exists():
            return path
    raise FileNotFoundError("OVMF firmware not found: install Debian's `ovmf` (scripts/bootstrap)")


def qemu_binary() -> str:
    found = shutil.which("qemu-system-x86_64")
    if not found:
        raise FileNotFoundError("qemu-system-x86_64 not found: install Debian's `qemu-system-x86`")
    return found


def command(spec: GuestSpec, accel: Accel, files: GuestFiles, tap: str | None = None) -> list[str]:
    """The QEMU argv for ``spec``; ``tap`` None means a guest with no network (probes)."""
    if spec.nic not in NIC_MODELS:
        raise ValueError(f"NIC model {spec.nic!r}: choose one of {', '.join(NIC_MODELS)}")
    argv = [
        qemu_binary(), "-accel", accel.name, "-m", str(spec.memory_mb),
        "-name", f"roost-lab-guest{spec.index}", "-display", "none", "-nodefaults",
        "-no-reboot", "-no-user-config",
        # graphics=off: SeaBIOS and the iPXE ROM print to the serial port (sercon).
        "-machine", "graphics=off",
        "-chardev", f"socket,id=con,path={files.console_sock},server=on,wait=off,"
                    f"logfile={files.console_log},logappend=on",
        "-serial", "chardev:con",
        "-monitor", f"unix:{files.monitor_sock},server=on,wait=off",
        "-smbios", f"type=1,manufacturer=Roost lab,product=guest{spec.index},"
                   f"serial=ROOSTLAB{spec.index:04d}",
    ]  # fmt: skip
    if accel.name == "kvm":
        argv += ["-cpu", "host"]
    if spec.firmware == "uefi":
        argv += ["-bios", str(ovmf())]
    if spec.disk_gb:
        argv += [
            "-blockdev",
            f"driver=null-co,node-name=disk0,size={spec.disk_gb << 30},read-zeroes=on",
            "-device", "virtio-blk-pci,drive=disk0",
        ]  # fmt: skip
    if tap is not None:
        nic = f"{spec.nic},netdev=n0,mac={spec.mac_address}"
        if spec.kernel is None:
            nic += ",bootindex=1"
        if not spec.rom:
            nic += ",romfile="
        argv += ["-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no", "-device", nic]
    if spec.kernel is not None:
        argv += ["-kernel", str(spec.kernel)]
        if spec.initrd is not None:
            argv += ["-initrd", str(spec.initrd)]
        argv += ["-append", spec.append or "console=ttyS0"]
    else:
        argv += ["-boot", "n"]
    return argv


def _pvm_loaded() -> bool:
    return Path("/sys/module/kvm_pvm").exists()


def probe_kvm(kernel: Path, accel: str = "kvm", timeout: float = PROBE_TIMEOUT) -> bool:
    """Boot ``kernel`` (no initrd, no NIC) and wait for its first console line.

    True when the kernel printed within ``timeout``; QEMU is killed either way, so a guest
    that hangs costs ``timeout`` seconds and nothing more.
    """
    argv = [
        qemu_binary(), "-accel", accel, "-m", "128", "-display", "none", "-nodefaults",
        "-no-reboot", "-no-user-config", "-serial", "stdio", "-kernel", str(kernel),
        "-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1",
    ]  # fmt: skip
    if accel == "kvm":
        argv[3:3] = ["-cpu", "host"]
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = proc.stdout.read(4096)
            if chunk:
                seen += chunk
                if b"Linux version" in seen:
                    return True
            elif proc.poll() is not None:
                return b"Linux version" in seen
            else:
                time.sleep(0.05)
        return False
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def choose_accel(kernel: Path | None, cache: Path | None = None, want: str = "auto") -> Accel:
    """KVM when it really runs a stock kernel here, TCG otherwise; ``want`` forces one."""
    if want == "tcg":
        return Accel("tcg", "asked for TCG")
    if want not in ("auto", "kvm"):
        raise ValueError(f"accelerator {want!r}: choose auto, kvm or tcg")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Accel("tcg", "no usable /dev/kvm")
    if _pvm_loaded():
        return Accel("tcg", "/dev/kvm is kvm_pvm (PVM), which hangs unmodified guests")
    if want == "kvm":
        return Accel("kvm", "asked for KVM")
    if kernel is None:
        return Accel("tcg", "no kernel to probe KVM with")
    key = _boot_id()
    if cache is not None:
        try:
            data = json.loads(cache.read_text())
            if data.get("boot_id") == key:
                return Accel(data["name"], data["reason"] + " (cached)")
        except (OSError, ValueError, KeyError):
            pass
    if probe_kvm(kernel):
        found = Accel("kvm", "KVM booted a probe kernel")
    else:
        found = Accel("tcg", f"KVM did not boot a probe kernel within {PROBE_TIMEOUT:.0f} s")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"boot_id": key, "name": found.name, "reason": found.reason}))
    return found
