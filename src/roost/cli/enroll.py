"""``roost enroll``: one-time enrollment tokens."""

from __future__ import annotations

import typer

from roost.cli.common import JSONOption, client, console, output, print_json

app = typer.Typer(help="Enrollment tokens for nodes.", no_args_is_help=True)
token_app = typer.Typer(help="Create and list one-time enrollment tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")

COLUMNS = ["id", "node_id", "mac", "site", "expires_at", "used_at", "used_by"]


@token_app.command("create")
def create(
    ctx: typer.Context,
    node: str | None = typer.Option(None, "--node", help="for this node (id, MAC or hostname)"),
    site: str | None = typer.Option(None, "--site", help="for any new machine of this site"),
    mac: str | None = typer.Option(None, "--mac", help="for this MAC, known or not"),
    ttl: str = typer.Option("1h", "--ttl", help="lifetime: seconds or 90s, 30m, 1h, 2d"),
    as_json: bool = JSONOption,
) -> None:
    """Create a single-use token; pass it to the machine as roost.token=<token>."""
    body = {"node": node, "site": site, "mac": mac, "ttl": ttl}
    with client(ctx) as c:
        created = c.post("/enroll/tokens", json=body)
    if as_json:
        print_json(created)
    else:
        console.print(f"enrollment token {created['id']} (until {created['expires_at']}):")
        print(created["token"])


@token_app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSONOption) -> None:
    """List enrollment tokens (never their secrets)."""
    with client(ctx) as c:
        output(c.get("/enroll/tokens"), COLUMNS, as_json)
