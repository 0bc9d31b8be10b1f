"""``roost scan``: ARP sweeps and port scans with a live progress bar, and their status."""

from __future__ import annotations

from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from roost.cli.common import JSONOption, client, err_console, output, print_json
from roost.client import Client

app = typer.Typer(help="Find machines (ARP) and their open ports (TCP/UDP).", no_args_is_help=True)

_END = ("discovery.scan.finished", "discovery.scan.cancelled", "discovery.scan.failed")
SCAN_COLUMNS = [
    "id",
    "site",
    "kind",
    "state",
    "percent",
    "hosts_found",
    "ports_found",
    "targets",
    "ports",
    "started_at",
]


SiteOption = typer.Option(
    None, "--site", help="only this site's (default: every site of the token)"
)


def _site(params: dict[str, Any], site: str | None) -> dict[str, Any]:
    return {**params, "site": site} if site else params


def _show_scans(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(rows)
        return
    shown = [
        {**r, "targets": ", ".join(r["targets"]), "started_at": r["started_at"][:19]} for r in rows
    ]
    output(shown, SCAN_COLUMNS, False)


def _follow(c: Client, scan: dict[str, Any], as_json: bool) -> dict[str, Any]:
    """Show the scan's progress from its events until it ends; return the final scan."""
    params = {"subject": f"scan/{scan['id']}", "type": ["discovery.scan."], "since": "0"}
    if as_json:
        for ev in c.sse("/events", params=params):
            if ev["type"] in _END:
                break
        return dict(c.get(f"/discovery/scans/{scan['id']}"))
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[found]}"),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:
        task = bar.add_task(f"scan {scan['id']} ({scan['kind']})", total=100.0, found="")
        for ev in c.sse("/events", params=params):
            data = ev.get("data") or {}
            found = f"hosts {data.get('hosts_found', 0)}  open ports {data.get('ports_found', 0)}"
            bar.update(task, completed=float(data.get("percent", 0.0)), found=found)
            if ev["type"] in _END:
                break
    return dict(c.get(f"/discovery/scans/{scan['id']}"))


def _run(ctx: typer.Context, body: dict[str, Any], wait: bool, as_json: bool) -> None:
    with client(ctx) as c:
        scan = c.post("/discovery/scans", json=body)
        if not wait:
            _show_scans([scan], as_json)
            return
        final = _follow(c, scan, as_json)
        results = c.get(f"/discovery/scans/{scan['id']}/results")
        if as_json:
            print_json({"scan": final, "results": results})
            return
        if body["kind"] == "arp":
            found = c.get("/discovery/hosts", params={"site": final["site"]})
            hosts = {h["mac"]: h for h in found}
            rows = [
                {**r, "vendor": (hosts.get(r["mac"] or "") or {}).get("vendor")} for r in results
            ]
            output(rows, ["ip", "mac", "vendor"], False)
        else:
            rows = [r for r in results if r["state"] != "closed"]
            output(rows, ["ip", "protocol", "port", "state"], False)
        err_console.print(
            f"scan {final['id']} {final['state']}: {final['hosts_found']} hosts, "
            f"{final['ports_found']} open ports"
        )


@app.command("arp")
def arp(
    ctx: typer.Context,
    subnet: list[str] = typer.Option(
        [], "--subnet", help="CIDR to sweep (default: all site subnets)"
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="follow the scan until it ends"),
    as_json: bool = JSONOption,
) -> None:
    """ARP-sweep the site's subnets and list every host that answered."""
    _run(ctx, {"kind": "arp", "targets": subnet}, wait, as_json)


@app.command("ports")
def ports(
    ctx: typer.Context,
    target: list[str] = typer.Argument(..., metavar="HOST|CIDR", help="address or CIDR"),
    port_spec: str = typer.Option("top:100", "--ports", "-p", help="e.g. 1-65535, 22,80, top:100"),
    udp: bool = typer.Option(False, "--udp", help="UDP scan instead of TCP connect"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="follow the scan until it ends"),
    as_json: bool = JSONOption,
) -> None:
    """Scan ports of a host or subnet (TCP connect, or UDP with --udp)."""
    _run(
        ctx, {"kind": "udp" if udp else "tcp", "targets": target, "ports": port_spec}, wait, as_json
    )


@app.command("status")
def status(
    ctx: typer.Context,
    limit: int = typer.Option(20, help="how many recent scans"),
    site: str | None = SiteOption,
    as_json: bool = JSONOption,
) -> None:
    """Recent and running scans with their progress."""
    with client(ctx) as c:
        rows = c.get("/discovery/scans", params=_site({"limit": limit}, site))
    _show_scans(rows, as_json)


@app.command("cancel")
def cancel(ctx: typer.Context, scan_id: int, as_json: bool = JSONOption) -> None:
    """Cancel a running scan (it keeps what it found)."""
    with client(ctx) as c:
        row = c.post(f"/discovery/scans/{scan_id}/cancel")
    _show_scans([row], as_json)


@app.command("hosts")
def hosts(
    ctx: typer.Context,
    include_gone: bool = typer.Option(False, "--gone"),
    site: str | None = SiteOption,
    as_json: bool = JSONOption,
) -> None:
    """Hosts discovery knows about."""
    with client(ctx) as c:
        rows = c.get("/discovery/hosts", params=_site({"include_gone": include_gone}, site))
    columns = ["site", "ip", "mac", "vendor", "source", "first_seen", "last_seen", "gone"]
    output(rows, columns, as_json)


@app.command("open")
def open_ports(
    ctx: typer.Context,
    ip: str | None = typer.Option(None, "--ip", help="only this address"),
    state: str = typer.Option("open", help="open, closed, open|filtered, … ('' for all)"),
    site: str | None = SiteOption,
    as_json: bool = JSONOption,
) -> None:
    """Ports found so far, with the first and last time each was seen open."""
    params = _site({"state": state, **({"ip": ip} if ip else {})}, site)
    with client(ctx) as c:
        rows = c.get("/discovery/ports", params=params)
    columns = ["site", "ip", "protocol", "port", "state", "service"]
    output(rows, [*columns, "first_seen_open", "last_seen_open"], as_json)
