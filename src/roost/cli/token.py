"""``roost token``: API tokens."""

from __future__ import annotations

import typer

from roost.cli.common import JSONOption, act, client, console, output, print_json

app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)

COLUMNS = ["id", "name", "role", "sites", "expires_at", "revoked_at", "last_used_at"]


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="what the token is for"),
    role: str = typer.Option("viewer", help="viewer, operator or admin"),
    site: list[str] = typer.Option([], "--site", help="limit to a site (repeatable)"),
    expires: str | None = typer.Option(
        None, help="expiry time, ISO 8601 with a time zone, e.g. 2030-01-01T00:00:00Z"
    ),
    as_json: bool = JSONOption,
) -> None:
    """Create a token; its secret is printed once."""
    body = {"name": name, "role": role, "sites": site or None, "expires_at": expires}
    with client(ctx) as c:
        created = c.post("/tokens", json=body)
    if as_json:
        print_json(created)
    else:
        console.print(f"token {created['id']} ({created['role']}) created; shown only once:")
        print(created["token"])


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSONOption) -> None:
    """List tokens (never their secrets)."""
    with client(ctx) as c:
        output(c.get("/tokens"), COLUMNS, as_json)


@app.command("revoke")
def revoke(ctx: typer.Context, token_id: str, as_json: bool = JSONOption) -> None:
    """Revoke a token; it is refused from its next request on."""
    act(ctx, "DELETE", f"/tokens/{token_id}", as_json, lambda r: f"token {r['id']} revoked")
