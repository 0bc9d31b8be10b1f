"""``roost dhcp``: subnets, reservations and leases of the DHCP server (through the API)."""

from __future__ import annotations

import json
from typing import Any

import typer

from roost.cli.common import JSONOption, act, client, console, output

app = typer.Typer(help="DHCP server: subnets, reservations, leases.", no_args_is_help=True)
subnet_app = typer.Typer(help="Subnets the DHCP server serves.", no_args_is_help=True)
reservation_app = typer.Typer(
    help="Fixed addresses (and boot overrides) per MAC.", no_args_is_help=True
)
app.add_typer(subnet_app, name="subnet")
app.add_typer(reservation_app, name="reservation")

SUBNET_COLUMNS = [
    "name", "site", "cidr", "pools", "routers", "dns_servers", "lease_time", "interface"
]  # fmt: skip
RESERVATION_COLUMNS = ["mac", "ip", "site", "hostname", "boot"]
LEASE_COLUMNS = ["ip", "mac", "hostname", "subnet", "site", "state", "expires"]


def _pool(text: str) -> dict[str, str]:
    start, sep, end = text.partition("-")
    if not sep:
        raise typer.BadParameter(f"{text!r}: give a pool as FIRST-LAST, e.g. 10.0.0.100-10.0.0.200")
    return {"start": start.strip(), "end": end.strip()}


@subnet_app.command("add")
def subnet_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="a short name, e.g. lab"),
    cidr: str = typer.Argument(..., help="the network, e.g. 10.0.0.0/24"),
    site: str | None = typer.Option(
        None, "--site", help="its site; default: the token's only site, else the server's"
    ),
    pool: list[str] = typer.Option([], "--pool", help="FIRST-LAST (repeatable)"),
    router: list[str] = typer.Option([], "--router", help="gateway (repeatable)"),
    dns: list[str] = typer.Option([], "--dns", help="DNS server (repeatable)"),
    ntp: list[str] = typer.Option([], "--ntp", help="NTP server (repeatable)"),
    domain: str | None = typer.Option(None, "--domain", help="domain name (option 15)"),
    search: list[str] = typer.Option([], "--search", help="domain search entry (repeatable)"),
    lease_time: int = typer.Option(3600, "--lease-time", help="seconds"),
    interface: str | None = typer.Option(
        None, "--interface", help="serve clients on this interface"
    ),
    server_address: str | None = typer.Option(
        None, "--server-address", help="next-server / server id"
    ),
    no_boot: bool = typer.Option(False, "--no-boot", help="answer no network-boot client"),
    bios: str | None = typer.Option(None, "--bios", help="BIOS PXE boot file (undionly.kpxe)"),
    efi_x64: str | None = typer.Option(None, "--efi-x64", help="x86-64 UEFI boot file (ipxe.efi)"),
    efi_arm64: str | None = typer.Option(
        None, "--efi-arm64", help="arm64 UEFI boot file (ipxe-arm64.efi)"
    ),
    ipxe_script_url: str | None = typer.Option(
        None, "--ipxe-script-url", help="URL for iPXE clients; ${mac} etc. are filled in"
    ),
    tag_boot_file: list[str] = typer.Option(
        [], "--tag-boot-file", help="TAG=FILE: PXE boot file for nodes with TAG (repeatable)"
    ),
    tag_ipxe_script: list[str] = typer.Option(
        [], "--tag-ipxe-script", help="TAG=URL: iPXE script for nodes with TAG (repeatable)"
    ),
    as_json: bool = JSONOption,
) -> None:
    """Add a subnet; it is served at once."""
    boot: dict[str, Any] = {
        k: v
        for k, v in (
            ("bios", bios), ("efi_x64", efi_x64), ("efi_arm64", efi_arm64),
            ("ipxe_script_url", ipxe_script_url),
        )
        if v is not None
    }  # fmt: skip
    if no_boot:
        boot["enabled"] = False
    tags: dict[str, dict[str, str]] = {}
    for flag, field, items in (
        ("--tag-boot-file", "boot_file", tag_boot_file),
        ("--tag-ipxe-script", "ipxe_script", tag_ipxe_script),
    ):
        for item in items:
            tag, sep, value = item.partition("=")
            if not sep or not tag or not value:
                raise typer.BadParameter(f"{item!r}: give {flag} as TAG=VALUE, e.g. gpu=x.kpxe")
            tags.setdefault(tag, {})[field] = value
    if tags:
        boot["tags"] = tags
    body: dict[str, Any] = {
        "name": name,
        "site": site,
        "cidr": cidr,
        "pools": [_pool(p) for p in pool],
        "routers": router,
        "dns_servers": dns,
        "ntp_servers": ntp,
        "domain_name": domain,
        "domain_search": search,
        "lease_time": lease_time,
        "interface": interface,
        "server_address": server_address,
        "boot": boot,
    }
    act(
        ctx,
        "POST",
        "/dhcp/subnets",
        as_json,
        lambda created: (
            f"subnet {created['name']} ({created['cidr']}) added to site {created['site']}"
        ),
        json=body,
    )


def _subnet_row(s: dict[str, Any]) -> dict[str, Any]:
    return {
        **s,
        "pools": ", ".join(f"{p['start']}-{p['end']}" for p in s["pools"]),
        "routers": ", ".join(s["routers"]),
        "dns_servers": ", ".join(s["dns_servers"]),
    }


@subnet_app.command("list")
def subnet_list(ctx: typer.Context, as_json: bool = JSONOption) -> None:
    """List subnets."""
    with client(ctx) as c:
        rows = c.get("/dhcp/subnets")
    output(rows if as_json else [_subnet_row(s) for s in rows], SUBNET_COLUMNS, as_json)


@subnet_app.command("rm")
def subnet_rm(ctx: typer.Context, name: str) -> None:
    """Remove a subnet; its clients get no new leases."""
    with client(ctx) as c:
        c.delete(f"/dhcp/subnets/{name}")
    console.print(f"subnet {name} removed")


@reservation_app.command("add")
def reservation_add(
    ctx: typer.Context,
    mac: str = typer.Argument(..., help="the client's MAC address"),
    ip: str = typer.Argument(..., help="its fixed address"),
    hostname: str | None = typer.Option(None, "--hostname", help="option 12 for the client"),
    boot_file: str | None = typer.Option(None, "--boot-file", help="TFTP boot file override"),
    ipxe_script: str | None = typer.Option(None, "--ipxe-script", help="iPXE script URL override"),
    as_json: bool = JSONOption,
) -> None:
    """Reserve an address for a MAC (replaces an existing reservation of that MAC)."""
    body = {
        "mac": mac,
        "ip": ip,
        "hostname": hostname,
        "boot": {"boot_file": boot_file, "ipxe_script": ipxe_script},
    }
    act(
        ctx,
        "PUT",
        f"/dhcp/reservations/{mac}",
        as_json,
        lambda saved: f"{saved['mac']} reserved {saved['ip']}",
        json=body,
    )


@reservation_app.command("list")
def reservation_list(ctx: typer.Context, as_json: bool = JSONOption) -> None:
    """List reservations."""
    with client(ctx) as c:
        rows = c.get("/dhcp/reservations")
    if not as_json:
        rows = [{**r, "boot": json.dumps({k: v for k, v in r["boot"].items() if v})} for r in rows]
    output(rows, RESERVATION_COLUMNS, as_json)


@reservation_app.command("rm")
def reservation_rm(ctx: typer.Context, mac: str) -> None:
    """Remove a reservation."""
    with client(ctx) as c:
        c.delete(f"/dhcp/reservations/{mac}")
    console.print(f"reservation {mac} removed")


def leases(
    ctx: typer.Context,
    follow: bool = typer.Option(False, "--follow", "-f", help="then print lease events live"),
    as_json: bool = JSONOption,
) -> None:
    """Print the leases; with --follow keep printing lease events as they happen."""
    with client(ctx) as c:
        rows = c.get("/dhcp/leases")
        if not follow:
            output(rows, LEASE_COLUMNS, as_json)
            return
        for row in rows:
            print(json.dumps(row) if as_json else _lease_line(row), flush=True)
        last = c.get("/events/history", params={"type": ["dhcp."], "tail": 1})
        since = str(last[-1]["id"]) if last else "0"
        for ev in c.sse("/events", params={"type": ["dhcp.lease.", "dhcp.pool."], "since": since}):
            if as_json:
                print(json.dumps(ev), flush=True)
            else:
                d = ev.get("data") or {}
                kind = ev["type"].rsplit(".", 1)[-1]
                ip, mac = d.get("ip") or "-", d.get("mac") or "-"
                print(
                    f"{ev['time'][:19]}  {kind:<9} {ip:<15} {mac:<17} {d.get('hostname') or ''}",
                    flush=True,
                )


def _lease_line(row: dict[str, Any]) -> str:
    return (
        f"{row['expires'][:19]}  {row['state']:<9} {row['ip']:<15} {row['mac']:<17} "
        f"{row['hostname']}"
    )


app.command("leases")(leases)
