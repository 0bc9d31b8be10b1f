"""The ``roost`` command: one Typer app, one module per noun, no logic of its own."""

from __future__ import annotations

import sys

import typer

from roost.cli import (
    boot,
    config,
    demo,
    dhcp,
    enroll,
    events,
    lab,
    node,
    scan,
    serve,
    token,
    wake,
)
from roost.cli.common import State
from roost.client import ClientError
from roost.errors import RoostError

app = typer.Typer(
    name="roost",
    help="Roost: discover, boot, enroll, connect and configure bare machines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    ctx: typer.Context,
    url: str | None = typer.Option(None, "--url", help="API URL (or ROOST_URL)"),
    token_: str | None = typer.Option(None, "--token", help="API token (or ROOST_TOKEN)"),
) -> None:
    ctx.obj = State(url=url, token=token_)


app.command("serve")(serve.serve)
app.add_typer(config.app, name="config")
app.add_typer(token.app, name="token")
app.add_typer(boot.app, name="boot")
app.add_typer(dhcp.app, name="dhcp")
app.command("events")(events.events)
app.command("demo")(demo.demo)
app.add_typer(node.app, name="node")
app.add_typer(enroll.app, name="enroll")
app.add_typer(scan.app, name="scan")
app.command("wake")(wake.wake)
app.add_typer(lab.app, name="lab")


def main() -> None:
    try:
        app()
    except (ClientError, RoostError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
