"""``roost wake MAC``: send a Wake-on-LAN magic packet, optionally wait for the machine."""

from __future__ import annotations

import typer

from roost.cli.common import JSONOption, client, err_console, output


def wake(
    ctx: typer.Context,
    mac: str = typer.Argument(..., help="MAC address of the machine to wake"),
    ip: str | None = typer.Option(None, "--ip", help="its address (default: last seen)"),
    wait: bool = typer.Option(False, "--wait", help="wait until it answers or times out"),
    password: str | None = typer.Option(None, "--password", help="SecureOn password"),
    as_json: bool = JSONOption,
) -> None:
    """Wake a machine by Wake-on-LAN; with --wait, exit 0 only once it answers."""
    body = {"mac": mac, "ip": ip, "wait": wait, "password": password}
    with client(ctx) as c:
        if wait and not as_json:
            with err_console.status(f"waking {mac}, waiting for it to answer…"):
                res = c.post("/discovery/wake", json=body, timeout=None)
        else:
            res = c.post("/discovery/wake", json=body, timeout=None)
    output([res], ["mac", "ip", "confirmed", "via", "elapsed", "sent"], as_json)
    if wait and not res["confirmed"]:
        raise typer.Exit(2)
