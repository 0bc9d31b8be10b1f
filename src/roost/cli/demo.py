"""``roost demo``: bare guests network-boot through Roost in the lab, shown live (root)."""

from __future__ import annotations

import queue
import time
from pathlib import Path

import typer
from rich import box
from rich.live import Live
from rich.table import Table

from roost.cli.common import console, err_console
from roost.client import ClientError
from roost.errors import RoostError
from roost.lab.demo import Demo, DemoError, DemoOptions
from roost.lab.progress import STEPS, Board
from roost.lab.runner import DEFAULT_STATE_ROOT

LABELS = {
    "lease": "lease",
    "tftp": "tftp",
    "script": "script",
    "kernel": "kernel",
    "initrd": "initrd",
    "callback": "facts",
    "enroll": "ready",
}
"""Column heads: DHCP lease, TFTP of the iPXE binary, iPXE script, kernel, initrd, facts
callback, enrollment (the node is ready)."""


def render(board: Board, elapsed: float, footer: str = "") -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        title=f"Roost demo: bare guests boot through Roost alone · {elapsed:5.1f} s\n"
        "seconds since power-on; BIOS = SeaBIOS + iPXE ROM, UEFI = OVMF's own PXE",
        caption=footer or None,
    )
    table.add_column("guest", no_wrap=True, min_width=6)
    table.add_column("MAC", no_wrap=True, min_width=17)
    for step in STEPS:
        table.add_column(LABELS[step], justify="right", no_wrap=True, min_width=5)
    table.add_column("facts (or address)", no_wrap=True, overflow="ellipsis")
    for g in sorted(board.guests.values(), key=lambda g: g.index):
        cells = []
        for step in STEPS:
            if step not in g.steps:
                cells.append("[dim]n/a[/dim]")
            elif step in g.times:
                cells.append(f"[green]{g.times[step]:.1f}[/green]")
            elif step == g.missing():
                cells.append("[yellow]…[/yellow]")
            else:
                cells.append("")
        info = g.detail.get("callback") or g.detail.get("lease", "")
        table.add_row(f"{g.index} {g.firmware.upper()}", g.mac, *cells, info)
    return table


def demo(
    guests: int = typer.Option(3, "--guests", "-n", min=1, max=16, help="guests to boot"),
    once: bool = typer.Option(
        False, "--once", help="exit when every guest enrolled (0) or on timeout (1)"
    ),
    timeout: float = typer.Option(600.0, help="seconds --once waits for every guest to enroll"),
    accel: str = typer.Option("auto", help="auto, kvm or tcg"),
    firmware: str | None = typer.Option(None, help="bios or uefi for all (default: a mix)"),
    port: int = typer.Option(8440, help="loopback port the API is relayed to"),
    prefix: str = typer.Option("roost-lab", help="namespace prefix of the lab"),
    state_dir: Path = typer.Option(DEFAULT_STATE_ROOT, help="where labs keep state"),
) -> None:
    """Bring up the lab, start Roost in it and boot GUESTS bare guests through it; Ctrl-C ends."""
    opts = DemoOptions(guests, once, timeout, prefix, state_dir, port, accel, firmware)
    run = Demo(opts, say=lambda text: console.print(text, highlight=False, soft_wrap=True))
    status = 1
    try:
        img, _ = run.prepare()
        api = run.start_server()
        run.provision(api, img)
        run.follow(api)
        t0 = time.monotonic()
        board = run.start_guests(img)
        status = _watch(run, board, t0, once, timeout)
    except KeyboardInterrupt:
        status = 0 if not once else 130
    except (DemoError, RoostError, ClientError) as exc:
        err_console.print(f"demo: {exc}", soft_wrap=True, highlight=False)
        status = 2
    finally:
        done = run.stop()
        console.print(f"\nlab down: {len(done)} processes and namespaces gone", highlight=False)
    raise typer.Exit(status)


def _watch(run: Demo, board: Board, t0: float, once: bool, timeout: float) -> int:
    footer = ""
    with Live(render(board, 0.0), console=console, refresh_per_second=4) as live:
        try:
            while True:
                elapsed = time.monotonic() - t0
                try:
                    ev = run.events.get(timeout=0.25)
                except queue.Empty:
                    ev = {}
                if ev is None:
                    footer = "the Roost server stopped"
                    break
                if ev:
                    board.apply(ev, time.monotonic() - t0)
                if board.all_done and not footer:
                    footer = f"every guest enrolled · API {run.url}/api/v1 · " + (
                        "done" if once else "Ctrl-C ends the demo"
                    )
                live.update(render(board, elapsed, footer))
                if once and (board.all_done or elapsed > timeout):
                    break
        except KeyboardInterrupt:
            footer = "stopped (Ctrl-C)"
            if once:
                raise
        finally:
            live.update(render(board, time.monotonic() - t0, footer))
    if board.all_done or (not once and footer == "stopped (Ctrl-C)"):
        return 0
    for line in board.failures():
        err_console.print(f"demo: {line}", soft_wrap=True, highlight=False)
    return 1
