"""A command's API client is closed when the command ends, so commands run in-process (tests,
scripts using the Typer app) leave no pooled socket behind."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from roost.cli.common import State, client
from roost.client import Client


def test_client_closes_with_its_command() -> None:
    app = typer.Typer()
    made: list[Client] = []
    open_inside: list[bool] = []

    @app.command()
    def show(ctx: typer.Context) -> None:
        made.append(client(ctx))
        open_inside.append(not made[0].closed)

    result = CliRunner().invoke(app, [], obj=State(url="http://127.0.0.1:9", token="t"))
    assert result.exit_code == 0, result.output
    assert open_inside == [True]
    assert made[0].closed
