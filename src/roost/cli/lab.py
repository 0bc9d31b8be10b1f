"""``roost lab``: the network-namespace lab on this machine (needs root). Offline: it talks
to no API; ``roost demo`` runs Roost inside it."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from roost.cli.common import JSONOption, console, output
from roost.errors import NotFound
from roost.lab import console as guest_console
from roost.lab import image, qemu
from roost.lab.netns import Topology
from roost.lab.runner import DEFAULT_STATE_ROOT, Lab

app = typer.Typer(help="A lab of QEMU guests on a bridge in network namespaces (root).")

PrefixOption = typer.Option("roost-lab", "--prefix", help="namespace prefix of the lab")
StateOption = typer.Option(DEFAULT_STATE_ROOT, "--state-dir", help="where labs keep state")


def make_lab(prefix: str, state_dir: Path, server: str = "10.99.0.1/24") -> Lab:
    return Lab(Topology(prefix=prefix, server_cidr=server), state_root=state_dir)


def pick_accel(want: str, state_dir: Path) -> qemu.Accel:
    try:
        kernel: Path | None = image.locate().kernel
    except NotFound:
        kernel = None  # no image yet: no probe, so TCG
    return qemu.choose_accel(kernel, state_dir / "accel.json", want)


@app.command("up")
def up(
    guests: int = typer.Option(0, "--guests", "-n", min=0, max=32, help="guests to start"),
    firmware: str | None = typer.Option(
        None, help="bios or uefi for every guest (default: a BIOS/UEFI mix)"
    ),
    accel: str = typer.Option("auto", help="auto, kvm or tcg"),
    server: str = typer.Option("10.99.0.1/24", help="Roost's address on the lab segment"),
    prefix: str = PrefixOption,
    state_dir: Path = StateOption,
) -> None:
    """Create the lab's namespaces and bridge, and start GUESTS network-booting guests."""
    if firmware not in (None, "bios", "uefi"):
        raise typer.BadParameter("choose bios or uefi", param_hint="--firmware")
    lab = make_lab(prefix, state_dir, server)
    chosen = pick_accel(accel, state_dir)
    lab.up(chosen)
    console.print(f"lab {prefix}: accelerator {chosen.name} ({chosen.reason})")
    for spec in qemu.default_specs(guests, firmware):  # type: ignore[arg-type]
        g = lab.start_guest(spec)
        console.print(f"  guest {g.index}: {g.firmware} {g.nic} {g.mac} (console {g.console_log})")
    console.print(
        f"Roost serves in namespace {lab.topo.server_ns} on {lab.topo.server_ip} "
        f"(interface lab0), e.g.:\n  ip netns exec {lab.topo.server_ns} roost serve "
        f"--host {lab.topo.server_ip}\n`roost demo` does all of it; `roost lab down` ends it."
    )


@app.command("down")
def down(prefix: str = PrefixOption, state_dir: Path = StateOption) -> None:
    """Stop everything the lab started and delete its namespaces."""
    done = make_lab(prefix, state_dir).down()
    console.print("\n".join(done) if done else f"lab {prefix} was not up")


@app.command("status")
def status(
    prefix: str = PrefixOption, state_dir: Path = StateOption, as_json: bool = JSONOption
) -> None:
    """The lab's guests: firmware, NIC, MAC, running or not, and what each last said."""
    rows = make_lab(prefix, state_dir).status()
    output(rows, ["guest", "firmware", "nic", "mac", "accel", "state", "console"], as_json)


@app.command("console")
def console_(
    index: int = typer.Argument(..., help="guest number"),
    attach: bool = typer.Option(False, "--attach", "-a", help="interactive; Ctrl-] leaves"),
    prefix: str = PrefixOption,
    state_dir: Path = StateOption,
) -> None:
    """Follow guest N's serial console (Ctrl-C stops), or attach to it with --attach."""
    guest = make_lab(prefix, state_dir).guest(index)
    if attach:
        guest_console.attach(Path(guest.console_sock))
        return
    for chunk in guest_console.follow(Path(guest.console_log)):
        sys.stdout.write(chunk)
        sys.stdout.flush()
