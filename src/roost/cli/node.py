"""``roost node``: the inventory, lifecycle, certificates and power of nodes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from roost.cli.common import JSONOption, act, client, console, output, print_json
from roost.client import ClientError
from roost.inventory import power as node_power
from roost.inventory.transfer import to_csv

app = typer.Typer(
    help="List, add, tag, import/export, power and revoke nodes.", no_args_is_help=True
)

COLUMNS = ["id", "hostname", "mac", "ip", "site", "state", "tags", "power"]
NodeArg = typer.Argument(..., help="node id, MAC address or hostname")
SiteOpt = typer.Option(None, "--site", help="only this site")
TagOpt = typer.Option([], "--tag", help="only nodes with this tag (repeatable: all of them)")


SHOWN = ("id", "hostname", "mac", "ip", "site", "state", "state_reason", "tags",
         "architecture", "vendor", "boot_profile", "last_seen")  # fmt: skip


def _row(n: dict[str, Any]) -> dict[str, Any]:
    return {**n, "tags": ",".join(n["tags"]), "power": n["power"]["driver"] or ""}


def _settings(driver: str | None, pairs: list[str], flags: list[str]) -> dict[str, Any]:
    """The driver's own flags (``--host …``) and ``--power-setting KEY=VALUE`` pairs; a secret
    given as ``-`` is asked for without echo, so it stays out of shell history."""
    if flags and not driver:
        raise ClientError(f"driver flags such as {flags[0]} need --power-driver NAME")
    out: dict[str, Any] = node_power.settings_from_flags(driver, flags) if driver and flags else {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ClientError(f"--power-setting wants KEY=VALUE, got {pair!r}")
        out[key] = value
    for key, value in out.items():
        if value == "-":
            out[key] = typer.prompt(key, hide_input=True)
    return out


def _fields(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v not in (None, [], {})}


@app.command("ls", hidden=True)
@app.command("list")
def list_(
    ctx: typer.Context,
    site: str | None = SiteOpt,
    tag: list[str] = TagOpt,
    state: str | None = typer.Option(None, "--state", help="only nodes in this state"),
    as_json: bool = JSONOption,
) -> None:
    """List nodes, filtered by site, tags and state."""
    with client(ctx) as c:
        nodes = c.get("/nodes", params=_fields(site=site, tag=tag, state=state))
    output(nodes if as_json else [_row(n) for n in nodes], COLUMNS, as_json)


@app.command("show")
def show(ctx: typer.Context, node: str = NodeArg, as_json: bool = JSONOption) -> None:
    """Show one node with its lifecycle history (secrets appear as ***)."""
    with client(ctx) as c:
        data = c.get(f"/nodes/{node}")
        data["history"] = c.get(f"/nodes/{node}/history")
    if as_json:
        print_json(data)
        return
    lines = [(k, data[k]) for k in SHOWN] + [
        ("power", json.dumps(data["power"])),
        ("certificate", json.dumps(data["certificate"], default=str)),
        ("facts", json.dumps(data["facts"])),
    ]
    for key, value in lines:
        console.print(Text.assemble((key, "bold"), ": ", "" if value is None else str(value)))
    output(data["history"], ["time", "from", "to", "reason"], False)


def _body(
    hostname: str | None,
    site: str | None,
    arch: str | None,
    vendor: str | None,
    boot_profile: str | None,
    power_driver: str | None,
    settings: dict[str, Any],
) -> dict[str, Any]:
    return _fields(
        hostname=hostname,
        site=site,
        architecture=arch,
        vendor=vendor,
        boot_profile=boot_profile,
        power_driver=power_driver,
        power_settings=settings,
    )


HostOpt = typer.Option(None, "--hostname")
SiteSet = typer.Option(None, "--site", help="site of the node (default: the server's)")
ArchOpt = typer.Option(None, "--arch", help="x86_64, arm64, …")
VendorOpt = typer.Option(None, "--vendor")
ProfileOpt = typer.Option(None, "--boot-profile")
DriverOpt = typer.Option(None, "--power-driver", help="wol, ipmi, redfish, webhook, …")
SettingOpt = typer.Option(
    [], "--power-setting", help="KEY=VALUE for the driver (repeatable); KEY=- prompts hidden"
)
# Anything else on the line is a flag of the power driver, from its settings declaration
# (`roost node drivers NAME` lists them): --host 10.0.0.9 --password -
DRIVER_FLAGS = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command("add", context_settings=DRIVER_FLAGS)
def add(
    ctx: typer.Context,
    mac: str = typer.Argument(..., help="MAC of the boot interface"),
    hostname: str | None = HostOpt,
    site: str | None = SiteSet,
    tag: list[str] = typer.Option([], "--tag", help="tag (repeatable)"),
    ip: str | None = typer.Option(None, "--ip"),
    arch: str | None = ArchOpt,
    vendor: str | None = VendorOpt,
    boot_profile: str | None = ProfileOpt,
    power_driver: str | None = DriverOpt,
    power_setting: list[str] = SettingOpt,
    as_json: bool = JSONOption,
) -> None:
    """Add a node by hand; it starts as discovered. Power driver flags may follow."""
    settings = _settings(power_driver, power_setting, ctx.args)
    body = {
        "mac": mac,
        **_body(hostname, site, arch, vendor, boot_profile, power_driver, settings),
        **_fields(tags=tag, ip=ip),
    }
    with client(ctx) as c:
        node = c.post("/nodes", json=body)
    output([node] if as_json else [_row(node)], COLUMNS, as_json)


@app.command("set", context_settings=DRIVER_FLAGS)
def set_(
    ctx: typer.Context,
    node: str = NodeArg,
    hostname: str | None = HostOpt,
    site: str | None = SiteSet,
    arch: str | None = ArchOpt,
    vendor: str | None = VendorOpt,
    boot_profile: str | None = ProfileOpt,
    power_driver: str | None = DriverOpt,
    power_setting: list[str] = SettingOpt,
    as_json: bool = JSONOption,
) -> None:
    """Change fields of a node, such as its power driver and settings (driver flags may
    follow; settings not given stay)."""
    with client(ctx) as c:
        driver = power_driver
        if ctx.args and not driver:
            driver = c.get(f"/nodes/{node}")["power"]["driver"]
        settings = _settings(driver, power_setting, ctx.args)
        body = _body(hostname, site, arch, vendor, boot_profile, power_driver, settings)
        updated = c.request("PATCH", f"/nodes/{node}", json=body)
    output([updated] if as_json else [_row(updated)], COLUMNS, as_json)


@app.command("rm")
def rm(
    ctx: typer.Context,
    node: str = NodeArg,
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask"),
    as_json: bool = JSONOption,
) -> None:
    """Delete a node (its certificates are revoked)."""
    if not yes:
        typer.confirm(f"delete node {node} and revoke its certificates?", abort=True)
    with client(ctx) as c:
        c.delete(f"/nodes/{node}")
    if as_json:
        print_json({"deleted": node})
    else:
        console.print(f"node {node} deleted")


@app.command("tag")
def tag(
    ctx: typer.Context,
    node: str = NodeArg,
    tags: list[str] = typer.Argument(...),
    as_json: bool = JSONOption,
) -> None:
    """Add tags to a node."""
    with client(ctx) as c:
        updated = c.post(f"/nodes/{node}/tags", json={"tags": tags})
    output([updated] if as_json else [_row(updated)], COLUMNS, as_json)


@app.command("untag")
def untag(
    ctx: typer.Context,
    node: str = NodeArg,
    tags: list[str] = typer.Argument(...),
    as_json: bool = JSONOption,
) -> None:
    """Remove tags from a node."""
    with client(ctx) as c:
        for t in tags:
            updated = c.delete(f"/nodes/{node}/tags/{t}")
    output([updated] if as_json else [_row(updated)], COLUMNS, as_json)


@app.command("state")
def state(
    ctx: typer.Context,
    node: str = NodeArg,
    to: str = typer.Argument(
        ...,
        help="discovered, enrolling, pending, ready, deploying, deployed, broken, retired",
    ),
    reason: str = typer.Option("", "--reason"),
    as_json: bool = JSONOption,
) -> None:
    """Move a node along its lifecycle (only the allowed transitions)."""
    with client(ctx) as c:
        updated = c.post(f"/nodes/{node}/state", json={"state": to, "reason": reason})
    output([updated] if as_json else [_row(updated)], COLUMNS, as_json)


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="CSV or JSON file; - reads stdin"),
    format: str | None = typer.Option(None, "--format", help="csv or json (default: by suffix)"),
    as_json: bool = JSONOption,
) -> None:
    """Import nodes (unknown MACs are created, known ones updated), all or nothing."""
    data = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    kind = format or ("csv" if file.suffix.lower() == ".csv" else "json")
    ctype = "text/csv" if kind == "csv" else "application/json"
    act(
        ctx,
        "POST",
        "/nodes/import",
        as_json,
        lambda result: f"{result['created']} nodes created, {result['updated']} updated",
        content=data,
        headers={"content-type": ctype},
    )


@app.command("export")
def export(
    ctx: typer.Context,
    format: str = typer.Option("json", "--format", help="json or csv"),
    site: str | None = SiteOpt,
    tag: list[str] = TagOpt,
    out: Path | None = typer.Option(None, "--output", "-o", help="file (default: stdout)"),
) -> None:
    """Export nodes as JSON or CSV (secrets as ***; re-importing keeps them)."""
    if format not in ("json", "csv"):
        raise ClientError(f"--format must be json or csv, got {format!r}")
    with client(ctx) as c:
        records = c.get("/nodes/export", params=_fields(site=site, tag=tag))
    text = to_csv(records) if format == "csv" else json.dumps(records, indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)


@app.command("revoke")
def revoke(ctx: typer.Context, node: str = NodeArg, as_json: bool = JSONOption) -> None:
    """Revoke the node's certificates; refused from their next request on."""
    act(
        ctx,
        "POST",
        f"/nodes/{node}/revoke",
        as_json,
        lambda r: f"revoked {len(r['revoked'])} certificate(s) of node {node}",
    )


@app.command("recommission")
def recommission(ctx: typer.Context, node: str = NodeArg, as_json: bool = JSONOption) -> None:
    """Let the node's next boot enroll again (it gets a one-time token from its boot render)."""
    with client(ctx) as c:
        updated = c.post(f"/nodes/{node}/recommission")
    output([updated] if as_json else [_row(updated)], COLUMNS, as_json)


@app.command("approve")
def approve(ctx: typer.Context, node: str = NodeArg, as_json: bool = JSONOption) -> None:
    """Approve a pending enrollment (enroll.approve): the node becomes ready."""
    with client(ctx) as c:
        updated = c.post(f"/nodes/{node}/approve")
    output([updated] if as_json else [_row(updated)], COLUMNS, as_json)


@app.command("power")
def power(
    ctx: typer.Context,
    node: str = NodeArg,
    action: str = typer.Argument(..., help="on, off, cycle or status"),
    as_json: bool = JSONOption,
) -> None:
    """Power a node on, off, cycle it, or read its power state."""
    act(
        ctx,
        "POST",
        f"/nodes/{node}/power",
        as_json,
        lambda r: f"node {r['node']}: power {r['state']}",
        json={"action": action},
    )


@app.command("boot-device")
def boot_device(
    ctx: typer.Context,
    node: str = NodeArg,
    device: str = typer.Argument(..., help="pxe or disk"),
    as_json: bool = JSONOption,
) -> None:
    """Choose what the node boots from next: the network (pxe) or its disk."""
    act(
        ctx,
        "POST",
        f"/nodes/{node}/boot-device",
        as_json,
        lambda r: f"node {r['node']}: next boot from {r['device']}",
        json={"device": device},
    )


@app.command("drivers")
def drivers(
    name: str | None = typer.Argument(None, help="one driver: list its settings as flags"),
    as_json: bool = JSONOption,
) -> None:
    """The installed power drivers, or one driver's settings (its flags on add/set)."""
    if name is None:
        output([{"driver": d} for d in node_power.available()], ["driver"], as_json)
        return
    output(
        node_power.declaration(name),
        ["flag", "type", "required", "secret", "default", "help"],
        as_json,
    )
